"""QMP: the commands (commands.py), the human monitor subset behind
human-monitor-command (hmp.py) and the protocol server on a UNIX socket
(server.py, started by ``-qmp``)."""
from .commands import QMPError, execute, COMMANDS  # noqa: F401
