"""The ``pysev`` command line tool.

Each subcommand is one ``cmd_<name>(args)`` function returning the exit code,
registered in :data:`SUBCOMMANDS` together with a function that adds its
arguments.  Errors the user can act on are raised as :class:`CliError` and
printed as one line, without a traceback.
"""

import argparse
import sys
import time

from pysev import __version__

# -d items, in the spirit of QEMU's -d option
LOG_ITEMS = {
    "in_asm": "show the guest assembly of each translated block",
    "op": "show the Python source emitted for each translated block",
}

# exception vector mnemonics, for messages
VECTOR_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
    17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP", 28: "#HV", 29: "#VC", 30: "#SX",
}

# guest address that no program of ours reaches: used as emu_start's `until`
# when the run should end only on HLT, an exception or an instruction limit
NO_UNTIL = 0xFFFF_FFFF_FFFF_FFFF

# the demo guest's memory layout
DEMO_GUEST = "demo64"
DEMO_BASE = 0x100000
DEMO_SIZE = 0x100000          # 1 MiB: code, data and stack
DEMO_STACK_TOP = DEMO_BASE + DEMO_SIZE
COM1 = 0x3F8


class CliError(Exception):
    """An error reported as ``pysev: <message>`` with the given exit code."""

    def __init__(self, message, exit_code=2, raw=False):
        super().__init__(message)
        self.exit_code = exit_code
        self.raw = raw            # the message carries its own "pysev ...:" prefix


# -- helpers shared by the subcommands --------------------------------------

def log_items_help():
    width = max(len(name) for name in LOG_ITEMS)
    lines = ["Log items (comma separated, for -d):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in LOG_ITEMS.items()]
    return "\n".join(lines)


def parse_log_items(text):
    """Parse a -d argument into a tuple of item names.

    Returns ``None`` for ``help``; raises :class:`CliError` for an unknown item.
    """
    if text is None:
        return ()
    items = [item.strip() for item in text.split(",") if item.strip()]
    if "help" in items:
        return None
    for item in items:
        if item not in LOG_ITEMS:
            raise CliError(f"-d: unknown log item '{item}' (try -d help)")
    return tuple(dict.fromkeys(items))  # drop duplicates, keep order


def open_log(path):
    """The stream for the -d log: the file *path*, or stderr when not given."""
    if path is None:
        return sys.stderr
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"-D: cannot open {path}: {exc.strerror}", 1) from None


