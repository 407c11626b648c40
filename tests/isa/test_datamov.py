"""mov/movzx/movsx/movsxd/xchg/xadd/cmpxchg/cmpxchg8b/cmpxchg16b/lea/cmovcc/setcc/
bswap, cbw/cwde/cdqe/cwd/cdq/cqo, flag instructions, lahf/sahf, xlat."""

import pytest

from conftest import ALIASES, CC, DATA, STATUS, assert_flags, combo_flags, flags_value, make_emu, run_code

J = 0x1122334455667788  # junk upper bits

# ----------------------------------------------------------------------------- setcc / cmovcc


@pytest.mark.parametrize("cc", list(CC) + list(ALIASES))
def test_setcc_all_flag_combinations(cc):
    table = CC[ALIASES.get(cc, cc)]
    emu = make_emu(64)
    for i in range(32):
        run_code(f"set{cc} bh", regs={"rbx": 0xFFFF_FFFF_FFFF_55FF}, flags=combo_flags(i), emu=emu)
        assert emu.reg_read("rbx") == 0xFFFF_FFFF_FFFF_00FF | (((table >> i) & 1) << 8), i
        assert emu.reg_read("rflags") & 0x8D5 == combo_flags(i) & 0x8D5


@pytest.mark.parametrize("cc", list(CC))
def test_setcc_memory_and_rex_byte_regs(cc):
    table = CC[cc]
    emu = make_emu(64)
    for i in (0, 7, 21, 31, 12, 25):
        run_code(f"set{cc} byte [{DATA:#x}]\nset{cc} sil\nset{cc} r11b", regs={"rsi": 0xAAAA, "r11": 0x5555},
                 mem={DATA: b"\x77\x77"}, flags=combo_flags(i), emu=emu)
        bit = (table >> i) & 1
        assert emu.mem_read(DATA, 2) == bytes([bit, 0x77])
        assert emu.reg_read("rsi") == 0xAA00 | bit
        assert emu.reg_read("r11") == 0x5500 | bit


@pytest.mark.parametrize("cc", list(CC))
def test_cmovcc_all_flag_combinations(cc):
    table = CC[cc]
    emu = make_emu(64)
    for i in range(32):
        taken = (table >> i) & 1
        run_code(f"cmov{cc} rax, rbx\ncmov{cc} ecx, edx\ncmov{cc} si, di",
                 regs={"rax": 1, "rbx": 2, "rcx": J, "rdx": 0xAAAA_BBBB_CCCC_DDDD, "rsi": J, "rdi": 0x9999},
                 flags=combo_flags(i), emu=emu)
        assert emu.reg_read("rax") == (2 if taken else 1)
        # a 32-bit cmov always writes (zero-extends) its destination, even when the condition is false
        assert emu.reg_read("rcx") == (0xCCCCDDDD if taken else 0x55667788)
        assert emu.reg_read("rsi") == (J & ~0xFFFF) | (0x9999 if taken else 0x7788)
        assert emu.reg_read("rflags") & 0x8D5 == combo_flags(i) & 0x8D5


@pytest.mark.parametrize("cc", ["e", "ne", "l", "a"])
def test_cmovcc_memory_source(cc):
    for i in (0, 4, 17, 31):
        taken = (CC[cc] >> i) & 1
        emu = run_code(f"cmov{cc} r9, [rel v]\ncmov{cc} r10d, [rel v]\njmp e\nv: dq 0x8877665544332211\ne:",
                       regs={"r9": 5, "r10": J}, flags=combo_flags(i))
        assert emu.reg_read("r9") == (0x8877665544332211 if taken else 5)
        assert emu.reg_read("r10") == (0x44332211 if taken else 0x55667788)


@pytest.mark.parametrize("mode", [16, 32])
def test_cmov_setcc_legacy_modes(mode):
    emu = run_code("cmp eax, ebx\nsetl cl\nsetb ch\ncmovg edx, eax\ncmovl si, bx", mode=mode,
                   regs={"eax": 0xFFFFFFFF, "ebx": 1, "ecx": 0x9999, "edx": 7, "esi": 0x12345678})
    assert emu.reg_read("cx") == 0x0001   # -1 < 1 signed, but 0xffffffff > 1 unsigned
    assert emu.reg_read("edx") == 7
    assert emu.reg_read("esi") == 0x12340001


