"""nop forms, pause, hlt, ud2, int3, cpuid, rdtsc/rdtscp, rdrand/rdseed, BCD
instructions, prefixes (0x66, 0x67, segment overrides, REX, LOCK) and 16/32-bit
addressing forms."""

import pytest

from conftest import (CODE, DATA, STACK, assemble, assert_flags, expect_flags, flags_value, labels, make_emu,
                      run_code, run_fault)

# ----------------------------------------------------------------------------- nop / pause / hlt


@pytest.mark.parametrize("nop", [
    "db 0x90",
    "db 0x66, 0x90",
    "db 0x0f, 0x1f, 0x00",                                            # nop dword [rax]
    "db 0x0f, 0x1f, 0x40, 0x00",                                      # nop dword [rax+0]
    "db 0x0f, 0x1f, 0x44, 0x00, 0x00",                                # nop dword [rax+rax+0]
    "db 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "db 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00",
    "db 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00",
    "db 0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00",
    "db 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00",  # cs nopw [rax+rax+0]
    "db 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00",
    "db 0x0f, 0x1f, 0xc0",                                            # register form
    "db 0xf3, 0x90",                                                  # pause
])
def test_nop_forms(nop):
    regs = {"rax": 0x7FFF_FFFF_FFFF_0000, "rbx": 1, "rcx": 2, "rsi": 3}
    size = labels(nop + "\nx: mov rsi, 42")["x"] - CODE
    emu = make_emu(64)
    count = []
    emu.hook_add(__import__("pysev.api", fromlist=["HOOK_CODE"]).HOOK_CODE, lambda e, a, s: count.append((a, s)))
    run_code(nop + "\nmov rsi, 42", regs=regs, flags=flags_value("CF ZF"), emu=emu)
    assert emu.reg_read("rax") == regs["rax"] and emu.reg_read("rbx") == 1 and emu.reg_read("rcx") == 2
    assert emu.reg_read("rsi") == 42
    assert emu.reg_read("rsp") == STACK
    assert_flags(emu, {"CF": 1, "ZF": 1, "SF": 0})
    assert count[0] == (CODE, size)       # the whole nop is one instruction
    assert len(count) == 2


@pytest.mark.parametrize("mode", [16, 32])
def test_nop_forms_legacy(mode):
    emu = run_code("nop\ndb 0x0f, 0x1f, 0x00\npause\nmov ax, 5", mode=mode)
    assert emu.reg_read("ax") == 5


def test_hlt_stops_after_instruction():
    src = "mov eax, 1\nhlt\nmov eax, 2"
    lab = labels("mov eax, 1\nhlt\nafter: mov eax, 2")
    emu = make_emu(64)
    code, _ = assemble(src)
    emu.mem_write(CODE, code)
    emu.reg_write("rsp", STACK)
    emu.emu_start(CODE, CODE + len(code))
    assert emu.stop_reason == "hlt"
    assert emu.reg_read("rip") == lab["after"]
    assert emu.reg_read("eax") == 1
    assert emu.insn_count == 2


# ----------------------------------------------------------------------------- ud2 / int3


@pytest.mark.parametrize("mode", [16, 32, 64])
def test_ud2(mode):
    src = "mov ebx, 7\nmov ecx, 9\nud2\nmov ebx, 8"
    lab = labels("mov ebx, 7\nmov ecx, 9\nx: ud2\nmov ebx, 8", mode)
    emu, exc = run_fault(src, mode=mode, vector=6)
    assert exc.address == lab["x"]
    assert emu.reg_read("ebx") == 7 and emu.reg_read("ecx") == 9
    assert emu.reg_read("eip") == lab["x"]


@pytest.mark.parametrize("mode", [32, 64])
def test_int3(mode):
    src = "mov ebx, 7\nx: int3\nmov ebx, 8"
    emu, exc = run_fault(src, mode=mode, vector=3)
    assert exc.address == labels(src, mode)["x"]
    assert emu.reg_read("ebx") == 7


# ----------------------------------------------------------------------------- cpuid / rdtsc / rdrand


@pytest.mark.parametrize("leaf,sub", [(0, 0), (1, 0), (7, 0), (0x80000000, 0), (0x80000001, 0)])
def test_cpuid_deterministic(leaf, sub):
    out = []
    for _ in range(2):
        emu = run_code("cpuid", regs={"rax": 0xFFFFFFFF00000000 | leaf, "rcx": 0xFFFFFFFF00000000 | sub,
                                      "rbx": 0xFFFFFFFFFFFFFFFF, "rdx": 0xFFFFFFFFFFFFFFFF})
        vals = [emu.reg_read(r) for r in ("rax", "rbx", "rcx", "rdx")]
        assert all(v >> 32 == 0 for v in vals), "cpuid writes 32-bit registers (zero-extended)"
        out.append(vals)
    assert out[0] == out[1]


