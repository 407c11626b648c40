"""jmp/jcc/call/ret (with imm16)/loop/loope/loopne/jcxz/jecxz/jrcxz."""

import pytest

from conftest import ALIASES, CC, STACK, assert_flags, combo_flags, flags_value, labels, make_emu, run_code

BRANCH = """
    j{cc} {dist}taken
    mov al, 0
    jmp done
{pad}
taken:
    mov al, 1
done:
"""


@pytest.mark.parametrize("dist", ["short", "near"])
@pytest.mark.parametrize("cc", list(CC) + ["c", "z", "nle", "po", "nae"])
def test_jcc_all_flag_combinations(cc, dist):
    table = CC[ALIASES.get(cc, cc)]
    pad = "" if dist == "short" else "times 300 nop"
    src = BRANCH.format(cc=cc, dist=dist + " ", pad=pad)
    emu = make_emu(64)
    for i in range(32):
        run_code(src, regs={"rax": 0x55}, flags=combo_flags(i), emu=emu)
        assert emu.reg_read("al") == (table >> i) & 1, i
        assert emu.reg_read("rflags") & 0x8D5 == combo_flags(i) & 0x8D5


@pytest.mark.parametrize("mode", [16, 32])
@pytest.mark.parametrize("cc", ["e", "ne", "b", "g", "le", "p"])
def test_jcc_legacy_modes(cc, mode):
    table = CC[cc]
    src = BRANCH.format(cc=cc, dist="near ", pad="times 200 nop")
    emu = make_emu(mode)
    for i in (0, 3, 5, 10, 16, 21, 28, 31):
        run_code(src, mode=mode, regs={"eax": 0x55}, flags=combo_flags(i), emu=emu)
        assert emu.reg_read("al") == (table >> i) & 1, i


def test_jmp_forms():
    src = """
        jmp short a
        hlt
    a:  lea rbx, [rel b]
        jmp rbx
        hlt
    b:  jmp [rel ptr]
        hlt
    ptr: dq c
    c:  mov rax, 7
        jmp near d
        times 200 db 0xf4
    d:  mov rcx, 9
    """
    emu = run_code(src)
    assert emu.reg_read("rax") == 7
    assert emu.reg_read("rcx") == 9


def test_backward_jump_loop():
    emu = run_code("xor eax, eax\nl: inc eax\ncmp eax, 100\njne l")
    assert emu.reg_read("rax") == 100


def test_call_ret():
    src = """
        call f
        mov rbx, rax
        call [rel fptr]
        lea rdx, [rel f]
        call rdx
    r3: jmp end
    f:  add rax, 1
        mov rcx, [rsp]
        ret
    fptr: dq f
    end:
    """
    lab = labels(src)
    emu = run_code(src, regs={"rax": 10})
    assert emu.reg_read("rbx") == 11
    assert emu.reg_read("rax") == 13
    assert emu.reg_read("rsp") == STACK
    assert emu.reg_read("rcx") == lab["r3"]  # return address of the last call


def test_ret_imm16():
    src = """
        push 1
        push 2
        call f
        jmp end
    f:  mov rax, [rsp+8]
        ret 16
    end:
    """
    emu = run_code(src)
    assert emu.reg_read("rax") == 2
    assert emu.reg_read("rsp") == STACK


def test_recursive_calls():
    src = """
        mov rdi, 10
        call fact
        jmp end
    fact:
        cmp rdi, 1
        jbe .one
        push rdi
        dec rdi
        call fact
        pop rdi
        imul rax, rdi
        ret
    .one:
        mov eax, 1
        ret
    end:
    """
    emu = run_code(src)
    assert emu.reg_read("rax") == 3628800
    assert emu.reg_read("rsp") == STACK


@pytest.mark.parametrize("mode", [16, 32])
def test_call_ret_legacy_modes(mode):
    src = """
        push ax
        call f
    r:  jmp end
    f:  mov eax, esp
        mov bx, [esp]
        ret 2
    end:
    """
    if mode == 16:
        src = src.replace("mov bx, [esp]", "mov bp, sp\nmov bx, [bp]")
    emu = run_code(src, mode=mode)
    w = 2 if mode == 16 else 4
    assert emu.reg_read("eax") & 0xFFFF == STACK - 2 - w
    assert emu.reg_read("bx") == labels(src, mode)["r"]          # return address on the stack
    assert emu.reg_read("esp") & 0xFFFF == STACK                # ret 2 also dropped the pushed word