# ----------------------------------------------------------------------------- mov family


def test_mov_register_sizes_64bit_mode():
    src = """
        mov rax, rbx
        mov ecx, ebx
        mov dx, bx
        mov sil, bl
        mov ah, bl
        mov r8, -2
        mov r9d, -2
        mov r10w, -2
        mov r11b, -2
        mov r12, 0x123456789abcdef0
        mov dword [rdi], 0x80000000
        mov qword [rdi+8], -3
        mov word [rdi+16], 0x1234
        mov byte [rdi+18], 0x56
    """
    init = {n: J for n in ("rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r12")}
    emu = run_code(src, regs={"rax": J, "rbx": 0xA1A2A3A4A5A6A7A8, "rdi": DATA, **init})
    assert emu.reg_read("rax") == 0xA1A2A3A4A5A6A8A8   # mov ah, bl after mov rax, rbx
    assert emu.reg_read("rcx") == 0xA5A6A7A8
    assert emu.reg_read("rdx") == 0x112233445566A7A8
    assert emu.reg_read("rsi") == 0x11223344556677A8
    assert emu.reg_read("r8") == 0xFFFFFFFFFFFFFFFE
    assert emu.reg_read("r9") == 0xFFFFFFFE
    assert emu.reg_read("r10") == 0x112233445566FFFE
    assert emu.reg_read("r11") == 0x11223344556677FE
    assert emu.reg_read("r12") == 0x123456789ABCDEF0
    assert emu.mem_read(DATA, 20) == bytes.fromhex("00000080 00000000 fdffffffffffffff 3412 56 00")


def test_mov_to_high_byte_after_al():
    emu = run_code("mov ah, bl", regs={"rax": J, "rbx": 0xCD})
    assert emu.reg_read("rax") == 0x112233445566CD88


def test_mov_moffs_64bit_absolute():
    # A0/A1/A2/A3 with a 64-bit absolute address
    src = f"mov al, [qword {DATA:#x}]\nmov [qword {DATA + 8:#x}], eax\nmov rcx, rax\nmov rax, [qword {DATA:#x}]"
    emu = run_code(src, regs={"rax": J}, mem={DATA: bytes(range(0x40, 0x48))})
    assert emu.reg_read("rcx") == 0x1122334455667740
    assert emu.mem_read(DATA + 8, 4) == bytes.fromhex("40776655")
    assert emu.reg_read("rax") == 0x4746454443424140


def test_mov_rip_relative():
    emu = run_code("mov rax, [rel v]\nmov [rel w], ax\njmp e\nv: dq 0x0102030405060708\nw: dw 0\ne:")
    assert emu.reg_read("rax") == 0x0102030405060708
    from conftest import labels
    w = labels("mov rax, [rel v]\nmov [rel w], ax\njmp e\nv: dq 0x0102030405060708\nw: dw 0\ne:")["w"]
    assert emu.mem_read(w, 2) == b"\x08\x07"


@pytest.mark.parametrize("insn,src,expect", [
    ("movzx ax, bl", 0x80, J & ~0xFFFF | 0x0080),
    ("movzx eax, bl", 0xFF, 0xFF),
    ("movzx rax, bl", 0x7F, 0x7F),
    ("movzx eax, bx", 0x8000, 0x8000),
    ("movzx rax, bx", 0xFFFF, 0xFFFF),
    ("movsx ax, bl", 0x80, J & ~0xFFFF | 0xFF80),
    ("movsx ax, bl", 0x7F, J & ~0xFFFF | 0x007F),
    ("movsx eax, bl", 0xFF, 0xFFFFFFFF),
    ("movsx rax, bl", 0x80, 0xFFFFFFFFFFFFFF80),
    ("movsx eax, bx", 0x8000, 0xFFFF8000),
    ("movsx rax, bx", 0x7FFF, 0x7FFF),
    ("movsx rax, bx", 0xFFFE, 0xFFFFFFFFFFFFFFFE),
    ("movsxd rax, ebx", 0x80000000, 0xFFFFFFFF80000000),
    ("movsxd rax, ebx", 0x7FFFFFFF, 0x7FFFFFFF),
    ("movsx eax, bh", 0x8000, 0xFFFFFF80),
    ("movzx r15d, bl", 0xAB, 0xAB),
])
def test_movzx_movsx(insn, src, expect):
    dst = insn.split()[1].rstrip(",")
    full = {"ax": "rax", "eax": "rax", "rax": "rax", "r15d": "r15"}[dst]
    emu = run_code(insn, regs={full: J, "rbx": 0x5A5A5A5A00000000 | src}, flags=flags_value("CF ZF"))
    assert emu.reg_read(full) == expect
    assert_flags(emu, {"CF": 1, "ZF": 1, "SF": 0})


