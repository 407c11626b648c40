"""Paging: 4-level (4 KiB, 2 MiB, 1 GiB pages), 5-level (LA57), PAE (4 KiB, 2 MiB)
and 32-bit paging (4 KiB, 4 MiB, PSE-36); accessed and dirty bits; #PF error
codes; reserved bits from the physical address width; the TLB (stale entries
until INVLPG or a CR3 write, global pages, flushes on paging-mode changes).

User/supervisor, SMEP and SMAP are in test_privilege.py.

Long-mode tests add their mappings under PML4[1] (linear 0x80_0000_0000 = B):

    PDPT2 0x40000: [0] 1 GiB page -> 0          [1] -> PD2 0x41000   [2] 1 GiB, reserved bit
    PD2   0x41000: [0] 2 MiB page -> 0x200000   [1] -> PT2 0x42000   [2] 2 MiB, reserved bit
    PT2   0x42000: 4 KiB pages of the tests

so B + 0x4020_0000 + n * 0x1000 is PT2[n].
"""

import functools

from sysboot import boot, idt32, idt64, labels, records

B = 0x80_0000_0000
B2M = B + 0x4000_0000
B4K = B + 0x4020_0000
PT2 = 0x42000
OUT = 0x31000
NX = 1 << 63


@functools.lru_cache(maxsize=None)
def run(body, mode="long", phys_bits=None, alias_4g=False):
    def setup(cpu):
        if phys_bits is not None:
            cpu.phys_bits = phys_bits
        if alias_4g:
            cpu.mem.add_alias(1 << 32, 0x400000, 0x500000, "above-4g")
    cpu, reason, _ = boot(body, mode, setup=setup)
    return cpu, reason, labels(body, mode)


def q(addr, value):
    """64-bit mode: store a quadword."""
    return f"    mov rax, {value:#x}\n    mov [{addr:#x}], rax\n"


def d2(addr, value):
    """32-bit mode: store a quadword as two dwords."""
    return (f"    mov dword [{addr:#x}], {value & 0xFFFFFFFF:#x}\n"
            f"    mov dword [{addr + 4:#x}], {value >> 32:#x}\n")


def read(lin, slot, bits=64):
    """Read the quadword (dword in 32-bit code) at `lin` into OUT + 8 * slot."""
    if bits == 64:
        return f"    mov rbx, {lin:#x}\n    mov rax, [rbx] ;@\n    mov [{OUT + 8 * slot:#x}], rax\n"
    return f"    mov eax, [{lin:#x}] ;@\n    mov [{OUT + 8 * slot:#x}], eax\n"


def kcase(name, code, bits=64):
    """Kernel code that may fault: the stub resumes at k_<name>.

    f_<name> marks the line that is expected to fault: the first one ending in ";@",
    else the last one.
    """
    lines = code.strip("\n").split("\n")
    marked = [i for i, line in enumerate(lines) if line.endswith(";@")]
    lines.insert(marked[0] if marked else len(lines) - 1, f"f_{name}:")
    mov = "qword" if bits == 64 else "dword"
    return f"    mov {mov} [0x2FFF8], k_{name}\n" + "\n".join(lines) + f"\nk_{name}:\n"


def out(cpu, slot):
    return cpu.mem.read(OUT + 8 * slot, 8)


def faults_with_cr2(cpu):
    return [(r["vector"], r["error"], r["cr2"]) for r in records(cpu)]


LONG_TABLES = (q(0x10008, 0x40003) + q(0x40000, 0x83) + q(0x40008, 0x41003)
               + q(0x40010, 0x4000_2083) + q(0x41000, 0x200083) + q(0x41008, 0x42003)
               + q(0x41010, 0x402083))


def long_body(code):
    setup, stubs = idt64()
    return "body:\n" + setup + LONG_TABLES + code + "    hlt\n" + stubs


# ---------------------------------------------------------------------------- 4-level page sizes

