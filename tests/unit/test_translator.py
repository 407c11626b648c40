"""The translator and run loop: emitted source, budgets, loops, precise faults, flag liveness."""

import io

import pytest

from conftest import assemble, CODE
from pysev.api import Emulator, GuestException


def load(src, mode=64, **regs):
    code, labels = assemble(src, mode)
    emu = Emulator(mode=mode)
    emu.mem_map(0, 0x20000)
    emu.mem_write(CODE, code)
    emu.reg_write("rsp" if mode == 64 else "esp", 0xFF00)
    for k, v in regs.items():
        emu.reg_write(k, v)
    return emu, code, labels


LOOP = """
    mov ecx, 1000
top:
    add eax, 3
    dec ecx
    jnz top
    hlt
"""


def test_block_source_is_python_that_names_each_instruction():
    emu, code, _ = load(LOOP)
    src = emu.block_source(CODE + 5)
    compile(src, "<test>", "exec")
    assert src.startswith("def block(cpu, budget):")
    assert "# 0x1005: add eax, 3" in src
    assert "# 0x1008: dec ecx" in src
    assert "while True:" in src                  # the block branches to itself
    # dec keeps CF, which it computes from the add's result: so the add's flags
    # are never assigned; dec's go only into the exits (the loop head, add,
    # overwrites them all), and jnz tests dec's result directly
    assert "fo = 2" not in src
    assert src.count("fb = (t2 > 0xffffffff); fo = 18; fa = t3; fr = t4") == 3  # 2 exits, handler
    assert "if (t4 & 0xffffffff):" in src


def test_debug_log_prints_guest_code_and_python():
    log = io.StringIO()
    code, _ = assemble(LOOP)
    emu = Emulator(mode=64, debug=("in_asm", "op"), log=log)
    emu.mem_map(0, 0x20000)
    emu.mem_write(CODE, code)
    emu.emu_start(CODE, CODE + len(code))
    text = log.getvalue()
    assert "IN:\n0x00001000: b9e8030000" in text
    assert "OP (Python for block 0x1005):\ndef block(cpu, budget):" in text


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 100, 3001, 3002])
def test_count_is_exact_inside_a_self_loop(count):
    emu, code, _ = load(LOOP)
    emu.emu_start(CODE, CODE + len(code), count=count)
    assert emu.insn_count == count
    loop_insns = min(count - 1, 3000)              # after the mov
    iterations, rest = divmod(loop_insns, 3)
    assert emu.reg_read("eax") == 3 * iterations + (3 if rest >= 1 else 0)
    assert emu.reg_read("ecx") == 1000 - iterations - (1 if rest >= 2 else 0)
    expect_rip = CODE + (5, 8, 10)[rest]
    if count == 3001:
        expect_rip = CODE + 12                     # the loop is done: at the hlt
    elif count == 3002:
        expect_rip = CODE + 13                     # the hlt ran
    assert emu.reg_read("rip") == expect_rip


def test_until_inside_a_block_and_at_a_loop_head():
    emu, code, _ = load(LOOP)
    assert emu.emu_start(CODE, CODE + 8) == "until"        # the dec inside the loop block
    assert emu.insn_count == 2 and emu.reg_read("eax") == 3
    assert emu.emu_start(CODE + 8, CODE + 5) == "until"    # one more round to the loop head
    assert emu.insn_count == 4 and emu.reg_read("ecx") == 999
    assert emu.emu_start(CODE + 5, CODE + 5, count=0) == "until"
    assert emu.insn_count == 4