def test_movzx_movsx_memory():
    emu = run_code("movzx eax, byte [rsi]\nmovsx ecx, word [rsi+1]\nmovsxd rdx, dword [rsi+3]",
                   regs={"rsi": DATA}, mem={DATA: bytes([0x90, 0x12, 0x80, 0x00, 0x00, 0x00, 0x80])})
    assert emu.reg_read("rax") == 0x90
    assert emu.reg_read("rcx") == 0xFFFF8012
    assert emu.reg_read("rdx") == 0xFFFFFFFF80000000


@pytest.mark.parametrize("mode", [16, 32])
def test_mov_movzx_legacy_modes(mode):
    emu = run_code("mov eax, 0x80000001\nmovsx ebx, al\nmovzx cx, ah\nmov si, [di+2]\nmov [di], eax",
                   mode=mode, regs={"edi": DATA, "ecx": 0xFFFFFFFF}, mem={DATA: bytes(range(8))})
    assert emu.reg_read("eax") == 0x80000001
    assert emu.reg_read("ebx") == 1
    assert emu.reg_read("ecx") == 0xFFFF0000
    assert emu.reg_read("si") == 0x0302
    assert emu.mem_read(DATA, 4) == bytes.fromhex("01000080")


# ----------------------------------------------------------------------------- xchg / xadd / cmpxchg


def test_xchg_registers():
    src = "xchg rax, rbx\nxchg cl, dh\nxchg si, di\nxchg r8d, r9d\nxchg ah, al"
    emu = run_code(src, regs={"rax": 0x0A0B, "rbx": 0x1122, "rcx": J, "rdx": 0xFFFF, "rsi": J, "rdi": 7,
                              "r8": J, "r9": 0xFFFFFFFF00000005}, flags=flags_value("CF ZF"))
    assert emu.reg_read("rax") == 0x2211
    assert emu.reg_read("rbx") == 0x0A0B
    assert emu.reg_read("rcx") == (J & ~0xFF) | 0xFF
    assert emu.reg_read("rdx") == 0x88FF
    assert emu.reg_read("rsi") == (J & ~0xFFFF) | 7
    assert emu.reg_read("rdi") == 0x7788
    assert emu.reg_read("r8") == 5
    assert emu.reg_read("r9") == 0x55667788
    assert_flags(emu, {"CF": 1, "ZF": 1})


def test_xchg_eax_eax_zero_extends_but_nop_does_not():
    emu = run_code("db 0x87, 0xc0", regs={"rax": J})      # xchg eax, eax (ModRM form)
    assert emu.reg_read("rax") == 0x55667788
    emu = run_code("db 0x90", regs={"rax": J})            # nop
    assert emu.reg_read("rax") == J
    emu = run_code("db 0x48, 0x90", regs={"rax": J})      # xchg rax, rax
    assert emu.reg_read("rax") == J


def test_xchg_rex_b_90_is_xchg_r8():
    emu = run_code("db 0x41, 0x90", regs={"rax": J, "r8": 0xFFFFFFFF12345678})   # xchg r8d, eax
    assert emu.reg_read("rax") == 0x12345678
    assert emu.reg_read("r8") == 0x55667788
    emu = run_code("db 0x49, 0x90", regs={"rax": J, "r8": 3})                    # xchg r8, rax
    assert emu.reg_read("rax") == 3
    assert emu.reg_read("r8") == J


def test_xchg_memory():
    emu = run_code(f"xchg [{DATA:#x}], ecx\nlock xchg word [{DATA + 4:#x}], dx",
                   regs={"rcx": 0xAABBCCDD, "rdx": 0x1234}, mem={DATA: bytes(range(1, 9))})
    assert emu.reg_read("rcx") == 0x04030201
    assert emu.reg_read("rdx") == 0x0605
    assert emu.mem_read(DATA, 8) == bytes.fromhex("ddccbbaa34120708")


