"""Direct kernel boot of a Linux bzImage, prepared the way QEMU prepares it.

QEMU does not run a -kernel itself: it reads the bzImage's setup header (Linux
Documentation/arch/x86/boot.rst, "The Linux/x86 Boot Protocol"), fills in the
fields a boot loader owns, chooses where each part goes in guest memory, and
hands the parts to the firmware through fw_cfg (see pysev.devices.fw_cfg).  The
firmware (OVMF, SeaBIOS' linuxboot option ROM) copies them to those addresses
and jumps to the kernel.  :func:`load_linux` makes the same choices:

================  =============================================================
part              where (boot protocol 2.02 and later / 2.00 and 2.01)
================  =============================================================
setup             the real-mode part (boot sector + setup sectors, with the
                  header), at 0x10000 / 0x90000
kernel            the protected-mode part (the rest of the file), at 0x100000
command line      with its NUL, at 0x20000 / 0x9A000 minus its 16-byte-rounded
                  size
initrd            page-aligned just below the highest address the kernel accepts
                  (initrd_addr_max, or 4 GiB with XLF_CAN_BE_LOADED_ABOVE_4G),
                  itself kept below the end of RAM under 4 GiB minus the 160 KiB
                  QEMU keeps for ACPI tables and firmware data
================  =============================================================

The header fields filled in: type_of_loader 0xB0 (QEMU), CAN_USE_HEAP and
heap_end_ptr, cmd_line_ptr (or the old 0xA33F command-line magic and offset
before protocol 2.02), ramdisk_image and ramdisk_size, vid_mode for a ``vga=``
parameter.  As QEMU does, the setup part handed over is left exactly as in the
file for a confidential guest (SEV), whose firmware boots through the EFI stub
and measures the file's bytes.

Only bzImages are taken: images without the "HdrS" header (multiboot, ELF/PVH,
which QEMU also loads), boot protocols before 2.00 and zImages (not loaded
high) are refused with :class:`LinuxBootError`.
"""

import re
import struct

# ---- the setup header (boot.rst) --------------------------------------------------------------

HDRS_MAGIC = b"HdrS"
BOOT_FLAG = 0xAA55
SECTOR = 512

# loadflags
LOADED_HIGH = 0x01
KASLR_FLAG = 0x02
QUIET_FLAG = 0x20
KEEP_SEGMENTS = 0x40
CAN_USE_HEAP = 0x80

# xloadflags
XLF_KERNEL_64 = 0x01
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02

LOADER_TYPE_QEMU = 0xB0               # high nibble 0xB: QEMU, revision 0
OLD_CMDLINE_MAGIC = 0xA33F            # cmd_line_magic at 0x20 (protocols before 2.02)

# QEMU's choices (hw/i386/x86.c, x86_load_linux)
REAL_ADDR, CMDLINE_ADDR, PROT_ADDR = 0x10000, 0x20000, 0x100000        # protocol >= 2.02
OLD_REAL_ADDR, OLD_CMDLINE_END = 0x90000, 0x9A000                       # 2.00, 2.01
OLD_INITRD_MAX = 0x37FFFFFF           # initrd_addr_max before protocol 2.03
OLD_CMDLINE_MAX = 255                 # command-line limit before protocol 2.06
ACPI_DATA_SIZE = 0x20000 + 0x8000     # kept free at the top of RAM below 4 GiB (pc.c)
SETUP_HEADER_END = 0x270              # the header fields up to protocol 2.15

