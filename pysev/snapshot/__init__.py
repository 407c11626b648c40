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

import io
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from .check import Bad as _Bad, check_state, tuples as _tuples
from .layout import (CPU_LISTS, CPU_SCALARS, CPU_TUPLES, FORMAT, PAGE, SECRET_PROPERTIES,
                     SERIAL_FIELDS, VERSION)


# CPU attributes saved as they are (ints, bools, None)


class SnapshotError(Exception):
    """A snapshot that cannot be written, read or used; the message says why."""


# ---- saving ----------------------------------------------------------------------------------

def save(machine, path):
    """Write *machine*'s state to *path*; returns a summary dict (sizes, icount)."""
    cpu = machine.cpu
    if getattr(cpu, "pending_fault", None) is not None:
        # only a run that ended in a triple fault (-no-reboot) or in an exception pysev
        # could not deliver leaves it so: running on cannot finish the delivery
        why = {"triple-fault": "the guest triple faulted",
               "exception": "the guest stopped on an exception that was not delivered"}.get(
                   machine.stop_reason, "the CPU is in the middle of delivering an exception")
        raise SnapshotError(f"{why}: a snapshot cannot hold a CPU in the middle of "
                            "delivering an exception")
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
        with _replacing(path) as out, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED,
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


class _replacing:
    """A binary file that replaces *path* only once it is completely written: a save that
    fails (a full disk, an error) leaves an older snapshot at *path* as it was.  A symlink
    keeps pointing where it did.  Paths that are not regular files (/dev/null, a FIFO)
    get the archive built in memory, written in one go."""

    def __init__(self, path):
        self.path = os.path.realpath(os.fspath(path))
        self.tmp = None

    def __enter__(self):
        if os.path.isdir(self.path):
            raise IsADirectoryError(21, "Is a directory")
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            # a device or FIFO cannot seek, which zipfile needs: the archive is built in
            # memory and written in one go
            self.device = open(self.path, "wb")
            self.file = io.BytesIO()
            return self.file
        # fails as opening path would when the file is not writable
        open(self.path, "ab").close()
        fd, self.tmp = tempfile.mkstemp(prefix=".pysev-snapshot-",
                                        dir=os.path.dirname(os.path.abspath(self.path)))
        self.file = os.fdopen(fd, "wb")
        return self.file

    def __exit__(self, kind, exc, tb):
        if self.tmp is None:
            with self.device:
                if kind is None:
                    self.device.write(self.file.getvalue())
            return False
        self.file.close()
        if kind is None:
            try:
                mode = os.stat(self.path).st_mode & 0o777
                os.chmod(self.tmp, mode)
            except OSError:
                pass
            os.replace(self.tmp, self.path)
        else:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
        return False


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
    out = {name: getattr(cpu, name) for name in CPU_SCALARS}
    out.update({name: list(getattr(cpu, name)) for name in CPU_LISTS + CPU_TUPLES})
    out["msr"] = sorted([k, v] for k, v in cpu.msr.items())
    out["mode"] = list(cpu.mode.key)
    rng = cpu.rng
    out["random"] = None if rng is None else {"seed": cpu.random_seed,
                                              "state": _plain(rng.getstate())}
    return out


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _devices(machine):
    serials = []
    for uart in machine.serials:
        fields = {name: getattr(uart, name) for name in SERIAL_FIELDS}
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
    """(numbers of the non-zero 4 KiB pages, those pages' bytes).  RAM and ROM regions
    are whole pages (PhysMem refuses others), so the host array is too."""
    pages = mem.array[:mem.used].reshape(-1, PAGE)
    nonzero = np.flatnonzero(pages.any(axis=1)).astype(np.uint32)
    return nonzero, pages[nonzero].tobytes()


