"""bt/bts/btr/btc (register and memory forms, bit offsets beyond the operand)
and bsf/bsr/tzcnt/lzcnt/popcnt (zero input included).

BTx: only CF is compared (Intel says ZF unaffected, AMD says undefined; the
other status flags are undefined).
"""

import pytest

from conftest import GUEST_FLAGS, assert_flags, assert_guest_flags, expect_flags, flags_value, mask, run_code

KW = {16: "word", 32: "dword", 64: "qword"}
RB = {16: "bx", 32: "ebx", 64: "rbx"}
RA = {16: "ax", 32: "eax", 64: "rax"}
BASE = 0x5000
PATTERN = bytes(((i * 0x9D + 0x3B) & 0xFF) for i in range(0x4000))   # loaded at 0x4000

# (op, operand size, signed bit offset in a register, CF after, address of the byte holding the bit, its new value)
BT_MEM = [
    ("bt", 16, 0, 1, 0x5000, 0x3b),
    ("bt", 16, 5, 1, 0x5000, 0x3b),
    ("bt", 16, 15, 1, 0x5001, 0xd8),
    ("bt", 16, 16, 1, 0x5002, 0x75),
    ("bt", 16, 100, 1, 0x500c, 0x97),
    ("bt", 16, -1, 1, 0x4fff, 0x9e),
    ("bt", 16, -16, 1, 0x4ffe, 0x1),
    ("bt", 16, -17, 0, 0x4ffd, 0x64),
    ("bt", 16, -100, 0, 0x4ff3, 0x42),
    ("bt", 16, 32767, 1, 0x5fff, 0x9e),
    ("bt", 16, -32768, 1, 0x4000, 0x3b),
    ("bt", 32, 0, 1, 0x5000, 0x3b),
    ("bt", 32, 7, 0, 0x5000, 0x3b),
    ("bt", 32, 31, 0, 0x5003, 0x12),
    ("bt", 32, 32, 1, 0x5004, 0xaf),
    ("bt", 32, 63, 1, 0x5007, 0x86),
    ("bt", 32, 100, 1, 0x500c, 0x97),
    ("bt", 32, 1000, 0, 0x507d, 0xe4),
    ("bt", 32, -1, 1, 0x4fff, 0x9e),
    ("bt", 32, -8, 0, 0x4fff, 0x9e),
    ("bt", 32, -33, 0, 0x4ffb, 0x2a),
    ("bt", 32, -1000, 0, 0x4f83, 0x92),
    ("bt", 32, 65536, 1, 0x7000, 0x3b),
    ("bt", 32, -32768, 1, 0x4000, 0x3b),
    ("bt", 64, 0, 1, 0x5000, 0x3b),
    ("bt", 64, 63, 1, 0x5007, 0x86),
    ("bt", 64, 64, 1, 0x5008, 0x23),
    ("bt", 64, 1000, 0, 0x507d, 0xe4),
    ("bt", 64, -1, 1, 0x4fff, 0x9e),
    ("bt", 64, -65, 1, 0x4ff7, 0xb6),
    ("bt", 64, -1000, 0, 0x4f83, 0x92),
    ("bt", 64, 65536, 1, 0x7000, 0x3b),
    ("bt", 64, -32768, 1, 0x4000, 0x3b),
    ("bts", 16, 0, 1, 0x5000, 0x3b),
    ("bts", 16, 5, 1, 0x5000, 0x3b),
    ("bts", 16, 15, 1, 0x5001, 0xd8),
    ("bts", 16, 16, 1, 0x5002, 0x75),
    ("bts", 16, 100, 1, 0x500c, 0x97),
    ("bts", 16, -1, 1, 0x4fff, 0x9e),
    ("bts", 16, -16, 1, 0x4ffe, 0x1),
    ("bts", 16, -17, 0, 0x4ffd, 0xe4),
    ("bts", 16, -100, 0, 0x4ff3, 0x52),
    ("bts", 16, 32767, 1, 0x5fff, 0x9e),
    ("bts", 16, -32768, 1, 0x4000, 0x3b),
    ("bts", 32, 0, 1, 0x5000, 0x3b),
    ("bts", 32, 7, 0, 0x5000, 0xbb),
    ("bts", 32, 31, 0, 0x5003, 0x92),
    ("bts", 32, 32, 1, 0x5004, 0xaf),
    ("bts", 32, 63, 1, 0x5007, 0x86),
    ("bts", 32, 100, 1, 0x500c, 0x97),
    ("bts", 32, 1000, 0, 0x507d, 0xe5),
    ("bts", 32, -1, 1, 0x4fff, 0x9e),
    ("bts", 32, -8, 0, 0x4fff, 0x9f),
    ("bts", 32, -33, 0, 0x4ffb, 0xaa),
    ("bts", 32, -1000, 0, 0x4f83, 0x93),
    ("bts", 32, 65536, 1, 0x7000, 0x3b),
    ("bts", 32, -32768, 1, 0x4000, 0x3b),
    ("bts", 64, 0, 1, 0x5000, 0x3b),
    ("bts", 64, 63, 1, 0x5007, 0x86),
    ("bts", 64, 64, 1, 0x5008, 0x23),
    ("bts", 64, 1000, 0, 0x507d, 0xe5),
    ("bts", 64, -1, 1, 0x4fff, 0x9e),
    ("bts", 64, -65, 1, 0x4ff7, 0xb6),
    ("bts", 64, -1000, 0, 0x4f83, 0x93),
    ("bts", 64, 65536, 1, 0x7000, 0x3b),
    ("bts", 64, -32768, 1, 0x4000, 0x3b),
    ("btr", 16, 0, 1, 0x5000, 0x3a),
    ("btr", 16, 5, 1, 0x5000, 0x1b),
    ("btr", 16, 15, 1, 0x5001, 0x58),
    ("btr", 16, 16, 1, 0x5002, 0x74),
    ("btr", 16, 100, 1, 0x500c, 0x87),
    ("btr", 16, -1, 1, 0x4fff, 0x1e),
    ("btr", 16, -16, 1, 0x4ffe, 0x0),
    ("btr", 16, -17, 0, 0x4ffd, 0x64),
    ("btr", 16, -100, 0, 0x4ff3, 0x42),
    ("btr", 16, 32767, 1, 0x5fff, 0x1e),
    ("btr", 16, -32768, 1, 0x4000, 0x3a),
    ("btr", 32, 0, 1, 0x5000, 0x3a),
    ("btr", 32, 7, 0, 0x5000, 0x3b),
    ("btr", 32, 31, 0, 0x5003, 0x12),
    ("btr", 32, 32, 1, 0x5004, 0xae),
    ("btr", 32, 63, 1, 0x5007, 0x6),
    ("btr", 32, 100, 1, 0x500c, 0x87),
    ("btr", 32, 1000, 0, 0x507d, 0xe4),
    ("btr", 32, -1, 1, 0x4fff, 0x1e),
    ("btr", 32, -8, 0, 0x4fff, 0x9e),
    ("btr", 32, -33, 0, 0x4ffb, 0x2a),
    ("btr", 32, -1000, 0, 0x4f83, 0x92),
    ("btr", 32, 65536, 1, 0x7000, 0x3a),
    ("btr", 32, -32768, 1, 0x4000, 0x3a),
    ("btr", 64, 0, 1, 0x5000, 0x3a),
    ("btr", 64, 63, 1, 0x5007, 0x6),
    ("btr", 64, 64, 1, 0x5008, 0x22),
    ("btr", 64, 1000, 0, 0x507d, 0xe4),
    ("btr", 64, -1, 1, 0x4fff, 0x1e),
    ("btr", 64, -65, 1, 0x4ff7, 0x36),
    ("btr", 64, -1000, 0, 0x4f83, 0x92),
    ("btr", 64, 65536, 1, 0x7000, 0x3a),
    ("btr", 64, -32768, 1, 0x4000, 0x3a),
    ("btc", 16, 0, 1, 0x5000, 0x3a),
    ("btc", 16, 5, 1, 0x5000, 0x1b),
    ("btc", 16, 15, 1, 0x5001, 0x58),
    ("btc", 16, 16, 1, 0x5002, 0x74),
    ("btc", 16, 100, 1, 0x500c, 0x87),
    ("btc", 16, -1, 1, 0x4fff, 0x1e),
    ("btc", 16, -16, 1, 0x4ffe, 0x0),
    ("btc", 16, -17, 0, 0x4ffd, 0xe4),
    ("btc", 16, -100, 0, 0x4ff3, 0x52),
    ("btc", 16, 32767, 1, 0x5fff, 0x1e),
    ("btc", 16, -32768, 1, 0x4000, 0x3a),
    ("btc", 32, 0, 1, 0x5000, 0x3a),
    ("btc", 32, 7, 0, 0x5000, 0xbb),
    ("btc", 32, 31, 0, 0x5003, 0x92),
    ("btc", 32, 32, 1, 0x5004, 0xae),
    ("btc", 32, 63, 1, 0x5007, 0x6),
    ("btc", 32, 100, 1, 0x500c, 0x87),
    ("btc", 32, 1000, 0, 0x507d, 0xe5),
    ("btc", 32, -1, 1, 0x4fff, 0x1e),
    ("btc", 32, -8, 0, 0x4fff, 0x9f),
    ("btc", 32, -33, 0, 0x4ffb, 0xaa),
    ("btc", 32, -1000, 0, 0x4f83, 0x93),
    ("btc", 32, 65536, 1, 0x7000, 0x3a),
    ("btc", 32, -32768, 1, 0x4000, 0x3a),
    ("btc", 64, 0, 1, 0x5000, 0x3a),
    ("btc", 64, 63, 1, 0x5007, 0x6),
    ("btc", 64, 64, 1, 0x5008, 0x22),
    ("btc", 64, 1000, 0, 0x507d, 0xe5),
    ("btc", 64, -1, 1, 0x4fff, 0x1e),
    ("btc", 64, -65, 1, 0x4ff7, 0x36),
    ("btc", 64, -1000, 0, 0x4f83, 0x93),
    ("btc", 64, 65536, 1, 0x7000, 0x3a),
    ("btc", 64, -32768, 1, 0x4000, 0x3a),
]


