"""QEMU's firmware configuration device (fw_cfg) as a PC has it: port I/O with DMA.

The firmware (OVMF, SeaBIOS) learns about the machine through fw_cfg: the RAM
map, the CPU count, and for direct kernel boot the kernel, initrd and command
line.  Items are byte strings named by a 16-bit selector; the fixed ones have
numbers below 0x20 (x86's own ones 0x8000 and up), and the "files" get
selectors from 0x20 on, listed by name in the file directory (item 0x19).

Ports (QEMU's fw_cfg_init_io_dma with FW_CFG_IO_BASE 0x510):

``0x510`` (16-bit write)
    select an item; the read offset goes back to 0.  Other writes are ignored
    (the write channel is gone since QEMU 2.4).
``0x511`` (8-bit read; also 0x510)
    the next byte of the selected item; past its end, or with no valid item
    selected, 0.  Wider reads of 0x510/0x511 give 0.
``0x514``, ``0x518`` (32-bit writes, big-endian)
    the high and low halves of the guest-physical address of an
    FWCfgDmaAccess; writing the low half runs the transfer.  Reads give the
    DMA signature "QEMU CFG" (aligned accesses only).

FWCfgDmaAccess, all fields big-endian::

    u32 control   ERROR 0x01, READ 0x02, SKIP 0x04, SELECT 0x08 (item in bits 16-31),
                  WRITE 0x10; the device writes back 0 when done, ERROR on failure
    u32 length
    u64 address   guest-physical

READ copies item bytes to memory (zeros past the item's end), SKIP moves the
offset on, WRITE copies memory into a writable item (ERROR otherwise, and for
a write past its end).  A transfer that touches memory nothing claims sets
ERROR.  The device reads and writes guest memory through a pysev.mem.PhysMem
and calls *invalidate(addr, size)* after each write so that translated code
of those pages is dropped.
"""

import struct

FW_CFG_IO_BASE = 0x510
FW_CFG_DMA_IO_BASE = 0x514
FW_CFG_CTL_SIZE = 2
FW_CFG_DMA_SIZE = 8

# selectors (QEMU's include/standard-headers/linux/qemu_fw_cfg.h)
FW_CFG_SIGNATURE = 0x00
FW_CFG_ID = 0x01
FW_CFG_UUID = 0x02
FW_CFG_RAM_SIZE = 0x03
FW_CFG_NOGRAPHIC = 0x04
FW_CFG_NB_CPUS = 0x05
FW_CFG_MACHINE_ID = 0x06
FW_CFG_KERNEL_ADDR = 0x07
FW_CFG_KERNEL_SIZE = 0x08
FW_CFG_KERNEL_CMDLINE = 0x09
FW_CFG_INITRD_ADDR = 0x0A
FW_CFG_INITRD_SIZE = 0x0B
FW_CFG_BOOT_DEVICE = 0x0C
FW_CFG_NUMA = 0x0D
FW_CFG_BOOT_MENU = 0x0E
FW_CFG_MAX_CPUS = 0x0F
FW_CFG_KERNEL_ENTRY = 0x10
FW_CFG_KERNEL_DATA = 0x11
FW_CFG_INITRD_DATA = 0x12
FW_CFG_CMDLINE_ADDR = 0x13
FW_CFG_CMDLINE_SIZE = 0x14
FW_CFG_CMDLINE_DATA = 0x15
FW_CFG_SETUP_ADDR = 0x16
FW_CFG_SETUP_SIZE = 0x17
FW_CFG_SETUP_DATA = 0x18
FW_CFG_FILE_DIR = 0x19
FW_CFG_FILE_FIRST = 0x20
FW_CFG_FILE_SLOTS = 0x20              # QEMU's default x-file-slots
FW_CFG_WRITE_CHANNEL = 0x4000
FW_CFG_ARCH_LOCAL = 0x8000
FW_CFG_ENTRY_MASK = 0x3FFF
FW_CFG_INVALID = 0xFFFF

# x86 (hw/i386/fw_cfg.h)
FW_CFG_ACPI_TABLES = FW_CFG_ARCH_LOCAL + 0
FW_CFG_SMBIOS_ENTRIES = FW_CFG_ARCH_LOCAL + 1
FW_CFG_IRQ0_OVERRIDE = FW_CFG_ARCH_LOCAL + 2
FW_CFG_HPET = FW_CFG_ARCH_LOCAL + 4

