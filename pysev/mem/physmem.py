"""Guest physical memory: one numpy byte array behind an address map.

RAM and ROM regions own slices of a single numpy uint8 array, so every
access on the hot path goes through one flat memoryview with precompiled
struct methods.  MMIO regions are Python callbacks.  As on a PC, reading
an address that nothing claims gives all ones and writing it does nothing.
"""

import bisect
import struct

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1

RAM, ROM, MMIO = "ram", "rom", "mmio"

# Precompiled little-endian accessors by size in bytes.
UNPACK = {1: struct.Struct("<B").unpack_from, 2: struct.Struct("<H").unpack_from,
          4: struct.Struct("<I").unpack_from, 8: struct.Struct("<Q").unpack_from}
PACK = {1: struct.Struct("<B").pack_into, 2: struct.Struct("<H").pack_into,
        4: struct.Struct("<I").pack_into, 8: struct.Struct("<Q").pack_into}


class MemoryMapError(ValueError):
    """A region that cannot be placed (overlap, bad alignment or size)."""


class Region:
    __slots__ = ("start", "end", "kind", "host", "name", "read_cb", "write_cb")

    def __init__(self, start, size, kind, host, name, read_cb=None, write_cb=None):
        self.start, self.end, self.kind, self.host = start, start + size, kind, host
        self.name, self.read_cb, self.write_cb = name, read_cb, write_cb

    @property
    def size(self):
        return self.end - self.start

    def __repr__(self):
        return f"<Region {self.name} {self.kind} {self.start:#x}-{self.end - 1:#x}>"


