"""Build small BIOS images from nasm source and run them on a bare CPU.

The prologue goes from the reset vector through protected mode into long
mode with identity-mapped 2 MiB pages for the first GiB (PML4 at 0x10000,
PDPT at 0x11000, PD at 0x12000), loads a GDT (0x08 32-bit code, 0x10 data,
0x18 64-bit code, 0x20 16-bit data, 0x28 user 64-bit code, 0x30 user data)
and then runs the test body at label `body` in 64-bit mode with RSP = 0x80000.
With mode="protected" the body runs in 32-bit protected mode without paging
(GDT loaded, DS/ES/SS = 0x10, ESP = 0x80000); with mode="real" it runs in
real mode right after the reset code (CS = 0xF000, DS = SS = 0, SP = 0x7000,
interrupts off, no GDT loaded).  Body labels are linear addresses (org
0xF0000), so 16-bit code addresses them as `label - 0xF0000` within CS.

boot(..., setup=fn) calls fn(cpu) after reset and before the run (to set
cpu.phys_bits, add memory, ...); cpu.update_paging() is called afterwards.

labels(body, mode) gives the address of every label of the image (nasm map).
idt64() / idt32() give the assembly of an IDT whose stubs record each
exception (see their docstrings); records(cpu) / faults(cpu) read the records
back.  (nasm reads k0..k7 as AVX-512 mask registers: do not use them as labels.)
"""

import functools
import hashlib
import os
import subprocess
import sys
import tempfile

from conftest import parse_nasm_map
from pysev.cpu import CPU
from pysev.mem import PhysMem

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".asmcache")

# 16-bit code at the bottom of the top 64 KiB of an image (CS base 0xFFFF0000 at
# reset, so IP = offset), entered from the reset vector at IP 0xFFF0
TOP_64K = """
bits 16
org 0
start:
{code}
times 0xfff0 - ($ - $$) db 0
    jmp start
times 0x10000 - ($ - $$) db 0
"""

PROLOGUE = r"""
bits 16
org 0xF0000
start16:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
%ifidn MODE, real
    jmp body
%endif
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


BITS = {"long": 64, "protected": 32, "real": 16}


@functools.lru_cache(maxsize=None)
def nasm(src):
    """Assemble nasm source (flat binary); returns the bytes."""
    with tempfile.TemporaryDirectory(prefix="pysev-bios-") as tmp:
        asm, out = os.path.join(tmp, "bios.asm"), os.path.join(tmp, "bios.bin")
        with open(asm, "w") as f:
            f.write(src)
        proc = subprocess.run(["nasm", "-f", "bin", "-w-all", "-o", out, asm],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        with open(out, "rb") as f:
            return f.read()


def hello_source(message):
    """Real-mode code that prints *message* (a nasm db operand list) on COM1, writes
    0x42 to the POST port and halts."""
    return r"""
    mov dx, 0x3f8
    mov si, msg
.loop:
    mov al, [cs:si]
    test al, al
    jz .done
    out dx, al
    inc si
    jmp .loop
.done:
    mov al, 0x42
    out 0x80, al
    cli
    hlt
