"""Privilege levels: user mode entered by IRETQ, SYSCALL/SYSRET, interrupts from CPL 3
through the TSS (RSP0, IST), privileged instructions, the I/O permission bitmap,
user/supervisor pages, SMEP and SMAP, and in 32-bit protected mode LAR/LSL/VERR/
VERW/ARPL, call gates with a TSS stack switch and SYSENTER/SYSEXIT.

Long-mode tests run with their own GDT (copied to 0x6000):

    0x08 kernel 32-bit code   0x10 kernel data      0x18 kernel 64-bit code
    0x20 16-bit data          0x28 user 64-bit code 0x30 user data
    0x38 64-bit TSS (16 bytes, at 0x7000)
    0x48 kernel 64-bit code   0x50 kernel data      (SYSCALL: STAR[47:32] = 0x48)
    0x58 user 32-bit code     0x60 user data        0x68 user 64-bit code
                                                    (SYSRET: STAR[63:48] = 0x58)

and 4 KiB pages for the first 2 MiB (PT at 0x13000), supervisor-only except the
user pages: stack 0x60000 (RSP 0x61000), data 0x61000, a read-only page 0x62000
and the pages holding the user code (label `user_code` on, 4 KiB aligned).
RSP0 = 0x70008 (used as 0x70000 after the 16-byte alignment), IST1 = 0x74000,
IST2 = 0x76000.

pysev pushes the interrupt frame of a CPL 3 -> CPL 0 transition while the CPL
is still 3, so those pushes fault on a supervisor-only kernel stack
(test_interrupt_from_user_pushes_to_a_supervisor_only_rsp0_stack).  The other
tests mark the kernel stack pages user-accessible (kstack_user=True) so that
they test their own feature; this is harmless there as SMAP is off.
"""

import functools

import pytest

from sysboot import boot, idt32, idt64, labels, records

RSP0_TOP = 0x70000
IST1_TOP = 0x74000
IST2_TOP = 0x76000
USER_RSP = 0x61000
USER_DATA = 0x61000
KDATA = 0x31000            # kernel-written results (supervisor page)

GDT64 = r"""
align 8
pgdt:
    dq 0
    dq 0x00CF9A000000FFFF   ; 0x08 kernel 32-bit code
    dq 0x00CF92000000FFFF   ; 0x10 kernel data
    dq 0x00AF9A000000FFFF   ; 0x18 kernel 64-bit code
    dq 0x000092000000FFFF   ; 0x20 16-bit data
    dq 0x00AFFA000000FFFF   ; 0x28 user 64-bit code
    dq 0x00CFF2000000FFFF   ; 0x30 user data
    dw 0xE8, 0x7000         ; 0x38 64-bit TSS at 0x7000, limit 0xE8
    db 0, 0x89, 0, 0
    dd 0, 0
    dq 0x00AF9A000000FFFF   ; 0x48 kernel 64-bit code (SYSCALL CS)
    dq 0x00CF92000000FFFF   ; 0x50 kernel data (SYSCALL SS)
    dq 0x00CFFA000000FFFF   ; 0x58 user 32-bit code (SYSRET CS, 32-bit)
    dq 0x00CFF2000000FFFF   ; 0x60 user data (SYSRET SS)
    dq 0x00AFFA000000FFFF   ; 0x68 user 64-bit code (SYSRETQ CS)
pgdt_end:
align 8
pgdt_ptr:
    dw pgdt_end - pgdt - 1
    dq 0x6000
"""


def to_user(label, rflags=0x202, cs=0x2B, ss=0x33, rsp=USER_RSP):
    """IRETQ from the kernel to `label` in user mode."""
    return f"""
    push {ss:#x}
    push {rsp:#x}
    push {rflags:#x}
    push {cs:#x}
    push {label}
    iretq
"""


def priv64(kernel, user, kstack_user=True, dpl3=(0x80,), ist=None, cr4=0, pre=""):
    """A long-mode body: the setup above, `pre`, CR4 |= cr4, then `kernel` (CPL 0), the stubs
    and `user`."""
    setup, stubs = idt64(dpl3=dpl3, ist=ist)
    kstack = "".join(f"    or byte [0x13000 + {p:#x}*8], 4\n"
                     for p in (0x6F, 0x73, 0x75)) if kstack_user else ""
    cr4_code = f"""
    mov rax, cr4
    or rax, {cr4:#x}
    mov cr4, rax
""" if cr4 else ""
    return r"""
body:
    mov rsi, pgdt
    mov edi, 0x6000
    mov ecx, pgdt_end - pgdt
    rep movsb
    lgdt [pgdt_ptr]
    push 0x18
    push .reload
    retfq
.reload:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov qword [0x7004], 0x70008         ; RSP0
    mov qword [0x7024], 0x74000         ; IST1
    mov qword [0x702C], 0x76000         ; IST2
    mov word [0x7066], 0x68             ; I/O bitmap at TSS+0x68, ports 0..0x3FF
    mov edi, 0x7068
    mov ecx, 0x81
    mov al, 0xFF
    rep stosb
    and byte [0x7068 + 0x3F8/8], 0xFE   ; only port 0x3F8 is allowed
    mov ax, 0x38
    ltr ax
    mov edi, 0x13000
    mov eax, 3
    mov ecx, 512
.pt:
    mov [rdi], rax
    add rax, 0x1000
    add rdi, 8
    loop .pt
    or byte [0x13000 + 0x60*8], 4       ; user stack
    or byte [0x13000 + 0x61*8], 4       ; user data
    mov qword [0x13000 + 0x62*8], 0x62005   ; user read-only
""" + kstack + r"""
    mov eax, user_code
    shr eax, 12
    mov ecx, user_code_end - 1
    shr ecx, 12
.user_pages:
    or byte [0x13000 + rax*8], 4
    inc eax
    cmp eax, ecx
    jbe .user_pages
    mov qword [0x10000], 0x11007
    mov qword [0x11000], 0x12007
    mov qword [0x12000], 0x13007
    mov rax, cr3
    mov cr3, rax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x801                       ; EFER.NXE, EFER.SCE
    wrmsr
""" + pre + cr4_code + setup + kernel + "\n    hlt\n" + stubs + GDT64 + r"""
align 4096
user_code:
""" + user + r"""
align 4096
user_code_end:
"""