# (size, dest, src, sum, flags set) -- xadd flags are those of ADD
XADD = [
    (8, 0xFF, 0x01, 0x00, "CF PF AF ZF"),
    (8, 0x7F, 0x01, 0x80, "AF SF OF"),
    (16, 0x8000, 0x8000, 0x0000, "CF PF ZF OF"),
    (16, 0x1234, 0x0001, 0x1235, "PF"),
    (32, 0xFFFFFFFF, 0x00000002, 0x00000001, "CF AF"),
    (32, 0x7FFFFFFF, 0x00000000, 0x7FFFFFFF, "PF"),
    (64, 0x7FFFFFFFFFFFFFFF, 0x1, 0x8000000000000000, "PF AF SF OF"),
    (64, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, "CF PF OF"),
]
REG2 = {8: ("cl", "dl"), 16: ("cx", "dx"), 32: ("ecx", "edx"), 64: ("rcx", "rdx")}
KW = {8: "byte", 16: "word", 32: "dword", 64: "qword"}


def _exp(fl, names=STATUS):
    return {n: int(n in fl.split()) for n in names}


@pytest.mark.parametrize("size,d,s,res,fl", XADD)
def test_xadd_register(size, d, s, res, fl):
    dr, sr = REG2[size]
    emu = run_code(f"xadd {dr}, {sr}", regs={"rcx": d, "rdx": s},
                   flags=flags_value([n for n in STATUS if n not in fl.split()]))
    assert emu.reg_read(dr) == res
    assert emu.reg_read(sr) == d
    assert_flags(emu, _exp(fl))


@pytest.mark.parametrize("size,d,s,res,fl", XADD)
def test_xadd_memory_lock(size, d, s, res, fl):
    nb = size // 8
    emu = run_code(f"lock xadd {KW[size]} [rdi], {REG2[size][1]}", regs={"rdi": DATA, "rdx": s},
                   mem={DATA: d.to_bytes(nb, "little")})
    assert emu.mem_read(DATA, nb) == res.to_bytes(nb, "little")
    assert emu.reg_read(REG2[size][1]) == d
    assert_flags(emu, _exp(fl))


# (size, accumulator, dest, src, equal?, cmp flags set)
CMPXCHG = [
    (8, 0x10, 0x10, 0x99, 1, "PF ZF"),
    (8, 0x10, 0x20, 0x99, 0, "CF PF SF"),
    (16, 0x8000, 0x0001, 0x5555, 0, "PF AF OF"),
    (16, 0xFFFF, 0xFFFF, 0x0000, 1, "PF ZF"),
    (32, 0x00000000, 0x00000001, 0xAAAAAAAA, 0, "CF PF AF SF"),
    (32, 0x12345678, 0x12345678, 0x0BADF00D, 1, "PF ZF"),
    (64, 0x8000000000000000, 0x1, 0x3, 0, "PF AF OF"),
    (64, 0x123456789, 0x123456789, 0xFEDCBA987, 1, "PF ZF"),
]
ACC = {8: "al", 16: "ax", 32: "eax", 64: "rax"}


@pytest.mark.parametrize("size,acc,d,s,eq,fl", CMPXCHG)
def test_cmpxchg_memory(size, acc, d, s, eq, fl):
    nb = size // 8
    emu = run_code(f"lock cmpxchg {KW[size]} [rdi], {REG2[size][1]}",
                   regs={"rax": acc, "rdx": s, "rdi": DATA}, mem={DATA: d.to_bytes(nb, "little")})
    assert emu.mem_read(DATA, nb) == (s if eq else d).to_bytes(nb, "little")
    assert emu.reg_read(ACC[size]) == (acc if eq else d)
    assert_flags(emu, _exp(fl))


@pytest.mark.parametrize("size,acc,d,s,eq,fl", CMPXCHG)
def test_cmpxchg_register(size, acc, d, s, eq, fl):
    dr, sr = REG2[size]
    emu = run_code(f"cmpxchg {dr}, {sr}", regs={"rax": acc, "rcx": d, "rdx": s})
    assert emu.reg_read(dr) == (s if eq else d)
    assert emu.reg_read(ACC[size]) == (acc if eq else d)
    assert emu.reg_read(sr) == s
    assert_flags(emu, _exp(fl))