def stdout_sink():
    """A callable writing guest bytes to stdout, unbuffered."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        def emit(data):
            buffer.write(data)
            buffer.flush()
    else:  # a text-only stdout (e.g. redirected in-process)
        def emit(data):
            sys.stdout.write(data.decode("latin-1"))
            sys.stdout.flush()
    return emit


class TailTracker:
    """Wraps a sink and remembers whether the last byte written was a newline."""

    def __init__(self, emit):
        self._emit = emit
        self.at_line_start = True

    def __call__(self, data):
        if data:
            self._emit(data)
            self.at_line_start = data.endswith(b"\n")


def describe_guest_exception(exc):
    vector = exc.vector
    name = VECTOR_NAMES.get(vector, "exception")
    text = f"guest exception {name} (vector {vector}) at {exc.address:#x}"
    if getattr(exc, "error_code", None) is not None:
        text += f", error code {exc.error_code:#x}"
    return text


def add_engine_options(parser):
    """Options of every subcommand that runs a guest."""
    parser.add_argument("-d", metavar="ITEMS", dest="log_items",
                        help="log the comma separated ITEMS (in_asm, op); -d help lists them")
    parser.add_argument("-D", metavar="FILE", dest="log_file",
                        help="write the -d log to FILE instead of stderr")
    parser.add_argument("--max-insns", metavar="N", type=non_negative_int, default=0,
                        help="stop after N guest instructions (default 0: no limit)")


def non_negative_int(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


# -- pysev demo ---------------------------------------------------------------

DEMO_BIOS_INSNS = 20_000_000     # the SEV demo's default instruction limit with --bios


def add_demo_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="an SEV launch end to end: measurement, secret, the guest runs",
        description="Start the bundled SEV test guest paused with QMP, act as its guest "
                    "owner over the QMP socket (check the launch measurement, inject a "
                    "secret), let it run, and show its serial output: it finds SEV, its "
                    "C-bit page tables and the secret.  --bios runs the same flow on your "
                    "own firmware.")
    parser.add_argument("--bios", metavar="FILE",
                        help="run this firmware instead of the bundled SEV test guest "
                             f"(default --max-insns {DEMO_BIOS_INSNS:,})")
    parser.add_argument("--secret-gpa", metavar="ADDR", type=non_negative_int,
                        help="where to inject the secret (default: the firmware's secret "
                             "area if it declares one, else 0x800000)")
    parser.add_argument("--engine-demo", action="store_true",
                        help="instead, run the bundled 64-bit guest demo64.bin on the "
                             "Emulator API (no machine, no SEV)")
    parser.add_argument("-d", metavar="ITEMS", dest="log_items",
                        help="log the comma separated ITEMS (in_asm, op, ...); -d help lists them")
    parser.add_argument("-D", metavar="FILE", dest="log_file",
                        help="write the -d log to FILE instead of stderr")
    parser.add_argument("--max-insns", metavar="N", type=non_negative_int, default=None,
                        help="stop after N guest instructions (0: no limit; default: no limit, "
                             f"{DEMO_BIOS_INSNS:,} with --bios)")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args):
    if args.engine_demo:
        if args.bios is not None or args.secret_gpa is not None:
            raise CliError("demo: --engine-demo runs the bundled 64-bit guest: it takes no "
                           "--bios or --secret-gpa")
        return engine_demo(args)
    return sev_demo(args)


def sev_demo(args):
    """``pysev demo [--bios FILE]``: the SEV launch of pysev.demo on a Machine."""
    from pysev import machine as pm

    try:
        items = pm.parse_log_items(args.log_items or "")    # the machine's: in_asm, cpu, ...
    except pm.MachineError as exc:
        raise CliError(str(exc).removeprefix("pysev run: ")) from None
    if items is None:
        print(pm.log_items_help())
        return 0
    from pysev.demo import DemoError, SevDemo

    log = open_log(args.log_file)
    try:
        demo = SevDemo(bios=args.bios, max_insns=args.max_insns, secret_gpa=args.secret_gpa,
                       log_items=items, log=log)
        with _terminate_on_sigterm(True):      # SIGTERM cleans up too (socket, temp dir)
            return demo.run()
    except DemoError as exc:
        raise CliError(f"demo: {exc}", exc.exit_code) from None
    except _Terminated:
        raise CliError("demo: terminated", 143) from None
    finally:
        sys.stdout.flush()
        if log is not sys.stderr:
            log.close()


def engine_demo(args):
    """``pysev demo --engine-demo``: demo64.bin on the Emulator API."""
    debug = parse_log_items(args.log_items)
    if debug is None:
        print(log_items_help())
        return 0

    from pysev import guests
    from pysev.api import Emulator, GuestException
    from pysev.devices import PortBus, Serial16550

    image = guests.load(DEMO_GUEST)
    log = open_log(args.log_file)
    try:
        sink = TailTracker(stdout_sink())
        bus = PortBus()
        bus.register(Serial16550(sink), COM1)
        emu = Emulator(mode=64, ports=bus, debug=debug, log=log)
        emu.mem_map(DEMO_BASE, DEMO_SIZE)
        emu.mem_write(DEMO_BASE, image)
        emu.reg_write("rsp", DEMO_STACK_TOP)

        print(f"pysev demo: running the bundled 64-bit guest {DEMO_GUEST}.bin "
              f"({len(image)} bytes at {DEMO_BASE:#x}); its serial output follows", flush=True)
        start = time.perf_counter()
        try:
            emu.emu_start(DEMO_BASE, NO_UNTIL, count=args.max_insns or 0)
        except GuestException as exc:
            if not sink.at_line_start:
                print(flush=True)
            raise CliError(f"demo: {describe_guest_exception(exc)}", 1) from None
        elapsed = time.perf_counter() - start
    finally:
        if log is not sys.stderr:
            log.close()

    if not sink.at_line_start:
        print()
    count = emu.insn_count
    rate = count / elapsed if elapsed > 0 else float("inf")
    print(f"pysev demo: {count} guest instructions in {elapsed:.3f} s ({rate:,.0f} instructions/s)")
    reason = emu.stop_reason
    if reason != "hlt":
        rip = emu.reg_read("rip")
        if reason == "count":
            print(f"pysev demo: stopped at {rip:#x} after --max-insns {args.max_insns}, "
                  f"before the guest halted", file=sys.stderr)
        else:
            raise CliError(f"demo: guest stopped at {rip:#x} ({reason}) without halting", 1)
    return 0


# -- pysev run -----------------------------------------------------------------------

RUN_DESCRIPTION = ("Run x86 firmware (-bios FILE) on a pysev PC; takes QEMU-style options "
                   "(pysev run -help lists them).")


def add_run_parser(subparsers):
    # only for `pysev --help`: main() hands `run` arguments to cmd_run unparsed,
    # since QEMU-style options (-bios, -m ...) do not fit argparse
    subparsers.add_parser("run", help="run firmware on a PC machine (QEMU-style options)",
                          description=RUN_DESCRIPTION, add_help=False)


def cmd_run(argv):
    """``pysev run ARGS``: QEMU-style options, see pysev.machine.RUN_USAGE."""
    from pysev import machine as pm
    from pysev.cpu import EngineError

    try:
        opts = pm.parse_args(argv)
    except pm.MachineError as exc:
        raise CliError(str(exc), 2, raw=True) from None
    helps = {"usage": lambda: pm.RUN_USAGE.rstrip("\n"), "cpu": pm.cpu_help,
             "machine": pm.machine_help, "d": pm.log_items_help}
    if isinstance(opts.help, tuple):                # -object TYPE,help
        from pysev.sev import QomError, type_help
        try:
            print(type_help(opts.help[1]))
        except QomError as exc:
            raise CliError(f"pysev run: -object: {exc}", 2, raw=True) from None
        return 0
    if opts.help:
        print(helps[opts.help]())
        return 0
    if opts.load_snapshot is not None:
        conflicts = opts.snapshot_conflicts()
        if conflicts:
            raise CliError(f"pysev run: --load-snapshot: {', '.join(conflicts)} cannot be "
                           "given: the machine's configuration comes from the snapshot",
                           2, raw=True)
    elif opts.bios is None:
        raise CliError("pysev run: no firmware: give -bios FILE (pysev run -help lists "
                       "the options)", 2, raw=True)
    if opts.start_paused and opts.qmp is None:
        raise CliError("pysev run: -S needs -qmp: without a monitor nothing could start "
                       "the paused machine", 2, raw=True)
    for option, path in (("--state-json", opts.state_json),
                         ("--save-snapshot", opts.save_snapshot)):
        if path is not None:
            import os
            # only whether it can be written: truncating here would destroy the file before
            # the run, e.g. the snapshot that --load-snapshot is about to read
            if os.path.isdir(path):
                raise CliError(f"pysev run: {option}: cannot write '{path}': Is a directory",
                               2, raw=True)
            existed = os.path.lexists(path)
            try:
                open(path, "ab").close()
                if not existed:                 # no empty file left if the run saves nothing
                    os.unlink(path)
            except OSError as exc:
                raise CliError(f"pysev run: {option}: cannot write '{path}': "
                               f"{exc.strerror}", 2, raw=True) from None

    # serial ports on stdio share one sink that remembers whether a line is open
    tail = TailTracker(stdout_sink())
    kwargs = opts.machine_kwargs()
    kwargs["serial"] = [tail if spec in ("stdio", "mon:stdio") else spec
                        for spec in kwargs["serial"]]
    if kwargs["debugcon"] in ("stdio", "mon:stdio"):
        kwargs["debugcon"] = tail
    try:
        if opts.load_snapshot is not None:
            from pysev.snapshot import SnapshotError
            host = opts.host_kwargs()
            host["serial"], host["debugcon"] = kwargs["serial"], kwargs["debugcon"] or "null"
            if not opts.serial:                 # no -serial: every saved port on stdout
                host["serial"] = kwargs["serial"][0]
            try:
                machine = pm.Machine.load_snapshot(opts.load_snapshot, **host)
            except SnapshotError as exc:
                raise CliError(f"pysev run: --load-snapshot: {exc}", 2, raw=True) from None
        else:
            machine = pm.Machine(**kwargs)
    except pm.MachineError as exc:
        raise CliError(str(exc), 2, raw=True) from None

    with machine, _terminate_on_sigterm(machine.qmp_server is not None):
        exit_code = 0
        try:
            reason = machine.run()
        except KeyboardInterrupt:
            reason = machine.stop_reason = "interrupted"
            exit_code = 130
            machine.emit_shutdown("host-signal")
        except _Terminated:
            reason = machine.stop_reason = "terminated"
            machine.emit_shutdown("host-signal")   # as QEMU on SIGTERM: exit 0
        except EngineError as exc:
            reason = machine.stop_reason = "internal-error"
            machine.stop_info = str(exc)
            exit_code = 1
        if opts.state_json is not None:
            machine.write_state_json(opts.state_json)
        if opts.save_snapshot is not None:
            from pysev.snapshot import SnapshotError
            try:
                machine.save_snapshot(opts.save_snapshot)
            except SnapshotError as exc:
                print(f"pysev run: --save-snapshot: {exc}", file=sys.stderr)
                exit_code = 1
    sys.stdout.flush()
    lead = "" if tail.at_line_start else "\n"
    print(f"{lead}pysev: stopped after {machine.icount} instructions ({reason})",
          file=sys.stderr)
    if reason == "triple-fault":
        cpu = machine.cpu
        detail = f": {machine.stop_info}" if machine.stop_info else ""
        print(f"pysev: the guest triple faulted at {cpu.seg_sel[1]:04x}:{cpu.rip:x}{detail}; "
              "-no-reboot stops the machine instead of resetting it", file=sys.stderr)
        return 1
    if reason in ("exception", "internal-error"):
        print(f"pysev: {STOP_TEXT[reason]}: {machine.stop_info}", file=sys.stderr)
        return 1
    return exit_code


class _Terminated(BaseException):
    """SIGTERM while a QMP monitor is served: shut down cleanly, as QEMU does."""


class _terminate_on_sigterm:
    """With a QMP server, SIGTERM ends the run through _Terminated, so that the
    clients get a SHUTDOWN event and the socket file is removed."""

    def __init__(self, enabled):
        self.enabled, self.old = enabled, None

    def __enter__(self):
        import signal
        import threading
        if self.enabled and threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                raise _Terminated()
            self.old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            import signal
            signal.signal(signal.SIGTERM, self.old)


STOP_TEXT = {"exception": "guest exception not delivered",
             "internal-error": "internal error in pysev"}


# -- pysev owner ---------------------------------------------------------------------

def add_owner_parser(subparsers):
    from pysev.owner.cli import add_parser      # argparse only: the crypto loads on use
    add_parser(subparsers).set_defaults(func=cmd_owner)


def cmd_owner(args):
    """``pysev owner keygen|digest|verify|secret``: the guest owner's side (pysev.owner)."""
    from pysev.owner import OwnerError
    from pysev.owner.cli import run

    try:
        return run(args)
    except OwnerError as exc:
        raise CliError(f"pysev owner {args.owner_command}: {exc}", 2, raw=True) from None


