"""Instruction emitters, one module per family; importing this package registers them all."""
from . import alu, logic, shift, muldiv, move, stack, branch, string, bits, misc  # noqa: F401