msg: db """ + message + ", 0\n"


def build(body, mode="long"):
    """Assemble PROLOGUE + body + EPILOGUE into a 64 KiB image (cached)."""
    return _assemble(body, mode)[0]


def labels(body, mode="long"):
    """{label: linear address} of the image built from `body` (local labels as `outer.local`)."""
    return _assemble(body, mode)[1]


def _assemble(body, mode):
    if mode not in BITS:
        raise ValueError(f"unknown mode {mode!r}")
    src = f"%define MODE {mode}\n" + PROLOGUE + f"bits {BITS[mode]}\n" + body + EPILOGUE
    key = hashlib.sha256(src.encode()).hexdigest()[:32]
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"bios-{key}.bin")
    mpath = os.path.join(CACHE, f"bios-{key}.map")
    if not (os.path.exists(path) and os.path.exists(mpath)):
        with tempfile.TemporaryDirectory() as d:
            asm = os.path.join(d, "bios.asm")
            mapf = os.path.join(d, "bios.map")
            with open(asm, "w") as f:
                f.write(f"[map symbols {mapf}]\n" + src)
            out = os.path.join(d, "bios.bin")
            proc = subprocess.run(["nasm", "-f", "bin", "-o", out, asm],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(proc.stderr)
            os.replace(mapf, mpath + ".tmp")
            os.replace(mpath + ".tmp", mpath)
            os.replace(out, path)
    with open(path, "rb") as f:
        image = f.read()
    with open(mpath) as f:
        return image, parse_nasm_map(f.read(), column="real")


class SerialCapture:
    def __init__(self):
        self.out = bytearray()

    def read(self, port, size):
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        if port == 0x3F8:
            self.out.append(value & 0xFF)


def boot(body, mode="long", max_insns=2_000_000, setup=None):
    """Run a BIOS built from `body`; returns (cpu, stop reason, serial bytes).

    setup: optional callable(cpu) run after reset (then cpu.update_paging()).
    """
    image = build(body, mode)
    mem = PhysMem()
    mem.add_ram(0, 0xA0000)
    mem.add_ram(0x100000, 0x1000000 - 0x100000)
    mem.add_rom((1 << 32) - len(image), image)
    mem.add_alias(0xF0000, 0x10000, (1 << 32) - 0x10000)
    ports = SerialCapture()
    cpu = CPU(mem, ports=ports, log=sys.stderr)
    cpu.reset()
    if setup is not None:
        setup(cpu)
        cpu.update_paging()
    reason = cpu.run(max_insns)
    return cpu, reason, bytes(ports.out)


# ---- recording IDTs ---------------------------------------------------------------------
#
# Each exception or interrupt taken through these IDTs appends a 128-byte record
# at RESULTS (RESULTS + 128 * n for the n-th, counted at COUNT) and then resumes
# at the address stored at RESUME with the stack pointer stored at RESUME_SP
# (0x80000 unless the body stores another).  The stubs use the scratch
# quadwords at 0x2FFD0 / 0x2FFD8 and clobber RAX and RBX (EAX, EBX).

RESULTS = 0x30000
COUNT = 0x2FFF0
RESUME = 0x2FFF8
RESUME_SP = 0x2FFE8
RECORD_SIZE = 128
RECORD_FIELDS = ("vector", "error", "cr2", "rip", "cs", "rflags", "rsp", "ss",
                 "frame", "handler_ss", "rax", "rbx")


def stub_table(common):
    """256 interrupt stubs, 16 bytes apart from label idt_stub_0: each pushes a dummy
    error code where the CPU pushes none, then its vector, and jumps to `common`."""
    return f"""align 16
idt_stub_0:
%assign v 0
%rep 256
align 16
%if v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30
%else
    push 0
%endif
    push v
    jmp {common}