@functools.lru_cache(maxsize=None)
def run(body, mode="long"):
    cpu, reason, serial = boot(body, mode)
    return cpu, reason, serial, labels(body, mode)


def cases(items, kernel_prefix="", rflags=0x202):
    """Kernel and user code for a list of (name, user code) run one after another.

    Each case enters user mode at u_<name>; when the user code does not fault
    it ends with int 0x80 (a DPL 3 gate).  Either way the stub resumes the
    kernel at the next case.  The label f_<name> marks the case's last
    instruction (the one expected to fault).
    """
    kernel, user = [kernel_prefix], []
    for name, code in items:
        kernel.append(f"    mov qword [0x2FFF8], k_{name}\n" + to_user(f"u_{name}", rflags)
                      + f"k_{name}:\n")
        lines = code.strip("\n").split("\n")
        lines.insert(len(lines) - 1, f"f_{name}:")
        user.append(f"u_{name}:\n" + "\n".join(lines) + "\n    int 0x80\n")
    return "".join(kernel), "".join(user)


def u64(cpu, addr):
    return cpu.mem.read(addr, 8)


# ---------------------------------------------------------------------------- IRETQ, RSP0, IST

USER_ENTRY = r"""
    mov rax, 0x1234
    mov [0x61000], cs
    mov [0x61002], ss
    mov [0x61004], ds
    mov [0x61008], rsp
    pushfq
    pop qword [0x61010]
    mov rbx, 0x5678
    int 0x80
u_after_int:
"""

IRETQ_KERNEL = "    mov qword [0x2FFF8], k_done\n" + to_user("u_entry") + "k_done:\n"


def iretq_body(kstack_user):
    return priv64(IRETQ_KERNEL, "u_entry:\n" + USER_ENTRY + "    jmp $\n", kstack_user)


def test_iretq_enters_user_mode_and_int_returns_through_rsp0():
    cpu, reason, _, lab = run(iretq_body(kstack_user=True))
    assert reason == "hlt"
    # what the user code saw: CS 0x2B, SS 0x33, DS nulled (DPL 0 < CPL 3), RSP, RFLAGS
    assert cpu.mem.read(USER_DATA, 2) == 0x2B
    assert cpu.mem.read(USER_DATA + 2, 2) == 0x33
    assert cpu.mem.read(USER_DATA + 4, 2) == 0
    assert u64(cpu, USER_DATA + 8) == USER_RSP
    assert u64(cpu, USER_DATA + 16) == 0x202
    (rec,) = records(cpu)
    assert rec["vector"] == 0x80
    assert rec["rip"] == lab["u_after_int"]
    assert (rec["cs"], rec["rflags"], rec["rsp"], rec["ss"]) == (0x2B, 0x202, USER_RSP, 0x33)
    # RSP0 = 0x70008 is aligned down to 0x70000; five quadwords pushed
    assert rec["frame"] == RSP0_TOP - 40
    assert rec["handler_ss"] == 0                 # SS = null selector at the new CPL 0
    assert (rec["rax"], rec["rbx"]) == (0x1234, 0x5678)
    assert cpu.cpl == 0


def test_interrupt_from_user_pushes_to_a_supervisor_only_rsp0_stack():
    # the frame pushes of a CPL 3 -> 0 transition are supervisor accesses
    cpu, reason, _, lab = run(iretq_body(kstack_user=False))
    assert reason == "hlt", cpu.triple_fault_info
    (rec,) = records(cpu)
    assert (rec["vector"], rec["rip"], rec["cs"], rec["ss"]) == (0x80, lab["u_after_int"], 0x2B, 0x33)
    assert rec["frame"] == RSP0_TOP - 40


IST_USER = r"""
u_ist:
    int 0x41
u_ist_after:
    int 0x80
u_gp:
    hlt
"""
IST_KERNEL = r"""
    mov qword [0x2FFF8], k_1
    mov rsp, 0x7FF08
    int 0x41                    ; IST1 from CPL 0
k_1:
    mov qword [0x2FFF8], k_2
""" + to_user("u_ist") + r"""
k_2:
    mov qword [0x2FFF8], k_3
""" + to_user("u_gp") + r"""
k_3:
"""


def test_ist_stacks():
    body = priv64(IST_KERNEL, IST_USER, dpl3=(0x80, 0x41), ist={0x41: 1, 13: 2})
    cpu, reason, _, lab = run(body)
    assert reason == "hlt"
    r = records(cpu)
    assert [(x["vector"], x["error"]) for x in r] == [(0x41, 0), (0x41, 0), (13, 0)]
    # from CPL 0: IST1 although there is no privilege change; SS and RSP pushed as they were
    assert r[0]["frame"] == IST1_TOP - 40
    assert (r[0]["ss"], r[0]["rsp"], r[0]["cs"]) == (0x10, 0x7FF08, 0x18)
    assert r[0]["rip"] == lab["k_1"]
    assert r[0]["handler_ss"] == 0x10
    # from CPL 3: IST1 rather than RSP0
    assert r[1]["frame"] == IST1_TOP - 40
    assert (r[1]["cs"], r[1]["ss"], r[1]["rsp"], r[1]["rip"]) == (0x2B, 0x33, USER_RSP,
                                                                   lab["u_ist_after"])
    assert r[1]["handler_ss"] == 0
    # #GP with an error code on IST2: six quadwords pushed, the stub popped the error code
    assert r[2]["frame"] == IST2_TOP - 40
    assert (r[2]["rip"], r[2]["cs"]) == (lab["u_gp"], 0x2B)


