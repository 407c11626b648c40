"""pysev.boot.linux: a bzImage prepared for direct kernel boot as QEMU's x86_load_linux does.

The expected values come from QEMU 7.2 run on the same synthetic images with -bios,
-kernel, -initrd and -append, and its fw_cfg items read back by a test firmware.
"""

import struct

import pytest

from pysev import Machine, MachineError
from pysev.boot import LinuxBootError, load_linux, parse_setup_header
from pysev.boot.linux import ACPI_DATA_SIZE, vga_mode

MiB = 1 << 20
SETUP_CODE = b"\xb0A\xba\xf8\x03\xee\xcb"       # mov al,'A'; mov dx,0x3f8; out dx,al; retf


def bzimage(version=0x020F, loadflags=0x01, setup_sects=4, initrd_addr_max=0x7FFFFFFF,
            cmdline_size=2047, xloadflags=0, boot_flag=0xAA55, magic=b"HdrS", kernel_size=8292):
    """A synthetic bzImage: boot sector and setup sectors with a setup header, then a
    protected-mode part of *kernel_size* pattern bytes."""
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    struct.pack_into("<H", setup, 0x200, 0x66EB)            # jmp over the header
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)           # code32_start
    struct.pack_into("<I", setup, 0x22C, initrd_addr_max)
    struct.pack_into("<I", setup, 0x230, 0x200000)           # kernel_alignment
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, cmdline_size)
    setup[0x300:0x300 + len(SETUP_CODE)] = SETUP_CODE
    kernel = bytes((i * 7 + 3) & 0xFF for i in range(kernel_size))
    return bytes(setup) + kernel


def u16(data, offset):
    return struct.unpack_from("<H", data, offset)[0]


def u32(data, offset):
    return struct.unpack_from("<I", data, offset)[0]


# ---- the header ------------------------------------------------------------------------------

def test_parse_setup_header_fields():
    h = parse_setup_header(bzimage())
    assert h.version == 0x20F and h.protocol == "2.15"
    assert h.setup_sects == 4 and h.setup_size == 5 * 512
    assert h.boot_flag == 0xAA55 and h.loaded_high
    assert h.initrd_addr_max == 0x7FFFFFFF and h.cmdline_size == 2047
    assert h.code32_start == 0x100000 and h.kernel_alignment == 0x200000
    assert h.max_cmdline == 2047
    assert h.fields()["version"] == 0x20F


def test_setup_sects_zero_means_four():
    image = bzimage(setup_sects=0)
    h = parse_setup_header(image)
    assert h.setup_sects == 0 and h.setup_size == 5 * 512
    boot = load_linux(image)
    assert boot.setup_size == 2560 and boot.kernel == image[2560:]


def test_fields_newer_than_the_protocol_read_as_zero():
    h = parse_setup_header(bzimage(version=0x0202))
    assert h.initrd_addr_max == 0 and h.cmdline_size == 0 and h.xloadflags == 0
    assert h.max_cmdline == 255


# ---- what QEMU hands the firmware ----------------------------------------------------------

