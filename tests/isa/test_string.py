"""movs/stos/lods/cmps/scas, with rep/repe/repne, both directions (DF), and
16/32/64-bit address sizes."""

import pytest

from conftest import DATA, assert_flags, flags_value, run_code

SRC = DATA            # source buffer
DST = DATA + 0x1000   # destination buffer
TEXT = bytes(range(0x41, 0x41 + 64))
SUF = {1: "b", 2: "w", 4: "d", 8: "q"}
DF = flags_value("DF")


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("count", [0, 1, 5])
def test_rep_movs_forward(width, count):
    emu = run_code(f"rep movs{SUF[width]}", regs={"rsi": SRC, "rdi": DST, "rcx": count},
                   mem={SRC: TEXT}, flags=flags_value("CF ZF"))
    n = width * count
    assert emu.mem_read(DST, 64) == TEXT[:n] + bytes(64 - n)
    assert emu.reg_read("rsi") == SRC + n
    assert emu.reg_read("rdi") == DST + n
    assert emu.reg_read("rcx") == 0
    assert_flags(emu, {"CF": 1, "ZF": 1})


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_rep_movs_backward(width):
    count = 4
    last = 32                               # rsi/rdi point at the last element
    emu = run_code("std\nrep movs" + SUF[width] + "\ncld",
                   regs={"rsi": SRC + last, "rdi": DST + last, "rcx": count}, mem={SRC: TEXT})
    lo = last - width * (count - 1)
    expect = bytes(lo) + TEXT[lo:last + width] + bytes(64 - last - width)
    assert emu.mem_read(DST, 64) == expect
    assert emu.reg_read("rsi") == SRC + last - width * count
    assert emu.reg_read("rdi") == DST + last - width * count


def test_movs_single_no_rep():
    emu = run_code("movsd\nmovsw", regs={"rsi": SRC, "rdi": DST, "rcx": 99}, mem={SRC: TEXT})
    assert emu.mem_read(DST, 8) == TEXT[:6] + b"\0\0"
    assert emu.reg_read("rcx") == 99
    assert emu.reg_read("rsi") == SRC + 6


def test_rep_movsb_overlapping_forward_replicates():
    # byte-by-byte semantics: copying to src+1 replicates the first byte
    emu = run_code("rep movsb", regs={"rsi": SRC, "rdi": SRC + 1, "rcx": 16}, mem={SRC: TEXT})
    assert emu.mem_read(SRC, 17) == bytes([0x41]) * 17


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("df", [0, 1])
def test_rep_stos(width, df):
    val = 0x8877665544332211
    start = DST + 16
    emu = run_code(f"rep stos{SUF[width]}", regs={"rax": val, "rdi": start, "rcx": 3},
                   mem={DST: b"\xee" * 64}, flags=DF if df else 0)
    pat = val.to_bytes(8, "little")[:width] * 3
    buf = bytearray(b"\xee" * 64)
    lo = 16 if not df else 16 - 2 * width
    buf[lo:lo + 3 * width] = pat
    assert emu.mem_read(DST, 64) == bytes(buf)
    assert emu.reg_read("rdi") == start + (3 * width if not df else -3 * width)
    assert emu.reg_read("rcx") == 0


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("df", [0, 1])
def test_lods(width, df):
    emu = run_code(f"lods{SUF[width]}\nlods{SUF[width]}", regs={"rax": 0xFFFFFFFFFFFFFFFF, "rsi": SRC + 16},
                   mem={SRC: TEXT}, flags=DF if df else 0)
    off = 16 + (width if not df else -width)
    v = int.from_bytes(TEXT[off:off + width], "little")
    if width == 4:
        expect = v
    elif width == 8:
        expect = v
    else:
        expect = (0xFFFFFFFFFFFFFFFF & ~((1 << (8 * width)) - 1)) | v
    assert emu.reg_read("rax") == expect
    assert emu.reg_read("rsi") == SRC + 16 + (2 * width if not df else -2 * width)


def test_rep_lodsb_leaves_last_byte():
    emu = run_code("rep lodsb", regs={"rsi": SRC, "rcx": 10, "rax": 0}, mem={SRC: TEXT})
    assert emu.reg_read("rax") == TEXT[9]


@pytest.mark.parametrize("a,b,flags", [
    (b"\x05", b"\x03", ""),                 # 5 - 3
    (b"\x03", b"\x05", "CF AF SF"),         # 3 - 5 = 0xfe (odd parity)
    (b"\x80", b"\x01", "AF OF"),            # 0x80 - 1 = 0x7f
    (b"\x42", b"\x42", "PF ZF"),
])
def test_cmpsb_flags(a, b, flags):
    """CMPS computes [rsi] - [rdi]."""
    emu = run_code("cmpsb", regs={"rsi": SRC, "rdi": DST}, mem={SRC: a, DST: b})
    assert_flags(emu, {n: int(n in flags.split()) for n in ("CF", "PF", "AF", "ZF", "SF", "OF")})
    assert emu.reg_read("rsi") == SRC + 1
    assert emu.reg_read("rdi") == DST + 1


