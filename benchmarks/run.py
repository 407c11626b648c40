#!/usr/bin/env python3
"""Run the pysev benchmark workloads, on pysev and (when installed) unicorn.

    python3 -m benchmarks.run [--workload NAME] [--scale F] [--repeat N]
    python3 benchmarks/run.py ...

For each workload both engines run the same binary from the same initial state
to the workload's final HLT.  The run checks that pysev executed exactly the
number of instructions the workload's formula gives (``Emulator.insn_count``),
that the formula itself holds (counted with a unicorn code hook on a few short
runs), and that both engines end with the same registers and memory.  It then
prints one table of instructions per second.  See benchmarks/README.md.
"""

import argparse
import hashlib
import pathlib
import sys
import time
from dataclasses import dataclass

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
if __package__ in (None, "") and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/run.py` from a checkout

# memory layout shared by all workloads (64-bit mode, flat)
CODE_BASE = 0x100000          # the binary is loaded here; entry = first byte
MAP_BASE = 0x100000
MAP_SIZE = 0x200000           # 2 MiB: code, buffer and stack
BUF_BASE = 0x200000           # the 64 KiB data buffer (rsi)
BUF_SIZE = 0x10000
STACK_TOP = MAP_BASE + MAP_SIZE

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
# CF PF AF ZF SF OF: all are defined at the end of every workload
ARITH_FLAGS = 0x8D5
# initial buffer contents: a pattern, so loads see varied data
BUF_PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(256)) * (BUF_SIZE // 256)
# iteration counts used to check each formula with a counting hook
FORMULA_CHECK_ITERATIONS = (1, 2, 7)


@dataclass(frozen=True)
class Workload:
    name: str
    per_iteration: int    # instructions per loop iteration
    fixed: int            # instructions outside the loop (the final hlt excluded)
    iterations: int       # default iteration count (rcx), ~10M instructions
    description: str

    def instructions(self, n):
        """Instructions executed from the entry point up to the final hlt."""
        return self.per_iteration * n + self.fixed

    def binary(self):
        data = (HERE / "workloads" / f"{self.name}.bin").read_bytes()
        if not data or data[-1] != 0xF4:
            raise RuntimeError(f"{self.name}.bin must end with hlt (0xF4)")
        return data

    def hlt_address(self, code):
        return CODE_BASE + len(code) - 1

    def initial_registers(self, n):
        regs = dict.fromkeys(GPRS, 0)
        regs.update(rcx=n, rsi=BUF_BASE, rsp=STACK_TOP)
        return regs


WORKLOADS = {w.name: w for w in (
    Workload("alu", 8, 2, 1_250_000, "add/xor/shl/imul/shr/cmp/dec/jnz on registers"),
    Workload("mem", 10, 2, 1_000_000, "byte and qword load/modify/store over 64 KiB"),
    Workload("call", 9, 3, 1_100_000, "call a function that does push/mov/imul/add/pop/ret"),
)}


@dataclass
class Result:
    engine: str
    seconds: float        # best wall time of emu_start over the repeats
    instructions: int     # instructions executed (counted or from the formula)
    registers: dict       # final GPRs, rip and rflags & ARITH_FLAGS
    memory_digest: str    # sha256 of the whole mapping after the run

    @property
    def rate(self):
        return self.instructions / self.seconds if self.seconds > 0 else float("inf")


class CheckFailed(Exception):
    pass


# -- pysev --------------------------------------------------------------------

def pysev_available():
    try:
        import pysev.api  # noqa: F401
    except ImportError:
        return False
    return True


def run_pysev(workload, n, repeat=1):
    from pysev.api import Emulator

    code = workload.binary()
    hlt = workload.hlt_address(code)
    expected = workload.instructions(n)
    best = None
    for _ in range(repeat):
        emu = Emulator(mode=64)
        emu.mem_map(MAP_BASE, MAP_SIZE)
        emu.mem_write(CODE_BASE, code)
        emu.mem_write(BUF_BASE, BUF_PATTERN)
        for name, value in workload.initial_registers(n).items():
            emu.reg_write(name, value)
        emu.reg_write("rflags", 0x2)
        start = time.perf_counter()
        emu.emu_start(CODE_BASE, hlt)
        elapsed = time.perf_counter() - start
        rip = emu.reg_read("rip")
        if emu.stop_reason != "until" or rip != hlt:
            raise CheckFailed(f"{workload.name}: pysev stopped at {rip:#x} ({emu.stop_reason}), "
                              f"expected the hlt at {hlt:#x}")
        if emu.insn_count != expected:
            raise CheckFailed(f"{workload.name}: pysev executed {emu.insn_count} instructions, "
                              f"expected {expected} = {workload.per_iteration}*{n}+{workload.fixed}")
        if best is None or elapsed < best:
            best = elapsed
    regs = {name: emu.reg_read(name) for name in GPRS}
    regs["rip"] = rip
    regs["rflags"] = emu.reg_read("rflags") & ARITH_FLAGS
    digest = hashlib.sha256(emu.mem_read(MAP_BASE, MAP_SIZE)).hexdigest()
    return Result("pysev", best, emu.insn_count, regs, digest)


# -- unicorn ------------------------------------------------------------------

def unicorn_available():
    try:
        import unicorn  # noqa: F401
    except ImportError:
        return False
    return True


def _unicorn_setup(workload, n):
    from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
    from unicorn import x86_const

    code = workload.binary()
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(MAP_BASE, MAP_SIZE)
    uc.mem_write(CODE_BASE, code)
    uc.mem_write(BUF_BASE, BUF_PATTERN)
    for name, value in workload.initial_registers(n).items():
        uc.reg_write(getattr(x86_const, f"UC_X86_REG_{name.upper()}"), value)
    uc.reg_write(x86_const.UC_X86_REG_RFLAGS, 0x2)
    return uc, workload.hlt_address(code)


def count_with_unicorn(workload, n):
    """Instructions unicorn executes up to the hlt, counted with a code hook."""
    from unicorn import UC_HOOK_CODE

    uc, hlt = _unicorn_setup(workload, n)
    count = [0]

    def on_code(_uc, _address, _size, _data):
        count[0] += 1

    uc.hook_add(UC_HOOK_CODE, on_code)
    uc.emu_start(CODE_BASE, hlt)
    return count[0]


def check_formula(workload):
    """Check the workload's instruction formula on short runs (needs unicorn)."""
    for n in FORMULA_CHECK_ITERATIONS:
        counted = count_with_unicorn(workload, n)
        if counted != workload.instructions(n):
            raise CheckFailed(f"{workload.name}: formula gives {workload.instructions(n)} "
                              f"instructions for {n} iterations, unicorn counted {counted}")


def run_unicorn(workload, n, repeat=1):
    from unicorn import x86_const

    best = None
    for _ in range(repeat):
        uc, hlt = _unicorn_setup(workload, n)
        start = time.perf_counter()
        uc.emu_start(CODE_BASE, hlt)
        elapsed = time.perf_counter() - start
        rip = uc.reg_read(x86_const.UC_X86_REG_RIP)
        if rip != hlt:
            raise CheckFailed(f"{workload.name}: unicorn stopped at {rip:#x}, expected {hlt:#x}")
        if best is None or elapsed < best:
            best = elapsed
    regs = {name: uc.reg_read(getattr(x86_const, f"UC_X86_REG_{name.upper()}")) for name in GPRS}
    regs["rip"] = rip
    regs["rflags"] = uc.reg_read(x86_const.UC_X86_REG_RFLAGS) & ARITH_FLAGS
    digest = hashlib.sha256(bytes(uc.mem_read(MAP_BASE, MAP_SIZE))).hexdigest()
    return Result("unicorn", best, workload.instructions(n), regs, digest)


# -- comparison and report ----------------------------------------------------------

def compare(workload, a, b):
    """Raise CheckFailed unless results *a* and *b* agree on registers and memory."""
    diffs = [f"{name}: {a.engine}={a.registers[name]:#x} {b.engine}={b.registers[name]:#x}"
             for name in a.registers if a.registers[name] != b.registers[name]]
    if a.memory_digest != b.memory_digest:
        diffs.append("memory contents differ")
    if diffs:
        raise CheckFailed(f"{workload.name}: final state differs between engines: "
                          + "; ".join(diffs))


def iterations_for(workload, scale):
    return max(1, round(workload.iterations * scale))


def format_rate(result):
    return "-" if result is None else f"{result.rate:,.0f}"


def format_table(rows):
    header = ("workload", "instructions", "pysev instr/s", "unicorn instr/s", "unicorn/pysev")
    lines = [header]
    for name, instructions, pysev, uni in rows:
        ratio = f"{uni.rate / pysev.rate:,.1f}x" if pysev and uni else "-"
        lines.append((name, f"{instructions:,}", format_rate(pysev), format_rate(uni), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(names, scale=1.0, repeat=1, engines=("pysev", "unicorn"), out=sys.stdout):
    """Run the workloads *names*; print the table to *out*; return the rows."""
    use_pysev = "pysev" in engines
    use_unicorn = "unicorn" in engines and unicorn_available()
    if "unicorn" in engines and not use_unicorn:
        print("note: unicorn is not installed; its column stays empty", file=out)
    rows = []
    for name in names:
        workload = WORKLOADS[name]
        n = iterations_for(workload, scale)
        if use_unicorn:
            check_formula(workload)
        pysev_result = run_pysev(workload, n, repeat) if use_pysev else None
        unicorn_result = run_unicorn(workload, n, repeat) if use_unicorn else None
        if pysev_result and unicorn_result:
            compare(workload, pysev_result, unicorn_result)
        rows.append((name, workload.instructions(n), pysev_result, unicorn_result))
    print(format_table(rows), file=out)
    checks = ["instruction counts"] if use_pysev else []
    if use_unicorn:
        checks.insert(0, "formulas")
    if use_pysev and use_unicorn:
        checks.append("final registers and memory agree")
    if checks:
        print("checked: " + ", ".join(checks), file=out)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the pysev benchmark workloads.")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), metavar="NAME",
                        help="run only NAME (may be repeated; choices: %(choices)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every iteration count by F (default 1.0)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each engine N times and report the best (default 1)")
    parser.add_argument("--engine", choices=("both", "pysev", "unicorn"), default="both",
                        help="which engines to run (default both)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    engines = ("pysev", "unicorn") if args.engine == "both" else (args.engine,)
    if "pysev" in engines and not pysev_available():
        print("benchmarks: pysev.api cannot be imported", file=sys.stderr)
        return 1
    if engines == ("unicorn",) and not unicorn_available():
        print("benchmarks: unicorn is not installed", file=sys.stderr)
        return 1
    names = args.workload or list(WORKLOADS)
    try:
        run(dict.fromkeys(names), args.scale, args.repeat, engines)
    except CheckFailed as exc:
        print(f"benchmarks: check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
