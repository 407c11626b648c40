"""Checks of snapshot.json: every value's type and range, before any reaches a machine."""

from .layout import CPU_SCALARS, RUN_STATES, SERIAL_FIELDS, U64


def tuples(value):
    """JSON lists back to the nested tuples of random.Random.getstate()."""
    return tuple(tuples(v) for v in value) if isinstance(value, list) else value


class Bad(Exception):
    """A value of snapshot.json that is missing or wrong; str() names it."""


def _get(obj, key, where):
    if not isinstance(obj, dict):
        raise Bad(f"{where or 'snapshot.json'} is not an object")
    if key not in obj:
        raise Bad(f"bad or missing '{where + '.' if where else ''}{key}'")
    return obj[key]


def _want(ok, where, what):
    if not ok:
        raise Bad(f"{where} is not {what}")


def _is_int(v, lo=0, hi=U64):
    return type(v) is int and lo <= v < hi


def _check_int(obj, key, where, lo=0, hi=U64, none=False):
    v = _get(obj, key, where)
    if none and v is None:
        return
    _want(_is_int(v, lo, hi), f"{where}.{key}", _range(lo, hi) + (" or null" if none else ""))


def _range(lo, hi):
    return "a 64-bit unsigned integer" if (lo, hi) == (0, U64) else f"an integer in {lo}..{hi - 1}"


def _check_type(obj, key, where, kind, none=False):
    v = _get(obj, key, where)
    if none and v is None:
        return
    names = {str: "a string", bool: "true or false", dict: "an object", list: "a list"}
    _want(type(v) is kind, f"{where}.{key}", names[kind] + (" or null" if none else ""))


def _check_ints(obj, key, where, length=None, lo=0, hi=U64):
    v = _get(obj, key, where)
    _want(isinstance(v, list) and (length is None or len(v) == length)
          and all(_is_int(x, lo, hi) for x in v), f"{where}.{key}",
          f"a list of {'' if length is None else f'{length} '}"
          f"{_range(lo, hi).replace('a 64-bit', '64-bit').replace('integer', 'integers')}"
          .replace("an integers", "integers"))


def _check_hex(obj, key, where, none=False):
    v = _get(obj, key, where)
    if none and v is None:
        return
    try:
        bytes.fromhex(v)
    except (TypeError, ValueError):
        raise Bad(f"{where}.{key} is not a hex string") from None