# ---------------------------------------------------------------------------- privileged instructions

PRIVILEGED = [
    ("hlt", "    hlt"),
    ("rd_cr0", "    mov rax, cr0"),
    ("wr_cr0", "    mov cr0, rax"),
    ("wr_cr3", "    mov cr3, rax"),
    ("wr_cr4", "    mov cr4, rax"),
    ("rd_cr2", "    mov rax, cr2"),
    ("wr_dr7", "    mov dr7, rax"),
    ("wrmsr", "    mov ecx, 0xC0000080\n    wrmsr"),
    ("rdmsr", "    mov ecx, 0xC0000080\n    rdmsr"),
    ("cli", "    cli"),
    ("sti", "    sti"),
    ("lgdt", "    lgdt [0x61000]"),
    ("lidt", "    lidt [0x61000]"),
    ("ltr", "    mov ax, 0x38\n    ltr ax"),
    ("lldt", "    xor eax, eax\n    lldt ax"),
    ("invlpg", "    invlpg [0x61000]"),
    ("clts", "    clts"),
    ("wbinvd", "    wbinvd"),
    ("swapgs", "    swapgs"),
    ("in", "    in al, 0x80"),
    ("out", "    out 0x80, al"),
]


def privileged_body():
    items = [(n, c) for n, c in PRIVILEGED] + [
        ("int_dpl0", "    int 0x41"),
        ("int3_dpl0", "    int3"),
        ("popf", r"""
    push 0x3002                 ; IOPL 3, IF 0: ignored at CPL 3 with IOPL 0
    popfq
    pushfq
    pop qword [0x61100]""")]
    kernel, user = cases(items)
    # IOPL 3: cli/sti and port I/O are allowed, hlt still is not
    kernel += "    mov qword [0x2FFF8], k_iopl3\n" + to_user("u_iopl3", 0x3202) + "k_iopl3:\n"
    user += r"""
u_iopl3:
    cli
    pushfq
    pop qword [0x61108]
    sti
    in al, 0x80
    out 0x80, al
    pushfq
    pop qword [0x61110]
u_iopl3_hlt:
    hlt
"""
    return priv64(kernel, user)


def test_privileged_instructions_raise_gp_at_cpl3():
    cpu, reason, _, lab = run(privileged_body())
    assert reason == "hlt"
    r = records(cpu)
    assert len(r) == len(PRIVILEGED) + 4
    got = [(name, x["vector"], x["error"], x["cs"], x["rip"]) for (name, _), x in zip(PRIVILEGED, r)]
    assert got == [(name, 13, 0, 0x2B, lab[f"f_{name}"]) for name, _ in PRIVILEGED]
    assert cpu.efer & 0x801 == 0x801 and cpu.cr0 & 0x80000001 == 0x80000001


def test_int_n_through_a_dpl0_gate_from_cpl3_is_gp():
    cpu, reason, _, lab = run(privileged_body())
    r = records(cpu)[len(PRIVILEGED):]
    # error code: IDT index * 8 + 2 (IDT bit), EXT = 0
    assert (r[0]["vector"], r[0]["error"], r[0]["rip"]) == (13, 0x41 * 8 + 2, lab["u_int_dpl0"])
    assert (r[1]["vector"], r[1]["error"], r[1]["rip"]) == (13, 3 * 8 + 2, lab["u_int3_dpl0"])


def test_popf_at_cpl3_keeps_iopl_and_if():
    cpu, reason, _, lab = run(privileged_body())
    r = records(cpu)[len(PRIVILEGED) + 2]
    assert r["vector"] == 0x80
    assert u64(cpu, USER_DATA + 0x100) == 0x202


def test_iopl3_allows_cli_sti_and_port_io_at_cpl3():
    cpu, reason, _, lab = run(privileged_body())
    r = records(cpu)[-1]
    assert u64(cpu, USER_DATA + 0x108) == 0x3002
    assert u64(cpu, USER_DATA + 0x110) == 0x3202
    assert (r["vector"], r["error"], r["rip"], r["rflags"]) == (13, 0, lab["u_iopl3_hlt"], 0x3202)


# ---------------------------------------------------------------------------- I/O permission bitmap

IO_CASES = [
    ("out_ok", r"""
    mov dx, 0x3F8
    mov al, 'A'
    out dx, al
    in al, dx
    mov [0x61000], al
    mov rsi, u_msg
    outsb"""),
    ("out_3f9", "    mov dx, 0x3F9\n    out dx, al"),
    ("in_word_3f7", "    mov dx, 0x3F7\n    in ax, dx"),
    ("out_word_3f8", "    mov dx, 0x3F8\n    out dx, ax"),
    ("in_400", "    mov dx, 0x400\n    in al, dx"),
    ("in_imm", "    in al, 0x40"),
]