# -- pysev bench ---------------------------------------------------------------------

BENCH_ENGINES = "pysev,unicorn,vivisect"


def add_bench_parser(subparsers):
    parser = subparsers.add_parser(
        "bench", help="run the benchmark workloads on pysev, unicorn and vivisect",
        description="Run the benchmark workloads (benchmarks/, in a source checkout) on "
                    "pysev, unicorn and vivisect; print one table of instructions per "
                    "second with the checks, and write an SVG bar chart of it.")
    parser.add_argument("--workload", action="append", metavar="NAME",
                        help="run only NAME (may be repeated; default: all of them, "
                             "see benchmarks/README.md)")
    parser.add_argument("--repeat", type=_positive(int), default=1, metavar="N",
                        help="run each engine N times and report the best (default 1)")
    parser.add_argument("--scale", type=_positive(float), default=1.0, metavar="F",
                        help="multiply every iteration count by F (default 1.0)")
    parser.add_argument("--plot", metavar="FILE",
                        help="write the SVG bar chart to FILE "
                             "(default: benchmarks/results.svg in the checkout)")
    parser.add_argument("--engines", default=BENCH_ENGINES, metavar="LIST",
                        help="comma separated engines to run (default %(default)s)")
    parser.add_argument("--firmware", metavar="FILE",
                        help="after the table, boot FILE on pysev and report the time to its "
                             "first 64-bit instruction and a long run's instructions/s "
                             "(default: Debian's OVMF.fd when every workload runs; 'none' "
                             "skips it)")
    parser.set_defaults(func=cmd_bench)