def test_fault_in_the_middle_of_a_block_is_precise():
    src = """
        add rax, rbx        ; sets flags the guest may still look at
        mov rdx, 77
    divide:
        div rcx             ; rcx = 0: #DE
        mov rdx, 1
        hlt
    """
    emu, code, labels = load(src, rax=0xFFFFFFFFFFFFFFFF, rbx=1, rcx=0)
    with pytest.raises(GuestException) as ei:
        emu.emu_start(CODE, CODE + len(code))
    assert ei.value.vector == 0 and ei.value.address == labels["divide"]
    assert emu.reg_read("rip") == labels["divide"]
    assert emu.reg_read("rax") == 0 and emu.reg_read("rdx") == 77
    assert emu.reg_read("eflags") & 0x8D5 == 0x55      # CF PF AF ZF from the add
    assert emu.insn_count == 2


def test_a_fault_in_a_later_loop_iteration_counts_completed_iterations():
    src = """
    top:
        mov bl, [rsi]
        inc rsi
        dec ecx
        jnz top
        hlt
    """
    emu, code, _ = load(src, rsi=0x1FFFE, rcx=10)
    emu.hook_add("mem_read", lambda *a: None)   # reads beyond RAM are all ones, not faults
    emu.emu_start(CODE, CODE + len(code))
    assert emu.reg_read("bl") == 0xFF and emu.reg_read("rsi") == 0x1FFFE + 10


def test_undecodable_bytes_raise_ud_with_the_address():
    emu = Emulator(64)
    emu.mem_map(0, 0x2000)
    emu.mem_write(0x1000, bytes.fromhex("4889c3d6"))    # mov rbx, rax; (bad)
    emu.reg_write("rax", 5)
    with pytest.raises(GuestException) as ei:
        emu.emu_start(0x1000, 0x1010)
    assert (ei.value.vector, ei.value.address) == (6, 0x1003)
    assert str(ei.value).startswith("guest exception #UD (vector 6) at 0x1003: "
                                    "undecodable instruction bytes d6")
    assert emu.reg_read("rbx") == 5 and emu.reg_read("rip") == 0x1003


def test_unimplemented_instruction_raises_ud():
    emu = Emulator(64)
    emu.mem_map(0, 0x2000)
    emu.mem_write(0x1000, bytes.fromhex("0f10c1"))      # movups xmm0, xmm1
    with pytest.raises(GuestException, match=r"#UD \(vector 6\) at 0x1000: "
                       r"instruction not implemented: movups xmm0, xmm1"):
        emu.emu_start(0x1000, 0x1010)


def test_host_write_to_translated_code_invalidates_it():
    emu, code, _ = load("mov eax, 1\nhlt")
    emu.emu_start(CODE, CODE + 10)
    assert emu.reg_read("eax") == 1
    emu.mem_write(CODE + 1, (2).to_bytes(4, "little"))
    emu.emu_start(CODE, CODE + 10)
    assert emu.reg_read("eax") == 2


def test_guest_write_to_the_next_instruction_in_the_same_block():
    src = """
        mov byte [rel patch + 1], 42     ; rewrite the immediate of the next mov
    patch:
        mov eax, 1
        hlt
    """
    emu, code, _ = load(src)
    emu.emu_start(CODE, CODE + len(code))
    assert emu.reg_read("eax") == 42
    assert emu.insn_count == 3


def test_guest_write_to_another_block_that_already_ran():
    src = """
        call fn
        mov ebx, eax
        mov byte [rel fn + 1], 9         ; patch fn's immediate
        call fn
        hlt
    fn:
        mov eax, 5
        ret
    """
    emu, code, _ = load(src)
    emu.emu_start(CODE, CODE + len(code))
    assert emu.reg_read("ebx") == 5 and emu.reg_read("eax") == 9


def test_a_trap_counts_once_and_resumes_after_itself():
    emu = Emulator(64)
    emu.mem_map(0, 0x2000)
    emu.mem_write(0x1000, bytes.fromhex("90cc90f4"))     # nop; int3; nop; hlt
    with pytest.raises(GuestException) as ei:
        emu.emu_start(0x1000, 0x1004)
    assert (ei.value.vector, ei.value.address) == (3, 0x1001)
    assert emu.insn_count == 2 and emu.reg_read("rip") == 0x1002
