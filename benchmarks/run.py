#!/usr/bin/env python3
"""Run the pysev benchmark workloads on pysev, unicorn and vivisect.

    python3 -m benchmarks.run [--workload NAME] [--scale F] [--repeat N]
                              [--engines pysev,unicorn,vivisect] [--plot FILE] [--profile]
    python3 benchmarks/run.py ...
    pysev bench ...                     (the same, writing benchmarks/results.svg)

For each workload every engine runs the same binary from the same initial
state to the workload's final HLT.  The run checks that pysev executed exactly
the number of instructions the workload's formula gives (``Emulator.insn_count``),
that the formula itself holds (counted with a unicorn code hook on a few short
runs), and that pysev and unicorn end with the same registers and memory.
vivisect, a pure-Python emulator stepped one instruction at a time, runs
1/VIVISECT_DIVISOR of the iterations, counts its own instructions, and is
checked against unicorn for that count; where it fails, its cells say why.
The run prints one table of instructions per second and, with ``--plot``,
writes an SVG bar chart of it.  See benchmarks/README.md.

The paging workloads (``pagewalk`` and ``pagewalk-sev``) run pysev only: the
same binary under 4-level paging built by the host, once without SEV and once
with the C-bit set in CR3 and every paging-structure entry.  They run in
alternating order, best of ``max(N, 7)`` rounds, and the run prints their ratio
after the table.
"""

import argparse
import hashlib
import pathlib
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple, Optional

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


def _pysev_setup(workload, n):
    """A fresh pysev Emulator holding the workload, ready to start; returns (emu, hlt)."""
    from pysev.api import Emulator

    code = workload.binary()
    emu = Emulator(mode=64)
    emu.mem_map(MAP_BASE, MAP_SIZE)
    emu.mem_write(CODE_BASE, code)
    emu.mem_write(BUF_BASE, BUF_PATTERN)
    for name, value in workload.initial_registers(n).items():
        emu.reg_write(name, value)
    emu.reg_write("rflags", 0x2)
    return emu, workload.hlt_address(code)


def run_pysev(workload, n, repeat=1):
    expected = workload.instructions(n)
    best = None
    for _ in range(repeat):
        emu, hlt = _pysev_setup(workload, n)
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


# -- paging workloads (pysev only) ---------------------------------------------
#
# pagewalk.bin runs in long mode with 4-level paging built here.  Physical
# memory is one RAM block; the tables live at PAGING_TABLES:
#
#   PML4[0] -> PDPT -> PD -> PT: the code page, identity mapped at CODE_BASE
#   PML4[1] -> PDPT -> PD -> PTs: the data region at PAGING_DATA_LINEAR, one 4 KiB
#              PTE per page, page i at PAGING_DATA_PHYS + 4 KiB * (i * 37 mod pages)
#              (scattered, so a wrong translation shows in the final memory)
#
# Every entry is present and writable (0x3); for SEV the C-bit of the CPU model
# is set in CR3 and in every entry, and the CPU is told its C-bit position and
# reduced-phys-bits, so each walk strips and checks it.  The binary writes CR3
# back after every sweep, so each page touch misses the TLB again.

PAGING_MODEL = "EPYC-Milan"          # phys bits, C-bit position, reduced-phys-bits
PAGING_RAM = 0x1000000               # 16 MiB of RAM at 0
PAGING_TABLES = 0x10000              # page tables from here on, 4 KiB each
PAGING_DATA_LINEAR = 0x8000000000    # PML4 slot 1
PAGING_DATA_PHYS = 0x400000
PAGING_STRIDE = 37                   # odd: i * 37 mod 2**k is a permutation
PAGE = 0x1000
PAGING_MIN_ROUNDS = 7                # the paging rows are always a best of at least 7


@dataclass(frozen=True)
class PagingWorkload(Workload):
    sev: bool = False
    pages: int = 256                 # r8: data pages touched per sweep (a power of two)
    source: str = "pagewalk"         # the binary both variants run

    def binary(self):
        data = (HERE / "workloads" / f"{self.source}.bin").read_bytes()
        if not data or data[-1] != 0xF4:
            raise RuntimeError(f"{self.source}.bin must end with hlt (0xF4)")
        return data

    def initial_registers(self, n):
        regs = dict.fromkeys(GPRS, 0)
        regs.update(rcx=n, rsi=PAGING_DATA_LINEAR, r8=self.pages, rsp=0)
        return regs

    def expected_data(self, n):
        """The data region after n sweeps: each page's first qword is 1 ^ 2 ^ ... ^ n."""
        value = (n, 1, n + 1, 0)[n % 4]
        return (value.to_bytes(8, "little") + bytes(PAGE - 8)) * self.pages


