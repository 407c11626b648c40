"""Self-modifying code: guest stores into code that is (about to be) executed
must be honoured, within the same translated block and across blocks."""

import pytest

from conftest import CODE, DATA, STACK, make_emu, run_code


def test_patch_next_instruction_in_same_block():
    src = """
        mov byte [rel target+1], 0x42
    target:
        mov al, 0x00
    """
    emu = run_code(src, regs={"rax": 0})
    assert emu.reg_read("al") == 0x42


def test_patch_opcode_of_next_instruction():
    # inc eax (ff c0) becomes dec eax (ff c8) before it runs
    src = """
        mov byte [rel target+1], 0xC8
    target:
        inc eax
    """
    emu = run_code(src, regs={"rax": 10})
    assert emu.reg_read("eax") == 9


def test_patch_instruction_later_in_same_block():
    src = """
        mov dword [rel target+1], 0x12345678
        add ebx, 1
        add ebx, 1
        add ebx, 1
    target:
        mov ecx, 0
        add ebx, 1
    """
    emu = run_code(src, regs={"rbx": 0, "rcx": 5})
    assert emu.reg_read("ecx") == 0x12345678
    assert emu.reg_read("ebx") == 4


def test_patch_with_rep_movsb_into_following_code():
    src = """
        lea rsi, [rel newcode]
        lea rdi, [rel target]
        mov ecx, 5
        rep movsb
    target:
        mov eax, 1
        jmp end
    newcode:
        mov eax, 2
    end:
    """
    emu = run_code(src, regs={"rax": 0})
    assert emu.reg_read("eax") == 2


@pytest.mark.parametrize("mode", [16, 32])
def test_patch_next_instruction_legacy(mode):
    src = """
        mov byte [target+1], 0x42
    target:
        mov al, 0x00
    """
    emu = run_code(src, mode=mode, regs={"eax": 0})
    assert emu.reg_read("al") == 0x42


def test_patch_function_already_executed():
    src = """
        call f
        mov ebx, eax
        mov byte [rel f+1], 5        ; mov eax, imm32 -> new immediate
        call f
        mov ecx, eax
        jmp end
    f:
        mov eax, 1
        ret
    end:
    """
    emu = run_code(src)
    assert emu.reg_read("ebx") == 1
    assert emu.reg_read("ecx") == 5


def test_patch_loop_body_each_iteration():
    # each iteration bumps the immediate of its own `add`: sum 1 + 2 + ... + 10
    src = """
        xor eax, eax
        mov ecx, 10
    l:
        inc byte [rel addi+2]
    addi:
        add eax, 0          ; 83 c0 00
        dec ecx
        jnz l
    """
    emu = run_code(src)
    assert emu.reg_read("eax") == 55


def test_patch_code_of_an_earlier_block_then_jump_back():
    src = """
        mov esi, 0
    again:
        inc esi
    patchme:
        mov edx, 1
        cmp esi, 2
        je done
        mov byte [rel patchme+1], 7
        jmp again
    done:
    """
    emu = run_code(src)
    assert emu.reg_read("edx") == 7
    assert emu.reg_read("esi") == 2


def test_generated_code_in_data_buffer():
    # copy two different code snippets to the same buffer and call it each time
    src = f"""
        mov rdi, {DATA:#x}
        lea rsi, [rel snip1]
        mov ecx, snip1_end - snip1
        rep movsb
        mov rax, {DATA:#x}
        call rax
        mov ebx, eax
        mov rdi, {DATA:#x}
        lea rsi, [rel snip2]
        mov ecx, snip2_end - snip2
        rep movsb
        mov rax, {DATA:#x}
        call rax
        jmp end
    snip1: mov eax, 111
        ret
    snip1_end:
    snip2: mov eax, 222
        ret
    snip2_end:
    end:
    """
    emu = run_code(src)
    assert emu.reg_read("ebx") == 111
    assert emu.reg_read("eax") == 222


def test_host_mem_write_invalidates_translation():
    emu = make_emu(64)
    emu.mem_write(CODE, bytes.fromhex("b801000000"))        # mov eax, 1
    emu.reg_write("rsp", STACK)
    emu.emu_start(CODE, CODE + 5)
    assert emu.reg_read("eax") == 1
    emu.mem_write(CODE + 1, b"\x02")
    emu.emu_start(CODE, CODE + 5)
    assert emu.reg_read("eax") == 2


def test_patch_via_memory_hookless_store_different_alias_width():
    # a 64-bit store that covers the end of one instruction and the start of the next
    src = """
        mov rax, 0x9090909090909090
        mov [rel t], rax
    t:
        mov ebx, 0xFFFFFFFF     ; 5 bytes, replaced by nops
        db 0x90, 0x90, 0x90
        mov ecx, 1
    """
    emu = run_code(src, regs={"rbx": 7})
    assert emu.reg_read("rbx") == 7
    assert emu.reg_read("ecx") == 1