def test_recent_kernel_layout_matches_qemu():
    image = bzimage()
    initrd = bytes(range(256)) * 19 + bytes(136)             # 5000 bytes
    cmdline = "console=ttyS0 vga=0x317 quiet"
    boot = load_linux(image, initrd, cmdline, below_4g_mem_size=256 * MiB)
    assert (boot.setup_addr, boot.kernel_addr, boot.cmdline_addr) == (0x10000, 0x100000, 0x20000)
    assert boot.cmdline == cmdline.encode() + b"\0"
    assert boot.kernel == image[2560:] and boot.kernel_size == 8292
    assert boot.initrd == initrd
    # QEMU 7.2 with -m 256: FW_CFG_INITRD_ADDR 0x0FFD6000
    assert boot.initrd_max == 256 * MiB - ACPI_DATA_SIZE - 1
    assert boot.initrd_addr == 0x0FFD6000
    setup = boot.setup
    assert len(setup) == 2560 and boot.patched
    assert u16(setup, 0x1FA) == 0x317                        # vid_mode from vga=
    assert setup[0x210] == 0xB0                               # type_of_loader: QEMU
    assert setup[0x211] == 0x81                               # LOADED_HIGH | CAN_USE_HEAP
    assert u32(setup, 0x218) == 0x0FFD6000 and u32(setup, 0x21C) == 5000
    assert u16(setup, 0x224) == 0xFE00                        # heap_end_ptr
    assert u32(setup, 0x228) == 0x20000                       # cmd_line_ptr
    # nothing else of the setup part changes
    changed = {i for i in range(2560) if setup[i] != image[i]}
    assert changed <= set(range(0x1FA, 0x1FC)) | {0x210, 0x211} | set(range(0x218, 0x220)) \
        | set(range(0x224, 0x226)) | set(range(0x228, 0x22C))
    assert setup[0x300:0x307] == SETUP_CODE
    assert [p[:2] for p in boot.placements()] == [
        ("setup", 0x10000), ("kernel", 0x100000), ("cmdline", 0x20000), ("initrd", 0x0FFD6000)]


def test_without_initrd_and_cmdline():
    boot = load_linux(bzimage(), below_4g_mem_size=128 * MiB)
    assert boot.initrd is None and boot.initrd_addr == 0 and boot.initrd_size == 0
    assert boot.cmdline == b"\0"
    assert u32(boot.setup, 0x218) == 0 and u32(boot.setup, 0x21C) == 0
    assert u32(boot.setup, 0x228) == 0x20000
    assert [p[0] for p in boot.placements()] == ["setup", "kernel", "cmdline"]


def test_an_empty_initrd_is_placed_at_the_limit():
    boot = load_linux(bzimage(), b"", below_4g_mem_size=128 * MiB)
    assert boot.initrd_addr == (128 * MiB - ACPI_DATA_SIZE - 1) & ~0xFFF
    assert boot.initrd_size == 0


def test_old_high_kernel_uses_the_old_command_line_protocol():
    # protocol 2.01 as QEMU 7.2 places it: real-mode part at 0x90000, command line
    # below 0x9A000, cmd_line_magic/offset at 0x20
    image = bzimage(version=0x0201, setup_sects=0)
    boot = load_linux(image, b"x" * 5000, "vga=ask root=/dev/sda", below_4g_mem_size=256 * MiB)
    assert boot.setup_addr == 0x90000 and boot.kernel_addr == 0x100000
    assert boot.cmdline_addr == 0x9A000 - 32 == 0x99FE0
    assert u16(boot.setup, 0x20) == 0xA33F and u16(boot.setup, 0x22) == 0x99FE0 - 0x90000
    assert u32(boot.setup, 0x228) == 0                        # no cmd_line_ptr before 2.02
    assert u16(boot.setup, 0x224) == 0x99FE0 - 0x90000 - 0x200
    assert u16(boot.setup, 0x1FA) == 0xFFFD                   # vga=ask
    assert boot.initrd_max == 256 * MiB - ACPI_DATA_SIZE - 1   # 0x37ffffff, then RAM
    assert boot.initrd_addr == 0x0FFD6000


def test_protocol_200_has_no_heap():
    boot = load_linux(bzimage(version=0x0200), below_4g_mem_size=128 * MiB)
    assert boot.setup[0x210] == 0xB0
    assert boot.setup[0x211] == 0x01 and u16(boot.setup, 0x224) == 0


def test_initrd_addr_max_bounds_the_initrd():
    image = bzimage(version=0x0204, setup_sects=2, initrd_addr_max=0x00ABCFFF)
    boot = load_linux(image, b"x" * 5000, "a vga=077 b", below_4g_mem_size=256 * MiB)
    assert boot.initrd_max == 0x00ABCFFF
    assert boot.initrd_addr == 0x00ABB000                     # QEMU 7.2: 0x00ABB000
    assert u16(boot.setup, 0x1FA) == 0o77


def test_protocol_202_initrd_limit():
    boot = load_linux(bzimage(version=0x0202), b"x", below_4g_mem_size=2048 * MiB)
    assert boot.initrd_max == 0x37FFFFFF
    assert boot.initrd_addr == 0x37FFF000


