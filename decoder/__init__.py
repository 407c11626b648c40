"""Instruction decoding: iced-x86 wrapped into plain records, and the translated-code cache.

This package is the only one in pysev that imports iced_x86.
"""
from .records import Insn, Reg, SReg, SysReg, Mem, Imm, Rel, Far  # noqa: F401
from .decode import decode, decode_one, disassemble  # noqa: F401
from .cache import CodeCache  # noqa: F401
