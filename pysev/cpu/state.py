"""Architectural register state of one x86 CPU.

General registers live in a list (translated code indexes it directly);
arithmetic flags are lazy (see flags.py); every other EFLAGS bit is kept
in `eflags_rest`.  Segment registers keep their hidden parts (base, limit,
attributes) beside the selector, as the hardware does.
"""

from decoder.records import ARITH_FLAGS, ES, CS, SS, DS, FS, GS, SEG_NAMES  # noqa: F401
from . import flags as F
from .emit import Mode

GPR_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

EFLAGS_FIXED1 = 0x2                 # bit 1 always reads as one
# bits software can change with POPF at CPL 0 (ID, AC, RF and VM rules come with system mode)
EFLAGS_WRITABLE = 0x3F7FD5


class CPUState:
    def __init__(self):
        self.regs = [0] * 16
        self.rip = 0
        self.fo = F.fo_of(F.EFL, 8)
        self.fa = self.fb = 0
        self.fr = 0
        self.eflags_rest = EFLAGS_FIXED1
        self.seg_sel = [0] * 6
        self.seg_base = [0] * 6
        self.seg_limit = [0xFFFF] * 6
        self.seg_attr = [0] * 6
        # the valid offset range of each segment, for limit checks in protected mode
        self.seg_lo = [0] * 6
        self.seg_hi = [0xFFFF] * 6
        self.cr0 = 0x60000010
        self.cr2 = 0
        self.cr3 = 0
        self.cr4 = 0
        self.efer = 0
        self.msr = {}
        self.tsc_aux = 0
        self.halted = False
        self.fault_count = 0
        self.mode = Mode(64, 8, True)

    # ---- EFLAGS ------------------------------------------------------------------
    @property
    def eflags(self):
        return self.eflags_rest | F.FLAGS[self.fo](self.fa, self.fb, self.fr)

    @eflags.setter
    def eflags(self, value):
        self.eflags_rest = (value & ~ARITH_FLAGS & 0xFFFFFFFF) | EFLAGS_FIXED1
        self.fo = F.fo_of(F.EFL, 8)
        self.fr = value & ARITH_FLAGS

    @property
    def df(self):
        return bool(self.eflags_rest & 0x400)

    # ---- modes -------------------------------------------------------------------
    def set_mode(self, bits, stack=None, long=None, cpl=0, pe=None, segcheck=False):
        """Set the code size (16/32/64), stack size and privilege the translator assumes."""
        if long is None:
            long = bits == 64
        if stack is None:
            stack = 8 if long else bits // 8
        if pe is None:
            pe = bool(self.cr0 & 1)
        self.mode = Mode(bits, stack, long, cpl, pe, segcheck)

    def set_segment(self, seg, selector, base=None, limit=None, attr=None):
        self.seg_sel[seg] = selector & 0xFFFF
        self.seg_base[seg] = (selector << 4) if base is None else base
        if limit is not None:
            self.seg_limit[seg] = limit
        if attr is not None:
            self.seg_attr[seg] = attr
        attr, limit = self.seg_attr[seg], self.seg_limit[seg]
        typ = (attr >> 8) & 0xF
        if not attr & 0x8000:                       # null or not present: every access faults
            lo, hi = 1, 0
        elif attr & 0x1000 and not typ & 8 and typ & 4:     # expand-down data
            lo, hi = limit + 1, 0xFFFFFFFF if attr & (1 << 22) else 0xFFFF
        else:
            lo, hi = 0, limit
        self.seg_lo[seg], self.seg_hi[seg] = lo, hi

    def segments_flat(self):
        """True when no data or stack segment limit can fault (every offset is valid)."""
        lo, hi = self.seg_lo, self.seg_hi
        return all(lo[s] == 0 and hi[s] >= 0xFFFFFFFF for s in (ES, SS, DS, FS, GS))