def test_can_be_loaded_above_4g_lifts_the_kernel_limit():
    image = bzimage(version=0x020C, initrd_addr_max=0x1000000, xloadflags=0x02)
    boot = load_linux(image, b"x", below_4g_mem_size=2048 * MiB)
    assert boot.initrd_max == 2048 * MiB - ACPI_DATA_SIZE - 1
    unbounded = load_linux(image, b"x")
    assert unbounded.initrd_max == 0xFFFFFFFF
    # before 2.12 xloadflags does not exist
    old = load_linux(bzimage(version=0x020B, initrd_addr_max=0x1000000, xloadflags=0x02), b"x")
    assert old.initrd_max == 0x1000000


def test_sev_leaves_the_setup_part_as_in_the_file():
    image = bzimage()
    boot = load_linux(image, b"initrd", "quiet", below_4g_mem_size=128 * MiB, patch_header=False)
    assert not boot.patched
    assert boot.setup == image[:2560] and boot.kernel == image[2560:]
    assert boot.setup + boot.kernel == boot.image == image
    assert boot.cmdline_addr == 0x20000 and boot.initrd_addr != 0


@pytest.mark.parametrize("cmdline, mode", [
    ("quiet", None), ("vga=normal", 0xFFFF), ("vga=ext", 0xFFFE), ("vga=ask", 0xFFFD),
    ("vga=791", 791), ("vga=0x31A x", 0x31A), ("vga=010", 8), ("novga=1", 1),
    ("vga=0x12345", 0x2345),
])
def test_vga_modes(cmdline, mode):
    assert vga_mode(cmdline) == mode


# ---- errors ----------------------------------------------------------------------------------

def error(image, *args, **kwargs):
    with pytest.raises(LinuxBootError) as info:
        load_linux(image, *args, **kwargs)
    return info.value


def test_empty_image():
    e = error(b"")
    assert str(e) == "the kernel image is empty" and e.option == "-kernel"


def test_not_a_bzimage():
    e = error(b"\x7fELF" + bytes(4096))
    assert str(e) == ("not a bzImage: no 'HdrS' setup header at offset 0x202 "
                      "(multiboot and ELF/PVH kernels are not supported)")
    assert str(error(bzimage(magic=b"HdrZ"))) == str(e)
    assert str(error(b"MZ")) == str(e)


def test_bad_boot_flag():
    assert str(error(bzimage(boot_flag=0x1234))) == (
        "invalid kernel header: boot_flag at offset 0x1fe is 0x1234, not 0xaa55")


def test_protocol_too_old():
    assert str(error(bzimage(version=0x0104))) == (
        "boot protocol 1.04 is too old: a bzImage needs protocol 2.00 or later")


def test_zimage():
    assert str(error(bzimage(loadflags=0x00))) == (
        "the kernel is a zImage (loadflags 0x00 lack LOADED_HIGH): only bzImages are supported")


def test_setup_larger_than_the_image():
    image = bzimage()[:2000]
    assert str(error(image)) == ("invalid kernel header: setup_sects 4 gives 2560 bytes of "
                                 "setup code, but the image has only 2000 bytes")


def test_command_line_too_long():
    e = error(bzimage(cmdline_size=10), None, "x" * 11)
    assert str(e) == ("the kernel command line is too long: 11 bytes, but the kernel takes "
                      "at most 10 (boot protocol 2.15)")
    assert e.option == "-append"
    load_linux(bzimage(cmdline_size=10), None, "x" * 10)
    # before 2.06: 255
    assert str(error(bzimage(version=0x0205), None, "y" * 256)) == (
        "the kernel command line is too long: 256 bytes, but the kernel takes at most 255 "
        "(boot protocol 2.05)")
    load_linux(bzimage(version=0x0205), None, "y" * 255)


def test_command_line_with_nul():
    e = error(bzimage(), None, "a\0b")
    assert str(e) == "the kernel command line contains a NUL byte" and e.option == "-append"