def check_state(state):
    """Raise Bad naming the first missing or wrong value of a parsed snapshot.json."""
    from pysev.machine import COM_PORTS

    config = _get(state, "config", "")
    w = "config"
    for key in ("machine", "cpu"):
        _check_type(config, key, w, str)
    _check_int(config, "memory", w, 0, 1 << 52)
    for key in ("bios_path", "memory_encryption", "append"):
        _check_type(config, key, w, str, none=True)
    _check_type(config, "no_reboot", w, bool)
    ports = _get(config, "serial_ports", w)
    _want(isinstance(ports, list) and all(p in COM_PORTS and type(p) is int for p in ports)
          and ports == sorted(set(ports), key=COM_PORTS.index), "config.serial_ports",
          "a list of COM port addresses in order")
    _check_int(config, "debugcon_port", w, 1, 0x10000, none=True)
    objects = _get(config, "objects", w)
    _want(isinstance(objects, list) and all(
        isinstance(o, list) and len(o) == 3 and type(o[0]) is str and type(o[1]) is str
        and isinstance(o[2], dict) and all(type(v) is str for v in o[2].values())
        for o in objects), "config.objects", "a list of [type, id, {property: value}]")

    cpu = _get(state, "cpu", "")
    w = "cpu"
    for name in CPU_SCALARS:
        if name == "halted":
            _check_type(cpu, name, w, bool)
        elif name == "interrupt_shadow":
            _check_int(cpu, name, w, none=True)
        elif name == "cpl":
            _check_int(cpu, name, w, 0, 4)
        elif name in ("phys_bits", "sev_c_bit", "sev_reduced_bits"):
            _check_int(cpu, name, w, 0, 64)
        else:
            _check_int(cpu, name, w)
    _check_ints(cpu, "regs", w, 16)
    _check_ints(cpu, "seg_sel", w, 6, 0, 0x10000)
    _check_ints(cpu, "seg_base", w, 6)
    _check_ints(cpu, "seg_limit", w, 6, 0, 1 << 32)
    _check_ints(cpu, "seg_attr", w, 6, 0, 1 << 32)
    _check_ints(cpu, "dr", w, 8)
    _check_ints(cpu, "gdtr", w, 2)
    _check_ints(cpu, "idtr", w, 2)
    _check_ints(cpu, "ldtr", w, 4)
    _check_ints(cpu, "tr", w, 4)
    msr = _get(cpu, "msr", w)
    _want(isinstance(msr, list) and all(isinstance(m, list) and len(m) == 2
                                        and _is_int(m[0], 0, 1 << 32) and _is_int(m[1])
                                        for m in msr), "cpu.msr", "a list of [index, value]")
    mode = _get(cpu, "mode", w)
    _want(isinstance(mode, list) and len(mode) == 6 and mode[0] in (16, 32, 64)
          and mode[1] in (2, 4, 8) and type(mode[2]) is bool and _is_int(mode[3], 0, 4)
          and type(mode[4]) is bool and type(mode[5]) is bool, "cpu.mode",
          "[bits, stack size, long, cpl, pe, segcheck]")
    random = _get(cpu, "random", w)
    if random is not None:
        _check_int(random, "seed", "cpu.random", none=True)
        try:
            import random as _random
            _random.Random().setstate(tuples(_get(random, "state", "cpu.random")))
        except (TypeError, ValueError, OverflowError):
            raise Bad("cpu.random.state is not a random generator state") from None

    devices = _get(state, "devices", "")
    serial = _get(devices, "serial", "devices")
    _want(isinstance(serial, list), "devices.serial", "a list")
    for n, uart in enumerate(serial):
        for name in SERIAL_FIELDS:
            _check_int(uart, name, f"devices.serial[{n}]", 0,
                       U64 if name == "tx_count" else 0x10000)
        _check_ints(uart, "rx", f"devices.serial[{n}]", None, 0, 256)
    post = _get(devices, "post", "devices")
    _check_int(post, "value", "devices.post", 0, 256, none=True)
    _check_ints(post, "history", "devices.post", None, 0, 256)
    _check_int(post, "writes", "devices.post")
    fw = _get(devices, "fw_cfg", "devices")
    for name in ("current", "offset", "dma_addr"):
        _check_int(fw, name, "devices.fw_cfg")
    writable = _get(fw, "writable", "devices.fw_cfg")
    _want(isinstance(writable, dict), "devices.fw_cfg.writable", "an object")
    for key in writable:
        _want(key.isdigit() and int(key) < 0x10000, "devices.fw_cfg.writable",
              "keyed by fw_cfg selectors")
        _check_hex(writable, key, "devices.fw_cfg.writable")

    sev = _get(state, "sev", "")
    if sev is not None:
        w = "sev"
        _check_int(sev, "state", w, 0, len(_sev_state_names()))
        _check_int(sev, "policy", w, 0, 1 << 32)
        _check_int(sev, "handle", w, 0, 1 << 32)
        _check_ints(sev, "api", w, 3, 0, 256)
        _check_hex(sev, "launch_digest", w)
        _check_hex(sev, "measure", w, none=True)
        updates = _get(sev, "updates", w)
        _want(isinstance(updates, list) and all(
            isinstance(u, list) and len(u) == 2 and all(_is_int(x) for x in u)
            for u in updates), "sev.updates", "a list of [address, length]")
        _check_int(sev, "vmsa_count", w)
        blockers = _get(sev, "migration_blockers", w)
        _want(isinstance(blockers, list) and all(type(b) is str for b in blockers),
              "sev.migration_blockers", "a list of strings")

    run = _get(state, "run", "")
    _want(_get(run, "state", "run") in RUN_STATES, "run.state",
          "a run state (" + ", ".join(RUN_STATES) + ")")
    _check_type(run, "halted", "run", bool)
    _check_type(run, "stop_reason", "run", str, none=True)
    _check_int(run, "resets", "run")
    _check_int(run, "triple_faults", "run")




def _sev_state_names():
    from pysev.sev.firmware import STATE_NAMES
    return STATE_NAMES
