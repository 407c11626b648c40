"""QMP commands as functions over a Machine: qmp_<command>(machine, **arguments).

execute(machine, name, arguments) checks the arguments against each command's
schema the way QEMU does and returns what QMP would return, or raises
QMPError carrying QMP's error class and description.  The QMP server is a
thin layer over this.
"""

import base64
import binascii


class QMPError(Exception):
    """A QMP error reply: error class ("GenericError", "CommandNotFound") and description."""

    def __init__(self, desc, error_class="GenericError"):
        super().__init__(desc)
        self.error_class, self.desc = error_class, desc

    def to_json(self):
        return {"class": self.error_class, "desc": self.desc}


# name -> (function, {argument: (type, required)})
COMMANDS = {}
_TYPES = {"str": str, "int": int, "bool": bool, "list": list}
_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array"}


def command(name, **schema):
    def register(fn):
        COMMANDS[name] = (fn, schema)
        return fn
    return register


def execute(machine, name, arguments=None):
    arguments = dict(arguments or {})
    entry = COMMANDS.get(name)
    if entry is None:
        raise QMPError(f"The command {name} has not been found", "CommandNotFound")
    fn, schema = entry
    for arg in arguments:
        if arg not in schema:
            raise QMPError(f"Parameter '{arg}' is unexpected")
    for arg, (atype, required) in schema.items():
        if arg not in arguments:
            if required:
                raise QMPError(f"Parameter '{arg}' is missing")
            continue
        value = arguments[arg]
        expected = _TYPES[atype]
        if not isinstance(value, expected) or (atype == "int" and isinstance(value, bool)):
            raise QMPError(f"Invalid parameter type for '{arg}', expected: {_TYPE_NAMES[atype]}")
    return fn(machine, **{k.replace("-", "_"): v for k, v in arguments.items()})


def _sev(machine, missing="SEV feature is not available"):
    if machine.sev is None:
        raise QMPError(missing)
    return machine.sev


@command("query-sev")
def qmp_query_sev(machine):
    return machine.query_sev()


@command("query-sev-launch-measure")
def qmp_query_sev_launch_measure(machine):
    from pysev.sev.launch import SevError
    try:
        return _sev(machine).query_launch_measure()
    except SevError as exc:
        raise QMPError(str(exc)) from None


@command("sev-inject-launch-secret", **{"packet-header": ("str", True), "secret": ("str", True),
                                        "gpa": ("int", False)})
def qmp_sev_inject_launch_secret(machine, packet_header, secret, gpa=None):
    from pysev.sev.launch import SevError
    sev = _sev(machine, "SEV not enabled for guest")
    try:
        where, length = sev.inject_secret(packet_header, secret, gpa)
    except SevError as exc:
        raise QMPError(str(exc)) from None
    machine.cpu.invalidate_code(where, length)   # the guest may have code cached there
    return {}


@command("query-sev-capabilities")
def qmp_query_sev_capabilities(machine):
    _sev(machine)
    raise QMPError("query-sev-capabilities is not supported by sev-emulated yet "
                   "(it has no platform certificate chain)")


@command("query-sev-attestation-report", mnonce=("str", True))
def qmp_query_sev_attestation_report(machine, mnonce):
    _sev(machine)
    try:
        raw = base64.b64decode(mnonce, validate=True)
    except (binascii.Error, ValueError):
        raise QMPError("SEV: failed to decode mnonce") from None
    if len(raw) != 16:
        raise QMPError(f"SEV: mnonce must be 16 bytes (got {len(raw)})")
    raise QMPError("query-sev-attestation-report is not supported by sev-emulated yet")


# ---- the run state: cont, stop, system_reset, quit ------------------------------------------
#
# These run on the machine thread (the QMP server queues them there); the events they emit
# reach the clients before the command's return, as in QEMU.

_NEEDS_RESET = ("shutdown", "internal-error", "guest-panicked")


