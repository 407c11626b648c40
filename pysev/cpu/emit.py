"""The emitter context: turns one decoded instruction into Python statements.

Each instruction family registers emitters with @emits("MNEMONIC", ...).
An emitter reads operands as Python expressions, writes statements with
e.line(), writes results back with e.write(), and records its flag effect
with e.flags().  Rules that keep faults precise: every memory access (the
only thing that can fault, besides explicit raises) comes before any
register write, and flag locals are assigned last.
"""

import re

from decoder.records import FS, GS
from . import flags as F

EMITTERS = {}


def emits(*mnemonics):
    def register(fn):
        for m in mnemonics:
            EMITTERS[m] = fn
        return fn
    return register


def mask_of(size):
    return (1 << (8 * size)) - 1


_NUMBER = re.compile(r"\b(0x[0-9a-fA-F]+|\d+)\b")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_TEMP = re.compile(r"t\d+$")
_WORDS = frozenset(("if", "else", "not", "and", "or", "True", "False"))
_FLAG_LOCAL = re.compile(r"\bf([oabr])\b")


def is_static(expr):
    """True when `expr` uses only block temporaries (t1, t2 ...), literals and
    operators.  A temporary is assigned once per pass through a block, so such
    an expression has the same value anywhere later in the same pass."""
    expr = str(expr)
    if "[" in expr or "." in expr:
        return False
    return all(_TEMP.match(name) or name in _WORDS
               for name in _IDENT.findall(_NUMBER.sub(" ", expr)))


def reads_flag_locals(expr):
    return _FLAG_LOCAL.search(expr) is not None


def _wrap(expr):
    if expr.isidentifier() or expr.isdigit() or expr.startswith("0x") and expr[2:].isalnum():
        return expr
    return f"({expr})"


class Chunk:
    """The statements of one instruction plus what the flag pass needs to know."""
    __slots__ = ("ins", "lines", "flag_lines", "flag_full", "flag_reads_prior",
                 "flag_static", "flag_sunk", "reads_flags", "may_fault", "store", "inline_stores",
                 "calls", "end", "lineno")

    def __init__(self, ins):
        self.ins = ins
        self.lines = []
        self.flag_lines = []          # droppable lazy-flag assignment, run last
        self.flag_full = False        # flag_lines set all six flags
        self.flag_reads_prior = False  # flag_lines use the previous flags
        self.flag_static = False      # flag_lines use only temporaries and literals
        self.flag_sunk = False        # flag_lines go into the exits only (translate.py)
        self.reads_flags = False      # main lines read flags (or set them conditionally)
        self.may_fault = False
        self.store = False
        self.inline_stores = 0        # stores written inline by Emitter.store
        self.calls = False            # calls a helper (which may write memory too)
        self.end = None               # block exit description, see Emitter.end_*
        self.lineno = 0


class Mode:
    """What the translator needs to know about the CPU mode (part of the cache key)."""
    __slots__ = ("bits", "stack", "long", "key", "lmask", "cpl", "pe", "segcheck")

    def __init__(self, bits, stack, long, cpl=0, pe=False, segcheck=False):
        self.bits, self.stack, self.long = bits, stack, long
        self.cpl, self.pe, self.segcheck = cpl, pe, segcheck
        self.key = (bits, stack, long, cpl, pe, segcheck)
        self.lmask = mask_of(8) if long else 0xFFFFFFFF

    def __repr__(self):
        return f"<Mode {self.bits}-bit stack={self.stack * 8} cpl={self.cpl}{' pe' if self.pe else ''}>"