def test_io_bitmap_allows_and_denies_ports_at_cpl3():
    kernel, user = cases(IO_CASES)
    cpu, reason, serial, lab = run(priv64(kernel, user + "u_msg: db 'B'\n"))
    assert reason == "hlt"
    r = records(cpu)
    assert [(x["vector"], x["error"]) for x in r] == [(0x80, 0)] + [(13, 0)] * 5
    assert serial == b"AB"
    assert cpu.mem.read(USER_DATA, 1) == 0xFF
    for (name, _), rec in zip(IO_CASES[1:], r[1:]):
        assert rec["cs"] == 0x2B
        assert rec["rip"] == lab[f"f_{name}"], name


# ---------------------------------------------------------------------------- SYSCALL / SYSRET

SYSCALL_MSRS = r"""
    mov ecx, 0xC0000081         ; STAR: SYSCALL CS 0x48, SYSRET base 0x58
    mov edx, 0x00580048
    xor eax, eax
    wrmsr
    mov ecx, 0xC0000082         ; LSTAR
    mov rax, k_syscall
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xC0000083         ; CSTAR
    mov rax, k_syscall_compat
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xC0000084         ; SFMASK: TF, IF, DF
    mov eax, 0x700
    xor edx, edx
    wrmsr
"""

SYSCALL_KERNEL = SYSCALL_MSRS + "    mov qword [0x2FFF8], k_end\n" + to_user("u_sys") + r"""
k_syscall:
    pushfq                          ; (on the user stack: SYSCALL does not switch stacks)
    cmp rax, 2
    je k_end
    mov rdi, rax
    shl rdi, 6
    add rdi, 0x31000                ; 0x31040 for the first call, 0x310C0 for the second
    mov [rdi], rcx
    mov [rdi+8], r11
    pop qword [rdi+0x10]
    mov [rdi+0x18], cs
    mov [rdi+0x1A], ss
    mov [rdi+0x20], rsp
    mov rbx, 0x5555
    cmp rax, 3
    je .compat
    o64 sysret
.compat:
    mov ecx, u_compat
    o32 sysret
k_syscall_compat:
    mov [0x31100], rcx
    mov [0x31108], r11
    mov [0x31110], cs
    jmp k_end
k_end:
"""

SYSCALL_USER = r"""
u_sys:
    stc
    std
    mov rax, 1
    syscall
u_sys_ret:
    pushfq
    pop qword [0x61100]
    mov [0x61108], cs
    mov [0x6110A], ss
    mov [0x61110], rsp
    mov [0x61118], rbx
    cld
    clc
    mov rax, 3
    syscall                     ; returns to compatibility mode at u_compat
u_sys_ret2:
    jmp $
bits 32
u_compat:
    mov eax, 0x63               ; DS was nulled by the IRETQ to CPL 3
    mov ds, eax
    mov [0x61200], cs
    mov [0x61202], ss
    mov [0x61208], esp
    pushfd
    pop dword [0x61210]
    syscall                     ; from compatibility mode: CSTAR
u_compat_ret:
    jmp $
bits 64
"""


def syscall_run():
    return run(priv64(SYSCALL_KERNEL, SYSCALL_USER))


def test_syscall_and_sysretq_round_trip():
    cpu, reason, _, lab = syscall_run()
    assert reason == "hlt"
    assert records(cpu) == []
    # in the kernel: RCX = return RIP, R11 = RFLAGS (CF, IF, DF), RFLAGS masked by SFMASK
    k = KDATA + 0x40
    assert u64(cpu, k) == lab["u_sys_ret"]
    assert u64(cpu, k + 8) == 0x603
    assert u64(cpu, k + 0x10) == 0x003
    assert cpu.mem.read(k + 0x18, 2) == 0x48
    assert cpu.mem.read(k + 0x1A, 2) == 0x50
    assert u64(cpu, k + 0x20) == USER_RSP               # SYSCALL does not switch stacks
    # back in user mode: CS = STAR[63:48] + 16 | 3, SS = STAR[63:48] + 8 | 3, RFLAGS = R11
    assert u64(cpu, USER_DATA + 0x100) == 0x603
    assert cpu.mem.read(USER_DATA + 0x108, 2) == 0x6B
    assert cpu.mem.read(USER_DATA + 0x10A, 2) == 0x63
    assert u64(cpu, USER_DATA + 0x110) == USER_RSP
    assert u64(cpu, USER_DATA + 0x118) == 0x5555


def test_sysretd_to_compatibility_mode_and_syscall_through_cstar():
    cpu, reason, _, lab = syscall_run()
    assert reason == "hlt"
    assert cpu.mem.read(USER_DATA + 0x200, 2) == 0x5B      # STAR[63:48] | 3
    assert cpu.mem.read(USER_DATA + 0x202, 2) == 0x63
    assert cpu.mem.read(USER_DATA + 0x208, 4) == USER_RSP
    assert cpu.mem.read(USER_DATA + 0x210, 4) == 0x202    # R11 of the second syscall
    assert u64(cpu, KDATA + 0xC0) == lab["u_sys_ret2"]
    assert u64(cpu, KDATA + 0x100) == lab["u_compat_ret"]
    assert u64(cpu, KDATA + 0x108) == 0x202
    assert cpu.mem.read(KDATA + 0x110, 2) == 0x48
    assert cpu.cpl == 0 and cpu.mode.bits == 64


# ---------------------------------------------------------------------------- user/supervisor pages

PAGE_CASES = [
    ("read_sup", "    mov rax, [0x30000]"),
    ("write_sup", "    mov qword [0x30008], 1"),
    ("write_ro", "    mov qword [0x62000], 1"),
    ("read_ro", "    mov rax, [0x62000]"),
    ("fetch_sup", "    mov rax, k_func\n    jmp rax"),
    ("read_np", "    mov rax, [0x63000]"),
    ("write_np", "    mov qword [0x63010], 1"),
    ("fetch_nx", "    mov rax, 0x64000\n    call rax"),
    ("read_rsvd", "    mov rax, [0x65008]"),
]

