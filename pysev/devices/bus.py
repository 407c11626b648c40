"""An x86 I/O port bus."""

import bisect

_ALL_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class PortBus:
    """Routes port reads and writes to registered devices.

    A device is any object with ``read(port, size) -> int`` and
    ``write(port, size, value)``; it receives the absolute port number.
    Accesses wider than the device's ``max_access_size`` attribute (default 1,
    as for the 8-bit ISA devices of a PC) are split by the bus into single-byte
    accesses to consecutive ports, least significant byte first, each routed on
    its own.  Reads of unclaimed ports return all ones; writes to them are
    dropped.

    A ``PortBus`` is itself a device, and is what ``Emulator(ports=...)`` takes.
    """

    max_access_size = 4

    def __init__(self):
        self._starts = []  # sorted range starts
        self._ranges = []  # (start, end_exclusive, device), same order

    def register(self, device, base=None, length=None):
        """Claim ports ``[base, base + length)`` for *device*.

        *base* and *length* default to the device's ``base`` and ``length``
        attributes.  Returns *device*.  Raises ``ValueError`` for an empty or
        out-of-range span, or one that overlaps a registered device.
        """
        if base is None:
            base = device.base
        if length is None:
            length = device.length
        end = base + length
        if length <= 0 or base < 0 or end > 0x10000:
            raise ValueError(f"bad port range {base:#x}+{length:#x}")
        i = bisect.bisect_left(self._starts, base)
        if i > 0 and self._ranges[i - 1][1] > base:
            raise ValueError(f"ports {base:#x}+{length:#x} overlap a registered device")
        if i < len(self._ranges) and self._ranges[i][0] < end:
            raise ValueError(f"ports {base:#x}+{length:#x} overlap a registered device")
        self._starts.insert(i, base)
        self._ranges.insert(i, (base, end, device))
        return device

    def unregister(self, device):
        """Remove every port range claimed by *device*."""
        keep = [r for r in self._ranges if r[2] is not device]
        self._ranges = keep
        self._starts = [r[0] for r in keep]

    def device_at(self, port):
        """The device claiming *port*, or ``None``."""
        i = bisect.bisect_right(self._starts, port) - 1
        if i >= 0:
            start, end, device = self._ranges[i]
            if start <= port < end:
                return device
        return None

    def read(self, port, size):
        if size not in _ALL_ONES:
            raise ValueError(f"bad port access size {size}")
        port &= 0xFFFF
        device = self.device_at(port)
        if device is None:
            if size == 1:
                return 0xFF
        elif size <= getattr(device, "max_access_size", 1):
            return device.read(port, size) & _ALL_ONES[size]
        value = 0
        for i in range(size):
            p = (port + i) & 0xFFFF
            d = self.device_at(p)
            byte = 0xFF if d is None else d.read(p, 1) & 0xFF
            value |= byte << (8 * i)
        return value

    def write(self, port, size, value):
        if size not in _ALL_ONES:
            raise ValueError(f"bad port access size {size}")
        port &= 0xFFFF
        value &= _ALL_ONES[size]
        device = self.device_at(port)
        if device is not None and size <= getattr(device, "max_access_size", 1):
            device.write(port, size, value)
            return
        if device is None and size == 1:
            return
        for i in range(size):
            p = (port + i) & 0xFFFF
            d = self.device_at(p)
            if d is not None:
                d.write(p, 1, (value >> (8 * i)) & 0xFF)
