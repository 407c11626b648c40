"""Operating modes: interrupts through the real-mode IVT, real -> protected -> real
transitions (with "unreal" segment limits kept), 16-bit code segments in
protected mode, compatibility mode in long mode, and far calls, jumps and
returns (RETF, RETFQ, IRETQ, a 64-bit call gate) between 16-, 32- and 64-bit
code segments.
"""

import functools

from decoder.records import CS, DS, FS, SS
from sysboot import boot, idt64, labels, records


@functools.lru_cache(maxsize=None)
def run(body, mode):
    cpu, reason, _ = boot(body, mode)
    return cpu, reason, labels(body, mode)


def rd(cpu, addr, size):
    return cpu.mem.read(addr, size)


# ---------------------------------------------------------------------------- real mode

REAL_IVT = r"""
body:
    mov word [0x40*4], h40 - 0xF0000
    mov word [0x40*4+2], 0xF000
    mov word [0*4], h_de - 0xF0000
    mov word [0*4+2], 0xF000
    mov word [3*4], h_bp - 0xF0000
    mov word [3*4+2], 0xF000
    mov ax, 0x0203                          ; IF | CF
    push ax
    popf
    mov ax, 0x1111
    mov [0x500], sp
    int 0x40
after40:
    mov [0x502], ax
    pushf
    pop word [0x504]
    mov [0x506], sp
    mov cl, 0
    mov ax, 7
de_insn:
    div cl
after_de:
    mov [0x508], ax
    int3
after_bp:
    o32 lidt [cs:ivt2 - 0xF0000]            ; the IVT moves with IDTR.base
    mov word [0x1000 + 0x40*4], h40b - 0xF0000
    mov word [0x1000 + 0x40*4 + 2], 0xF000
    int 0x40
    o32 lidt [cs:ivt1 - 0xF0000]
    hlt
h40:
    mov [0x510], sp
    mov bx, sp
    mov cx, [bx]
    mov [0x512], cx                         ; saved IP
    mov cx, [bx+2]
    mov [0x514], cx                         ; saved CS
    mov cx, [bx+4]
    mov [0x516], cx                         ; saved FLAGS
    pushf
    pop word [0x518]                        ; FLAGS in the handler
    mov ax, 0x2222
    iret
h_de:
    mov bx, sp
    mov cx, [bx]
    mov [0x520], cx                         ; #DE: IP of the DIV
    add word [bx], 2                        ; resume after it
    mov ax, 0xDEDE
    iret
h_bp:
    mov bx, sp
    mov cx, [bx]
    mov [0x522], cx                         ; int3: IP after it
    iret
h40b:
    mov word [0x524], 0x4040
    iret
ivt1:
    dw 0x3FF
    dd 0
ivt2:
    dw 0x3FF
    dd 0x1000
"""


def test_real_mode_interrupts_through_the_ivt():
    cpu, reason, lab = run(REAL_IVT, "real")
    assert reason == "hlt"
    assert cpu.mode.bits == 16 and not cpu.cr0 & 1
    assert rd(cpu, 0x500, 2) == 0x7000
    assert rd(cpu, 0x510, 2) == 0x7000 - 6                  # FLAGS, CS, IP pushed
    assert rd(cpu, 0x512, 2) == lab["after40"] - 0xF0000
    assert rd(cpu, 0x514, 2) == 0xF000
    assert rd(cpu, 0x516, 2) == 0x0203                      # IF | CF
    assert rd(cpu, 0x518, 2) == 0x0003                      # IF (and TF) cleared
    assert rd(cpu, 0x502, 2) == 0x2222                      # the handler's AX
    assert rd(cpu, 0x504, 2) == 0x0203                      # IRET restored FLAGS
    assert rd(cpu, 0x506, 2) == 0x7000
    assert rd(cpu, 0x520, 2) == lab["de_insn"] - 0xF0000    # a fault: IP of the DIV
    assert rd(cpu, 0x508, 2) == 0xDEDE
    assert rd(cpu, 0x522, 2) == lab["after_bp"] - 0xF0000   # a trap: IP after int3
    assert rd(cpu, 0x524, 2) == 0x4040
    assert cpu.idtr == (0, 0x3FF)