PAGE_SETUP = r"""
    mov qword [0x13000 + 0x63*8], 0                 ; not present
    mov rax, 0x8000000000064007                     ; user, NX
    mov [0x13000 + 0x64*8], rax
    mov rax, 0x0000200000065007                     ; bit 45: reserved with 40-bit addresses
    mov [0x13000 + 0x65*8], rax
    mov rax, cr3
    mov cr3, rax
"""


def test_user_accesses_to_supervisor_and_protected_pages():
    kernel, user = cases(PAGE_CASES, PAGE_SETUP)
    body = priv64(kernel + "    hlt\nk_func:\n    hlt\n", user)
    cpu, reason, _, lab = run(body)
    assert reason == "hlt"
    got = [(x["vector"], x["error"], x["cr2"]) for x in records(cpu)]
    assert got == [
        (14, 0x5, 0x30000),             # P | U
        (14, 0x7, 0x30008),             # P | W | U
        (14, 0x7, 0x62000),
        (0x80, 0, 0x62000),             # read of a read-only user page: fine (CR2 unchanged)
        (14, 0x15, lab["k_func"]),      # P | U | I/D
        (14, 0x4, 0x63000),             # U
        (14, 0x6, 0x63010),             # W | U
        (14, 0x15, 0x64000),
        (14, 0xD, 0x65008),             # P | U | RSVD
    ]
    r = records(cpu)
    assert r[4]["rip"] == lab["k_func"]
    assert r[7]["rip"] == 0x64000
    assert r[0]["rip"] == lab["u_read_sup"] and r[0]["cs"] == 0x2B


# ---------------------------------------------------------------------------- SMEP and SMAP

SMEP_SMAP_KERNEL = r"""
    mov qword [0x2FFF8], k_1
    call u_func                     ; SMEP: supervisor fetch from a user page
k_1:
    mov qword [0x2FFF8], k_2
f_read:
    mov rax, [0x61000]              ; SMAP read
k_2:
    mov qword [0x2FFF8], k_3
f_write:
    mov qword [0x61008], 2          ; SMAP write
k_3:
    mov qword [0x2FFF8], k_4
    pushfq
    or dword [rsp], 0x40000         ; EFLAGS.AC
    popfq
    mov rax, [0x61000]              ; allowed with AC = 1
    mov [0x31000], rax
    mov qword [0x61010], 3
k_4:
"""


def test_smep_and_smap_faults():
    body = priv64(SMEP_SMAP_KERNEL, "u_func:\n    ret\n", cr4=(1 << 20) | (1 << 21),
                  pre="    mov qword [0x61000], 0x1111\n")
    cpu, reason, _, lab = run(body)
    assert reason == "hlt"
    r = records(cpu)
    assert [(x["vector"], x["error"], x["cr2"]) for x in r] == [
        (14, 0x11, lab["u_func"]),       # P | I/D
        (14, 0x1, USER_DATA),            # P
        (14, 0x3, USER_DATA + 8),        # P | W
    ]
    assert r[0]["rip"] == lab["u_func"] and r[0]["cs"] == 0x18
    assert r[1]["rip"] == lab["f_read"] and r[2]["rip"] == lab["f_write"]
    assert u64(cpu, KDATA) == 0x1111
    assert u64(cpu, USER_DATA + 8) == 0
    assert u64(cpu, USER_DATA + 0x10) == 3


SMAP_AC_AGAIN = r"""
    mov qword [0x2FFF8], k_1
    pushfq
    or dword [rsp], 0x40000
    popfq
    mov rax, [0x61000]              ; allowed with AC = 1 ...
    pushfq
    and dword [rsp], ~0x40000
    popfq
    mov rax, [0x61000]              ; ... but not any more with AC = 0
    mov qword [0x31000], 1
k_1:
"""


def test_smap_checks_eflags_ac_on_every_access():
    cpu, reason, _, lab = run(priv64(SMAP_AC_AGAIN, "", cr4=1 << 21))
    assert reason == "hlt"
    assert [(x["vector"], x["error"], x["cr2"]) for x in records(cpu)] == [(14, 0x1, USER_DATA)]
    assert u64(cpu, KDATA) == 0


STAC_CLAC = r"""
    mov qword [0x2FFF8], k_1
    stac
    mov rax, [0x61000]
    mov [0x31000], rax
    clac
    mov rax, [0x61008]
    mov qword [0x31008], 1
k_1:
"""


def test_stac_and_clac_toggle_smap():
    cpu, reason, _, lab = run(priv64(STAC_CLAC, "", cr4=1 << 21,
                                     pre="    mov qword [0x61000], 0x77\n"))
    assert reason == "hlt"
    assert [(x["vector"], x["error"], x["cr2"]) for x in records(cpu)] == [
        (14, 0x1, USER_DATA + 8)]
    assert u64(cpu, KDATA) == 0x77
    assert u64(cpu, KDATA + 8) == 0


# ============================================================================ 32-bit protected mode