# ---- checking a loaded snapshot.json ---------------------------------------------------------
#
# A snapshot file can be damaged or edited by hand: every value is checked for its type and
# range before any of it reaches the machine, so that a bad file is a one-line error and not
# a machine that fails later, somewhere in the engine.



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
    except (ValueError, EOFError, NotImplementedError, zlib.error,
            zipfile.LargeZipFile) as exc:
        raise SnapshotError(f"'{path}' is damaged: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnapshotError(f"'{path}' is not a pysev snapshot")
    version = state.get("version")
    if type(version) is not int:
        raise SnapshotError(f"'{path}' is damaged: its version is {json.dumps(version)}, "
                            "not a number")
    if version != VERSION:
        raise SnapshotError(f"'{path}' is a version {version} snapshot; this "
                            f"pysev reads version {VERSION}")
    for name in ("firmware.bin", "memory.pages", "memory.bin"):
        if name not in files:
            raise SnapshotError(f"'{path}' is damaged: {name} is missing")
    return state, files


def load(cls, path, serial="stdio", debugcon="null", **host):
    """A new machine of class *cls* in the state saved in *path*.

    *serial*, *debugcon* and *host* (log_items, log, single_step, max_insns,
    state_json, qmp, start_paused) are the host side, as for ``Machine()``.
    ``serial`` is one value for every saved serial port, or a list with one value per COM
    port as ``-serial`` gives them (COM1 first; "none" only for a port the snapshot does
    not have; saved ports the list does not reach discard their output).
    """
    from pysev.machine import MachineError

    state, files = read(path)
    try:
        check_state(state)
    except _Bad as exc:
        raise SnapshotError(f"'{path}' is damaged: {exc}") from None
    try:
        return _build(cls, state, files, serial, debugcon, host)
    except MachineError as exc:
        # the machine's errors are worded for pysev run; here they describe the file
        raise SnapshotError(f"'{path}': {str(exc).removeprefix('pysev run: ')}") from None
    except (ValueError, IndexError) as exc:
        raise SnapshotError(f"'{path}' is damaged: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise SnapshotError(f"'{path}' is damaged: bad or missing {exc}") from None


def _build(cls, state, files, serial, debugcon, host):
    config = state["config"]
    ports = config["serial_ports"]
    from pysev.machine import COM_PORTS, MachineError
    if isinstance(serial, (list, tuple)):
        # one spec per COM port, as -serial in pysev run: the first for COM1, ...; the
        # same -serial options as the run that saved the machine fit it
        if len(serial) > len(COM_PORTS):
            raise MachineError(f"-serial: at most {len(COM_PORTS)} serial ports")
        names = ", ".join(f"COM{COM_PORTS.index(p) + 1}" for p in ports) or "none"
        by_port = {}
        for n, spec in enumerate(serial):
            port, off = COM_PORTS[n], spec is None or spec in ("none",)
            if port in ports:
                if off:
                    raise MachineError(f"-serial: COM{n + 1} is part of the saved machine "
                                       "and cannot be left out (null discards its output)")
                by_port[port] = spec
            elif not (off or spec == "null"):
                raise MachineError(f"-serial: the saved machine has no COM{n + 1} (its "
                                   f"serial ports: {names})")
    else:
        by_port = {port: serial for port in ports}
    # Machine takes one spec per COM port in order; "none" leaves a port out
    count = max((COM_PORTS.index(p) + 1 for p in ports), default=1)
    serial_arg = [by_port.get(port, "null") if port in ports else "none"
                  for port in COM_PORTS[:count]]
    debugcon_port = config["debugcon_port"]
    if debugcon_port is None and debugcon is not None and debugcon != "null":
        raise MachineError("-debugcon: the saved machine has no debug console (it was "
                           "saved without -debugcon)")
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
        served = machine.qmp_server is not None
        # a halted guest waits for QMP (system_reset, quit) only on a machine that serves
        # QMP; without a monitor nothing could wake it, so it runs on as a guest after HLT
        machine.halted = run["halted"] and served
        machine.stop_reason = run["stop_reason"]
        machine.resets = run["resets"]
        machine.triple_faults = run["triple_faults"]
        if start_paused:
            machine.run_state = "prelaunch" if run["state"] == "prelaunch" else "paused"
        elif run["state"] in ("shutdown", "internal-error", "guest-panicked"):
            machine.run_state = run["state"]
            if not served:
                # only QMP's system_reset could start it again: without a monitor the run
                # ends at once, as the original machine's did after quit
                machine.quit_requested = True
    except BaseException:
        machine.close()
        raise
    return machine


def _restore_memory(machine, files):
    mem = machine.mem
    if len(files["memory.pages"]) % 4:
        raise ValueError("memory: the page list is cut short")
    pages = np.frombuffer(files["memory.pages"], dtype="<u4")
    blob = np.frombuffer(files["memory.bin"], dtype=np.uint8)
    if len(blob) != len(pages) * PAGE:
        raise ValueError("memory: page data does not match the page list")
    view = mem.array[:mem.used].reshape(-1, PAGE)
    if len(pages) and int(pages.max()) >= len(view):
        raise ValueError("memory: a page lies outside the machine's memory")
    # clear what the new machine loaded (ROM, tables) but only where it did: writing
    # every page would make the host commit all of guest RAM
    view[np.flatnonzero(view.any(axis=1))] = 0
    view[pages] = blob.reshape(-1, PAGE)


def _restore_cpu(cpu, saved):
    for name in CPU_SCALARS:
        if name != "eflags":
            setattr(cpu, name, saved[name])
    for name in CPU_LISTS:
        getattr(cpu, name)[:] = saved[name]     # translated code holds these lists
    for name in CPU_TUPLES:
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
    cpu.update_paging()                         # also empties the TLBs the new memory made stale
    cpu.set_mode(*saved["mode"])


def _restore_devices(machine, saved):
    if len(saved["serial"]) != len(machine.serials):
        raise ValueError("serial: the number of ports does not match")
    for uart, fields in zip(machine.serials, saved["serial"]):
        for name in SERIAL_FIELDS:
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
    try:
        check_state(state)
    except _Bad as exc:
        raise SnapshotError(f"'{path}' is damaged: {exc}") from None
    cfg, cpu = state["config"], state["cpu"]
    lines = [f"{path}: pysev snapshot version {state['version']} "
             f"(pysev {state.get('pysev', 'unknown')})",
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