def test_cmps_wider_flags():
    emu = run_code("cmpsq", regs={"rsi": SRC, "rdi": DST},
                   mem={SRC: (1).to_bytes(8, "little"), DST: (2).to_bytes(8, "little")})
    assert_flags(emu, {"CF": 1, "ZF": 0, "SF": 1, "OF": 0, "PF": 1, "AF": 1})


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_repe_cmps_stops_at_mismatch(width):
    a = bytearray(TEXT)
    b = bytearray(TEXT)
    b[3 * width] ^= 0x01                    # element 3 differs (a > b there: 0x41+.. vs ^1)
    emu = run_code(f"repe cmps{SUF[width]}", regs={"rsi": SRC, "rdi": DST, "rcx": 10},
                   mem={SRC: bytes(a), DST: bytes(b)})
    assert emu.reg_read("rcx") == 10 - 4
    assert emu.reg_read("rsi") == SRC + 4 * width
    assert emu.reg_read("rdi") == DST + 4 * width
    assert_flags(emu, {"ZF": 0})


def test_repe_cmps_all_equal_exhausts_count():
    emu = run_code("repe cmpsw", regs={"rsi": SRC, "rdi": DST, "rcx": 8}, mem={SRC: TEXT, DST: TEXT})
    assert emu.reg_read("rcx") == 0
    assert emu.reg_read("rsi") == SRC + 16
    assert_flags(emu, {"ZF": 1, "CF": 0})


def test_repne_cmps_stops_at_first_equal():
    emu = run_code("repne cmpsb", regs={"rsi": SRC, "rdi": DST, "rcx": 20},
                   mem={SRC: b"abcdefg", DST: b"xyzdefg"})
    assert emu.reg_read("rcx") == 16
    assert emu.reg_read("rsi") == SRC + 4
    assert_flags(emu, {"ZF": 1})


def test_rep_with_zero_count_keeps_flags():
    emu = run_code("repe cmpsb\nrepne scasb", regs={"rsi": SRC, "rdi": DST, "rcx": 0},
                   mem={SRC: b"\x01", DST: b"\x02"}, flags=flags_value("ZF CF OF"))
    assert_flags(emu, {"ZF": 1, "CF": 1, "OF": 1, "SF": 0})
    assert emu.reg_read("rsi") == SRC and emu.reg_read("rdi") == DST


def test_repne_scasb_strlen():
    s = b"hello, world\0garbage"
    emu = run_code("repne scasb\nnot rcx\ndec rcx", regs={"rdi": DST, "rcx": 0xFFFFFFFFFFFFFFFF, "rax": 0},
                   mem={DST: s})
    assert emu.reg_read("rcx") == 12
    assert emu.reg_read("rdi") == DST + 13


@pytest.mark.parametrize("width", [2, 4, 8])
def test_repe_scas_wide(width):
    buf = (0x1234).to_bytes(width, "little") * 5 + (0x1235).to_bytes(width, "little")
    emu = run_code(f"repe scas{SUF[width]}", regs={"rdi": DST, "rcx": 10, "rax": 0x1234}, mem={DST: buf})
    assert emu.reg_read("rcx") == 4
    assert emu.reg_read("rdi") == DST + 6 * width
    assert_flags(emu, {"ZF": 0, "CF": 1, "SF": 1})   # 0x1234 - 0x1235


def test_scasb_backward():
    emu = run_code("std\nrepne scasb\ncld", regs={"rdi": DST + 9, "rcx": 100, "rax": ord("c")},
                   mem={DST: b"abcdefghij"})
    assert emu.reg_read("rdi") == DST + 1
    assert emu.reg_read("rcx") == 100 - 8


# ----------------------------------------------------------------- address sizes


def test_address_size_32_in_64bit_mode():
    # 0x67: esi/edi/ecx; upper halves of rsi/rdi/rcx are ignored for addressing and counting
    emu = run_code("a32 rep movsb", regs={"rsi": 0xFFFF_FFFF_0000_0000 | SRC, "rdi": 0x1234_5678_0000_0000 | DST,
                                          "rcx": 0x1_0000_0004}, mem={SRC: TEXT})
    assert emu.mem_read(DST, 8) == TEXT[:4] + bytes(4)
    assert emu.reg_read("esi") == SRC + 4
    assert emu.reg_read("edi") == DST + 4
    assert emu.reg_read("ecx") == 0


