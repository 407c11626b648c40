"""push/pop/pushf/popf/enter/leave in 64-, 32- and 16-bit code."""

import pytest

from conftest import DATA, STACK, assert_flags, flags_value, run_code


def q(v):
    return v.to_bytes(8, "little")


def test_push_pop_64():
    src = """
        push rax
        push r15
        push -2             ; imm8, sign-extended to 64 bits
        push 0x12345678     ; imm32
        push -0x12345678
        pop rbx
        pop rcx
        pop rdx
        pop r8
        pop r9
    """
    emu = run_code(src, regs={"rax": 0x1111111111111111, "r15": 0xF0F0F0F0F0F0F0F0})
    assert emu.reg_read("rbx") == (-0x12345678) & 0xFFFFFFFFFFFFFFFF
    assert emu.reg_read("rcx") == 0x12345678
    assert emu.reg_read("rdx") == 0xFFFFFFFFFFFFFFFE
    assert emu.reg_read("r8") == 0xF0F0F0F0F0F0F0F0
    assert emu.reg_read("r9") == 0x1111111111111111
    assert emu.reg_read("rsp") == STACK
    assert emu.mem_read(STACK - 8, 8) == q(0x1111111111111111)
    assert emu.mem_read(STACK - 24, 8) == q(0xFFFFFFFFFFFFFFFE)


def test_push_pop_16bit_operand_in_64bit_mode():
    emu = run_code("push ax\npush word 0x1234\npop bx\npop cx",
                   regs={"rax": 0xAAAA, "rbx": 0xFFFFFFFFFFFFFFFF, "rcx": 0})
    assert emu.reg_read("rbx") == 0xFFFFFFFFFFFF1234
    assert emu.reg_read("rcx") == 0xAAAA
    assert emu.reg_read("rsp") == STACK
    assert emu.mem_read(STACK - 4, 4) == bytes.fromhex("3412aaaa")


def test_push_rsp_pushes_old_value_and_pop_rsp():
    emu = run_code("push rsp\npop rax\npush rbx\npop rsp", regs={"rbx": 0x8000})
    assert emu.reg_read("rax") == STACK
    assert emu.reg_read("rsp") == 0x8000


def test_push_pop_memory_operands():
    emu = run_code(f"push qword [{DATA:#x}]\npop qword [{DATA + 8:#x}]\npush qword [rsp-8]\npop rax",
                   mem={DATA: q(0x0123456789ABCDEF)})
    assert emu.mem_read(DATA + 8, 8) == q(0x0123456789ABCDEF)
    assert emu.reg_read("rax") == 0x0123456789ABCDEF
    assert emu.reg_read("rsp") == STACK


def test_pop_into_rsp_relative_memory_uses_incremented_rsp():
    # the destination address of `pop [rsp+8]` is computed after rsp was incremented
    emu = run_code("push rax\npop qword [rsp+8]", regs={"rax": 0xDEADBEEF})
    assert emu.reg_read("rsp") == STACK
    assert emu.mem_read(STACK + 8, 8) == q(0xDEADBEEF)


def test_push_pop_32bit_mode():
    src = "push eax\npush byte -1\npush dword 0x80000000\npush cx\npop si\npop edx\npop ebx\npop edi"
    emu = run_code(src, mode=32, regs={"eax": 0x11223344, "ecx": 0xBEEF})
    assert emu.reg_read("si") == 0xBEEF
    assert emu.reg_read("edx") == 0x80000000
    assert emu.reg_read("ebx") == 0xFFFFFFFF
    assert emu.reg_read("edi") == 0x11223344
    assert emu.reg_read("esp") == STACK


def test_pushad_popad_32bit_mode():
    regs = {"eax": 1, "ecx": 2, "edx": 3, "ebx": 4, "ebp": 6, "esi": 7, "edi": 8}
    src = "pushad\nmov eax, [esp+12]\nmov [esp+4], eax\npopad"   # overwrite saved esi with saved esp
    emu = run_code(src, mode=32, regs=regs)
    for k, v in regs.items():
        if k != "esi":
            assert emu.reg_read(k) == v, k
    assert emu.reg_read("esi") == STACK                # stored esp value is the original esp
    assert emu.reg_read("esp") == STACK                # popad skips the saved esp