GDT32 = r"""
align 8
pgdt:
    dq 0
    dq 0x00CF9A000000FFFF   ; 0x08 kernel code
    dq 0x00CF92000000FFFF   ; 0x10 kernel data
    dq 0x00CFFA000000FFFF   ; 0x18 user code
    dq 0x00CFF2000000FFFF   ; 0x20 user data
    dw 0x67, 0x7000         ; 0x28 32-bit TSS at 0x7000
    db 0, 0x89, 0, 0
%macro GATE 3               ; target, DPL, parameter count
    dw ((%1 - $$ + 0xF0000) & 0xFFFF), 0x08
    db %3, 0x8C | (%2 << 5)
    dw ((%1 - $$ + 0xF0000) >> 16)
%endmacro
    GATE k_gate0, 3, 0      ; 0x30
    GATE k_gate2, 3, 2      ; 0x38
    GATE k_finish, 3, 0     ; 0x40
    GATE k_gate0, 0, 0      ; 0x48: DPL 0
    ; descriptors for LAR/LSL/VERR/VERW (never loaded, so never "accessed")
    dq 0x1240F23456781234   ; 0x50 data RW, DPL 3, byte granular, base 0x12345678 limit 0x1234
    dq 0x00C098000000FFFF   ; 0x58 code execute-only, DPL 0, 4 KiB granular, limit 0xFFFF
    dq 0x00409E000000FFFF   ; 0x60 code conforming readable, DPL 0
    dq 0x004092000000FFFF   ; 0x68 data RW, DPL 0
    dq 0x00008200800000FF   ; 0x70 LDT, base 0x8000 limit 0xFF
    dq 0x004012000000FFFF   ; 0x78 data RW, DPL 0, not present
    dq 0x004090000000FFFF   ; 0x80 data read-only, DPL 0
    dq 0x00409A000000FFFF   ; 0x88 code readable, DPL 0
pgdt_end:
align 8
pgdt_ptr:
    dw pgdt_end - pgdt - 1
    dd 0x6000
"""

PM_SETUP = r"""
body:
    mov esi, pgdt
    mov edi, 0x6000
    mov ecx, pgdt_end - pgdt
    rep movsb
    lgdt [pgdt_ptr]
    jmp 0x08:.reload
.reload:
"""


def to_user32(label, eflags=0x202):
    return f"""
    push 0x23
    push {USER_RSP:#x}
    push {eflags:#x}
    push 0x1B
    push {label}
    iretd
"""


SEG_QUERIES = r"""
%macro Q 3                  ; instruction, selector, result slot
    mov eax, 0xDEADBEEF
    mov ecx, %2
    %1 eax, ecx
    setz bl
    mov [0x31000 + 8*%3], eax
    mov [0x31004 + 8*%3], bl
%endmacro
%macro V 3
    mov ecx, %2
    %1 cx
    setz bl
    mov [0x31000 + 8*%3], bl
%endmacro
    Q lar, 0x50, 0
    Q lsl, 0x50, 1
    Q lar, 0x53, 2              ; RPL 3 to a DPL 3 segment: fine
    Q lar, 0x58, 3
    Q lsl, 0x58, 4
    Q lar, 0x63, 5              ; conforming code: no privilege check
    Q lar, 0x6B, 6              ; RPL 3 > DPL 0: fails, EAX unchanged
    Q lar, 0x68, 7
    Q lar, 0x70, 8              ; LDT: valid for LAR and LSL
    Q lsl, 0x70, 9
    Q lar, 0x48, 10             ; call gate: valid for LAR only
    Q lsl, 0x48, 11
    Q lar, 0x78, 12             ; not present: LAR does not check P
    Q lsl, 0x78, 13
    Q lar, 0, 14                ; null selector
    Q lar, 0x1F8, 15            ; beyond the GDT limit
    Q lar, 0x28, 16             ; available 32-bit TSS
    V verr, 0x50, 20            ; data: readable and writable
    V verw, 0x50, 21
    V verr, 0x58, 22            ; execute-only code: neither
    V verw, 0x58, 23
    V verr, 0x88, 24            ; readable code: readable, not writable
    V verw, 0x88, 25
    V verr, 0x80, 26            ; read-only data
    V verw, 0x80, 27
    V verr, 0x6B, 28            ; RPL 3 > DPL 0
    V verr, 0x70, 29            ; system descriptor
    V verw, 0x48, 30
    V verr, 0x63, 31            ; conforming readable code, RPL 3
    ; ARPL
    mov ax, 0x0008
    mov bx, 0x0003
    arpl ax, bx                 ; RPL 0 < 3: raised, ZF = 1
    setz cl
    mov [0x31100], ax
    mov [0x31102], cl
    mov bx, 0x0001
    arpl ax, bx                 ; RPL 3 >= 1: unchanged, ZF = 0
    setz cl
    mov [0x31104], ax
    mov [0x31106], cl
    mov word [0x31108], 0x0011
    mov bx, 0x0002
    arpl [0x31108], bx          ; memory operand: 0x11 -> 0x12
    setz cl
    mov [0x3110A], cl
"""