# FW_CFG_ID bits
FW_CFG_VERSION = 0x01
FW_CFG_VERSION_DMA = 0x02

# FWCfgDmaAccess control bits
DMA_CTL_ERROR = 0x01
DMA_CTL_READ = 0x02
DMA_CTL_SKIP = 0x04
DMA_CTL_SELECT = 0x08
DMA_CTL_WRITE = 0x10

DMA_SIGNATURE = b"QEMU CFG"
FILE_NAME_SIZE = 56
FILE_ENTRY = struct.Struct(">IHH56s")        # size, select, reserved, name

E820_RAM = 1
E820_RESERVED = 2
E820_ENTRY = struct.Struct("<QQI")           # address, length, type
AMD_HT_START = 0xFD00000000                  # the HyperTransport hole below 1 TiB
AMD_HT_SIZE = 0x300000000

HPET_BLOCKS = 8
HPET_ENTRY_SIZE = 15                         # u32 block id, u64 address, u16 min tick, u8 prot
LINUXBOOT_BOOTORDER = b"/rom@genroms/linuxboot_dma.bin\0"


class Item:
    """One fw_cfg item: its bytes, and whether DMA WRITE may change them."""

    __slots__ = ("data", "writable", "on_write")

    def __init__(self, data, writable=False, on_write=None):
        self.data = bytearray(data) if writable else bytes(data)
        self.writable = writable
        self.on_write = on_write        # called with (offset, length) after a DMA write


