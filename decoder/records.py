"""Plain records that describe one decoded instruction.

Nothing here imports iced_x86: the translator in pysev.cpu works on these
records only, so the decoder behind them could change without touching it.
"""

# Segment register numbers, in the encoding order the architecture uses.
ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

# EFLAGS bits of the arithmetic flags.
CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH_FLAGS = CF | PF | AF | ZF | SF | OF
DF = 0x400


class Reg:
    """A general-purpose register operand: num 0-15, size in bytes."""
    kind = "reg"
    __slots__ = ("num", "size", "high", "name")

    def __init__(self, num, size, high, name):
        self.num, self.size, self.high, self.name = num, size, high, name

    def __repr__(self):
        return f"Reg({self.name})"


class SReg:
    """A segment register operand: num is ES..GS."""
    kind = "sreg"
    size = 2
    __slots__ = ("num", "name")

    def __init__(self, num):
        self.num, self.name = num, SEG_NAMES[num]

    def __repr__(self):
        return f"SReg({self.name})"


class SysReg:
    """A control or debug register operand (CRn, DRn)."""
    kind = "sysreg"
    __slots__ = ("cls", "num", "size", "name")

    def __init__(self, cls, num, size, name):
        self.cls, self.num, self.size, self.name = cls, num, size, name


class Mem:
    """A memory operand.

    base and index are GPR numbers or None; base may be "rip" in which case
    disp already holds the absolute target (iced resolves RIP-relative
    addresses).  asize is the address size in bytes (2, 4 or 8).
    """
    kind = "mem"
    __slots__ = ("seg", "base", "index", "scale", "disp", "size", "asize",
                 "seg_override")

    def __init__(self, seg, base, index, scale, disp, size, asize,
                 seg_override=False):
        self.seg, self.base, self.index, self.scale = seg, base, index, scale
        self.disp, self.size, self.asize = disp, size, asize
        self.seg_override = seg_override

    def __repr__(self):
        return (f"Mem({SEG_NAMES[self.seg]}:{self.base}+{self.index}*"
                f"{self.scale}+{self.disp:#x}, size={self.size}, "
                f"asize={self.asize})")


class Imm:
    """An immediate, masked to its operand size."""
    kind = "imm"
    __slots__ = ("value", "size")

    def __init__(self, value, size):
        self.value, self.size = value, size

    def __repr__(self):
        return f"Imm({self.value:#x})"


class Rel:
    """A near branch target (already absolute)."""
    kind = "rel"
    __slots__ = ("target",)
    size = 0

    def __init__(self, target):
        self.target = target


class Far:
    """A direct far pointer sel:offset."""
    kind = "far"
    __slots__ = ("selector", "offset", "size")

    def __init__(self, selector, offset, size):
        self.selector, self.offset, self.size = selector, offset, size


class Insn:
    """One decoded instruction.

    mnem is the mnemonic (upper case, "ADD"), form the exact encoding name
    (iced's Code name, "ADD_RM64_R64"), osize the operand size in bytes of
    the instruction's main operation, asize its address size, bits the code
    size it was decoded in.  The flag masks use EFLAGS bit positions.
    """
    __slots__ = ("ip", "length", "next_ip", "mnem", "form", "ops", "osize",
                 "asize", "bits", "rep", "lock", "cc", "raw", "text",
                 "flags_read", "flags_written", "flags_undefined", "flow",
                 "stack_size", "invalid")

    def __repr__(self):
        return f"<Insn {self.ip:#x} {self.text}>"
