"""The x86 CPU: state, lazy flags, the block translator with its emitters, and the run loop."""
from . import isa  # noqa: F401  (registers every emitter)
from .engine import CPU, EngineError  # noqa: F401
from .faults import GuestFault  # noqa: F401
from .state import GPR_NAMES  # noqa: F401