def _positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__}: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value
    return convert


def _bench_runner():
    """benchmarks/run.py of the checkout pysev runs from."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        raise CliError("bench: benchmarks/ is not installed with pysev: run it from a "
                       "source checkout (pip install -e .)", 1)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks import run as runner
    return runner, root


def cmd_bench(args):
    """``pysev bench``: benchmarks/run.py with a plot written by default."""
    runner, root = _bench_runner()
    try:
        engines = runner.parse_engines(args.engines)
    except ValueError as exc:
        raise CliError(f"bench: --engines: {exc} (choose from {BENCH_ENGINES})") from None
    for name in args.workload or ():
        if name not in runner.ALL_WORKLOADS:
            raise CliError(f"bench: unknown workload '{name}' "
                           f"(choose from {', '.join(runner.ALL_WORKLOADS)})")
    plot = args.plot if args.plot is not None else root / "benchmarks" / "results.svg"
    return runner.bench(args.workload, args.scale, args.repeat, engines, plot,
                        firmware=runner.default_firmware(args.workload, args.firmware))


# -- pysev walk ----------------------------------------------------------------------

def add_walk_parser(subparsers):
    parser = subparsers.add_parser(
        "walk", help="explain the page walk of one virtual address in a guest",
        description="Explain, level by level, how a guest's current CR3 and paging mode "
                    "translate VA: each entry's bits, the SEV C-bit, reserved bits, and the "
                    "physical address or the #PF error code.  The guest is a machine built "
                    "as pysev run does and run for --max-insns instructions (--bios), a "
                    "snapshot (--snapshot), or a running guest, pysev's or QEMU's, behind a "
                    "QMP socket (--qmp).  Guest memory is not changed.")
    parser.add_argument("va", metavar="VA", help="the virtual (linear) address, e.g. 0xfffff000")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bios", "-bios", metavar="FILE", help="firmware image to run")
    source.add_argument("--snapshot", metavar="FILE",
                        help="a pysev snapshot (pysev run --save-snapshot, QMP migrate)")
    source.add_argument("--qmp", metavar="SOCKET",
                        help="the QMP socket of a running guest (PATH or unix:PATH)")
    parser.add_argument("--max-insns", metavar="N", type=non_negative_int,
                        help="run N guest instructions before explaining the walk (needed "
                             "with --bios; with --snapshot, N more, default 0)")
    parser.add_argument("--svg", metavar="FILE", help="also draw the walk as SVG into FILE")
    parser.add_argument("--png", metavar="FILE",
                        help="also draw the walk as PNG into FILE (needs matplotlib: "
                             "pip install 'pysev[plot]')")
    parser.add_argument("--write", action="store_true", help="explain a write access")
    parser.add_argument("--user", action="store_true", help="explain a user (CPL 3) access")
    for opt, kind in (("-object", "append"), ("-machine", "append"), ("-M", "append"),
                      ("-m", "store"), ("-cpu", "store"), ("-serial", "append"),
                      ("-global", "append")):
        parser.add_argument(opt, action=kind, metavar="ARG", dest="run_" + opt.lstrip("-"),
                            help=f"as {opt} of pysev run (with --bios)")
    parser.set_defaults(func=cmd_walk)


_WALK_MACHINE_OPTIONS = ("object", "machine", "M", "m", "cpu", "serial", "global")


def _walk_machine_options(args):
    """Whether any pysev-run machine option was given to pysev walk."""
    return any(getattr(args, "run_" + name) for name in _WALK_MACHINE_OPTIONS)


def _walk_machine_argv(args):
    argv = ["-bios", args.bios, "-display", "none"]
    for name in ("object", "machine", "M", "serial", "global"):
        for value in getattr(args, "run_" + name) or ():
            argv += ["-" + name, value]
    for name in ("m", "cpu"):
        if getattr(args, "run_" + name) is not None:
            argv += ["-" + name, getattr(args, "run_" + name)]
    if not args.run_serial:
        argv += ["-serial", "null"]       # keep stdout for the explanation
    return argv


def _walk_local(args, va, access):
    """(heading, explanation) for --bios and --snapshot: a machine in this process."""
    from pysev import machine as pm
    from pysev.teach.walk import explain

    if args.snapshot is not None:
        from pysev.snapshot import SnapshotError
        try:
            machine = pm.Machine.load_snapshot(args.snapshot, serial="null")
        except SnapshotError as exc:
            raise CliError(f"walk: --snapshot: {exc}") from None
        origin = f"snapshot {args.snapshot}"
    else:
        if args.max_insns is None:
            raise CliError("walk: --bios needs --max-insns N (how far to run the firmware)")
        try:
            machine = pm.Machine.from_args(_walk_machine_argv(args))
        except pm.MachineError as exc:
            raise CliError(f"walk: {str(exc).removeprefix('pysev run: ')}") from None
        origin = None
    with machine:
        reason = machine.run(max_insns=args.max_insns or 0) if args.max_insns or not origin \
            else None
        cpu = machine.cpu
        try:
            expl = explain(machine.mem, cpu.cr3, va, cpu.paging, access=access, user=args.user)
        except ValueError as exc:
            raise CliError(f"walk: {exc}") from None
    if origin is None:
        head = f"pysev walk: after {machine.icount} instructions ({reason}), RIP {cpu.rip:#x}"
    elif reason is None:
        head = f"pysev walk: {origin}, after {machine.icount} instructions, RIP {cpu.rip:#x}"
    else:
        head = (f"pysev walk: {origin}, run on to {machine.icount} instructions ({reason}), "
                f"RIP {cpu.rip:#x}")
    return head, expl


def _walk_qmp(args, va, access):
    """(heading, explanation) for --qmp: a guest in another process, pysev or QEMU."""
    from pysev.qmp.client import QMPClient, QMPClientError
    from pysev.teach.remote import RemoteError, qmp_target
    from pysev.teach.walk import explain

    if args.max_insns is not None or _walk_machine_options(args):
        raise CliError("walk: --qmp explains the guest as it is: machine options and "
                       "--max-insns do not apply")
    path = args.qmp.removeprefix("unix:").split(",")[0]
    try:
        with QMPClient(path, timeout=10) as qmp:
            target = qmp_target(qmp)
            expl = explain(target.mem, target.cr3, va, target.paging, access=access,
                           user=args.user)
    except OSError as exc:
        raise CliError(f"walk: --qmp: cannot connect to '{path}': "
                       f"{exc.strerror or exc}") from None
    except QMPClientError as exc:
        raise CliError(f"walk: --qmp: {exc.desc}") from None
    except RemoteError as exc:
        raise CliError(f"walk: --qmp: {exc}") from None
    except ValueError as exc:                   # explain(): a VA the guest's mode cannot have
        raise CliError(f"walk: {exc}") from None
    rip = target.registers.get("RIP")
    where = "" if rip is None else f", RIP {rip:#x}"
    return f"pysev walk: the guest behind {path}{where}", expl


def cmd_walk(args):
    """``pysev walk VA (--bios FILE --max-insns N | --snapshot FILE | --qmp SOCKET)``."""
    from pysev.teach.walk import format_text

    try:
        va = int(args.va, 0)
    except ValueError:
        raise CliError(f"walk: bad virtual address '{args.va}' (give e.g. 0xfffff000)") from None
    if not 0 <= va < 1 << 64:
        raise CliError(f"walk: virtual address {args.va} is outside 0..2^64-1")
    if args.bios is None and _walk_machine_options(args):
        raise CliError("walk: machine options (-object, -machine, -m, -cpu, -serial, -global) "
                       "go with --bios; a snapshot or a QMP guest brings its own")
    access = "write" if args.write else "read"
    if args.qmp is not None:
        head, expl = _walk_qmp(args, va, access)
    else:
        head, expl = _walk_local(args, va, access)
    print(head)
    print(format_text(expl))
    if args.svg is not None:
        from pysev.teach.svg import render
        try:
            with open(args.svg, "w", encoding="utf-8") as f:
                f.write(render(expl))
        except OSError as exc:
            raise CliError(f"walk: --svg: cannot write {args.svg}: {exc.strerror}", 1) from None
    if args.png is not None:
        from pysev.teach.picture import PictureError
        from pysev.teach.png import render_png
        try:
            render_png(expl, args.png)
        except PictureError as exc:
            raise CliError(f"walk: --png: {exc}", 1) from None
        except OSError as exc:
            raise CliError(f"walk: --png: cannot write {args.png}: {exc.strerror}", 1) from None
    return 0


# -- pysev snapshot ----------------------------------------------------------------

def add_snapshot_parser(subparsers):
    parser = subparsers.add_parser(
        "snapshot", help="describe a machine snapshot",
        description="Machine snapshots are written by pysev run --save-snapshot, QMP "
                    "migrate to a file: URI and Machine.save_snapshot(); pysev run "
                    "--load-snapshot starts from one.  'info' checks a snapshot file and "
                    "summarises it: machine, CPU, where it stopped, SEV state (never keys).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="check FILE and print a summary of it")
    info.add_argument("file", metavar="FILE")
    parser.set_defaults(func=cmd_snapshot)


def cmd_snapshot(args):
    from pysev.snapshot import SnapshotError, describe
    try:
        print(describe(args.file))
    except SnapshotError as exc:
        raise CliError(f"snapshot: {exc}", 1) from None
    return 0


# -- main -------------------------------------------------------------------------

# (name, function adding the subparser); the order is the order in --help
SUBCOMMANDS = [
    ("demo", add_demo_parser),
    ("run", add_run_parser),
    ("owner", add_owner_parser),
    ("bench", add_bench_parser),
    ("walk", add_walk_parser),
    ("snapshot", add_snapshot_parser),
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pysev",
        description="pysev: a pure-Python, instruction-level model of an x86 CPU "
                    "running AMD SEV guests.")
    parser.add_argument("--version", action="version", version=f"pysev {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for _name, add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        command, args = cmd_run, argv[1:]
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        command = args.func
    try:
        return command(args)
    except CliError as exc:
        sys.stdout.flush()
        print(exc if exc.raw else f"pysev: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stdout.flush()
        print("pysev: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
