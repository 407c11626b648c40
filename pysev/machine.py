"""A PC machine: memory map, firmware, port-I/O devices and a CPU, built from
QEMU-style options.

    from pysev import Machine
    m = Machine.from_args(["-bios", "OVMF.fd", "-m", "256M", "-serial", "stdio"])
    reason = m.run(max_insns=1_000_000)     # "count", "hlt", "triple-fault", ...
    print(m.state_dict()["regs"]["rip"], m.read_phys(0xFFFFFFF0, 16))

The memory map follows QEMU's ``q35`` and ``pc`` machines with ``-bios``:

* RAM from 0; the part below 4 GiB is the whole ``-m`` size when it is under
  2.75 GiB (``q35``) or 3.5 GiB (``pc``), otherwise 2 GiB (``q35``) or 3 GiB
  (``pc``), and the rest starts at 4 GiB;
* the legacy VGA window 0xA0000-0xBFFFF is left unmapped (it reads as all ones);
* the firmware image is ROM ending at 4 GiB, and its last 128 KiB (all of it,
  if smaller) also appear as ROM just below 1 MiB, ending at 0x100000.

Ports: a 16550 UART per ``-serial`` (COM1 0x3F8, COM2 0x2F8, COM3 0x3E8,
COM4 0x2E8), the debug console with ``-debugcon`` (port 0x402, OVMF's), the
POST port 0x80, fw_cfg (0x510/0x511, DMA at 0x514); unclaimed ports read as
all ones.
"""

import json
import math
import os
import queue
import re
import sys
import threading
import time

from pysev.devices import DebugCon, PortBus, Serial16550
from pysev.devices.post import PostPort
from pysev.trace import LOG_ITEMS, Tracer

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
FOUR_GIB = 1 << 32
DEFAULT_RAM = 128 * MiB                 # QEMU's default -m
MIN_RAM = 1 * MiB
RAM_ALIGN = 8 * KiB                     # QEMU rounds -m up to 8 KiB
BIOS_ALIAS_MAX = 128 * KiB              # the "isa-bios" window below 1 MiB
BIOS_MAX = 16 * MiB
VGA_HOLE = (0xA0000, 0xC0000)
LOW_MEM_END = 0x100000
COM_PORTS = (0x3F8, 0x2F8, 0x3E8, 0x2E8)
DEBUGCON_PORT = 0x402                   # OVMF's; QEMU's isa-debugcon defaults to 0xe9
POST_PORT = 0x80
FW_CFG_PORTS = (0x510, 12)              # selector, data, DMA address (0x510-0x51b)

DEFAULT_CPU = "EPYC-Milan"
DEFAULT_MACHINE = "q35"
MACHINE_TYPES = {
    "q35": "Standard PC (Q35 + ICH9, 2009)",
    "pc": "Standard PC (i440FX + PIIX, 1996)",
}
MACHINE_ALIASES = {"pc-q35": "q35", "pc-i440fx": "pc"}

# stop reasons of Machine.run
STOP_REASONS = {
    "count": "the instruction limit was reached",
    "hlt": "the guest halted",
    "stop": "stopped from the host",
    "triple-fault": "the guest triple faulted",
    "exception": "a guest exception could not be delivered",
    "until": "reached the stop address",
    "quit": "quit from the QMP monitor",
}

# with a QMP server, the CPU runs in slices of this many instructions so that requests
# are served soon even in a guest loop that is one translated block
RUN_SLICE = 20_000


class MachineError(Exception):
    """A machine that cannot be built: a bad option, a bad firmware file ...

    The message is complete and names what is wrong (``pysev run: -m: invalid
    size '12X'``).
    """

    def __init__(self, message):
        if not message.startswith("pysev run:"):
            message = f"pysev run: {message}"
        super().__init__(message)


