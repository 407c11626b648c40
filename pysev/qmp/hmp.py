"""The human monitor (HMP) commands behind QMP's human-monitor-command.

A small subset of QEMU's HMP with its output format, lines ended by CR LF as
QEMU's monitor sends them:

    info sev | registers | status | version
    xp /FMT ADDR        physical memory (FMT: count, format x d u o c i, size b h w g)
    x /FMT ADDR         linear (virtual) memory, through the guest's page tables
    stop, cont (c), system_reset, quit (q)
    help (?)

ADDR is an expression: numbers (0x.. hex, 0.. octal, decimal), $REG (for
example $rip, $eax, $pc) and the operators + - * / with parentheses.
"""

from .commands import QMPError, execute, greeting_version, read_virtual

_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8, "L": 8}
_FORMATS = "xduoci"


class HMPError(Exception):
    """A command line error; the message is printed with a hint to 'help CMD'."""


def run_hmp(machine, line):
    """Run one HMP command line; returns its output text."""
    out = []
    text = line.strip()
    if not text:
        return ""
    name, _, rest = text.partition(" ")
    rest = rest.strip()
    handler = _COMMANDS.get(name) or _COMMANDS.get(_ALIASES.get(name, ""))
    if handler is None:
        return _lines([f"unknown command: '{name}'"])
    try:
        handler(machine, rest, out)
    except HMPError as exc:
        canonical = _ALIASES.get(name, name)
        out += [str(exc), f'Try "help {canonical}" for more information']
    except QMPError as exc:
        out.append(f"Error: {exc.desc}")
    return _lines(out)


def _lines(lines):
    return "".join(f"{line}\r\n" for line in lines)


# ---- info ---------------------------------------------------------------------------------

def _info(machine, rest, out):
    what = rest.split()
    if not what:
        out += [f"info {name:<10} -- {text}" for name, (_fn, text) in _INFO.items()]
        return
    entry = _INFO.get(what[0])
    if entry is None:
        out.append(f"unknown command: 'info {rest}'")
        return
    entry[0](machine, out)


def _info_sev(machine, out):
    info = machine.query_sev()
    if not info.get("enabled"):
        out.append("SEV is not enabled")
        return
    policy = info.get("policy", 0)
    out += [f"SEV type: {info.get('sev-type', 'sev')}",
            f"state: {info['state']}",
            f"build: {info['build-id']}",
            f"api version: {info['api-major']}.{info['api-minor']}",
            f"handle: {info.get('handle', 0)}",
            f"debug: {'off' if policy & 1 else 'on'}",
            f"key-sharing: {'off' if policy & 2 else 'on'}"]


def _info_registers(machine, out):
    from pysev.trace import format_cpu_state
    out += ["", "CPU#0"] + format_cpu_state(machine.cpu, ccop=False).rstrip("\n").split("\n")


def _info_status(machine, out):
    state = getattr(machine, "run_state", "running")
    if state == "running":
        out.append("VM status: running")
    elif state == "paused":
        out.append("VM status: paused")
    else:
        out.append(f"VM status: paused ({state})")


def _info_version(machine, out):
    v = greeting_version()
    q = v["qemu"]
    out.append(f"{q['major']}.{q['minor']}.{q['micro']} ({v['package']})")


_INFO = {
    "registers": (_info_registers, "show the cpu registers"),
    "sev": (_info_sev, "show SEV information"),
    "status": (_info_status, "show the current VM status (running|paused)"),
    "version": (_info_version, "show the version of QEMU"),
}


# ---- x, xp ----------------------------------------------------------------------------------

def _parse_format(machine, rest, cmd):
    """'/FMT ADDR' -> (count, format, size, address text)."""
    last_format, last_size = getattr(machine, "_hmp_last_format", ("x", 4))
    count, fmt, size = 1, None, None
    if rest.startswith("/"):
        i = 1
        digits = ""
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        if digits:
            count = int(digits)
        while i < len(rest) and not rest[i].isspace():
            c = rest[i]
            if c in _FORMATS:
                fmt = c
            elif c in _SIZES:
                size = _SIZES[c]
            else:
                raise HMPError(f"invalid char in format: '{c}'")
            i += 1
        rest = rest[i:].strip()
    fmt = fmt or last_format
    if fmt != "i":
        size = size or last_size
        last_size = size
    machine._hmp_last_format = (fmt, last_size)
    return count, fmt, size, rest


def _xp(machine, rest, out):
    _dump(machine, rest, out, physical=True)


def _x(machine, rest, out):
    _dump(machine, rest, out, physical=False)