# (name, offset, struct format, first protocol that defines it)
FIELDS = (
    ("setup_sects", 0x1F1, "B", 0x000),
    ("root_flags", 0x1F2, "H", 0x000),
    ("syssize", 0x1F4, "I", 0x204),
    ("ram_size", 0x1F8, "H", 0x000),
    ("vid_mode", 0x1FA, "H", 0x000),
    ("root_dev", 0x1FC, "H", 0x000),
    ("boot_flag", 0x1FE, "H", 0x000),
    ("jump", 0x200, "H", 0x200),
    ("header", 0x202, "I", 0x200),
    ("version", 0x206, "H", 0x200),
    ("realmode_swtch", 0x208, "I", 0x200),
    ("start_sys_seg", 0x20C, "H", 0x200),
    ("kernel_version", 0x20E, "H", 0x200),
    ("type_of_loader", 0x210, "B", 0x200),
    ("loadflags", 0x211, "B", 0x200),
    ("setup_move_size", 0x212, "H", 0x200),
    ("code32_start", 0x214, "I", 0x200),
    ("ramdisk_image", 0x218, "I", 0x200),
    ("ramdisk_size", 0x21C, "I", 0x200),
    ("bootsect_kludge", 0x220, "I", 0x200),
    ("heap_end_ptr", 0x224, "H", 0x201),
    ("ext_loader_ver", 0x226, "B", 0x202),
    ("ext_loader_type", 0x227, "B", 0x202),
    ("cmd_line_ptr", 0x228, "I", 0x202),
    ("initrd_addr_max", 0x22C, "I", 0x203),
    ("kernel_alignment", 0x230, "I", 0x205),
    ("relocatable_kernel", 0x234, "B", 0x205),
    ("min_alignment", 0x235, "B", 0x20A),
    ("xloadflags", 0x236, "H", 0x20C),
    ("cmdline_size", 0x238, "I", 0x206),
    ("hardware_subarch", 0x23C, "I", 0x207),
    ("hardware_subarch_data", 0x240, "Q", 0x207),
    ("payload_offset", 0x248, "I", 0x208),
    ("payload_length", 0x24C, "I", 0x208),
    ("setup_data", 0x250, "Q", 0x209),
    ("pref_address", 0x258, "Q", 0x20A),
    ("init_size", 0x260, "I", 0x20A),
    ("handover_offset", 0x264, "I", 0x20B),
    ("kernel_info_offset", 0x268, "I", 0x20F),
)
_FIELD = {name: (offset, fmt) for name, offset, fmt, _ in FIELDS}


class LinuxBootError(Exception):
    """A -kernel/-initrd/-append combination that cannot be booted; the message says why
    and :attr:`option` names the option at fault ("-kernel", "-initrd" or "-append")."""

    def __init__(self, message, option="-kernel"):
        super().__init__(message)
        self.option = option


def protocol_str(version):
    """0x020F -> "2.15" (the minor number is decimal in boot.rst's notation)."""
    return f"{version >> 8}.{version & 0xFF:02d}"


class SetupHeader:
    """The setup header of a bzImage: each field of :data:`FIELDS` as an attribute.

    Fields that the image's protocol version does not define read as 0 (the
    bytes there belong to the setup code in older kernels), except those below
    2.00, which the boot sector always holds.
    """

    def __init__(self, data):
        data = bytes(data[:SETUP_HEADER_END])
        data += bytes(SETUP_HEADER_END - len(data))
        self.raw = data
        self.magic_ok = data[0x202:0x206] == HDRS_MAGIC
        self.version = struct.unpack_from("<H", data, 0x206)[0] if self.magic_ok else 0
        for name, offset, fmt, since in FIELDS:
            value = struct.unpack_from("<" + fmt, data, offset)[0]
            if since and self.version < since:
                value = 0
            if name != "version":
                setattr(self, name, value)

    @property
    def protocol(self):
        return protocol_str(self.version)

    @property
    def setup_size(self):
        """Bytes of the real-mode part: the boot sector plus setup_sects (0 means 4) sectors."""
        return ((self.setup_sects or 4) + 1) * SECTOR

    @property
    def loaded_high(self):
        return bool(self.loadflags & LOADED_HIGH)

    @property
    def max_cmdline(self):
        """The longest command line (without its NUL) the kernel takes."""
        return self.cmdline_size if self.version >= 0x206 else OLD_CMDLINE_MAX

    def fields(self):
        """{name: value} of every field."""
        out = {name: getattr(self, name) for name, *_ in FIELDS if name != "version"}
        out["version"] = self.version
        return out