class PhysMem:
    """The guest-physical address space."""

    def __init__(self, max_address=1 << 52):
        self.max_address = max_address
        self.array = np.zeros(0, dtype=np.uint8)
        self.mv = memoryview(self.array)
        self.used = 0                 # bytes of self.array given to regions
        self.regions = []             # sorted by start
        self._starts = []
        self.readable = {}            # page -> host offset of the page (RAM, ROM)
        self.writable = {}            # page -> host offset (RAM only)
        self.listeners = []           # called with no argument when the map changes

    # ---- building the map -------------------------------------------------
    def _check(self, start, size, page_aligned=True):
        if size <= 0:
            raise MemoryMapError(f"region size must be positive, got {size:#x}")
        if start < 0 or start + size > self.max_address:
            raise MemoryMapError(
                f"region {start:#x}+{size:#x} is outside the physical address space")
        if page_aligned and (start & PAGE_MASK or size & PAGE_MASK):
            raise MemoryMapError(
                f"region {start:#x}+{size:#x} is not aligned to 4 KiB pages")
        for r in self.regions:
            if start < r.end and r.start < start + size:
                raise MemoryMapError(
                    f"region {start:#x}+{size:#x} overlaps {r.name} "
                    f"({r.start:#x}-{r.end - 1:#x})")

    def reserve(self, total):
        """Make room for `total` bytes of RAM and ROM so that adding regions copies nothing."""
        if total > len(self.array):
            new = np.zeros(total, dtype=np.uint8)      # untouched pages cost no host memory
            new[:self.used] = self.array[:self.used]
            self.array = new
            self.mv = memoryview(new)
            for listener in self.listeners:
                listener()

    def _grow(self, size):
        host = self.used
        if host + size > len(self.array):
            self.reserve(max(host + size, 2 * len(self.array)))
        self.used = host + size
        return host

    def _insert(self, region):
        i = bisect.bisect(self._starts, region.start)
        self.regions.insert(i, region)
        self._starts.insert(i, region.start)
        if region.kind in (RAM, ROM):
            for n, page in enumerate(range(region.start >> PAGE_SHIFT,
                                           region.end >> PAGE_SHIFT)):
                off = region.host + (n << PAGE_SHIFT)
                self.readable[page] = off
                if region.kind == RAM:
                    self.writable[page] = off
        for listener in self.listeners:
            listener()
        return region

    def add_ram(self, start, size, name="ram"):
        self._check(start, size)
        return self._insert(Region(start, size, RAM, self._grow(size), name))

    def add_rom(self, start, data, name="rom"):
        """A read-only region holding `data` (bytes); guest writes are ignored."""
        size = len(data)
        self._check(start, size)
        host = self._grow(size)
        self.array[host:host + size] = np.frombuffer(bytes(data), dtype=np.uint8)
        return self._insert(Region(start, size, ROM, host, name))

    def add_alias(self, start, size, target, name="alias"):
        """Make [start, start+size) show the RAM/ROM bytes that live at `target`."""
        self._check(start, size)
        src = self.region_at(target)
        if src is None or src.kind == MMIO or target + size > src.end:
            raise MemoryMapError(f"alias target {target:#x}+{size:#x} is not RAM or ROM")
        host = src.host + (target - src.start)
        return self._insert(Region(start, size, src.kind, host, name))

    def add_mmio(self, start, size, read, write, name="mmio"):
        """read(offset, size) -> int, write(offset, size, value); offsets from start."""
        self._check(start, size, page_aligned=False)
        return self._insert(Region(start, size, MMIO, None, name, read, write))

    def region_at(self, addr):
        i = bisect.bisect(self._starts, addr) - 1
        if i >= 0:
            r = self.regions[i]
            if addr < r.end:
                return r
        return None

    # ---- slow-path accesses (any address, any alignment) --------------------
    def read(self, addr, size):
        """Read a little-endian integer of `size` bytes."""
        page = addr >> PAGE_SHIFT
        off = addr & PAGE_MASK
        if off + size <= PAGE_SIZE:
            host = self.readable.get(page)
            if host is not None:
                return UNPACK[size](self.mv, host + off)[0]
            r = self.region_at(addr)
            if r is not None and r.kind == MMIO and addr + size <= r.end:
                return r.read_cb(addr - r.start, size) & ((1 << (8 * size)) - 1)
        return int.from_bytes(self.read_bytes(addr, size), "little")

    def write(self, addr, size, value):
        page = addr >> PAGE_SHIFT
        off = addr & PAGE_MASK
        if off + size <= PAGE_SIZE:
            host = self.writable.get(page)
            if host is not None:
                PACK[size](self.mv, host + off, value)
                return
            r = self.region_at(addr)
            if r is not None and r.kind == MMIO and addr + size <= r.end:
                r.write_cb(addr - r.start, size, value)
                return
        self.write_bytes(addr, value.to_bytes(size, "little"))

    def read_bytes(self, addr, n):
        """Bytes at [addr, addr+n); unclaimed bytes read as 0xFF."""
        out = bytearray()
        while n > 0:
            r = self.region_at(addr)
            if r is None:
                i = bisect.bisect(self._starts, addr)
                nxt = self._starts[i] if i < len(self._starts) else addr + n
                chunk = min(n, nxt - addr)
                out += b"\xff" * chunk
            elif r.kind == MMIO:
                chunk = 1
                out.append(r.read_cb(addr - r.start, 1) & 0xFF)
            else:
                chunk = min(n, r.end - addr)
                h = r.host + (addr - r.start)
                out += self.mv[h:h + chunk]
            addr += chunk
            n -= chunk
        return bytes(out)

    def write_bytes(self, addr, data, force=False):
        """Write bytes as the guest would (ROM ignores it) or, with force, as a loader."""
        data = memoryview(bytes(data))
        pos = 0
        n = len(data)
        while pos < n:
            r = self.region_at(addr)
            if r is None:
                i = bisect.bisect(self._starts, addr)
                nxt = self._starts[i] if i < len(self._starts) else addr + (n - pos)
                chunk = min(n - pos, nxt - addr)
            elif r.kind == MMIO:
                chunk = 1
                r.write_cb(addr - r.start, 1, data[pos])
            else:
                chunk = min(n - pos, r.end - addr)
                if r.kind == RAM or force:
                    h = r.host + (addr - r.start)
                    self.mv[h:h + chunk] = data[pos:pos + chunk]
            addr += chunk
            pos += chunk

    def load(self, addr, data):
        """Place bytes into RAM or ROM regardless of write protection (firmware loading)."""
        self.write_bytes(addr, data, force=True)