@pytest.mark.parametrize("row", BT_MEM, ids=[f"{r[0]}{r[1]}-{r[2]}" for r in BT_MEM])
def test_bt_memory_register_offset(row):
    """bt [mem], reg: the offset is signed and not masked; it selects bytes outside the operand."""
    op, size, off, cf, addr, new = row
    emu = run_code(f"{op} {KW[size]} [rdi], {RB[size]}", regs={"rdi": BASE, "rbx": off & mask(size)},
                   mem={0x4000: PATTERN}, flags=flags_value("" if cf else "CF"))
    assert_flags(emu, {"CF": cf})
    after = emu.mem_read(0x4000, len(PATTERN))
    assert after[addr - 0x4000] == new
    diff = [0x4000 + i for i in range(len(PATTERN)) if after[i] != PATTERN[i]]
    assert diff in ([], [addr])


@pytest.mark.parametrize("mode", [16, 32])
def test_bt_memory_negative_offset_legacy_modes(mode):
    # bit -1 relative to [di]/[edi] is bit 7 of the byte before it
    emu = run_code("bts word [di], ax" if mode == 16 else "bts dword [edi], eax", mode=mode,
                   regs={"edi": 0x6000, "eax": 0xFFFF if mode == 16 else 0xFFFFFFFF}, flags=flags_value("CF"))
    assert emu.mem_read(0x5FFF, 2) == b"\x80\x00"
    assert_flags(emu, {"CF": 0}, mode=mode)


