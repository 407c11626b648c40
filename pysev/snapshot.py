"""Machine snapshots: the whole machine in one file, loaded back to run on identically.

    m.save_snapshot("lesson1.pysev")            # pysev.machine.Machine
    m2 = Machine.load_snapshot("lesson1.pysev", serial="stdio")
    m2.run(max_insns=1000)                      # continues where m stopped

A snapshot is a zip archive, so a student can look inside (``unzip -l``):

``snapshot.json``
    the format name and version, the machine's configuration (what ``-m``,
    ``-cpu``, ``-machine``, ``-object``, ``-append`` gave), the CPU's
    architectural state, the devices, the SEV launch state and the run state;
``firmware.bin``, ``kernel.bin``, ``initrd.bin``
    the images the machine was built from (the last two only with ``-kernel``);
``memory.pages``, ``memory.bin``
    guest RAM and ROM: the numbers of the 4 KiB pages that hold anything but
    zeros (little-endian uint32) and those pages, in that order.

Key material is never written: not the TIK and TEK (nor the paths of their
files), nor anything derived from them but the launch measurement, which the
host publishes anyway.  A machine loaded from a snapshot therefore has no
transport keys: if its SEV launch was still waiting for a secret, injecting
one is refused with a clear error; LAUNCH_FINISH and everything after it need
no keys.

What is not machine state stays with the host and is given again on load:
where the serial ports and the debug console write, the ``-d`` log, QMP.
Translated code, TLBs and the paging-structure cache are caches: they start
empty and refill.
"""

import json
import zipfile

import numpy as np

FORMAT = "pysev-snapshot"
VERSION = 1
PAGE = 4096
SECRET_PROPERTIES = ("tik", "tek")

# CPU attributes saved as they are (ints, bools, None)
_CPU_SCALARS = ("rip", "eflags", "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "tsc_aux",
                "tsc_offset", "apic_base", "fpu_cw", "fpu_sw", "fpu_tw", "mxcsr", "cpl",
                "phys_bits", "sev_c_bit", "sev_reduced_bits", "icount", "fault_count",
                "halted", "interrupt_shadow")
_CPU_LISTS = ("regs", "seg_sel", "seg_base", "seg_limit", "seg_attr", "dr")
_CPU_TUPLES = ("gdtr", "idtr", "ldtr", "tr")
_SERIAL_FIELDS = ("ier", "lcr", "mcr", "scr", "fcr", "divisor", "msr_delta", "tx_count")


class SnapshotError(Exception):
    """A snapshot that cannot be written, read or used; the message says why."""


# ---- saving ----------------------------------------------------------------------------------

def save(machine, path):
    """Write *machine*'s state to *path*; returns a summary dict (sizes, icount)."""
    cpu = machine.cpu
    if getattr(cpu, "pending_fault", None) is not None:
        raise SnapshotError("the CPU is in the middle of delivering an exception; "
                            "run on by one instruction and save again")
    state = {
        "format": FORMAT,
        "version": VERSION,
        "pysev": _pysev_version(),
        "config": _config(machine),
        "cpu": _cpu_state(cpu),
        "devices": _devices(machine),
        "sev": _sev_state(machine.sev),
        "run": {"state": machine.run_state, "halted": machine.halted,
                "stop_reason": machine.stop_reason, "resets": machine.resets,
                "triple_faults": machine.triple_faults},
    }
    pages, blob = _memory_pages(machine.mem)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                             compresslevel=1) as z:
            z.writestr("snapshot.json", json.dumps(state, indent=1, sort_keys=True))
            z.writestr("firmware.bin", bytes(machine._image))
            if machine.kernel_data is not None:
                z.writestr("kernel.bin", machine.kernel_data)
            if machine.initrd_data is not None:
                z.writestr("initrd.bin", machine.initrd_data)
            z.writestr("memory.pages", pages.astype("<u4").tobytes())
            z.writestr("memory.bin", blob)
    except OSError as exc:
        raise SnapshotError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return {"icount": cpu.icount, "pages": len(pages), "memory": machine.mem.used}


def _pysev_version():
    from pysev import __version__
    return __version__