# ---- option values ---------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([bkmgtpe]?)\s*$", re.I)
_SIZE_UNITS = {"b": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def parse_size(text, option="-m", default_unit="m"):
    """A QEMU size: a number with an optional B/K/M/G/T suffix, MiB without one
    (``-m 512``, ``-m 1.5G``, ``-m size=2G``).  Returns bytes."""
    value = text
    if option == "-m" and ("," in value or value.startswith("size=")):
        parts = value.split(",")
        sizes = [p[5:] for p in parts if p.startswith("size=")]
        others = [p for p in parts if not p.startswith("size=")]
        if not parts[0].startswith("size="):
            sizes.insert(0, parts[0])
            others = others[1:]
        if others:
            key = others[0].split("=")[0]
            raise MachineError(f"{option}: unsupported memory option '{key}'")
        if len(sizes) != 1:
            raise MachineError(f"{option}: invalid size '{text}'")
        value = sizes[0]
    m = _SIZE_RE.match(value)
    if not m:
        raise MachineError(f"{option}: invalid size '{text}'")
    number, unit = m.group(1), (m.group(2) or default_unit).lower()
    size = float(number) * _SIZE_UNITS[unit] if "." in number else int(number) * _SIZE_UNITS[unit]
    if not math.isfinite(size) or size != int(size):
        raise MachineError(f"{option}: invalid size '{text}'")
    return int(size)


def parse_int(text, option):
    try:
        value = int(text, 0)
    except ValueError:
        raise MachineError(f"{option}: invalid number '{text}'") from None
    if value < 0:
        raise MachineError(f"{option}: must not be negative: '{text}'")
    return value


def parse_log_items(text):
    """``-d`` items; returns a tuple, or None for ``help``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if "help" in items:
        return None
    for item in items:
        if item not in LOG_ITEMS:
            raise MachineError(f"-d: unknown log item '{item}' (try -d help)")
    return tuple(dict.fromkeys(items))


def log_items_help():
    width = max(len(name) for name in LOG_ITEMS)
    lines = ["Log items (comma separated, for -d):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in LOG_ITEMS.items()]
    return "\n".join(lines)


def machine_help():
    lines = ["Supported machines are:"]
    for name, text in MACHINE_TYPES.items():
        default = " (default)" if name == DEFAULT_MACHINE else ""
        lines.append(f"{name:<20} {text}{default}")
    return "\n".join(lines)


def parse_machine(text):
    """``-machine [type=]NAME[,accel=tcg]`` -> the machine type."""
    mtype = None
    for n, part in enumerate(text.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            if n:
                raise MachineError(f"-machine: unsupported machine option '{part}'")
            key, value = "type", part
        if key == "type":
            mtype = value
        elif key == "accel":
            if value != "tcg":
                raise MachineError(f"-machine: unsupported accelerator '{value}' "
                                   "(pysev is tcg-like)")
        elif key == "memory-encryption":
            if not value:
                raise MachineError("-machine: memory-encryption needs an object id")
        else:
            raise MachineError(f"-machine: unsupported machine property '{key}'")
    if mtype is None:
        return DEFAULT_MACHINE
    if mtype == "help":
        return "help"
    name = mtype
    for prefix, target in MACHINE_ALIASES.items():
        if name == prefix or name.startswith(prefix + "-"):
            name = target
    if name not in MACHINE_TYPES:
        raise MachineError(f"-machine: unsupported machine type '{mtype}' "
                           f"(supported: {', '.join(MACHINE_TYPES)})")
    return name


def machine_memory_encryption(text):
    """The memory-encryption=ID property of a -machine option, or None."""
    found = None
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq and key == "memory-encryption":
            found = value
    return found


def check_chardev(spec, option):
    """Validate a character device spec: stdio, mon:stdio, null, none, file:PATH."""
    if spec in ("stdio", "mon:stdio", "null", "none"):
        return spec
    if spec.startswith("file:") and len(spec) > 5:
        return spec
    raise MachineError(f"{option}: unsupported character device '{spec}' "
                       "(supported: stdio, file:PATH, null, none)")


# ---- the memory map --------------------------------------------------------------------------

def ram_split(machine, ram_size):
    """(bytes below 4 GiB, bytes above 4 GiB) as QEMU places them."""
    if machine == "q35":
        lowmem = 0x80000000 if ram_size >= 0xB0000000 else 0xB0000000
    else:                                    # pc: i440fx, gigabyte-aligned split
        lowmem = 0xC0000000 if ram_size >= 0xE0000000 else 0xE0000000
    below = min(ram_size, lowmem)
    return below, ram_size - below


def memory_layout(machine, ram_size, bios_size):
    """The regions of the physical address map, in the order they are built
    (largest RAM block last, since each new region grows one backing array).

    Each entry is ``(kind, start, size, name)``; kind is "ram", "rom" (the
    firmware) or "alias" (the firmware's tail below 1 MiB).
    """
    below, above = ram_split(machine, ram_size)
    alias = min(bios_size, BIOS_ALIAS_MAX)
    regions = [("rom", FOUR_GIB - bios_size, bios_size, "bios"),
               ("alias", LOW_MEM_END - alias, alias, "isa-bios")]
    low_end = min(below, LOW_MEM_END - alias)
    regions.append(("ram", 0, min(low_end, VGA_HOLE[0]), "ram-low"))
    if low_end > VGA_HOLE[1]:
        regions.append(("ram", VGA_HOLE[1], low_end - VGA_HOLE[1], "ram-c0000"))
    ram = []
    if below > LOW_MEM_END:
        ram.append(("ram", LOW_MEM_END, below - LOW_MEM_END, "ram-below-4g"))
    if above:
        ram.append(("ram", FOUR_GIB, above, "ram-above-4g"))
    ram.sort(key=lambda r: r[2])
    return regions + ram


def load_bios(path):
    """Read and check a firmware image; returns its bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read(BIOS_MAX + 1)
    except OSError as exc:
        raise MachineError(f"-bios: cannot read '{path}': {exc.strerror}") from None
    return check_bios(data, path)


def check_bios(data, name="image"):
    data = bytes(data)
    if not data:
        raise MachineError(f"-bios: '{name}' is empty")
    if len(data) > BIOS_MAX:
        raise MachineError(f"-bios: '{name}' is larger than {BIOS_MAX // MiB} MiB")
    if len(data) % (4 * KiB):
        raise MachineError(f"-bios: '{name}' is {len(data)} bytes, not a multiple of 4 KiB")
    return data


# ---- command-line parsing --------------------------------------------------------------------

# QEMU-style options: name -> takes a value
_OPTIONS = {
    "bios": True, "m": True, "cpu": True, "machine": True, "M": True, "serial": True,
    "debugcon": True, "display": True, "nographic": False, "no-reboot": False,
    "d": True, "D": True, "singlestep": False, "accel": True, "smp": True, "global": True,
    "max-insns": True, "state-json": True, "h": False, "help": False,
    "object": True, "kernel": True, "initrd": True, "append": True,
    "S": False, "qmp": True, "save-snapshot": True, "load-snapshot": True, "seed": True,
}
# the options that define the machine itself: with --load-snapshot they come from the file
MACHINE_DEFINING = ("bios", "m", "cpu", "machine", "M", "object", "kernel", "initrd", "append",
                    "global", "no-reboot")

RUN_USAGE = """\
usage: pysev run -bios FILE [options]

Run x86 firmware on a pysev PC (QEMU-style options).

  -bios FILE            firmware image, mapped to end at 4 GiB (size a multiple of 4 KiB)
  -object TYPE,id=ID,...   create an object, e.g. sev-emulated (-object TYPE,help lists
                        its properties)
  -machine ...,memory-encryption=ID   run the guest with SEV, configured by object ID
  -kernel FILE, -initrd FILE, -append CMDLINE   direct kernel boot (Linux boot
                        protocol, handed to the firmware through fw_cfg; measured
                        with kernel-hashes=on)
  -m SIZE               RAM size, MiB or with a K/M/G suffix (default 128M)
  -cpu MODEL            CPU model (default EPYC-Milan); -cpu help lists them
  -machine TYPE         q35 (default) or pc; -machine help lists them (-M too)
  -serial DEV           COM1..COM4, one per use: stdio (default), file:PATH, null, none
  -debugcon DEV         debug console on port 0x402: stdio, file:PATH, null
  -global isa-debugcon.iobase=PORT   move the debug console
  -display none, -nographic           accepted (pysev has no display)
  -no-reboot            stop on a triple fault instead of resetting
  -singlestep           translate one instruction at a time (as QEMU's -singlestep)
  -accel tcg[,one-insn-per-tb=on]     accepted; one-insn-per-tb=on means -singlestep
  -smp 1                accepted (one CPU)
  -d ITEMS              log items (in_asm,cpu,int,mmu,op,nochain); -d help lists them
  -D FILE               write the log to FILE instead of stderr
  --max-insns N         stop after N guest instructions
  --state-json FILE     at exit, write the CPU state and stop reason as JSON
  -qmp unix:PATH,server=on,wait=off   serve QMP on a UNIX socket (mode 0600) while
                        the guest runs (legacy spelling: unix:PATH,server,nowait)
  -S                    start paused: the QMP command cont starts the guest
  -seed N               RDRAND gives a deterministic sequence seeded with N (as QEMU's
                        -seed), so that runs repeat exactly; default: host randomness
  --save-snapshot FILE  at exit, save the whole machine to FILE (a pysev snapshot:
                        CPU, memory, devices, SEV state, never keys)
  --load-snapshot FILE  start from a snapshot instead of -bios: the machine's
                        configuration comes from FILE; give only host options
                        (-serial, -debugcon, -d, -D, -S, -qmp, --max-insns, ...)
"""


class RunOptions:
    """The parsed options of ``pysev run`` (see :func:`parse_args`)."""

    def __init__(self):
        self.bios = None
        self.memory = DEFAULT_RAM
        self.cpu = DEFAULT_CPU
        self.machine = DEFAULT_MACHINE
        self.serial = []
        self.debugcon = None
        self.debugcon_port = DEBUGCON_PORT
        self.no_reboot = False
        self.log_items = ()
        self.log_file = None
        self.single_step = False
        self.max_insns = None
        self.state_json = None
        self.objects = []             # (type, id, {property: value}) from -object
        self.memory_encryption = None
        self.kernel = self.initrd = self.append = None
        self.help = None              # "usage", "cpu", "machine", "d" or ("object", TYPE)
        self.start_paused = False     # -S
        self.qmp = None               # -qmp: the socket path
        self.save_snapshot = None
        self.load_snapshot = None
        self.seed = None
        self.given = []               # option names in the order given

    def snapshot_conflicts(self):
        """The machine-defining options given with --load-snapshot, as typed (-m, -bios).
        -seed is one: RDRAND's generator and its state come from the snapshot."""
        return ["-machine" if n == "M" else "-" + n
                for n in dict.fromkeys(self.given) if n in MACHINE_DEFINING + ("seed",)]

    def host_kwargs(self):
        """What Machine.load_snapshot takes besides the file: the host side."""
        return dict(serial=self.serial or ["stdio"], debugcon=self.debugcon or "null",
                    log_items=self.log_items, log=self.log_file, single_step=self.single_step,
                    max_insns=self.max_insns, state_json=self.state_json,
                    start_paused=self.start_paused, qmp=self.qmp)

    def machine_kwargs(self):
        return dict(bios=self.bios, memory=self.memory, cpu=self.cpu, machine=self.machine,
                    serial=self.serial or ["stdio"], debugcon=self.debugcon,
                    debugcon_port=self.debugcon_port, no_reboot=self.no_reboot,
                    log_items=self.log_items, log=self.log_file, single_step=self.single_step,
                    max_insns=self.max_insns, state_json=self.state_json,
                    objects=self.objects, memory_encryption=self.memory_encryption,
                    kernel=self.kernel, initrd=self.initrd, append=self.append,
                    start_paused=self.start_paused, qmp=self.qmp, seed=self.seed)


def supported_options():
    """The option names `pysev run` accepts, as a short comma-separated list."""
    names = [("--" if n in ("max-insns", "state-json", "save-snapshot", "load-snapshot")
              else "-") + n for n in _OPTIONS if n not in ("h", "help", "M")]
    return ", ".join(names)


def parse_args(argv):
    """Parse ``pysev run`` arguments into a :class:`RunOptions`.

    Options take one or two leading dashes, as in QEMU.  Raises
    :class:`MachineError` for an unknown or unsupported option.
    """
    opts = RunOptions()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            raise MachineError(f"unexpected argument '{arg}' (disk images are not supported)")
        name = arg[2:] if arg.startswith("--") else arg[1:]
        value = None
        if arg.startswith("--") and "=" in name:
            name, value = name.split("=", 1)
        if name not in _OPTIONS:
            raise MachineError(f"unknown option '{arg}' (supported: {supported_options()})")
        if _OPTIONS[name] and value is None:
            if i >= len(args):
                raise MachineError(f"option '{arg}' needs an argument")
            value = args[i]
            i += 1
        elif not _OPTIONS[name] and value is not None:
            raise MachineError(f"option '-{name}' takes no argument")
        opts.given.append("M" if name == "machine" else name)
        _apply(opts, name, value)
        if opts.help:
            return opts
    return opts


def _apply(opts, name, value):
    if name in ("h", "help"):
        opts.help = "usage"
    elif name == "bios":
        opts.bios = value
    elif name == "m":
        size = parse_size(value)
        if size < MIN_RAM:
            raise MachineError(f"-m: size '{value}' is too small (at least 1 MiB)")
        opts.memory = -(-size // RAM_ALIGN) * RAM_ALIGN
    elif name == "cpu":
        model, _, features = value.partition(",")
        if model == "help":
            opts.help = "cpu"
        elif features:
            raise MachineError(f"-cpu: CPU properties are not supported ('{features}')")
        elif not model:
            raise MachineError("-cpu: missing CPU model name")
        opts.cpu = model
    elif name in ("machine", "M"):
        mtype = parse_machine(value)
        if mtype == "help":
            opts.help = "machine"
        opts.machine = mtype
        enc = machine_memory_encryption(value)
        if enc is not None:
            opts.memory_encryption = enc
    elif name == "object":
        from pysev.sev import QomError, parse_object_option
        try:
            otype, oid, props = parse_object_option(value)
        except QomError as exc:
            raise MachineError(str(exc)) from None
        if props.pop("help", False):
            opts.help = ("object", otype)
            return
        if oid is None:
            raise MachineError(f"-object {otype}: Parameter 'id' is missing")
        if any(oid == o[1] for o in opts.objects):
            raise MachineError(f"-object {otype}: attempt to add duplicate property '{oid}' "
                               "to object (type 'container')")
        opts.objects.append((otype, oid, props))
    elif name in ("kernel", "initrd", "append"):
        setattr(opts, name, value)
    elif name == "serial":
        if len(opts.serial) == len(COM_PORTS):
            raise MachineError(f"-serial: at most {len(COM_PORTS)} serial ports")
        opts.serial.append(check_chardev(value, "-serial"))
    elif name == "debugcon":
        spec = check_chardev(value, "-debugcon")
        opts.debugcon = None if spec == "none" else spec
    elif name == "global":
        prop, eq, val = value.partition("=")
        if prop.lower() != "isa-debugcon.iobase" or not eq:
            raise MachineError(f"-global: unsupported property '{value}' "
                               "(supported: isa-debugcon.iobase=PORT)")
        port = parse_int(val, "-global isa-debugcon.iobase")
        if port > 0xFFFF:
            raise MachineError(f"-global isa-debugcon.iobase: port '{val}' is not below 0x10000")
        opts.debugcon_port = port
    elif name == "display":
        if value.split(",")[0] != "none":
            raise MachineError(f"-display: unsupported display '{value}' (pysev has none: "
                               "use -display none)")
    elif name == "nographic":
        pass                          # serial output goes to stdio anyway
    elif name == "no-reboot":
        opts.no_reboot = True
    elif name == "singlestep":
        opts.single_step = True
    elif name == "accel":
        accel, *props = value.split(",")
        if accel != "tcg":
            raise MachineError(f"-accel: unsupported accelerator '{accel}' (supported: tcg)")
        for prop in props:
            if prop in ("one-insn-per-tb=on", "one-insn-per-tb=true", "one-insn-per-tb"):
                opts.single_step = True
            elif prop not in ("one-insn-per-tb=off", "one-insn-per-tb=false"):
                raise MachineError(f"-accel: unsupported property '{prop}'")
    elif name == "smp":
        first = value.split(",")[0]
        count = first.partition("=")[2] if first.startswith("cpus=") else first
        if count != "1":
            raise MachineError(f"-smp: only one CPU is supported, not '{value}'")
    elif name == "d":
        items = parse_log_items(value)
        if items is None:
            opts.help = "d"
        else:
            opts.log_items = tuple(dict.fromkeys(opts.log_items + items))
    elif name == "D":
        opts.log_file = value
    elif name == "max-insns":
        opts.max_insns = parse_int(value, "--max-insns")
    elif name == "state-json":
        opts.state_json = value
    elif name == "S":
        opts.start_paused = True
    elif name == "seed":
        try:
            opts.seed = int(value, 0)
        except ValueError:
            raise MachineError(f"-seed: invalid seed number '{value}'") from None
        if not 0 <= opts.seed < 1 << 64:
            raise MachineError(f"-seed: invalid seed number '{value}'")
    elif name in ("save-snapshot", "load-snapshot"):
        setattr(opts, name.replace("-", "_"), value)
    elif name == "qmp":
        from pysev.qmp.server import parse_qmp_option
        if opts.qmp is not None:
            raise MachineError("-qmp: only one QMP monitor is supported")
        try:
            opts.qmp = parse_qmp_option(value)
        except ValueError as exc:
            raise MachineError(f"-qmp: {exc}") from None


# ---- character devices -----------------------------------------------------------------------

def _stdout_sink():
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        def emit(data):
            buffer.write(data)
            buffer.flush()
    else:                             # a text stdout (e.g. redirected in-process)
        def emit(data):
            sys.stdout.write(data.decode("latin-1"))
            sys.stdout.flush()
    return emit


# ---- the machine -----------------------------------------------------------------------------

_SEG_KEYS = ("es", "cs", "ss", "ds", "fs", "gs")
_GPR_KEYS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class Machine:
    """A PC with one x86 CPU, built from keyword options (or QEMU-style
    arguments with :meth:`from_args`).

    bios
        the firmware: a path, or the image's bytes
    memory
        RAM size in bytes (default 128 MiB)
    cpu
        CPU model name (``pysev.cpu.cpuid``), default "EPYC-Milan"
    machine
        "q35" (default) or "pc"; they differ only in where RAM is split
    serial
        for each COM port in turn: "stdio", "null", "none" (no UART),
        "file:PATH", or a sink (a callable taking bytes, or a binary stream);
        one value or a list
    debugcon
        None (no debug console, as QEMU without -debugcon), or a device as for
        serial; at port *debugcon_port* (0x402)
    no_reboot
        a triple fault stops the run; without it the machine resets and runs on
    log_items, log
        ``-d`` items and the stream or file name for the log (default stderr)
    single_step
        run one instruction per translated block (implied by the ``cpu`` item)
    max_insns
        the default instruction limit of :meth:`run`
    qmp
        a path: serve QMP on a UNIX socket there (:mod:`pysev.qmp.server`) while
        :meth:`run` runs the guest
    start_paused
        ``-S``: :meth:`run` waits for the QMP command ``cont`` before the guest starts
    seed
        an integer: RDRAND returns a deterministic sequence seeded with it (QEMU's -seed)
    object_warnings
        print the objects' warnings (off when a snapshot rebuilds a machine without keys)
    """

    def __init__(self, bios, memory=DEFAULT_RAM, cpu=DEFAULT_CPU, machine=DEFAULT_MACHINE,
                 serial="stdio", debugcon=None, debugcon_port=DEBUGCON_PORT, no_reboot=False,
                 log_items=(), log=None, single_step=False, max_insns=None, state_json=None,
                 objects=(), memory_encryption=None, kernel=None, initrd=None, append=None,
                 qmp=None, start_paused=False, object_warnings=True, seed=None):
        self._files = []
        self.sev = None
        self.objects = {}
        # what built the machine, for snapshots (pysev.snapshot)
        self.object_specs = [(otype, oid, dict(props)) for otype, oid, props in objects]
        self.memory_encryption = memory_encryption
        self.append = append
        self.kernel_data = self.initrd_data = None
        self._init_requests(start_paused)
        try:
            self._build(bios, memory, cpu, machine, serial, debugcon, debugcon_port,
                        no_reboot, log_items, log, single_step, max_insns, state_json)
            if seed is not None and (type(seed) is not int or not 0 <= seed < 1 << 64):
                # as -seed: a snapshot keeps the seed, and must be able to load it back
                raise MachineError(f"-seed: invalid seed number '{seed}' (0..2^64-1)")
            self.cpu.seed_random(seed)
            self._build_objects(objects, memory_encryption, image_bytes=self._image,
                                kernel=kernel, initrd=initrd, append=append,
                                warn=object_warnings)
            if qmp is not None:
                from pysev.qmp.server import QMPServer
                try:
                    self.qmp_server = QMPServer(self, qmp)
                except OSError as exc:
                    raise MachineError(f"-qmp: cannot listen on '{qmp}': "
                                       f"{exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise

    def _build(self, bios, memory, cpu_model, machine, serial, debugcon, debugcon_port,
               no_reboot, log_items, log, single_step, max_insns, state_json):
        if machine not in MACHINE_TYPES:
            machine = parse_machine(machine)
            if machine == "help":
                raise MachineError("-machine help is answered by the command line tool")
        if bios is None:
            raise MachineError("no firmware: give -bios FILE")
        if isinstance(bios, (bytes, bytearray, memoryview)):
            image = check_bios(bios)
            self.bios_path = None
        else:
            image = load_bios(bios)
            self.bios_path = os.fspath(bios)
        if memory < MIN_RAM:
            raise MachineError(f"-m: {memory} bytes is too small (at least 1 MiB)")
        memory = -(-memory // RAM_ALIGN) * RAM_ALIGN          # as QEMU rounds -m
        for item in log_items:
            if item not in LOG_ITEMS:
                raise MachineError(f"-d: unknown log item '{item}' (try -d help)")
        self.machine_type = machine
        self.ram_size = memory
        self.bios_size = len(image)
        self.cpu_model_name = cpu_model
        self.no_reboot = no_reboot
        self.max_insns = max_insns
        self.state_json = state_json
        self.log_items = tuple(log_items)
        self.stop_reason = None
        self.stop_info = None
        self.resets = 0
        self.triple_faults = 0

        self._image = image
        self.mem = self._build_memory(image)
        self.ports = PortBus()
        self.serials = self._build_serials(serial)
        self.serial = self.serials[0] if self.serials else None
        self.debugcon = None
        if debugcon is not None:
            self._check_debugcon_port(debugcon_port)
            self.debugcon = self.ports.register(
                DebugCon(self._sink(debugcon, "-debugcon"), base=debugcon_port))
        self.post = self.ports.register(PostPort(base=POST_PORT))

        self.log = self._open_log(log)
        self.cpu = self._build_cpu(cpu_model)
        self.tracer = Tracer(self.cpu, self.log_items, self.log, single_step)
        self._install_tracer()
        self.cpu.reset()
        self.tracer.log_reset(power_on=True)

    # ---- confidential computing -------------------------------------------------------------
    def _build_objects(self, objects, memory_encryption, image_bytes, kernel, initrd, append,
                       warn=True):
        """-object and -machine memory-encryption=: create the objects, then start the
        SEV launch against the emulated firmware (see pysev.sev.launch)."""
        from pysev.sev import QomError, object_new
        from pysev.sev.launch import SevError, SevLaunch
        from pysev.sev.objects import SevEmulated, ConfidentialGuestSupport
        import warnings

        for otype, oid, props in objects:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    obj = object_new(otype, oid, props)
            except QomError as exc:
                raise MachineError(f"-object {otype}: {exc}") from None
            for w in caught if warn else ():
                print(f"pysev: warning: {w.message}", file=sys.stderr)
            self.objects[oid] = obj
        kernel_data = self.kernel_data = self._read_input(kernel, "-kernel")
        initrd_data = self.initrd_data = self._read_input(initrd, "-initrd")
        self._build_fw_cfg(kernel_data, initrd_data, append, sev=memory_encryption is not None)
        if memory_encryption is None:
            self._install_sev_cpu(None)
            return
        obj = self.objects.get(memory_encryption)
        if obj is None:
            raise MachineError(f"-machine: memory-encryption: no object with id "
                               f"'{memory_encryption}'")
        if not isinstance(obj, ConfidentialGuestSupport):
            raise MachineError(f"-machine: memory-encryption: object '{memory_encryption}' "
                               f"is not a confidential guest support object")
        if not isinstance(obj, SevEmulated):
            raise MachineError(f"-machine: memory-encryption: '{obj.type_name}' needs KVM on an "
                               "AMD EPYC host; pysev emulates SEV with sev-emulated")
        model = self.cpu_model
        try:
            self.sev = SevLaunch(obj, self.mem, image_bytes, FOUR_GIB - len(image_bytes),
                                 kernel=kernel_data, initrd=initrd_data, cmdline=append,
                                 cpu_cbitpos=model.sev_cbitpos, cpu_reduced_bits=model.sev_reduced_phys_bits,
                                 phys_bits=model.phys_bits)
            self.sev.start()
        except SevError as exc:
            raise MachineError(str(exc)) from None
        self._install_sev_cpu(self.sev)
        self.cpu.reset()
        self.sev.machine_init_done()

    def _read_input(self, path, option):
        if path is None or isinstance(path, bytes):
            return path
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise MachineError(f"{option}: cannot read '{path}': {exc.strerror}") from None

    def _build_fw_cfg(self, kernel_data, initrd_data, append, sev=False):
        """The fw_cfg device (ports 0x510-0x511, DMA at 0x514-0x51b), always present as
        in QEMU; with -kernel it carries the Linux boot items (pysev.boot.linux).  With
        a confidential guest (*sev*) the kernel's setup header is handed over unpatched,
        as QEMU does, so that it hashes like the file."""
        from pysev.boot import LinuxBootError, load_linux
        from pysev.cpu.cpuid import VENDOR_AMD
        from pysev.devices.fw_cfg import pc_e820, pc_fw_cfg

        if kernel_data is None:
            if initrd_data is not None:
                raise MachineError("-initrd only allowed with -kernel option")
            if append:
                raise MachineError("-append only allowed with -kernel option")
        below, above = ram_split(self.machine_type, self.ram_size)
        self.linux_boot = None
        if kernel_data is not None:
            try:
                self.linux_boot = load_linux(kernel_data, initrd_data, append,
                                             below_4g_mem_size=below, patch_header=not sev)
            except LinuxBootError as exc:
                raise MachineError(f"{exc.option}: {exc}") from None
        model = self.cpu_model
        e820 = pc_e820(below, above,
                       amd_ht_hole=model.vendor == VENDOR_AMD and model.phys_bits >= 40)
        self.fw_cfg = pc_fw_cfg(self.mem, self.cpu.invalidate_code, ram_size=self.ram_size,
                                e820=e820, boot=self.linux_boot).register(self.ports)

    def _install_sev_cpu(self, sev):
        """What the guest sees: CPUID 0x8000001F, SEV_STATUS, and the C-bit in page walks."""
        from pysev.cpu.faults import GuestFault, GP

        cpu = self.cpu
        info = None
        if sev is not None:
            info = {"cbitpos": sev.cbitpos, "reduced_phys_bits": sev.reduced_phys_bits,
                    "es": False, "snp": False}
            cpu.sev_c_bit = sev.cbitpos
            cpu.sev_reduced_bits = sev.reduced_phys_bits
        cpu.cpuid_fn = self.cpu_model.cpuid_fn(sev=info)
        status = 1 if sev is not None else 0

        def write_sev_status(value):
            # SEV_STATUS is read-only (AMD APM vol. 2, 15.34.10)
            raise GuestFault(GP, 0, detail="SEV_STATUS (MSR 0xc0010131) is read-only")

        if not hasattr(cpu, "msr_handlers"):
            cpu.msr_handlers = {}
        cpu.msr_handlers[0xC0010131] = (lambda: status, write_sev_status)
        cpu.update_paging()

    def qmp(self, name, **arguments):
        """Run a QMP command: returns its result or raises pysev.qmp.QMPError.

        Called from another thread while :meth:`run` runs, the command is queued
        for the machine thread (see :meth:`submit`) and this call waits for it.
        """
        from pysev.qmp import execute
        if self._run_thread not in (None, threading.get_ident()):
            return self.call(lambda: execute(self, name, arguments))
        return execute(self, name, arguments)

    # ---- host requests: QMP commands run on the machine thread ------------------------------
    #
    # Other threads (the QMP server) never touch the machine: they queue requests with
    # submit(), which also asks the CPU loop to return soon.  run() serves the queue between
    # translated blocks (and, with a QMP server, at least every RUN_SLICE instructions), and
    # while the machine is paused or halted it waits on the queue.

    def _init_requests(self, start_paused):
        self._requests = queue.SimpleQueue()
        self._run_thread = None             # the thread inside run(), if any
        self._stop_asked = False            # stop() was called (not a request poke)
        self.run_state = "prelaunch" if start_paused else "running"   # QEMU's RunState
        self.halted = False                 # the guest ran HLT and waits (with a QMP server)
        self.quit_requested = False
        self.qmp_server = None
        self.event_listeners = []           # callables taking an event dict
        self._shutdown_sent = False
        self.thread_id = threading.get_native_id()

    def submit(self, fn, done=None):
        """Queue fn() to run on the machine thread; then done(result, exception).

        Safe from any thread.  The request runs at the next block boundary of a
        running :meth:`run` (or when the next one starts).
        """
        self._requests.put((fn, done))
        cpu = getattr(self, "cpu", None)
        if cpu is not None:
            cpu.stop_requested = cpu.exit_request = True      # a poke: see run()

    def call(self, fn, timeout=None):
        """submit() fn and wait for its result (re-raising its exception)."""
        finished = threading.Event()
        box = []

        def done(result, exc):
            box.append((result, exc))
            finished.set()
        self.submit(fn, done)
        if not finished.wait(timeout):
            raise TimeoutError("the machine did not serve the request in time")
        result, exc = box[0]
        if exc is not None:
            raise exc
        return result

    def _serve_requests(self):
        """Run the queued requests; while paused or halted, wait for more.
        Returns False when the run must end (quit)."""
        while not self.quit_requested:
            wait = self.run_state != "running" or self.halted
            try:
                fn, done = self._requests.get(block=wait, timeout=0.25 if wait else None)
            except queue.Empty:
                if wait:
                    continue
                return True
            try:
                result, exc = fn(), None
            except Exception as error:          # a failing request never stops the guest
                result, exc = None, error
            if done is not None:
                try:
                    done(result, exc)
                except Exception:
                    pass
        return False

    def emit_event(self, name, data=None):
        """Send a QMP event (STOP, RESUME, RESET, SHUTDOWN ...) to the listeners."""
        now = time.time()
        seconds = int(now)
        event = {"timestamp": {"seconds": seconds, "microseconds": int((now - seconds) * 1e6)},
                 "event": name}
        if data is not None:
            event["data"] = data
        for listener in list(self.event_listeners):
            try:
                listener(event)
            except Exception:
                pass

    def emit_shutdown(self, reason, guest=False):
        """The SHUTDOWN event, once per machine."""
        if not self._shutdown_sent:
            self._shutdown_sent = True
            self.emit_event("SHUTDOWN", {"guest": guest, "reason": reason})

    def query_sev(self):
        """QMP query-sev: SevInfo, or enabled false without SEV."""
        if self.sev is None:
            return {"enabled": False, "api-major": 0, "api-minor": 0, "build-id": 0,
                    "policy": 0, "state": "uninit", "handle": 0, "sev-type": "sev"}
        return self.sev.query_sev()

    # ---- building ------------------------------------------------------------------------
    def _build_memory(self, image):
        from pysev.mem import PhysMem

        mem = PhysMem()
        layout = memory_layout(self.machine_type, self.ram_size, len(image))
        try:
            # one allocation for all RAM and ROM: growing region by region would copy (and
            # so commit) the RAM already added
            mem.reserve(sum(size for kind, _, size, _ in layout if kind in ("ram", "rom")))
            for kind, start, size, name in layout:
                if kind == "rom":
                    mem.add_rom(start, image, name=name)
                elif kind == "alias":
                    mem.add_alias(start, size, FOUR_GIB - size, name=name)
                else:
                    mem.add_ram(start, size, name=name)
        except MemoryError:
            raise MachineError(f"-m: cannot allocate {self.ram_size // MiB} MiB of guest RAM") \
                from None
        return mem

    def _sink(self, spec, option):
        """A device's output sink for a chardev spec, or the sink object itself."""
        if not isinstance(spec, str):
            return spec
        spec = check_chardev(spec, option)
        if spec in ("stdio", "mon:stdio"):
            return _stdout_sink()
        if spec in ("null", "none"):
            return None
        path = spec[5:]
        try:
            f = open(path, "wb")
        except OSError as exc:
            raise MachineError(f"{option}: cannot open '{path}': {exc.strerror}") from None
        self._files.append(f)
        return f

    def _check_debugcon_port(self, port):
        """The debug console's one port must not be another device's (QEMU would let the
        two overlap and one of them silently lose the port)."""
        taken = [(POST_PORT, 1, "the POST port"), (FW_CFG_PORTS[0], FW_CFG_PORTS[1], "fw_cfg")]
        taken += [(uart.base, 8, f"COM{COM_PORTS.index(uart.base) + 1}") for uart in self.serials]
        for base, length, name in taken:
            if base <= port < base + length:
                raise MachineError(f"-global isa-debugcon.iobase={port:#x}: the port belongs "
                                   f"to {name}")

    def _build_serials(self, serial):
        specs = [serial] if isinstance(serial, str) or not isinstance(serial, (list, tuple)) \
            else list(serial)
        if len(specs) > len(COM_PORTS):
            raise MachineError(f"-serial: at most {len(COM_PORTS)} serial ports")
        serials = []
        for port, spec in zip(COM_PORTS, specs):
            if spec is None or spec == "none":
                continue
            serials.append(self.ports.register(Serial16550(self._sink(spec, "-serial"),
                                                           base=port)))
        return serials

    def _open_log(self, log):
        if log is None:
            return sys.stderr
        if not isinstance(log, (str, bytes, os.PathLike)):
            return log
        try:
            f = open(log, "w", encoding="utf-8")
        except OSError as exc:
            raise MachineError(f"-D: cannot open '{os.fsdecode(log)}': {exc.strerror}") from None
        self._files.append(f)
        return f

    def _build_cpu(self, model_name):
        from pysev.cpu import CPU

        model = _cpu_model(model_name)
        block_items = tuple(i for i in self.log_items if i in ("in_asm", "op"))
        cpu = CPU(self.mem, ports=self.ports, log=self.log, debug=block_items)
        self.cpu_model = model
        cpu.cpuid_fn = model.cpuid_fn()
        if hasattr(cpu, "phys_bits"):
            cpu.phys_bits = model.phys_bits       # reset() recomputes the paging masks
        return cpu

    def _install_tracer(self):
        cpu, tracer, items = self.cpu, self.tracer, set(self.log_items)
        if items & {"in_asm", "op"}:
            # the CPU logs each block it translates through _log_block; ours prints QEMU's format
            cpu._log_block = tracer.log_block
        if "int" in items:
            cpu.interrupt_log = tracer.log_interrupt
            cpu.exception_log = tracer.log_check_exception
        if "mmu" in items:
            cpu.log_cr = tracer.log_cr
            cpu.log_mmu = tracer.log_mmu

    @classmethod
    def from_args(cls, argv):
        """Build a machine from ``pysev run`` arguments (QEMU style).

        ``--max-insns`` becomes the default limit of :meth:`run` and
        ``--state-json`` is kept in :attr:`state_json` for the caller.
        """
        opts = parse_args(argv)
        if opts.help:
            what = {"usage": "-help", "cpu": "-cpu help", "machine": "-machine help",
                    "d": "-d help"}[opts.help]
            raise MachineError(f"{what} is answered by the command line tool, not by a machine")
        return cls(**opts.machine_kwargs())

    # ---- running --------------------------------------------------------------------------
    def run(self, max_insns=None):
        """Run the guest; returns the stop reason.

        *max_insns* limits the instructions of this call (None: the limit given
        at construction, or none).  Reasons: "count" (the limit), "hlt",
        "stop" (:meth:`stop`), "triple-fault" (only with no_reboot: otherwise
        a triple fault resets the machine and the run goes on) and "exception"
        (a guest exception the CPU did not deliver; see :attr:`stop_info`).

        Host requests (QMP commands, :meth:`submit`) are served between
        translated blocks; while the machine is paused (``-S``, ``stop``) the run
        waits for them.  With a QMP server the guest's HLT does not end the run
        (the halted CPU waits, as in QEMU) and the QMP command ``quit`` ends it
        with reason "quit".
        """
        from pysev.cpu import GuestFault

        try:
            from pysev.cpu.system import TripleFault
        except ImportError:                     # an engine without system mode
            TripleFault = ()
        if max_insns is None:
            max_insns = self.max_insns
        cpu = self.cpu
        if self.sev is not None and self.run_state == "running":
            self.sev.vm_running()           # LAUNCH_FINISH on the first transition to running
        start = cpu.icount
        hook = self.tracer.step if self.tracer.single_step else None
        self.stop_info = None
        self._stop_asked = False
        serving = self.qmp_server is not None
        self._run_thread = threading.get_ident()
        self.thread_id = threading.get_native_id()
        try:
            while True:
                if not self._serve_requests():
                    reason = "quit"
                    break
                left = math.inf if max_insns is None else max_insns - (cpu.icount - start)
                if left <= 0:
                    reason = "count"
                    break
                try:
                    reason = cpu.run(min(left, RUN_SLICE) if serving else left, None, hook)
                except TripleFault as exc:
                    reason = "triple-fault"
                    cpu.triple_fault_info = getattr(cpu, "triple_fault_info", None) or str(exc)
                except GuestFault as fault:
                    reason = "exception"
                    self.stop_info = (f"{fault} at {cpu.seg_sel[1]:04x}:{cpu.rip:x}")
                    break
                if reason == "triple-fault":
                    self.triple_faults += 1
                    self.stop_info = getattr(cpu, "triple_fault_info", None)
                    if self.no_reboot:
                        self.emit_shutdown("guest-reset", guest=True)
                        break
                    self.reset()
                    self.emit_event("RESET", {"guest": True, "reason": "guest-reset"})
                    continue
                if reason == "stop" and not self._stop_asked:
                    continue                # a request poke (submit): serve it, go on
                if reason == "count" and serving:
                    continue                # the end of a slice; the limit is checked above
                if reason == "hlt" and serving:
                    self.halted = True      # as QEMU: the halted guest waits, QMP goes on
                    continue
                break
        finally:
            self._run_thread = None
        self.tracer.flush()
        self.stop_reason = reason
        return reason

    def stop(self):
        """Ask a running :meth:`run` to return with reason "stop" (from a device or
        hook): at the end of the current translated block, which is after the
        current instruction when single-stepping."""
        self._stop_asked = True
        self.cpu.stop_requested = self.cpu.exit_request = True

    def reset(self):
        """A machine reset: the CPU and the UARTs return to their reset state;
        RAM keeps its contents (as in QEMU), the POST port its history."""
        self.cpu.reset()
        self.halted = False
        for uart in self.serials:
            uart.reset()
        if getattr(self, "fw_cfg", None) is not None:
            self.fw_cfg.reset()             # the selector goes back to the signature
        self.resets += 1
        self.tracer.log_reset()

    # ---- state -----------------------------------------------------------------------------
    @property
    def icount(self):
        return self.cpu.icount

    def read_phys(self, addr, size):
        """*size* bytes of guest-physical memory at *addr* (unmapped bytes read 0xFF)."""
        return self.mem.read_bytes(addr, size)

    def write_phys(self, addr, data):
        """Write guest-physical memory as the guest would (ROM ignores it)."""
        data = bytes(data)
        self.mem.write_bytes(addr, data)
        self.cpu.invalidate_code(addr, len(data))

    def state_dict(self):
        """The CPU state and the stop reason, as JSON-ready plain values."""
        cpu = self.cpu
        segments = {}
        for n, key in enumerate(_SEG_KEYS):
            segments[key] = {"selector": cpu.seg_sel[n], "base": cpu.seg_base[n],
                             "limit": cpu.seg_limit[n], "attr": cpu.seg_attr[n]}
        for key in ("ldtr", "tr"):
            sel, base, limit, attr = getattr(cpu, key)
            segments[key] = {"selector": sel, "base": base, "limit": limit, "attr": attr}
        regs = {key: cpu.regs[n] for n, key in enumerate(_GPR_KEYS)}
        regs["rip"] = cpu.rip
        regs["rflags"] = cpu.eflags
        return {
            "icount": cpu.icount,
            "stop_reason": self.stop_reason,
            "regs": regs,
            "segments": segments,
            "gdtr": {"base": cpu.gdtr[0], "limit": cpu.gdtr[1]},
            "idtr": {"base": cpu.idtr[0], "limit": cpu.idtr[1]},
            "cr0": cpu.cr0, "cr2": cpu.cr2, "cr3": cpu.cr3, "cr4": cpu.cr4,
            "efer": cpu.efer,
        }

    def save_snapshot(self, path):
        """Save the whole machine (CPU, memory, devices, SEV state; never keys) to *path*;
        see :mod:`pysev.snapshot`.  Call it between runs or from a QMP command."""
        from pysev import snapshot
        return snapshot.save(self, path)

    @classmethod
    def load_snapshot(cls, path, serial="stdio", debugcon="null", **host):
        """A machine in the state :meth:`save_snapshot` wrote to *path*.  *serial* (one
        sink for every saved UART, or a list), *debugcon* and *host* (log_items, log,
        single_step, max_insns, state_json, qmp, start_paused) are the host side."""
        from pysev import snapshot
        return snapshot.load(cls, path, serial=serial, debugcon=debugcon, **host)

    def write_state_json(self, path=None):
        """Write :meth:`state_dict` as JSON to *path* (default: the --state-json file)."""
        path = self.state_json if path is None else path
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.state_dict(), f, indent=2)
            f.write("\n")

    # ---- cleanup ----------------------------------------------------------------------------
    def close(self):
        """Stop the QMP server (after a SHUTDOWN event) and close the files the
        machine opened (serial and debug console files, the log)."""
        server, self.qmp_server = getattr(self, "qmp_server", None), None
        if server is not None:
            self.emit_shutdown("host-error")      # unless quit or the guest ended the run
            server.close()
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cpu_model(name):
    """The CPU model called *name* (pysev.cpu.cpuid)."""
    from pysev.cpu import cpuid

    try:
        return cpuid.get_model(name)
    except (KeyError, ValueError):
        raise MachineError(f"-cpu: unknown CPU model '{name}' (try -cpu help)") from None


def cpu_help():
    """The ``-cpu help`` text."""
    from pysev.cpu import cpuid

    return cpuid.cpu_help()


__all__ = ["Machine", "MachineError", "RunOptions", "parse_args", "parse_size",
           "memory_layout", "ram_split", "load_bios", "machine_help", "log_items_help",
           "cpu_help", "RUN_USAGE", "STOP_REASONS"]
