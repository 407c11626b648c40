"""mov, movzx, movsx, movsxd, xchg, xadd, cmpxchg, cmpxchg8b/16b, lea, cmovcc, setcc,
bswap, cbw/cwde/cdqe, cwd/cdq/cqo, xlat."""

from decoder.records import Reg, ZF
from ..emit import emits, mask_of
from .. import flags as F


# Measured frequency rank 6 (MOV_RM64_R64, 6.8 %) and 16-17 (MOV_RM8_R8,
# MOV_R64_RM64): memory operands use the inline fast path of Emitter.load and
# Emitter.store (a byte as MV[i], an aligned qword as MV8[i >> 3]).
@emits("MOV")
def mov(e, ins):
    dst, src = ins.ops
    if dst.kind == "sysreg" or src.kind == "sysreg":
        from .system import mov_system
        mov_system(e, ins)
        return
    if dst.kind == "sreg":
        if dst.num == 1:                      # mov cs, r/m is invalid
            e.raise_fault(6, detail="mov to cs")
            return
        e.call_helper("load_seg", dst.num, e.read(src), result=False)
        if dst.num == 2:
            # interrupts are held off for one instruction; SS sets the stack size
            e.line(f"cpu.interrupt_shadow = {ins.next_ip:#x}")
            e.end_here()
        elif e.mode.pe and not e.mode.long:
            e.end_here()                      # limits may now need checking
        return
    value = e.read(src)
    if src.kind == "sreg" and dst.kind == "reg" and dst.size > 2:
        e.set_gpr(dst.num, dst.size, value)   # the selector, zero-extended
        return
    e.write(dst, value)


@emits("MOVZX")
def movzx(e, ins):
    dst, src = ins.ops
    e.write(dst, e.read(src))


@emits("MOVSX", "MOVSXD")
def movsx(e, ins):
    dst, src = ins.ops
    v = e.read(src)
    if src.size >= dst.size:
        e.write(dst, v)
        return
    s = 1 << (8 * src.size - 1)
    e.write(dst, f"(({v} ^ {s:#x}) - {s:#x}) & {mask_of(dst.size):#x}")


@emits("XCHG")
def xchg(e, ins):
    a_op, b_op = ins.ops
    a = e.get(a_op)
    b = e.get(b_op)
    # memory first, so a fault leaves the registers untouched
    if b_op.kind == "mem":
        e.write(b_op, a)
        e.write(a_op, b)
    else:
        e.write(a_op, b)
        e.write(b_op, a)


@emits("XADD")
def xadd(e, ins):
    dst, src = ins.ops
    size = dst.size
    a = e.get(dst)
    b = e.get(src)
    r = e.tmp()
    e.line(f"{r} = {a} + {b}")
    if dst.kind == "mem":
        e.write(dst, f"{r} & {mask_of(size):#x}")
        e.write(src, a)
    else:
        e.write(src, a)
        e.write(dst, f"{r} & {mask_of(size):#x}")
    e.flags(F.ADD, size, a, b, r)


def _accumulator(size):
    return Reg(0, size, False, "acc")


@emits("CMPXCHG")
def cmpxchg(e, ins):
    # As hardware does: a memory destination is always written (with itself when
    # the comparison fails); a register destination only on success, so a failed
    # 32-bit compare leaves its upper half alone; the accumulator is written only
    # on failure.  (QEMU before 8.1, and so unicorn, also rewrites the accumulator
    # on success, zero-extending EAX into RAX.)
    dst, src = ins.ops
    size = dst.size
    acc = _accumulator(size)
    a = e.get(acc)
    d = e.get(dst)
    s = e.get(src)
    r = e.tmp()
    e.line(f"{r} = {a} - {d}")
    e.line(f"if {a} == {d}:")
    e.indent += 1
    e.write(dst, s)
    e.indent -= 1
    e.line("else:")
    e.indent += 1
    if dst.kind == "mem":
        e.write(dst, d)
    e.write(acc, d)
    e.indent -= 1
    e.flags(F.SUB, size, a, d, r)


