"""bt, bts, btr, btc, bsf, bsr, lzcnt, tzcnt, popcnt."""

from decoder.records import CF, ZF
from ..emit import emits, mask_of
from .. import flags as F

_MODIFY = {"BT": None, "BTS": "|", "BTR": "&~", "BTC": "^"}


@emits("BT", "BTS", "BTR", "BTC")
def bit_test(e, ins):
    base, off = ins.ops
    size = base.size
    bits = 8 * size
    mod = _MODIFY[ins.mnem]
    if base.kind == "mem" and off.kind == "reg":
        # the register offset is signed and may reach outside the operand
        o = e.tmp()
        sb = 1 << (bits - 1)
        e.line(f"{o} = ({e.read(off)} ^ {sb:#x}) - {sb:#x}")
        a = e.tmp()
        lin_mask = e.mode.lmask
        e.line(f"{a} = ({e.addr(base)} + ({o} >> {bits.bit_length() - 1}) * {size}) & {lin_mask:#x}")
        v = e.load(size, a)
        bit = e.tmp()
        e.line(f"{bit} = {o} & {bits - 1}")
        target = ("mem", a)
    else:
        v = e.get(base)
        bit = f"{off.value & (bits - 1)}" if off.kind == "imm" else f"({e.read(off)} & {bits - 1})"
        if not bit.isdigit():
            t = e.tmp()
            e.line(f"{t} = {bit}")
            bit = t
        target = ("op", base)
    cf = e.tmp()
    e.line(f"{cf} = ({v} >> {bit}) & 1")
    if mod is not None:
        if mod == "&~":
            new = f"{v} & ~(1 << {bit}) & {mask_of(size):#x}"
        else:
            new = f"{v} {mod} (1 << {bit})"
        if target[0] == "mem":
            e.store(size, target[1], f"({new})")
        else:
            e.write(target[1], new)
    e.flags_merge(CF, cf)


@emits("BSF", "BSR")
def bit_scan(e, ins):
    dst, src = ins.ops
    v = e.get(src)
    e.line(f"if {v}:")
    e.indent += 1
    if ins.mnem == "BSF":
        e.write(dst, f"({v} & -{v}).bit_length() - 1")
    else:
        e.write(dst, f"{v}.bit_length() - 1")
    e.indent -= 1
    # ZF tells whether the source was zero; the other flags are undefined
    e.flags(F.LOGIC, src.size, r=v)


@emits("LZCNT", "TZCNT")
def count_zeros(e, ins):
    dst, src = ins.ops
    size = src.size
    bits = 8 * size
    v = e.get(src)
    r = e.tmp()
    if ins.mnem == "LZCNT":
        e.line(f"{r} = {bits} - {v}.bit_length()")
    else:
        e.line(f"{r} = ({v} & -{v}).bit_length() - 1 if {v} else {bits}")
    e.write(dst, r)
    e.flags(F.EFL, 8, r=f"({CF} if {v} == 0 else 0) | ({ZF} if {r} == 0 else 0)")


@emits("POPCNT")
def popcnt(e, ins):
    dst, src = ins.ops
    v = e.get(src)
    r = e.tmp()
    e.line(f"{r} = {v}.bit_count()")
    e.write(dst, r)
    e.flags(F.EFL, 8, r=f"{ZF} if {v} == 0 else 0")
