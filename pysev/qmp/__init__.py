"""QMP: the commands (commands.py) and, later, the protocol server over them."""
from .commands import QMPError, execute, COMMANDS  # noqa: F401
