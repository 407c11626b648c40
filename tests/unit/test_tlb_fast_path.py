"""The TLB-miss fast path (SR1..SR8, SW1..SW8 in pysev.cpu.engine).

After one full walk has reached a page table, a later TLB miss in the same
2 MiB reads only the PTE and checks it against masks (present, accessed,
dirty for a write, no reserved bit, the permissions this privilege level
needs); whatever does not pass takes the full walk.  With the TLB disabled
every access takes the full walk (pysev.mem.paging.walk), so that is the
oracle: same faults, same registers and memory, same accessed and dirty bits.
"""

import pytest

import paged
from conftest import assemble
from pysev.mem.paging import A, D

DATA = paged.DATA
PAGE = 0x1000


def both(src, pages=None, **kw):
    code, labels = assemble(src, 64)
    out = []
    for tlb in (True, False):
        cpu = paged.paged_cpu(code, pages, **kw)
        if not tlb:
            cpu.set_tlb_enabled(False)
        out.append(paged.run(cpu, code))
    assert out[0] == out[1]
    return out[0], labels


# sweeps: each reads and writes the first qword of 8 pages (and a byte, a
# word and a dword at other offsets), then reloads CR3 so the next sweep
# misses the TLB again
SWEEPS = f"""
    mov ecx, 3
sweep:
    mov rdi, {DATA}
    mov edx, 8
page:
    xor [rdi], rcx
    add [rdi + 9], cl
    add word [rdi + 0x20], 3
    mov eax, [rdi + 0x44]
    add rdi, {PAGE}
    dec edx
    jnz page
    mov rax, cr3
    mov cr3, rax
    dec ecx
    jnz sweep
"""

RO, ABSENT, USER_RO = 0x5, None, 0x5
SUPERVISOR = 0x3


def data_page(i):
    return (DATA >> 12) + i


def test_sweeps_fill_from_the_page_tables_and_set_accessed_and_dirty():
    (reason, fault, regs), _ = both(SWEEPS)
    assert reason == "until" and fault is None
    for i in range(8):
        pte = int.from_bytes(regs["ptes"][8 * data_page(i):8 * data_page(i) + 8], "little")
        assert pte & (A | D) == A | D
        assert regs["data"][i * PAGE:i * PAGE + 8] == (3 ^ 2 ^ 1).to_bytes(8, "little")
        assert regs["data"][i * PAGE + 9] == 6
        assert regs["data"][i * PAGE + 0x20] == 9


@pytest.mark.parametrize("flags,expect", [
    (ABSENT, (14, 0x0, DATA + 5 * PAGE)),           # xor's read faults first
    (RO, (14, 0x3, DATA + 5 * PAGE)),               # CR0.WP: supervisor write to read-only
    (0x7 | (1 << 51), (14, 0x9, DATA + 5 * PAGE)),  # a reserved bit (MAXPHYADDR 48)
])
def test_a_bad_pte_faults_exactly_as_the_full_walk(flags, expect):
    (reason, fault, regs), _ = both(SWEEPS, {data_page(5): flags})
    assert fault == expect
    assert regs["count"] == 3 + 5 * 7


def test_read_only_page_is_writable_by_the_kernel_without_cr0_wp():
    (reason, fault, regs), _ = both(SWEEPS, {data_page(5): RO}, cr0_wp=False)
    assert fault is None
    pte = int.from_bytes(regs["ptes"][8 * data_page(5):8 * data_page(5) + 8], "little")
    assert pte & D


def test_a_pte_the_guest_clears_between_sweeps_faults():
    src = SWEEPS.replace("    mov rax, cr3\n", f"""    mov rax, {paged.pte_address(data_page(6))}
    cmp ecx, 2
    jne keep
    mov qword [rax], 0
keep:
    mov rax, cr3
""")
    (reason, fault, regs), _ = both(src)
    assert fault == (14, 0x0, DATA + 6 * PAGE)
    assert regs["rcx"] == 1


def test_a_pte_the_guest_remaps_between_sweeps():
    # page 7 is pointed at page 0's frame for the last two sweeps
    src = SWEEPS.replace("    mov rax, cr3\n", f"""    mov rax, {paged.pte_address(data_page(7))}
    mov qword [rax], {DATA | 0x67}
    mov rax, cr3
""")
    (reason, fault, regs), _ = both(src)
    assert fault is None
    assert regs["data"][0:8] == (3 ^ 2 ^ 1 ^ 2 ^ 1).to_bytes(8, "little")
    assert regs["data"][7 * PAGE:7 * PAGE + 8] == (3).to_bytes(8, "little")


USER_SWEEP = f"""
    mov rdi, {DATA}
    mov edx, 8
page:
    mov rax, [rdi]
    add [rdi + 8], rax
    add rdi, {PAGE}
    dec edx
    jnz page
"""


@pytest.mark.parametrize("flags,expect", [
    (SUPERVISOR, (14, 0x5, DATA + 4 * PAGE)),      # user read of a supervisor page
    (USER_RO, (14, 0x7, DATA + 4 * PAGE + 8)),     # user write to a read-only page
    (0x7, None),
])
def test_user_mode_permissions(flags, expect):
    (reason, fault, regs), _ = both(USER_SWEEP, {data_page(4): flags}, cpl=3)
    assert fault == expect


@pytest.mark.parametrize("flags,expect", [
    (0x7, (14, 0x1, DATA + 4 * PAGE)),             # SMAP: supervisor read of a user page
    (SUPERVISOR, None),
])
def test_smap(flags, expect):
    pages = {data_page(i): SUPERVISOR for i in range(8)}
    pages[data_page(4)] = flags
    (reason, fault, regs), _ = both(USER_SWEEP, pages, smap=True)
    assert fault == expect


@pytest.mark.parametrize("c_bit,reduced,flags,expect", [
    (47, 5, 0x7, None),                            # the C-bit is no address bit
    (47, 5, 0x7 | (1 << 46), (14, 0x9, DATA + 3 * PAGE)),   # reduced-phys-bits: bit 46 reserved
])
def test_sev_c_bit_in_every_entry(c_bit, reduced, flags, expect):
    (reason, fault, regs), _ = both(SWEEPS, {data_page(3): flags}, c_bit=c_bit,
                                    reduced_bits=reduced)
    assert fault == expect
    if expect is None:
        assert regs["data"][3 * PAGE:3 * PAGE + 8] == (3 ^ 2 ^ 1).to_bytes(8, "little")


def test_misses_after_the_first_walk_take_the_fast_path(monkeypatch):
    from pysev.cpu import engine

    code, _ = assemble(SWEEPS, 64)
    cpu = paged.paged_cpu(code)
    walks = []
    real = engine.walk

    def counting(mem, cr3, lin, *args):
        walks.append(lin)
        return real(mem, cr3, lin, *args)

    monkeypatch.setattr(engine, "walk", counting)
    assert paged.run(cpu, code)[0] == "until"
    data_walks = [lin for lin in walks if lin >= DATA]
    # first sweep: the accessed and dirty bits are clear, so every page is walked
    # (its read, then its write to set D); in the later sweeps the code fetch
    # after the CR3 reload has already walked to the page table the data share
    # with the code, so every data miss reads only its PTE
    assert len(data_walks) == 8 * 2
    assert cpu.fpsc and all(len(entry) == 6 for entry in cpu.fpsc.values())
