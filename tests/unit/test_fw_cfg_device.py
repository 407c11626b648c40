"""pysev.devices.fw_cfg at the port level, against guest memory without a CPU.

The access rules (which widths and offsets are accepted, what reads give past the
end or without a valid item, DMA status words) are those QEMU 7.2 showed to a test
firmware on its q35 machine.
"""

import struct

import pytest

from pysev.devices import PortBus
from pysev.devices import fw_cfg as fc
from pysev.devices.fw_cfg import FwCfg, pc_e820, pc_fw_cfg
from pysev.mem import PhysMem

MiB = 1 << 20


def device(dma=True):
    mem = PhysMem()
    mem.add_ram(0, 0xA0000)
    mem.add_ram(0x100000, 15 * MiB)
    written = []
    fw = FwCfg(mem if dma else None, lambda a, n: written.append((a, n)))
    bus = PortBus()
    fw.register(bus)
    return fw, bus, mem, written


def stream(bus, n, port=0x511):
    return bytes(bus.read(port, 1) for _ in range(n))


def select(bus, key):
    bus.write(0x510, 2, key)


def test_signature_and_id():
    fw, bus, _, _ = device()
    assert stream(bus, 4) == b"QEMU"                  # selected at reset
    assert stream(bus, 2) == b"\0\0"                  # past the end
    select(bus, fc.FW_CFG_ID)
    assert stream(bus, 4) == struct.pack("<I", 3)     # traditional + DMA
    fw, bus, _, _ = device(dma=False)
    select(bus, fc.FW_CFG_ID)
    assert stream(bus, 4) == struct.pack("<I", 1)
    assert bus.device_at(0x514) is None


def test_select_resets_the_offset_and_port_510_reads_data_too():
    _, bus, _, _ = device()
    assert stream(bus, 2) == b"QE"
    select(bus, 0)
    assert bus.read(0x510, 1) == ord("Q") and stream(bus, 1) == b"E"


def test_only_byte_reads_and_word_selects_are_accepted():
    _, bus, _, _ = device()
    assert bus.read(0x511, 2) == 0 and bus.read(0x510, 2) == 0 and bus.read(0x510, 4) == 0
    select(bus, fc.FW_CFG_ID)
    bus.write(0x510, 1, 0)                            # the write channel is gone
    bus.write(0x511, 1, 0)
    bus.write(0x511, 2, 0)                            # unaligned
    bus.write(0x510, 4, 0)                            # QEMU ignores it too
    assert stream(bus, 1) == b"\x03"


def test_keys_out_of_range_and_the_write_channel_bit():
    fw, bus, _, _ = device()
    select(bus, 0x40)                                 # 0x20 + 32 file slots
    assert fw.current == fc.FW_CFG_INVALID and stream(bus, 2) == b"\0\0"
    select(bus, 0x3F)                                 # valid, empty
    assert fw.current == 0x3F and stream(bus, 2) == b"\0\0"
    select(bus, 0x4000)                               # write-channel bit is masked off
    assert stream(bus, 4) == b"QEMU"
    select(bus, 0x8000)                               # arch-local item 0: nothing
    assert stream(bus, 1) == b"\0"


def test_dma_signature_reads():
    _, bus, _, _ = device()
    assert struct.pack("<I", bus.read(0x514, 4)) == b"QEMU"
    assert struct.pack("<I", bus.read(0x518, 4)) == b" CFG"
    assert struct.pack("<H", bus.read(0x516, 2)) == b"MU"
    assert bus.read(0x515, 1) == ord("E")
    assert bus.read(0x517, 4) == 0 and bus.read(0x51A, 4) == 0    # unaligned


def run_dma(bus, mem, addr, control, length, address):
    mem.write_bytes(addr, struct.pack(">IIQ", control, length, address))
    bus.write(0x514, 4, int.from_bytes(struct.pack(">I", addr >> 32), "little"))
    bus.write(0x518, 4, int.from_bytes(struct.pack(">I", addr & 0xFFFFFFFF), "little"))
    return struct.unpack(">I", mem.read_bytes(addr, 4))[0]


def test_dma_read_select_skip():
    fw, bus, mem, written = device()
    fw.add_bytes(fc.FW_CFG_KERNEL_DATA, bytes(range(200)))
    ctl = fc.DMA_CTL_SELECT | fc.DMA_CTL_READ | (fc.FW_CFG_KERNEL_DATA << 16)
    assert run_dma(bus, mem, 0x600, ctl, 100, 0x100000) == 0
    assert mem.read_bytes(0x100000, 100) == bytes(range(100))
    assert (0x100000, 100) in written and (0x600, 4) in written
    # the offset goes on: skip 50, then read past the end (zeros after the item)
    assert run_dma(bus, mem, 0x600, fc.DMA_CTL_SKIP, 50, 0) == 0
    mem.write_bytes(0x200000, b"\xff" * 64)
    assert run_dma(bus, mem, 0x600, fc.DMA_CTL_READ, 64, 0x200000) == 0
    assert mem.read_bytes(0x200000, 64) == bytes(range(150, 200)) + bytes(14)
    # the I/O port continues where DMA stopped, and both share the selection
    assert run_dma(bus, mem, 0x600, fc.DMA_CTL_SELECT | (fc.FW_CFG_ID << 16), 8, 0) == 0
    assert stream(bus, 1) == b"\x03"
    assert fw.transfers == 4 and fw.dma_addr == 0