@pytest.mark.parametrize("op,size,imm,cf,byte_off,new", [
    ("bt", 16, 17, 1, 0, 0x0A),       # 17 mod 16 = bit 1
    ("bts", 16, 0x2F, 0, 1, 0x88),   # bit 15 of the word
    ("btr", 32, 33, 1, 0, 0x08),     # bit 1
    ("btc", 32, 0xFF, 0, 3, 0x80),   # bit 31
    ("bt", 64, 64 + 3, 1, 0, 0x0A),  # bit 3
    ("bts", 64, 0x7F, 0, 7, 0x80),   # bit 63
    ("btc", 32, 3, 1, 0, 0x02),
])
def test_bt_memory_immediate_offset_is_masked(op, size, imm, cf, byte_off, new):
    """with an imm8 offset the bit index is taken modulo the operand size."""
    mem = bytes([0x0A, 0x08, 0, 0, 0, 0, 0, 0])
    emu = run_code(f"{op} {KW[size]} [{BASE:#x}], {imm}", mem={BASE: mem, BASE + 8: b"\x11" * 8},
                   flags=flags_value("" if cf else "CF"))
    assert_flags(emu, {"CF": cf})
    expect = bytearray(mem)
    expect[byte_off] = new
    assert emu.mem_read(BASE, 8) == bytes(expect)
    assert emu.mem_read(BASE + 8, 8) == b"\x11" * 8


