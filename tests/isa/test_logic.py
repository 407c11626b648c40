"""and/or/xor/test/not at every operand size.  OF=CF=0, SF/ZF/PF from the result, AF undefined."""

import pytest

from conftest import DATA, GUEST_FLAGS, assert_flags, assert_guest_flags, expect_flags, flags_value, mask, run_code

DEFINED = ("CF", "PF", "ZF", "SF", "OF")
REG = {8: ("al", "bl"), 16: ("ax", "bx"), 32: ("eax", "ebx"), 64: ("rax", "rbx")}
KW = {8: "byte", 16: "word", 32: "dword", 64: "qword"}
HI = 0xA5A5A5A5A5A5A5A5


def merge(old, new, size):
    if size == 32:
        return new
    return (old & ~mask(size)) | new if size < 64 else new


# (op, size, a, b, result, flags set)
LOGIC = [
    ("and", 8, 0x85, 0xf6, 0x84, "PF SF"),
    ("and", 8, 0xec, 0xa9, 0xa8, "SF"),
    ("and", 8, 0x97, 0x58, 0x10, ""),
    ("and", 8, 0x0, 0x0, 0x0, "PF ZF"),
    ("and", 8, 0xff, 0x1, 0x1, ""),
    ("and", 8, 0xff, 0xff, 0xff, "PF SF"),
    ("and", 8, 0x80, 0x80, 0x80, "SF"),
    ("and", 8, 0x7f, 0x7f, 0x7f, ""),
    ("and", 8, 0x7f, 0x80, 0x0, "PF ZF"),
    ("and", 8, 0x10, 0x1, 0x0, "PF ZF"),
    ("and", 8, 0x5a, 0xa7, 0x2, ""),
    ("and", 8, 0xff, 0x0, 0x0, "PF ZF"),
    ("and", 8, 0x80, 0x80, 0x80, "SF"),
    ("and", 16, 0x5d65, 0xbac3, 0x1841, "PF"),
    ("and", 16, 0xa4aa, 0xa8d0, 0xa080, "SF"),
    ("and", 16, 0x77f3, 0x86a5, 0x6a1, ""),
    ("and", 16, 0x0, 0x0, 0x0, "PF ZF"),
    ("and", 16, 0xffff, 0x1, 0x1, ""),
    ("and", 16, 0xffff, 0xffff, 0xffff, "PF SF"),
    ("and", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("and", 16, 0x7fff, 0x7fff, 0x7fff, "PF"),
    ("and", 16, 0x7fff, 0x8000, 0x0, "PF ZF"),
    ("and", 16, 0x10, 0x1, 0x0, "PF ZF"),
    ("and", 16, 0x1234, 0xfedc, 0x1214, "PF"),
    ("and", 16, 0xffff, 0x0, 0x0, "PF ZF"),
    ("and", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("and", 32, 0x6300f7a1, 0xa637695b, 0x22006101, ""),
    ("and", 32, 0x7577e5ca, 0x488f7ebc, 0x40076488, "PF"),
    ("and", 32, 0x30df2fd9, 0x4eb42ef1, 0x942ed1, "PF"),
    ("and", 32, 0x0, 0x0, 0x0, "PF ZF"),
    ("and", 32, 0xffffffff, 0x1, 0x1, ""),
    ("and", 32, 0xffffffff, 0xffffffff, 0xffffffff, "PF SF"),
    ("and", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("and", 32, 0x7fffffff, 0x7fffffff, 0x7fffffff, "PF"),
    ("and", 32, 0x7fffffff, 0x80000000, 0x0, "PF ZF"),
    ("and", 32, 0x10, 0x1, 0x0, "PF ZF"),
    ("and", 32, 0x12345678, 0x9abcdef0, 0x12345670, ""),
    ("and", 32, 0xffffffff, 0x0, 0x0, "PF ZF"),
    ("and", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("and", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0x1de440b00e102289, ""),
    ("and", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0x41d14c604861aa22, "PF"),
    ("and", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0x50811b09012620, ""),
    ("and", 64, 0x0, 0x0, 0x0, "PF ZF"),
    ("and", 64, 0xffffffffffffffff, 0x1, 0x1, ""),
    ("and", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, "PF SF"),
    ("and", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
    ("and", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff, "PF"),
    ("and", 64, 0x7fffffffffffffff, 0x8000000000000000, 0x0, "PF ZF"),
    ("and", 64, 0x10, 0x1, 0x0, "PF ZF"),
    ("and", 64, 0x123456789abcdef, 0xfedcba9876543210, 0x0, "PF ZF"),
    ("and", 64, 0xffffffffffffffff, 0x0, 0x0, "PF ZF"),
    ("and", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
    ("or", 8, 0x85, 0xf6, 0xf7, "SF"),
    ("or", 8, 0xec, 0xa9, 0xed, "PF SF"),
    ("or", 8, 0x97, 0x58, 0xdf, "SF"),
    ("or", 8, 0x0, 0x0, 0x0, "PF ZF"),
    ("or", 8, 0xff, 0x1, 0xff, "PF SF"),
    ("or", 8, 0xff, 0xff, 0xff, "PF SF"),
    ("or", 8, 0x80, 0x80, 0x80, "SF"),
    ("or", 8, 0x7f, 0x7f, 0x7f, ""),
    ("or", 8, 0x7f, 0x80, 0xff, "PF SF"),
    ("or", 8, 0x10, 0x1, 0x11, "PF"),
    ("or", 8, 0x5a, 0xa7, 0xff, "PF SF"),
    ("or", 8, 0xff, 0x0, 0xff, "PF SF"),
    ("or", 8, 0x80, 0x80, 0x80, "SF"),
    ("or", 16, 0x5d65, 0xbac3, 0xffe7, "PF SF"),
    ("or", 16, 0xa4aa, 0xa8d0, 0xacfa, "PF SF"),
    ("or", 16, 0x77f3, 0x86a5, 0xf7f7, "SF"),
    ("or", 16, 0x0, 0x0, 0x0, "PF ZF"),
    ("or", 16, 0xffff, 0x1, 0xffff, "PF SF"),
    ("or", 16, 0xffff, 0xffff, 0xffff, "PF SF"),
    ("or", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("or", 16, 0x7fff, 0x7fff, 0x7fff, "PF"),
    ("or", 16, 0x7fff, 0x8000, 0xffff, "PF SF"),
    ("or", 16, 0x10, 0x1, 0x11, "PF"),
    ("or", 16, 0x1234, 0xfedc, 0xfefc, "PF SF"),
    ("or", 16, 0xffff, 0x0, 0xffff, "PF SF"),
    ("or", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("or", 32, 0x6300f7a1, 0xa637695b, 0xe737fffb, "SF"),
    ("or", 32, 0x7577e5ca, 0x488f7ebc, 0x7dfffffe, ""),
    ("or", 32, 0x30df2fd9, 0x4eb42ef1, 0x7eff2ff9, "PF"),
    ("or", 32, 0x0, 0x0, 0x0, "PF ZF"),
    ("or", 32, 0xffffffff, 0x1, 0xffffffff, "PF SF"),
    ("or", 32, 0xffffffff, 0xffffffff, 0xffffffff, "PF SF"),
    ("or", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("or", 32, 0x7fffffff, 0x7fffffff, 0x7fffffff, "PF"),
    ("or", 32, 0x7fffffff, 0x80000000, 0xffffffff, "PF SF"),
    ("or", 32, 0x10, 0x1, 0x11, "PF"),
    ("or", 32, 0x12345678, 0x9abcdef0, 0x9abcdef8, "SF"),
    ("or", 32, 0xffffffff, 0x0, 0xffffffff, "PF SF"),
    ("or", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("or", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0xdffd5bb93ff7f2ff, "PF SF"),
    ("or", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0xf7f7df7f5ff7fb27, "PF SF"),
    ("or", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0xecf7ad9ffdb7f730, "PF SF"),
    ("or", 64, 0x0, 0x0, 0x0, "PF ZF"),
    ("or", 64, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, "PF SF"),
    ("or", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, "PF SF"),
    ("or", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
    ("or", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff, "PF"),
    ("or", 64, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff, "PF SF"),
    ("or", 64, 0x10, 0x1, 0x11, "PF"),
    ("or", 64, 0x123456789abcdef, 0xfedcba9876543210, 0xffffffffffffffff, "PF SF"),
    ("or", 64, 0xffffffffffffffff, 0x0, 0xffffffffffffffff, "PF SF"),
    ("or", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
    ("xor", 8, 0x85, 0xf6, 0x73, ""),
    ("xor", 8, 0xec, 0xa9, 0x45, ""),
    ("xor", 8, 0x97, 0x58, 0xcf, "PF SF"),
    ("xor", 8, 0x0, 0x0, 0x0, "PF ZF"),
    ("xor", 8, 0xff, 0x1, 0xfe, "SF"),
    ("xor", 8, 0xff, 0xff, 0x0, "PF ZF"),
    ("xor", 8, 0x80, 0x80, 0x0, "PF ZF"),
    ("xor", 8, 0x7f, 0x7f, 0x0, "PF ZF"),
    ("xor", 8, 0x7f, 0x80, 0xff, "PF SF"),
    ("xor", 8, 0x10, 0x1, 0x11, "PF"),
    ("xor", 8, 0x5a, 0xa7, 0xfd, "SF"),
    ("xor", 8, 0xff, 0x0, 0xff, "PF SF"),
    ("xor", 8, 0x80, 0x80, 0x0, "PF ZF"),
    ("xor", 16, 0x5d65, 0xbac3, 0xe7a6, "PF SF"),
    ("xor", 16, 0xa4aa, 0xa8d0, 0xc7a, ""),
    ("xor", 16, 0x77f3, 0x86a5, 0xf156, "PF SF"),
    ("xor", 16, 0x0, 0x0, 0x0, "PF ZF"),
    ("xor", 16, 0xffff, 0x1, 0xfffe, "SF"),
    ("xor", 16, 0xffff, 0xffff, 0x0, "PF ZF"),
    ("xor", 16, 0x8000, 0x8000, 0x0, "PF ZF"),
    ("xor", 16, 0x7fff, 0x7fff, 0x0, "PF ZF"),
    ("xor", 16, 0x7fff, 0x8000, 0xffff, "PF SF"),
    ("xor", 16, 0x10, 0x1, 0x11, "PF"),
    ("xor", 16, 0x1234, 0xfedc, 0xece8, "PF SF"),
    ("xor", 16, 0xffff, 0x0, 0xffff, "PF SF"),
    ("xor", 16, 0x8000, 0x8000, 0x0, "PF ZF"),
    ("xor", 32, 0x6300f7a1, 0xa637695b, 0xc5379efa, "PF SF"),
    ("xor", 32, 0x7577e5ca, 0x488f7ebc, 0x3df89b76, ""),
    ("xor", 32, 0x30df2fd9, 0x4eb42ef1, 0x7e6b0128, "PF"),
    ("xor", 32, 0x0, 0x0, 0x0, "PF ZF"),
    ("xor", 32, 0xffffffff, 0x1, 0xfffffffe, "SF"),
    ("xor", 32, 0xffffffff, 0xffffffff, 0x0, "PF ZF"),
    ("xor", 32, 0x80000000, 0x80000000, 0x0, "PF ZF"),
    ("xor", 32, 0x7fffffff, 0x7fffffff, 0x0, "PF ZF"),
    ("xor", 32, 0x7fffffff, 0x80000000, 0xffffffff, "PF SF"),
    ("xor", 32, 0x10, 0x1, 0x11, "PF"),
    ("xor", 32, 0x12345678, 0x9abcdef0, 0x88888888, "PF SF"),
    ("xor", 32, 0xffffffff, 0x0, 0xffffffff, "PF SF"),
    ("xor", 32, 0x80000000, 0x80000000, 0x0, "PF ZF"),
    ("xor", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0xc2191b0931e7d076, "SF"),
    ("xor", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0xb626931f17965105, "PF SF"),
    ("xor", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0xeca72c84f4b6d110, "SF"),
    ("xor", 64, 0x0, 0x0, 0x0, "PF ZF"),
    ("xor", 64, 0xffffffffffffffff, 0x1, 0xfffffffffffffffe, "SF"),
    ("xor", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0x0, "PF ZF"),
    ("xor", 64, 0x8000000000000000, 0x8000000000000000, 0x0, "PF ZF"),
    ("xor", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0x0, "PF ZF"),
    ("xor", 64, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff, "PF SF"),
    ("xor", 64, 0x10, 0x1, 0x11, "PF"),
    ("xor", 64, 0x123456789abcdef, 0xfedcba9876543210, 0xffffffffffffffff, "PF SF"),
    ("xor", 64, 0xffffffffffffffff, 0x0, 0xffffffffffffffff, "PF SF"),
    ("xor", 64, 0x8000000000000000, 0x8000000000000000, 0x0, "PF ZF"),
    ("test", 8, 0x85, 0xf6, 0x85, "PF SF"),
    ("test", 8, 0xec, 0xa9, 0xec, "SF"),
    ("test", 8, 0x97, 0x58, 0x97, ""),
    ("test", 8, 0x0, 0x0, 0x0, "PF ZF"),
    ("test", 8, 0xff, 0x1, 0xff, ""),
    ("test", 8, 0xff, 0xff, 0xff, "PF SF"),
    ("test", 8, 0x80, 0x80, 0x80, "SF"),
    ("test", 8, 0x7f, 0x7f, 0x7f, ""),
    ("test", 8, 0x7f, 0x80, 0x7f, "PF ZF"),
    ("test", 8, 0x10, 0x1, 0x10, "PF ZF"),
    ("test", 8, 0x5a, 0xa7, 0x5a, ""),
    ("test", 8, 0xff, 0x0, 0xff, "PF ZF"),
    ("test", 8, 0x80, 0x80, 0x80, "SF"),
    ("test", 16, 0x5d65, 0xbac3, 0x5d65, "PF"),
    ("test", 16, 0xa4aa, 0xa8d0, 0xa4aa, "SF"),
    ("test", 16, 0x77f3, 0x86a5, 0x77f3, ""),
    ("test", 16, 0x0, 0x0, 0x0, "PF ZF"),
    ("test", 16, 0xffff, 0x1, 0xffff, ""),
    ("test", 16, 0xffff, 0xffff, 0xffff, "PF SF"),
    ("test", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("test", 16, 0x7fff, 0x7fff, 0x7fff, "PF"),
    ("test", 16, 0x7fff, 0x8000, 0x7fff, "PF ZF"),
    ("test", 16, 0x10, 0x1, 0x10, "PF ZF"),
    ("test", 16, 0x1234, 0xfedc, 0x1234, "PF"),
    ("test", 16, 0xffff, 0x0, 0xffff, "PF ZF"),
    ("test", 16, 0x8000, 0x8000, 0x8000, "PF SF"),
    ("test", 32, 0x6300f7a1, 0xa637695b, 0x6300f7a1, ""),
    ("test", 32, 0x7577e5ca, 0x488f7ebc, 0x7577e5ca, "PF"),
    ("test", 32, 0x30df2fd9, 0x4eb42ef1, 0x30df2fd9, "PF"),
    ("test", 32, 0x0, 0x0, 0x0, "PF ZF"),
    ("test", 32, 0xffffffff, 0x1, 0xffffffff, ""),
    ("test", 32, 0xffffffff, 0xffffffff, 0xffffffff, "PF SF"),
    ("test", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("test", 32, 0x7fffffff, 0x7fffffff, 0x7fffffff, "PF"),
    ("test", 32, 0x7fffffff, 0x80000000, 0x7fffffff, "PF ZF"),
    ("test", 32, 0x10, 0x1, 0x10, "PF ZF"),
    ("test", 32, 0x12345678, 0x9abcdef0, 0x12345678, ""),
    ("test", 32, 0xffffffff, 0x0, 0xffffffff, "PF ZF"),
    ("test", 32, 0x80000000, 0x80000000, 0x80000000, "PF SF"),
    ("test", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0x9fe55bb83f96e2eb, ""),
    ("test", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0xc3d1df6348f3fa23, "PF"),
    ("test", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0x24d6859bbd95f720, ""),
    ("test", 64, 0x0, 0x0, 0x0, "PF ZF"),
    ("test", 64, 0xffffffffffffffff, 0x1, 0xffffffffffffffff, ""),
    ("test", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, "PF SF"),
    ("test", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
    ("test", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff, "PF"),
    ("test", 64, 0x7fffffffffffffff, 0x8000000000000000, 0x7fffffffffffffff, "PF ZF"),
    ("test", 64, 0x10, 0x1, 0x10, "PF ZF"),
    ("test", 64, 0x123456789abcdef, 0xfedcba9876543210, 0x123456789abcdef, "PF ZF"),
    ("test", 64, 0xffffffffffffffff, 0x0, 0xffffffffffffffff, "PF ZF"),
    ("test", 64, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, "PF SF"),
]


def _inv(exp):
    return flags_value([n for n in DEFINED if not exp[n]])


@pytest.mark.parametrize("row", LOGIC, ids=[f"{r[0]}{r[1]}-{r[2]:#x}-{r[3]:#x}" for r in LOGIC])
def test_logic_reg(row):
    op, size, a, b, res, fl = row
    exp = expect_flags(fl, DEFINED)
    d, s = REG[size]
    ra = (HI & ~mask(size)) | a
    emu = run_code(f"{op} {d}, {s}", regs={"rax": ra, "rbx": b}, flags=_inv(exp))
    assert emu.reg_read("rax") == (ra if op == "test" else merge(ra, res, size))
    assert_flags(emu, exp)


@pytest.mark.parametrize("row", LOGIC[::2], ids=[f"{r[0]}{r[1]}-{r[2]:#x}-{r[3]:#x}" for r in LOGIC[::2]])
def test_logic_mem(row):
    op, size, a, b, res, fl = row
    exp = expect_flags(fl, DEFINED)
    nb = size // 8
    emu = run_code(f"{op} {KW[size]} [rsi], {REG[size][1]}", regs={"rsi": DATA, "rbx": b},
                   mem={DATA: a.to_bytes(nb, "little")}, flags=_inv(exp))
    assert int.from_bytes(emu.mem_read(DATA, nb), "little") == (a if op == "test" else res)
    assert_flags(emu, exp)


IMMROWS = [r for r in LOGIC[1::2] if r[1] < 64 or r[3] < 0x80000000 or r[3] >= 0xFFFFFFFF80000000]


@pytest.mark.parametrize("row", IMMROWS, ids=[f"{r[0]}{r[1]}-{r[2]:#x}-{r[3]:#x}" for r in IMMROWS])
def test_logic_imm(row):
    op, size, a, b, res, fl = row
    exp = expect_flags(fl, DEFINED)
    imm = b - (1 << 64) if size == 64 and b >> 63 else b
    reg = {8: "cl", 16: "cx", 32: "ecx", 64: "rcx"}[size]
    emu = run_code(f"{op} {reg}, {imm}", regs={"rcx": a}, flags=_inv(exp))
    assert emu.reg_read(reg) == (a if op == "test" else res)
    assert_flags(emu, exp)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("a", [0, 1, 0x5A5A5A5A5A5A5A5A])
@pytest.mark.parametrize("fl", [0, 0x8D5])
def test_not(size, a, fl):
    a &= mask(size)
    ra = (HI & ~mask(size)) | a
    emu = run_code(f"not {REG[size][0]}", regs={"rax": ra}, flags=fl)
    assert emu.reg_read("rax") == merge(ra, ~a & mask(size), size)
    assert emu.reg_read("rflags") & 0x8D5 == fl  # NOT affects no flags


def test_not_mem():
    emu = run_code(f"not word [{DATA:#x}]", mem={DATA: b"\x34\x12\x99"})
    assert emu.mem_read(DATA, 3) == b"\xcb\xed\x99"


@pytest.mark.parametrize("mode", [16, 32])
def test_logic_legacy_modes(mode):
    src = "xor eax, ebx\nand cx, dx\nor ah, 0x81\ntest si, 0x8000"
    emu = run_code(src, mode=mode, regs={"eax": 0x12345678, "ebx": 0x11111111, "ecx": 0xFFFF0F0F,
                                         "edx": 0x00FF, "esi": 0x8000}, flags=flags_value("CF OF ZF"))
    assert emu.reg_read("eax") == 0x0325C769
    assert emu.reg_read("ecx") == 0xFFFF000F
    assert_flags(emu, {"CF": 0, "OF": 0, "ZF": 0, "SF": 1, "PF": 1}, mode=mode)


@pytest.mark.parametrize("row", LOGIC[1::2], ids=[f"{r[0]}{r[1]}-{r[2]:#x}-{r[3]:#x}" for r in LOGIC[1::2]])
def test_logic_flags_seen_by_guest(row):
    op, size, a, b, res, fl = row
    exp = expect_flags(fl, DEFINED)
    d, s = REG[size]
    emu = run_code(f"{op} {d}, {s}" + GUEST_FLAGS, regs={"rax": a, "rbx": b}, flags=_inv(exp))
    assert_guest_flags(emu, exp)