%assign v v+1
%endrep
"""


def idt64_fill(cs=0x18, base=0x20000):
    """Assembly that fills a 256-entry 64-bit IDT at `base` with interrupt gates to
    `cs`, gate n pointing at idt_stub_0 + 16 * n (the stubs of stub_table)."""
    return f"""
    mov rdi, {base:#x}
    mov rsi, idt_stub_0
    mov ecx, 256
.idt_fill:
    mov rax, rsi
    mov [rdi], ax
    mov word [rdi+2], {cs:#x}
    mov word [rdi+4], 0x8E00
    shr rax, 16
    mov [rdi+6], ax
    shr rax, 16
    mov [rdi+8], eax
    mov dword [rdi+12], 0
    add rdi, 16
    add rsi, 16
    loop .idt_fill
"""


def idt64(cs=0x18, base=0x20000, dpl3=(), ist=None):
    """(setup, stubs) assembly for a 256-entry 64-bit IDT of interrupt gates to `cs`.

    dpl3: vectors whose gate has DPL 3 (reachable by int n from user mode);
    ist: {vector: IST index}.  `setup` fills the IDT at `base`, loads it and
    zeroes the record count; `stubs` must be placed somewhere in the body.
    A record holds, as quadwords: vector, error code (0 when the vector has
    none), CR2, then the frame the CPU pushed (RIP, CS, RFLAGS, RSP, SS), the
    handler's RSP pointing at the saved RIP ("frame"), the handler's SS
    selector and the RAX and RBX of the interrupted code.
    """
    ist = ist or {}
    tweaks = "".join(f"    mov byte [{base + v * 16 + 5:#x}], 0xEE\n" for v in dpl3)
    tweaks += "".join(f"    mov byte [{base + v * 16 + 4:#x}], {i}\n" for v, i in ist.items())
    setup = f"""
    mov qword [{COUNT:#x}], 0
    mov qword [{RESUME_SP:#x}], 0x80000
""" + idt64_fill(cs, base) + f"""{tweaks}    lidt [idt_ptr]
"""
    stubs = f"""
idt_common:
    mov [0x2FFD0], rax
    mov [0x2FFD8], rbx
    mov rbx, [{COUNT:#x}]
    shl rbx, 7
    add rbx, {RESULTS:#x}
    pop rax
    mov [rbx], rax
    pop rax
    mov [rbx+8], rax
    mov rax, cr2
    mov [rbx+16], rax
%assign i 0
%rep 5
    mov rax, [rsp+8*i]
    mov [rbx+24+8*i], rax
%assign i i+1
%endrep
    mov [rbx+64], rsp
    xor eax, eax
    mov ax, ss
    mov [rbx+72], rax
    mov rax, [0x2FFD0]
    mov [rbx+80], rax
    mov rax, [0x2FFD8]
    mov [rbx+88], rax
    inc qword [{COUNT:#x}]
    mov rsp, [{RESUME_SP:#x}]
    jmp [{RESUME:#x}]
align 8
idt_ptr:
    dw 4095
    dq {base:#x}
""" + stub_table("idt_common")
    return setup, stubs


def idt32(cs=0x08, base=0x20000, dpl3=(), ds=0x10):
    """(setup, stubs) for a 256-entry 32-bit IDT of interrupt gates to `cs`; like idt64.

    The record has the same layout (each value zero-extended to a quadword);
    the saved ESP and SS are only meaningful when the CPU switched stacks.
    The stubs load DS and ES with `ds` (an IRET to CPL 3 nulls them) and
    leave them so.
    """
    tweaks = "".join(f"    mov byte [{base + v * 8 + 5:#x}], 0xEE\n" for v in dpl3)
    setup = f"""
    mov dword [{COUNT:#x}], 0
    mov dword [{COUNT + 4:#x}], 0
    mov dword [{RESUME_SP:#x}], 0x80000
    mov edi, {base:#x}
    mov esi, idt_stub_0
    mov ecx, 256
.idt_fill:
    mov eax, esi
    mov [edi], ax
    mov word [edi+2], {cs:#x}
    mov word [edi+4], 0x8E00
    shr eax, 16
    mov [edi+6], ax
    add edi, 8
    add esi, 16
    loop .idt_fill
{tweaks}    lidt [idt_ptr]
"""
    stubs = f"""
idt_common:
    mov [ss:0x2FFD0], eax
    mov ax, {ds:#x}
    mov ds, ax
    mov es, ax
    mov [0x2FFD8], ebx
    mov ebx, [{COUNT:#x}]
    shl ebx, 7
    add ebx, {RESULTS:#x}
%assign i 0
%rep 16
    mov dword [ebx+4*i], 0
%assign i i+1
%endrep
    pop eax
    mov [ebx], eax
    pop eax
    mov [ebx+8], eax
    mov eax, cr2
    mov [ebx+16], eax
%assign i 0
%rep 5
    mov eax, [esp+4*i]
    mov [ebx+24+8*i], eax
%assign i i+1
%endrep
    mov [ebx+64], esp
    xor eax, eax
    mov ax, ss
    mov [ebx+72], eax
    mov eax, [0x2FFD0]
    mov [ebx+80], eax
    mov eax, [0x2FFD8]
    mov [ebx+88], eax
    inc dword [{COUNT:#x}]
    mov esp, [{RESUME_SP:#x}]
    jmp [{RESUME:#x}]
align 8
idt_ptr:
    dw 2047
    dd {base:#x}
""" + stub_table("idt_common")
    return setup, stubs


def records(cpu):
    """The exception records written by the idt64/idt32 stubs, as dicts."""
    out = []
    for n in range(cpu.mem.read(COUNT, 8)):
        raw = cpu.mem.read_bytes(RESULTS + RECORD_SIZE * n, RECORD_SIZE)
        values = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, RECORD_SIZE, 8)]
        out.append(dict(zip(RECORD_FIELDS, values)))
    return out


def faults(cpu):
    """(vector, error code) of every record."""
    return [(r["vector"], r["error"]) for r in records(cpu)]