PAGING_WORKLOADS = {w.name: w for w in (
    PagingWorkload("pagewalk", 1030, 0, 500,
                   "xor into 256 pages, CR3 reload: 4-level walks, no SEV"),
    PagingWorkload("pagewalk-sev", 1030, 0, 500,
                   "pagewalk with the C-bit in CR3 and every table entry", sev=True),
)}


def paging_machine(workload, n):
    """A bare pysev CPU in long mode with the workload's page tables; returns (cpu, mem, hlt)."""
    from pysev.cpu import CPU, GPR_NAMES
    from pysev.cpu import cpuid
    from pysev.mem import PhysMem

    if workload.pages & (workload.pages - 1) or workload.per_iteration != 4 * workload.pages + 6:
        raise CheckFailed(f"{workload.name}: pages must be a power of two and the formula "
                          f"(4 * pages + 6) * n")
    model = cpuid.get_model(PAGING_MODEL)
    code = workload.binary()
    mem = PhysMem()
    mem.add_ram(0, PAGING_RAM)
    mem.load(CODE_BASE, code)
    cpu = CPU(mem)
    cpu.deliver_exceptions = False              # a fault is a broken benchmark: raise it
    cpu.phys_bits = model.phys_bits
    c_bit = 0
    if workload.sev:
        cpu.sev_c_bit, cpu.sev_reduced_bits = model.sev_cbitpos, model.sev_reduced_phys_bits
        c_bit = 1 << model.sev_cbitpos
    tables = iter(range(PAGING_TABLES, CODE_BASE, PAGE))

    def entry(phys):
        return phys | 0x3 | c_bit

    def map_page(pml4, lin, phys):
        table = pml4
        for shift in (39, 30, 21):
            slot = table + ((lin >> shift) & 0x1FF) * 8
            value = mem.read(slot, 8)
            if not value & 1:
                value = entry(next(tables))
                mem.write(slot, 8, value)
            table = value & ~(0xFFF | c_bit)
        mem.write(table + ((lin >> 12) & 0x1FF) * 8, 8, entry(phys))

    pml4 = next(tables)
    for off in range(0, len(code), PAGE):
        map_page(pml4, CODE_BASE + off, CODE_BASE + off)
    for i in range(workload.pages):
        phys = PAGING_DATA_PHYS + PAGE * ((i * PAGING_STRIDE) % workload.pages)
        map_page(pml4, PAGING_DATA_LINEAR + PAGE * i, phys)
    for seg in range(6):
        cpu.set_segment(seg, 0, 0, 0xFFFFFFFF, 0xC09300)
    cpu.seg_attr[1] = 0xA09B00                 # CS: 64-bit code
    cpu.cr0 = 0x80000011                       # PG, ET, PE
    cpu.cr4 = 0x20                             # PAE
    cpu.efer = 0x500                           # LME, LMA
    cpu.cr3 = pml4 | c_bit
    cpu.update_paging()
    cpu.update_mode()
    regs = workload.initial_registers(n)
    for k, name in enumerate(GPR_NAMES):
        cpu.regs[k] = regs[name]
    cpu.eflags = 0x2
    cpu.rip = CODE_BASE
    return cpu, mem, CODE_BASE + len(code) - 1