class Emitter:
    def __init__(self, mode):
        self.mode = mode
        self.fkind = None          # statically known flag kind (kind, size) or None
        self.fvals = None          # and its fa/fb/fr as static expressions, or None
        self.uses_flags = False
        self.helpers = set()
        self.chunk = None
        self._ntmp = 0
        self._addr_cache = {}
        self.indent = 0            # extra 4-space levels for lines inside emitter ifs

    # ---- bookkeeping -----------------------------------------------------------
    def begin(self, ins):
        # temporaries are numbered through the whole block (not per instruction),
        # so the flag pass may refer to an earlier instruction's values later on
        self.chunk = Chunk(ins)
        self._addr_cache = {}
        self.indent = 0
        return self.chunk

    def tmp(self):
        self._ntmp += 1
        return f"t{self._ntmp}"

    def line(self, text):
        self.chunk.lines.append("    " * self.indent + text)

    def fault_point(self):
        self.chunk.may_fault = True

    # ---- registers ---------------------------------------------------------------
    @staticmethod
    def reg_expr(reg):
        n = reg.num
        if reg.high:
            return f"((R[{n}] >> 8) & 0xff)"
        if reg.size == 8:
            return f"R[{n}]"
        return f"(R[{n}] & {mask_of(reg.size):#x})"

    def set_reg(self, reg, expr):
        n = reg.num
        expr = _wrap(expr)
        if reg.high:
            self.line(f"R[{n}] = (R[{n}] & 0xffffffffffff00ff) | ({expr} << 8)")
        elif reg.size >= 4:
            self.line(f"R[{n}] = {expr}")
        else:
            keep = mask_of(8) & ~mask_of(reg.size)
            self.line(f"R[{n}] = (R[{n}] & {keep:#x}) | {expr}")

    def set_gpr(self, num, size, expr):
        """Write a GPR by number at a size (no high-byte registers)."""
        n = num
        expr = _wrap(expr)
        if size >= 4:
            self.line(f"R[{n}] = {expr}")
        else:
            keep = mask_of(8) & ~mask_of(size)
            self.line(f"R[{n}] = (R[{n}] & {keep:#x}) | {expr}")

    @staticmethod
    def gpr(num, size):
        if size == 8:
            return f"R[{num}]"
        return f"(R[{num}] & {mask_of(size):#x})"

    # ---- memory ------------------------------------------------------------------
    def ea(self, mem):
        """The effective address (offset within the segment) of a memory operand."""
        if mem.base == "rip":
            return f"{mem.disp:#x}"
        parts = []
        if mem.base is not None:
            parts.append(f"R[{mem.base}]")
        if mem.index is not None:
            parts.append(f"R[{mem.index}]" if mem.scale == 1
                         else f"R[{mem.index}] * {mem.scale}")
        amask = mask_of(mem.asize)
        disp = mem.disp & amask
        if not parts:
            return f"{disp:#x}"
        if disp:
            parts.append(f"{disp:#x}")
        if len(parts) == 1 and mem.asize == 8:
            return parts[0]
        return f"(({' + '.join(parts)}) & {amask:#x})"

    def linear(self, seg, ea):
        """Linear address of segment:offset expression."""
        if self.mode.long:
            if seg in (FS, GS):
                return f"((SB[{seg}] + {ea}) & 0xffffffffffffffff)"
            return ea
        return f"((SB[{seg}] + {ea}) & 0xffffffff)"

    def seg_check(self, seg, offset, size):
        """Segment limit check (protected mode with segments that are not flat).

        SLO/SHI hold each segment's valid offset range (expand-down included;
        a null segment has an empty range)."""
        if not self.mode.segcheck:
            return
        vec = 12 if seg == 2 else 13
        self.fault_point()
        self.line(f"if not SLO[{seg}] <= {offset} <= SHI[{seg}] - {max(size, 1) - 1}: "
                  f"raise GuestFault({vec}, 0, detail='offset outside the segment limit')")

    def addr(self, mem):
        """Linear address of a memory operand, computed once per instruction."""
        key = id(mem)
        name = self._addr_cache.get(key)
        if name is None and self.mode.segcheck:
            ea = self.tmp()
            self.line(f"{ea} = {self.ea(mem)}")
            self.seg_check(mem.seg, ea, mem.size)
            name = self.tmp()
            self.line(f"{name} = {self.linear(mem.seg, ea)}")
            self._addr_cache[key] = name
        if name is None:
            expr = self.linear(mem.seg, self.ea(mem))
            if expr.isidentifier() or expr.startswith("0x") or expr.startswith("R["):
                if expr.startswith("R["):
                    name = self.tmp()
                    self.line(f"{name} = {expr}")
                else:
                    name = expr
            else:
                name = self.tmp()
                self.line(f"{name} = {expr}")
            self._addr_cache[key] = name
        return name

    def _simple_addr(self, addr):
        if addr.isidentifier() or addr.startswith("0x") or addr.isdigit():
            return addr
        t = self.tmp()
        self.line(f"{t} = {addr}")
        return t

    # The memory fast path is written inline.  The software TLB maps a linear page
    # to the delta from a linear address in it to the host offset (host = lin +
    # delta); a hit inside one page reads or writes the memoryview directly: a
    # byte as MV[i], an aligned word, dword or qword through the memoryview cast
    # to that size (MV2, MV4, MV8: no method call, no tuple), an unaligned one
    # through struct.  Anything else (a miss, a page crossing, MMIO, a code page)
    # takes the slow path (SR1..SR8, SW1..SW8).  Host pages are page aligned, so
    # an aligned linear address is an aligned host offset.
    def load(self, size, addr):
        t = self.tmp()
        self.fault_point()
        if size not in (1, 2, 4, 8):
            self.line(f"{t} = rd{size}({addr})")
            return t
        a = self._simple_addr(addr)
        h = self.tmp()
        self.line(f"{h} = TLB_R.get({a} >> 12)")
        if size == 1:
            self.line(f"{t} = MV[{a} + {h}] if {h} is not None else SR1({a})")
        else:
            shift = {2: 1, 4: 2, 8: 3}[size]
            self.line(f"{t} = (MV{size}[({a} + {h}) >> {shift}] if not {a} & {size - 1} else "
                      f"U{size}(MV, {a} + {h})[0] if ({a} & 0xfff) <= {4096 - size} else "
                      f"SR{size}({a})) if {h} is not None else SR{size}({a})")
        return t

    def store(self, size, addr, value):
        self.fault_point()
        self.chunk.store = True
        if size not in (1, 2, 4, 8):
            self.chunk.calls = True
            self.line(f"wr{size}({addr}, {value})")
            return
        # only the slow path can write to a page holding translated code: it
        # returns whether it did, and the block leaves after this instruction
        # when it did (translate._assemble), through the local `smc`
        self.chunk.inline_stores += 1
        a = self._simple_addr(addr)
        h = self.tmp()
        self.line(f"{h} = TLB_W.get({a} >> 12)")
        if size == 1:
            self.line(f"if {h} is not None:")
            self.line(f"    MV[{a} + {h}] = {value}")
        else:
            shift = {2: 1, 4: 2, 8: 3}[size]
            self.line(f"if {h} is not None and not {a} & {size - 1}:")
            self.line(f"    MV{size}[({a} + {h}) >> {shift}] = {value}")
            self.line(f"elif {h} is not None and ({a} & 0xfff) <= {4096 - size}:")
            self.line(f"    P{size}(MV, {a} + {h}, {value})")
        self.line("else:")
        self.line(f"    smc = SW{size}({a}, {value}) or smc")

    # ---- operands ----------------------------------------------------------------
    def read(self, op):
        """Expression for an operand's value, masked to its size."""
        k = op.kind
        if k == "reg":
            return self.reg_expr(op)
        if k == "imm":
            return f"{op.value:#x}"
        if k == "mem":
            return self.load(op.size, self.addr(op))
        if k == "sreg":
            return f"SEL[{op.num}]"
        raise NotImplementedError(f"operand kind {k}")

    def get(self, op):
        """Like read, but the result is a simple name or literal (safe to reuse)."""
        expr = self.read(op)
        if expr.isidentifier() or expr.startswith("0x"):
            return expr
        t = self.tmp()
        self.line(f"{t} = {expr}")
        return t

    def write(self, op, expr):
        """Store a value (already masked to op.size) to a register or memory operand."""
        k = op.kind
        if k == "reg":
            self.set_reg(op, expr)
        elif k == "mem":
            self.store(op.size, self.addr(op), expr)
        else:
            raise NotImplementedError(f"write to operand kind {k}")

    # ---- flags -------------------------------------------------------------------
    # While the kind of the last flag-setting instruction of the block is known
    # (fkind) and its operands are static expressions (fvals: temporaries and
    # literals), a flag read is written over those values directly, without the
    # fo/fa/fb/fr locals: then the instruction that set them need not assign
    # the locals at all (see translate._drop_dead_flags).
    def _note_read(self):
        self.uses_flags = True
        self.chunk.reads_flags = True

    def _static(self, expr):
        """expr (over fa/fb/fr) with the known values put in, when they are known."""
        vals = self.fvals
        if vals is None:
            return expr
        return _FLAG_LOCAL.sub(lambda m: _wrap(vals[m.group(1)]), expr)

    def _read(self, expr):
        """Note a read of the flag locals if expr still has one."""
        self.uses_flags = True
        if reads_flag_locals(expr):
            self.chunk.reads_flags = True
        return expr

    def flags_word(self):
        """Expression of the six arithmetic flags (EFLAGS bits), from the current state."""
        return self._read(self._flags_word())

    def _flags_word(self):
        self.uses_flags = True
        if self.fkind is not None:
            fo = F.fo_of(*self.fkind)
            if self.fkind[0] == F.EFL:
                return self._static("fr")
            return self._static(f"FLAGS[{fo}](fa, fb, fr)")
        return "FLAGS[fo](fa, fb, fr)"

    def cf(self):
        """Expression for the current CF (truthy when set)."""
        return self._read(self._cf())

    def _cf(self):
        self.uses_flags = True
        if self.fkind is not None:
            e = F.cf_expr(*self.fkind)
            if e is not None:
                return self._static(e)
        return "CARRY[fo](fa, fb, fr)"

    def cond(self, cc):
        """Expression true when condition code cc holds."""
        if self.fkind is not None:
            e = F.cond_expr(self.fkind[0], self.fkind[1], cc)
            if e is not None:
                return self._read(self._static(e))
        return self._read(F.cond_generic_expr(cc, self._flags_word()))

    def _set_state(self, kind, size, a, b, r):
        self.fkind = (kind, size)
        vals = {"o": str(F.fo_of(kind, size)), "a": a, "b": b, "r": r}
        self.fvals = vals if all(is_static(v) for v in (a, b, r)) else None
        return self.fvals is not None

    def flags(self, kind, size, a="0", b="0", r="0"):
        """Record the lazy flag state an instruction leaves (all six flags written)."""
        self.uses_flags = True
        fo = F.fo_of(kind, size)
        c = self.chunk
        lines = [f"fo = {fo}"]
        if kind not in (F.LOGIC, F.EFL):
            lines.append(f"fa = {a}")
            if kind not in (F.SHL, F.SAR, F.MUL):
                lines.append(f"fb = {b}")
        lines.append(f"fr = {r}")
        c.flag_lines = ["; ".join(lines)]
        c.flag_full = True
        c.flag_static = self._set_state(kind, size, a, b, r)

    def flags_keep_cf(self, kind, size, a, r):
        """INC/DEC: like flags(), CF carried over from the previous state."""
        self.uses_flags = True
        fo = F.fo_of(kind, size)
        c = self.chunk
        cf = self._cf()
        c.flag_lines = [f"fb = {cf}; fo = {fo}; fa = {a}; fr = {r}"]
        c.flag_reads_prior = reads_flag_locals(cf)
        c.flag_full = not c.flag_reads_prior
        c.flag_static = self._set_state(kind, size, a, cf, r) and not c.flag_reads_prior

    def flags_merge(self, changed_mask, new_bits):
        """Some flags change (changed_mask, EFLAGS bits), the rest keep their value."""
        self.uses_flags = True
        c = self.chunk
        keep = F.ARITH_FLAGS & ~changed_mask
        old = self._flags_word()
        word = f"({old} & {keep:#x}) | {_wrap(new_bits)}" if keep else _wrap(new_bits)
        c.flag_lines = [f"fr = {word}; fo = {F.fo_of(F.EFL, 8)}"]
        c.flag_reads_prior = reads_flag_locals(word)
        c.flag_full = not c.flag_reads_prior
        c.flag_static = self._set_state(F.EFL, 8, "0", "0", word) and not c.flag_reads_prior

    def flags_inline(self, indent, kind, size, a="0", b="0", r="0"):
        """Flag assignment inside conditional code the emitter writes itself.

        The state after this instruction is then only known at run time.
        """
        self.uses_flags = True
        fo = F.fo_of(kind, size)
        self.chunk.reads_flags = True
        self.fvals = None
        pad = "    " * indent
        self.line(f"{pad}fo = {fo}; fa = {a}; fb = {b}; fr = {r}")

    def sync_flags_out(self):
        """Store the lazy flags into the CPU before a helper that reads EFLAGS."""
        self._note_read()
        self.line("cpu.fo = fo; cpu.fa = fa; cpu.fb = fb; cpu.fr = fr")

    def sync_flags_in(self):
        """Reload the lazy flags after a helper that changed EFLAGS."""
        self.uses_flags = True
        self.chunk.reads_flags = True
        self.line("fo = cpu.fo; fa = cpu.fa; fb = cpu.fb; fr = cpu.fr")
        self.fkind = self.fvals = None

    def flags_dynamic(self):
        """Declare that the flag kind after this instruction is known only at run time."""
        self.uses_flags = True
        self.chunk.reads_flags = True
        self.fkind = self.fvals = None

    # ---- block ends ------------------------------------------------------------------
    def end_jump(self, target):
        """Unconditional transfer to `target` (expression or int)."""
        self.chunk.end = ("jump", target)

    def end_branch(self, cond, target):
        """Conditional transfer: to target when cond holds, else to the next instruction."""
        self.chunk.end = ("branch", cond, target)

    def end_here(self):
        """End the block after this instruction, continuing at the next one."""
        self.chunk.end = ("next",)

    def end_halt(self):
        self.chunk.end = ("halt",)

    def raise_fault(self, vector, error_code=None, trap=False, detail=""):
        self.fault_point()
        ins = self.chunk.ins
        nxt = f", next_ip={ins.next_ip:#x}" if trap else ""
        det = f", detail={detail!r}" if detail else ""
        self.line(f"raise GuestFault({vector}, {error_code!r}{nxt}{det})")
        self.chunk.end = ("raise",)

    def call_helper(self, name, *args, result=True, may_fault=True):
        """A call to a run-time helper from pysev.cpu.helpers."""
        self.helpers.add(name)
        self.chunk.calls = True
        if may_fault:
            self.fault_point()
        call = f"{name}({', '.join(str(a) for a in args)})"
        if result:
            t = self.tmp()
            self.line(f"{t} = {call}")
            return t
        self.line(call)
        return None

    # ---- instruction pointer helpers -----------------------------------------------
    def ip_mask(self, osize):
        """Mask for a new IP of operand size osize (IP wraps at 16 bits in 16-bit code)."""
        return mask_of(8) if osize == 8 else mask_of(osize)
