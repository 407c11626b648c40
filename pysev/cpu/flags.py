"""Lazy arithmetic flags.

The last flag-setting operation is kept as four values, (fo, fa, fb, fr),
the way QEMU keeps cc_op/cc_src/cc_dst: fo names the operation kind and
operand size, fa/fb/fr are its inputs and result.  The six arithmetic
flags are computed only when something reads them.

Kinds and what the three values hold:

  ADD    fa, fb operands, fr = fa + fb + carry_in, not masked
  SUB    fa, fb operands, fr = fa - fb - borrow_in, not masked (may be < 0)
  LOGIC  fr = result (CF = OF = AF = 0)
  INC    fa operand, fb = the CF that INC preserves, fr = fa + 1 unmasked
  DEC    fa operand, fb = preserved CF, fr = fa - 1 unmasked
  SHL    fa = operand shifted by count-1 (masked), fr = result
  SAR    fa = operand shifted right by count-1 (masked), fr = result; SHR too
  MUL    fa = CF = OF (0 or 1), fr = low half of the product
  EFL    fr = the six flags as EFLAGS bits, computed eagerly

fo = kind * 4 + size index (0: 8 bits, 1: 16, 2: 32, 3: 64).
"""

from decoder.records import CF, PF, AF, ZF, SF, OF, ARITH_FLAGS

ADD, SUB, LOGIC, INC, DEC, SHL, SAR, MUL, EFL = range(9)
KIND_NAMES = ("ADD", "SUB", "LOGIC", "INC", "DEC", "SHL", "SAR", "MUL", "EFL")
SIZE_INDEX = {1: 0, 2: 1, 4: 2, 8: 3}
SIZES = (1, 2, 4, 8)

PARITY = tuple(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))


def fo_of(kind, size):
    return kind * 4 + SIZE_INDEX.get(size, 3)


def _make(kind, size):
    bits = size * 8
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    top = bits - 1
    par = PARITY

    def common(r):
        return par[r & 0xFF] | (ZF if r == 0 else 0) | (SF if r & sign else 0)

    if kind == ADD:
        def f(a, b, r):
            m = r & mask
            return (common(m) | (CF if r > mask else 0) | ((a ^ b ^ r) & AF)
                    | (OF if ((a ^ r) & (b ^ r)) & sign else 0))
    elif kind == SUB:
        def f(a, b, r):
            m = r & mask
            return (common(m) | (CF if r < 0 else 0) | ((a ^ b ^ r) & AF)
                    | (OF if ((a ^ b) & (a ^ r)) & sign else 0))
    elif kind == LOGIC:
        def f(a, b, r):
            return common(r & mask)
    elif kind == INC:
        def f(a, b, r):
            m = r & mask
            return (common(m) | (CF if b else 0) | ((a ^ 1 ^ r) & AF)
                    | (OF if m == sign else 0))
    elif kind == DEC:
        def f(a, b, r):
            m = r & mask
            return (common(m) | (CF if b else 0) | ((a ^ 1 ^ r) & AF)
                    | (OF if m == sign - 1 else 0))
    elif kind == SHL:
        def f(a, b, r):
            return (common(r) | ((a >> top) & 1)
                    | (OF if (a ^ r) & sign else 0))
    elif kind == SAR:
        def f(a, b, r):
            return common(r) | (a & 1) | (OF if (a ^ r) & sign else 0)
    elif kind == MUL:
        def f(a, b, r):
            return common(r & mask) | (CF | OF if a else 0)
    else:
        def f(a, b, r):
            return r & ARITH_FLAGS
    f.__name__ = f"flags_{KIND_NAMES[kind].lower()}{bits}"
    return f


# FLAGS[fo](fa, fb, fr) -> the six arithmetic flags as EFLAGS bits
FLAGS = tuple(_make(k, s) for k in range(9) for s in SIZES)


def _make_cf(kind, size):
    mask = (1 << (8 * size)) - 1
    top = 8 * size - 1
    if kind == ADD:
        return lambda a, b, r: 1 if r > mask else 0
    if kind == SUB:
        return lambda a, b, r: 1 if r < 0 else 0
    if kind in (INC, DEC):
        return lambda a, b, r: 1 if b else 0
    if kind == SHL:
        return lambda a, b, r: (a >> top) & 1
    if kind == SAR:
        return lambda a, b, r: a & 1
    if kind == MUL:
        return lambda a, b, r: 1 if a else 0
    if kind == EFL:
        return lambda a, b, r: r & 1
    return lambda a, b, r: 0


