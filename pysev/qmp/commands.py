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
_TYPES = {"str": str, "int": int, "bool": bool}
_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean"}


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


@command("cont")
def qmp_cont(machine):
    if machine.sev is not None:
        machine.sev.vm_running()               # LAUNCH_FINISH
    machine.paused = False
    return {}


@command("stop")
def qmp_stop(machine):
    machine.paused = True
    return {}


@command("query-status")
def qmp_query_status(machine):
    paused = getattr(machine, "paused", False)
    return {"running": not paused, "singlestep": False,
            "status": "paused" if paused else "running"}