@pytest.mark.parametrize("mode", [32, 64])
@pytest.mark.parametrize("eq", [0, 1])
def test_cmpxchg8b(mode, eq):
    mem = bytes.fromhex("8877665544332211")
    regs = {"eax": 0x55667788 if eq else 0x55667789, "edx": 0x11223344, "ebx": 0xDDCCBBAA, "ecx": 0x01020304,
            "edi": DATA}
    fl = flags_value("CF PF AF SF OF")
    emu = run_code("lock cmpxchg8b [edi]" if mode == 32 else "lock cmpxchg8b [rdi]", mode=mode, regs=regs,
                   mem={DATA: mem}, flags=fl)
    if eq:
        assert emu.mem_read(DATA, 8) == bytes.fromhex("aabbccdd04030201")
        assert emu.reg_read("eax") == 0x55667788
    else:
        assert emu.mem_read(DATA, 8) == mem
        assert emu.reg_read("eax") == 0x55667788
        assert emu.reg_read("edx") == 0x11223344
    # only ZF is written
    assert_flags(emu, {"ZF": eq, "CF": 1, "PF": 1, "AF": 1, "SF": 1, "OF": 1}, mode=mode)


@pytest.mark.parametrize("eq", [0, 1])
def test_cmpxchg16b(eq):
    mem = bytes(range(16))
    lo, hi = int.from_bytes(mem[:8], "little"), int.from_bytes(mem[8:], "little")
    regs = {"rax": lo if eq else lo + 1, "rdx": hi, "rbx": 0xAAAAAAAAAAAAAAAA, "rcx": 0xBBBBBBBBBBBBBBBB,
            "rsi": DATA + 0x10}
    emu = run_code("lock cmpxchg16b [rsi]", regs=regs, mem={DATA + 0x10: mem}, flags=flags_value("CF SF"))
    if eq:
        assert emu.mem_read(DATA + 0x10, 16) == b"\xaa" * 8 + b"\xbb" * 8
        assert emu.reg_read("rax") == lo
    else:
        assert emu.mem_read(DATA + 0x10, 16) == mem
        assert emu.reg_read("rax") == lo
        assert emu.reg_read("rdx") == hi
    assert_flags(emu, {"ZF": eq, "CF": 1, "SF": 1, "OF": 0})


# ----------------------------------------------------------------------------- lea


@pytest.mark.parametrize("insn,expect", [
    ("lea rax, [rbx+rcx*4+0x10]", 0x1000_0000_0000_0000 + 0x20 * 4 + 0x10 + 0x100),
    ("lea rax, [rbx+rcx*8-8]", 0x1000_0000_0000_0100 + 0x100 - 8),
    ("lea rax, [rcx*2]", 0x40),
    ("lea rax, [rbx+rbx]", 0x2000_0000_0000_0200),
    ("lea eax, [rbx+rcx]", 0x120),                       # 32-bit destination: truncated
    ("lea ax, [rbx+rcx+0xFFFF]", J & ~0xFFFF | 0x011F),  # 16-bit destination: only ax written
    ("lea rax, [ebx+ecx]", 0x120),                       # 0x67: 32-bit address, zero-extended
    ("lea rax, [edx+1]", 0),                             # 32-bit address wraps
    ("lea rax, [rdx+1]", 0x1_0000_0000),
    ("lea rax, [rdx*2+2]", 0x2_0000_0000),
    ("lea r13, [r12+r13*2]", 0x3 + 0x4 * 2),
    ("lea rax, [rbp+rsp]", 0xFF00 + 0x10),
])
def test_lea(insn, expect):
    emu = run_code(insn, regs={"rax": J, "rbx": 0x1000_0000_0000_0100, "rcx": 0x20, "rdx": 0xFFFFFFFF,
                               "r12": 3, "r13": 4, "rbp": 0x10}, flags=flags_value("ZF"))
    assert emu.reg_read("rax" if "r13" not in insn else "r13") == expect
    assert_flags(emu, {"ZF": 1, "CF": 0})


def test_lea_rip_relative():
    src = "lea rax, [rel here]\nhere: lea rbx, [rel $]"
    from conftest import labels
    emu = run_code(src)
    assert emu.reg_read("rax") == labels(src)["here"]
    assert emu.reg_read("rbx") == labels(src)["here"]