# CARRY[fo](fa, fb, fr) -> CF alone (INC/DEC and ADC/SBB need only that)
CARRY = tuple(_make_cf(k, s) for k in range(9) for s in SIZES)


def compute(fo, fa, fb, fr):
    return FLAGS[fo](fa, fb, fr)


# Conditions on a flags word, in the encoding order of Jcc/SETcc/CMOVcc.
def _cond_table():
    def o(f): return bool(f & OF)
    def c(f): return bool(f & CF)
    def z(f): return bool(f & ZF)
    def be(f): return bool(f & (CF | ZF))
    def s(f): return bool(f & SF)
    def p(f): return bool(f & PF)
    def lt(f): return bool(f & SF) != bool(f & OF)
    def le(f): return bool(f & ZF) or bool(f & SF) != bool(f & OF)
    out = []
    for fn in (o, c, z, be, s, p, lt, le):
        out.append(fn)
        out.append(lambda f, fn=fn: not fn(f))
    return tuple(out)


COND = _cond_table()
CC_NAMES = ("o", "no", "b", "ae", "e", "ne", "be", "a",
            "s", "ns", "p", "np", "l", "ge", "le", "g")


def cond_generic_expr(cc, flags):
    """Python expression for condition `cc` over a flags-word expression."""
    base = cc & ~1
    if base == 0:
        e = f"({flags}) & {OF}"
    elif base == 2:
        e = f"({flags}) & {CF}"
    elif base == 4:
        e = f"({flags}) & {ZF}"
    elif base == 6:
        e = f"({flags}) & {CF | ZF}"
    elif base == 8:
        e = f"({flags}) & {SF}"
    elif base == 10:
        e = f"({flags}) & {PF}"
    elif base == 12:
        e = f"COND[12]({flags})"
    else:
        e = f"COND[14]({flags})"
    return f"not ({e})" if cc & 1 else f"({e})"


def cond_expr(kind, size, cc):
    """A specialised condition expression over fa/fb/fr for a statically known kind.

    Returns None when there is no shortcut; the caller then computes the
    whole flags word.
    """
    bits = size * 8
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    base, neg = cc & ~1, cc & 1
    e = None
    if kind == SUB:
        e = {
            0: f"((fa ^ fb) & (fa ^ fr) & {sign:#x})",
            2: "(fr < 0)",
            4: f"not (fr & {mask:#x})",
            6: f"(fr < 0 or not (fr & {mask:#x}))",
            8: f"(fr & {sign:#x})",
            12: f"((fr ^ ((fa ^ fb) & (fa ^ fr))) & {sign:#x})",
            14: f"(not (fr & {mask:#x}) or (fr ^ ((fa ^ fb) & (fa ^ fr))) & {sign:#x})",
        }.get(base)
    elif kind == ADD:
        e = {
            0: f"((fa ^ fr) & (fb ^ fr) & {sign:#x})",
            2: f"(fr > {mask:#x})",
            4: f"not (fr & {mask:#x})",
            6: f"(fr > {mask:#x} or not (fr & {mask:#x}))",
            8: f"(fr & {sign:#x})",
        }.get(base)
    elif kind == LOGIC:
        e = {
            0: "False",
            2: "False",
            4: "not fr",
            6: "not fr",
            8: f"(fr & {sign:#x})",
            12: f"(fr & {sign:#x})",
            14: f"(not fr or fr & {sign:#x})",
        }.get(base)
    elif kind in (INC, DEC):
        e = {
            2: "fb",
            4: f"not (fr & {mask:#x})",
            8: f"(fr & {sign:#x})",
        }.get(base)
    elif kind == EFL:
        e = cond_generic_expr(base, "fr")
    if e is None:
        return None
    if neg:
        return e[4:] if e.startswith("not ") else f"not {e}"
    return e


def cf_expr(kind, size):
    """Expression for CF (0 or 1 / bool) over fa/fb/fr for a known kind, or None."""
    mask = (1 << (size * 8)) - 1
    return {
        ADD: f"(fr > {mask:#x})",
        SUB: "(fr < 0)",
        LOGIC: "0",
        INC: "fb",
        DEC: "fb",
        SHL: f"((fa >> {size * 8 - 1}) & 1)",
        SAR: "(fa & 1)",
        MUL: "fa",
        EFL: "(fr & 1)",
    }.get(kind)
