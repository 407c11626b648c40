"""Flag liveness inside and across the basic blocks of a trace.

The translator assigns an instruction's lazy flags in place only where later
code reads them; where only an exit, the fault handler or nothing looks, it
moves them into those exits and the handler, or drops them (see
pysev.cpu.translate._drop_dead_flags).  Whatever it does, the state must be
exactly what single-stepping gives: with a code hook every block is one
instruction long and every flag assignment is kept, so it is the oracle here.
"""

import pytest

import paged
from conftest import assemble, CODE, DATA
from pysev.api import Emulator, GuestException, HOOK_CODE

REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "rip", "rflags")
ARITH = 0x8D5


def make(src, step, **regs):
    code, labels = assemble(src, 64)
    emu = Emulator(mode=64)
    emu.mem_map(0, 0x20000)
    emu.mem_write(CODE, code)
    emu.reg_write("rsp", 0xFF00)
    for name, value in regs.items():
        emu.reg_write(name, value)
    if step:
        emu.hook_add(HOOK_CODE, lambda *_: None)
    return emu, code


def state(emu):
    out = {name: emu.reg_read(name) for name in REGS}
    out["rflags"] &= ARITH
    out["data"] = emu.mem_read(DATA, 64)
    out["count"] = emu.insn_count
    return out


def run_both(src, count, **regs):
    results = []
    for step in (False, True):
        emu, code = make(src, step, **regs)
        try:
            reason = emu.emu_start(CODE, CODE + len(code), count=count)
            fault = None
        except GuestException as exc:
            reason, fault = "fault", (exc.vector, exc.address, exc.error_code)
        results.append((reason, fault, state(emu)))
    return results


