"""Instruction emitters, one module per family; importing this package registers them all."""
from . import alu, logic, shift, muldiv, move, stack, branch, string, bits, misc  # noqa: F401
from . import system, fpu  # noqa: F401  (registered last: far JMP/CALL wrap the near forms)