REAL_PROT_REAL = r"""
body:
    o32 lgdt [cs:rgdt_ptr - 0xF0000]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:(pm16 - 0xF0000)               ; 16-bit protected-mode code, base 0xF0000
pm16:
    mov ax, 0x10                            ; flat 4 GiB data
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov esi, 0x100000
    mov dword [esi], 0xCAFEBABE             ; a 32-bit address from 16-bit code
    mov [0x600], sp
    push ax                                 ; SS is still the real-mode one: 16-bit stack
    mov [0x602], sp
    pop ax
    jmp dword 0x18:p32
bits 32
p32:
    mov dword [0x604], 0x32323232
    mov eax, cs
    mov [0x608], eax
    push eax                                ; 32-bit push on the 16-bit stack: SP -= 4
    mov [0x60C], esp
    pop eax
    jmp word 0x08:(back16 - 0xF0000)
bits 16
back16:
    mov ax, 0x20                            ; 64 KiB data for DS and ES; FS stays flat
    mov ds, ax
    mov es, ax
    mov eax, cr0
    and al, 0xFE
    mov cr0, eax
    jmp 0xF000:(rm - 0xF0000)
rm:
    xor ax, ax
    mov ds, ax
    mov fs, ax                              ; real-mode load: base 0, the 4 GiB limit stays
    mov esi, 0x100000
    mov eax, [fs:esi]
    mov [0x610], eax
    mov [0x614], cs
    mov [0x616], fs
    hlt
align 8
rgdt:
    dq 0
    dq 0x00009B0F0000FFFF                   ; 0x08 16-bit code, base 0xF0000
    dq 0x00CF93000000FFFF                   ; 0x10 flat data
    dq 0x00CF9B000000FFFF                   ; 0x18 32-bit code
    dq 0x000093000000FFFF                   ; 0x20 16-bit data, 64 KiB
rgdt_ptr:
    dw 39
    dd rgdt
"""


def test_real_to_protected_and_back_to_real_mode():
    cpu, reason, lab = run(REAL_PROT_REAL, "real")
    assert reason == "hlt"
    assert rd(cpu, 0x100000, 4) == 0xCAFEBABE
    assert rd(cpu, 0x600, 2) == 0x7000
    assert rd(cpu, 0x602, 2) == 0x6FFE
    assert rd(cpu, 0x604, 4) == 0x32323232
    assert rd(cpu, 0x608, 4) & 0xFFFF == 0x18
    assert rd(cpu, 0x60C, 4) == 0x6FFC
    assert rd(cpu, 0x610, 4) == 0xCAFEBABE                  # "unreal" FS
    assert rd(cpu, 0x614, 2) == 0xF000 and rd(cpu, 0x616, 2) == 0
    assert not cpu.cr0 & 1 and cpu.mode.bits == 16
    assert cpu.seg_base[CS] == 0xF0000 and cpu.seg_sel[CS] == 0xF000
    assert (cpu.seg_base[FS], cpu.seg_limit[FS]) == (0, 0xFFFFFFFF)
    assert (cpu.seg_base[DS], cpu.seg_limit[DS]) == (0, 0xFFFF)


# ---------------------------------------------------------------------------- 16-bit protected mode