@pytest.mark.parametrize("insn,regs,expect", [
    ("lea ax, [bx+si+0x10]", {"ebx": 0x1000, "esi": 0x0200}, 0x1210),
    ("lea ax, [bx+si+0x10]", {"ebx": 0xFFF0, "esi": 0x0001}, 0x0001),    # 16-bit wraparound
    ("lea ax, [bp+di-1]", {"ebp": 0, "edi": 0}, 0xFFFF),
    ("lea eax, [bx+di]", {"ebx": 0xFFFF, "edi": 0xFFFF}, 0xFFFE),        # address size 16, zero-extended
    ("lea eax, [ebx+edi*2]", {"ebx": 0x10000, "edi": 0x8000}, 0x20000),  # 0x67 in 16-bit mode
    ("lea ax, [ebx+edi*2]", {"ebx": 0x10000, "edi": 0x8001}, 0x0002),
])
def test_lea_16bit_mode(insn, regs, expect):
    emu = run_code(insn, mode=16, regs={"eax": 0xAAAAAAAA, **regs})
    reg = insn.split()[1].rstrip(",")
    assert emu.reg_read(reg) == expect
    if reg == "ax":
        assert emu.reg_read("eax") >> 16 == 0xAAAA


@pytest.mark.parametrize("insn,regs,expect", [
    ("lea eax, [ebx+ecx*8+0x7FFFFFFF]", {"ebx": 1, "ecx": 0}, 0x80000000),
    ("lea eax, [ebx+ecx*8]", {"ebx": 0xFFFFFFF8, "ecx": 2}, 0x8),
    ("lea ax, [ebx+ecx]", {"ebx": 0x12345, "ecx": 0x10000}, 0x2345),
    ("lea eax, [bx+si+2]", {"ebx": 0x1FFFF, "esi": 0}, 0x0001),          # 0x67 in 32-bit mode
])
def test_lea_32bit_mode(insn, regs, expect):
    emu = run_code(insn, mode=32, regs={"eax": 0xAAAAAAAA, **regs})
    reg = insn.split()[1].rstrip(",")
    assert emu.reg_read(reg) == expect


# ----------------------------------------------------------------------------- bswap


@pytest.mark.parametrize("insn,reg,val,expect", [
    ("bswap eax", "rax", 0xFFFFFFFF12345678, 0x78563412),
    ("bswap rax", "rax", 0x0102030405060708, 0x0807060504030201),
    ("bswap r9d", "r9", 0xAABBCCDD, 0xDDCCBBAA),
    ("bswap r12", "r12", 0x8000000000000001, 0x0100000000000080),
    ("bswap edi", "rdi", 0x80, 0x80000000),
])
def test_bswap(insn, reg, val, expect):
    emu = run_code(insn, regs={reg: val}, flags=flags_value("CF OF"))
    assert emu.reg_read(reg) == expect
    assert_flags(emu, {"CF": 1, "OF": 1})


def test_bswap_32bit_mode():
    emu = run_code("bswap ecx\nbswap esi", mode=32, regs={"ecx": 0x11223344, "esi": 0xFF})
    assert emu.reg_read("ecx") == 0x44332211
    assert emu.reg_read("esi") == 0xFF000000


# ----------------------------------------------------------------------------- sign extension


@pytest.mark.parametrize("insn,rax,rdx,ex_rax,ex_rdx", [
    ("cbw", 0x1111111111111180, J, 0x111111111111FF80, J),
    ("cbw", 0x111111111111117F, J, 0x111111111111007F, J),
    ("cwde", 0x1111111111118000, J, 0xFFFF8000, J),
    ("cwde", 0x1111111111117FFF, J, 0x00007FFF, J),
    ("cdqe", 0x1111111180000000, J, 0xFFFFFFFF80000000, J),
    ("cdqe", 0x111111117FFFFFFF, J, 0x7FFFFFFF, J),
    ("cwd", 0x8000, J, 0x8000, J | 0xFFFF),
    ("cwd", 0x7FFF, J, 0x7FFF, J & ~0xFFFF),
    ("cdq", 0x1111111180000000, J, 0x1111111180000000, 0xFFFFFFFF),
    ("cdq", 0x111111117FFFFFFF, J, 0x111111117FFFFFFF, 0),
    ("cqo", 0x8000000000000000, J, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF),
    ("cqo", 0x7FFFFFFFFFFFFFFF, J, 0x7FFFFFFFFFFFFFFF, 0),
])
def test_sign_extension_accumulator(insn, rax, rdx, ex_rax, ex_rdx):
    emu = run_code(insn, regs={"rax": rax, "rdx": rdx})
    assert emu.reg_read("rax") == ex_rax
    assert emu.reg_read("rdx") == ex_rdx