@pytest.mark.parametrize("op,size,val,off,cf,res", [
    ("bt", 16, 0x0008, 0x13, 1, 0x0008),               # offset mod 16 = 3
    ("bts", 16, 0x0000, 0xFFFF, 0, 0x8000),
    ("btr", 32, 0xFFFFFFFF, 35, 1, 0xFFFFFFF7),
    ("btc", 32, 0x00000000, 0xFFFFFFFF, 0, 0x80000000),
    ("bt", 64, 0x40, 70, 1, 0x40),
    ("bts", 64, 0, 63, 0, 0x8000000000000000),
    ("btr", 64, 0x8000000000000001, 0x3F + 0x40 * 5, 1, 1),
    ("btc", 64, 0x8000000000000001, 0, 1, 0x8000000000000000),
])
def test_bt_register_offset_masked(op, size, val, off, cf, res):
    start = 0xABCD000000000000 | val if size == 16 else val
    emu = run_code(f"{op} {RA[size]}, {RB[size]}", regs={"rax": start, "rbx": off},
                   flags=flags_value("" if cf else "CF"))
    assert_flags(emu, {"CF": cf})
    if size == 16:
        assert emu.reg_read("rax") == (start & ~0xFFFF) | res
    else:
        assert emu.reg_read("rax") == res


@pytest.mark.parametrize("op,imm,cf,res", [
    ("bt", 33, 1, 0x80000002),
    ("bts", 4, 0, 0x80000012),
    ("btr", 31, 1, 0x00000002),
    ("btc", 0x41, 1, 0x80000000),
])
def test_bt_register_imm_32bit_zero_extends(op, imm, cf, res):
    emu = run_code(f"{op} ecx, {imm}", regs={"rcx": 0xFFFFFFFF80000002}, flags=flags_value("" if cf else "CF"))
    assert_flags(emu, {"CF": cf})
    if op == "bt":
        assert emu.reg_read("rcx") == 0xFFFFFFFF80000002
    else:
        assert emu.reg_read("rcx") == res