class FwCfg:
    """The fw_cfg device on port I/O, with DMA when given guest memory.

    *mem* is the pysev.mem.PhysMem for DMA (None: no DMA interface, and
    FW_CFG_ID says so); *invalidate(addr, size)* is called after the device
    writes guest memory (the machine passes ``cpu.invalidate_code``).  The
    device starts with the signature and ID items; add the rest with
    :meth:`add_bytes` and friends and :meth:`add_file`.  Register it with
    :meth:`register` (it claims 0x510-0x511, and 0x514-0x51b with DMA).
    """

    max_access_size = 4
    base = FW_CFG_IO_BASE
    length = FW_CFG_CTL_SIZE

    def __init__(self, mem=None, invalidate=None, dma=True, file_slots=FW_CFG_FILE_SLOTS,
                 io_base=FW_CFG_IO_BASE, dma_base=None):
        self.mem = mem
        self.invalidate = invalidate
        self.dma_enabled = bool(dma and mem is not None)
        self.file_slots = file_slots
        self.base = io_base
        self.dma_base = io_base + 4 if dma_base is None else dma_base
        self.items = ({}, {})              # (generic, arch-local): entry number -> Item
        self.files = []                    # [(name bytes, Item)], sorted by name
        self.dma_addr = 0
        self.transfers = 0                 # DMA transfers run (for tests and tracing)
        self.add_bytes(FW_CFG_SIGNATURE, b"QEMU")
        version = FW_CFG_VERSION | (FW_CFG_VERSION_DMA if self.dma_enabled else 0)
        self.add_i32(FW_CFG_ID, version)
        self.reset()

    # ---- items -----------------------------------------------------------------------------
    @property
    def max_entry(self):
        """The first entry number past the last valid one (exclusive)."""
        return FW_CFG_FILE_FIRST + self.file_slots

    def _slot(self, key):
        entry = key & FW_CFG_ENTRY_MASK
        if entry >= self.max_entry:
            raise ValueError(f"fw_cfg key {key:#x} is out of range")
        return self.items[1 if key & FW_CFG_ARCH_LOCAL else 0], entry

    def add_bytes(self, key, data, writable=False, on_write=None):
        """Add item *key* holding *data*; a key may be added once."""
        table, entry = self._slot(key)
        if entry >= FW_CFG_FILE_FIRST and not key & FW_CFG_ARCH_LOCAL:
            raise ValueError(f"fw_cfg key {key:#x} belongs to the file directory: use add_file")
        if entry in table:
            raise ValueError(f"fw_cfg key {key:#x} is already set")
        table[entry] = Item(data, writable, on_write)

    def add_i16(self, key, value):
        self.add_bytes(key, struct.pack("<H", value))

    def add_i32(self, key, value):
        self.add_bytes(key, struct.pack("<I", value))

    def add_i64(self, key, value):
        self.add_bytes(key, struct.pack("<Q", value))

    def add_string(self, key, text):
        """A NUL-terminated string item."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        self.add_bytes(key, data + b"\0")

    def add_file(self, name, data, writable=False, on_write=None):
        """Add a named file; returns its selector.  Files are kept sorted by name
        (QEMU's order for current machine types), so selectors of files added
        earlier may move, as in QEMU."""
        raw = name.encode() if isinstance(name, str) else bytes(name)
        if not raw or len(raw) >= FILE_NAME_SIZE or b"\0" in raw:
            raise ValueError(f"bad fw_cfg file name {name!r} (1 to {FILE_NAME_SIZE - 1} bytes)")
        if len(self.files) >= self.file_slots:
            raise ValueError(f"no free fw_cfg file slot for {name!r}")
        if any(n == raw for n, _ in self.files):
            raise ValueError(f"duplicate fw_cfg file name: {name}")
        index = len(self.files)
        while index > 0 and raw < self.files[index - 1][0]:
            index -= 1
        self.files.insert(index, (raw, Item(data, writable, on_write)))
        self._sync_files()
        return FW_CFG_FILE_FIRST + index

    def modify_file(self, name, data):
        """Replace a file's bytes (adding the file if it is new); returns its selector."""
        raw = name.encode() if isinstance(name, str) else bytes(name)
        for i, (n, item) in enumerate(self.files):
            if n == raw:
                self.files[i] = (n, Item(data, item.writable, item.on_write))
                self._sync_files()
                return FW_CFG_FILE_FIRST + i
        return self.add_file(name, data)

    def _sync_files(self):
        table = self.items[0]
        for entry in [e for e in table if e >= FW_CFG_FILE_FIRST]:
            del table[entry]
        directory = bytearray(struct.pack(">I", len(self.files)))
        for i, (name, item) in enumerate(self.files):
            table[FW_CFG_FILE_FIRST + i] = item
            directory += FILE_ENTRY.pack(len(item.data), FW_CFG_FILE_FIRST + i, 0, name)
        directory += bytes(4 + FILE_ENTRY.size * self.file_slots - len(directory))
        table[FW_CFG_FILE_DIR] = Item(directory)

    def find_file(self, name):
        """(selector, size) of the file called *name*, or None."""
        raw = name.encode() if isinstance(name, str) else bytes(name)
        for i, (n, item) in enumerate(self.files):
            if n == raw:
                return FW_CFG_FILE_FIRST + i, len(item.data)
        return None

    def file_names(self):
        return [n.decode() for n, _ in self.files]

    def item(self, key):
        """The Item a selector names, or None (nothing there, or out of range)."""
        entry = key & FW_CFG_ENTRY_MASK
        if entry >= self.max_entry:
            return None
        return self.items[1 if key & FW_CFG_ARCH_LOCAL else 0].get(entry)

    def items_by_key(self):
        """(selector, Item) for every item, generic then arch-local."""
        for local, table in enumerate(self.items):
            for entry, item in sorted(table.items()):
                yield (entry | (FW_CFG_ARCH_LOCAL if local else 0)), item

    def data(self, key):
        """The bytes of item *key* (a selector or a file name); b"" when it is empty or unset."""
        if isinstance(key, str):
            found = self.find_file(key)
            if found is None:
                raise KeyError(key)
            key = found[0]
        item = self.item(key)
        return b"" if item is None else bytes(item.data)

    # ---- the selector and the data port ------------------------------------------------------
    def reset(self):
        """A machine reset: the signature is selected again."""
        self.select(FW_CFG_SIGNATURE)

    def select(self, key):
        """Select item *key* (offset 0); returns whether the key is in range."""
        key &= 0xFFFF
        self.offset = 0
        if (key & FW_CFG_ENTRY_MASK) >= self.max_entry:
            self.current = FW_CFG_INVALID
            return False
        self.current = key
        return True

    def _current_item(self):
        if self.current == FW_CFG_INVALID:
            return None
        return self.item(self.current)

    def read_data(self, n=1):
        """The next *n* bytes of the selected item as the data port streams them."""
        item = self._current_item()
        if item is None:
            return bytes(n)
        chunk = bytes(item.data[self.offset:self.offset + n])
        self.offset += len(chunk)
        return chunk + bytes(n - len(chunk))

    # ---- the port interface ------------------------------------------------------------------
    def register(self, bus):
        """Claim the ports on a PortBus; returns the device."""
        bus.register(self, self.base, FW_CFG_CTL_SIZE)
        if self.dma_enabled:
            bus.register(self, self.dma_base, FW_CFG_DMA_SIZE)
        return self

    def read(self, port, size=1):
        off = port - self.base
        if 0 <= off < FW_CFG_CTL_SIZE:
            if size != 1:
                return 0                    # QEMU accepts only byte reads here
            return self.read_data(1)[0]
        off = port - self.dma_base
        if self.dma_enabled and 0 <= off < FW_CFG_DMA_SIZE:
            if off % size or off + size > FW_CFG_DMA_SIZE:
                return 0                    # unaligned: not accepted
            return int.from_bytes(DMA_SIGNATURE[off:off + size], "little")
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        off = port - self.base
        if 0 <= off < FW_CFG_CTL_SIZE:
            if size == 2 and off == 0:
                self.select(value & 0xFFFF)
            return                          # byte writes: the old write channel, a no-op
        off = port - self.dma_base
        if self.dma_enabled and size == 4 and off in (0, 4):
            half = int.from_bytes((value & 0xFFFFFFFF).to_bytes(4, "little"), "big")
            if off == 0:
                self.dma_addr = half << 32
            else:
                self.dma_addr |= half
                self.dma_transfer()

    # ---- DMA -------------------------------------------------------------------------------
    def _mapped(self, addr, size):
        """Whether guest memory claims every byte of [addr, addr + size)."""
        mem = self.mem
        end = addr + size
        if end > getattr(mem, "max_address", 1 << 64):
            return False
        while addr < end:
            region = mem.region_at(addr)
            if region is None:
                return False
            addr = region.end
        return True

    def _mem_write(self, addr, data):
        if not self._mapped(addr, len(data)):
            return False
        if data:
            self.mem.write_bytes(addr, data)
            if self.invalidate is not None:
                self.invalidate(addr, len(data))
        return True

    def _mem_zero(self, addr, size):
        if not self._mapped(addr, size):
            return False
        step = 1 << 20
        for pos in range(0, size, step):
            self._mem_write(addr + pos, bytes(min(step, size - pos)))
        return True

    def dma_transfer(self, addr=None):
        """Run the FWCfgDmaAccess at *addr* (default: the address written to the ports)."""
        if addr is None:
            addr = self.dma_addr
        self.dma_addr = 0
        self.transfers += 1
        if not self._mapped(addr, 16):
            self._mem_write(addr, struct.pack(">I", DMA_CTL_ERROR))
            return
        control, length, address = struct.unpack(">IIQ", self.mem.read_bytes(addr, 16))
        if control & DMA_CTL_SELECT:
            self.select(control >> 16)
        item = self._current_item()
        read = write = False
        if control & DMA_CTL_READ:
            read = True
        elif control & DMA_CTL_WRITE:
            write = True
        elif not control & DMA_CTL_SKIP:
            length = 0
        status = 0
        while length > 0 and not status & DMA_CTL_ERROR:
            if item is None or self.offset >= len(item.data):
                n = length
                if read and not self._mem_zero(address, n):
                    status |= DMA_CTL_ERROR
                if write:
                    status |= DMA_CTL_ERROR
            else:
                n = min(length, len(item.data) - self.offset)
                if read:
                    chunk = item.data[self.offset:self.offset + n]
                    if not self._mem_write(address, chunk):
                        status |= DMA_CTL_ERROR
                if write:
                    if not item.writable or n != length or not self._mapped(address, n):
                        status |= DMA_CTL_ERROR
                    else:
                        item.data[self.offset:self.offset + n] = self.mem.read_bytes(address, n)
                        if item.on_write is not None:
                            item.on_write(self.offset, n)
                self.offset += n
            address += n
            length -= n
        self._mem_write(addr, struct.pack(">I", status))


# ---- the PC's items ------------------------------------------------------------------------------

def pc_e820(below_4g, above_4g=0, amd_ht_hole=False):
    """The RAM map QEMU's pc and q35 machines put in "etc/e820": [(address, length, type)].

    *amd_ht_hole*: the CPU is an AMD one with at least 40 physical address
    bits, for which QEMU reserves the HyperTransport range below 1 TiB first.
    """
    table = []
    if amd_ht_hole:
        table.append((AMD_HT_START, AMD_HT_SIZE, E820_RESERVED))
    table.append((0, below_4g, E820_RAM))
    if above_4g:
        table.append((1 << 32, above_4g, E820_RAM))
    return table


def e820_bytes(table):
    return b"".join(E820_ENTRY.pack(addr, length, kind) for addr, length, kind in table)


def add_linux_boot(fw, boot):
    """The items QEMU's x86_load_linux adds for a pysev.boot.LinuxBoot."""
    fw.add_i32(FW_CFG_CMDLINE_ADDR, boot.cmdline_addr)
    fw.add_i32(FW_CFG_CMDLINE_SIZE, len(boot.cmdline))
    fw.add_bytes(FW_CFG_CMDLINE_DATA, boot.cmdline)
    if boot.initrd is not None:
        fw.add_i32(FW_CFG_INITRD_ADDR, boot.initrd_addr)
        fw.add_i32(FW_CFG_INITRD_SIZE, len(boot.initrd))
        fw.add_bytes(FW_CFG_INITRD_DATA, boot.initrd)
    fw.add_i32(FW_CFG_KERNEL_ADDR, boot.kernel_addr)
    fw.add_i32(FW_CFG_KERNEL_SIZE, len(boot.kernel))
    fw.add_bytes(FW_CFG_KERNEL_DATA, boot.kernel)
    fw.add_i32(FW_CFG_SETUP_ADDR, boot.setup_addr)
    fw.add_i32(FW_CFG_SETUP_SIZE, len(boot.setup))
    fw.add_bytes(FW_CFG_SETUP_DATA, boot.setup)


def pc_fw_cfg(mem=None, invalidate=None, *, ram_size, e820, nb_cpus=1, max_cpus=1,
              nographic=False, boot=None, dma=True):
    """An FwCfg holding what QEMU 7.2's pc/q35 machines offer a -bios firmware.

    Common items: the signature, ID, a zero UUID, NOGRAPHIC, BOOT_MENU 0 and the
    file "etc/boot-fail-wait" (-1); x86 ones: NB_CPUS, MAX_CPUS (the APIC-ID
    limit, 1 for one CPU), RAM_SIZE (the -m size), NUMA with no nodes, an empty
    ACPI_TABLES, IRQ0_OVERRIDE 1, HPET with no timer block (pysev has no HPET)
    and "etc/e820" from *e820* (see :func:`pc_e820`); "bootorder" and
    "bios-geometry" (empty, or the linuxboot ROM's path in bootorder with a
    kernel); and with *boot* (a pysev.boot.LinuxBoot) the kernel items.

    Not offered, because pysev has no such device: ACPI tables and their loader
    script, SMBIOS, the ICH9 SMI feature files, "etc/system-states", option
    ROMs (kvmvapic.bin, linuxboot_dma.bin).
    """
    fw = FwCfg(mem, invalidate, dma=dma)
    fw.add_bytes(FW_CFG_UUID, bytes(16))
    fw.add_i16(FW_CFG_NOGRAPHIC, int(bool(nographic)))
    fw.add_i16(FW_CFG_BOOT_MENU, 0)
    fw.add_file("etc/boot-fail-wait", struct.pack("<I", 0xFFFFFFFF))
    fw.add_i16(FW_CFG_NB_CPUS, nb_cpus)
    fw.add_i16(FW_CFG_MAX_CPUS, max_cpus)
    fw.add_i64(FW_CFG_RAM_SIZE, ram_size)
    fw.add_bytes(FW_CFG_ACPI_TABLES, b"")
    fw.add_i32(FW_CFG_IRQ0_OVERRIDE, 1)
    fw.add_file("etc/e820", e820_bytes(e820))
    fw.add_bytes(FW_CFG_HPET, b"\xff" + bytes(HPET_BLOCKS * HPET_ENTRY_SIZE))
    fw.add_bytes(FW_CFG_NUMA, bytes(8 * (1 + max_cpus)))
    if boot is not None:
        add_linux_boot(fw, boot)
    fw.add_file("bootorder", LINUXBOOT_BOOTORDER if boot is not None else b"")
    fw.add_file("bios-geometry", b"")
    return fw