def test_loop():
    emu = run_code("mov eax, 0\nl: lea eax, [eax+3]\nloop l", regs={"rcx": 5}, flags=flags_value("ZF CF"))
    assert emu.reg_read("rax") == 15
    assert emu.reg_read("rcx") == 0
    assert_flags(emu, {"ZF": 1, "CF": 1})     # LOOP does not change flags


def test_loop_rcx_is_64bit():
    emu = run_code("l: dec rax\nloop l", regs={"rcx": 0x1_0000_0001, "rax": 0}, count=4)
    assert emu.reg_read("rcx") == 0x1_0000_0000 - 1


def test_loop_address_size_32_uses_ecx():
    src = "l: inc eax\na32 loop l"
    emu = run_code(src, regs={"rcx": 0x1_0000_0003, "rax": 0})
    assert emu.reg_read("eax") == 3
    assert emu.reg_read("ecx") == 0


@pytest.mark.parametrize("insn,rcx,zf_seq,iters", [
    # body sets ZF from (eax == rdx); rdx is constant
    ("loope", 10, "eq", 10),
    ("loope", 10, "ne", 1),
    ("loopne", 10, "ne", 10),
    ("loopne", 10, "eq", 1),
])
def test_loope_loopne(insn, rcx, zf_seq, iters):
    src = f"l: inc eax\ncmp ebx, edx\n{insn} l"
    emu = run_code(src, regs={"rcx": rcx, "rax": 0, "rbx": 1, "rdx": 1 if zf_seq == "eq" else 2})
    assert emu.reg_read("eax") == iters
    assert emu.reg_read("rcx") == rcx - iters


def test_loope_stops_on_condition_change():
    src = "l: inc eax\ncmp eax, 4\nloopne l"
    emu = run_code(src, regs={"rcx": 100, "rax": 0})
    assert emu.reg_read("eax") == 4
    assert emu.reg_read("rcx") == 96


@pytest.mark.parametrize("mode,insn,reg,val,taken", [
    (64, "jrcxz", "rcx", 0, 1),
    (64, "jrcxz", "rcx", 0x1_0000_0000, 0),
    (64, "jecxz", "rcx", 0x1_0000_0000, 1),
    (64, "jecxz", "rcx", 1, 0),
    (32, "jecxz", "ecx", 0, 1),
    (32, "jecxz", "ecx", 0x10000, 0),
    (32, "jcxz", "ecx", 0x10000, 1),
    (16, "jcxz", "ecx", 0x10000, 1),
    (16, "jcxz", "ecx", 1, 0),
    (16, "jecxz", "ecx", 0x10000, 0),
])
def test_jcxz_family(mode, insn, reg, val, taken):
    src = f"{insn} t\nmov al, 0\njmp e\nt: mov al, 1\ne:"
    emu = run_code(src, mode=mode, regs={reg: val, "eax": 0x55})
    assert emu.reg_read("al") == taken


def test_loop_16bit_mode_uses_cx():
    emu = run_code("l: inc ax\nloop l", mode=16, regs={"ecx": 0x10003, "eax": 0})
    assert emu.reg_read("ax") == 3
    assert emu.reg_read("ecx") == 0x10000


def test_call_rel32_far_and_indirect_memory_32bit():
    src = "call [ptr]\njmp end\nptr: dd f\nf: mov eax, 5\nret\nend:"
    emu = run_code(src, mode=32)
    assert emu.reg_read("eax") == 5
    assert emu.reg_read("esp") == STACK


def test_jmp_table_indirect_indexed():
    src = """
        lea rbx, [rel table]
        jmp [rbx+rcx*8]
    table: dq t0, t1, t2
    t0: mov eax, 100
        jmp e
    t1: mov eax, 101
        jmp e
    t2: mov eax, 102
    e:
    """
    for i in range(3):
        emu = run_code(src, regs={"rcx": i})
        assert emu.reg_read("eax") == 100 + i