def _config(machine):
    objects = [[otype, oid, {k: v for k, v in props.items() if k not in SECRET_PROPERTIES}]
               for otype, oid, props in machine.object_specs]
    debugcon = machine.debugcon
    return {"machine": machine.machine_type, "memory": machine.ram_size,
            "cpu": machine.cpu_model_name, "bios_path": machine.bios_path,
            "serial_ports": [uart.base for uart in machine.serials],
            "debugcon_port": None if debugcon is None else debugcon.base,
            "no_reboot": machine.no_reboot, "objects": objects,
            "memory_encryption": machine.memory_encryption, "append": machine.append}


def _cpu_state(cpu):
    out = {name: getattr(cpu, name) for name in _CPU_SCALARS}
    out.update({name: list(getattr(cpu, name)) for name in _CPU_LISTS + _CPU_TUPLES})
    out["msr"] = sorted([k, v] for k, v in cpu.msr.items())
    out["mode"] = list(cpu.mode.key)
    rng = cpu.rng
    out["random"] = None if rng is None else {"seed": cpu.random_seed,
                                              "state": _plain(rng.getstate())}
    return out


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _devices(machine):
    serials = []
    for uart in machine.serials:
        fields = {name: getattr(uart, name) for name in _SERIAL_FIELDS}
        fields["rx"] = list(uart.rx)
        serials.append(fields)
    post = machine.post
    fw = machine.fw_cfg
    return {
        "serial": serials,
        "post": {"value": post.value, "history": list(post.history), "writes": post.writes},
        "fw_cfg": {"current": fw.current, "offset": fw.offset, "dma_addr": fw.dma_addr,
                   # the guest can change writable items; the rest is rebuilt from the config
                   "writable": {str(key): item.data.hex() for key, item in fw.items_by_key()
                                if item.writable}},
    }


def _sev_state(sev):
    if sev is None:
        return None
    ctx = sev.ctx
    blob = sev._measure_blob
    return {"state": ctx.state, "policy": ctx.policy, "handle": ctx.handle,
            "api": [ctx.api_major, ctx.api_minor, ctx.build],
            "launch_digest": ctx.launch_digest.hex(),
            "measure": None if blob is None else blob.hex(),
            "updates": [list(u) for u in ctx.updates], "vmsa_count": ctx.vmsa_count,
            "migration_blockers": list(sev.migration_blockers)}


