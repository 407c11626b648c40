"""Build small BIOS images from nasm source and run them on a bare CPU.

The prologue goes from the reset vector through protected mode into long
mode with identity-mapped 2 MiB pages for the first GiB (PML4 at 0x10000,
PDPT at 0x11000, PD at 0x12000), loads a GDT (0x08 32-bit code, 0x10 data,
0x18 64-bit code, 0x20 16-bit data, 0x28 user 64-bit code, 0x30 user data)
and then runs the test body at label `body` in 64-bit mode with RSP = 0x80000.
With mode="protected" the body runs in 32-bit protected mode without paging.
"""

import hashlib
import os
import subprocess
import sys
import tempfile

from pysev.cpu import CPU
from pysev.mem import PhysMem

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".asmcache")

PROLOGUE = r"""
bits 16
org 0xF0000
start16:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    o32 lgdt [cs:gdt_ptr - 0xF0000]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp dword 0x08:pm32
bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x80000
%ifidn MODE, protected
    jmp body
%else
    mov edi, 0x10000
    mov ecx, 0x3000/4
    xor eax, eax
    rep stosd
    mov dword [0x10000], 0x11003
    mov dword [0x11000], 0x12003
    mov edi, 0x12000
    mov eax, 0x83
    mov ecx, 512
.fill:
    mov [edi], eax
    mov dword [edi+4], 0
    add eax, 0x200000
    add edi, 8
    loop .fill
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x18:lm64
bits 64
lm64:
    mov rsp, 0x80000
    jmp body
%endif
align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF   ; 0x08 32-bit code
    dq 0x00CF92000000FFFF   ; 0x10 data
    dq 0x00AF9A000000FFFF   ; 0x18 64-bit code
    dq 0x000092000000FFFF   ; 0x20 16-bit data
    dq 0x00AFFA000000FFFF   ; 0x28 user 64-bit code
    dq 0x00CFF2000000FFFF   ; 0x30 user data
gdt_end:
gdt_ptr:
    dw gdt_end - gdt - 1
    dd gdt
"""

EPILOGUE = r"""
times 0x10000 - 16 - ($ - $$) db 0
bits 16
reset:
    jmp 0xF000:start16
times 0x10000 - ($ - $$) db 0
"""


def build(body, mode="long"):
    """Assemble PROLOGUE + body + EPILOGUE into a 64 KiB image (cached)."""
    src = f"%define MODE {mode}\n" + PROLOGUE + (
        "bits 64\n" if mode == "long" else "bits 32\n") + body + EPILOGUE
    key = hashlib.sha256(src.encode()).hexdigest()[:32]
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"bios-{key}.bin")
    if not os.path.exists(path):
        with tempfile.TemporaryDirectory() as d:
            asm = os.path.join(d, "bios.asm")
            with open(asm, "w") as f:
                f.write(src)
            out = os.path.join(d, "bios.bin")
            proc = subprocess.run(["nasm", "-f", "bin", "-o", out, asm],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(proc.stderr)
            os.replace(out, path)
    with open(path, "rb") as f:
        return f.read()


class SerialCapture:
    def __init__(self):
        self.out = bytearray()

    def read(self, port, size):
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        if port == 0x3F8:
            self.out.append(value & 0xFF)


def boot(body, mode="long", max_insns=2_000_000):
    """Run a BIOS built from `body`; returns (cpu, stop reason, serial bytes)."""
    image = build(body, mode)
    mem = PhysMem()
    mem.add_ram(0, 0xA0000)
    mem.add_ram(0x100000, 0x1000000 - 0x100000)
    mem.add_rom((1 << 32) - len(image), image)
    mem.add_alias(0xF0000, 0x10000, (1 << 32) - 0x10000)
    ports = SerialCapture()
    cpu = CPU(mem, ports=ports, log=sys.stderr)
    cpu.reset()
    reason = cpu.run(max_insns)
    return cpu, reason, bytes(ports.out)