@emits("CMPXCHG8B", "CMPXCHG16B")
def cmpxchg_wide(e, ins):
    (mem,) = ins.ops
    half = 8 if ins.mnem == "CMPXCHG16B" else 4
    bits = 8 * half
    a = e.addr(mem)
    if half == 8:
        e.call_helper("check_align16", a, result=False)
    v = e.load(2 * half, a)
    expected = f"({e.gpr(2, half)} << {bits}) | {e.gpr(0, half)}"
    new = f"({e.gpr(1, half)} << {bits}) | {e.gpr(3, half)}"
    eq = e.tmp()
    e.line(f"{eq} = {v} == ({expected})")
    e.line(f"if {eq}:")
    e.indent += 1
    e.store(2 * half, a, f"({new})")
    e.indent -= 1
    e.line("else:")
    e.indent += 1
    e.store(2 * half, a, v)
    e.set_gpr(0, half, f"{v} & {mask_of(half):#x}")
    e.set_gpr(2, half, f"{v} >> {bits}")
    e.indent -= 1
    e.flags_merge(ZF, f"({ZF} if {eq} else 0)")


@emits("LEA")
def lea(e, ins):
    dst, mem = ins.ops
    ea = e.ea(mem)
    if dst.size < mem.asize:
        ea = f"{ea} & {mask_of(dst.size):#x}"
    e.write(dst, ea)


@emits("CMOVO", "CMOVNO", "CMOVB", "CMOVAE", "CMOVE", "CMOVNE", "CMOVBE", "CMOVA",
       "CMOVS", "CMOVNS", "CMOVP", "CMOVNP", "CMOVL", "CMOVGE", "CMOVLE", "CMOVG")
def cmov(e, ins):
    dst, src = ins.ops
    v = e.get(src)                          # read even when the condition fails
    cur = e.read(dst)
    # a 32-bit destination is zero-extended whether or not the move happens
    e.write(dst, f"{v} if {e.cond(ins.cc)} else {cur}")


@emits("SETO", "SETNO", "SETB", "SETAE", "SETE", "SETNE", "SETBE", "SETA",
       "SETS", "SETNS", "SETP", "SETNP", "SETL", "SETGE", "SETLE", "SETG")
def setcc(e, ins):
    (dst,) = ins.ops
    e.write(dst, f"1 if {e.cond(ins.cc)} else 0")


@emits("BSWAP")
def bswap(e, ins):
    (dst,) = ins.ops
    size = dst.size
    if size == 2:
        # undefined in the manuals; hardware and QEMU leave zero in the low word
        e.write(dst, "0")
        return
    v = e.read(dst)
    e.write(dst, f"int.from_bytes(({v}).to_bytes({size}, 'little'), 'big')")


@emits("CBW", "CWDE", "CDQE")
def widen_acc(e, ins):
    size = {"CBW": 2, "CWDE": 4, "CDQE": 8}[ins.mnem]
    half = size // 2
    s = 1 << (8 * half - 1)
    e.set_gpr(0, size, f"(({e.gpr(0, half)} ^ {s:#x}) - {s:#x}) & {mask_of(size):#x}")


@emits("CWD", "CDQ", "CQO")
def sign_fill(e, ins):
    size = {"CWD": 2, "CDQ": 4, "CQO": 8}[ins.mnem]
    s = 1 << (8 * size - 1)
    e.set_gpr(2, size, f"{mask_of(size):#x} if {e.gpr(0, size)} & {s:#x} else 0")


@emits("XLATB")
def xlat(e, ins):
    (mem,) = ins.ops
    am = mask_of(mem.asize)
    ea = f"((R[3] + (R[0] & 0xff)) & {am:#x})"
    v = e.load(1, e.linear(mem.seg, ea))
    e.set_reg(Reg(0, 1, False, "al"), v)