SIZES = (q(PT2 + 5 * 8, 0x345003) + q(PT2 + 6 * 8, 0x346003)
         + q(0x123458, 0x1111) + q(0xABC000, 0x4444) + q(0x345010, 0x3333)
         + read(B + 0x123458, 0)                               # 1 GiB page
         + read(B + 0xABC000, 1)
         + "    mov rbx, %#x\n    mov qword [rbx], 0x2222\n" % (B2M + 0x1234)   # 2 MiB page
         + read(B4K + 0x5010, 2)                               # 4 KiB page
         + "    mov rbx, %#x\n    mov qword [rbx], 0x6666\n" % (B4K + 0x6008))


def test_4k_2m_and_1g_pages_in_4level_paging():
    cpu, reason, _ = run(long_body(SIZES))
    assert reason == "hlt"
    assert records(cpu) == []
    assert [out(cpu, i) for i in range(3)] == [0x1111, 0x4444, 0x3333]
    assert cpu.mem.read(0x201234, 8) == 0x2222
    assert cpu.mem.read(0x346008, 8) == 0x6666


def test_accessed_and_dirty_bits_in_4level_paging():
    cpu, reason, _ = run(long_body(SIZES))
    m = cpu.mem
    assert m.read(0x10008, 8) == 0x40023          # PML4E: A
    assert m.read(0x40000, 8) == 0xA3             # 1 GiB leaf, read: A
    assert m.read(0x40008, 8) == 0x41023          # PDPTE: A (never D in a non-leaf entry)
    assert m.read(0x41000, 8) == 0x2000E3         # 2 MiB leaf, written: A | D
    assert m.read(0x41008, 8) == 0x42023
    assert m.read(PT2 + 5 * 8, 8) == 0x345023     # 4 KiB leaf, read: A
    assert m.read(PT2 + 6 * 8, 8) == 0x346063     # 4 KiB leaf, written: A | D
    assert m.read(0x40010, 8) == 0x4000_2083      # never used: unchanged


# ---------------------------------------------------------------------------- TLB

TLB = (q(PT2 + 7 * 8, 0x350003) + q(0x350000, 0x1111) + q(0x351000, 0x2222)
       + read(B4K + 0x7000, 0)
       + q(PT2 + 7 * 8, 0x351003)                 # remap without INVLPG
       + read(B4K + 0x7000, 1)                    # stale: still the old page
       + "    mov rbx, %#x\n    invlpg [rbx]\n" % (B4K + 0x7000)
       + read(B4K + 0x7000, 2)
       + q(PT2 + 7 * 8, 0x350003)
       + read(B4K + 0x7000, 3)                    # stale again
       + "    mov rax, cr3\n    mov cr3, rax\n"
       + read(B4K + 0x7000, 4)
       + q(PT2 + 7 * 8, 0)                        # not present, but cached
       + read(B4K + 0x7000, 5)
       + "    mov rbx, %#x\n    invlpg [rbx]\n" % (B4K + 0x7000)
       + kcase("np", read(B4K + 0x7000, 6)))


def test_tlb_keeps_a_translation_until_invlpg_or_a_cr3_write():
    cpu, reason, lab = run(long_body(TLB))
    assert reason == "hlt"
    assert [out(cpu, i) for i in range(7)] == [0x1111, 0x1111, 0x2222, 0x2222, 0x1111, 0x1111, 0]
    assert faults_with_cr2(cpu) == [(14, 0, B4K + 0x7000)]
    assert records(cpu)[0]["rip"] == lab["f_np"]


LARGE_INVLPG = (q(0x200000, 0x21) + q(0x201000, 0x22) + q(0x600000, 0x61) + q(0x601000, 0x62)
                + read(B2M, 0) + read(B2M + 0x1000, 1)            # two 4 KiB parts of a 2 MiB page
                + q(0x41000, 0x600083)                            # remap the 2 MiB page
                + "    mov rbx, %#x\n    invlpg [rbx]\n" % B2M     # INVLPG on its first 4 KiB
                + read(B2M, 2) + read(B2M + 0x1000, 3))