def test_dma_errors():
    fw, bus, mem, _ = device()
    sel_read = fc.DMA_CTL_SELECT | fc.DMA_CTL_READ
    # into a hole of the memory map
    assert run_dma(bus, mem, 0x600, sel_read, 16, 0xA0000) == fc.DMA_CTL_ERROR
    assert run_dma(bus, mem, 0x600, sel_read, 16, 1 << 40) == fc.DMA_CTL_ERROR
    # writing a read-only item
    ctl = fc.DMA_CTL_SELECT | fc.DMA_CTL_WRITE
    assert run_dma(bus, mem, 0x600, ctl, 4, 0x700) == fc.DMA_CTL_ERROR
    assert fw.data(0) == b"QEMU"
    # no operation bit: the length is ignored, the select still happens
    assert run_dma(bus, mem, 0x600, fc.DMA_CTL_SELECT | (1 << 16), 4, 0xA0000) == 0
    assert fw.current == fc.FW_CFG_ID
    # a descriptor in a hole: nothing to write the status to, nothing happens
    bus.write(0x514, 4, 0)
    bus.write(0x518, 4, int.from_bytes(struct.pack(">I", 0xA0000), "little"))
    assert fw.dma_addr == 0
    # byte and word writes to the DMA ports do nothing
    transfers = fw.transfers
    bus.write(0x518, 1, 0)
    bus.write(0x518, 2, 0)
    bus.write(0x51A, 4, 0)
    assert fw.transfers == transfers


def test_dma_write_to_a_writable_file():
    fw, bus, mem, _ = device()
    seen = []
    key = fw.add_file("etc/smi/requested-features", bytes(8), writable=True,
                      on_write=lambda off, n: seen.append((off, n)))
    mem.write_bytes(0x700, b"ABCDEFGHIJ")
    ctl = fc.DMA_CTL_SELECT | fc.DMA_CTL_WRITE | (key << 16)
    assert run_dma(bus, mem, 0x600, ctl, 8, 0x700) == 0
    assert fw.data("etc/smi/requested-features") == b"ABCDEFGH" and seen == [(0, 8)]
    # a write past the end fails
    assert run_dma(bus, mem, 0x600, ctl, 9, 0x700) == fc.DMA_CTL_ERROR


def test_file_directory():
    fw, bus, _, _ = device()
    assert fw.add_file("zeta", b"z" * 3) == 0x20
    assert fw.add_file("alpha", b"a") == 0x20           # sorted by name: zeta moves
    assert fw.find_file("zeta") == (0x21, 3)
    select(bus, fc.FW_CFG_FILE_DIR)
    directory = stream(bus, 4 + 64 * 32)
    assert stream(bus, 1) == b"\0"                      # 32 slots, as QEMU allocates
    assert struct.unpack(">I", directory[:4])[0] == 2
    size, key, reserved, name = struct.unpack(">IHH56s", directory[4:68])
    assert (size, key, reserved, name.rstrip(b"\0")) == (1, 0x20, 0, b"alpha")
    size, key, _, name = struct.unpack(">IHH56s", directory[68:132])
    assert (size, key, name.rstrip(b"\0")) == (3, 0x21, b"zeta")
    select(bus, 0x21)
    assert stream(bus, 4) == b"zzz\0"
    with pytest.raises(ValueError):
        fw.add_file("alpha", b"")
    with pytest.raises(ValueError):
        fw.add_file("x" * 56, b"")
    with pytest.raises(ValueError):
        fw.add_bytes(fc.FW_CFG_SIGNATURE, b"again")
    fw.modify_file("zeta", b"new")
    assert fw.data("zeta") == b"new"


def test_pc_items():
    e820 = pc_e820(2048 * MiB, 2048 * MiB, amd_ht_hole=True)
    assert e820 == [(0xFD00000000, 0x300000000, 2), (0, 2048 * MiB, 1),
                    (1 << 32, 2048 * MiB, 1)]
    fw = pc_fw_cfg(ram_size=4096 * MiB, e820=e820)
    assert fw.file_names() == ["bios-geometry", "bootorder", "etc/boot-fail-wait", "etc/e820"]
    # QEMU 7.2, q35 -m 4G -cpu qemu64: the same 60 bytes of etc/e820
    assert fw.data("etc/e820").hex().upper() == (
        "00000000FD000000000000000300000002000000" "0000000000000000000000800000000001000000"
        "0000000001000000000000800000000001000000")
    assert fw.data(fc.FW_CFG_RAM_SIZE) == struct.pack("<Q", 4096 * MiB)
    assert fw.data(fc.FW_CFG_NB_CPUS) == b"\1\0" and fw.data(fc.FW_CFG_MAX_CPUS) == b"\1\0"
    assert fw.data(fc.FW_CFG_NOGRAPHIC) == b"\0\0"
    assert fw.data(fc.FW_CFG_IRQ0_OVERRIDE) == b"\1\0\0\0"
    assert fw.data("etc/boot-fail-wait") == b"\xff" * 4
    assert fw.data("bootorder") == b"" and fw.data("bios-geometry") == b""
    assert fw.data(fc.FW_CFG_KERNEL_SIZE) == b""          # no kernel: the items are unset
    assert fw.data(fc.FW_CFG_ID) == b"\1\0\0\0"            # no memory: no DMA
    assert pc_e820(128 * MiB) == [(0, 128 * MiB, 1)]
