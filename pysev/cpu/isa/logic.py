"""and, or, xor, test, not."""

from ..emit import emits, mask_of
from .. import flags as F

_OPS = {"AND": "&", "OR": "|", "XOR": "^", "TEST": "&"}


# Measured frequency rank 3 (XOR_RM64_R64, 8.1 %; with a memory destination
# the load and the store take the inline memory fast path).
@emits("AND", "OR", "XOR", "TEST")
def logic(e, ins):
    dst, src = ins.ops
    size = dst.size
    r = e.tmp()
    if (ins.mnem == "XOR" and dst.kind == "reg" and src.kind == "reg"
            and dst.num == src.num and dst.high == src.high):
        e.line(f"{r} = 0")                      # the zeroing idiom
    else:
        a = e.read(dst)
        b = e.read(src)
        e.line(f"{r} = {a} {_OPS[ins.mnem]} {b}")
    if ins.mnem != "TEST":
        e.write(dst, r)
    e.flags(F.LOGIC, size, r=r)


@emits("NOT")
def not_(e, ins):
    (dst,) = ins.ops
    a = e.read(dst)
    e.write(dst, f"{a} ^ {mask_of(dst.size):#x}")