def test_invlpg_drops_the_whole_large_page():
    cpu, reason, _ = run(long_body(LARGE_INVLPG))
    assert reason == "hlt"
    assert records(cpu) == []
    assert [out(cpu, i) for i in range(4)] == [0x21, 0x22, 0x61, 0x62]


GLOBAL = ("    mov rax, cr4\n    or rax, 0x80\n    mov cr4, rax\n"          # CR4.PGE
          + q(PT2 + 8 * 8, 0x352103) + q(PT2 + 9 * 8, 0x353003)              # G / not G
          + q(0x352000, 0xA1) + q(0x354000, 0xA2) + q(0x353000, 0xB1) + q(0x355000, 0xB2)
          + read(B4K + 0x8000, 0) + read(B4K + 0x9000, 1)
          + q(PT2 + 8 * 8, 0x354103) + q(PT2 + 9 * 8, 0x355003)
          + "    mov rax, cr3\n    mov cr3, rax\n"
          + read(B4K + 0x8000, 2)                 # global: survives the CR3 write
          + read(B4K + 0x9000, 3)                 # not global: reloaded
          + "    mov rbx, %#x\n    invlpg [rbx]\n" % (B4K + 0x8000)
          + read(B4K + 0x8000, 4)                 # INVLPG drops global entries too
          + q(PT2 + 8 * 8, 0x352103)
          + read(B4K + 0x8000, 5)                 # stale
          + "    mov rax, cr4\n    and rax, ~0x80\n    mov cr4, rax\n"     # clearing PGE flushes all
          + read(B4K + 0x8000, 6)
          + q(PT2 + 8 * 8, 0x354103)
          + read(B4K + 0x8000, 7)                 # stale
          + "    mov rax, cr3\n    mov cr3, rax\n"
          + read(B4K + 0x8000, 8))                # with PGE = 0 the G bit means nothing


def test_global_pages_survive_cr3_writes_only_with_cr4_pge():
    cpu, reason, _ = run(long_body(GLOBAL))
    assert reason == "hlt"
    assert records(cpu) == []
    assert [out(cpu, i) for i in range(9)] == [0xA1, 0xB1, 0xA1, 0xB2, 0xA2, 0xA2, 0xA1, 0xA1, 0xA2]


# ---------------------------------------------------------------------------- #PF error codes

PF_TABLES = (q(PT2 + 0x10 * 8, 0)                            # not present
             + q(PT2 + 0x11 * 8, 0x361001)                   # read-only
             + q(PT2 + 0x12 * 8, 0x362003 | NX)              # no-execute
             + q(PT2 + 0x13 * 8, 0x363003 | 1 << 45)         # reserved with 40-bit addresses
             + q(PT2 + 0x14 * 8, 0x364003 | 1 << 38)         # fine with 40 bits, reserved with 36
             + q(PT2 + 0x15 * 8, 0x365000 | 1 << 45)         # not present: reserved bits ignored
             + q(0x10010, 0x43083)                           # PML4E with PS: reserved
             + q(0x362000, 0xC3))                            # ret in the NX page

PF_CASES = [
    ("read_np", read(B4K + 0x10000, 0), (14, 0x0, B4K + 0x10000)),
    ("write_np", f"    mov rbx, {B4K + 0x10008:#x}\n    mov [rbx], rax", (14, 0x2, B4K + 0x10008)),
    ("fetch_np", f"    mov rbx, {B4K + 0x10000:#x}\n    call rbx", (14, 0x10, B4K + 0x10000)),
    ("write_ro", f"    mov rbx, {B4K + 0x11010:#x}\n    mov [rbx], rax", (14, 0x3, B4K + 0x11010)),
    ("fetch_nx", f"    mov rbx, {B4K + 0x12000:#x}\n    call rbx", (14, 0x11, B4K + 0x12000)),
    ("read_rsvd", read(B4K + 0x13008, 1), (14, 0x9, B4K + 0x13008)),
    ("write_rsvd", f"    mov rbx, {B4K + 0x13010:#x}\n    mov [rbx], rax", (14, 0xB, B4K + 0x13010)),
    ("fetch_rsvd", f"    mov rbx, {B4K + 0x13000:#x}\n    call rbx", (14, 0x19, B4K + 0x13000)),
    ("read_np_rsvd", read(B4K + 0x15000, 2), (14, 0x0, B4K + 0x15000)),
    ("read_pml4_ps", read(0x100_0000_0000, 3), (14, 0x9, 0x100_0000_0000)),
    ("read_1g_rsvd", read(B + 0x8000_0000, 4), (14, 0x9, B + 0x8000_0000)),
    ("read_2m_rsvd", read(B2M + 0x40_0000, 5), (14, 0x9, B2M + 0x40_0000)),
]

