"""Register-file mapping (every GPR name at every size, REX vs legacy high-byte
registers) and 64-bit ModRM/SIB/RIP-relative addressing forms."""

import pytest

from conftest import DATA, labels, run_code

GPR = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
INIT = {r: 0x1010101010101010 * (i + 1) & 0xFFFFFFFFFFFFFFFF | 0x0F for i, r in enumerate(GPR)}
INIT["rsp"] = 0xFF00

B8 = {"al": ("rax", 0), "cl": ("rcx", 0), "dl": ("rdx", 0), "bl": ("rbx", 0),
      "ah": ("rax", 8), "ch": ("rcx", 8), "dh": ("rdx", 8), "bh": ("rbx", 8),
      "spl": ("rsp", 0), "bpl": ("rbp", 0), "sil": ("rsi", 0), "dil": ("rdi", 0),
      **{f"r{i}b": (f"r{i}", 0) for i in range(8, 16)}}
W16 = {"ax": "rax", "cx": "rcx", "dx": "rdx", "bx": "rbx", "sp": "rsp", "bp": "rbp", "si": "rsi", "di": "rdi",
       **{f"r{i}w": f"r{i}" for i in range(8, 16)}}
D32 = {"eax": "rax", "ecx": "rcx", "edx": "rdx", "ebx": "rbx", "esp": "rsp", "ebp": "rbp", "esi": "rsi",
       "edi": "rdi", **{f"r{i}d": f"r{i}" for i in range(8, 16)}}


def _check_only(emu, changed):
    for r in GPR:
        assert emu.reg_read(r) == changed.get(r, INIT[r]), r


@pytest.mark.parametrize("reg", list(B8))
def test_byte_register_write(reg):
    full, shift = B8[reg]
    emu = run_code(f"mov {reg}, 0xA5\nnot {reg}", regs=INIT)
    expect = (INIT[full] & ~(0xFF << shift)) | (0x5A << shift)
    _check_only(emu, {full: expect})
    assert emu.reg_read(reg) == 0x5A


@pytest.mark.parametrize("reg", list(W16))
def test_word_register_write(reg):
    full = W16[reg]
    emu = run_code(f"mov {reg}, 0xA5A5\nxor {reg}, 0xFFFF", regs=INIT)
    _check_only(emu, {full: (INIT[full] & ~0xFFFF) | 0x5A5A})


@pytest.mark.parametrize("reg", list(D32))
def test_dword_register_write_zero_extends(reg):
    full = D32[reg]
    emu = run_code(f"add {reg}, 1", regs=INIT)
    _check_only(emu, {full: (INIT[full] + 1) & 0xFFFFFFFF})


@pytest.mark.parametrize("reg", GPR)
def test_qword_register_write(reg):
    emu = run_code(f"neg {reg}\nneg {reg}\nadd {reg}, -1", regs=INIT)
    _check_only(emu, {reg: (INIT[reg] - 1) & 0xFFFFFFFFFFFFFFFF})


@pytest.mark.parametrize("src", list(B8))
def test_byte_register_read(src):
    full, shift = B8[src]
    # movzx r15d / r14d can take REX-encodable sources only; use al/ah-friendly destinations
    dst = "r15d" if src not in ("ah", "ch", "dh", "bh") else "esi"
    emu = run_code(f"movzx {dst}, {src}", regs=INIT)
    assert emu.reg_read(dst) == (INIT[full] >> shift) & 0xFF


@pytest.mark.parametrize("pair", [("ah", "al"), ("bh", "ch"), ("dh", "ah"), ("al", "bh"), ("cl", "dh")])
def test_high_byte_alu(pair):
    d, s = pair
    emu = run_code(f"add {d}, {s}\nsub {s}, {d}", regs=INIT)
    fd, shd = B8[d]
    fs, shs = B8[s]
    dv = ((INIT[fd] >> shd) + (INIT[fs] >> shs)) & 0xFF
    regs = dict(INIT)
    regs[fd] = (regs[fd] & ~(0xFF << shd)) | (dv << shd)
    sv = ((regs[fs] >> shs) - dv) & 0xFF
    regs[fs] = (regs[fs] & ~(0xFF << shs)) | (sv << shs)
    _check_only(emu, {fd: regs[fd], fs: regs[fs]})