def parse_setup_header(image):
    """The :class:`SetupHeader` of a bzImage's bytes; raises :class:`LinuxBootError` for
    anything but a bzImage that pysev can boot (see the module docstring)."""
    image = bytes(image)
    if not image:
        raise LinuxBootError("the kernel image is empty")
    header = SetupHeader(image)
    if not header.magic_ok:
        raise LinuxBootError("not a bzImage: no 'HdrS' setup header at offset 0x202 "
                             "(multiboot and ELF/PVH kernels are not supported)")
    if header.boot_flag != BOOT_FLAG:
        raise LinuxBootError(f"invalid kernel header: boot_flag at offset 0x1fe is "
                             f"{header.boot_flag:#06x}, not 0xaa55")
    if header.version < 0x200:
        raise LinuxBootError(f"boot protocol {header.protocol} is too old: a bzImage needs "
                             "protocol 2.00 or later")
    if not header.loaded_high:
        raise LinuxBootError(f"the kernel is a zImage (loadflags {header.loadflags:#04x} lack "
                             "LOADED_HIGH): only bzImages are supported")
    if header.setup_size > len(image):
        raise LinuxBootError(f"invalid kernel header: setup_sects {header.setup_sects} gives "
                             f"{header.setup_size} bytes of setup code, but the image has only "
                             f"{len(image)} bytes")
    return header


def _put(buf, name, value):
    offset, fmt = _FIELD[name]
    struct.pack_into("<" + fmt, buf, offset, value)


_VGA_NUMBER = re.compile(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def vga_mode(cmdline):
    """The video mode a ``vga=`` in *cmdline* asks for, or None (QEMU's reading:
    the first "vga=" anywhere, then normal, ext, ask or a C number)."""
    pos = cmdline.find("vga=")
    if pos < 0:
        return None
    arg = cmdline[pos + 4:]
    for word, mode in (("normal", 0xFFFF), ("ext", 0xFFFE), ("ask", 0xFFFD)):
        if arg.startswith(word):
            return mode
    m = _VGA_NUMBER.match(arg)
    end = arg[m.end():] if m else arg
    if m is None or (end and end[0] != " "):
        raise LinuxBootError("invalid 'vga=' kernel parameter", "-append")
    text = m.group(1)
    value = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 8) if text[0] == "0" \
        else int(text)
    if value >= 1 << 32:
        raise LinuxBootError("invalid 'vga=' kernel parameter", "-append")
    return value & 0xFFFF


