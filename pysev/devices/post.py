"""The POST diagnostic port (0x80), where firmware writes progress codes."""

POST_PORT = 0x80


class PostPort:
    """A one-byte latch: each write stores the value (readable back) and
    appends it to :attr:`history`, which keeps the last *max_history* codes.

    *on_write*, if given, is called with each code as it is written.
    """

    length = 1
    max_access_size = 1

    def __init__(self, base=POST_PORT, max_history=4096, on_write=None):
        self.base = base
        self.max_history = max_history
        self.on_write = on_write
        self.reset()

    def reset(self):
        self.value = None             # nothing written yet
        self.history = []
        self.writes = 0

    def read(self, port, size=1):
        return 0xFF if self.value is None else self.value

    def write(self, port, size, value):
        value &= 0xFF
        self.value = value
        self.writes += 1
        self.history.append(value)
        if len(self.history) > self.max_history:
            del self.history[:len(self.history) - self.max_history]
        if self.on_write is not None:
            self.on_write(value)
