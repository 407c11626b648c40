"""Direct kernel boot through fw_cfg, as a firmware sees it: a small real-mode BIOS on a
pysev Machine with -kernel, -initrd and -append reads the fw_cfg device through its I/O
ports and by DMA, and the test checks what landed in guest memory and on the serial port.

The BIOS (run from the reset vector, CS = 0xF000 after a far jump):
  * reads the signature through port 0x511 (to 0x500) and prints it, and FW_CFG_ID (0x504);
  * walks the file directory for "etc/e820" (selector 0x508, size 0x50C) and reads that
    file to 0x3000;
  * reads FW_CFG_SETUP_SIZE (0x514) (0: prints "no kernel" and halts) and the setup part
    with rep insb to 0x10000, prints
    the 32-bit byte sum of what it read, then calls the code the test put at setup offset
    0x300 (it prints "A");
  * by DMA, with a selecting FWCfgDmaAccess at 0x600: the kernel to FW_CFG_KERNEL_ADDR,
    the command line to FW_CFG_CMDLINE_ADDR, the initrd to FW_CFG_INITRD_ADDR (status
    words at 0x540, 0x544, 0x548);
  * DMAs the initrd's first 16 bytes over the setup code it already ran (they print "B")
    and calls it again: a stale translation would print "A" (status 0x54C);
  * a DMA into the VGA hole (status 0x550), then a SKIP of 0x1F1 setup bytes followed by
    an I/O read of setup_sects (0x554).
"""

import functools
import os
import struct
import subprocess
import tempfile

import pytest

from pysev import Machine
from pysev.boot.linux import ACPI_DATA_SIZE

MiB = 1 << 20

