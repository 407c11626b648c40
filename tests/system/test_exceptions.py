"""Exceptions delivered through a 64-bit IDT: vectors, error codes, CR2, saved RIP; triple fault."""


from sysboot import boot, idt64_fill, stub_table

RESULTS = 0x30000
COUNT = 0x2FFF0
RESUME = 0x2FFF8

IDT_SETUP = """
    mov qword [0x2FFF0], 0
""" + idt64_fill(cs=0x18, base=0x20000) + """    lidt [idt_ptr]
"""

STUBS = r"""
isr_common:
    mov rbx, [0x2FFF0]
    shl rbx, 5
    add rbx, 0x30000
    pop rax
    mov [rbx], rax
    pop rax
    mov [rbx+8], rax
    mov rax, cr2
    mov [rbx+16], rax
    mov rax, [rsp]
    mov [rbx+24], rax
    inc qword [0x2FFF0]
    mov rsp, 0x80000
    jmp [0x2FFF8]
idt_ptr:
    dw 4095
    dq 0x20000
""" + stub_table("isr_common")


def results(cpu, n):
    out = []
    for i in range(n):
        raw = cpu.mem.read_bytes(RESULTS + 32 * i, 32)
        out.append(tuple(int.from_bytes(raw[j:j + 8], "little") for j in range(0, 32, 8)))
    return out


def case(label, code):
    return f"""
    mov qword [0x2FFF8], after_{label}
t_{label}:
{code}
after_{label}:
"""


BODY = "body:\n" + IDT_SETUP + r"""
    mov rax, cr0
    or eax, 0x10000             ; CR0.WP
    mov cr0, rax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800               ; EFER.NXE
    wrmsr
    and qword [0x12000 + 2*8], ~2           ; 0x400000: read-only
    mov rax, 1 << 51
    or [0x12000 + 3*8], rax                 ; 0x600000: reserved bit
    mov rax, 1 << 63
    or [0x12000 + 4*8], rax                 ; 0x800000: no-execute
    mov rax, cr3
    mov cr3, rax
""" + case("pf_read", "    mov rbx, 0xdead0000\n    mov rax, [rbx]") \
    + case("ud", "    ud2") \
    + case("de", "    xor edx, edx\n    xor ecx, ecx\n    div ecx") \
    + case("int80", "    int 0x80") \
    + case("gp_sel", "    mov ax, 0x1230\n    mov ds, ax") \
    + case("pf_ro", "    mov byte [0x400010], 1") \
    + case("pf_rsvd", "    mov al, [0x600020]") \
    + case("pf_nx", "    mov rax, 0x800000\n    call rax") \
    + case("gp_noncanon", "    mov rbx, 0x8000000000000000\n    mov rax, [rbx]") \
    + case("bp", "    int3") \
    + "    hlt\n" + STUBS


def test_vectors_error_codes_cr2_and_saved_rip():
    cpu, reason, _ = boot(BODY)
    assert reason == "hlt"
    got = results(cpu, cpu.mem.read(COUNT, 8))
    vectors = [(v, e) for v, e, _, _ in got]
    assert vectors == [(14, 0), (6, 0), (0, 0), (0x80, 0), (13, 0x1230), (14, 3), (14, 9),
                       (14, 0x11), (13, 0), (3, 0)]
    assert got[0][2] == 0xDEAD0000
    assert got[5][2] == 0x400010
    assert got[6][2] == 0x600020
    assert got[7][2] == 0x800000 and got[7][3] == 0x800000
    assert got[8][2] == 0x800000                # CR2 unchanged by #GP


def test_traps_return_after_the_instruction_and_faults_at_it():
    cpu, reason, _ = boot(BODY)
    got = results(cpu, 10)
    rip_pf, rip_ud, rip_int, rip_bp = got[0][3], got[1][3], got[3][3], got[9][3]
    # mov rax, [rbx] is 3 bytes; the saved RIP of #PF points at it, int 0x80's past it
    assert cpu.mem.read_bytes(rip_pf, 3) == bytes.fromhex("488b03")
    assert cpu.mem.read_bytes(rip_ud, 2) == bytes.fromhex("0f0b")
    assert cpu.mem.read_bytes(rip_int - 2, 2) == bytes.fromhex("cd80")
    assert cpu.mem.read_bytes(rip_bp - 1, 1) == bytes.fromhex("cc")


def test_triple_fault_ends_the_run():
    body = "body:\n    lidt [bad_idt]\n    int3\n    hlt\nbad_idt:\n    dw 0\n    dq 0\n"
    cpu, reason, _ = boot(body)
    assert reason == "triple-fault"
    assert "double fault" in cpu.triple_fault_info


def test_double_fault_is_delivered_for_two_contributory_faults():
    # #GP while delivering #GP (gate not present -> #NP is contributory too) gives #DF
    body = "body:\n" + IDT_SETUP + r"""
    mov qword [0x2FFF8], done
    mov byte [0x20000 + 13*16 + 5], 0x0E      ; #GP gate: not present
    mov ax, 0x1234
    mov ds, ax                                 ; #GP -> #NP(gate) -> #DF
done:
    hlt
""" + STUBS
    cpu, reason, _ = boot(body)
    assert reason == "hlt"
    got = results(cpu, cpu.mem.read(COUNT, 8))
    assert [(v, e) for v, e, _, _ in got] == [(8, 0)]