# (op, size, source, result (None: destination unchanged), flags defined, flags set)
SCAN = [
    ("bsf", 16, 0x0, None, "ZF", "ZF"),
    ("bsf", 16, 0x1, 0, "ZF", ""),
    ("bsf", 16, 0x8000, 15, "ZF", ""),
    ("bsf", 16, 0xffff, 0, "ZF", ""),
    ("bsf", 16, 0xff0, 4, "ZF", ""),
    ("bsf", 16, 0x8001, 0, "ZF", ""),
    ("bsf", 16, 0x6, 1, "ZF", ""),
    ("bsf", 32, 0x0, None, "ZF", "ZF"),
    ("bsf", 32, 0x1, 0, "ZF", ""),
    ("bsf", 32, 0x80000000, 31, "ZF", ""),
    ("bsf", 32, 0xffffffff, 0, "ZF", ""),
    ("bsf", 32, 0xf00100, 8, "ZF", ""),
    ("bsf", 32, 0x7ffffffe, 1, "ZF", ""),
    ("bsf", 32, 0x6, 1, "ZF", ""),
    ("bsf", 64, 0x0, None, "ZF", "ZF"),
    ("bsf", 64, 0x1, 0, "ZF", ""),
    ("bsf", 64, 0x8000000000000000, 63, "ZF", ""),
    ("bsf", 64, 0xffffffffffffffff, 0, "ZF", ""),
    ("bsf", 64, 0x10000008000, 15, "ZF", ""),
    ("bsf", 64, 0x5555000000000000, 48, "ZF", ""),
    ("bsf", 64, 0x6, 1, "ZF", ""),
    ("bsr", 16, 0x0, None, "ZF", "ZF"),
    ("bsr", 16, 0x1, 0, "ZF", ""),
    ("bsr", 16, 0x8000, 15, "ZF", ""),
    ("bsr", 16, 0xffff, 15, "ZF", ""),
    ("bsr", 16, 0xff0, 11, "ZF", ""),
    ("bsr", 16, 0x8001, 15, "ZF", ""),
    ("bsr", 16, 0x6, 2, "ZF", ""),
    ("bsr", 32, 0x0, None, "ZF", "ZF"),
    ("bsr", 32, 0x1, 0, "ZF", ""),
    ("bsr", 32, 0x80000000, 31, "ZF", ""),
    ("bsr", 32, 0xffffffff, 31, "ZF", ""),
    ("bsr", 32, 0xf00100, 23, "ZF", ""),
    ("bsr", 32, 0x7ffffffe, 30, "ZF", ""),
    ("bsr", 32, 0x6, 2, "ZF", ""),
    ("bsr", 64, 0x0, None, "ZF", "ZF"),
    ("bsr", 64, 0x1, 0, "ZF", ""),
    ("bsr", 64, 0x8000000000000000, 63, "ZF", ""),
    ("bsr", 64, 0xffffffffffffffff, 63, "ZF", ""),
    ("bsr", 64, 0x10000008000, 40, "ZF", ""),
    ("bsr", 64, 0x5555000000000000, 62, "ZF", ""),
    ("bsr", 64, 0x6, 2, "ZF", ""),
    ("tzcnt", 16, 0x0, 16, "CF ZF", "CF"),
    ("tzcnt", 16, 0x1, 0, "CF ZF", "ZF"),
    ("tzcnt", 16, 0x8000, 15, "CF ZF", ""),
    ("tzcnt", 16, 0xffff, 0, "CF ZF", "ZF"),
    ("tzcnt", 16, 0xff0, 4, "CF ZF", ""),
    ("tzcnt", 16, 0x8001, 0, "CF ZF", "ZF"),
    ("tzcnt", 16, 0x6, 1, "CF ZF", ""),
    ("tzcnt", 32, 0x0, 32, "CF ZF", "CF"),
    ("tzcnt", 32, 0x1, 0, "CF ZF", "ZF"),
    ("tzcnt", 32, 0x80000000, 31, "CF ZF", ""),
    ("tzcnt", 32, 0xffffffff, 0, "CF ZF", "ZF"),
    ("tzcnt", 32, 0xf00100, 8, "CF ZF", ""),
    ("tzcnt", 32, 0x7ffffffe, 1, "CF ZF", ""),
    ("tzcnt", 32, 0x6, 1, "CF ZF", ""),
    ("tzcnt", 64, 0x0, 64, "CF ZF", "CF"),
    ("tzcnt", 64, 0x1, 0, "CF ZF", "ZF"),
    ("tzcnt", 64, 0x8000000000000000, 63, "CF ZF", ""),
    ("tzcnt", 64, 0xffffffffffffffff, 0, "CF ZF", "ZF"),
    ("tzcnt", 64, 0x10000008000, 15, "CF ZF", ""),
    ("tzcnt", 64, 0x5555000000000000, 48, "CF ZF", ""),
    ("tzcnt", 64, 0x6, 1, "CF ZF", ""),
    ("lzcnt", 16, 0x0, 16, "CF ZF", "CF"),
    ("lzcnt", 16, 0x1, 15, "CF ZF", ""),
    ("lzcnt", 16, 0x8000, 0, "CF ZF", "ZF"),
    ("lzcnt", 16, 0xffff, 0, "CF ZF", "ZF"),
    ("lzcnt", 16, 0xff0, 4, "CF ZF", ""),
    ("lzcnt", 16, 0x8001, 0, "CF ZF", "ZF"),
    ("lzcnt", 16, 0x6, 13, "CF ZF", ""),
    ("lzcnt", 32, 0x0, 32, "CF ZF", "CF"),
    ("lzcnt", 32, 0x1, 31, "CF ZF", ""),
    ("lzcnt", 32, 0x80000000, 0, "CF ZF", "ZF"),
    ("lzcnt", 32, 0xffffffff, 0, "CF ZF", "ZF"),
    ("lzcnt", 32, 0xf00100, 8, "CF ZF", ""),
    ("lzcnt", 32, 0x7ffffffe, 1, "CF ZF", ""),
    ("lzcnt", 32, 0x6, 29, "CF ZF", ""),
    ("lzcnt", 64, 0x0, 64, "CF ZF", "CF"),
    ("lzcnt", 64, 0x1, 63, "CF ZF", ""),
    ("lzcnt", 64, 0x8000000000000000, 0, "CF ZF", "ZF"),
    ("lzcnt", 64, 0xffffffffffffffff, 0, "CF ZF", "ZF"),
    ("lzcnt", 64, 0x10000008000, 23, "CF ZF", ""),
    ("lzcnt", 64, 0x5555000000000000, 1, "CF ZF", ""),
    ("lzcnt", 64, 0x6, 61, "CF ZF", ""),
    ("popcnt", 16, 0x0, 0, "CF PF AF ZF SF OF", "ZF"),
    ("popcnt", 16, 0x1, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 16, 0x8000, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 16, 0xffff, 16, "CF PF AF ZF SF OF", ""),
    ("popcnt", 16, 0xff0, 8, "CF PF AF ZF SF OF", ""),
    ("popcnt", 16, 0x8001, 2, "CF PF AF ZF SF OF", ""),
    ("popcnt", 16, 0x6, 2, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0x0, 0, "CF PF AF ZF SF OF", "ZF"),
    ("popcnt", 32, 0x1, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0x80000000, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0xffffffff, 32, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0xf00100, 5, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0x7ffffffe, 30, "CF PF AF ZF SF OF", ""),
    ("popcnt", 32, 0x6, 2, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0x0, 0, "CF PF AF ZF SF OF", "ZF"),
    ("popcnt", 64, 0x1, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0x8000000000000000, 1, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0xffffffffffffffff, 64, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0x10000008000, 2, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0x5555000000000000, 8, "CF PF AF ZF SF OF", ""),
    ("popcnt", 64, 0x6, 2, "CF PF AF ZF SF OF", ""),
]