# ----------------------------------------------------------------------------- 64-bit addressing forms

BASEV = {"rax": DATA, "rbx": DATA + 0x100, "rsp": DATA + 0x200, "rbp": DATA + 0x300, "r12": DATA + 0x400,
         "r13": DATA + 0x500, "rcx": 2, "r9": 4, "r14": 0xFFFFFFFFFFFFFFFF}


@pytest.mark.parametrize("operand,addr", [
    ("[rax]", DATA),
    ("[rsp]", DATA + 0x200),                     # needs SIB
    ("[rbp]", DATA + 0x300),                     # needs disp8 0
    ("[r12]", DATA + 0x400),                     # needs SIB (like rsp)
    ("[r13]", DATA + 0x500),                     # needs disp (like rbp)
    ("[rsp+rcx*8+8]", DATA + 0x200 + 16 + 8),
    ("[r12+r9*2-4]", DATA + 0x400 + 8 - 4),
    ("[r13+rcx*4]", DATA + 0x500 + 8),
    ("[rbp+r9]", DATA + 0x304),
    ("[rbx+r14]", DATA + 0x100 - 1),             # index -1 wraps modulo 2**64
    ("[rbx+r14*8+0x1000]", DATA + 0x100 - 8 + 0x1000),
    ("[rcx*8+0x4000]", 0x4010),                  # no base: disp32
    ("[0x4321]", 0x4321),                        # SIB with no base and no index: absolute disp32
    ("[rax-0x80]", DATA - 0x80),                 # disp8, negative
    ("[rax+0x1234]", DATA + 0x1234),             # disp32
])
def test_64bit_addressing_forms(operand, addr):
    emu = run_code(f"mov r8, {operand}\nmov qword {operand}, r10", regs={**BASEV, "r10": 0x1122334455667788},
                   mem={addr: (0x0123456789ABCDEF).to_bytes(8, "little")})
    assert emu.reg_read("r8") == 0x0123456789ABCDEF
    assert emu.mem_read(addr, 8) == (0x1122334455667788).to_bytes(8, "little")


def test_absolute_disp32_without_sib_is_rip_relative():
    # mod=00 rm=101 means [rip+disp32] in 64-bit mode
    src = "db 0x8b, 0x05\ndd 8\nmov ecx, 1\nhlt\nhlt\nhlt\nv: dd 0xCAFEBABE"
    lab = labels("db 0x8b, 0x05\ndd 8\nnx: mov ecx, 1\nhlt\nhlt\nhlt\nv: dd 0xCAFEBABE")
    assert lab["v"] == lab["nx"] + 8
    emu = run_code(src, until=lab["nx"] + 5, regs={"rax": 0})
    assert emu.reg_read("eax") == 0xCAFEBABE


@pytest.mark.parametrize("insn,size,expect", [
    ("mov dword [rel v], 0x12345678", 4, 0x12345678),      # immediate follows the displacement
    ("add byte [rel v], 1", 1, 0x11 + 1),
    ("cmp qword [rel v], 0x10\nsetb byte [rel v]", 1, 0),
    ("mov word [rel v], 0xBEEF", 2, 0xBEEF),
    ("imul eax, [rel v], 0x1000\nmov [rel v], eax", 4, (0x44332211 * 0x1000) & 0xFFFFFFFF),
    ("shl qword [rel v], 4", 8, (0x8877665544332211 << 4) & 0xFFFFFFFFFFFFFFFF),
    ("bt dword [rel v], 0\nsetc byte [rel v]", 1, 1),
])
def test_rip_relative_with_trailing_immediate(insn, size, expect):
    src = f"{insn}\njmp e\nv: dq 0x8877665544332211\ne:"
    emu = run_code(src)
    v = labels(src)["v"]
    assert int.from_bytes(emu.mem_read(v, size), "little") == expect


def test_rip_relative_negative_displacement():
    src = "jmp s\nv: dq 0x0102030405060708\ns: mov rax, [rel v]\nlea rbx, [rel v]"
    emu = run_code(src)
    assert emu.reg_read("rax") == 0x0102030405060708
    assert emu.reg_read("rbx") == labels(src)["v"]