PF_TAIL = (read(B4K + 0x11000, 6)                               # reading read-only: fine
           + read(B4K + 0x12000, 7)                             # reading no-execute: fine
           + kcase("read_high", read(B4K + 0x14000, 8))         # above RAM with 40 bits
           + "    mov rax, cr0\n    and eax, ~0x10000\n    mov cr0, rax\n"   # CR0.WP = 0
           + "    mov rbx, %#x\n    mov qword [rbx], 0x99\n" % (B4K + 0x11018)
           + "    mov ecx, 0xC0000080\n    rdmsr\n    and eax, ~0x800\n    wrmsr\n"  # NXE = 0
           + "    mov rax, cr3\n    mov cr3, rax\n"
           + kcase("read_nx_bit", read(B4K + 0x12000, 9))       # NX bit is now reserved
           + kcase("fetch_np2", f"    mov rbx, {B4K + 0x10000:#x}\n    call rbx"))


def pf_body():
    code = ("    mov rax, cr0\n    or eax, 0x10000\n    mov cr0, rax\n"     # CR0.WP
            "    mov ecx, 0xC0000080\n    rdmsr\n    or eax, 0x800\n    wrmsr\n"  # EFER.NXE
            + PF_TABLES + "".join(kcase(n, c) for n, c, _ in PF_CASES) + PF_TAIL)
    return long_body(code)


def test_page_fault_error_codes_in_4level_paging():
    cpu, reason, lab = run(pf_body())
    assert reason == "hlt"
    got = faults_with_cr2(cpu)
    expected = [e for _, _, e in PF_CASES]
    assert got[:len(expected)] == expected
    # the rest: WP = 0 lets the write through, NX bit reserved with NXE = 0, no I/D bit
    assert got[len(expected):] == [(14, 0x9, B4K + 0x12000), (14, 0x0, B4K + 0x10000)]
    r = records(cpu)
    for (name, _, _), rec in zip(PF_CASES, r):
        if name.startswith("fetch"):
            assert rec["rip"] == rec["cr2"], name            # the fetch faults at the target
        else:
            assert rec["rip"] == lab[f"f_{name}"], name
    assert out(cpu, 6) == 0 and out(cpu, 7) == 0xC3
    assert out(cpu, 8) == 0xFFFFFFFFFFFFFFFF                  # unclaimed physical memory
    assert cpu.mem.read(0x361018, 8) == 0x99
    assert cpu.mem.read(PT2 + 0x11 * 8, 8) == 0x361061        # A | D after the write


def test_reserved_bits_follow_the_physical_address_width():
    cpu, reason, lab = run(pf_body(), phys_bits=36)
    assert reason == "hlt"
    got = faults_with_cr2(cpu)
    expected = [e for _, _, e in PF_CASES]
    # bit 38 of the frame is reserved with 36 address bits
    assert got == expected + [(14, 0x9, B4K + 0x14000), (14, 0x9, B4K + 0x12000),
                              (14, 0x0, B4K + 0x10000)]


# ---------------------------------------------------------------------------- 5-level paging

