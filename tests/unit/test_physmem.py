"""Physical memory: RAM, ROM, aliases, MMIO and unclaimed addresses."""

import numpy as np
import pytest

from pysev.mem import PhysMem, MemoryMapError


def test_ram_is_numpy_backed_and_little_endian():
    m = PhysMem()
    m.add_ram(0x1000, 0x2000)
    assert isinstance(m.array, np.ndarray) and m.array.dtype == np.uint8
    m.write(0x1FFC, 8, 0x1122334455667788)          # crosses into the next page
    assert m.read_bytes(0x1FFC, 8) == bytes.fromhex("8877665544332211")
    assert m.read(0x1FFE, 4) == 0x33445566
    assert m.read(0x1000, 2) == 0


def test_unclaimed_reads_all_ones_and_writes_are_dropped():
    m = PhysMem()
    m.add_ram(0x0, 0x1000)
    assert m.read(0x5000, 1) == 0xFF
    assert m.read(0x5000, 8) == 0xFFFFFFFFFFFFFFFF
    assert m.read((1 << 52) - 8, 8) == 0xFFFFFFFFFFFFFFFF
    m.write(0x5000, 8, 0)                            # no IndexError, nothing stored
    assert m.read(0x5000, 4) == 0xFFFFFFFF
    # an access straddling the end of RAM: the RAM part is real, the rest all ones
    m.write(0xFFE, 2, 0xBEEF)
    assert m.read(0xFFE, 4) == 0xFFFFBEEF


def test_rom_ignores_guest_writes_but_loads():
    m = PhysMem()
    m.add_rom(0xF0000, bytes(range(16)) * 256)
    m.write(0xF0000, 4, 0xDEADBEEF)
    assert m.read(0xF0000, 4) == 0x03020100
    m.load(0xF0000, b"\xAA")
    assert m.read(0xF0000, 1) == 0xAA


def test_alias_shares_bytes():
    m = PhysMem()
    m.add_rom(0xFFFE0000, bytes(0x20000))
    m.add_alias(0xE0000, 0x20000, 0xFFFE0000, name="bios-low")
    m.load(0xFFFFFFF0, b"\xEA\x5B\xE0")
    assert m.read_bytes(0xFFFF0, 3) == b"\xEA\x5B\xE0"


def test_mmio_callbacks_get_offsets_and_sizes():
    seen = []
    m = PhysMem()
    m.add_mmio(0xFEE00000, 0x1000, lambda off, size: 0x1234_5678_9ABC_DEF0,
               lambda off, size, v: seen.append((off, size, v)))
    assert m.read(0xFEE00010, 4) == 0x9ABCDEF0
    m.write(0xFEE00020, 4, 7)
    assert seen == [(0x20, 4, 7)]


@pytest.mark.parametrize("start,size,msg", [
    (0x1800, 0x1000, "not aligned to 4 KiB pages"),
    (0x0, 0x2000, "overlaps"),
    (1 << 52, 0x1000, "outside the physical address space"),
    (0x10000, 0, "size must be positive"),
])
def test_bad_regions_are_refused(start, size, msg):
    m = PhysMem()
    m.add_ram(0x1000, 0x1000)
    with pytest.raises(MemoryMapError, match=msg):
        m.add_ram(start, size)