def test_address_size_32_wraps_in_64bit_mode():
    # esi = 0xffffffff: the first lodsb reads 0xffffffff (unmapped: 0xff), then esi wraps to 0
    emu = run_code("a32 lodsb\nmov bl, al\na32 lodsb", regs={"rsi": 0xFFFFFFFF, "rax": 0}, mem={0: b"\x77\x66"})
    assert emu.reg_read("bl") == 0xFF
    assert emu.reg_read("al") == 0x77
    assert emu.reg_read("esi") == 1


def test_address_size_16_in_32bit_mode_wraps():
    emu = run_code("a16 rep movsb", mode=32, regs={"esi": 0x1234_FFFE, "edi": DST, "ecx": 0xABCD_0004},
                   mem={0xFFFE: b"\x01\x02", 0: b"\x03\x04"})
    assert emu.mem_read(DST, 4) == b"\x01\x02\x03\x04"
    assert emu.reg_read("esi") == 0x1234_0002
    assert emu.reg_read("edi") == (DST + 4)
    assert emu.reg_read("ecx") == 0xABCD_0000


def test_string_32bit_mode():
    emu = run_code("rep stosd\nmov esi, edi\nsub esi, 4\nlodsd", mode=32,
                   regs={"edi": DST, "ecx": 4, "eax": 0xCAFEBABE})
    assert emu.mem_read(DST, 16) == bytes.fromhex("bebafeca") * 4
    assert emu.reg_read("eax") == 0xCAFEBABE
    assert emu.reg_read("ecx") == 0


def test_string_16bit_mode_segments():
    # ds:si -> es:di with different segment bases
    emu = run_code("rep movsw", mode=16,
                   regs={"ds": 0x0400, "es": 0x0500, "esi": 0x0010, "edi": 0x0020, "ecx": 3},
                   mem={0x4010: TEXT[:6]})
    assert emu.mem_read(0x5020, 8) == TEXT[:6] + bytes(2)
    assert emu.reg_read("si") == 0x16 and emu.reg_read("di") == 0x26


def test_string_16bit_mode_segment_override_source():
    emu = run_code("fs movsb\nes lodsb", mode=16,
                   regs={"ds": 0x0400, "es": 0x0500, "fs": 0x0600, "esi": 0, "edi": 0},
                   mem={0x6000: b"\xaa\xbb", 0x5001: b"\xcc", 0x4001: b"\xdd"})
    assert emu.mem_read(0x5000, 1) == b"\xaa"
    assert emu.reg_read("al") == 0xCC


def test_string_16bit_offset_wraparound():
    emu = run_code("rep stosb", mode=16, regs={"es": 0x0500, "edi": 0xFFFE, "ecx": 4, "eax": 0x5A})
    assert emu.mem_read(0x5000 + 0xFFFE, 2) == b"\x5a\x5a"
    assert emu.mem_read(0x5000, 2) == b"\x5a\x5a"
    assert emu.reg_read("di") == 2


def test_string_16bit_mode_address_size_32():
    emu = run_code("a32 rep movsb", mode=16, regs={"esi": 0x12000, "edi": 0x13000, "ecx": 0x3},
                   mem={0x12000: b"xyz"})
    assert emu.mem_read(0x13000, 3) == b"xyz"
    assert emu.reg_read("esi") == 0x12003
    assert emu.reg_read("ecx") == 0


def test_rep_movs_large_count():
    emu = run_code("rep movsq", regs={"rsi": SRC, "rdi": DST, "rcx": 512},
                   mem={SRC: bytes(range(256)) * 16})
    assert emu.mem_read(DST, 4096) == bytes(range(256)) * 16


def test_destination_segment_es_cannot_be_overridden():
    # a segment override applies to the source (ds:si) only; stos/movs always store to es:di
    emu = run_code("fs stosb\nfs movsb", mode=16,
                   regs={"ds": 0x0400, "es": 0x0500, "fs": 0x0600, "esi": 0, "edi": 0, "eax": 0x11},
                   mem={0x6000: b"\x22", 0x4000: b"\x33"})
    assert emu.mem_read(0x5000, 2) == b"\x11\x22"
    assert emu.mem_read(0x6000, 1) == b"\x22"


def test_rep_stos_with_address_size_16_in_16bit_mode_and_df():
    emu = run_code("std\nrep stosw\ncld", mode=16, regs={"es": 0x0500, "edi": 0x0002, "ecx": 3, "eax": 0xABCD})
    # di: 2 -> 0 -> 0xfffe -> 0xfffc
    assert emu.mem_read(0x5000, 4) == bytes.fromhex("cdabcdab")
    assert emu.mem_read(0x5000 + 0xFFFE, 2) == bytes.fromhex("cdab")
    assert emu.reg_read("di") == 0xFFFC
