"""Table of instruction forms for the differential tests.

Every form is one line of NASM (64-bit) assembly.  Immediate operands are written with
placeholders; the form is assembled once with a fixed sentinel immediate and each
hypothesis example patches the immediate bytes in place (their position comes from
iced_x86's constant offsets), so the immediate value is an input like any register.

Placeholders:
    {b}   0x5a, plain: NASM picks the imm8 encoding (83 /x ib, C0/C1 shifts, 6B imul,
          0F BA bt, shld/shrd ib, 6A push)
    {ib}  strict byte imm8
    {iw}  strict word imm16
    {id}  imm32 (NASM picks the imm32 encoding; sign-extended for 64-bit operand size)
    {idsx} strict dword imm32, only for `mov r/m64, imm32` (C7 /0, sign-extended)
    {iq}  strict qword imm64 (mov r64, imm64)

The whole table is assembled by one NASM run; forms are separated by UD2 markers and each
must decode (iced_x86) to exactly one instruction.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile

import iced_x86 as ix

NASM = "/usr/bin/nasm"

PLACEHOLDERS = {
    "b": "0x5a",
    "ib": "strict byte 0x5a",
    "iw": "strict word 0x5a5a",
    "id": "0x5a5a5a5a",
    "idsx": "strict dword 0x5a5a5a5a",
    "iq": "strict qword 0x5a5a5a5a5a5a5a5a",
}


@dataclasses.dataclass
class Form:
    group: str          # test module / report grouping
    asm: str            # NASM text (with placeholders)
    code: bytes = b""   # assembled bytes (sentinel immediate)
    insn: object = None  # iced_x86.Instruction decoded at CODE_BASE
    imm_offset: int = 0  # byte offset of the patchable immediate (0: none)
    imm_size: int = 0

    @property
    def text(self) -> str:
        return self.asm.format(b="imm8", ib="imm8", iw="imm16", id="imm32", idsx="imm32", iq="imm64")

    @property
    def id(self) -> str:
        if self.asm.startswith("db "):
            return "bytes_" + self.code.hex()
        t = self.text
        for a, b in ((" ", "_"), (",", ""), ("[", "("), ("]", ")"), ("*", "x"), ("+", "p"), ("-", "m")):
            t = t.replace(a, b)
        return t


FORMS: list[Form] = []


def _add(group, *asms):
    for a in asms:
        FORMS.append(Form(group, a))


# --------------------------------------------------------------------------- data movement
_REGREG = ["al, cl", "ah, dh", "r9b, sil", "cx, r10w", "edx, r11d", "r8, rbx", "rsi, rsi"]
_REGMEM = ["al, [rbx+0x10]", "cx, [rbx+rsi*2-0x8]", "r11d, [r12+0x7f]", "rax, [r13]"]
_MEMREG = ["[rbx+0x10], dl", "[rbp-0x20], r9w", "[r12+rcx*4], esi", "[r13+0x100], rdi"]
_ACCIMM = ["al, {ib}", "ax, {iw}", "eax, {id}", "rax, {id}"]
_REGIMM = ["bl, {ib}", "r9w, {iw}", "ecx, {id}", "r14, {id}"]
_REGIMM8 = ["dx, {b}", "esi, {b}", "r15, {b}"]
_MEMIMM = ["byte [rbx+1], {ib}", "word [rbx+2], {iw}", "dword [rbx+4], {id}", "qword [rbx+8], {id}"]
_MEMIMM8 = ["word [rbx], {b}", "dword [rbx+rsi*8], {b}", "qword [rbx-8], {b}"]

_add("mov", *("mov " + x for x in _REGREG + _REGMEM + _MEMREG + _MEMIMM))
_add("mov", "mov bl, {ib}", "mov r9w, {iw}", "mov ecx, {id}", "mov r14, {idsx}")
_add("mov", "mov rdx, {iq}",
     "mov al, [qword 0x10800]", "mov [qword 0x10810], ax",
     "mov eax, [qword 0x10820]", "mov [qword 0x10830], rax",
     "mov ecx, [abs 0x10840]")

_MOVX_SRC = [("ax", "cl"), ("cx", "byte [rbx]"), ("eax", "dl"), ("eax", "ah"), ("si", "bh"), ("esi", "byte [rbx+3]"),
             ("r9", "sil"), ("rax", "byte [rbx]"), ("edx", "cx"), ("edi", "word [rbx]"),
             ("r10", "r11w"), ("rax", "word [rbx+6]")]
for _op in ("movzx", "movsx"):
    _add("mov", *(f"{_op} {d}, {s}" for d, s in _MOVX_SRC))
_add("mov", "movsxd rax, ecx", "movsxd r9, dword [rbx]")
_add("mov", "mov rax, rsp", "mov eax, [fs:rbx+8]", "mov rax, [gs:rbx]", "mov ecx, [es:rbx]",
     "movzx eax, al", "mov ah, ah")

_add("xchg", "xchg cl, dl", "xchg ah, bl", "xchg ax, r9w", "xchg cx, dx", "xchg eax, ebx",
     "xchg esi, r10d", "xchg r8d, eax", "xchg rax, rdx", "xchg r11, rcx", "xchg eax, eax",
     "xchg [rbx], cl", "xchg [rbx+1], dx", "xchg [rbx], esi", "xchg [rbx+8], r9")
_add("xchg", *("xadd " + x for x in
               ["cl, dl", "ax, r9w", "esi, edi", "r8, rax", "[rbx], cl", "[rbx], dx", "[rbx], esi", "[rbx], r9"]))
_add("xchg", *("cmpxchg " + x for x in
               ["cl, dl", "ah, dl", "bx, r9w", "esi, edi", "r8, r10", "eax, edx",
                "[rbx], cl", "[rbx], dx", "[rbx], esi", "[rbx], r9"]))
_add("xchg", "cmpxchg8b [rbx]", "cmpxchg16b [rbx]")
_add("xchg", "xchg ecx, ecx", "xadd ecx, ecx", "cmpxchg ecx, ecx", "xadd ah, al")   # aliased operands
_add("xchg", "lock add [rbx], ecx", "lock xadd [rbx], rax", "lock cmpxchg [rbx], esi",
     "lock inc qword [rbx]", "lock bts dword [rbx], ecx", "lock cmpxchg16b [rbx]")

_add("lea", "lea rax, [rbx+rsi*4+0x12345678]", "lea ecx, [rdx+r9*8-0x80]", "lea dx, [rbp+rdi*2+0x7fff]",
     "lea r10, [r13+r12*1]", "lea rsi, [rel $+0x100]", "lea eax, [ebx+ecx*2+5]",
     "lea r11, [rsp+0x10]", "lea rax, [rcx*8]", "lea r8d, [r8d+r9d*4+0x11223344]", "lea ax, [ebx+esi]")

_CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]
for _c in _CC:
    _add("cmov", *(f"cmov{_c} {x}" for x in
                   ["ax, cx", "ecx, r9d", "r10, rsi", "si, [rbx]", "edx, [rbx]", "rax, [rbx]"]))
    _add("setcc", f"set{_c} al", f"set{_c} byte [rbx]")
_add("setcc", "seto ah", "setb sil", "setg r10b")

_add("misc", "bswap eax", "bswap r9d", "bswap rcx", "bswap r15")

# --------------------------------------------------------------------------- arithmetic / logic
for _op in ("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor"):
    _add("alu", *(f"{_op} {x}" for x in
                  _REGREG + _REGMEM + _MEMREG + _ACCIMM + _REGIMM + _REGIMM8 + _MEMIMM + _MEMIMM8))
_add("alu", "add rsp, {b}", "sub esp, {b}", "and rsp, {b}", "test ah, {ib}", "xor ah, al")
_add("alu", *("test " + x for x in
              ["al, cl", "ah, dh", "cx, r10w", "edx, r11d", "r8, rbx", "rsi, rsi"] + _MEMREG + _ACCIMM +
              _REGIMM + _MEMIMM))

_UNARY = ["cl", "ah", "r10w", "edi", "r11", "byte [rbx+3]", "word [rbx]", "dword [rbx+rsi*4]", "qword [r13+0x10]"]
for _op in ("inc", "dec", "neg", "not"):
    _add("unary", *(f"{_op} {x}" for x in _UNARY))

_MULDIV = ["cl", "bh", "ah", "r10w", "esi", "r9", "byte [rbx]", "word [rbx]", "dword [rbx]", "qword [rbx]"]
for _op in ("mul", "imul", "div", "idiv"):
    _add("muldiv", *(f"{_op} {x}" for x in _MULDIV))
_add("muldiv", *("imul " + x for x in
                 ["ax, cx", "ecx, r9d", "r10, rsi", "dx, [rbx]", "esi, [rbx+4]", "r8, [rbx+8]",
                  "ax, cx, {b}", "dx, [rbx], {b}", "bx, si, {iw}", "cx, [rbx+2], {iw}",
                  "eax, ecx, {b}", "edx, [rbx], {b}", "r8d, ebp, {id}", "ecx, [rbx], {id}",
                  "rax, rcx, {b}", "r9, [rbx], {b}", "rsi, rdi, {id}", "rdx, [rbx], {id}"]))

# --------------------------------------------------------------------------- shifts / rotates
_SH_DST = ["dl", "r9w", "esi", "r11", "byte [rbx]", "word [rbx+2]", "dword [rbx+4]", "qword [rbx+8]"]
for _op in ("shl", "shr", "sar", "rol", "ror", "rcl", "rcr"):
    for _cnt in ("1", "{b}", "cl"):
        _add("shift", *(f"{_op} {d}, {_cnt}" for d in _SH_DST))
for _op in ("shld", "shrd"):
    for _cnt in ("{b}", "cl"):
        _add("shift", *(f"{_op} {x}, {_cnt}" for x in
                        ["ax, dx", "esi, edi", "r8, r9", "word [rbx], dx", "dword [rbx], esi", "qword [rbx], r9"]))

# --------------------------------------------------------------------------- bit operations
for _op in ("bt", "bts", "btr", "btc"):
    _add("bits", *(f"{_op} {x}" for x in
                   ["ax, cx", "esi, edi", "r8, r9", "dx, {b}", "ebx, {b}", "r10, {b}",
                    "word [rbx], cx", "dword [rbx], esi", "qword [rbx], r9",
                    "word [rbx], {b}", "dword [rbx], {b}", "qword [rbx], {b}"]))
for _op in ("bsf", "bsr", "lzcnt", "tzcnt", "popcnt"):
    _add("bits", *(f"{_op} {x}" for x in
                   ["ax, cx", "dx, [rbx]", "esi, edi", "ecx, [rbx]", "r8, r9", "rax, [rbx]"]))

# --------------------------------------------------------------------------- stack / flags / conversions
_add("stack", "push rbx", "push r12", "push cx", "push {b}", "push {id}", "push word {iw}",
     "push qword [rbx]", "push word [rbx]", "push rsp", "push qword [rsp+8]",
     "pop rcx", "pop r13", "pop dx", "pop qword [rbx]", "pop word [rbx]", "pop rsp", "pop qword [rsp]",
     "pushfq", "popfq", "pushfw", "popfw", "lahf", "sahf")
_add("misc", "cbw", "cwde", "cdqe", "cwd", "cdq", "cqo")

# --------------------------------------------------------------------------- string instructions
for _s in ("b", "w", "d", "q"):
    _add("string", f"movs{_s}", f"stos{_s}", f"lods{_s}", f"cmps{_s}", f"scas{_s}",
         f"rep movs{_s}", f"rep stos{_s}", f"rep lods{_s}",
         f"repe cmps{_s}", f"repne cmps{_s}", f"repe scas{_s}", f"repne scas{_s}")
# 32-bit address size: ESI/EDI/ECX (the harness puts random bits above them)
_add("string", "a32 rep movsb", "a32 rep stosd", "a32 lodsq", "a32 repe cmpsb", "a32 repne scasw", "a32 movsq")


# --------------------------------------------------------------------------- faulting forms
# Every example must fault in both engines with the same vector, leaving the state unchanged.
# (Only cases unicorn 2.1.4 gets right: it executes e.g. LOCK BT/TEST/MUL/LEA/MOVZX instead of
# raising #UD, and aborts the process on LOCK BTS with a register destination.)
_add("faults",
     "cmpxchg16b [rbx+8]",             # #GP(0): operand not 16-byte aligned
     "lock cmpxchg16b [rbx+8]",
     "db 0xf0, 0x01, 0xd1",            # lock add ecx, edx: LOCK with a register destination -> #UD
     "db 0xf0, 0xff, 0xc0",            # lock inc eax
     "db 0xf0, 0x0f, 0xb1, 0xd1",      # lock cmpxchg ecx, edx
     "db 0xf0, 0x39, 0x03",            # lock cmp [rbx], eax: CMP is not lockable
     "db 0x8d, 0xc1",                  # lea eax, ecx (mod=3) -> #UD
     "db 0x0f, 0xc7, 0xc9",            # cmpxchg8b ecx (mod=3) -> #UD
     "db 0x0f, 0xb9, 0xc8")            # ud1 ecx, eax -> #UD


# --------------------------------------------------------------------------- assembly
CODE_BASE = 0x1000
_UD2 = b"\x0f\x0b"


def _assemble_all(forms):
    src = ["bits 64", "default abs"]
    for f in forms:
        src.append(f"ud2")
        src.append(f"f{len(src)}: " + f.asm.format(**PLACEHOLDERS))
    src.append("ud2")
    with tempfile.TemporaryDirectory() as td:
        asm = os.path.join(td, "forms.asm")
        out = os.path.join(td, "forms.bin")
        with open(asm, "w") as fh:
            fh.write("\n".join(src) + "\n")
        r = subprocess.run([NASM, "-f", "bin", "-o", out, asm], capture_output=True, text=True)
        if r.returncode:
            lines = r.stderr.splitlines()
            raise RuntimeError("nasm failed:\n" + "\n".join(lines[:20]) + "\n" + "\n".join(
                f"{i + 1}: {line}" for i, line in enumerate(src) if f":{i + 1}:" in r.stderr))
        with open(out, "rb") as fh:
            blob = fh.read()
    # split at the UD2 markers by decoding sequentially
    dec = ix.Decoder(64, blob, ip=0)
    pieces = []
    cur = None
    for insn in dec:
        raw = blob[insn.ip:insn.ip + insn.len]
        if raw == _UD2:
            if cur is not None:
                pieces.append(cur)
            cur = []
        else:
            assert cur is not None, "assembly must start with a marker"
            cur.append(raw)
    assert len(pieces) == len(forms), (len(pieces), len(forms))
    for f, piece in zip(forms, pieces):
        assert len(piece) == 1, f"form {f.asm!r} assembled to {len(piece)} instructions"
        f.code = piece[0]
        d = ix.Decoder(64, f.code, ip=CODE_BASE)
        f.insn = d.decode()
        assert f.insn.len == len(f.code), f.asm
        assert f.insn.code != ix.Code.INVALID or f.group == "faults", f.asm
        co = d.get_constant_offsets(f.insn)
        if co.has_immediate:
            f.imm_offset, f.imm_size = co.immediate_offset, co.immediate_size
            assert any(p in f.asm for p in ("{b}", "{ib}", "{iw}", "{id}", "{idsx}", "{iq}")), f.asm
        else:
            assert "{" not in f.asm, f.asm


def _assemble_rip_relative(forms):
    # `lea rsi, [rel $+0x100]` depends on the address the form is assembled at; NASM assembled
    # it inside the big blob, so re-encode it at CODE_BASE with iced to get the intended target.
    for f in forms:
        if f.insn.is_ip_rel_memory_operand:
            src = "bits 64\norg 0x%x\n" % CODE_BASE + f.asm.format(**PLACEHOLDERS) + "\n"
            with tempfile.TemporaryDirectory() as td:
                asm = os.path.join(td, "one.asm")
                out = os.path.join(td, "one.bin")
                with open(asm, "w") as fh:
                    fh.write(src)
                subprocess.run([NASM, "-f", "bin", "-o", out, asm], check=True, capture_output=True)
                with open(out, "rb") as fh:
                    f.code = fh.read()
            f.insn = ix.Decoder(64, f.code, ip=CODE_BASE).decode()


_assemble_all(FORMS)
_assemble_rip_relative(FORMS)

GROUPS = sorted({f.group for f in FORMS})


def forms_in(group):
    return [f for f in FORMS if f.group == group]