def _memory_pages(mem):
    used = mem.used
    data = mem.array[:used]
    whole = used // PAGE * PAGE
    pages = data[:whole].reshape(-1, PAGE)
    nonzero = np.flatnonzero(pages.any(axis=1)).astype(np.uint32)
    blob = pages[nonzero].tobytes()
    if whole != used:                           # never for page-aligned maps; kept exact anyway
        tail = data[whole:]
        if tail.any():
            nonzero = np.append(nonzero, np.uint32(whole // PAGE))
            blob += bytes(tail) + bytes(PAGE - len(tail))
    return nonzero, blob


# ---- loading ---------------------------------------------------------------------------------

def read(path):
    """(state, files) of a snapshot file, checked for format and version."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "snapshot.json" not in names:
                raise SnapshotError(f"'{path}' is not a pysev snapshot (no snapshot.json)")
            state = json.loads(z.read("snapshot.json"))
            files = {n: z.read(n) for n in ("firmware.bin", "kernel.bin", "initrd.bin",
                                             "memory.pages", "memory.bin") if n in names}
    except OSError as exc:
        raise SnapshotError(f"cannot read '{path}': {exc.strerror or exc}") from None
    except zipfile.BadZipFile:
        raise SnapshotError(f"'{path}' is not a pysev snapshot (not a zip archive)") from None
    except (ValueError, zipfile.LargeZipFile) as exc:
        raise SnapshotError(f"'{path}' is damaged: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnapshotError(f"'{path}' is not a pysev snapshot")
    if state.get("version") != VERSION:
        raise SnapshotError(f"'{path}' is a version {state.get('version')} snapshot; this "
                            f"pysev reads version {VERSION}")
    for name in ("firmware.bin", "memory.pages", "memory.bin"):
        if name not in files:
            raise SnapshotError(f"'{path}' is damaged: {name} is missing")
    return state, files


def load(cls, path, serial="stdio", debugcon="null", **host):
    """A new machine of class *cls* in the state saved in *path*.

    *serial*, *debugcon* and *host* (log_items, log, single_step, max_insns,
    state_json, qmp, start_paused) are the host side, as for ``Machine()``.
    ``serial`` is one value for every saved serial port, or a list.
    """
    from pysev.machine import MachineError

    state, files = read(path)
    try:
        return _build(cls, state, files, serial, debugcon, host)
    except MachineError as exc:
        raise SnapshotError(f"'{path}': {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"'{path}' is damaged: bad or missing {exc}") from None


def _build(cls, state, files, serial, debugcon, host):
    config = state["config"]
    ports = config["serial_ports"]
    sinks = list(serial) if isinstance(serial, (list, tuple)) else [serial] * len(ports)
    sinks += ["null"] * (len(ports) - len(sinks))
    # Machine takes one spec per COM port in order; "none" leaves a port out
    from pysev.machine import COM_PORTS
    count = max((COM_PORTS.index(p) + 1 for p in ports), default=1)
    by_port = dict(zip(ports, sinks))
    serial_arg = [by_port.get(port, "none") for port in COM_PORTS[:count]]
    debugcon_port = config["debugcon_port"]
    start_paused = host.pop("start_paused", False)
    # the snapshot has no keys, so the machine is built without them and without the
    # warnings about that: its launch is replaced below by the saved one
    machine = cls(bios=files["firmware.bin"], memory=config["memory"], cpu=config["cpu"],
                  machine=config["machine"], serial=serial_arg,
                  debugcon=None if debugcon_port is None else debugcon,
                  debugcon_port=debugcon_port or 0x402, no_reboot=config["no_reboot"],
                  objects=[tuple(o) for o in config["objects"]],
                  memory_encryption=config["memory_encryption"],
                  kernel=files.get("kernel.bin"), initrd=files.get("initrd.bin"),
                  append=config["append"], start_paused=start_paused,
                  object_warnings=False, **host)
    try:
        machine.bios_path = config["bios_path"]
        _restore_memory(machine, files)
        _restore_cpu(machine.cpu, state["cpu"])
        _restore_devices(machine, state["devices"])
        _restore_sev(machine, state["sev"])
        run = state["run"]
        machine.halted = run["halted"]
        machine.stop_reason = run["stop_reason"]
        machine.resets = run["resets"]
        machine.triple_faults = run["triple_faults"]
        if start_paused:
            machine.run_state = "prelaunch" if run["state"] == "prelaunch" else "paused"
        elif run["state"] in ("shutdown", "internal-error", "guest-panicked"):
            machine.run_state = run["state"]
    except BaseException:
        machine.close()
        raise
    return machine


def _restore_memory(machine, files):
    mem = machine.mem
    pages = np.frombuffer(files["memory.pages"], dtype="<u4")
    blob = np.frombuffer(files["memory.bin"], dtype=np.uint8)
    if len(blob) != len(pages) * PAGE:
        raise ValueError("memory: page data does not match the page list")
    used = mem.used
    if len(pages) and (int(pages.max()) + 1) * PAGE > -(-used // PAGE) * PAGE:
        raise ValueError("memory: a page lies outside the machine's memory")
    whole = used // PAGE * PAGE
    view = mem.array[:whole].reshape(-1, PAGE)
    # clear what the new machine loaded (ROM, tables) but only where it did: writing
    # every page would make the host commit all of guest RAM
    view[np.flatnonzero(view.any(axis=1))] = 0
    mem.array[whole:used] = 0
    inside = pages < whole // PAGE
    view[pages[inside]] = blob.reshape(-1, PAGE)[inside]
    for n in np.flatnonzero(~inside):
        mem.array[whole:used] = blob[n * PAGE:n * PAGE + used - whole]
    machine.cpu.cache.clear()                   # nothing ran yet; kept for safety
    machine.cpu.flush_tlb()


def _restore_cpu(cpu, saved):
    for name in _CPU_SCALARS:
        if name != "eflags":
            setattr(cpu, name, saved[name])
    for name in _CPU_LISTS:
        getattr(cpu, name)[:] = saved[name]     # translated code holds these lists
    for name in _CPU_TUPLES:
        setattr(cpu, name, tuple(saved[name]))
    cpu.eflags = saved["eflags"]
    cpu.msr = {k: v for k, v in saved["msr"]}
    for seg in range(6):                        # recomputes the limit-check ranges
        cpu.set_segment(seg, cpu.seg_sel[seg], cpu.seg_base[seg], cpu.seg_limit[seg],
                        cpu.seg_attr[seg])
    cpu.pending_fault = None
    random = saved["random"]
    cpu.seed_random(None if random is None else random["seed"])
    if random is not None:
        cpu.rng.setstate(_tuples(random["state"]))
    cpu.update_paging()
    cpu.set_mode(*saved["mode"])
    cpu.flush_tlb()


def _restore_devices(machine, saved):
    if len(saved["serial"]) != len(machine.serials):
        raise ValueError("serial: the number of ports does not match")
    for uart, fields in zip(machine.serials, saved["serial"]):
        for name in _SERIAL_FIELDS:
            setattr(uart, name, fields[name])
        uart.rx.clear()
        uart.rx.extend(fields["rx"])
    post = machine.post
    post.value, post.history, post.writes = (saved["post"]["value"],
                                             list(saved["post"]["history"]),
                                             saved["post"]["writes"])
    fw = machine.fw_cfg
    fw.current, fw.offset, fw.dma_addr = (saved["fw_cfg"]["current"], saved["fw_cfg"]["offset"],
                                          saved["fw_cfg"]["dma_addr"])
    for key, data in saved["fw_cfg"]["writable"].items():
        item = fw.item(int(key))
        if item is None or not item.writable:
            raise ValueError(f"fw_cfg: item {key} is not writable in this machine")
        item.data[:] = bytes.fromhex(data)


def _restore_sev(machine, saved):
    sev = machine.sev
    if (saved is None) != (sev is None):
        raise ValueError("sev: the snapshot and its configuration disagree")
    if sev is None:
        return
    ctx = sev.ctx
    ctx.state, ctx.policy, ctx.handle = saved["state"], saved["policy"], saved["handle"]
    ctx.api_major, ctx.api_minor, ctx.build = saved["api"]
    ctx.updates = [tuple(u) for u in saved["updates"]]
    ctx.vmsa_count = saved["vmsa_count"]
    ctx.restore_digest(bytes.fromhex(saved["launch_digest"]))
    blob = None if saved["measure"] is None else bytes.fromhex(saved["measure"])
    sev._measure_blob = blob
    ctx.restore_measure(None if blob is None else blob[:32])
    ctx.drop_keys()
    sev.migration_blockers = list(saved["migration_blockers"])


def describe(path):
    """A short, key-free summary of a snapshot (for ``pysev snapshot info``)."""
    state, files = read(path)
    cfg, cpu = state["config"], state["cpu"]
    lines = [f"{path}: pysev snapshot version {state['version']} (pysev {state['pysev']})",
             f"machine {cfg['machine']}, {cfg['memory'] // (1 << 20)} MiB, CPU {cfg['cpu']}, "
             f"firmware {len(files['firmware.bin'])} bytes",
             f"after {cpu['icount']} instructions, run state {state['run']['state']}, "
             f"RIP {cpu['rip']:#x}, CR3 {cpu['cr3']:#x}"]
    if state["sev"] is not None:
        from pysev.sev.firmware import STATE_NAMES
        lines.append(f"SEV: state {STATE_NAMES[state['sev']['state']]}, policy "
                     f"{state['sev']['policy']:#x}, C-bit {cpu['sev_c_bit']}, "
                     f"reduced-phys-bits {cpu['sev_reduced_bits']} (no keys saved)")
    return "\n".join(lines)


def memory_digest(mem):
    """SHA-256 of all guest RAM and ROM, for checking that two machines agree."""
    import hashlib
    return hashlib.sha256(mem.array[:mem.used]).hexdigest()