LA57 = r"""
body:
    mov edi, 0x40000
    xor eax, eax
    mov ecx, 0x8000/4
    rep stosd
    mov dword [0x40000], 0x41003            ; PML5[0] -> identity PML4
    mov dword [0x40000 + 0x80*8], 0x44003   ; PML5[0x80] -> test PML4
    mov dword [0x40000 + 0x100*8], 0x44003  ; PML5[0x100] (negative half) -> test PML4
    mov dword [0x41000], 0x42003
    mov dword [0x42000], 0x43003
    mov edi, 0x43000
    mov eax, 0x83
    mov ecx, 512
.fill:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .fill
    mov dword [0x44000], 0x45003
    mov dword [0x45000], 0x46003
    mov dword [0x46000], 0x47003
    mov dword [0x47000 + 5*8], 0x345003
    mov dword [0x47000 + 1*8], 0x346003
    mov dword [0x345008], 0x5555
    mov dword [0x346010], 0x6666
    mov eax, cr4
    or eax, 0x1020                          ; PAE | LA57, set before paging is on
    mov cr4, eax
    mov eax, 0x40000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x18:lm
bits 64
lm:
    mov rsp, 0x80000
{idt}
    mov rbx, 0x0080000000005008
    mov rax, [rbx]
    mov [0x31000], rax
    mov rbx, 0xFF00000000001010
    mov rax, [rbx]
    mov [0x31008], rax
    mov qword [0x2FFF8], k_1
    mov rbx, 0x0100000000000000             ; bit 56 set, bits 63:57 clear
f_noncanon:
    mov rax, [rbx]
k_1:
    mov qword [0x2FFF8], k_2
    mov rax, cr4
    and eax, ~0x1000
f_cr4:
    mov cr4, rax                            ; LA57 cannot change in long mode
k_2:
    mov rax, cr4
    mov [0x31010], rax
    hlt
{stubs}
"""


def test_5level_paging_with_la57():
    setup, stubs = idt64()
    body = LA57.replace("{idt}", setup).replace("{stubs}", stubs)
    cpu, reason, lab = run(body, "protected")
    assert reason == "hlt"
    assert out(cpu, 0) == 0x5555
    assert out(cpu, 1) == 0x6666
    r = records(cpu)
    assert [(x["vector"], x["error"], x["rip"]) for x in r] == [
        (13, 0, lab["f_noncanon"]), (13, 0, lab["f_cr4"])]
    assert out(cpu, 2) == 0x1020
    assert cpu.mem.read(0x40000 + 0x80 * 8, 8) == 0x44023      # PML5E accessed
    assert cpu.mem.read(0x40000 + 0x100 * 8, 8) == 0x44023
    assert cpu.mem.read(0x47000 + 5 * 8, 8) == 0x345023


# ---------------------------------------------------------------------------- PAE

PAE = r"""
body:
{idt}
    mov edi, 0x40000
    xor eax, eax
    mov ecx, 0x5000/4
    rep stosd
    mov dword [0x40000], 0x41001            ; PDPTE 0 -> PD0 (only P: R/W and U/S are reserved)
    mov dword [0x40008], 0x43001            ; PDPTE 1 -> PD1 (linear 0x40000000)
    mov dword [0x41000], 0x42003            ; PD0[0] -> PT0: identity 4 KiB pages below 2 MiB
    mov edi, 0x42000
    mov eax, 3
    mov ecx, 512
.pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 8
    loop .pt
    mov edi, 0x41008                        ; PD0[1..7]: identity 2 MiB pages up to 16 MiB
    mov eax, 0x200083
    mov ecx, 7
.pd:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .pd
    mov dword [0x43000], 0x400083           ; 0x40000000: 2 MiB page at 4 MiB
    mov dword [0x43008], 0x44003            ; 0x40200000: PT1
{pt1}
    mov dword [0x401234], 0x5151
    mov dword [0x345010], 0x3434
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800                           ; EFER.NXE works in PAE paging too
    wrmsr
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x40000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                      ; PG | WP
    mov cr0, eax
    mov eax, [0x40001234]
    mov [0x31000], eax
    mov dword [0x40000010], 0x77
    mov eax, [0x40203010]
    mov [0x31008], eax
    mov eax, [0x40204000]
    mov [0x31010], eax
{cases}
    hlt
{stubs}
"""