class LinuxBoot:
    """Everything QEMU hands the firmware for one direct kernel boot.

    Attributes (addresses are guest-physical):

    ``header``        the :class:`SetupHeader` of the file as given
    ``protocol``      its boot protocol version (0x20F for 2.15)
    ``image``         the kernel file's bytes, untouched
    ``setup``         the real-mode part, with the boot loader's header fields
                      filled in (unless ``patched`` is false: SEV)
    ``setup_addr``    where it goes (FW_CFG_SETUP_ADDR)
    ``kernel``        the protected-mode part
    ``kernel_addr``   where it goes (FW_CFG_KERNEL_ADDR)
    ``cmdline``       the command line with its NUL (bytes)
    ``cmdline_addr``  where it goes (FW_CFG_CMDLINE_ADDR)
    ``initrd``        the initrd's bytes, or None
    ``initrd_addr``   where it goes (0 without an initrd)
    ``initrd_max``    the highest address the initrd may end at (inclusive)
    ``patched``       whether ``setup`` carries the filled-in header
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def setup_size(self):
        return len(self.setup)

    @property
    def kernel_size(self):
        return len(self.kernel)

    @property
    def initrd_size(self):
        return 0 if self.initrd is None else len(self.initrd)

    def placements(self):
        """[(name, address, bytes)] of the parts a firmware copies into RAM."""
        parts = [("setup", self.setup_addr, self.setup), ("kernel", self.kernel_addr, self.kernel),
                 ("cmdline", self.cmdline_addr, self.cmdline)]
        if self.initrd is not None:
            parts.append(("initrd", self.initrd_addr, self.initrd))
        return parts


def encode_cmdline(cmdline):
    """A -append value as the bytes QEMU passes on (without the NUL)."""
    if cmdline is None:
        return b""
    if isinstance(cmdline, str):
        data = cmdline.encode("utf-8", "surrogateescape")
    else:
        data = bytes(cmdline)
    if b"\0" in data:
        raise LinuxBootError("the kernel command line contains a NUL byte", "-append")
    return data


def load_linux(image, initrd=None, cmdline=None, below_4g_mem_size=None,
               acpi_data_size=ACPI_DATA_SIZE, patch_header=True):
    """Prepare a bzImage for direct boot as QEMU's x86_load_linux does; returns a
    :class:`LinuxBoot`.

    *image* and *initrd* are the files' bytes (initrd None: none), *cmdline*
    the -append text (None: empty).  *below_4g_mem_size* is the RAM below 4 GiB,
    which bounds the initrd (None: only the kernel's limit).  *patch_header*
    false leaves the setup part as in the file (QEMU does so for confidential
    guests).  Raises :class:`LinuxBootError`.
    """
    image = bytes(image)
    header = parse_setup_header(image)
    protocol = header.version
    cmd = encode_cmdline(cmdline)
    if len(cmd) > header.max_cmdline:
        raise LinuxBootError(f"the kernel command line is too long: {len(cmd)} bytes, but "
                             f"the kernel takes at most {header.max_cmdline} (boot protocol "
                             f"{header.protocol})", "-append")
    cmd_text = cmd.decode("latin-1")
    cmdline_size = (len(cmd) + 16) & ~15                # QEMU's paranoia rounding

    if protocol < 0x202:                                 # high but ancient
        real_addr = OLD_REAL_ADDR
        cmdline_addr = OLD_CMDLINE_END - cmdline_size
    else:
        real_addr = REAL_ADDR
        cmdline_addr = CMDLINE_ADDR
    prot_addr = PROT_ADDR

    if protocol >= 0x20C and header.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G:
        initrd_max = 0xFFFFFFFF
    elif protocol >= 0x203:
        initrd_max = header.initrd_addr_max
    else:
        initrd_max = OLD_INITRD_MAX
    ram_limit = None
    if below_4g_mem_size is not None:
        ram_limit = below_4g_mem_size - acpi_data_size
        if initrd_max >= ram_limit:
            initrd_max = ram_limit - 1

    hdr = bytearray(header.raw)
    if protocol >= 0x202:
        _put(hdr, "cmd_line_ptr", cmdline_addr)
    else:
        struct.pack_into("<HH", hdr, 0x20, OLD_CMDLINE_MAGIC, cmdline_addr - real_addr)
    mode = vga_mode(cmd_text)
    if mode is not None:
        _put(hdr, "vid_mode", mode)
    hdr[0x210] = LOADER_TYPE_QEMU
    if protocol >= 0x201:
        hdr[0x211] |= CAN_USE_HEAP
        _put(hdr, "heap_end_ptr", (cmdline_addr - real_addr - 0x200) & 0xFFFF)

    initrd_addr = 0
    if initrd is not None:
        initrd = bytes(initrd)
        if len(initrd) >= initrd_max:
            limit = (f"below the end of RAM under 4 GiB ({ram_limit:#x}, less "
                     f"{acpi_data_size // 1024} KiB for ACPI)" if initrd_max + 1 == ram_limit
                     else f"below the kernel's initrd_addr_max ({initrd_max:#x})")
            raise LinuxBootError(f"the initrd is too large: {len(initrd)} bytes, but it must "
                                 f"fit {limit}: at most {initrd_max - 1} bytes", "-initrd")
        initrd_addr = (initrd_max - len(initrd)) & ~0xFFF
        _put(hdr, "ramdisk_image", initrd_addr)
        _put(hdr, "ramdisk_size", len(initrd))

    setup_size = header.setup_size
    setup = bytearray(image[:setup_size])
    if patch_header:
        setup[:SETUP_HEADER_END] = hdr[:min(SETUP_HEADER_END, setup_size)]
    return LinuxBoot(header=header, protocol=protocol, image=image, setup=bytes(setup),
                     setup_addr=real_addr, kernel=image[setup_size:], kernel_addr=prot_addr,
                     cmdline=cmd + b"\0", cmdline_addr=cmdline_addr, initrd=initrd,
                     initrd_addr=initrd_addr, initrd_max=initrd_max, patched=patch_header)
