"""Port-I/O devices for pysev guests.

* :class:`PortBus` routes ``IN``/``OUT`` accesses to the devices registered on it;
  it implements the ``ports`` interface that :class:`pysev.api.Emulator` expects.
* :class:`Serial16550` is a small 16550 UART (COM1 at 0x3F8 by default).
* :class:`DebugCon` is the Bochs/QEMU style debug console (port 0x402 by default).
"""

__all__ = ["PortBus", "Serial16550", "DebugCon", "make_sink"]


def make_sink(sink):
    """Return a function ``emit(data: bytes)`` for *sink*.

    *sink* may be ``None`` (bytes are discarded), a callable taking ``bytes``,
    or a binary stream with ``write`` (and optionally ``flush``, which is called
    after every write so output shows up at once).
    """
    if sink is None:
        return lambda data: None
    if callable(sink):
        return sink
    write = getattr(sink, "write", None)
    if write is None:
        raise TypeError(f"sink must be a callable or a binary stream, not {type(sink).__name__}")
    flush = getattr(sink, "flush", None)
    if flush is None:
        return write

    def emit(data):
        write(data)
        flush()

    return emit


# imported after make_sink, which the device modules use
from pysev.devices.bus import PortBus  # noqa: E402
from pysev.devices.debugcon import DebugCon  # noqa: E402
from pysev.devices.serial import Serial16550  # noqa: E402