BIOS_ASM = r"""
bits 16
org 0
start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    ; the signature through the data port, printed
    xor ax, ax
    call select
    mov di, 0x500
    mov cx, 4
    rep insb
    mov si, 0x500
    mov cx, 4
.sig:
    lodsb
    call putc
    loop .sig
    mov al, ' '
    call putc
    ; FW_CFG_ID
    mov ax, 0x01
    mov di, 0x504
    call read4
    ; the file directory: find etc/e820
    mov ax, 0x19
    call select
    mov di, 0x800
    mov cx, 4
    rep insb
    mov eax, [0x800]
    bswap eax
    mov bp, ax
    mov dword [0x508], 0
    mov dword [0x50C], 0
.dir:
    test bp, bp
    jz .dir_done
    mov di, 0x800
    mov cx, 64
    rep insb
    mov si, 0x808
    mov bx, e820_name
.cmp:
    mov al, [si]
    cmp al, [cs:bx]
    jne .next
    test al, al
    jz .found
    inc si
    inc bx
    jmp .cmp
.found:
    mov eax, [0x800]
    bswap eax
    mov [0x50C], eax
    mov ax, [0x804]
    xchg al, ah
    mov [0x508], ax
.next:
    dec bp
    jmp .dir
.dir_done:
    mov ax, [0x508]
    call select
    mov di, 0x3000
    mov cx, [0x50C]
    rep insb
    ; the setup part through the data port, to 0x1000:0
    mov ax, 0x17
    mov di, 0x514
    call read4
    cmp dword [0x514], 0
    je no_kernel
    mov ax, 0x18
    call select
    mov ax, 0x1000
    mov es, ax
    xor di, di
    mov cx, [0x514]
    rep insb
    xor ax, ax
    mov es, ax
    mov cx, [0x514]
    mov ax, 0x1000
    mov ds, ax
    xor si, si
    xor eax, eax
    xor ebx, ebx
.sum:
    lodsb
    add ebx, eax
    loop .sum
    xor ax, ax
    mov ds, ax
    mov [0x518], ebx
    mov eax, ebx
    call hex32
    mov al, ' '
    call putc
    call 0x1000:0x0300
    ; the kernel, the command line and the initrd by DMA
    mov ax, 0x07
    mov di, 0x520
    call read4
    mov ax, 0x08
    mov di, 0x524
    call read4
    mov eax, [0x520]
    mov ebx, [0x524]
    mov ecx, 0x11
    call dma_read
    mov [0x540], eax
    mov ax, 0x13
    mov di, 0x528
    call read4
    mov ax, 0x14
    mov di, 0x52C
    call read4
    mov eax, [0x528]
    mov ebx, [0x52C]
    mov ecx, 0x15
    call dma_read
    mov [0x544], eax
    mov ax, 0x0A
    mov di, 0x530
    call read4
    mov ax, 0x0B
    mov di, 0x534
    call read4
    mov eax, [0x530]
    mov ebx, [0x534]
    mov ecx, 0x12
    call dma_read
    mov [0x548], eax
    ; DMA new code over code that already ran, and run it again
    mov eax, 0x10300
    mov ebx, 16
    mov ecx, 0x12
    call dma_read
    mov [0x54C], eax
    call 0x1000:0x0300
    ; a DMA into the VGA hole fails
    mov eax, 0xA0000
    mov ebx, 16
    mov ecx, 0x00
    call dma_read
    mov [0x550], eax
    ; SKIP 0x1F1 bytes of the setup part, then read setup_sects through the port
    mov ax, 0x18
    call select
    mov dword [0x600], 0x04000000
    mov dword [0x604], 0xF1010000
    mov dword [0x608], 0
    mov dword [0x60C], 0
    call dma_go
    mov [0x558], eax
    mov dx, 0x511
    in al, dx
    mov [0x554], al
    mov al, 10
    call putc
    hlt
    jmp $

no_kernel:
    mov si, none_text
.print:
    mov al, [cs:si]
    test al, al
    jz .done
    call putc
    inc si
    jmp .print
.done:
    hlt
    jmp $

; select item ax
select:
    mov dx, 0x510
    out dx, ax
    ret

; 4 bytes of item ax to [di]
read4:
    call select
    mov dx, 0x511
    mov cx, 4
    rep insb
    ret

; DMA READ of item ecx, ebx bytes to eax; returns the status word in eax
dma_read:
    bswap eax
    mov [0x60C], eax
    mov dword [0x608], 0
    bswap ebx
    mov [0x604], ebx
    shl ecx, 16
    or ecx, 0x0A
    bswap ecx
    mov [0x600], ecx
dma_go:
    xor eax, eax
    mov dx, 0x514
    out dx, eax
    mov eax, 0x600
    bswap eax
    mov dx, 0x518
    out dx, eax
    mov eax, [0x600]
    ret

putc:
    push dx
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret

hex32:
    mov cx, 8
.digit:
    rol eax, 4
    push eax
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 7
.out:
    call putc
    pop eax
    loop .digit
    ret

e820_name: db "etc/e820", 0
none_text: db "no kernel", 10, 0

times 0xfff0 - ($ - $$) db 0
    jmp 0xF000:start
times 0x10000 - ($ - $$) db 0
"""

PRINT_A = b"\xb0A\xba\xf8\x03\xee\xcb"        # mov al,'A'; mov dx,0x3f8; out dx,al; retf
PRINT_B = b"\xb0B\xba\xf8\x03\xee\xcb"


