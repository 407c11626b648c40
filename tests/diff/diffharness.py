"""Differential-testing harness: pysev versus unicorn 2.1.4 (QEMU TCG) in 64-bit mode.

One hypothesis example = one instruction executed once in each engine from identical state:

    code   page 0x1000   the instruction (immediate patched from the example)
    data   page 0x10000  seeded random bytes + example-chosen bytes at the memory operand
    stack  page 0x20000  seeded random bytes + example-chosen bytes at [rsp]; rsp near 0x20800

`prepare()` turns the form-independent raw example (`Raw`) into a concrete `State` plus an
`Expect` (which flag bits / register bits / memory bytes are architecturally defined for this
particular execution), `run_engine()` runs an engine, `compare()` diffs the results.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import contextlib
import zlib

import iced_x86 as ix
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from forms import CODE_BASE, Form

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
PAGE = 0x1000
DATA_BASE = 0x10000
STACK_BASE = 0x20000
STACK_MID = STACK_BASE + 0x800

CF, PF, AF, ZF, SF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
COMPARED_FLAGS = ARITH | DF
_RAW_FLAG_BITS = (CF, PF, AF, ZF, SF, OF, DF)  # Raw.flags bit i -> rflags bit

GPRS = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

_ICED_FLAG = {ix.RflagsBits.OF: OF, ix.RflagsBits.SF: SF, ix.RflagsBits.ZF: ZF, ix.RflagsBits.AF: AF,
              ix.RflagsBits.CF: CF, ix.RflagsBits.PF: PF, ix.RflagsBits.DF: DF}


def iced_flags(bits: int) -> int:
    return sum(x86 for ib, x86 in _ICED_FLAG.items() if bits & ib)


# iced register -> (64-bit container name, bit shift, size in bits)
_REG64 = {getattr(ix.Register, n.upper()): n for n in GPRS}
_HIGH8 = {ix.Register.AH, ix.Register.CH, ix.Register.DH, ix.Register.BH}


def reg_info(reg):
    full = ix.RegisterExt.full_register(reg)
    if full not in _REG64:
        raise ValueError(f"not a GPR: {reg}")
    if reg in _HIGH8:
        full = ix.RegisterExt.full_register(reg - 4)  # AH->AL etc. (iced order: AL CL DL BL AH CH DH BH)
        return _REG64[full], 8, 8
    return _REG64[full], 0, ix.RegisterExt.size(reg) * 8


def mask(bits):
    return (1 << bits) - 1


def sext(v, bits):
    v &= mask(bits)
    return v - (1 << bits) if v >> (bits - 1) else v


# --------------------------------------------------------------------------- inputs
@dataclasses.dataclass(frozen=True)
class Raw:
    """Form-independent example drawn by hypothesis."""
    regs: tuple          # N_REG_SLOTS x u64 for the registers the form touches plus two others
                         # (see reg_slots; rsp and memory-operand registers get overridden;
                         # the remaining GPRs are random from `seed`)
    flags: int           # bit i set -> _RAW_FLAG_BITS[i] initially set
    mem: tuple           # 2 x u64: 16 bytes placed at the memory operand (and at [rsp])
    imm: int             # immediate value (truncated to the immediate's size)
    seed: int            # background fill of the data/stack pages
    aux: tuple           # 4 x u16: addressing offsets and form-specific choices


N_REG_SLOTS = 6
_INFO = ix.InstructionInfoFactory()
_SLOTS_CACHE = {}


def reg_slots(form: Form):
    """GPRs whose initial values come from Raw.regs: the ones the form reads or writes
    (explicitly or implicitly, rsp excluded), then two others, N_REG_SLOTS in all."""
    if form.asm not in _SLOTS_CACHE:
        used = set()
        for u in _INFO.info(form.insn).used_registers():
            if ix.RegisterExt.is_gpr(u.register):
                used.add(reg_info(u.register)[0])
        used.discard("rsp")
        touched = [n for n in GPRS if n in used]
        rest = [n for n in GPRS if n not in used and n != "rsp"]
        k = zlib.crc32(form.asm.encode()) % len(rest)
        rest = rest[k:] + rest[:k]
        _SLOTS_CACHE[form.asm] = (touched + rest)[:max(N_REG_SLOTS, len(touched))]
    return _SLOTS_CACHE[form.asm]


EDGE_VALUES = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000,
               0xffffffff, 0x100000000, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff,
               0xfffffffffffffffe, 0x8000000000000001, 0x00000000ffffff80, 0xffffffff80000000,
               0x5555555555555555, 0xaaaaaaaaaaaaaaaa, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f]

u64 = st.one_of(
    st.integers(0, M64),
    st.sampled_from(EDGE_VALUES),
    st.integers(-0x100, 0x100).map(lambda v: v & M64),
    st.integers(0, 64),
)


def raw_inputs():
    return st.builds(
        Raw,
        regs=st.tuples(*[u64] * N_REG_SLOTS),
        flags=st.integers(0, 0x7f),
        mem=st.tuples(u64, u64),
        imm=u64,
        seed=st.integers(0, 2 ** 32 - 1),
        aux=st.tuples(*[st.integers(0, 0xffff)] * 4),
    )


def edge_raw(v, flags, aux):
    return Raw(regs=(v,) * N_REG_SLOTS, flags=flags, mem=(v,) * 2, imm=v, seed=1, aux=(aux,) * 4)


# Hand-picked examples run for every form before the generated ones.
EDGE_EXAMPLES = [
    edge_raw(0, 0x00, 0),
    edge_raw(M64, 0x7f, 1),
    edge_raw(1, 0x01, 0x11),
    edge_raw(0x80, 0x18, 0x23),
    edge_raw(0x8000, 0x20, 0x35),
    edge_raw(0x80000000, 0x06, 0x47),
    edge_raw(0x8000000000000000, 0x61, 0x59),
    edge_raw(0x7fffffffffffffff, 0x08, 0x6b),
    edge_raw(0xffffffff, 0x11, 0x7d),
]


# --------------------------------------------------------------------------- state
@dataclasses.dataclass
class State:
    code: bytes
    regs: dict
    rflags: int
    data: bytearray
    stack: bytearray

    def copy(self):
        return State(self.code, dict(self.regs), self.rflags, bytearray(self.data), bytearray(self.stack))


@dataclasses.dataclass
class Expect:
    flag_mask: int = COMPARED_FLAGS       # rflags bits that must match
    reg_masks: dict = dataclasses.field(default_factory=dict)  # name -> bits that must match (default all)
    undefined_mem: list = dataclasses.field(default_factory=list)  # (address, length) not compared
    ref_fix: dict = dataclasses.field(default_factory=dict)  # GPR -> value replacing unicorn's (see prepare)
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Result:
    regs: dict
    rip: int
    rflags: int
    data: bytes
    stack: bytes
    fault: tuple | None = None   # (vector, address)
    info: str = ""


def _page_of(addr):
    if DATA_BASE <= addr < DATA_BASE + PAGE:
        return "data", addr - DATA_BASE
    if STACK_BASE <= addr < STACK_BASE + PAGE:
        return "stack", addr - STACK_BASE
    raise AssertionError(f"harness error: address {addr:#x} outside the data/stack pages")


def mem_rw(state, addr, size, value=None):
    page, off = _page_of(addr)
    _page_of(addr + size - 1)
    buf = state.data if page == "data" else state.stack
    if value is None:
        return int.from_bytes(buf[off:off + size], "little")
    buf[off:off + size] = (value & mask(size * 8)).to_bytes(size, "little")
    return None


def reg_get(state, reg):
    name, shift, bits = reg_info(reg)
    return (state.regs[name] >> shift) & mask(bits)


def reg_set(state, reg, value):
    name, shift, bits = reg_info(reg)
    m = mask(bits) << shift
    state.regs[name] = (state.regs[name] & ~m & M64) | ((value << shift) & m)


def effective_address(insn, regs):
    if insn.is_ip_rel_memory_operand:
        return insn.ip_rel_memory_address
    ea = insn.memory_displacement
    addr_bits = 64
    if insn.memory_base != ix.Register.NONE:
        name, _, bits = reg_info(insn.memory_base)
        ea += regs[name]
        addr_bits = bits
    if insn.memory_index != ix.Register.NONE:
        name, _, bits = reg_info(insn.memory_index)
        ea += regs[name] * insn.memory_index_scale
        addr_bits = bits
    return ea & mask(addr_bits)


def mem_operand_index(insn):
    for i in range(insn.op_count):
        if insn.op_kind(i) == ix.OpKind.MEMORY:
            return i
    return None


def op_size_bits(insn, i):
    k = insn.op_kind(i)
    if k == ix.OpKind.REGISTER:
        return reg_info(insn.op_register(i))[2]
    if k == ix.OpKind.MEMORY:
        return ix.MemorySizeExt.size(insn.memory_size) * 8
    raise ValueError(k)


def op_get(state, insn, i):
    k = insn.op_kind(i)
    if k == ix.OpKind.REGISTER:
        return reg_get(state, insn.op_register(i))
    if k == ix.OpKind.MEMORY:
        return mem_rw(state, effective_address(insn, state.regs), op_size_bits(insn, i) // 8)
    raise ValueError(k)


def op_set(state, insn, i, value):
    k = insn.op_kind(i)
    if k == ix.OpKind.REGISTER:
        return reg_set(state, insn.op_register(i), value)
    if k == ix.OpKind.MEMORY:
        return mem_rw(state, effective_address(insn, state.regs), op_size_bits(insn, i) // 8, value)
    raise ValueError(k)


def decode(code):
    return ix.Decoder(64, code, ip=CODE_BASE).decode()


M = ix.Mnemonic
SHIFTS = {M.SHL, M.SAL, M.SHR, M.SAR, M.ROL, M.ROR, M.RCL, M.RCR, M.SHLD, M.SHRD}
BITTESTS = {M.BT, M.BTS, M.BTR, M.BTC}
POPS_FLAGS = {M.POPF, M.POPFQ}
STRING_CMP = {M.CMPSB, M.CMPSW, M.CMPSD, M.CMPSQ, M.SCASB, M.SCASW, M.SCASD, M.SCASQ}


def _string_elem_size(insn):
    return ix.MemorySizeExt.size(insn.memory_size)


def prepare(form: Form, raw: Raw):
    """Build the initial state for `form` from `raw`, and what is defined about the outcome."""
    # ---- code with the example's immediate
    code = bytearray(form.code)
    if form.imm_size:
        code[form.imm_offset:form.imm_offset + form.imm_size] = \
            (raw.imm & mask(8 * form.imm_size)).to_bytes(form.imm_size, "little")
    code = bytes(code)
    insn = decode(code)
    mn = insn.mnemonic
    a0, a1, a2, a3 = raw.aux

    rng = random.Random(raw.seed)
    regs = {n: rng.getrandbits(64) for n in GPRS}
    regs.update(zip(reg_slots(form), raw.regs))
    rflags = 0x2
    for i, bit in enumerate(_RAW_FLAG_BITS):
        if raw.flags >> i & 1:
            rflags |= bit
    state = State(code, regs, rflags, bytearray(rng.randbytes(PAGE)), bytearray(rng.randbytes(PAGE)))
    exp = Expect()

    regs["rsp"] = STACK_MID + 8 * ((a0 >> 4) % 16 - 8)
    overlay = b"".join(v.to_bytes(8, "little") for v in raw.mem)

    # ---- explicit memory operand: point base/index registers into the data page
    mi = mem_operand_index(insn)
    if mi is not None and mn != M.LEA:
        base, index = insn.memory_base, insn.memory_index
        if base not in (ix.Register.NONE, ix.Register.RSP):
            off = 0x780 + a1 % 0x100
            if mn == M.CMPXCHG16B:
                off &= ~0xF        # #GP unless 16-byte aligned
            regs[reg_info(base)[0]] = DATA_BASE + off
        if index != ix.Register.NONE:
            regs[reg_info(index)[0]] = ((a2 % 32) - 16) & M64
        ea = effective_address(insn, regs)
        mem_rw(state, ea, 16, int.from_bytes(overlay, "little"))

    # ---- implicit stack operand
    if insn.is_stack_instruction:
        mem_rw(state, regs["rsp"], 16, int.from_bytes(overlay, "little"))
        if mn in POPS_FLAGS:
            size = 2 if insn.code == ix.Code.POPFW else 8
            v = mem_rw(state, regs["rsp"], size)
            # Keep TF/IF/IOPL/NT/AC/ID/... clear (would trap or depend on privilege); keep the
            # arithmetic flags, DF and the reserved bits 1/3/5 (the CPU must ignore 3/5).
            mem_rw(state, regs["rsp"], size, v & (COMPARED_FLAGS | 0x2A))

    # ---- string instructions: rsi/rdi in the data page, small rcx
    if insn.is_string_instruction:
        esize = _string_elem_size(insn)
        # 32-bit address size (67h): ESI/EDI/ECX are used; keep random bits above them
        a32 = any(insn.op_kind(i) in (ix.OpKind.MEMORY_SEG_ESI, ix.OpKind.MEMORY_ESEDI)
                  for i in range(insn.op_count))
        high = (lambda n: regs[n] & ~M32) if a32 else (lambda n: 0)
        rsi = DATA_BASE + 0x300 + a1 % 0x100
        if a0 % 4 == 0:
            rdi = rsi + (a2 % 33) - 16      # overlapping buffers
        else:
            rdi = DATA_BASE + 0xb00 + a2 % 0x100
        regs["rsi"], regs["rdi"] = high("rsi") | rsi, high("rdi") | rdi
        rep = insn.has_rep_prefix or insn.has_repe_prefix or insn.has_repne_prefix
        if rep:
            regs["rcx"] = high("rcx") | a3 % 10
        if mn in STRING_CMP:
            k = (a3 >> 4) % 10 if rep else (a3 >> 4) % 2
            step = -esize if rflags & DF else esize
            is_scas = mn in (M.SCASB, M.SCASW, M.SCASD, M.SCASQ)
            acc = regs["rax"] & mask(8 * esize)
            positions = range(k) if (insn.has_repe_prefix or not rep) else [k]
            for j in positions:
                v = acc if is_scas else mem_rw(state, rsi + j * step, esize)
                mem_rw(state, rdi + j * step, esize, v)

    # ---- form-specific input shaping
    if mn in (M.DIV, M.IDIV) and a3 % 4:
        bits = op_size_bits(insn, 0)
        divisor = op_get(state, insn, 0)
        if divisor:
            if bits == 8:
                lo, hi = regs["rax"] & 0xff, (regs["rax"] >> 8) & 0xff
            else:
                lo, hi = regs["rax"] & mask(bits), regs["rdx"] & mask(bits)
            if mn == M.DIV:
                hi %= divisor
            else:
                hi = mask(bits) if lo >> (bits - 1) else 0
            if bits == 8:
                regs["rax"] = (regs["rax"] & ~0xff00) | (hi << 8)
            else:
                regs["rdx"] = (regs["rdx"] & ~mask(bits)) | hi
    if mn == M.CMPXCHG and a3 % 2:
        bits = op_size_bits(insn, 0)
        regs["rax"] = (regs["rax"] & ~mask(bits)) | op_get(state, insn, 0)
    if mn in (M.CMPXCHG8B, M.CMPXCHG16B) and a3 % 2:
        half = 32 if mn == M.CMPXCHG8B else 64
        v = mem_rw(state, effective_address(insn, regs), half // 4)
        regs["rax"] = (regs["rax"] & ~mask(half)) | (v & mask(half))
        regs["rdx"] = (regs["rdx"] & ~mask(half)) | (v >> half)
    if mn in BITTESTS and mi == 0 and insn.op_kind(1) == ix.OpKind.REGISTER:
        # bit offset register: signed, may reach far outside the operand, but stay in the page
        reg = insn.op_register(1)
        bits = reg_info(reg)[2]
        span = 0x700 * 8
        off = reg_get(state, reg) % (2 * span) - span
        reg_set(state, reg, off & mask(bits))

    # ---- known unicorn 2.1.4 (QEMU 5 TCG) deviation, corrected in the reference result:
    # 32-bit CMPXCHG in 64-bit mode.  QEMU 5 always writes both the accumulator and a register
    # destination with 32-bit register writes, clearing bits 63:32 of both.
    #  * equal: the SDM pseudocode does not write the accumulator, so RAX keeps its upper half
    #    (reported as unicorn-engine/unicorn#2332);
    #  * not equal, register destination: hardware leaves the destination register untouched,
    #    upper half included (FEX-Emu/FEX#439, angr/vex#63; later QEMU's translator was changed
    #    to leave it alone as well).  The SDM's "DEST := TEMP" write-back only matters for a
    #    memory destination, where it is the same value.
    # Only those registers are replaced by their initial values; the rest is unicorn's result.
    if mn == M.CMPXCHG and op_size_bits(insn, 0) == 32:
        equal = (regs["rax"] & M32) == op_get(state, insn, 0)
        dest_reg = reg_info(insn.op_register(0))[0] if insn.op_kind(0) == ix.OpKind.REGISTER else None
        if equal and dest_reg != "rax":
            exp.ref_fix["rax"] = regs["rax"]
        elif not equal and dest_reg is not None:
            exp.ref_fix[dest_reg] = regs[dest_reg]
        if exp.ref_fix:
            exp.notes.append("reference corrected for QEMU's 32-bit CMPXCHG zero-extension: "
                             + ", ".join(f"{n}={v:#x}" for n, v in exp.ref_fix.items()))

    # ---- which flags / destination bits are architecturally defined
    if mn in SHIFTS:
        # iced reports the count-independent worst case; use the actual count instead
        undefined = _shift_undefined(state, insn, exp)
    else:
        undefined = iced_flags(insn.rflags_undefined)
    if mn in (M.BSF, M.BSR) and op_get(state, insn, 1) == 0:
        # SDM: "If the content of the source operand is 0, the content of the destination
        # operand is undefined" (whole 64-bit register for a 32-bit destination).
        exp.reg_masks[reg_info(insn.op_register(0))[0]] = 0
        exp.notes.append("source is 0: destination undefined")
    exp.flag_mask = COMPARED_FLAGS & ~undefined
    return state, exp


def _shift_undefined(state, insn, exp):
    mn = insn.mnemonic
    bits = op_size_bits(insn, 0)
    ci = 2 if mn in (M.SHLD, M.SHRD) else 1
    if insn.op_kind(ci) == ix.OpKind.REGISTER:
        count = reg_get(state, insn.op_register(ci))
    else:
        count = insn.immediate8
    mc = count & (0x3f if bits == 64 else 0x1f)
    if mc == 0:
        return 0            # no flag (and no operand) changes at all: everything compared
    undef = 0
    if mc != 1:
        undef |= OF         # OF is defined only for 1-bit shifts/rotates
    if mn in (M.SHL, M.SAL, M.SHR, M.SAR, M.SHLD, M.SHRD):
        undef |= AF         # AF undefined for any non-zero count
    if mn in (M.SHL, M.SAL, M.SHR) and mc >= bits:
        undef |= CF         # SDM: CF undefined for SHL/SHR when count >= operand size
    if mn in (M.SHLD, M.SHRD) and mc > bits:
        # 16-bit only (count masked to 5 bits): result and flags undefined
        undef |= ARITH
        if insn.op_kind(0) == ix.OpKind.REGISTER:
            name, _, b = reg_info(insn.op_register(0))
            exp.reg_masks[name] = M64 & ~mask(b)
        else:
            exp.undefined_mem.append((effective_address(insn, state.regs), bits // 8))
        exp.notes.append(f"count {mc} > operand size: result undefined")
    return undef


# --------------------------------------------------------------------------- engines
# Bytes after the instruction under test.  Execution stops at `until` (the address right after
# the instruction) before reaching them; a HLT there just ends the translation block early
# instead of letting a translator decode a page of `add [rax], al` (00 00).
CODE_TRAILER = b"\xf4"


class HarnessError(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds, what):
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise TimeoutError(f"{what}: no result after {seconds}s (runaway execution?)")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class UnicornEngine:
    name = "unicorn"

    def __init__(self):
        import unicorn
        from unicorn import x86_const as x
        self.uc_mod = unicorn
        self.x = x
        self.regmap = {n: getattr(x, "UC_X86_REG_" + n.upper()) for n in GPRS}

    def run(self, st: State) -> Result:
        uc_mod, x = self.uc_mod, self.x
        uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_64)
        # Haswell: has LZCNT/TZCNT (ABM/BMI1), POPCNT, CMPXCHG16B, LAHF/SAHF in 64-bit mode.
        uc.ctl_set_cpu_model(x.UC_CPU_X86_HASWELL)
        for base in (CODE_BASE, DATA_BASE, STACK_BASE):
            uc.mem_map(base, PAGE)
        uc.mem_write(CODE_BASE, st.code + CODE_TRAILER)
        uc.mem_write(DATA_BASE, bytes(st.data))
        uc.mem_write(STACK_BASE, bytes(st.stack))
        for n, v in st.regs.items():
            uc.reg_write(self.regmap[n], v)
        uc.reg_write(x.UC_X86_REG_RFLAGS, st.rflags)
        faults = []

        def on_intr(u, vector, _ud):
            faults.append(vector)
            u.emu_stop()

        uc.hook_add(uc_mod.UC_HOOK_INTR, on_intr)
        try:
            uc.emu_start(CODE_BASE, CODE_BASE + len(st.code), timeout=5_000_000)
        except uc_mod.UcError as e:
            if e.errno != uc_mod.UC_ERR_INSN_INVALID:
                raise HarnessError(f"unicorn: {e}") from e
            faults.append(6)            # #UD is reported as an error, not through the hook
        fault = None
        if faults:
            fault = (faults[0], uc.reg_read(x.UC_X86_REG_RIP))
        return Result(
            regs={n: uc.reg_read(self.regmap[n]) for n in GPRS},
            rip=uc.reg_read(x.UC_X86_REG_RIP),
            rflags=uc.reg_read(x.UC_X86_REG_RFLAGS),
            data=bytes(uc.mem_read(DATA_BASE, PAGE)),
            stack=bytes(uc.mem_read(STACK_BASE, PAGE)),
            fault=fault,
        )


class PysevEngine:
    name = "pysev"

    def __init__(self):
        from pysev.api import Emulator, GuestException
        self.Emulator, self.GuestException = Emulator, GuestException

    def run(self, st: State) -> Result:
        emu = self.Emulator(mode=64)
        for base in (CODE_BASE, DATA_BASE, STACK_BASE):
            emu.mem_map(base, PAGE)
        emu.mem_write(CODE_BASE, st.code + CODE_TRAILER)
        emu.mem_write(DATA_BASE, bytes(st.data))
        emu.mem_write(STACK_BASE, bytes(st.stack))
        for n, v in st.regs.items():
            emu.reg_write(n, v)
        emu.reg_write("rflags", st.rflags)
        fault = None
        info = ""
        with time_limit(20, "pysev emu_start"):
            try:
                emu.emu_start(CODE_BASE, CODE_BASE + len(st.code))
                info = f"stop_reason={getattr(emu, 'stop_reason', '?')}"
            except self.GuestException as e:
                fault = (e.vector, e.address)
        return Result(
            regs={n: emu.reg_read(n) for n in GPRS},
            rip=emu.reg_read("rip"),
            rflags=emu.reg_read("rflags"),
            data=bytes(emu.mem_read(DATA_BASE, PAGE)),
            stack=bytes(emu.mem_read(STACK_BASE, PAGE)),
            fault=fault,
            info=info,
        )


_ENGINES = {}


def get_engine(which):
    """which: 'reference' (unicorn) or 'subject' (pysev; PYSEV_DIFF_SUBJECT=unicorn for self-test)."""
    if which not in _ENGINES:
        if which == "reference":
            _ENGINES[which] = UnicornEngine()
        elif os.environ.get("PYSEV_DIFF_SUBJECT", "pysev") == "unicorn":
            _ENGINES[which] = UnicornEngine()
        else:
            _ENGINES[which] = PysevEngine()
    return _ENGINES[which]


# --------------------------------------------------------------------------- comparison
def _fmt_state(st: State, insn):
    lines = ["  " + "  ".join(f"{n}={st.regs[n]:#018x}" for n in GPRS[i:i + 4]) for i in range(0, 16, 4)]
    lines.append(f"  rflags={st.rflags:#x} ({flag_names(st.rflags)})")
    spots = []
    mi = mem_operand_index(insn)
    if mi is not None and insn.mnemonic != M.LEA:
        spots.append(("[ea]", effective_address(insn, st.regs)))
    if insn.is_stack_instruction:
        spots.append(("[rsp]", st.regs["rsp"]))
    if insn.is_string_instruction:
        spots += [("[rsi-16]", (st.regs["rsi"] & M32) - 16), ("[rdi-16]", (st.regs["rdi"] & M32) - 16)]
    for label, addr in spots:
        try:
            b = bytes(mem_rw(st, addr, 32).to_bytes(32, "little"))
            lines.append(f"  mem {label} @{addr:#x}: {b.hex()}")
        except AssertionError:
            pass
    return "\n".join(lines)


def flag_names(v):
    return " ".join(n for n, b in (("CF", CF), ("PF", PF), ("AF", AF), ("ZF", ZF), ("SF", SF),
                                   ("DF", DF), ("OF", OF)) if v & b) or "-"


def _mem_diffs(label, base, ref, got, undefined):
    if ref == got:
        return []
    out = []
    for i, (a, b) in enumerate(zip(ref, got)):
        addr = base + i
        if a != b and not any(s <= addr < s + n for s, n in undefined):
            out.append(addr)
    if not out:
        return []
    first, last = out[0], out[-1]
    lo = first - base
    hi = min(last - base + 1, lo + 32)
    return [f"{label} memory differs at {len(out)} byte(s) {first:#x}..{last:#x}: "
            f"unicorn {ref[lo:hi].hex()} pysev {got[lo:hi].hex()} (from {first:#x})"]


def compare(st: State, exp: Expect, ref: Result, got: Result):
    diffs = []
    if ref.fault is not None:
        vec = ref.fault[0]
        if got.fault is None:
            return [f"unicorn raised vector {vec}, pysev did not fault ({got.info})"] + \
                _state_diffs(st, exp, _expected_unchanged(st), got, all_flags=True)
        if got.fault != (vec, CODE_BASE):
            diffs.append(f"fault: unicorn vector {vec} at {CODE_BASE:#x}, pysev {got.fault}")
        # faults leave the state exactly as before the instruction
        return diffs + _state_diffs(st, exp, _expected_unchanged(st), got, all_flags=True,
                                    ref_label="initial")
    if got.fault is not None:
        return [f"pysev raised GuestException vector {got.fault[0]} at {got.fault[1]:#x}; unicorn did not"]
    return _state_diffs(st, exp, ref, got)


def _expected_unchanged(st):
    return Result(regs=dict(st.regs), rip=CODE_BASE, rflags=st.rflags, data=bytes(st.data),
                  stack=bytes(st.stack))


def _state_diffs(st, exp, ref, got, all_flags=False, ref_label="unicorn"):
    diffs = []
    if ref.rip != got.rip:
        diffs.append(f"rip: {ref_label} {ref.rip:#x} pysev {got.rip:#x}")
    for n in GPRS:
        m = M64 if all_flags else exp.reg_masks.get(n, M64)
        if (ref.regs[n] ^ got.regs[n]) & m:
            diffs.append(f"{n}: {ref_label} {ref.regs[n]:#018x} pysev {got.regs[n]:#018x}")
    fm = COMPARED_FLAGS if all_flags else exp.flag_mask
    if (ref.rflags ^ got.rflags) & fm:
        bad = (ref.rflags ^ got.rflags) & fm
        diffs.append(f"rflags: {ref_label} {ref.rflags:#x} pysev {got.rflags:#x} "
                     f"(differ in {flag_names(bad)}; compared {flag_names(fm)})")
    und = [] if all_flags else exp.undefined_mem
    diffs += _mem_diffs("data", DATA_BASE, ref.data, got.data, und)
    diffs += _mem_diffs("stack", STACK_BASE, ref.stack, got.stack, und)
    return diffs


def run_one(form: Form, raw: Raw):
    st, exp = prepare(form, raw)
    ref = get_engine("reference").run(st.copy())
    if form.group == "faults" and ref.fault is None:
        raise HarnessError(f"{form.text}: expected unicorn to fault")
    if ref.fault is None and exp.ref_fix:
        ref.regs.update(exp.ref_fix)
    got = get_engine("subject").run(st.copy())
    diffs = compare(st, exp, ref, got)
    if diffs:
        insn = decode(st.code)
        raise AssertionError(
            f"\n{form.text}   bytes {st.code.hex()}   ({insn})\n"
            f"initial state:\n{_fmt_state(st, insn)}\n"
            + ("notes: " + "; ".join(exp.notes) + "\n" if exp.notes else "")
            + "mismatches:\n  " + "\n  ".join(diffs))


# --------------------------------------------------------------------------- hypothesis driver
# Generated examples per form (the EDGE_EXAMPLES come on top).  40 keeps the whole directory
# at about 2.5 minutes with `-n 2` on an idle machine; raise it locally for a deeper search
# (PYSEV_DIFF_EXAMPLES=500), PYSEV_DIFF_SHRINK=0 skips shrinking of failures.
MAX_EXAMPLES = int(os.environ.get("PYSEV_DIFF_EXAMPLES", "40"))
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
if os.environ.get("PYSEV_DIFF_SHRINK", "1") != "0":
    _PHASES.append(Phase.shrink)


def check_form(form: Form, max_examples: int | None = None, shrink: bool = True):
    get_engine("subject")                 # an engine that cannot be imported is a failure
    def diff_one_instruction(raw):
        run_one(form, raw)

    # derandomize=True derives the seed from the test function; make it differ per form so
    # that the forms do not all see the same sequence of inputs.
    diff_one_instruction._hypothesis_internal_add_digest = form.asm.encode()
    diff_one_instruction = given(raw=raw_inputs())(diff_one_instruction)
    diff_one_instruction = settings(
        max_examples=max_examples or MAX_EXAMPLES, deadline=None, derandomize=True,
        database=None, phases=_PHASES if shrink else [p for p in _PHASES if p != Phase.shrink],
        print_blob=False,
        suppress_health_check=list(HealthCheck))(diff_one_instruction)
    for ex in reversed(EDGE_EXAMPLES):
        diff_one_instruction = example(raw=ex)(diff_one_instruction)
    diff_one_instruction()