PAE_CASES = [
    ("fetch_nx", "    mov eax, 0x40204000\n    call eax", (14, 0x11, 0x40204000)),
    ("read_np", "    mov eax, [0x40205000]", (14, 0x0, 0x40205000)),
    ("read_rsvd", "    mov eax, [0x40206000]", (14, 0x9, 0x40206000)),
    ("write_ro", "    mov dword [0x40207000], 1", (14, 0x3, 0x40207000)),
    ("read_pdpte_np", "    mov eax, [0x80000000]", (14, 0x0, 0x80000000)),
]


def test_pae_paging():
    setup, stubs = idt32()
    pt1 = (d2(0x44000 + 3 * 8, 0x345003) + d2(0x44000 + 4 * 8, 0x346003 | NX)
           + d2(0x44000 + 6 * 8, 0x347003 | 1 << 45) + d2(0x44000 + 7 * 8, 0x348001)
           + "    mov dword [0x346000], 0xC3\n")
    cases = "".join(kcase(n, c, 32) for n, c, _ in PAE_CASES)
    body = (PAE.replace("{idt}", setup).replace("{stubs}", stubs).replace("{pt1}", pt1)
            .replace("{cases}", cases))
    cpu, reason, lab = run(body, "protected")
    assert reason == "hlt"
    assert cpu.paging.levels == 3
    assert [out(cpu, i) for i in range(3)] == [0x5151, 0x3434, 0xC3]
    assert cpu.mem.read(0x400010, 4) == 0x77
    assert faults_with_cr2(cpu) == [e for _, _, e in PAE_CASES]
    m = cpu.mem
    assert m.read(0x43000, 8) == 0x4000E3        # 2 MiB page written: A | D
    assert m.read(0x43008, 8) == 0x44023
    assert m.read(0x44000 + 3 * 8, 8) == 0x345023
    assert m.read(0x44000 + 4 * 8, 8) == 0x346023 | NX
    assert m.read(0x40008, 8) == 0x43001         # PAE PDPTEs have no accessed bit


# ---------------------------------------------------------------------------- 32-bit paging

PG32 = r"""
body:
{idt}
    mov edi, 0x40000
    xor eax, eax
    mov ecx, 0x3000/4
    rep stosd
    mov dword [0x40000], 0x41003            ; PDE 0 -> PT0: identity 4 KiB pages below 4 MiB
    mov edi, 0x41000
    mov eax, 3
    mov ecx, 1024
.pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pt
    mov dword [0x40004], 0x400083           ; identity 4 MiB pages up to 16 MiB
    mov dword [0x40008], 0x800083
    mov dword [0x4000C], 0xC00083
    mov dword [0x40000 + 256*4], 0x800083   ; 0x40000000: 4 MiB page at 8 MiB
    mov dword [0x40000 + 257*4], 0x42003    ; 0x40400000: PT1
    mov dword [0x40000 + 258*4], 0x2083     ; 0x40800000: 4 MiB page at 4 GiB (PSE-36 bit 13)
    mov dword [0x40000 + 259*4], 0xE00083   ; 0x40C00000: bit 21 set: reserved
    mov dword [0x42000 + 3*4], 0x345003
    mov dword [0x42000 + 4*4], 0x346001     ; read-only
    mov dword [0x800000], 0x347003          ; what PDE 256 points at without PSE
    mov dword [0x812340], 0x6161
    mov dword [0x345008], 0x3434
    mov dword [0x347000], 0x4747
    mov dword [0x348008], 0x4848
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x800                           ; NXE: no I/D bit with 32-bit paging all the same
    wrmsr
    mov eax, cr4
    or eax, 0x10                            ; PSE
    mov cr4, eax
    mov eax, 0x40000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                      ; PG | WP
    mov cr0, eax
    mov eax, [0x40012340]
    mov [0x31000], eax
    mov dword [0x40000100], 0x77
    mov eax, [0x40403008]
    mov [0x31008], eax
    mov dword [0x40800010], 0xABCD          ; physical 0x1_0000_0010
    mov eax, [0x40000000]
    mov [0x31010], eax
{cases}
    ; a paging-mode change flushes the TLB: remap PT1[3], turn paging off and on
    mov dword [0x42000 + 3*4], 0x348003
    mov eax, [0x40403008]
    mov [0x31018], eax                      ; stale
    mov eax, cr0
    and eax, 0x7FFFFFFF
    mov cr0, eax
    or eax, 0x80000000
    mov cr0, eax
    mov eax, [0x40403008]
    mov [0x31020], eax
    ; without CR4.PSE, PDE 256 points at a page table at 8 MiB
    mov eax, cr4
    and eax, ~0x10
    mov cr4, eax
    mov eax, cr3
    mov cr3, eax
    mov eax, [0x40000000]
    mov [0x31028], eax
    hlt
{stubs}
"""

