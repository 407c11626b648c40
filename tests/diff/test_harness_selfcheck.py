"""Checks of the differential harness itself, using unicorn only (no pysev needed).

They make sure the form table assembles as intended, that the input shaping in
diffharness.prepare() reaches the interesting cases (faulting and non-faulting divisions,
equal and unequal CMPXCHG, early-terminating REPE/REPNE, shift counts 0/1/large, far bit
offsets), that the defined-flag masks follow the SDM rules, and that the one unicorn
deviation the harness corrects for is still present in the installed unicorn.
"""
import random

import iced_x86 as ix
import pytest

import diffharness as h
from forms import CODE_BASE, FORMS, Form, _assemble_all

M = ix.Mnemonic


def _raws(n, seed=1234):
    rng = random.Random(seed)

    def u64():
        return rng.choice([rng.getrandbits(64), rng.choice(h.EDGE_VALUES), rng.randrange(0, 64)])

    for _ in range(n):
        yield h.Raw(regs=tuple(u64() for _ in range(h.N_REG_SLOTS)), flags=rng.randrange(128),
                    mem=(u64(), u64()), imm=u64(), seed=rng.getrandbits(32),
                    aux=tuple(rng.randrange(0x10000) for _ in range(4)))


def _form(asm):
    return next(f for f in FORMS if f.asm == asm)


def test_form_table():
    assert len(FORMS) >= 900
    assert len({f.asm for f in FORMS}) == len(FORMS), "duplicate forms"
    assert len({f.id for f in FORMS}) == len(FORMS), "duplicate test ids"
    fmt = ix.Formatter(ix.FormatterSyntax.NASM)
    for f in FORMS:
        assert f.insn.len == len(f.code)
        if f.asm.startswith("db "):
            continue
        name = fmt.format_mnemonic(f.insn, ix.FormatMnemonicOptions.NO_PREFIXES)
        words = [w for w in f.asm.replace(",", " ").split() if w not in ("lock", "rep", "repe", "repne", "a32")]
        want = words[0]
        # NASM/iced spell a few mnemonics differently
        aliases = {"pushfq": "pushf", "popfq": "popf", "pushfw": "pushf", "popfw": "popf",
                   "setae": "setnb", "setb": "setc", "sete": "setz", "setne": "setnz",
                   "cmovae": "cmovnb", "cmove": "cmovz", "cmovne": "cmovnz", "cmovb": "cmovc",
                   "movsxd": "movsx"}
        assert name in (want, aliases.get(want, want)) or name.startswith(want[:4]), (f.asm, name)


@pytest.mark.parametrize("form", FORMS[::7], ids=lambda f: f.id)
def test_prepare_in_bounds(form):
    # prepare() asserts every address it touches lies in the data/stack pages; unicorn runs
    # without unmapped-memory errors.
    ref = h.get_engine("reference")
    for raw in list(_raws(8)) + h.EDGE_EXAMPLES:
        st, exp = h.prepare(form, raw)
        ref.run(st)


def _outcomes(asm, n, pick):
    f = _form(asm)
    ref = h.get_engine("reference")
    seen = set()
    for raw in _raws(n):
        st, exp = h.prepare(f, raw)
        seen.add(pick(st, exp, ref.run(st.copy())))
    return seen


@pytest.mark.parametrize("asm", ["div cl", "idiv r10w", "div dword [rbx]", "idiv r9", "idiv qword [rbx]"])
def test_division_reaches_fault_and_success(asm):
    seen = _outcomes(asm, 120, lambda st, exp, r: r.fault[0] if r.fault else None)
    assert seen == {0, None}


def test_division_fault_leaves_state_unchanged_in_unicorn():
    f = _form("div r9")
    raw = h.EDGE_EXAMPLES[0]                      # everything zero: division by zero
    st, exp = h.prepare(f, raw)
    r = h.get_engine("reference").run(st.copy())
    assert r.fault == (0, CODE_BASE)
    assert r.regs == st.regs and r.rip == CODE_BASE
    assert r.data == bytes(st.data) and r.stack == bytes(st.stack)
    assert (r.rflags ^ st.rflags) & h.COMPARED_FLAGS == 0


@pytest.mark.parametrize("asm", ["cmpxchg esi, edi", "cmpxchg [rbx], r9", "cmpxchg8b [rbx]", "cmpxchg16b [rbx]"])
def test_cmpxchg_reaches_both_outcomes(asm):
    assert _outcomes(asm, 60, lambda st, exp, r: bool(r.rflags & h.ZF)) == {True, False}


@pytest.mark.parametrize("asm", ["repe cmpsb", "repne cmpsd", "repe scasw", "repne scasq"])
def test_rep_compare_terminates_early_and_late(asm):
    seen = _outcomes(asm, 150, lambda st, exp, r: r.regs["rcx"] == 0)
    assert seen == {True, False}


