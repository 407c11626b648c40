"""mul, imul (one, two and three operands), div, idiv."""

from decoder.records import Reg
from ..emit import emits, mask_of
from .. import flags as F


def _sx(v, size):
    s = 1 << (8 * size - 1)
    return f"(({v} ^ {s:#x}) - {s:#x})"


def _acc(size):
    """The low (AL/AX/EAX/RAX) and high (AH/DX/EDX/RDX) halves for one-operand forms."""
    if size == 1:
        return Reg(0, 1, False, "al"), Reg(0, 1, True, "ah")
    return Reg(0, size, False, "rax"), Reg(2, size, False, "rdx")


# Measured frequency rank 5 (IMUL_R64_RM64, 7.6 %): the two- and three-operand
# forms multiply once, unsigned, for the result (its low half is the signed
# product's); the signed product for CF and OF is in the flag assignment only.
@emits("MUL", "IMUL")
def mul(e, ins):
    ops = ins.ops
    signed = ins.mnem == "IMUL"
    if len(ops) == 1:
        (src,) = ops
        size = src.size
        m = mask_of(size)
        lo, hi = _acc(size)
        b = e.get(src)
        a = e.read(lo)
        p = e.tmp()
        if signed:
            e.line(f"{p} = {_sx(a, size)} * {_sx(b, size)}")
        else:
            e.line(f"{p} = {a} * {b}")
        r, h = e.tmp(), e.tmp()
        e.line(f"{r} = {p} & {m:#x}")
        e.line(f"{h} = ({p} >> {8 * size}) & {m:#x}")
        if size == 1:
            e.set_gpr(0, 2, f"{p} & 0xffff")
        else:
            e.write(lo, r)
            e.write(hi, h)
        cf = f"(0 if {p} == {_sx(r, size)} else 1)" if signed else f"(1 if {h} else 0)"
        e.flags(F.MUL, size, a=cf, r=r)     # CF=OF computed only if the flags are live
        return
    if len(ops) == 2:
        dst, src = ops
        a, b = e.get(dst), e.get(src)
    else:
        dst, s1, s2 = ops
        a, b = e.get(s1), e.get(s2)
    size = dst.size
    m = mask_of(size)
    r = e.tmp()
    # the low half of the signed product is that of the unsigned one; the
    # signed product itself is only needed for CF and OF, if they are live
    e.line(f"{r} = ({a} * {b}) & {m:#x}")
    e.write(dst, r)
    e.flags(F.MUL, size, a=f"(0 if {_sx(a, size)} * {_sx(b, size)} == {_sx(r, size)} else 1)",
            r=r)


@emits("DIV", "IDIV")
def div(e, ins):
    (src,) = ins.ops
    size = src.size
    d = e.get(src)
    lo, hi = _acc(size)
    if size == 1:
        n = e.gpr(0, 2)
    else:
        n = f"({e.read(hi)} << {8 * size}) | {e.read(lo)}"
    t = e.call_helper("div_s" if ins.mnem == "IDIV" else "div_u", size, n, d)
    if size == 1:
        e.set_gpr(0, 2, f"({t}[1] << 8) | {t}[0]")
    else:
        e.write(lo, f"{t}[0]")
        e.write(hi, f"{t}[1]")