PG32_CASES = [
    ("write_ro", "    mov dword [0x40404000], 1", (14, 0x3, 0x40404000)),
    ("read_np", "    mov eax, [0x40405000]", (14, 0x0, 0x40405000)),
    ("write_np", "    mov dword [0x40405000], 1", (14, 0x2, 0x40405000)),
    ("fetch_np", "    mov eax, 0x40405000\n    call eax", (14, 0x0, 0x40405000)),
    ("read_rsvd", "    mov eax, [0x40C00000]", (14, 0x9, 0x40C00000)),
]


def test_32bit_paging_with_4k_and_4m_pages():
    setup, stubs = idt32()
    cases = "".join(kcase(n, c, 32) for n, c, _ in PG32_CASES)
    body = PG32.replace("{idt}", setup).replace("{stubs}", stubs).replace("{cases}", cases)
    cpu, reason, lab = run(body, "protected", alias_4g=True)
    assert reason == "hlt"
    assert cpu.paging.levels == 2
    assert cpu.mem.read(0x31000, 4) == 0x6161                    # 4 MiB page
    assert cpu.mem.read(0x31008, 4) == 0x3434                    # 4 KiB page
    assert cpu.mem.read(0x800100, 4) == 0x77
    assert cpu.mem.read(0x500010, 4) == 0xABCD                   # PSE-36: bits 39:32 in PDE 20:13
    assert cpu.mem.read(0x31010, 4) == 0x347003                  # 4 MiB page: the raw bytes
    assert faults_with_cr2(cpu) == [e for _, _, e in PG32_CASES]
    m = cpu.mem
    assert m.read(0x40000 + 256 * 4, 4) == 0x8000E3              # 4 MiB page written: A | D
    assert m.read(0x40000 + 257 * 4, 4) == 0x42023
    assert m.read(0x42000 + 4 * 4, 4) & 0x60 == 0                # the faulting write set nothing
    assert m.read(0x40000 + 258 * 4, 4) == 0x20E3


def test_32bit_paging_tlb_flush_on_paging_mode_change_and_pse_off():
    setup, stubs = idt32()
    cases = "".join(kcase(n, c, 32) for n, c, _ in PG32_CASES)
    body = PG32.replace("{idt}", setup).replace("{stubs}", stubs).replace("{cases}", cases)
    cpu, reason, lab = run(body, "protected", alias_4g=True)
    assert reason == "hlt"
    assert cpu.mem.read(0x31008, 4) == 0x3434
    assert cpu.mem.read(0x31018, 4) == 0x3434                    # stale TLB entry
    assert cpu.mem.read(0x31020, 4) == 0x4848                    # flushed by CR0.PG 1 -> 0 -> 1
    assert cpu.mem.read(0x31028, 4) == 0x4747                    # PS ignored without CR4.PSE
    assert cpu.mem.read(0x800000, 4) == 0x347023                 # ... and used as a PTE