PM16 = r"""
body:
    lgdt [mgdt_ptr]
    jmp 0x08:.reload
.reload:
    mov eax, 0x11111111
    jmp 0x18:(c16 - 0xF0000)
bits 16
c16:
    mov ax, 0x1234                          ; 16-bit operand size: EAX[31:16] kept
    mov [0x600], eax
    mov ebx, esp
    push ax                                 ; SS is 32-bit (B = 1): ESP -= 2
    mov [0x604], esp
    sub ebx, esp
    mov [0x608], bx
    pop ax
    call sub16
    call dword 0x08:fn32                      ; pushes a 4-byte CS and EIP
after_fn32:
    jmp dword 0x08:back32
sub16:
    mov [0x60C], esp
    ret                                     ; pops 2 bytes
bits 32
fn32:
    mov [0x610], esp
    mov eax, [esp]
    mov [0x614], eax
    mov eax, [esp+4]
    mov [0x618], ax
    retf
back32:
    call 0x18:(fn16 - 0xF0000)              ; 32-bit far call into a 16-bit segment
after_fn16:
    mov [0x620], esp
    mov [0x624], cs
    hlt
bits 16
fn16:
    mov [0x628], esp
    mov eax, [esp]
    mov [0x61C], eax
    mov ax, [esp+4]
    mov [0x62C], ax
    o32 retf
bits 32
align 8
mgdt:
    dq 0
    dq 0x00CF9A000000FFFF                   ; 0x08 32-bit code
    dq 0x00CF92000000FFFF                   ; 0x10 data
    dq 0x00009A0F0000FFFF                   ; 0x18 16-bit code, base 0xF0000
mgdt_ptr:
    dw 31
    dd mgdt
"""


def test_16bit_code_segment_in_protected_mode():
    cpu, reason, lab = run(PM16, "protected")
    assert reason == "hlt"
    assert rd(cpu, 0x600, 4) == 0x11111234
    assert rd(cpu, 0x604, 4) == 0x80000 - 2
    assert rd(cpu, 0x608, 2) == 2
    assert rd(cpu, 0x60C, 4) == 0x80000 - 2                 # near call in 16-bit code: 2 bytes
    # o32 far call from 16-bit code: EIP (offset in the 16-bit segment) and CS, 4 bytes each
    assert rd(cpu, 0x610, 4) == 0x80000 - 8
    assert rd(cpu, 0x614, 4) == lab["after_fn32"] - 0xF0000
    assert rd(cpu, 0x618, 2) == 0x18
    # 32-bit far call into the 16-bit segment, returned from with o32 retf
    assert rd(cpu, 0x628, 4) == 0x80000 - 8
    assert rd(cpu, 0x61C, 4) == lab["after_fn16"]
    assert rd(cpu, 0x62C, 2) == 0x08
    assert rd(cpu, 0x620, 4) == 0x80000
    assert rd(cpu, 0x624, 2) == 0x08
    assert cpu.mode.bits == 32


# ---------------------------------------------------------------------------- long mode