def test_push_pop_16bit_mode_and_sp_wraparound():
    emu = run_code("push ax\npush 0x5678\npop bx\npop cx", mode=16, regs={"eax": 0x1234, "esp": 0})
    assert emu.mem_read(0xFFFE, 2) == b"\x34\x12"       # ss:0xfffe
    assert emu.reg_read("bx") == 0x5678
    assert emu.reg_read("cx") == 0x1234
    assert emu.reg_read("sp") == 0


def test_push_16bit_mode_uses_ss_base():
    emu = run_code("push ax", mode=16, regs={"ss": 0x0800, "esp": 0x0100, "eax": 0xBEEF})
    assert emu.reg_read("sp") == 0x00FE
    assert emu.mem_read(0x8000 + 0xFE, 2) == b"\xef\xbe"


def test_pushf_popf_64():
    emu = run_code("pushfq\npop rax\npush rbx\npopfq\npushfq\npop rcx",
                   regs={"rbx": flags_value("CF PF AF ZF SF OF DF") | 0x8028}, flags=flags_value("ZF SF"))
    assert emu.reg_read("rax") & 0xFFFF == flags_value("ZF SF")
    # reserved bits 3, 5, 15 read as zero, bit 1 as one
    assert emu.reg_read("rcx") & 0xFFFF == flags_value("CF PF AF ZF SF OF DF")
    assert_flags(emu, {"CF": 1, "PF": 1, "AF": 1, "ZF": 1, "SF": 1, "OF": 1, "DF": 1})


@pytest.mark.parametrize("mode", [16, 32])
def test_pushf_popf_legacy(mode):
    fl = "CF AF SF OF"
    src = "pushfd\npop eax\npush ebx\npopfd\npushf\npop dx"
    emu = run_code(src, mode=mode, regs={"ebx": flags_value("PF ZF DF")}, flags=flags_value(fl))
    assert emu.reg_read("eax") & 0xFFFF == flags_value(fl)
    assert emu.reg_read("dx") & 0xFFF == flags_value("PF ZF DF")
    assert_flags(emu, {"CF": 0, "PF": 1, "ZF": 1, "DF": 1, "OF": 0}, mode=mode)


def test_popf_16bit_operand_in_64bit_mode():
    emu = run_code("push word 0x0881\npopfw", flags=flags_value("ZF"))
    assert_flags(emu, {"CF": 1, "SF": 1, "OF": 1, "ZF": 0, "PF": 0})
    assert emu.reg_read("rsp") == STACK


def test_enter_leave_level0():
    emu = run_code("enter 0x20, 0\nmov rax, rsp\nmov rbx, rbp\nleave", regs={"rbp": 0xABCD})
    assert emu.reg_read("rbx") == STACK - 8
    assert emu.reg_read("rax") == STACK - 8 - 0x20
    assert emu.mem_read(STACK - 8, 8) == q(0xABCD)
    assert emu.reg_read("rbp") == 0xABCD
    assert emu.reg_read("rsp") == STACK


def test_enter_nesting_levels():
    # level 3: pushes rbp, two frame pointers copied from the old frame, then the new frame pointer
    old_bp = 0xFE80
    emu = run_code("enter 0x10, 3", regs={"rbp": old_bp},
                   mem={old_bp - 16: q(0xBBBB) + q(0xAAAA)})
    frame = STACK - 8
    assert emu.reg_read("rbp") == frame
    assert emu.reg_read("rsp") == STACK - 32 - 0x10
    assert emu.mem_read(STACK - 32, 32) == q(frame) + q(0xBBBB) + q(0xAAAA) + q(old_bp)


def test_enter_level1():
    emu = run_code("enter 8, 1", regs={"rbp": 0x1234})
    assert emu.reg_read("rbp") == STACK - 8
    assert emu.reg_read("rsp") == STACK - 16 - 8
    assert emu.mem_read(STACK - 16, 16) == q(STACK - 8) + q(0x1234)


@pytest.mark.parametrize("mode", [16, 32])
def test_enter_leave_legacy(mode):
    emu = run_code("enter 6, 1\nmov eax, esp\nmov ebx, ebp\nleave", mode=mode, regs={"ebp": 0x4321})
    w = 2 if mode == 16 else 4
    assert emu.reg_read("ebx") & 0xFFFF == STACK - w
    assert emu.reg_read("eax") & 0xFFFF == STACK - 2 * w - 6
    assert emu.mem_read(STACK - 2 * w, 2 * w) == (STACK - w).to_bytes(w, "little") + (0x4321).to_bytes(w, "little")
    assert emu.reg_read("ebp") & 0xFFFF == 0x4321
    assert emu.reg_read("esp") & 0xFFFF == STACK
