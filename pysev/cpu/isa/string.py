"""movs, stos, lods, cmps, scas, ins, outs: emitted as calls to the helpers in strings.py."""

from ..emit import emits
from .. import flags as F


def _again(e, ins):
    """After a REP helper: in one-iteration mode, stay on this instruction."""
    if ins.rep:
        e.line("if cpu.rep_again:")
        e.line("    cpu.rep_again = False")
        e.line("    raise RepStep()")             # RIP stays here; this iteration counts
        e.fault_point()


def _size(ins):
    return {"B": 1, "W": 2, "D": 4, "Q": 8}[ins.mnem[-1]]


@emits("MOVSB", "MOVSW", "MOVSD", "MOVSQ")
def movs(e, ins):
    if not ins.form.startswith("MOVS"):          # MOVSD xmm shares the mnemonic
        return e.raise_fault(6, detail=f"instruction not implemented: {ins.text}")
    dst, src = ins.ops
    e.chunk.store = True
    e.call_helper("string_movs", _size(ins), ins.asize, src.seg, repr(ins.rep), result=False)
    _again(e, ins)


@emits("STOSB", "STOSW", "STOSD", "STOSQ")
def stos(e, ins):
    e.chunk.store = True
    e.call_helper("string_stos", _size(ins), ins.asize, repr(ins.rep), result=False)
    _again(e, ins)


@emits("LODSB", "LODSW", "LODSD", "LODSQ")
def lods(e, ins):
    src = ins.ops[-1]
    e.call_helper("string_lods", _size(ins), ins.asize, src.seg, repr(ins.rep), result=False)
    _again(e, ins)


def _compare(e, ins, t):
    size = _size(ins)
    if ins.rep:
        # no comparison happens when RCX starts at zero: flags then stay
        e.line(f"if {t} is not None:")
        e.line(f"    fo = {F.fo_of(F.SUB, size)}; fa, fb, fr = {t}")
        e.flags_dynamic()
    else:
        a, b, r = e.tmp(), e.tmp(), e.tmp()
        e.line(f"{a}, {b}, {r} = {t}")
        e.flags(F.SUB, size, a, b, r)


@emits("CMPSB", "CMPSW", "CMPSD", "CMPSQ")
def cmps(e, ins):
    if not ins.form.startswith("CMPS"):          # CMPSD xmm shares the mnemonic
        return e.raise_fault(6, detail=f"instruction not implemented: {ins.text}")
    src = ins.ops[0]
    t = e.call_helper("string_cmps", _size(ins), ins.asize, src.seg, repr(ins.rep))
    _compare(e, ins, t)
    _again(e, ins)


@emits("SCASB", "SCASW", "SCASD", "SCASQ")
def scas(e, ins):
    t = e.call_helper("string_scas", _size(ins), ins.asize, repr(ins.rep))
    _compare(e, ins, t)
    _again(e, ins)


@emits("INSB", "INSW", "INSD")
def ins_(e, ins):
    e.chunk.store = True
    if e.mode.pe and e.mode.cpl:
        e.call_helper("check_io", e.gpr(2, 2), _size(ins), result=False)
    e.call_helper("string_ins", _size(ins), ins.asize, repr(ins.rep), result=False)
    _again(e, ins)


@emits("OUTSB", "OUTSW", "OUTSD")
def outs(e, ins):
    if e.mode.pe and e.mode.cpl:
        e.call_helper("check_io", e.gpr(2, 2), _size(ins), result=False)
    src = ins.ops[-1]
    e.call_helper("string_outs", _size(ins), ins.asize, src.seg, repr(ins.rep), result=False)
    _again(e, ins)