def _dump(machine, rest, out, physical):
    cmd = "xp" if physical else "x"
    count, fmt, size, expr = _parse_format(machine, rest, cmd)
    addr, end = _Expr(machine, expr).parse()
    if end.strip():
        raise HMPError(f"{cmd}: extraneous characters at the end of line")
    addr &= (1 << 64) - 1
    if fmt == "i":
        _disassemble(machine, addr, count, physical, out)
        return
    length = size * count
    if fmt == "c":
        size = 1
    line_size = 8 if size == 1 else 16
    digits = {"x": size * 2, "o": -(-size * 8 // 3), "d": -(-size * 80 // 33),
              "u": -(-size * 80 // 33)}.get(fmt, 0)
    limit = 1 << getattr(machine.cpu, "phys_bits", 52)
    while length > 0:
        n = min(length, line_size)
        head = f"{addr:016x}:"
        if physical:
            data = machine.read_phys(addr, n) if addr + n <= limit else None
        else:
            data = read_virtual(machine, addr, n)
        if data is None:
            out.append(f"{head} Cannot access memory")
            break
        items = []
        for i in range(0, n, size):
            v = int.from_bytes(data[i:i + size], "little")
            if fmt == "x":
                items.append(f"0x{v:0{digits}x}")
            elif fmt == "o":
                items.append(f"{'0' + format(v, 'o') if v else '0':>{digits}}")
            elif fmt in "du":
                if fmt == "d" and size == 8 and v >> 63:
                    v -= 1 << 64
                items.append(f"{v:>{digits}}")
            else:
                items.append(_char(v))
        out.append(head + "".join(" " + item for item in items))
        addr += n
        length -= n


def _char(v):
    escapes = {0x5C: "\\\\", 0x27: "\\'", 0x0A: "\\n", 0x0D: "\\r"}
    if v in escapes:
        return f"'{escapes[v]}'"
    if 0x20 <= v < 0x7F:
        return f"'{chr(v)}'"
    return f"'\\x{v:02x}'"


def _disassemble(machine, addr, count, physical, out):
    from decoder.decode import decode
    from pysev.trace import format_insn
    data = machine.read_phys(addr, 15 * count) if physical else \
        read_virtual(machine, addr, 15 * count)
    if data is None:
        out.append(f"{addr:016x}: Cannot access memory")
        return
    bits = machine.cpu.mode.bits
    for n, rec in enumerate(decode(data, addr, bits)):
        if n == count:
            break
        out += format_insn(rec.ip, rec.raw, rec.text).rstrip("\n").split("\n")
        if rec.invalid:
            break


class _Expr:
    """HMP address expressions: numbers, $registers, + - * / and parentheses."""

    _REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

    def __init__(self, machine, text):
        self.machine, self.text, self.pos = machine, text, 0

    def parse(self):
        value = self._sum()
        return value, self.text[self.pos:]

    def _peek(self):
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _sum(self):
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            rhs = self._product()
            value = value + rhs if op == "+" else value - rhs
        return value

    def _product(self):
        value = self._unary()
        while self._peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            rhs = self._unary()
            if op == "/" and rhs == 0:
                raise HMPError("division by zero")
            value = value * rhs if op == "*" else value // rhs
        return value

    def _unary(self):
        c = self._peek()
        if c == "-":
            self.pos += 1
            return -self._unary()
        if c == "+":
            self.pos += 1
            return self._unary()
        if c == "(":
            self.pos += 1
            value = self._sum()
            if self._peek() != ")":
                raise HMPError("')' expected")
            self.pos += 1
            return value
        if c == "$":
            return self._register()
        if c == "":
            raise HMPError("unexpected end of expression")
        if c.isdigit():
            return self._number()
        raise HMPError(f"invalid char '{c}' in expression")

    def _number(self):
        start = self.pos
        text = self.text
        while self.pos < len(text) and (text[self.pos].isalnum()):
            self.pos += 1
        word = text[start:self.pos]
        try:
            if word[:2].lower() == "0x":
                return int(word[2:], 16)
            if len(word) > 1 and word[0] == "0":
                return int(word[1:], 8)
            return int(word, 10)
        except ValueError:
            raise HMPError(f"invalid number '{word}'") from None

    def _register(self):
        self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum()
                                             or self.text[self.pos] == "_"):
            self.pos += 1
        name = self.text[start:self.pos].lower()
        cpu = self.machine.cpu
        if name in ("pc", "rip", "eip", "ip"):
            mask = {"eip": 0xFFFFFFFF, "ip": 0xFFFF}.get(name, (1 << 64) - 1)
            if name == "pc":                           # QEMU: the linear address of the PC
                return (cpu.seg_base[1] + cpu.rip) & ((1 << 64) - 1)
            return cpu.rip & mask
        if name in self._REGS:
            return cpu.regs[self._REGS.index(name)]
        if len(name) == 3 and name[0] == "e" and ("r" + name[1:]) in self._REGS:
            return cpu.regs[self._REGS.index("r" + name[1:])] & 0xFFFFFFFF
        for n in (0, 2, 3, 4):
            if name == f"cr{n}":
                return getattr(cpu, name)
        raise HMPError(f"unknown register '{name}'" if name else
                       "unexpected end of expression")


# ---- commands that are QMP commands --------------------------------------------------------

def _qmp_alias(qmp_name):
    def run(machine, rest, out):
        if rest:
            raise HMPError(f"{qmp_name}: extraneous characters at the end of line")
        execute(machine, qmp_name, {})
    return run


def _help(machine, rest, out):
    if rest:
        name = _ALIASES.get(rest, rest)
        text = _HELP.get(name)
        out.append(text if text else f"unknown command: '{rest}'")
        return
    out += list(_HELP.values())


_COMMANDS = {
    "info": _info,
    "xp": _xp,
    "x": _x,
    "stop": _qmp_alias("stop"),
    "cont": _qmp_alias("cont"),
    "system_reset": _qmp_alias("system_reset"),
    "quit": _qmp_alias("quit"),
    "help": _help,
}
_ALIASES = {"c": "cont", "q": "quit", "?": "help", "s": "stop"}
_HELP = {
    "cont": "cont|c  -- resume emulation",
    "help": "help|? [cmd] -- show the help",
    "info": "info [subcommand] -- show various information about the system state",
    "quit": "quit|q  -- quit the emulator",
    "stop": "stop|s  -- stop emulation",
    "system_reset": "system_reset  -- reset the system",
    "x": "x /fmt addr -- virtual memory dump starting at 'addr'",
    "xp": "xp /fmt addr -- physical memory dump starting at 'addr'",
}