@command("cont")
def qmp_cont(machine):
    state = getattr(machine, "run_state", "running")
    if state in _NEEDS_RESET:
        raise QMPError("Resetting the Virtual Machine is required")
    if machine.sev is not None:
        machine.sev.vm_running()               # LAUNCH_FINISH on the first transition
    if state != "running":
        machine.run_state = "running"
        machine.emit_event("RESUME")
    return {}


@command("stop")
def qmp_stop(machine):
    if getattr(machine, "run_state", "running") == "running":
        machine.run_state = "paused"
        machine.emit_event("STOP")
    return {}


@command("query-status")
def qmp_query_status(machine):
    state = getattr(machine, "run_state", "running")
    return {"status": state, "singlestep": False, "running": state == "running"}


@command("system_reset")
def qmp_system_reset(machine):
    machine.reset()
    machine.emit_event("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
    if machine.run_state != "running":
        machine.run_state = "prelaunch"        # as QEMU after a reset of a stopped machine
    return {}


@command("quit")
def qmp_quit(machine):
    machine.quit_requested = True              # Machine.run ends with reason "quit"
    machine.emit_shutdown("host-qmp-quit")
    machine.run_state = "shutdown"
    return {}


# ---- the monitor itself ---------------------------------------------------------------------

QEMU_VERSION = (7, 2, 0)                       # the QEMU whose behaviour pysev follows


def greeting_version():
    """VersionInfo: the QEMU version pysev models and the pysev package."""
    from pysev import __version__
    major, minor, micro = QEMU_VERSION
    return {"qemu": {"micro": micro, "minor": minor, "major": major},
            "package": f"pysev {__version__}"}


@command("qmp_capabilities", enable=("list", False))
def qmp_qmp_capabilities(machine, enable=None):
    # the server negotiates per connection; called directly there is nothing to do
    if enable:
        raise QMPError(f"Capability '{enable[0]}' not available")
    return {}


@command("query-version")
def qmp_query_version(machine):
    return greeting_version()


@command("query-commands")
def qmp_query_commands(machine):
    return [{"name": name} for name in COMMANDS]


@command("query-kvm")
def qmp_query_kvm(machine):
    return {"enabled": False, "present": False}


@command("query-target")
def qmp_query_target(machine):
    return {"arch": "x86_64"}


@command("query-cpus-fast")
def qmp_query_cpus_fast(machine):
    return [{"thread-id": getattr(machine, "thread_id", 0),
             "props": {"core-id": 0, "thread-id": 0, "socket-id": 0},
             "qom-path": CPU_PATH, "cpu-index": 0, "target": "x86_64"}]


# ---- QOM: qom-list, qom-get -----------------------------------------------------------------

CPU_PATH = "/machine/unattached/device[0]"
_QOM_TYPE_NAMES = {"str": "string", "bool": "bool", "uint32": "uint32", "uint64": "uint64",
                   "OnOffAuto": "OnOffAuto"}
_QOM_EMPTY = {"str": "", "bool": False, "uint32": 0, "uint64": 0, "OnOffAuto": "auto"}


def _machine_qom_type(machine):
    kind = "q35" if machine.machine_type == "q35" else "i440fx"
    major, minor, _ = QEMU_VERSION
    return f"pc-{kind}-{major}.{minor}-machine"


def _qom_tree(machine):
    """path -> (type name, [(property, type, getter)]) for the objects pysev has."""
    tree = {}

    def child(path, name, type_name):
        return (name, f"child<{type_name}>", lambda: path)

    objects = getattr(machine, "objects", {})
    enc = machine.sev.obj if machine.sev is not None else None
    mtype = _machine_qom_type(machine)
    cpu_type = f"{machine.cpu_model_name}-x86_64-cpu"
    tree["/"] = ("container", [child("/objects", "objects", "container"),
                               child("/machine", "machine", mtype)])
    tree["/objects"] = ("container", [child(f"/objects/{oid}", oid, obj.type_name)
                                      for oid, obj in objects.items()])
    for oid, obj in objects.items():
        tree[f"/objects/{oid}"] = (obj.type_name, [
            (name, _QOM_TYPE_NAMES.get(prop.type, prop.type),
             (lambda obj=obj, name=name, prop=prop: _object_prop(machine, obj, name, prop)))
            for name, prop in sorted(obj.all_properties().items())])
    enc_id = enc.id if enc is not None else ""
    tree["/machine"] = (mtype, [
        child("/machine/unattached", "unattached", "container"),
        ("memory-encryption", "string", lambda: enc_id),
        ("confidential-guest-support", "link<confidential-guest-support>",
         lambda: f"/objects/{enc_id}" if enc_id else ""),
        ("firmware", "string", lambda: getattr(machine, "bios_path", None) or ""),
    ])
    tree["/machine/unattached"] = ("container", [child(CPU_PATH, "device[0]", cpu_type)])
    tree[CPU_PATH] = (cpu_type, [("phys-bits", "uint32", lambda: machine.cpu.phys_bits)])
    return tree


def _object_prop(machine, obj, name, prop):
    """A property's value as qom-get shows it: never key bytes (tik/tek are file paths)."""
    value = obj.get(name)
    if value is None and machine.sev is not None and machine.sev.obj is obj:
        if name == "cbitpos":
            value = machine.sev.cbitpos
        elif name == "reduced-phys-bits":
            value = machine.sev.reduced_phys_bits
    if value is None:
        value = _QOM_EMPTY.get(prop.type, "")
    return value


def _qom_resolve(machine, path):
    tree = _qom_tree(machine)
    if path.startswith("/"):
        key = path.rstrip("/") or "/"
        if key in tree:
            return key, tree[key]
    elif path:
        found = [p for p in tree if p.endswith("/" + path)]
        if len(found) == 1:
            return found[0], tree[found[0]]
        if len(found) > 1:
            raise QMPError(f"Path '{path}' is ambiguous")
    raise QMPError(f"Device '{path}' not found", "DeviceNotFound")


@command("qom-list", path=("str", True))
def qmp_qom_list(machine, path):
    _key, (type_name, props) = _qom_resolve(machine, path)
    return [{"name": "type", "type": "string"}] + [
        {"name": name, "type": ptype} for name, ptype, _get in props]


@command("qom-get", path=("str", True), property=("str", True))
def qmp_qom_get(machine, path, property):
    _key, (type_name, props) = _qom_resolve(machine, path)
    if property == "type":
        return type_name
    for name, _ptype, get in props:
        if name == property:
            return get()
    raise QMPError(f"Property '{type_name}.{property}' not found")


# ---- memory: pmemsave, memsave --------------------------------------------------------------

_CHUNK = 64 * 1024
_U64 = (1 << 64) - 1


def _check_u64(name, value):
    if not 0 <= value <= _U64:
        raise QMPError(f"Parameter '{name}' expects uint64")


def _write_file(filename, pieces):
    try:
        f = open(filename, "wb")
    except OSError as exc:
        raise QMPError(f"Could not open '{filename}': {exc.strerror}") from None
    try:
        with f:
            for data in pieces:
                f.write(data)
    except OSError:
        raise QMPError("An IO error has occurred") from None


@command("pmemsave", val=("int", True), size=("int", True), filename=("str", True))
def qmp_pmemsave(machine, val, size, filename):
    _check_u64("val", val)
    _check_u64("size", size)

    def pieces():
        addr, left = val, size
        while left:
            n = min(left, _CHUNK)
            yield machine.read_phys(addr & _U64, n)
            addr, left = addr + n, left - n
    _write_file(filename, pieces())
    return {}


# ---- migration to a file: a pysev snapshot ---------------------------------------------------

@command("migrate", uri=("str", True), blk=("bool", False), inc=("bool", False),
         detach=("bool", False), resume=("bool", False))
def qmp_migrate(machine, uri, blk=False, inc=False, detach=False, resume=False):
    """Save the machine to a file with QEMU's migrate command (``file:`` URIs, as in
    QEMU 8.2+); ``pysev run --load-snapshot FILE`` (or Machine.load_snapshot) takes it back.

    QEMU refuses to migrate a launched SEV guest (its migration blocker): KVM cannot
    read encrypted guest memory without the SEV SEND_* commands.  pysev holds guest
    memory in plaintext and writes no keys, so a snapshot is safe to take and allowed:
    teaching from a snapshot of an SEV guest is what it is for.
    """
    import time
    from pysev.snapshot import SnapshotError

    if blk or inc or resume:
        raise QMPError("Parameter 'blk', 'inc' and 'resume' are not supported: pysev "
                       "has no block devices")
    if not uri.startswith("file:"):
        raise QMPError("Parameter 'uri' expects a valid migration protocol (pysev "
                       "supports file:PATH)")
    start = time.monotonic()
    machine.migration = {"status": "active"}
    try:
        machine.save_snapshot(uri[5:])
    except SnapshotError as exc:
        machine.migration = {"status": "failed", "error-desc": str(exc)}
        raise QMPError(str(exc)) from None
    except BaseException as exc:                # never leave query-migrate at "active"
        machine.migration = {"status": "failed", "error-desc": f"internal error: {exc}"}
        raise
    machine.migration = {"status": "completed",
                         "total-time": int((time.monotonic() - start) * 1000)}
    was_running = machine.run_state == "running"
    machine.run_state = "postmigrate"               # as QEMU's source, running or not
    if was_running:
        machine.emit_event("STOP")
    return {}


@command("query-migrate")
def qmp_query_migrate(machine):
    return dict(getattr(machine, "migration", None) or {})


def debug_translate(machine, linear):
    """The physical address of a linear (virtual) address as the CPU maps it now,
    or None; the walk sets no accessed or dirty bits."""
    from pysev.mem.paging import ACCESS_READ, PageFault, ReadOnlyView, walk
    cpu = machine.cpu
    cfg = getattr(cpu, "paging", None)
    if cfg is None or not cfg.levels:
        return linear & 0xFFFFFFFF
    try:
        phys, _private, _global = walk(ReadOnlyView(machine.mem), cpu.cr3, linear, ACCESS_READ,
                                       False, cfg, ac=True)
    except PageFault:
        return None
    return phys


def read_virtual(machine, linear, size):
    """Bytes at a linear address, page by page; None when a page is not mapped."""
    out = bytearray()
    while size:
        n = min(size, 0x1000 - (linear & 0xFFF))
        phys = debug_translate(machine, linear & _U64)
        if phys is None:
            return None
        out += machine.read_phys(phys, n)
        linear, size = linear + n, size - n
    return bytes(out)


@command("memsave", val=("int", True), size=("int", True), filename=("str", True),
         **{"cpu-index": ("int", False)})
def qmp_memsave(machine, val, size, filename, cpu_index=0):
    _check_u64("val", val)
    _check_u64("size", size)
    if cpu_index != 0:
        raise QMPError("Parameter 'cpu-index' expects a CPU number")

    def pieces():
        addr, left = val, size
        while left:
            n = min(left, _CHUNK)
            piece = read_virtual(machine, addr & _U64, n)
            if piece is None:                   # QEMU too leaves what was written
                raise QMPError(f"Invalid addr 0x{val:016x}/size {size} specified")
            yield piece
            addr, left = addr + n, left - n
    _write_file(filename, pieces())
    return {}


# ---- human-monitor-command --------------------------------------------------------------------

@command("human-monitor-command", **{"command-line": ("str", True), "cpu-index": ("int", False)})
def qmp_human_monitor_command(machine, command_line, cpu_index=0):
    from .hmp import run_hmp
    if cpu_index != 0:
        raise QMPError("Parameter 'cpu-index' expects a CPU number")
    return run_hmp(machine, command_line)
