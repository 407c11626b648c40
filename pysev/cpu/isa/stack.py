"""push, pop, pushf, popf, enter, leave, and the stack helpers other families use."""

from decoder.records import SS, ARITH_FLAGS
from ..emit import emits, mask_of
from .. import flags as F


def sp_read(e):
    return e.gpr(4, e.mode.stack)


def sp_write(e, value):
    """Write the new stack pointer (value already wrapped to the stack size)."""
    e.set_gpr(4, e.mode.stack, value)


def push_value(e, size, value, sp=None):
    """Store `value` below the stack pointer; returns the new SP expression (not yet written)."""
    sm = mask_of(e.mode.stack)
    nsp = e.tmp()
    e.line(f"{nsp} = ({sp or sp_read(e)} - {size}) & {sm:#x}")
    e.seg_check(SS, nsp, size)
    e.store(size, e.linear(SS, nsp), value)
    return nsp


def pop_value(e, size):
    """Load `size` bytes from the top of the stack; returns (value, new SP expression)."""
    sm = mask_of(e.mode.stack)
    sp = e.tmp()
    e.line(f"{sp} = {sp_read(e)}")
    e.seg_check(SS, sp, size)
    v = e.load(size, e.linear(SS, sp))
    nsp = e.tmp()
    e.line(f"{nsp} = ({sp} + {size}) & {sm:#x}")
    return v, nsp


@emits("PUSH")
def push(e, ins):
    (src,) = ins.ops
    size = ins.osize
    if src.kind == "imm":
        v = f"{src.value & mask_of(size):#x}" if src.size >= size else (
            f"{(src.value ^ (1 << (8 * src.size - 1))) - (1 << (8 * src.size - 1)) & mask_of(size):#x}")
    else:
        v = e.get(src)
    sp_write(e, push_value(e, size, v))


@emits("POP")
def pop(e, ins):
    (dst,) = ins.ops
    size = ins.osize
    v, nsp = pop_value(e, size)
    if dst.kind == "sreg":
        e.call_helper("load_seg", dst.num, v, result=False)
        sp_write(e, nsp)
        if dst.num == 2:
            e.line(f"cpu.interrupt_shadow = {ins.next_ip:#x}")
            e.end_here()
        elif e.mode.pe and not e.mode.long:
            e.end_here()
        return
    if dst.kind == "mem":
        if dst.base == 4 or dst.index == 4:
            # the address uses RSP as it is after the pop
            ea = e.ea(dst).replace("R[4]", nsp)
            a = e.tmp()
            e.line(f"{a} = {e.linear(dst.seg, ea)}")
            e.store(dst.size, a, v)
        else:
            e.write(dst, v)
        sp_write(e, nsp)
        return
    sp_write(e, nsp)
    e.write(dst, v)                       # pop rsp: the loaded value wins


@emits("PUSHF", "PUSHFD", "PUSHFQ")
def pushf(e, ins):
    size = ins.osize
    v = e.tmp()
    # VM and RF read as zero in the pushed image
    e.line(f"{v} = (rest_flags() | {e.flags_word()}) & {0xFFFCFFFF & mask_of(size):#x}")
    sp_write(e, push_value(e, size, v))


@emits("POPF", "POPFD", "POPFQ")
def popf(e, ins):
    size = ins.osize
    v, nsp = pop_value(e, size)
    e.call_helper("write_eflags", v, size, result=False, may_fault=False)
    sp_write(e, nsp)
    e.flags(F.EFL, 8, r=f"{v} & {ARITH_FLAGS:#x}")
    e.end_here()                          # TF/IF/DF may have changed


@emits("ENTER")
def enter(e, ins):
    alloc_op, level_op = ins.ops
    size = {"W": 2, "D": 4, "Q": 8}[ins.form[5]]         # ENTERW/ENTERD/ENTERQ
    level = level_op.value & 31
    sm = mask_of(e.mode.stack)
    bp = e.gpr(5, size)
    sp = e.tmp()
    e.line(f"{sp} = ({sp_read(e)} - {size}) & {sm:#x}")
    e.store(size, e.linear(SS, sp), bp)
    frame = e.tmp()
    e.line(f"{frame} = {sp}")
    if level:
        tbp = e.tmp()
        e.line(f"{tbp} = {e.gpr(5, e.mode.stack)}")
        for _ in range(1, level):
            e.line(f"{tbp} = ({tbp} - {size}) & {sm:#x}")
            v = e.load(size, e.linear(SS, tbp))
            e.line(f"{sp} = ({sp} - {size}) & {sm:#x}")
            e.store(size, e.linear(SS, sp), v)
        e.line(f"{sp} = ({sp} - {size}) & {sm:#x}")
        e.store(size, e.linear(SS, sp), frame)
    e.set_gpr(5, size, f"{frame} & {mask_of(size):#x}")
    sp_write(e, f"({sp} - {alloc_op.value}) & {sm:#x}")


@emits("LEAVE")
def leave(e, ins):
    size = {"W": 2, "D": 4, "Q": 8}[ins.form[-1]]      # LEAVEW, LEAVED, LEAVEQ
    sm = mask_of(e.mode.stack)
    bp = e.tmp()
    e.line(f"{bp} = {e.gpr(5, e.mode.stack)}")
    v = e.load(size, e.linear(SS, bp))
    sp_write(e, f"({bp} + {size}) & {sm:#x}")
    e.set_gpr(5, size, v)


@emits("PUSHA", "PUSHAD")
def pusha(e, ins):
    size = 4 if ins.form == "PUSHAD" else 2
    sm = mask_of(e.mode.stack)
    sp = e.tmp()
    old_sp = e.tmp()
    e.line(f"{old_sp} = {e.gpr(4, size)}")
    e.line(f"{sp} = {sp_read(e)}")
    for n in range(8):
        value = old_sp if n == 4 else e.gpr(n, size)
        e.line(f"{sp} = ({sp} - {size}) & {sm:#x}")
        e.store(size, e.linear(SS, sp), value)
    sp_write(e, sp)


@emits("POPA", "POPAD")
def popa(e, ins):
    size = 4 if ins.form == "POPAD" else 2
    sm = mask_of(e.mode.stack)
    sp = e.tmp()
    e.line(f"{sp} = {sp_read(e)}")
    values = []
    for n in range(8):
        values.append(e.load(size, e.linear(SS, f"(({sp} + {(7 - n) * size}) & {sm:#x})")))
    for n in range(8):
        if n != 4:                                     # the saved SP is skipped
            e.set_gpr(n, size, values[n])
    sp_write(e, f"({sp} + {8 * size}) & {sm:#x}")