def test_lar_lsl_verr_verw_arpl():
    body = PM_SETUP + SEG_QUERIES + "    hlt\n" + GDT32 + "k_gate0:\nk_gate2:\nk_finish:\n"
    cpu, reason, _, _ = run(body, "protected")
    assert reason == "hlt"

    def q(slot):
        raw = cpu.mem.read(0x31000 + 8 * slot, 8)
        return raw & 0xFFFFFFFF, (raw >> 32) & 0xFF

    fail = (0xDEADBEEF, 0)
    assert q(0) == (0x0040F200, 1)          # type/S/DPL/P and AVL/L/D/G; limit 19:16 = 0
    assert q(1) == (0x1234, 1)
    assert q(2) == (0x0040F200, 1)
    assert q(3) == (0x00C09800, 1)
    assert q(4) == (0x0FFFFFFF, 1)          # limit 0xFFFF in 4 KiB units
    assert q(5) == (0x00409E00, 1)
    assert q(6) == fail
    assert q(7) == (0x00409200, 1)
    assert q(8) == (0x00008200, 1)
    assert q(9) == (0xFF, 1)
    assert q(10) == (0x00008C00, 1)
    assert q(11) == fail
    assert q(12) == (0x00401200, 1)
    assert q(13) == (0xFFFF, 1)
    assert q(14) == fail
    assert q(15) == fail
    assert q(16) == (0x00008900, 1)
    verify = [cpu.mem.read(0x31000 + 8 * s, 1) for s in range(20, 32)]
    assert verify == [1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]
    assert cpu.mem.read(0x31100, 2) == 0x000B and cpu.mem.read(0x31102, 1) == 1
    assert cpu.mem.read(0x31104, 2) == 0x000B and cpu.mem.read(0x31106, 1) == 0
    assert cpu.mem.read(0x31108, 2) == 0x0012 and cpu.mem.read(0x3110A, 1) == 1


GATE_KERNEL = r"""
    mov dword [0x7004], 0x70000     ; ESP0
    mov word [0x7008], 0x10         ; SS0
    mov ax, 0x28
    ltr ax
{idt}
    mov dword [0x2FFF8], k_1
""" + to_user32("u_start") + r"""
k_1:
    mov dword [0x2FFF8], k_2
""" + to_user32("u_hlt") + r"""
k_2:
    mov dword [0x2FFF8], k_3
""" + to_user32("u_finish") + r"""
k_3:
    hlt
%macro SAVE_FRAME 2         ; where, dwords of the stack
    mov [%1], esp
    mov [%1 + 4], cs
    mov [%1 + 6], ss
%assign i 0
%rep %2
    mov eax, [esp + 4*i]
    mov [%1 + 8 + 4*i], eax
%assign i i+1
%endrep
%endmacro
k_gate0:
    SAVE_FRAME 0x31000, 4
    retf
k_gate2:
    SAVE_FRAME 0x31040, 6
    retf 8
k_finish:
    mov [ss:0x31080], esp           ; DS is null here (IRETD to CPL 3 cleared it)
    hlt
"""

GATE_USER = r"""
u_start:
    mov ax, 0x23                    ; the IRETD to CPL 3 nulled DS
    mov ds, ax
    mov es, ax
    mov eax, 0x11
    call 0x30:0
u_back0:
    mov [0x61000], esp
    mov [0x61004], cs
    mov [0x61006], ss
%ifdef PARAMS
    push 0xAAAA
    push 0xBBBB
    call 0x38:0
u_back2:
    mov [0x61008], esp
%endif
    int 0x80
u_after_int:
    jmp $
u_hlt:
    hlt
u_finish:
    call 0x40:0
"""


PAGING32 = r"""
    mov edi, 0x41000                ; 32-bit paging: 4 KiB pages below 4 MiB, all user pages
    mov eax, 7                      ; but the ring-0 stack page 0x6F000
    mov ecx, 1024
.pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pt
    mov dword [0x41000 + 0x6F*4], 0x6F003
    mov dword [0x40000], 0x41007
    mov eax, 0x40000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


def gate_body(params=False, paging=False):
    """Ring 3 calls through gates; with params, also through the gate copying two dwords;
    with paging, under 32-bit paging with a supervisor-only ring-0 stack."""
    setup, stubs = idt32(dpl3=(0x80,))
    return (("%define PARAMS\n" if params else "") + PM_SETUP + (PAGING32 if paging else "")
            + GATE_KERNEL.replace("{idt}", setup) + stubs + GDT32 + GATE_USER)


def test_call_gate_to_ring0_switches_to_the_tss_stack():
    cpu, reason, _, lab = run(gate_body(), "protected")
    assert reason == "hlt"
    # in the ring-0 procedure: SS:ESP from the TSS, old SS, ESP, CS, EIP pushed
    assert cpu.mem.read(0x31000, 4) == RSP0_TOP - 16
    assert cpu.mem.read(0x31004, 2) == 0x08
    assert cpu.mem.read(0x31006, 2) == 0x10
    frame = [cpu.mem.read(0x31008 + 4 * i, 4) for i in range(4)]
    assert frame == [lab["u_back0"], 0x1B, USER_RSP, 0x23]
    # RETF back to ring 3
    assert cpu.mem.read(USER_DATA, 4) == USER_RSP
    assert cpu.mem.read(USER_DATA + 4, 2) == 0x1B
    assert cpu.mem.read(USER_DATA + 6, 2) == 0x23


def test_call_gate_copies_parameters_to_the_inner_stack():
    cpu, reason, _, lab = run(gate_body(params=True), "protected")
    assert reason == "hlt"
    assert cpu.mem.read(0x31040, 4) == RSP0_TOP - 24
    frame = [cpu.mem.read(0x31048 + 4 * i, 4) for i in range(6)]
    assert frame == [lab["u_back2"], 0x1B, 0xBBBB, 0xAAAA, USER_RSP - 8, 0x23]
    assert cpu.mem.read(USER_DATA + 8, 4) == USER_RSP        # RETF 8 released both copies


def test_call_gate_pushes_to_a_supervisor_only_ring0_stack_under_paging():
    # the pushes onto the inner stack are supervisor accesses (the new CPL is 0)
    cpu, reason, _, lab = run(gate_body(paging=True), "protected")
    assert reason == "hlt", cpu.triple_fault_info
    assert [(x["vector"], x["error"]) for x in records(cpu)] == [(0x80, 0), (13, 0)]
    frame = [cpu.mem.read(0x31008 + 4 * i, 4) for i in range(4)]
    assert frame == [lab["u_back0"], 0x1B, USER_RSP, 0x23]
    assert cpu.mem.read(0x31080, 4) == RSP0_TOP - 16


def test_interrupts_from_ring3_in_protected_mode_switch_to_ss0_esp0():
    cpu, reason, _, lab = run(gate_body(), "protected")
    assert reason == "hlt"
    r = records(cpu)
    assert [(x["vector"], x["error"]) for x in r] == [(0x80, 0), (13, 0)]
    assert (r[0]["rip"], r[0]["cs"], r[0]["rflags"], r[0]["rsp"], r[0]["ss"]) == (
        lab["u_after_int"], 0x1B, 0x202, USER_RSP, 0x23)
    assert r[0]["frame"] == RSP0_TOP - 20 and r[0]["handler_ss"] == 0x10
    assert (r[1]["rip"], r[1]["cs"], r[1]["ss"]) == (lab["u_hlt"], 0x1B, 0x23)
    assert r[1]["frame"] == RSP0_TOP - 20
    # the last call gate reaches k_finish on the TSS stack
    assert cpu.mem.read(0x31080, 4) == RSP0_TOP - 16
    assert cpu.cpl == 0


SYSENTER = r"""
    mov ecx, 0x174
    mov eax, 0x08
    xor edx, edx
    wrmsr
    mov ecx, 0x175
    mov eax, 0x70000
    wrmsr
    mov ecx, 0x176
    mov eax, k_sysenter
    wrmsr