def test_cpuid_vendor_string():
    emu = run_code("cpuid", regs={"rax": 0})
    vendor = b"".join(emu.reg_read(r).to_bytes(4, "little") for r in ("ebx", "edx", "ecx"))
    assert len(vendor) == 12 and all(0x20 <= c < 0x7F for c in vendor)
    assert emu.reg_read("eax") >= 1


@pytest.mark.parametrize("mode", [16, 32])
def test_cpuid_legacy_modes(mode):
    res = []
    for _ in range(2):
        emu = run_code("cpuid", mode=mode, regs={"eax": 1, "ecx": 0, "ebx": 0xFFFFFFFF, "edx": 0xFFFFFFFF})
        res.append([emu.reg_read(r) for r in ("eax", "ebx", "ecx", "edx")])
    assert res[0] == res[1]


def test_rdtsc_monotonic():
    src = """
        rdtsc
        mov r8, rax
        mov r9, rdx
        mov ecx, 50
    l:  loop l
        rdtsc
    """
    emu = run_code(src, regs={"rax": 0xFFFFFFFFFFFFFFFF, "rdx": 0xFFFFFFFFFFFFFFFF})
    first = (emu.reg_read("r9") << 32) | emu.reg_read("r8")
    second = (emu.reg_read("rdx") << 32) | emu.reg_read("rax")
    assert emu.reg_read("r8") >> 32 == 0 and emu.reg_read("r9") >> 32 == 0
    assert emu.reg_read("rax") >> 32 == 0 and emu.reg_read("rdx") >> 32 == 0
    assert second >= first


def test_rdtsc_across_runs():
    emu = make_emu(64)
    vals = []
    for _ in range(3):
        run_code("rdtsc\nnop\nnop", emu=emu)
        vals.append((emu.reg_read("edx") << 32) | emu.reg_read("eax"))
    assert vals == sorted(vals)


def test_rdtscp():
    emu = run_code("rdtsc\nmov r8d, eax\nmov r9d, edx\nrdtscp", regs={"rcx": 0xFFFFFFFFFFFFFFFF})
    assert emu.reg_read("rcx") >> 32 == 0                  # TSC_AUX in ecx, zero-extended
    first = (emu.reg_read("r9") << 32) | emu.reg_read("r8")
    assert (emu.reg_read("edx") << 32) | emu.reg_read("eax") >= first


@pytest.mark.parametrize("insn", ["rdrand", "rdseed"])
@pytest.mark.parametrize("reg,size", [("ax", 16), ("eax", 32), ("rax", 64)])
def test_rdrand_rdseed(insn, reg, size):
    vals = []
    emu = make_emu(64)
    for _ in range(4):
        run_code(f"{insn} {reg}", regs={"rax": 0}, flags=flags_value("PF AF ZF SF OF"), emu=emu)
        assert_flags(emu, {"CF": 1, "PF": 0, "AF": 0, "ZF": 0, "SF": 0, "OF": 0})
        vals.append(emu.reg_read("rax"))
    assert all(v < (1 << size) for v in vals)
    assert len(set(vals)) > 1


def test_rdrand_32bit_mode():
    emu = run_code("rdrand eax\nmov ebx, eax\nrdrand eax\nrdrand ecx", mode=32, flags=0)
    assert_flags(emu, {"CF": 1}, mode=32)
    assert len({emu.reg_read("eax"), emu.reg_read("ebx"), emu.reg_read("ecx")}) > 1


# ----------------------------------------------------------------------------- BCD (32-bit mode)

