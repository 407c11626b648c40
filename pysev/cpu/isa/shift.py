"""shl/sal, shr, sar, rol, ror, rcl, rcr, shld, shrd.

Counts are masked to 5 bits (6 for 64-bit operands); a masked count of
zero changes nothing, flags included.  For a count known at translation
time the emitters pick the work statically; for CL they test it at run time.
"""

from ..emit import emits, mask_of
from .. import flags as F


def _count(e, op, size):
    cmask = 0x3F if size == 8 else 0x1F
    if op.kind == "imm":
        return op.value & cmask, None
    c = e.tmp()
    e.line(f"{c} = {e.read(op)} & {cmask:#x}")
    return None, c


def _zero_extends(op):
    """A 32-bit register destination loses its upper half even when the count is zero
    (as on hardware, Bochs and QEMU), although nothing else changes."""
    return op.kind == "reg" and op.size == 4


def _count_zero(e, dst):
    if dst.kind == "mem":
        e.read(dst)                        # the access still happens (and may fault)
    elif _zero_extends(dst):
        e.write(dst, e.read(dst))


def _shift_exprs(kind, size, v, c):
    """(result, fa) expressions for a shift of v by c (c >= 1)."""
    m = mask_of(size)
    bits = 8 * size
    if kind == "SHL":
        return f"({v} << {c}) & {m:#x}", f"({v} << ({c} - 1)) & {m:#x}"
    if kind == "SHR":
        return f"{v} >> {c}", f"{v} >> ({c} - 1)"
    sv = f"(({v} ^ {1 << (bits - 1):#x}) - {1 << (bits - 1):#x})"
    return f"({sv} >> {c}) & {m:#x}", f"({sv} >> ({c} - 1)) & {m:#x}"


@emits("SHL", "SAL", "SHR", "SAR")
def shift(e, ins):
    dst, cnt = ins.ops
    size = dst.size
    kind = "SHL" if ins.mnem in ("SHL", "SAL") else ins.mnem
    fkind = F.SHL if kind == "SHL" else F.SAR
    static, dyn = _count(e, cnt, size)
    if static == 0:
        _count_zero(e, dst)
        return
    v = e.get(dst)
    if static is not None:
        res, fa = _shift_exprs(kind, size, v, static)
        r = e.tmp()
        e.line(f"{r} = {res}")
        e.write(dst, r)
        e.flags(fkind, size, a=fa, r=r)       # fa is computed only if the flags are live
        return
    res, fa = _shift_exprs(kind, size, v, dyn)
    e.line(f"if {dyn}:")
    e.indent += 1
    r = e.tmp()
    e.line(f"{r} = {res}")
    e.write(dst, r)
    e.flags_inline(0, fkind, size, a=fa, r=r)
    e.indent -= 1
    if _zero_extends(dst):
        e.line("else:")
        e.line(f"    R[{dst.num}] = {v}")
    e.flags_dynamic()


def _merge_result(e, dst, t):
    """Emit: if the helper returned a result, write it and take its flags."""
    e.line(f"if {t} is not None:")
    e.indent += 1
    e.write(dst, f"{t}[0]")
    e.line(f"fo = {F.fo_of(F.EFL, 8)}; fr = {t}[1]")
    e.indent -= 1
    if _zero_extends(dst):
        e.line("else:")
        e.line(f"    R[{dst.num}] = {e.read(dst)}")
    e.flags_dynamic()


@emits("ROL", "ROR", "RCL", "RCR")
def rotate(e, ins):
    dst, cnt = ins.ops
    size = dst.size
    static, dyn = _count(e, cnt, size)
    if static == 0:
        _count_zero(e, dst)
        return
    v = e.get(dst)
    c = static if static is not None else dyn
    t = e.call_helper("rotate", repr(ins.mnem.lower()), size, v, c, e.flags_word(),
                      may_fault=False)
    if static is not None:
        r = e.tmp()
        e.line(f"{r} = {t}[0]")
        e.write(dst, r)
        e.flags(F.EFL, 8, r=f"{t}[1]")
    else:
        _merge_result(e, dst, t)


@emits("SHLD", "SHRD")
def shift_double(e, ins):
    dst, src, cnt = ins.ops
    size = dst.size
    static, dyn = _count(e, cnt, size)
    if static == 0:
        _count_zero(e, dst)
        return
    v = e.get(dst)
    s = e.get(src)
    c = static if static is not None else dyn
    t = e.call_helper("shift_double", repr(ins.mnem.lower()), size, v, s, c,
                      e.flags_word(), may_fault=False)
    if static is not None:
        r = e.tmp()
        e.line(f"{r} = {t}[0]")
        e.write(dst, r)
        e.flags(F.EFL, 8, r=f"{t}[1]")
    else:
        _merge_result(e, dst, t)