def count_page_walks(workload, n):
    """Page walks pysev makes for n sweeps, counted on one short run.

    A walk is either a call of the full walker (``pysev.mem.paging.walk``) or
    a TLB miss that the miss path (``SR1``..``SR8``, ``SW1``..``SW8`` in the
    CPU's namespace) translated itself from the paging-structure cache and
    the PTE it read from guest memory.  The second are the miss-path calls
    that did not go on to the full slow path (``SLOW_READ``/``SLOW_WRITE``)."""
    from pysev.cpu import engine

    cpu, _mem, hlt = paging_machine(workload, n)
    ns = cpu.namespace
    real = engine.walk
    count = {"walk": 0, "miss": 0, "slow": 0}

    def counting(fn, key):
        def wrapper(*args, **kwargs):
            count[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    saved = {}
    for size in (1, 2, 4, 8):
        for name in (f"SR{size}", f"SW{size}"):
            saved[name] = ns[name]
            ns[name] = counting(ns[name], "miss")
    for name in ("SLOW_READ", "SLOW_WRITE"):
        saved[name] = ns[name]
        ns[name] = counting(ns[name], "slow")
    engine.walk = counting(real, "walk")
    try:
        cpu.run(float("inf"), hlt)
    finally:
        engine.walk = real
        ns.update(saved)
    return count["walk"] + count["miss"] - count["slow"]


def check_page_walks(workload):
    """Every sweep must walk at least once per page: the CR3 reload empties the TLB.

    (The read miss of each read-modify-write fills the write TLB too when the
    page is already dirty, so from the second sweep on one walk serves both.)"""
    walks = count_page_walks(workload, 3) - count_page_walks(workload, 2)
    if walks < workload.pages:
        raise CheckFailed(f"{workload.name}: {walks} page walks per sweep, expected at least "
                          f"{workload.pages} (is the TLB flushed by the CR3 write?)")
    return walks


def run_pysev_paging(workload, n, repeat=1):
    from pysev.cpu import GPR_NAMES

    expected = workload.instructions(n)
    data = workload.expected_data(n)
    best = None
    for _ in range(repeat):
        cpu, mem, hlt = paging_machine(workload, n)
        start = time.perf_counter()
        reason = cpu.run(float("inf"), hlt)
        elapsed = time.perf_counter() - start
        if reason != "until" or cpu.rip != hlt:
            raise CheckFailed(f"{workload.name}: pysev stopped at {cpu.rip:#x} ({reason}), "
                              f"expected the hlt at {hlt:#x}")
        if cpu.icount != expected:
            raise CheckFailed(f"{workload.name}: pysev executed {cpu.icount} instructions, "
                              f"expected {expected} = {workload.per_iteration}*{n}"
                              f"+{workload.fixed}")
        if mem.read_bytes(PAGING_DATA_PHYS, len(data)) != data:
            raise CheckFailed(f"{workload.name}: the data pages do not hold what {n} sweeps "
                              "write (a wrong translation?)")
        if best is None or elapsed < best:
            best = elapsed
    regs = {name: cpu.regs[k] for k, name in enumerate(GPR_NAMES)}
    regs["rip"] = cpu.rip
    regs["rflags"] = cpu.eflags & ARITH_FLAGS
    digest = hashlib.sha256(mem.read_bytes(PAGING_DATA_PHYS, len(data))).hexdigest()
    return Result("pysev", best, cpu.icount, regs, digest)


def run_paging_interleaved(names, scale=1.0, repeat=1):
    """Best-of results of the paging workloads, run in alternating order for at least
    PAGING_MIN_ROUNDS rounds (ABBA: SEV off, on, on, off, ...), so that a change in
    machine load hits SEV on and off alike.  Returns (best result per name, the
    SEV on/off rate ratio of each round, when both ran)."""
    import gc

    best = {}
    ratios = []
    for round_ in range(max(repeat, PAGING_MIN_ROUNDS)):
        rates = {}
        for name in (names if round_ % 2 == 0 else names[::-1]):
            workload = PAGING_WORKLOADS[name]
            gc.collect()                       # no collection left over from the last run
            result = run_pysev_paging(workload, iterations_for(workload, scale))
            rates[name] = result.rate
            if name not in best or result.seconds < best[name].seconds:
                best[name] = result
        if "pagewalk" in rates and "pagewalk-sev" in rates:
            ratios.append(rates["pagewalk-sev"] / rates["pagewalk"])
    return best, ratios


ALL_WORKLOADS = {**WORKLOADS, **PAGING_WORKLOADS}


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


# -- vivisect -----------------------------------------------------------------
#
# vivisect's envi emulator is pure Python like pysev and interprets one
# instruction per stepi() call, so it runs each workload with
# VIVISECT_DIVISOR times fewer iterations (a second or two), counts the
# instructions itself and reports the rate of that run.  Its final state is
# checked against unicorn's (pysev's when unicorn is missing) for the same
# iteration count.
#
# Its memory is three maps (code, the data buffer, one stack page) rather than
# one 2 MiB map: envi rebuilds a map's whole bytes object on every store, so a
# single big map would measure 2 MiB copies instead of instruction emulation.
# A store outside the maps faults, which would show as an error in the table.

VIVISECT_DIVISOR = 50
VIVISECT_STACK = 0x1000
VIVISECT_PAGE = 0x1000


class VivisectFailed(Exception):
    """vivisect could not run a workload or got it wrong; *status* goes in the table."""

    def __init__(self, status, detail):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def vivisect_available():
    try:
        import envi.archs.amd64  # noqa: F401
    except ImportError:
        return False
    return True


def vivisect_iterations(workload, scale):
    return max(1, round(workload.iterations * scale / VIVISECT_DIVISOR))


def _vivisect_regions(code):
    code_size = -(-len(code) // VIVISECT_PAGE) * VIVISECT_PAGE
    return ((CODE_BASE, code_size), (BUF_BASE, BUF_SIZE),
            (STACK_TOP - VIVISECT_STACK, VIVISECT_STACK))


def _initial_image(code):
    """The 2 MiB mapping as every engine starts with it."""
    image = bytearray(MAP_SIZE)
    image[CODE_BASE - MAP_BASE:CODE_BASE - MAP_BASE + len(code)] = code
    image[BUF_BASE - MAP_BASE:BUF_BASE - MAP_BASE + BUF_SIZE] = BUF_PATTERN
    return image


def run_vivisect(workload, n, repeat=1):
    """Run the workload on vivisect; raise VivisectFailed when it cannot."""
    import envi
    from envi.archs.amd64 import Amd64Emulator
    from envi.memory import MM_RWX

    code = workload.binary()
    hlt = workload.hlt_address(code)
    expected = workload.instructions(n)
    limit = 2 * expected + 1000          # a wrong branch must not loop for ever
    image = _initial_image(code)
    regions = _vivisect_regions(code)
    best = None
    for _ in range(repeat):
        emu = Amd64Emulator()
        for va, size in regions:
            emu.addMemoryMap(va, MM_RWX, f"bench-{va:#x}",
                             bytes(image[va - MAP_BASE:va - MAP_BASE + size]))
        for name, value in workload.initial_registers(n).items():
            emu.setRegisterByName(name, value)
        emu.setRegisterByName("eflags", 0x2)
        emu.setProgramCounter(CODE_BASE)
        step, pc = emu.stepi, emu.getProgramCounter
        count = 0
        start = time.perf_counter()
        try:
            while pc() != hlt and count < limit:
                step()
                count += 1
        except (envi.UnsupportedInstruction, envi.InvalidInstruction) as exc:
            raise VivisectFailed("unsupported", f"at {pc():#x}: {exc}") from None
        except Exception as exc:     # noqa: BLE001 - any failure of the peer is reported
            raise VivisectFailed("error", f"at {pc():#x}: {type(exc).__name__}: {exc}") from None
        elapsed = time.perf_counter() - start
        if pc() != hlt:
            raise VivisectFailed("mismatch", f"at {pc():#x} after {count} instructions, "
                                 f"not at the hlt at {hlt:#x}")
        if count != expected:
            raise VivisectFailed("mismatch", f"executed {count} instructions, expected "
                                 f"{expected} = {workload.per_iteration}*{n}+{workload.fixed}")
        if best is None or elapsed < best:
            best = elapsed
    regs = {name: emu.getRegisterByName(name) for name in GPRS}
    regs["rip"] = pc()
    regs["rflags"] = emu.getRegisterByName("eflags") & ARITH_FLAGS
    for va, size in regions:
        image[va - MAP_BASE:va - MAP_BASE + size] = emu.readMemory(va, size)
    digest = hashlib.sha256(image).hexdigest()
    return Result("vivisect", best, count, regs, digest)


def check_vivisect(workload, result, n, reference_engine):
    """Compare vivisect's final state with *reference_engine*'s for the same n."""
    runner = run_unicorn if reference_engine == "unicorn" else run_pysev
    reference = runner(workload, n)
    try:
        compare(workload, result, reference)
    except CheckFailed as exc:
        raise VivisectFailed("mismatch", str(exc)) from None


# -- comparison and report ----------------------------------------------------------

ENGINES = ("pysev", "unicorn", "vivisect")
AVAILABLE = {"pysev": pysev_available, "unicorn": unicorn_available,
             "vivisect": vivisect_available}
INSTALL_HINT = {"pysev": "pip install -e .", "unicorn": "pip install unicorn",
                "vivisect": "pip install vivisect"}
NOT_INSTALLED = "not installed"
SYSTEM_ONLY = "-"     # the paging rows on unicorn and vivisect


class Row(NamedTuple):
    name: str
    instructions: int                 # pysev and unicorn (from the formula)
    pysev: Optional[Result]
    unicorn: Optional[Result]
    vivisect: Optional[Result] = None
    vivisect_instructions: Optional[int] = None
    notes: Optional[dict] = None      # engine -> what its rate cell shows instead

    def result(self, engine):
        return getattr(self, engine)

    def rate_cell(self, engine):
        result = self.result(engine)
        if result is not None:
            return f"{result.rate:,.0f}"
        return (self.notes or {}).get(engine, "-")


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


def _ratio(fast, slow):
    return f"{fast.rate / slow.rate:,.1f}x" if fast and slow else "-"


def format_table(rows, engines=ENGINES):
    """The table: the vivisect columns appear when vivisect is among *engines*."""
    viv = "vivisect" in engines
    header = ["workload", "instructions"]
    header += ["vivisect instructions"] if viv else []
    header += ["pysev instr/s", "unicorn instr/s"]
    header += ["vivisect instr/s"] if viv else []
    header += ["unicorn/pysev"]
    header += ["pysev/vivisect"] if viv else []
    lines = [header]
    for row in rows:
        line = [row.name, f"{row.instructions:,}"]
        if viv:
            count = row.vivisect_instructions
            line.append("-" if count is None else f"{count:,}")
        line += [row.rate_cell("pysev"), row.rate_cell("unicorn")]
        if viv:
            line.append(row.rate_cell("vivisect"))
        line.append(_ratio(row.unicorn, row.pysev))
        if viv:
            line.append(_ratio(row.pysev, row.vivisect))
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_sev_comparison(rows, ratios=()):
    """The SEV on/off line for the paging rows, or None when one of them did not run.

    The ratio is that of the two best-of rates; `ratios`, the ratio of each
    alternating round, gives its spread."""
    results = {row.name: row.pysev for row in rows if row.name in PAGING_WORKLOADS}
    off, on = results.get("pagewalk"), results.get("pagewalk-sev")
    if not (off and on):
        return None
    line = (f"pagewalk SEV on/off: {on.rate:,.0f} / {off.rate:,.0f} instr/s = "
            f"{on.rate / off.rate:.2f}x")
    if ratios:
        ordered = sorted(ratios)
        median = ordered[len(ordered) // 2] if len(ordered) % 2 else (
            ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
        line += (f" (best of {len(ratios)} alternating rounds each; the rounds' ratios "
                 f"{ordered[0]:.2f}-{ordered[-1]:.2f}, median {median:.2f})")
    return line


def run(names, scale=1.0, repeat=1, engines=ENGINES, out=sys.stdout):
    """Run the workloads *names* on *engines*; print the table to *out*; return the rows.

    An engine that is not installed gets a note and "not installed" cells.
    Raises CheckFailed when pysev or unicorn fails a check; vivisect's failures
    show in its cells ("unsupported", "mismatch", "error") with a line below.
    """
    engines = tuple(e for e in ENGINES if e in engines)
    installed = {e: AVAILABLE[e]() for e in engines}
    use_pysev = installed.get("pysev", False)
    use_unicorn = installed.get("unicorn", False)
    use_vivisect = installed.get("vivisect", False)
    for engine in engines:
        if not installed[engine]:
            print(f"note: {engine} is not installed ({INSTALL_HINT[engine]}, or "
                  f"pip install -e '.[bench]'); its cells show '{NOT_INSTALLED}'", file=out)
    # vivisect's results are checked against unicorn even when only vivisect is timed
    viv_reference = "unicorn" if unicorn_available() else "pysev"
    rows = []
    walks = {}
    viv_failures = []
    viv_checked = []
    paging = [name for name in names if name in PAGING_WORKLOADS]
    paging_results = {}
    paging_ratios = []
    if use_pysev and paging:
        for name in paging:
            walks[name] = check_page_walks(PAGING_WORKLOADS[name])
        paging_results, paging_ratios = run_paging_interleaved(paging, scale, repeat)
    for name in names:
        notes = {e: NOT_INSTALLED for e in engines if not installed[e]}
        if name in PAGING_WORKLOADS:
            workload = PAGING_WORKLOADS[name]
            n = iterations_for(workload, scale)
            notes.update({e: SYSTEM_ONLY for e in ("unicorn", "vivisect") if e in engines})
            rows.append(Row(name, workload.instructions(n), paging_results.get(name), None,
                            notes=notes))
            continue
        workload = WORKLOADS[name]
        n = iterations_for(workload, scale)
        if use_unicorn:
            check_formula(workload)
        pysev_result = run_pysev(workload, n, repeat) if use_pysev else None
        unicorn_result = run_unicorn(workload, n, repeat) if use_unicorn else None
        if pysev_result and unicorn_result:
            compare(workload, pysev_result, unicorn_result)
        viv_result = viv_count = None
        if use_vivisect:
            viv_n = vivisect_iterations(workload, scale)
            viv_count = workload.instructions(viv_n)
            try:
                viv_result = run_vivisect(workload, viv_n, repeat)
                check_vivisect(workload, viv_result, viv_n, viv_reference)
                viv_checked.append(name)
            except VivisectFailed as exc:
                viv_result = None
                notes["vivisect"] = exc.status
                viv_failures.append(f"vivisect {name}: {exc}")
        rows.append(Row(name, workload.instructions(n), pysev_result, unicorn_result,
                        viv_result, viv_count, notes))
    print(format_table(rows, engines), file=out)
    for line in viv_failures:
        print(line, file=out)
    if paging and ("unicorn" in engines or "vivisect" in engines):
        print(f"{SYSTEM_ONLY}: the paging workloads need a CPU with paging and SEV set up "
              "by the host (system mode): pysev only", file=out)
    comparison = format_sev_comparison(rows, paging_ratios)
    if comparison:
        print(comparison, file=out)
    standard = any(name in WORKLOADS for name in names)
    checks = ["instruction counts"] if use_pysev else []
    if walks:
        per_sweep = ", ".join(f"{name} {count}" for name, count in walks.items())
        checks.append(f"page walks per sweep ({per_sweep}) and the paged data")
    if use_unicorn and standard:
        checks.insert(0, "formulas")
    if use_pysev and use_unicorn and standard:
        checks.append("final registers and memory agree")
    if checks:
        print("checked: " + ", ".join(checks), file=out)
    if viv_checked:
        print(f"checked vivisect: instruction counts and final state agree with "
              f"{viv_reference} at 1/{VIVISECT_DIVISOR} of the iterations "
              f"({', '.join(viv_checked)})", file=out)
    return rows


# -- plot -------------------------------------------------------------------------

SVG_NS = "http://www.w3.org/2000/svg"
ENGINE_COLOURS = {"pysev": "#3b6ea8", "unicorn": "#d9822b", "vivisect": "#3f9a5a"}
PLOT_BAR = 26            # bar width
PLOT_GAP = 30            # space between workload groups
PLOT_LEFT, PLOT_TOP, PLOT_HEIGHT, PLOT_BOTTOM = 70, 60, 300, 50


def short_rate(value):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def plot_svg(rows, engines=ENGINES):
    """An SVG bar chart (log scale) of instructions per second per workload and engine."""
    import math
    from xml.sax.saxutils import escape, quoteattr

    engines = [e for e in ENGINES if e in engines]
    bars = [(k, j, row, engine, row.result(engine))
            for k, row in enumerate(rows) for j, engine in enumerate(engines)
            if row.result(engine) is not None]
    rates = [result.rate for *_, result in bars if 0 < result.rate < float("inf")]
    lo = 10 ** math.floor(math.log10(min(rates))) if rates else 1e4
    hi = 10 ** math.ceil(math.log10(max(rates))) if rates else 1e8
    if hi <= lo:
        hi = lo * 10
    group = len(engines) * PLOT_BAR + PLOT_GAP
    width = PLOT_LEFT + max(len(rows), 1) * group + 20
    legend_x = width
    width += 120
    height = PLOT_TOP + PLOT_HEIGHT + PLOT_BOTTOM
    bottom = PLOT_TOP + PLOT_HEIGHT

    def y(rate):
        rate = min(max(rate, lo), hi)
        return bottom - PLOT_HEIGHT * (math.log10(rate) - math.log10(lo)) / (
            math.log10(hi) - math.log10(lo))

    out = [f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text class="title" x="{PLOT_LEFT}" y="22" font-size="15">'
           'Guest instructions per second (log scale)</text>',
           f'<text class="subtitle" x="{PLOT_LEFT}" y="40" fill="#555">'
           f'vivisect runs 1/{VIVISECT_DIVISOR} of the iterations; '
           'the paging workloads run on pysev only</text>']
    decade = math.log10(lo)
    while decade <= math.log10(hi) + 1e-9:
        value = 10 ** decade
        ty = y(value)
        out.append(f'<line class="grid" x1="{PLOT_LEFT}" y1="{ty:.1f}" x2="{legend_x - 10}" '
                   f'y2="{ty:.1f}" stroke="#ddd"/>')
        out.append(f'<text class="tick" x="{PLOT_LEFT - 6}" y="{ty + 4:.1f}" '
                   f'text-anchor="end">{short_rate(value)}</text>')
        decade += 1
    out.append(f'<line class="axis" x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" '
               f'y2="{bottom}" stroke="#333"/>')
    out.append(f'<text class="axis-label" x="16" y="{PLOT_TOP + PLOT_HEIGHT / 2:.0f}" '
               f'transform="rotate(-90 16 {PLOT_TOP + PLOT_HEIGHT / 2:.0f})" '
               'text-anchor="middle">instructions/s</text>')
    for k, row in enumerate(rows):
        cx = PLOT_LEFT + PLOT_GAP / 2 + k * group + len(engines) * PLOT_BAR / 2
        out.append(f'<text class="workload" x="{cx:.1f}" y="{bottom + 20}" '
                   f'text-anchor="middle">{escape(row.name)}</text>')
    for k, j, row, engine, result in bars:
        x = PLOT_LEFT + PLOT_GAP / 2 + k * group + j * PLOT_BAR
        top = y(result.rate)
        tip = (f"{row.name} / {engine}: {result.rate:,.0f} instr/s "
               f"({result.instructions:,} instructions)")
        out.append(f'<rect class="bar" data-workload={quoteattr(row.name)} '
                   f'data-engine="{engine}" data-rate="{result.rate:.0f}" '
                   f'data-instructions="{result.instructions}" x="{x + 2:.1f}" '
                   f'y="{top:.1f}" width="{PLOT_BAR - 4}" height="{bottom - top:.1f}" '
                   f'fill="{ENGINE_COLOURS[engine]}"><title>{escape(tip)}</title></rect>')
        out.append(f'<text class="value" x="{x + PLOT_BAR / 2:.1f}" y="{top - 4:.1f}" '
                   f'text-anchor="middle" font-size="9">{short_rate(result.rate)}</text>')
    for j, engine in enumerate(engines):
        ly = PLOT_TOP + 10 + j * 20
        out.append(f'<rect class="legend" data-engine="{engine}" x="{legend_x}" y="{ly}" '
                   f'width="12" height="12" fill="{ENGINE_COLOURS[engine]}"/>')
        out.append(f'<text class="legend" x="{legend_x + 18}" y="{ly + 10}">{engine}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(rows, path, engines=ENGINES):
    path = pathlib.Path(path)
    path.write_text(plot_svg(rows, engines), encoding="utf-8")
    return path


# -- profile ------------------------------------------------------------------------

def profile(names, scale=1.0, top=12, out=sys.stdout):
    """Run each workload once on pysev under cProfile and print the top entries by
    own time.  Only the run is profiled: not the imports nor the setup."""
    import cProfile
    import pstats

    for name in names:
        workload = ALL_WORKLOADS[name]
        n = iterations_for(workload, scale)
        if name in PAGING_WORKLOADS:
            cpu, _mem, hlt = paging_machine(workload, n)
            go = (lambda c, h: lambda: c.run(float("inf"), h))(cpu, hlt)
        else:
            emu, hlt = _pysev_setup(workload, n)
            go = (lambda e, h: lambda: e.emu_start(CODE_BASE, h))(emu, hlt)
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.runcall(go)
        elapsed = time.perf_counter() - start
        count = workload.instructions(n)
        print(f"== {name}: {count:,} instructions in {elapsed:.2f} s under cProfile "
              f"({count / elapsed:,.0f} instr/s)", file=out)
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)


# -- instruction forms ----------------------------------------------------------------

FORMS_SCALE = 0.01                   # the forms are counted on short, single-stepped runs


def count_forms(names, scale=FORMS_SCALE):
    """Executed instructions per encoding form (iced's name, e.g. Add_rm64_r64) over
    the workloads *names*, counted by single-stepping pysev (a step hook sees every
    instruction); returns {form: count}, largest first."""
    from collections import Counter

    counts = Counter()
    for name in names:
        workload = ALL_WORKLOADS[name]
        n = iterations_for(workload, scale)
        if name in PAGING_WORKLOADS:
            cpu, _mem, hlt = paging_machine(workload, n)
        else:
            emu, hlt = _pysev_setup(workload, n)
            cpu = emu.cpu
            cpu.rip = CODE_BASE

        def hook(rip, cpu=cpu):
            counts[cpu.block_at(rip, 1).insns[0].form] += 1

        cpu.run(float("inf"), hlt, step_hook=hook)
        if cpu.icount != workload.instructions(n):
            raise CheckFailed(f"{name}: {cpu.icount} instructions single-stepped, expected "
                              f"{workload.instructions(n)}")
    return dict(counts.most_common())


def print_forms(names, out=sys.stdout):
    counts = count_forms(names)
    total = sum(counts.values())
    print(f"rank  form                      executed  share   (single-stepped, scale {FORMS_SCALE}: "
          f"{', '.join(names)})", file=out)
    for rank, (form, count) in enumerate(counts.items(), 1):
        print(f"{rank:4d}  {form:24s} {count:9,d}  {100 * count / total:5.1f} %", file=out)


# -- command line ----------------------------------------------------------------------

def parse_engines(text):
    """'pysev,vivisect' -> ('pysev', 'vivisect') in table order; ValueError if unknown."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in ENGINES]
    if unknown or not names:
        raise ValueError(f"unknown engine {unknown[0]!r}" if unknown else "no engine given")
    return tuple(e for e in ENGINES if e in names)


def bench(names=None, scale=1.0, repeat=1, engines=ENGINES, plot=None, out=None, err=None,
          firmware=None):
    """Run, print the table, write the plot, then (*firmware*: a path) boot that firmware
    on pysev (benchmarks/firmware.py); return the exit code (0, or 1 on a failure)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    names = list(dict.fromkeys(names or ALL_WORKLOADS))
    if "pysev" in engines and not pysev_available():
        print("benchmarks: pysev.api cannot be imported", file=err)
        return 1
    if not any(AVAILABLE[e]() for e in engines):
        print(f"benchmarks: none of the engines {', '.join(engines)} is installed "
              "(pip install -e '.[bench]')", file=err)
        return 1
    try:
        rows = run(names, scale, repeat, engines, out=out)
    except CheckFailed as exc:
        print(f"benchmarks: check failed: {exc}", file=err)
        return 1
    if plot:
        try:
            path = write_plot(rows, plot, engines)
        except OSError as exc:
            print(f"benchmarks: cannot write the plot {plot}: {exc.strerror}", file=err)
            return 1
        print(f"plot: {path}", file=out)
    if firmware and "pysev" in engines:
        from benchmarks import firmware as fw
        count = max(1, int(fw.LONG_RUN * scale))
        if fw.report(firmware, max(repeat, 3), count, out=out, err=err):
            return 1
    return 0


def default_firmware(names, choice):
    """The firmware to boot after the table: *choice* ("none" for none), or OVMF for a
    run of every workload."""
    if choice is not None:
        return None if choice == "none" else choice
    from benchmarks.firmware import OVMF
    return OVMF if not names else None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the pysev benchmark workloads.")
    parser.add_argument("--workload", action="append", choices=sorted(ALL_WORKLOADS),
                        metavar="NAME",
                        help="run only NAME (may be repeated; choices: %(choices)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every iteration count by F (default 1.0)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each engine N times and report the best (default 1)")
    parser.add_argument("--engines", default=",".join(ENGINES), metavar="LIST",
                        help="comma separated engines to run (default %(default)s)")
    parser.add_argument("--plot", metavar="FILE",
                        help="write an SVG bar chart of instructions/s to FILE")
    parser.add_argument("--firmware", metavar="FILE",
                        help="after the table, boot FILE on pysev: time to its first 64-bit "
                             "instruction and a long run's instructions/s (default: Debian's "
                             "OVMF.fd when every workload runs; 'none' skips it)")
    parser.add_argument("--forms", action="store_true",
                        help="instead of the table, rank the instruction forms the workloads "
                             "execute by frequency (single-stepped, at a small scale)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table, profile each workload on pysev "
                             "(cProfile, top entries by own time)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        engines = parse_engines(args.engines)
    except ValueError as exc:
        parser.error(f"--engines: {exc} (choose from {', '.join(ENGINES)})")
    names = args.workload or list(ALL_WORKLOADS)
    if args.profile:
        profile(dict.fromkeys(names), args.scale)
        return 0
    if args.forms:
        print_forms(list(dict.fromkeys(names)))
        return 0
    return bench(names, args.scale, args.repeat, engines, args.plot,
                 firmware=default_firmware(args.workload, args.firmware))


if __name__ == "__main__":
    sys.exit(main())