def test_rep_runs_several_iterations():
    counts = _outcomes("rep movsq", 60, lambda st, exp, r: st.regs["rcx"])
    assert max(counts) >= 8 and 0 in counts


def test_bt_register_offset_leaves_the_operand():
    f = _form("bts qword [rbx], r9")
    far = 0
    for raw in _raws(100):
        st, exp = h.prepare(f, raw)
        off = h.sext(st.regs["r9"], 64)
        far += abs(off) >= 64
    assert far > 50


def _mask_for(asm, count):
    f = Form("t", asm)
    _assemble_all([f])
    raw = h.Raw(regs=(count,) * h.N_REG_SLOTS, flags=0, mem=(0, 0), imm=count, seed=0, aux=(0,) * 4)
    st, exp = h.prepare(f, raw)
    return exp.flag_mask


def test_shift_flag_masks():
    A, O, C = h.AF, h.OF, h.CF
    full = h.COMPARED_FLAGS
    assert _mask_for("shl eax, cl", 0) == full           # count 0: nothing changes
    assert _mask_for("shl eax, cl", 32) == full          # masked to 0
    assert _mask_for("shl eax, cl", 1) == full & ~A
    assert _mask_for("shl eax, cl", 5) == full & ~(A | O)
    assert _mask_for("shl rax, cl", 32) == full & ~(A | O)
    assert _mask_for("shl dl, cl", 9) == full & ~(A | O | C)   # count >= size: CF undefined
    assert _mask_for("sar dl, cl", 9) == full & ~(A | O)
    assert _mask_for("rol dl, cl", 8) == full & ~O             # CF still defined
    assert _mask_for("rcr eax, 1", 1) == full
    assert _mask_for("shld ax, dx, {b}", 17) == h.DF       # count > 16: result and flags undefined
    assert _mask_for("shld ax, dx, {b}", 16) == full & ~(A | O)


def test_unicorn_cmpxchg32_quirk_still_present():
    """The harness rewrites unicorn's result for 32-bit CMPXCHG (see prepare()).  If a newer
    unicorn stops clearing RAX[63:32] on success, this fails and the correction can go."""
    f = Form("t", "cmpxchg esi, edi")
    _assemble_all([f])
    st = h.State(f.code, {n: 0 for n in h.GPRS}, 0x2, bytearray(h.PAGE), bytearray(h.PAGE))
    st.regs.update(rsp=h.STACK_MID, rax=0xaaaaaaaa_00000005, rsi=0xbbbbbbbb_00000005)
    r = h.get_engine("reference").run(st)
    assert r.rflags & h.ZF
    assert r.regs["rax"] == 5            # SDM: accumulator not written -> 0xaaaaaaaa00000005


class _Tampered:
    """Unicorn, with its result modified afterwards: stands in for a buggy subject engine."""

    def __init__(self, tamper):
        self.inner, self.tamper = h.UnicornEngine(), tamper

    def run(self, st):
        r = self.inner.run(st)
        self.tamper(r)
        return r


def _check_with_subject(monkeypatch, asm, tamper, n=5):
    monkeypatch.setitem(h._ENGINES, "subject", _Tampered(tamper))
    h.check_form(_form(asm), max_examples=n, shrink=False)


def _flip(name):
    def tamper(r):
        r.regs[name] ^= 1 << 40
    return tamper


@pytest.mark.parametrize("asm, tamper", [
    ("add rax, [r13]", _flip("rax")),                                   # result register
    ("add rax, [r13]", _flip("r15")),                                   # unrelated register
    ("and ecx, {id}", lambda r: setattr(r, "rflags", r.rflags ^ h.CF)),  # defined flag
    ("sahf", lambda r: setattr(r, "rip", r.rip + 1)),
    ("add [r12+rcx*4], esi", lambda r: setattr(r, "data", r.data[:-1] + bytes([r.data[-1] ^ 1]))),
    ("push rbx", lambda r: setattr(r, "stack", bytes([r.stack[0] ^ 1]) + r.stack[1:])),
    ("div r9", lambda r: setattr(r, "fault", None)),                     # missing #DE
])
def test_harness_detects_mismatch(monkeypatch, asm, tamper):
    with pytest.raises(AssertionError):
        _check_with_subject(monkeypatch, asm, tamper)


def test_harness_ignores_undefined_flags(monkeypatch):
    # AF is undefined after AND, SF/ZF/AF/PF after MUL: differences there are not failures
    _check_with_subject(monkeypatch, "and ecx, {id}", lambda r: setattr(r, "rflags", r.rflags ^ h.AF), n=20)
    _check_with_subject(monkeypatch, "mul r9", lambda r: setattr(r, "rflags", r.rflags ^ (h.SF | h.ZF | h.AF | h.PF)), n=20)
