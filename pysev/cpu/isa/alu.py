"""add, adc, sub, sbb, cmp, inc, dec, neg."""

from ..emit import emits, mask_of
from .. import flags as F


# Measured frequency rank 4 (ADD_RM64_R64, 7.6 %) and 9 (CMP_RM64_R64, 4.0 %).
@emits("ADD", "ADC", "SUB", "SBB", "CMP")
def arith(e, ins):
    dst, src = ins.ops
    size = dst.size
    a = e.get(dst)
    b = e.get(src)
    m = ins.mnem
    r = e.tmp()
    op = "+" if m in ("ADD", "ADC") else "-"
    if m in ("ADC", "SBB"):
        e.line(f"{r} = {a} {op} {b} {op} {e.cf()}")
    else:
        e.line(f"{r} = {a} {op} {b}")
    if m != "CMP":
        e.write(dst, f"{r} & {mask_of(size):#x}")
    e.flags(F.ADD if op == "+" else F.SUB, size, a, b, r)


# Measured frequency rank 2 (DEC_RM64, 10.8 %): the CF that INC/DEC keep is
# computed from the previous flag-setting instruction's values when they are
# known, so that instruction's flag assignments become dead.
@emits("INC", "DEC")
def incdec(e, ins):
    (dst,) = ins.ops
    size = dst.size
    a = e.get(dst)
    r = e.tmp()
    e.line(f"{r} = {a} {'+' if ins.mnem == 'INC' else '-'} 1")
    e.write(dst, f"{r} & {mask_of(size):#x}")
    e.flags_keep_cf(F.INC if ins.mnem == "INC" else F.DEC, size, a, r)


@emits("NEG")
def neg(e, ins):
    (dst,) = ins.ops
    size = dst.size
    b = e.get(dst)
    r = e.tmp()
    e.line(f"{r} = -{b}")
    e.write(dst, f"{r} & {mask_of(size):#x}")
    e.flags(F.SUB, size, "0", b, r)
