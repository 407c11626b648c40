"""The Bochs/QEMU debug console: a write-only byte port for guest logging."""

from pysev.devices import make_sink

DEBUGCON_PORT = 0x402
DEBUGCON_READBACK = 0xE9


class DebugCon:
    """Bytes written to the port go to *sink*; reading the port returns 0xE9,
    which lets a guest detect that the console is present."""

    length = 1
    max_access_size = 1

    def __init__(self, sink=None, base=DEBUGCON_PORT):
        self.base = base
        self._emit = make_sink(sink)

    def read(self, port, size=1):
        return DEBUGCON_READBACK

    def write(self, port, size, value):
        self._emit(bytes((value & 0xFF,)))
