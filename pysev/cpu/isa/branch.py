"""jmp, jcc, call, ret, loop/loope/loopne, jcxz/jecxz/jrcxz."""

from ..emit import emits, mask_of
from .stack import push_value, pop_value, sp_write


def _ip_size(e, ins):
    """Operand size of a near call or return (how wide the pushed IP is), from the form."""
    form = ins.form
    if form.startswith("RETN"):
        return {"W": 2, "D": 4, "Q": 8}[form[4]]
    if form.endswith("64"):
        return 8
    if form.endswith("32") or form.endswith("32_32"):
        return 4
    return 2


@emits("JMP")
def jmp(e, ins):
    (op,) = ins.ops
    if op.kind == "rel":
        e.end_jump(op.target)
    elif op.kind in ("reg", "mem"):
        if op.kind == "mem" and op.size not in (2, 4, 8):
            e.raise_fault(6, detail=f"instruction not implemented: {ins.text}")
            return
        t = e.get(op)
        e.end_jump(t)
    else:
        e.raise_fault(6, detail=f"instruction not implemented: {ins.text}")


# Measured frequency rank 1 (JNE_REL8_64, 11.7 % of the benchmark workloads'
# instructions; `python3 -m benchmarks.run --forms`): the condition is written
# over the values of the instruction that set the flags (e.cond), so the
# branch reads no flag locals and that instruction need not assign them.
@emits("JO", "JNO", "JB", "JAE", "JE", "JNE", "JBE", "JA",
       "JS", "JNS", "JP", "JNP", "JL", "JGE", "JLE", "JG")
def jcc(e, ins):
    (op,) = ins.ops
    e.end_branch(e.cond(ins.cc), op.target)


@emits("CALL")
def call(e, ins):
    (op,) = ins.ops
    size = _ip_size(e, ins)
    if op.kind == "rel":
        target = op.target
    elif op.kind in ("reg", "mem") and op.size in (2, 4, 8):
        target = e.get(op)
    else:
        e.raise_fault(6, detail=f"instruction not implemented: {ins.text}")
        return
    ret = ins.next_ip & mask_of(size)
    sp_write(e, push_value(e, size, f"{ret:#x}"))
    e.end_jump(target)


@emits("RET")
def ret(e, ins):
    size = _ip_size(e, ins)
    v, nsp = pop_value(e, size)
    if ins.ops:
        sp_write(e, f"({nsp} + {ins.ops[0].value}) & {mask_of(e.mode.stack):#x}")
    else:
        sp_write(e, nsp)
    e.end_jump(v)


def _count_reg(ins):
    # the count register's width is the address size (LOOP) or fixed by the form (JxCXZ)
    return {"JCXZ": 2, "JECXZ": 4, "JRCXZ": 8}.get(ins.mnem, ins.asize)


@emits("LOOP", "LOOPE", "LOOPNE")
def loop(e, ins):
    (op,) = ins.ops
    size = _count_reg(ins)
    c = e.tmp()
    e.line(f"{c} = ({e.gpr(1, size)} - 1) & {mask_of(size):#x}")
    cond = c
    if ins.mnem == "LOOPE":
        cond = f"{c} and {e.cond(4)}"
    elif ins.mnem == "LOOPNE":
        cond = f"{c} and {e.cond(5)}"
    e.set_gpr(1, size, c)
    e.end_branch(cond, op.target)


@emits("JCXZ", "JECXZ", "JRCXZ")
def jcxz(e, ins):
    (op,) = ins.ops
    e.end_branch(f"not {e.gpr(1, _count_reg(ins))}", op.target)