COMPAT = r"""
body:
    mov rsi, cgdt
    mov edi, 0x6000
    mov ecx, cgdt_end - cgdt
    rep movsb
    lgdt [cgdt_ptr]
{idt}
    mov qword [0x2FFF8], k_ud
    jmp far dword [rel p_compat]                  ; m16:32 -> 0x08:compat
bits 32
compat:
    mov eax, 5
    db 0x48                                 ; DEC EAX here (a REX prefix in 64-bit mode)
    mov [0x31000], eax
    mov ebx, esp
    push eax
    sub ebx, esp
    mov [0x31004], ebx
    pop eax
    mov [0x31008], cs
f_ud:
    ud2                                     ; through the 64-bit IDT
bits 64
k_ud:
    mov [0x31010], rsp
    call far dword [rel p_cfn]                    ; m16:32: 4-byte CS and EIP pushed
after_call:
    mov [0x31018], rsp
    push 0x08
    push compat2
    retfq                                   ; 64-bit far return to compatibility mode
bits 32
cfn:
    mov [0x31020], esp
    mov eax, [esp]
    mov [0x31024], eax
    mov eax, [esp+4]
    mov [0x31028], ax
    retf
compat2:
    mov [0x3102C], cs
    jmp 0x18:back64
bits 64
back64:
    mov rax, rsp
    push 0x10
    push rax
    pushfq
    push 0x08
    push compat3
    iretq                                   ; IRETQ to compatibility mode
bits 32
compat3:
    mov [0x31030], cs
    mov [0x31032], ss
    mov [0x31034], esp
    jmp 0x18:gate_test
bits 64
gate_test:
    call far dword [rel p_gate]                   ; through a 64-bit call gate
after_gate:
    mov [0x31048], rsp
    hlt
gate64:
    mov [0x31038], rsp
    mov rax, [rsp]
    mov [0x31040], rax
    mov rax, [rsp+8]
    mov [0x31050], ax
    o64 retf
{stubs}
align 8
p_compat:
    dd compat
    dw 0x08
p_cfn:
    dd cfn
    dw 0x08
p_gate:
    dd 0
    dw 0x38
align 8
cgdt:
    dq 0
    dq 0x00CF9A000000FFFF                   ; 0x08 32-bit code
    dq 0x00CF92000000FFFF                   ; 0x10 data
    dq 0x00AF9A000000FFFF                   ; 0x18 64-bit code
    dq 0x000092000000FFFF
    dq 0x00AFFA000000FFFF
    dq 0x00CFF2000000FFFF
    dw ((gate64 - $$ + 0xF0000) & 0xFFFF), 0x18     ; 0x38 64-bit call gate -> 0x18:gate64
    db 0, 0x8C
    dw ((gate64 - $$ + 0xF0000) >> 16)
    dd 0, 0
cgdt_end:
cgdt_ptr:
    dw cgdt_end - cgdt - 1
    dq 0x6000
"""


def compat_run():
    setup, stubs = idt64()
    return run(COMPAT.replace("{idt}", setup).replace("{stubs}", stubs), "long")


def test_compatibility_mode_runs_32bit_code_in_long_mode():
    cpu, reason, lab = compat_run()
    assert reason == "hlt"
    assert rd(cpu, 0x31000, 4) == 4                         # 0x48 decoded as DEC EAX
    assert rd(cpu, 0x31004, 4) == 4                         # 32-bit push
    assert rd(cpu, 0x31008, 2) == 0x08
    (rec,) = records(cpu)
    assert (rec["vector"], rec["rip"], rec["cs"], rec["rsp"], rec["ss"]) == (
        6, lab["f_ud"], 0x08, 0x80000, 0x10)
    assert rec["frame"] == 0x80000 - 40                     # 64-bit frame from compatibility mode


def test_far_call_and_return_between_64bit_and_compatibility_mode():
    cpu, reason, lab = compat_run()
    assert reason == "hlt"
    assert rd(cpu, 0x31010, 8) == 0x80000
    assert rd(cpu, 0x31020, 4) == 0x80000 - 8
    assert rd(cpu, 0x31024, 4) == lab["after_call"]
    assert rd(cpu, 0x31028, 2) == 0x18
    assert rd(cpu, 0x31018, 8) == 0x80000


def test_retfq_and_iretq_to_compatibility_mode():
    cpu, reason, lab = compat_run()
    assert reason == "hlt"
    assert rd(cpu, 0x3102C, 2) == 0x08
    assert rd(cpu, 0x31030, 2) == 0x08
    assert rd(cpu, 0x31032, 2) == 0x10
    assert rd(cpu, 0x31034, 4) == 0x80000


def test_call_through_a_64bit_call_gate():
    cpu, reason, lab = compat_run()
    assert reason == "hlt"
    assert rd(cpu, 0x31038, 8) == 0x80000 - 16              # 8-byte CS and RIP
    assert rd(cpu, 0x31040, 8) == lab["after_gate"]
    assert rd(cpu, 0x31050, 2) == 0x18
    assert rd(cpu, 0x31048, 8) == 0x80000
    assert cpu.mode.bits == 64 and cpu.seg_sel[CS] == 0x18 and cpu.seg_sel[SS] == 0x10