@functools.lru_cache(maxsize=None)
def bios_image():
    with tempfile.TemporaryDirectory(prefix="pysev-fwcfg-") as tmp:
        asm, out = os.path.join(tmp, "bios.asm"), os.path.join(tmp, "bios.bin")
        with open(asm, "w") as f:
            f.write(BIOS_ASM)
        proc = subprocess.run(["nasm", "-f", "bin", "-o", out, asm], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        with open(out, "rb") as f:
            return f.read()


def bzimage(kernel_size=100_000):
    setup = bytearray(5 * 512)
    setup[0x1F1] = 4
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    setup[0x211] = 0x01
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<I", setup, 0x238, 2047)
    setup[0x300:0x300 + len(PRINT_A)] = PRINT_A
    return bytes(setup) + bytes((i * 11 + 5) & 0xFF for i in range(kernel_size))


class Capture:
    def __init__(self):
        self.data = bytearray()

    def __call__(self, data):
        self.data += data


@pytest.fixture
def booted(tmp_path):
    kernel, initrd = bzimage(), PRINT_B + bytes(range(256)) * 40
    (tmp_path / "bzImage").write_bytes(kernel)
    (tmp_path / "initrd").write_bytes(initrd)
    serial = Capture()
    m = Machine(bios=bios_image(), memory=128 * MiB, serial=serial,
                kernel=str(tmp_path / "bzImage"), initrd=str(tmp_path / "initrd"),
                append="console=ttyS0 root=/dev/vda1")
    reason = m.run(max_insns=2_000_000)
    return m, reason, bytes(serial.data), kernel, initrd


def status(m, addr):
    return struct.unpack(">I", m.read_phys(addr, 4))[0]


def test_bios_reads_fw_cfg_through_the_ports(booted):
    m, reason, out, kernel, _ = booted
    assert reason == "hlt"
    setup = m.linux_boot.setup
    assert out == f"QEMU {sum(setup):08X} AB\n".encode()
    assert m.read_phys(0x500, 4) == b"QEMU"
    assert struct.unpack("<I", m.read_phys(0x504, 4))[0] == 3
    # the e820 file found by name in the directory and read whole
    key, size = struct.unpack("<HxxI", m.read_phys(0x508, 8))
    assert (key, size) == m.fw_cfg.find_file("etc/e820") == (0x23, 40)
    e820 = m.read_phys(0x3000, 40)
    assert struct.unpack("<QQIQQI", e820) == (0xFD00000000, 0x300000000, 2, 0, 128 * MiB, 1)
    # the setup part as QEMU patches it
    assert struct.unpack("<I", m.read_phys(0x514, 4))[0] == 2560
    assert m.read_phys(0x10000, 0x300) == setup[:0x300]
    assert setup[0x210] == 0xB0 and setup[0x211] == 0x81
    assert m.read_phys(0x554, 1) == b"\x04"                 # setup_sects after the SKIP
    assert status(m, 0x558) == 0


def test_bios_loads_the_kernel_by_dma(booted):
    m, _, _, kernel, initrd = booted
    boot = m.linux_boot
    assert struct.unpack("<IIIIII", m.read_phys(0x520, 24)) == (
        0x100000, len(kernel) - 2560, 0x20000, 29, boot.initrd_addr, len(initrd))
    assert boot.initrd_addr == (128 * MiB - ACPI_DATA_SIZE - 1 - len(initrd)) & ~0xFFF
    assert [status(m, a) for a in (0x540, 0x544, 0x548, 0x54C)] == [0, 0, 0, 0]
    assert m.read_phys(0x100000, len(kernel) - 2560) == kernel[2560:]
    assert m.read_phys(0x20000, 29) == b"console=ttyS0 root=/dev/vda1\0"
    assert m.read_phys(boot.initrd_addr, len(initrd)) == initrd
    # the header points at what was loaded
    setup = m.read_phys(0x10000, 0x270)
    assert struct.unpack_from("<II", setup, 0x218) == (boot.initrd_addr, len(initrd))
    assert struct.unpack_from("<I", setup, 0x228)[0] == 0x20000
    # the code DMA'd over translated code ran (printed "B")
    assert m.read_phys(0x10300, 16) == initrd[:16]


def test_dma_into_a_hole_reports_an_error(booted):
    m, _, _, _, _ = booted
    assert status(m, 0x550) == 1
    assert m.read_phys(0xA0000, 16) == b"\xff" * 16


def test_without_a_kernel_the_items_read_as_zero(tmp_path):
    serial = Capture()
    m = Machine(bios=bios_image(), memory=64 * MiB, machine="pc", cpu="qemu64", serial=serial)
    assert m.run(max_insns=2_000_000) == "hlt"
    assert bytes(serial.data) == b"QEMU no kernel\n"
    assert struct.unpack("<I", m.read_phys(0x514, 4))[0] == 0          # SETUP_SIZE
    assert m.linux_boot is None
    assert m.fw_cfg.file_names() == ["bios-geometry", "bootorder", "etc/boot-fail-wait",
                                     "etc/e820"]
    assert m.read_phys(0x3000, 40) == struct.pack("<QQIQQI", 0xFD00000000, 0x300000000, 2,
                                                  0, 64 * MiB, 1)