@pytest.mark.parametrize("mode", [16, 32])
def test_sign_extension_legacy_modes(mode):
    emu = run_code("cbw\nmov cx, ax\ncwde\nmov ebx, eax\ncdq", mode=mode, regs={"eax": 0x12345690})
    assert emu.reg_read("cx") == 0xFF90
    assert emu.reg_read("ebx") == 0xFFFFFF90
    assert emu.reg_read("edx") == 0xFFFFFFFF
    emu = run_code("cwd", mode=mode, regs={"eax": 0x00008000, "edx": 0x12345678})
    assert emu.reg_read("edx") == 0x1234FFFF


# ----------------------------------------------------------------------------- flag instructions


@pytest.mark.parametrize("insn,before,after", [
    ("clc", "CF ZF", "ZF"), ("clc", "", ""),
    ("stc", "", "CF"), ("stc", "CF OF", "CF OF"),
    ("cmc", "CF PF", "PF"), ("cmc", "SF", "CF SF"),
])
def test_carry_flag_instructions(insn, before, after):
    emu = run_code(insn, flags=flags_value(before))
    assert emu.reg_read("rflags") & 0xFFF == flags_value(after)


def test_cld_std():
    emu = run_code("std\npushfq\ncld\npushfq\npop rbx\npop rax", flags=flags_value("CF"))
    assert emu.reg_read("rax") & 0xFFF == flags_value("CF DF")
    assert emu.reg_read("rbx") & 0xFFF == flags_value("CF")
    assert emu.reg_read("rflags") & 0xFFF == flags_value("CF")


@pytest.mark.parametrize("mode", [32, 64])
@pytest.mark.parametrize("fl,ah", [
    ("", 0x02), ("CF", 0x03), ("PF", 0x06), ("AF", 0x12), ("ZF", 0x42), ("SF", 0x82),
    ("CF PF AF ZF SF", 0xD7), ("OF", 0x02), ("CF SF OF", 0x83),
])
def test_lahf(mode, fl, ah):
    regs = {"eax": 0x12345678}
    emu = run_code("lahf", mode=mode, regs=regs, flags=flags_value(fl))
    assert emu.reg_read("eax") == 0x1234_0078 | (ah << 8)


@pytest.mark.parametrize("mode", [32, 64])
@pytest.mark.parametrize("ah,before,after", [
    (0xFF, "", "CF PF AF ZF SF"),
    (0x00, "CF PF AF ZF SF OF", "OF"),      # SAHF does not touch OF
    (0x41, "SF", "CF ZF"),
    (0x28, "OF", "OF"),                     # bits 3 and 5 of AH are ignored
    (0x94, "CF", "PF AF SF"),
])
def test_sahf(mode, ah, before, after):
    emu = run_code("sahf", mode=mode, regs={"eax": ah << 8}, flags=flags_value(before))
    assert emu.reg_read("eflags") & 0xFFF == flags_value(after)


# ----------------------------------------------------------------------------- xlat


@pytest.mark.parametrize("mode", [16, 32, 64])
def test_xlat(mode):
    table = bytes((i * 7 + 3) & 0xFF for i in range(256))
    bx = {16: "ebx", 32: "ebx", 64: "rbx"}[mode]
    emu = run_code("xlatb", mode=mode, regs={bx: DATA, "eax": 0x1234_56F0}, mem={DATA: table})
    assert emu.reg_read("eax") == 0x1234_5600 | table[0xF0]


def test_xlat_64bit_uses_rbx():
    emu = run_code("xlatb", regs={"rbx": 0x1_0000_0000 + DATA, "rax": 5},
                   mem={DATA: bytes(range(16))})
    # rbx points beyond 4 GiB where nothing is mapped: reads all ones
    assert emu.reg_read("al") == 0xFF


def test_xlat_address_size_override_64bit():
    emu = run_code("a32 xlatb", regs={"rbx": 0xFFFF_FFFF_0000_0000 + DATA, "rax": 5},
                   mem={DATA: bytes(range(16))})
    assert emu.reg_read("al") == 5