DEST_START = 0x1234567812345678
DEST = {16: "cx", 32: "ecx", 64: "rcx"}


@pytest.mark.parametrize("row", SCAN, ids=[f"{r[0]}{r[1]}-{r[2]:#x}" for r in SCAN])
def test_bit_scan_count(row):
    op, size, val, res, defined, fset = row
    exp = expect_flags(fset, defined.split())
    emu = run_code(f"{op} {DEST[size]}, {RB[size]}", regs={"rbx": val, "rcx": DEST_START},
                   flags=flags_value([n for n in exp if not exp[n]]))
    if res is None:
        # BSF/BSR with a zero source: ZF=1 and the destination keeps its value (AMD-documented behaviour)
        assert emu.reg_read(DEST[size]) == DEST_START & mask(size)
    elif size == 16:
        assert emu.reg_read("rcx") == (DEST_START & ~0xFFFF) | res
    else:
        assert emu.reg_read("rcx") == res
    assert emu.reg_read("rbx") == val
    assert_flags(emu, exp)


@pytest.mark.parametrize("op,val,res,zf", [
    ("bsf", 0x00100000, 20, 0), ("bsr", 0x00100001, 20, 0), ("tzcnt", 0, 32, 0),
    ("lzcnt", 0x00008000, 16, 0), ("popcnt", 0xF0F0F0F0, 16, 0), ("popcnt", 0, 0, 1),
])
def test_bit_scan_memory_source(op, val, res, zf):
    emu = run_code(f"{op} eax, dword [rel v]\njmp e\nv: dd {val:#x}\ne:", regs={"rax": 0x77})
    assert emu.reg_read("rax") == res
    assert_flags(emu, {"ZF": zf})


@pytest.mark.parametrize("mode", [16, 32])
def test_bit_scan_legacy_modes(mode):
    emu = run_code("bsr ax, bx\nbsf ecx, edx\npopcnt si, di\nlzcnt ebp, ebx", mode=mode,
                   regs={"ebx": 0x0300, "edx": 0x80000000, "edi": 0xFFFF, "esi": 0}, flags=0)
    assert emu.reg_read("ax") == 9
    assert emu.reg_read("ecx") == 31
    assert emu.reg_read("si") == 16
    assert emu.reg_read("ebp") == 22
    assert_flags(emu, {"CF": 0, "ZF": 0}, mode=mode)


@pytest.mark.parametrize("row", BT_MEM[::2], ids=[f"{r[0]}{r[1]}-{r[2]}" for r in BT_MEM[::2]])
def test_bt_flags_seen_by_guest(row):
    op, size, off, cf, addr, new = row
    emu = run_code(f"{op} {KW[size]} [rdi], {RB[size]}" + GUEST_FLAGS, regs={"rdi": BASE, "rbx": off & mask(size)},
                   mem={0x4000: PATTERN}, flags=flags_value("" if cf else "CF"))
    assert_guest_flags(emu, {"CF": cf})


@pytest.mark.parametrize("row", SCAN, ids=[f"{r[0]}{r[1]}-{r[2]:#x}" for r in SCAN])
def test_bit_scan_flags_seen_by_guest(row):
    op, size, val, res, defined, fset = row
    exp = expect_flags(fset, defined.split())
    emu = run_code(f"{op} {DEST[size]}, {RB[size]}" + GUEST_FLAGS, regs={"rbx": val, "rcx": DEST_START},
                   flags=flags_value([n for n in exp if not exp[n]]))
    assert_guest_flags(emu, exp)