# (insn, al, CF in, AF in, al after, ah after, flags defined, flags set after, flags set before)
BCD = [
    ("daa", 0x0, 0, 0, 0x0, 0x34, "CF PF AF ZF SF", "PF ZF", "SF"),
    ("daa", 0x9, 0, 0, 0x9, 0x34, "CF PF AF ZF SF", "PF", "ZF SF"),
    ("daa", 0xa, 0, 0, 0x10, 0x34, "CF PF AF ZF SF", "AF", "PF ZF SF"),
    ("daa", 0xf, 0, 1, 0x15, 0x34, "CF PF AF ZF SF", "AF", "PF AF ZF SF"),
    ("daa", 0x19, 0, 1, 0x1f, 0x34, "CF PF AF ZF SF", "AF", "PF AF ZF SF"),
    ("daa", 0x99, 0, 0, 0x99, 0x34, "CF PF AF ZF SF", "PF SF", "ZF"),
    ("daa", 0x9a, 0, 0, 0x0, 0x34, "CF PF AF ZF SF", "CF PF AF ZF", "SF"),
    ("daa", 0xa0, 0, 0, 0x0, 0x34, "CF PF AF ZF SF", "CF PF ZF", "SF"),
    ("daa", 0xfa, 0, 0, 0x60, 0x34, "CF PF AF ZF SF", "CF PF AF", "ZF SF"),
    ("daa", 0xff, 1, 1, 0x65, 0x34, "CF PF AF ZF SF", "CF PF AF", "CF AF ZF SF"),
    ("daa", 0x45, 1, 0, 0xa5, 0x34, "CF PF AF ZF SF", "CF PF SF", "CF ZF"),
    ("daa", 0x3, 0, 1, 0x9, 0x34, "CF PF AF ZF SF", "PF AF", "AF ZF SF"),
    ("daa", 0x66, 1, 1, 0xcc, 0x34, "CF PF AF ZF SF", "CF PF AF SF", "CF AF ZF"),
    ("daa", 0x80, 0, 0, 0x80, 0x34, "CF PF AF ZF SF", "SF", "PF ZF"),
    ("daa", 0xfb, 0, 0, 0x61, 0x34, "CF PF AF ZF SF", "CF AF", "PF ZF SF"),
    ("daa", 0x5, 0, 1, 0xb, 0x34, "CF PF AF ZF SF", "AF", "PF AF ZF SF"),
    ("das", 0x0, 0, 0, 0x0, 0x34, "CF PF AF ZF SF", "PF ZF", "SF"),
    ("das", 0x9, 0, 0, 0x9, 0x34, "CF PF AF ZF SF", "PF", "ZF SF"),
    ("das", 0xa, 0, 0, 0x4, 0x34, "CF PF AF ZF SF", "AF", "PF ZF SF"),
    ("das", 0xf, 0, 1, 0x9, 0x34, "CF PF AF ZF SF", "PF AF", "AF ZF SF"),
    ("das", 0x19, 0, 1, 0x13, 0x34, "CF PF AF ZF SF", "AF", "PF AF ZF SF"),
    ("das", 0x99, 0, 0, 0x99, 0x34, "CF PF AF ZF SF", "PF SF", "ZF"),
    ("das", 0x9a, 0, 0, 0x34, 0x34, "CF PF AF ZF SF", "CF AF", "PF ZF SF"),
    ("das", 0xa0, 0, 0, 0x40, 0x34, "CF PF AF ZF SF", "CF", "PF ZF SF"),
    ("das", 0xfa, 0, 0, 0x94, 0x34, "CF PF AF ZF SF", "CF AF SF", "PF ZF"),
    ("das", 0xff, 1, 1, 0x99, 0x34, "CF PF AF ZF SF", "CF PF AF SF", "CF AF ZF"),
    ("das", 0x45, 1, 0, 0xe5, 0x34, "CF PF AF ZF SF", "CF SF", "CF PF ZF"),
    ("das", 0x3, 0, 1, 0xfd, 0x34, "CF PF AF ZF SF", "CF AF SF", "PF AF ZF"),
    ("das", 0x66, 1, 1, 0x0, 0x34, "CF PF AF ZF SF", "CF PF AF ZF", "CF AF SF"),
    ("das", 0x80, 0, 0, 0x80, 0x34, "CF PF AF ZF SF", "SF", "PF ZF"),
    ("das", 0xfb, 0, 0, 0x95, 0x34, "CF PF AF ZF SF", "CF PF AF SF", "ZF"),
    ("das", 0x5, 0, 1, 0xff, 0x34, "CF PF AF ZF SF", "CF PF AF SF", "AF ZF"),
    ("aaa", 0x0, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aaa", 0x9, 0, 0, 0x9, 0x12, "CF AF", "", ""),
    ("aaa", 0xa, 0, 0, 0x0, 0x13, "CF AF", "CF AF", ""),
    ("aaa", 0xf, 0, 1, 0x5, 0x13, "CF AF", "CF AF", "AF"),
    ("aaa", 0x19, 0, 1, 0xf, 0x13, "CF AF", "CF AF", "AF"),
    ("aaa", 0x99, 0, 0, 0x9, 0x12, "CF AF", "", ""),
    ("aaa", 0x9a, 0, 0, 0x0, 0x13, "CF AF", "CF AF", ""),
    ("aaa", 0xa0, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aaa", 0xfa, 0, 0, 0x0, 0x14, "CF AF", "CF AF", ""),
    ("aaa", 0xff, 1, 1, 0x5, 0x14, "CF AF", "CF AF", "CF AF"),
    ("aaa", 0x45, 1, 0, 0x5, 0x12, "CF AF", "", "CF"),
    ("aaa", 0x3, 0, 1, 0x9, 0x13, "CF AF", "CF AF", "AF"),
    ("aaa", 0x66, 1, 1, 0xc, 0x13, "CF AF", "CF AF", "CF AF"),
    ("aaa", 0x80, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aaa", 0xfb, 0, 0, 0x1, 0x14, "CF AF", "CF AF", ""),
    ("aaa", 0x5, 0, 1, 0xb, 0x13, "CF AF", "CF AF", "AF"),
    ("aas", 0x0, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aas", 0x9, 0, 0, 0x9, 0x12, "CF AF", "", ""),
    ("aas", 0xa, 0, 0, 0x4, 0x11, "CF AF", "CF AF", ""),
    ("aas", 0xf, 0, 1, 0x9, 0x11, "CF AF", "CF AF", "AF"),
    ("aas", 0x19, 0, 1, 0x3, 0x11, "CF AF", "CF AF", "AF"),
    ("aas", 0x99, 0, 0, 0x9, 0x12, "CF AF", "", ""),
    ("aas", 0x9a, 0, 0, 0x4, 0x11, "CF AF", "CF AF", ""),
    ("aas", 0xa0, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aas", 0xfa, 0, 0, 0x4, 0x11, "CF AF", "CF AF", ""),
    ("aas", 0xff, 1, 1, 0x9, 0x11, "CF AF", "CF AF", "CF AF"),
    ("aas", 0x45, 1, 0, 0x5, 0x12, "CF AF", "", "CF"),
    ("aas", 0x3, 0, 1, 0xd, 0x10, "CF AF", "CF AF", "AF"),
    ("aas", 0x66, 1, 1, 0x0, 0x11, "CF AF", "CF AF", "CF AF"),
    ("aas", 0x80, 0, 0, 0x0, 0x12, "CF AF", "", ""),
    ("aas", 0xfb, 0, 0, 0x5, 0x11, "CF AF", "CF AF", ""),
    ("aas", 0x5, 0, 1, 0xf, 0x10, "CF AF", "CF AF", "AF"),
]


@pytest.mark.parametrize("row", BCD, ids=[f"{r[0]}-{r[1]:#x}-c{r[2]}a{r[3]}" for r in BCD])
def test_bcd_adjust(row):
    insn, al, cf, af, nal, nah, defined, fset, fin = row
    ah = 0x12 if insn in ("aaa", "aas") else 0x34
    emu = run_code(insn, mode=32, regs={"eax": 0xABCD0000 | (ah << 8) | al}, flags=flags_value(fin))
    assert emu.reg_read("eax") == 0xABCD0000 | (nah << 8) | nal
    assert_flags(emu, expect_flags(fset, defined.split()), mode=32)


# (insn, imm8, ax before, ax after, flags set (SF ZF PF defined))
AAM_AAD = [
    ("aam", 10, 0x63, 0x909, "PF"),
    ("aam", 10, 0xff, 0x1905, "PF"),
    ("aam", 16, 0x1234, 0x304, ""),
    ("aam", 1, 0x80, 0x8000, "PF ZF"),
    ("aam", 10, 0x5, 0x5, "PF"),
    ("aam", 7, 0x0, 0x0, "PF ZF"),
    ("aad", 10, 0x905, 0x5f, "PF"),
    ("aad", 10, 0xffff, 0xf5, "PF SF"),
    ("aad", 16, 0x102, 0x12, "PF"),
    ("aad", 0, 0x1280, 0x80, "SF"),
    ("aad", 10, 0x0, 0x0, "PF ZF"),
    ("aad", 3, 0x5501, 0x0, "PF ZF"),
]


@pytest.mark.parametrize("row", AAM_AAD, ids=[f"{r[0]}{r[1]}-{r[2]:#x}" for r in AAM_AAD])
def test_aam_aad(row):
    insn, imm, ax, res, fset = row
    exp = expect_flags(fset, ("PF", "ZF", "SF"))
    emu = run_code(f"{insn} {imm}", mode=32, regs={"eax": 0x55AA0000 | ax},
                   flags=flags_value([n for n in exp if not exp[n]]))
    assert emu.reg_read("eax") == 0x55AA0000 | res
    assert_flags(emu, exp, mode=32)


def test_aam_zero_divide_error():
    src = "mov ecx, 3\nx: aam 0"
    emu, exc = run_fault(src, mode=32, regs={"eax": 0x1234}, flags=flags_value("CF"), vector=0)
    assert exc.address == labels(src, 32)["x"]
    assert emu.reg_read("eax") == 0x1234 and emu.reg_read("ecx") == 3
    assert emu.reg_read("eip") == exc.address
    assert_flags(emu, {"CF": 1, "ZF": 0}, mode=32)


@pytest.mark.parametrize("byts", [[0x27], [0x2F], [0x37], [0x3F], [0xD4, 0x0A], [0xD5, 0x0A], [0xD4, 0x00]])
def test_bcd_invalid_in_64bit_mode(byts):
    src = "mov eax, 1\ndb " + ",".join(map(str, byts))
    emu, exc = run_fault(src, vector=6)
    assert exc.address == CODE + 5
    assert emu.reg_read("rip") == CODE + 5
    assert emu.reg_read("eax") == 1


# ----------------------------------------------------------------------------- prefixes


def test_operand_size_prefix_64bit_mode():
    emu = run_code("db 0x66, 0x01, 0xd8\ndb 0x66, 0xb9, 0x34, 0x12", regs={"rax": 0x1111_2222_3333_FFFF, "rbx": 2,
                                                                        "rcx": 0xFFFF_FFFF_FFFF_FFFF})
    assert emu.reg_read("rax") == 0x1111_2222_3333_0001            # add ax, bx
    assert emu.reg_read("rcx") == 0xFFFF_FFFF_FFFF_1234            # mov cx, 0x1234
    assert_flags(emu, {"CF": 1, "ZF": 0})


def test_operand_size_prefix_32bit_and_16bit_modes():
    emu = run_code("db 0x66, 0xb8, 0x34, 0x12\ndb 0x66, 0x40", mode=32, regs={"eax": 0xAAAAAAAA})
    assert emu.reg_read("eax") == 0xAAAA1235                       # mov ax, 0x1234; inc ax
    emu = run_code("db 0x66, 0xb8, 0x78, 0x56, 0x34, 0x12\ndb 0x40", mode=16)
    assert emu.reg_read("eax") == 0x12345679                       # mov eax, imm32; inc ax


def test_rex_w_overrides_operand_size_prefix():
    emu = run_code("db 0x66, 0x48, 0xb8, 1,2,3,4,5,6,7,8", regs={"rax": 0})   # mov rax, imm64
    assert emu.reg_read("rax") == 0x0807060504030201


def test_rex_ignored_when_not_last_prefix():
    # 48 66 01 d8: the REX prefix is followed by a legacy prefix, so it is ignored -> add ax, bx
    emu = run_code("db 0x48, 0x66, 0x01, 0xd8", regs={"rax": 0x1_0000_FFFF, "rbx": 0x1_0000_0001})
    assert emu.reg_read("rax") == 0x1_0000_0000


@pytest.mark.parametrize("insn,regs,expect", [
    ("mov ecx, [eax]", {"rax": 0xFFFF_FFFF_0000_0000 | DATA}, 0x44332211),
    ("mov ecx, [eax+ebx]", {"rax": 0xFFFF_FFF0, "rbx": DATA + 0x10}, 0x44332211),      # 32-bit wrap
    ("mov ecx, [eax+ebx*4+4]", {"rax": 0xFFFF_FFFC, "rbx": DATA // 4}, 0x44332211),
    ("mov ecx, [rax]", {"rax": 0x1_0000_0000 | DATA}, 0xFFFFFFFF),                     # no truncation: unmapped
    ("mov ecx, [r8d+1]", {"r8": 0xF_FFFF_0000_0000 | (DATA - 1)}, 0x44332211),
])
def test_address_size_prefix_64bit_mode(insn, regs, expect):
    emu = run_code(insn, regs=regs, mem={DATA: bytes.fromhex("11223344")})
    assert emu.reg_read("rcx") == expect


def test_address_size_prefix_32bit_mode_16bit_addressing():
    emu = run_code("mov ecx, [bx+si+2]", mode=32, regs={"ebx": 0xABCD_FFFE, "esi": DATA},
                   mem={DATA: bytes.fromhex("11223344")})
    assert emu.reg_read("ecx") == 0x44332211


@pytest.mark.parametrize("seg,base_reg", [("fs", "fs_base"), ("gs", "gs_base")])
def test_fs_gs_base_64bit_mode(seg, base_reg):
    src = f"mov rax, [{seg}:0x10]\nmov rcx, [{seg}:rbx+8]\nmov [{seg}:rbx], edx\nmov rsi, [rbx]"
    emu = run_code(src, regs={base_reg: DATA, "rbx": 0x20, "rdx": 0xCAFEF00D},
                   mem={DATA + 0x10: (0x1122334455667788).to_bytes(8, "little"),
                        DATA + 0x28: (0x99).to_bytes(8, "little")})
    assert emu.reg_read("rax") == 0x1122334455667788
    assert emu.reg_read("rcx") == 0x99
    assert emu.mem_read(DATA + 0x20, 4) == bytes.fromhex("0df0feca")
    assert emu.reg_read("rsi") == 0       # [rbx] without override: address 0x20 (zero memory)


def test_fs_gs_base_high_address():
    emu = run_code("mov eax, [gs:rbx]\nmov ecx, [fs:rbx]", regs={"gs_base": 0xFFFF_FFFF_0000_0000 + DATA + 8,
                                                                 "fs_base": 8, "rbx": 0x1_0000_0000 - 8},
                   mem={DATA: bytes.fromhex("aabbccdd"), 0: bytes.fromhex("01020304")})
    # gs: base + offset wraps modulo 2**64 to DATA; fs: 8 + 0xfffffff8 = 0x1_0000_0000 (unmapped)
    assert emu.reg_read("eax") == 0xDDCCBBAA
    assert emu.reg_read("ecx") == 0xFFFFFFFF


def test_other_segment_overrides_ignored_in_64bit_mode():
    emu = run_code("mov rax, [es:rbx]\nmov rcx, [cs:rbx]\nmov rdx, [ss:rbx]\nmov rsi, [ds:rbx]",
                   regs={"rbx": DATA, "es": 0x10, "ds": 0x20}, mem={DATA: (0x5A5A).to_bytes(8, "little")})
    for r in ("rax", "rcx", "rdx", "rsi"):
        assert emu.reg_read(r) == 0x5A5A


def test_rex_byte_registers():
    src = """
        mov ah, 0x11
        mov ch, 0x22
        mov dh, 0x33
        mov bh, 0x44
        mov spl, 0x55
        mov bpl, 0x66
        mov sil, 0x77
        mov dil, 0x88
        mov r8b, 0x99
        mov r15b, 0xAA
        db 0x40, 0x88, 0xe0     ; mov al, spl
        db 0x88, 0xe1           ; mov cl, ah
    """
    regs = {r: 0 for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r15")}
    regs["rsp"] = 0xFF00
    emu = run_code(src, regs=regs)
    assert emu.reg_read("rax") == 0x1155
    assert emu.reg_read("rcx") == 0x2211
    assert emu.reg_read("rdx") == 0x3300
    assert emu.reg_read("rbx") == 0x4400
    assert emu.reg_read("rsp") == 0xFF55
    assert emu.reg_read("rbp") == 0x66
    assert emu.reg_read("rsi") == 0x77
    assert emu.reg_read("rdi") == 0x88
    assert emu.reg_read("r8") == 0x99
    assert emu.reg_read("r15") == 0xAA
    for name, v in (("spl", 0x55), ("bpl", 0x66), ("sil", 0x77), ("dil", 0x88), ("ah", 0x11), ("r15b", 0xAA)):
        assert emu.reg_read(name) == v, name


def test_rex_extended_registers_all_sizes():
    src = "mov r9, r10\nadd r11d, r12d\nsub r13w, r14w\nxor r8b, r15b\nlea r10, [r9+r11*2]"
    emu = run_code(src, regs={"r10": 5, "r11": 0xFFFF_FFFF_0000_0001, "r12": 2, "r13": 0x1_0005,
                              "r14": 6, "r8": 0xF0, "r15": 0xFF})
    assert emu.reg_read("r9") == 5
    assert emu.reg_read("r11") == 3
    assert emu.reg_read("r13") == 0x1_FFFF
    assert emu.reg_read("r8") == 0x0F
    assert emu.reg_read("r10") == 11
    for n, v in (("r9d", 5), ("r13w", 0xFFFF), ("r8b", 0x0F)):
        assert emu.reg_read(n) == v


@pytest.mark.parametrize("insn,init,expect", [
    ("lock add dword [rdi], 5", 10, 15),
    ("lock sub dword [rdi], 5", 10, 5),
    ("lock inc dword [rdi]", 10, 11),
    ("lock dec dword [rdi]", 10, 9),
    ("lock or dword [rdi], 0x100", 1, 0x101),
    ("lock and dword [rdi], 3", 6, 2),
    ("lock xor dword [rdi], 0xFF", 0x0F, 0xF0),
    ("lock not dword [rdi]", 0, 0xFFFFFFFF),
    ("lock neg dword [rdi]", 1, 0xFFFFFFFF),
    ("lock adc dword [rdi], 0", 1, 2),
    ("lock sbb dword [rdi], 0", 1, 0),
    ("lock bts dword [rdi], 4", 0, 0x10),
    ("lock btr dword [rdi], 0", 1, 0),
    ("lock btc dword [rdi], 1", 0, 2),
])
def test_lock_prefix_accepted(insn, init, expect):
    emu = run_code(insn, regs={"rdi": DATA}, mem={DATA: init.to_bytes(4, "little")}, flags=flags_value("CF"))
    assert int.from_bytes(emu.mem_read(DATA, 4), "little") == expect


def test_lock_with_register_destination_is_ud():
    src = "mov ecx, 1\ndb 0xf0, 0x01, 0xd8"   # lock add eax, ebx
    emu, exc = run_fault(src, regs={"rax": 1, "rbx": 2}, vector=6)
    assert exc.address == CODE + 5
    assert emu.reg_read("rax") == 1


# ----------------------------------------------------------------------------- 16-bit addressing

REGS16 = {"ebx": 0x1000, "esi": 0x0200, "edi": 0x0030, "ebp": 0x0104, "ds": 0x0400, "ss": 0x0600, "es": 0x0500}


@pytest.mark.parametrize("operand,linear", [
    ("[bx+si]", 0x4000 + 0x1200),
    ("[bx+di]", 0x4000 + 0x1030),
    ("[bp+si]", 0x6000 + 0x0304),        # bp-based: ss
    ("[bp+di]", 0x6000 + 0x0134),
    ("[si]", 0x4000 + 0x0200),
    ("[di]", 0x4000 + 0x0030),
    ("[bp]", 0x6000 + 0x0104),           # encoded as [bp+0] (mod 01)
    ("[bx]", 0x4000 + 0x1000),
    ("[0x1234]", 0x4000 + 0x1234),       # mod 00 rm 110: disp16
    ("[bx+si+0x10]", 0x4000 + 0x1210),
    ("[bx+di-2]", 0x4000 + 0x102E),
    ("[bp+di-2]", 0x6000 + 0x0132),
    ("[bp+si+0x1000]", 0x6000 + 0x1304),
    ("[si+0x7FFF]", 0x4000 + 0x81FF),
    ("[bx+si+0xFFF0]", 0x4000 + 0x11F0),  # 16-bit offset wraparound
    ("[di-0x31]", 0x4000 + 0xFFFF),
    ("[es:bx]", 0x5000 + 0x1000),
    ("[ds:bp]", 0x4000 + 0x0104),
    ("[ss:bx+si]", 0x6000 + 0x1200),
    ("[cs:bx]", 0x0000 + 0x1000 + 0x10000) if False else ("[cs:di]", 0x0030),
])
def test_16bit_addressing_forms(operand, linear):
    marker = b"\xef\xbe"
    emu = run_code(f"mov ax, {operand}\nmov word {operand}, cx", mode=16,
                   regs={**REGS16, "ecx": 0x1357}, mem={linear: marker})
    assert emu.reg_read("ax") == 0xBEEF
    assert emu.mem_read(linear, 2) == b"\x57\x13"


def test_16bit_mode_32bit_addressing():
    emu = run_code("mov eax, [ebx+ecx*4+0x10]\nmov [esp+4], eax", mode=16,
                   regs={"ebx": 0x100, "ecx": 0x1000, "ds": 0x0400, "ss": 0x0800, "esp": 0x10},
                   mem={0x4000 + 0x100 + 0x4000 + 0x10: bytes.fromhex("11223344")})
    assert emu.reg_read("eax") == 0x44332211
    assert emu.mem_read(0x8000 + 0x14, 4) == bytes.fromhex("11223344")


def test_16bit_mode_segment_register_loads():
    emu = run_code("mov ax, 0x0700\nmov ds, ax\nmov es, ax\nmov bx, [0x10]\nmov ax, es\nmov cx, ds", mode=16,
                   mem={0x7010: b"\x34\x12"})
    assert emu.reg_read("bx") == 0x1234
    assert emu.reg_read("ax") == 0x0700 and emu.reg_read("cx") == 0x0700
    assert emu.reg_read("ds") == 0x0700


def test_16bit_mode_jump_and_call_near():
    src = "call f\njmp e\nf: mov ax, sp\nret\ne:"
    emu = run_code(src, mode=16)
    assert emu.reg_read("ax") == STACK - 2
    assert emu.reg_read("sp") == STACK


# ----------------------------------------------------------------------------- 32-bit addressing


@pytest.mark.parametrize("operand,linear", [
    ("[eax]", DATA), ("[eax+ebx]", DATA + 0x10), ("[eax+ebx*2+3]", DATA + 0x23), ("[ebx*8+0x3F80]", 0x4000),
    ("[esp+8]", STACK + 8), ("[ebp-4]", DATA + 0x100 - 4), ("[0x4444]", 0x4444),
    ("[eax+ecx]", DATA - 0x10),           # 32-bit wraparound: ecx = -0x10
    ("[esi+edi*1]", DATA + 1),
])
def test_32bit_addressing_forms(operand, linear):
    emu = run_code(f"mov edx, {operand}\nmov dword {operand}, 0x13579BDF", mode=32,
                   regs={"eax": DATA, "ebx": 0x10, "ecx": 0xFFFFFFF0, "ebp": DATA + 0x100, "esi": DATA,
                         "edi": 1}, mem={linear: bytes.fromhex("efbeadde")})
    assert emu.reg_read("edx") == 0xDEADBEEF
    assert emu.mem_read(linear, 4) == bytes.fromhex("df9b5713")


# ----------------------------------------------------------------------------- prefixes on other instructions


def test_endbr64_endbr32_are_nops():
    emu = run_code("endbr64\nendbr32\nmov eax, 5", regs={"rax": 0}, flags=flags_value("CF"))
    assert emu.reg_read("rax") == 5
    assert_flags(emu, {"CF": 1})


def test_rep_ret_and_bnd_prefixes():
    # f3 c3 (rep ret) and f2-prefixed branches (bnd jmp/call/ret) behave like the plain instructions
    src = """
        call f
        db 0xf2
        call g
        db 0xf2
        jmp short h
        mov eax, 99
    h:  jmp end
    f:  mov ebx, 1
        db 0xf3, 0xc3
    g:  mov ecx, 2
        db 0xf2, 0xc3
    end:
    """
    emu = run_code(src, regs={"rax": 0, "rbx": 0, "rcx": 0})
    assert (emu.reg_read("eax"), emu.reg_read("ebx"), emu.reg_read("ecx")) == (0, 1, 2)
    assert emu.reg_read("rsp") == STACK


def test_fences_and_prefetch_are_nops():
    src = "lfence\nmfence\nsfence\nprefetchnta [rax]\nprefetcht0 [rax+8]\nprefetchw [rax]\nmov ebx, 1"
    emu = run_code(src, regs={"rax": UNMAPPED_ADDR, "rbx": 0}, flags=flags_value("ZF"))
    assert emu.reg_read("ebx") == 1
    assert emu.reg_read("rax") == UNMAPPED_ADDR
    assert_flags(emu, {"ZF": 1})


UNMAPPED_ADDR = 0x800000


def test_push_dword_in_16bit_mode():
    emu = run_code("push dword 0x12345678\npop ax\npop bx", mode=16)
    assert emu.reg_read("ax") == 0x5678 and emu.reg_read("bx") == 0x1234
    assert emu.reg_read("sp") == STACK


@pytest.mark.parametrize("src,counter,iters", [
    ("l: inc eax\nloop l", "ecx", 0x10004),
    ("l: inc eax\na16 loop l", "cx", 4),
])
def test_loop_32bit_mode(src, counter, iters):
    emu = run_code(src, mode=32, regs={"eax": 0, "ecx": 0x00010004})
    assert emu.reg_read(counter) == 0
    assert emu.reg_read("eax") == iters
    if counter == "cx":
        assert emu.reg_read("ecx") == 0x00010000