LOOPS = {
    # the loop head overwrites all flags: dec's flags go only into the exits
    "add-dec": """
        mov ecx, 7
    top:
        add eax, 3
        dec ecx
        jnz top
    """,
    # cmp's flags are dead (dec reads only its CF, computed from cmp's values)
    "alu": """
        mov r9, 0x9E3779B97F4A7C15
        mov ecx, 4
        mov edx, 0x12345
    top:
        add rax, rcx
        xor rdx, rax
        shl rdx, 3
        imul rax, r9
        shr rdx, 1
        cmp rax, rdx
        dec rcx
        jnz top
    """,
    # the loop head reads CF: the flags must reach it over the back edge
    "adc-head": """
        mov ecx, 6
        mov ebx, 0x80000001
        stc
    top:
        adc eax, ebx
        rcl edx, 1
        dec ecx
        jnz top
    """,
    # stores after flag writers (the fault handler and SMC exits see them)
    "mem": f"""
        mov esi, {DATA}
        mov ecx, 4
    top:
        movzx eax, byte [rsi + rdx]
        add al, cl
        mov [rsi + rdx], al
        mov rax, [rsi + rdx]
        xor rax, r8
        mov [rsi + rdx], rax
        add edx, 8
        and edx, 0x38
        dec rcx
        jnz top
    """,
    # imul's CF/OF (signed overflow) read by a later jo/setc
    "imul-flags": """
        mov ecx, 5
        mov ebx, 0x7000
    top:
        imul ebx, ebx
        seto al
        setc ah
        add ebx, 0x1234
        sub ecx, 1
        jnz top
    """,
    # call, push/pop, ret guard: flags set in the callee, read after the return
    "call": """
        mov ecx, 4
    top:
        call fn
        dec rcx
        jnz top
        jmp done
    fn:
        push rbx
        mov rbx, rcx
        imul rbx, rbx
        add rax, rbx
        pop rbx
        ret
    done:
        nop
    """,
    # a conditional exit in the middle of the trace after a sunk writer
    "exit-if": """
        mov ecx, 9
    top:
        sub eax, 7
        test ecx, 3
        jz skip
        inc edx
    skip:
        dec ecx
        jnz top
    """,
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_every_stop_point_matches_single_stepping(name):
    src = LOOPS[name]
    full = run_both(src, 0)
    assert full[0] == full[1]
    total = full[0][2]["count"]
    assert total > 20
    for count in range(1, total + 1):
        fast, step = run_both(src, count)
        assert fast == step, f"{name}: after {count} instructions"


def test_add_flags_are_not_assigned_in_the_loop():
    code, _ = assemble(LOOPS["add-dec"], 64)
    emu = Emulator(mode=64)
    emu.mem_map(0, 0x20000)
    emu.mem_write(CODE, code)
    src = emu.block_source(CODE + 5)
    body = src[src.index("while True:"):src.index("if (")]
    assert "fo = " not in body and "fr = " not in body


NOT_PRESENT = DATA + 0x3000
PAGES = {NOT_PRESENT >> 12: None, (DATA + 0x2000) >> 12: 0x5}      # absent; read-only

FAULTS = {
    # the store faults (#PF: the page is not present); the flags are the
    # add's, whose assignment was moved into the fault handler
    "store-after-add": f"""
        mov eax, 0x7fffffff
        add eax, 1
        mov rbx, {NOT_PRESENT}
    store:
        mov [rbx], eax
    """,
    # a load faults after a sub and a dec (dec's CF comes from the sub)
    "load-after-dec": f"""
        mov eax, 5
        sub eax, 9
        dec ebx
        mov rcx, {NOT_PRESENT}
        add edx, [rcx]
    """,
    # a divide error after an imul that overflowed
    "div-after-imul": """
        mov eax, 0x40000000
        imul eax, eax
        xor edx, edx
        xor ecx, ecx
        div ecx
    """,
    # the fault is in a later pass through a loop: a store to a read-only page
    "loop-fault": f"""
        mov ecx, 5
        mov rsi, {DATA}
    top:
        add eax, 0x7ffffff0
        mov [rsi], eax
        add rsi, 0x1000
        dec ecx
        jnz top
    """,
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_state_matches_single_stepping(name):
    code, _ = assemble(FAULTS[name], 64)
    results = [paged.run(paged.paged_cpu(code, PAGES), code, step=step) for step in (False, True)]
    assert results[0][0] == "fault"
    assert results[0] == results[1]
    # and at every count before the fault
    total = results[0][2]["count"]
    for count in range(1, total + 1):
        fast, step = (paged.run(paged.paged_cpu(code, PAGES), code, count, step)
                      for step in (False, True))
        assert fast == step, f"{name}: after {count} instructions"


def test_fault_after_sunk_flags_has_exact_flags():
    code, labels = assemble(FAULTS["store-after-add"], 64)
    reason, fault, regs = paged.run(paged.paged_cpu(code, PAGES), code)
    assert fault == (14, 0x2, NOT_PRESENT)            # a write to a page not present
    # 0x7fffffff + 1: OF SF AF PF set, ZF CF clear; RIP at the store
    assert regs["rflags"] == 0x800 | 0x80 | 0x10 | 0x4
    assert regs["count"] == 3 and regs["rip"] == labels["store"]


def test_loop_fault_is_in_the_third_pass():
    code, _ = assemble(FAULTS["loop-fault"], 64)
    reason, fault, regs = paged.run(paged.paged_cpu(code, PAGES), code)
    assert fault == (14, 0x3, DATA + 0x2000)          # present, write
    assert regs["rax"] == 3 * 0x7FFFFFF0 & 0xFFFFFFFF
    # the third add: 0xffffffe0 + 0x7ffffff0 = 0x7fffffd0 and a carry: CF alone
    assert regs["rflags"] == 0x1
    assert regs["count"] == 2 + 2 * 5 + 1          # the third add ran, its store faulted


def test_self_modifying_store_after_a_flag_writer():
    # the store rewrites the immediate of the add that follows it in the same
    # block: the block exits after the store with the sub's flags, and the
    # new add runs
    src = """
        mov eax, 10
        sub eax, 11
        mov byte [rel patch + 2], 5
    patch:
        add ebx, 1
        setc cl
        sets dl
    """
    fast, step = run_both(src, 0)
    assert fast == step
    assert fast[2]["rbx"] == 5


def test_imul_two_operand_low_half_and_flags():
    src = """
        mov rax, -3
        mov rbx, 0x7fffffffffffffff
        imul rax, rbx
        seto cl
        mov rdx, -4
        imul rdx, rdx
        seto ch
    """
    fast, step = run_both(src, 0)
    assert fast == step
    regs = fast[2]
    assert regs["rax"] == (-3 * 0x7FFFFFFFFFFFFFFF) & (2**64 - 1)
    assert regs["rdx"] == 16
    assert regs["rcx"] & 0xFFFF == 0x0001          # the first overflowed, the second not


# ---- registers in locals --------------------------------------------------------------
# A block that loops in place and calls no helper keeps the registers it uses in
# locals r0 ... r15: loaded on entry, stored back at every exit and in the
# fault handler (the loop-fault and stop-point tests above run such blocks).

def test_a_loop_keeps_its_registers_in_locals():
    code, _ = assemble(LOOPS["mem"], 64)
    emu = Emulator(mode=64)
    emu.mem_map(0, 0x20000)
    emu.mem_write(CODE, code)
    emu.emu_start(CODE, CODE + len(code))
    loop = next(b for b in emu.cpu.cache.entries.values() if b.loops)
    head, rest = loop.source.split("    try:\n", 1)
    assert "r0 = R[0]; r1 = R[1]; r2 = R[2]; r6 = R[6]; r8 = R[8]" in head
    stores = "R[0] = r0; R[1] = r1; R[2] = r2; R[6] = r6; R[8] = r8"
    assert rest.replace(stores, "").count("R[") == 0
    assert rest.count(stores) == 5          # 2 SMC exits, 2 loop exits, the handler


def test_a_memory_hook_sees_the_registers_of_each_access():
    # the hook reads RCX and RDX, which the loop changes every pass
    src = f"""
        mov esi, {DATA}
        mov ecx, 6
    top:
        mov [rsi + rdx], cl
        add edx, 2
        dec ecx
        jnz top
    """
    code, _ = assemble(src, 64)
    for hook_first in (True, False):
        emu = Emulator(mode=64)
        emu.mem_map(0, 0x20000)
        emu.mem_write(CODE, code)
        seen = []

        def on_write(uc, kind, addr, size, value):
            seen.append((addr, value, uc.reg_read("rcx"), uc.reg_read("rdx")))

        if not hook_first:
            # translate the loop without the hook first (registers in locals) ...
            emu.emu_start(CODE, CODE + len(code))
            emu.reg_write("rdx", 0)
        emu.hook_add("mem_write", on_write)
        emu.emu_start(CODE, CODE + len(code))
        # ... the hooked run must not use that translation
        assert seen == [(DATA + 2 * i, 6 - i, 6 - i, 2 * i) for i in range(6)]