""" + to_user32("u_start") + r"""
k_sysenter:
    lea edi, [eax*8]                ; (LEA leaves the flags alone)
    lea edi, [edi*2]
    mov [0x31000 + edi], esp
    mov [0x31004 + edi], cs
    mov [0x31006 + edi], ss
    pushfd
    pop dword [0x31008 + edi]
    cmp eax, 2
    je k_done
    mov ebx, 0x4444
    push 0x0846                     ; OF ZF PF: SYSEXIT keeps EFLAGS as they are
    popfd
    sysexit
k_done:
"""

SYSENTER_USER = r"""
u_start:
    mov ax, 0x23
    mov ds, ax
    mov eax, 1
    mov ecx, 0x60F00
    mov edx, u_back
    sysenter
u_back:
    mov [0x61000], esp
    mov [0x61004], cs
    mov [0x61006], ss
    mov [0x61008], ebx
    pushfd
    pop dword [0x6100C]
    mov eax, 2
    sysenter
"""


def test_sysenter_and_sysexit():
    body = PM_SETUP + SYSENTER + "    hlt\n" + GDT32 + SYSENTER_USER + \
        "k_gate0:\nk_gate2:\nk_finish:\n"
    cpu, reason, _, lab = run(body, "protected")
    assert reason == "hlt"
    # SYSENTER: CS = SYSENTER_CS, SS = +8, ESP/EIP from the MSRs, IF cleared
    assert cpu.mem.read(0x31010, 4) == 0x70000
    assert cpu.mem.read(0x31014, 2) == 0x08
    assert cpu.mem.read(0x31016, 2) == 0x10
    assert cpu.mem.read(0x31018, 4) == 0x002
    # SYSEXIT: CS = SYSENTER_CS + 16 | 3, SS = + 24 | 3, EIP = EDX, ESP = ECX
    assert cpu.mem.read(USER_DATA, 4) == 0x60F00
    assert cpu.mem.read(USER_DATA + 4, 2) == 0x1B
    assert cpu.mem.read(USER_DATA + 6, 2) == 0x23
    assert cpu.mem.read(USER_DATA + 8, 4) == 0x4444
    assert cpu.mem.read(USER_DATA + 12, 4) == 0x846
    # the second SYSENTER: the same fixed entry state; IF stays clear (SYSEXIT did not set it)
    assert cpu.mem.read(0x31020, 4) == 0x70000
    assert cpu.mem.read(0x31024, 2) == 0x08
    assert cpu.mem.read(0x31028, 4) == 0x846
    assert cpu.cpl == 0


RETURN_NULL_SS = r"""
    mov dword [0x7004], 0x70000
    mov word [0x7008], 0x10
    mov ax, 0x28
    ltr ax
{idt}
    mov dword [0x2FFF8], k_1
    push 0                          ; SS: null selector
    push 0x61000                    ; ESP
{eflags}
    push 0x1B                       ; CS: ring 3 code
    push u_never
f_ret:
    {insn}
k_1:
    hlt
"""


@pytest.mark.parametrize("insn", ["retf", "iretd"])
def test_return_to_ring3_with_a_null_ss_faults_before_loading_cs(insn):
    setup, stubs = idt32()
    code = (RETURN_NULL_SS.replace("{idt}", setup).replace("{insn}", insn)
            .replace("{eflags}", "    push 0x202" if insn == "iretd" else ""))
    body = PM_SETUP + code + stubs + GDT32 + r"""
u_never:
    hlt
k_gate0:
k_gate2:
k_finish:
"""
    cpu, reason, _, lab = run(body, "protected")
    assert reason == "hlt"
    (rec,) = records(cpu)
    # #GP(0) for the null SS; nothing changed yet: CS:EIP of the return at CPL 0, same stack
    assert (rec["vector"], rec["error"]) == (13, 0)
    assert (rec["rip"], rec["cs"]) == (lab["f_ret"], 0x08)
    pushed = 20 if insn == "iretd" else 16
    assert rec["frame"] == 0x80000 - pushed - 12
    assert rec["handler_ss"] == 0x10
    assert cpu.cpl == 0