def test_invalid_vga_parameter():
    for cmdline in ("vga=foo", "vga=12x", "vga=0x", "vga=08", "vga=4294967296"):
        e = error(bzimage(), None, cmdline)
        assert str(e) == "invalid 'vga=' kernel parameter" and e.option == "-append"


def test_initrd_too_large_for_the_kernel():
    image = bzimage(version=0x0204, initrd_addr_max=0xFFFF)
    e = error(image, bytes(0xFFFF), below_4g_mem_size=128 * MiB)
    assert str(e) == ("the initrd is too large: 65535 bytes, but it must fit below the "
                      "kernel's initrd_addr_max (0xffff): at most 65534 bytes")
    assert e.option == "-initrd"
    assert load_linux(image, bytes(0xFFFE), below_4g_mem_size=128 * MiB).initrd_addr == 0


def test_initrd_too_large_for_ram():
    limit = 2 * MiB - ACPI_DATA_SIZE
    e = error(bzimage(), bytes(limit - 1), below_4g_mem_size=2 * MiB)
    assert str(e) == ("the initrd is too large: 1933311 bytes, but it must fit below the end "
                      "of RAM under 4 GiB (0x1d8000, less 160 KiB for ACPI): at most 1933310 "
                      "bytes")


# ---- through the machine ---------------------------------------------------------------------

BIOS = bytes(0xFFF0) + b"\xf4" + bytes(15)            # hlt at the reset vector


def files(tmp_path, kernel=None, initrd=None):
    paths = {}
    if kernel is not None:
        paths["kernel"] = tmp_path / "bzImage"
        paths["kernel"].write_bytes(kernel)
    if initrd is not None:
        paths["initrd"] = tmp_path / "initrd"
        paths["initrd"].write_bytes(initrd)
    return {k: str(v) for k, v in paths.items()}


def test_machine_hands_the_kernel_to_fw_cfg(tmp_path):
    image = bzimage()
    m = Machine(bios=BIOS, serial=None, memory=128 * MiB, append="quiet",
                **files(tmp_path, image, b"initrd!"))
    boot = m.linux_boot
    assert boot.initrd_addr == (128 * MiB - ACPI_DATA_SIZE - 1 - 7) & ~0xFFF
    assert m.fw_cfg.data(0x18) == boot.setup and m.fw_cfg.data(0x11) == image[2560:]
    assert m.fw_cfg.data(0x15) == b"quiet\0" and m.fw_cfg.data(0x12) == b"initrd!"


def test_machine_errors_name_the_option(tmp_path):
    with pytest.raises(MachineError) as info:
        Machine(bios=BIOS, serial=None, **files(tmp_path, b"\x7fELF" + bytes(600)))
    assert str(info.value) == ("pysev run: -kernel: not a bzImage: no 'HdrS' setup header at "
                               "offset 0x202 (multiboot and ELF/PVH kernels are not supported)")
    with pytest.raises(MachineError) as info:
        Machine(bios=BIOS, serial=None, memory=2 * MiB,
                **files(tmp_path, bzimage(), bytes(2 * MiB)))
    assert str(info.value).startswith("pysev run: -initrd: the initrd is too large: 2097152 bytes")
    with pytest.raises(MachineError) as info:
        Machine(bios=BIOS, serial=None, append="x" * 3000, **files(tmp_path, bzimage()))
    assert str(info.value) == ("pysev run: -append: the kernel command line is too long: 3000 "
                               "bytes, but the kernel takes at most 2047 (boot protocol 2.15)")


def test_initrd_and_append_need_a_kernel(tmp_path):
    with pytest.raises(MachineError) as info:
        Machine(bios=BIOS, serial=None, **files(tmp_path, initrd=b"x"))
    assert str(info.value) == "pysev run: -initrd only allowed with -kernel option"
    with pytest.raises(MachineError) as info:
        Machine(bios=BIOS, serial=None, append="quiet")
    assert str(info.value) == "pysev run: -append only allowed with -kernel option"
    Machine(bios=BIOS, serial=None, append="")                # empty is no -append
