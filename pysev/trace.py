"""Execution traces in the format of QEMU's ``-d`` log, so that a pysev trace
and a QEMU trace of the same firmware can be compared line by line.

The items (``pysev run -d ITEMS``):

``in_asm``
    Each translated block, as QEMU prints a translation block::

        ----------------
        IN: 
        0xfffffff0:  ea 5b e0 00 f0           jmp      0F000h:0E05Bh

    Addresses (linear: CS base + IP) and instruction bytes are QEMU's; the
    disassembly text is iced-x86's MASM syntax, where QEMU prints AT&T syntax.
    Bytes past the eighth go on continuation lines, as in QEMU.
``cpu``
    A register dump before every instruction (pysev then runs one instruction
    at a time, like QEMU's ``-singlestep``), in QEMU's ``x86_cpu_dump_state``
    format.  The ``CCS=/CCD=/CCO=`` line is kept so that line numbers match
    QEMU's, but pysev's lazy flags are not QEMU's: pysev always prints the
    computed arithmetic flags with ``CCO=EFLAGS``, a state QEMU also uses, so
    a comparison should skip lines starting with ``CCS=``.
``int``
    Each exception or interrupt the CPU delivers: ``check_exception old: ...``
    for exceptions, then, in protected and long mode, QEMU's numbered
    ``v=.. e=.. i=..`` line and a register dump.
``mmu``
    QEMU's ``CR0 update: ...`` / ``CR3 update: ...`` lines, plus pysev's page
    walks (lines starting ``MMU walk:``, which QEMU does not have).
``op``
    pysev only: the Python source of each translated block.
``nochain``
    Accepted for QEMU compatibility; it changes nothing in pysev.

The CPU calls the hooks that :class:`Tracer` provides (``log_check_exception``,
``log_interrupt``, ``log_cr``, ``log_mmu``); the functions ``format_*`` build
the text and can be used on their own.
"""

import sys

# -d items: name -> help text
LOG_ITEMS = {
    "in_asm": "the guest instructions of each translated block (QEMU format)",
    "cpu": "the CPU registers before each instruction (runs one instruction at a time)",
    "int": "each exception and interrupt delivered, with the CPU registers",
    "mmu": "control register updates that change the address space, and page walks",
    "op": "the Python source pysev emits for each translated block",
    "nochain": "accepted for QEMU compatibility; no effect in pysev",
}

# EFLAGS bits
_CF, _PF, _AF, _ZF, _SF, _DF, _OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
_ARITH = _CF | _PF | _AF | _ZF | _SF | _OF

# descriptor attribute bits, in QEMU's "flags" layout (descriptor bits 8..23 in place)
_A_ACCESSED, _A_RW, _A_CE, _A_CODE, _A_S, _A_P = 0x100, 0x200, 0x400, 0x800, 0x1000, 0x8000
_A_L, _A_DB, _A_G = 1 << 21, 1 << 22, 1 << 23

_CR0_PE, _CR0_PG = 1, 1 << 31
_EFER_LMA = 1 << 10

# names of system descriptor types: legacy mode, then long mode
_SYSTEM_TYPES = (
    ("Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate",
     "IntGate16", "TrapGate16", "Reserved", "TSS32-avl", "Reserved", "TSS32-busy",
     "CallGate32", "Reserved", "IntGate32", "TrapGate32"),
    ("<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved", "Reserved",
     "Reserved", "Reserved", "TSS64-avl", "Reserved", "TSS64-busy", "CallGate64",
     "Reserved", "IntGate64", "TrapGate64"),
)

_SEG_NAMES = ("ES", "CS", "SS", "DS", "FS", "GS")
_DEFAULT_DR = (0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400)
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

BLOCK_SEPARATOR = "-" * 16
BYTES_PER_LINE = 8          # QEMU's split for x86 instruction bytes


# ---- CPU state -------------------------------------------------------------------------

def _attr(obj, name, default):
    value = getattr(obj, name, None)
    return default if value is None else value


def _modes(cpu):
    """(protected, long mode active, 64-bit code segment) for the dump."""
    pe = bool(cpu.cr0 & _CR0_PE)
    lma = bool(_attr(cpu, "efer", 0) & _EFER_LMA)
    cs64 = lma and bool(cpu.seg_attr[1] & _A_L)
    return pe, lma, cs64


def _cpl(cpu, pe):
    cpl = getattr(cpu, "cpl", None)
    if cpl is None:
        cpl = cpu.seg_sel[1] & 3 if pe else 0
    return cpl if pe else 0


def _flag_letters(eflags):
    return "".join(letter if eflags & bit else "-" for letter, bit in (
        ("D", _DF), ("O", _OF), ("S", _SF), ("Z", _ZF), ("A", _AF), ("P", _PF), ("C", _CF)))


def _qemu_flags(attr, limit):
    """QEMU's segment "flags": descriptor bits 8..23, which include limit bits 19..16.

    pysev keeps the attributes without those limit bits; they are recovered
    from the (expanded) limit.
    """
    raw_limit = limit >> 12 if attr & _A_G else limit
    return (attr & 0x00F0FF00) | (((raw_limit >> 16) & 0xF) << 16)


def _segment_line(name, sel, base, limit, attr, pe, lma, cs64):
    flags = _qemu_flags(attr, limit)
    if cs64:
        text = f"{name:<3}={sel & 0xFFFF:04x} {base & _M64:016x} {limit & _M32:08x} {flags:08x}"
    else:
        text = f"{name:<3}={sel & 0xFFFF:04x} {base & _M32:08x} {limit & _M32:08x} {flags:08x}"
    if not pe or not flags & _A_P:
        return text
    text += f" DPL={(flags >> 13) & 3} "
    if flags & _A_S:
        if flags & _A_CODE:
            kind = "CS64" if flags & _A_L else ("CS32" if flags & _A_DB else "CS16")
            text += f"{kind} [{'C' if flags & _A_CE else '-'}{'R' if flags & _A_RW else '-'}"
        else:
            kind = "DS  " if flags & _A_DB or lma else "DS16"
            text += f"{kind} [{'E' if flags & _A_CE else '-'}{'W' if flags & _A_RW else '-'}"
        text += f"{'A' if flags & _A_ACCESSED else '-'}]"
    else:
        text += _SYSTEM_TYPES[1 if lma else 0][(flags >> 8) & 0xF]
    return text


def format_cpu_state(cpu, ccop=True):
    """The CPU registers in the layout of QEMU's ``-d cpu`` dump (x86_64 target).

    Register names and widths follow QEMU: 64-bit names when the code segment
    is a 64-bit one, 32-bit names otherwise; descriptor tables, CR2/CR3 and the
    debug registers are 64 bits wide while long mode is active.  With *ccop*
    the ``CCS=.. CCD=.. CCO=EFLAGS`` line is included (see the module docstring).
    Returns the text with a final newline.
    """
    pe, lma, cs64 = _modes(cpu)
    regs = cpu.regs
    eflags = cpu.eflags
    cpl = _cpl(cpu, pe)
    shadow = getattr(cpu, "interrupt_shadow", None)        # IP the STI/MOV SS shadow covers
    inhibit = int(shadow is not None and shadow == cpu.rip)
    status = (f"[{_flag_letters(eflags)}] CPL={cpl} II={inhibit} "
              f"A20={int(bool(getattr(cpu, 'a20', 1)))} SMM={int(bool(getattr(cpu, 'smm', 0)))} "
              f"HLT={int(bool(getattr(cpu, 'halted', False)))}")
    out = []
    if cs64:
        r = [v & _M64 for v in regs]
        out.append(f"RAX={r[0]:016x} RBX={r[3]:016x} RCX={r[1]:016x} RDX={r[2]:016x}")
        out.append(f"RSI={r[6]:016x} RDI={r[7]:016x} RBP={r[5]:016x} RSP={r[4]:016x}")
        out.append(f"R8 ={r[8]:016x} R9 ={r[9]:016x} R10={r[10]:016x} R11={r[11]:016x}")
        out.append(f"R12={r[12]:016x} R13={r[13]:016x} R14={r[14]:016x} R15={r[15]:016x}")
        out.append(f"RIP={cpu.rip & _M64:016x} RFL={eflags & _M32:08x} {status}")
    else:
        r = [v & _M32 for v in regs]
        out.append(f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}")
        out.append(f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}")
        out.append(f"EIP={cpu.rip & _M32:08x} EFL={eflags & _M32:08x} {status}")
    for n, name in enumerate(_SEG_NAMES):
        out.append(_segment_line(name, cpu.seg_sel[n], cpu.seg_base[n], cpu.seg_limit[n],
                                 cpu.seg_attr[n], pe, lma, cs64))
    for name, default in (("ldtr", (0, 0, 0xFFFF, 0x8200)), ("tr", (0, 0, 0xFFFF, 0x8B00))):
        sel, base, limit, attr = _attr(cpu, name, default)
        out.append(_segment_line("LDT" if name == "ldtr" else "TR", sel, base, limit, attr,
                                 pe, lma, cs64))
    gdt_base, gdt_limit = _attr(cpu, "gdtr", (0, 0xFFFF))
    idt_base, idt_limit = _attr(cpu, "idtr", (0, 0xFFFF))
    dr = list(_attr(cpu, "dr", _DEFAULT_DR))
    cr0, cr2, cr3, cr4 = cpu.cr0 & _M32, cpu.cr2, cpu.cr3, cpu.cr4 & _M32
    if lma:
        out.append(f"GDT=     {gdt_base & _M64:016x} {gdt_limit & _M32:08x}")
        out.append(f"IDT=     {idt_base & _M64:016x} {idt_limit & _M32:08x}")
        out.append(f"CR0={cr0:08x} CR2={cr2 & _M64:016x} CR3={cr3 & _M64:016x} CR4={cr4:08x}")
    else:
        out.append(f"GDT=     {gdt_base & _M32:08x} {gdt_limit & _M32:08x}")
        out.append(f"IDT=     {idt_base & _M32:08x} {idt_limit & _M32:08x}")
        out.append(f"CR0={cr0:08x} CR2={cr2 & _M32:08x} CR3={cr3 & _M32:08x} CR4={cr4:08x}")
    # QEMU leaves a space after DR3
    out.append("".join(f"DR{i}={dr[i] & _M64:016x} " for i in range(4)))
    out.append(f"DR6={dr[6] & _M64:016x} DR7={dr[7] & _M64:016x}")
    if ccop:
        width = 16 if cs64 else 8
        out.append(f"CCS={eflags & _ARITH:0{width}x} CCD={0:0{width}x} CCO=EFLAGS")
    out.append(f"EFER={_attr(cpu, 'efer', 0) & _M64:016x}")
    return "\n".join(out) + "\n"


# ---- instructions -------------------------------------------------------------------------

def format_insn(address, raw, text):
    """One instruction as QEMU's ``in_asm`` log shows it.

    *address* is the linear address, *raw* the instruction bytes, *text* the
    disassembly ("mnemonic operands").  Returns one or more lines, each
    ending in a newline.
    """
    mnemonic, _, operands = text.partition(" ")
    head = raw[:BYTES_PER_LINE]
    line = f"0x{address:08x}: " + "".join(f" {b:02x}" for b in head)
    line += " " * (3 * (BYTES_PER_LINE - len(head)))
    lines = [f"{line}  {mnemonic:<8} {operands}\n"]     # trailing spaces as in QEMU
    for i in range(BYTES_PER_LINE, len(raw), BYTES_PER_LINE):
        chunk = raw[i:i + BYTES_PER_LINE]
        lines.append(f"0x{address + i:08x}: " + "".join(f" {b:02x}" for b in chunk) + "\n")
    return "".join(lines)


def format_block(insns, cs_base, lmask=_M64):
    """A translated block for ``-d in_asm``: the separator, ``IN: ``, the
    instructions and an empty line, as QEMU prints a translation block.

    *insns* are decoder records (``.ip``, ``.raw``, ``.text``); *cs_base* is
    the code segment base that turns their IPs into linear addresses.
    """
    body = "".join(format_insn((cs_base + ins.ip) & lmask, ins.raw, ins.text) for ins in insns)
    return f"{BLOCK_SEPARATOR}\nIN: \n{body}\n"


# ---- interrupts ------------------------------------------------------------------------------

def format_check_exception(old, new):
    """QEMU's line for an exception about to be delivered; *old* is the
    exception whose delivery was under way (None or -1 for none)."""
    old = -1 if old is None else old
    return f"check_exception old: 0x{old & _M32:x} new 0x{new & _M32:x}\n"


def format_interrupt(cpu, count, vector, error_code, is_sw, dump=True):
    """QEMU's ``-d int`` record of an exception or interrupt, logged before
    delivery (so the registers are those of the interrupted instruction).

    ``count`` is the running number QEMU prints first, ``is_sw`` true for an
    ``int n``/``int3``/``into`` instruction.  QEMU prints these records only
    in protected mode; this function formats whatever it is given.
    """
    pc = ((cpu.seg_base[1] & _M32) ^ 0x80000000) - 0x80000000      # QEMU adds (int) CS base
    pc = (pc + cpu.rip) & _M64
    line = (f"{count:6d}: v={vector & 0xFF:02x} e={(error_code or 0) & 0xFFFF:04x} "
            f"i={int(bool(is_sw))} cpl={_cpl(cpu, bool(cpu.cr0 & _CR0_PE))} "
            f"IP={cpu.seg_sel[1] & 0xFFFF:04x}:{cpu.rip & _M64:016x} pc={pc:016x} "
            f"SP={cpu.seg_sel[2] & 0xFFFF:04x}:{cpu.regs[4] & _M64:016x}")
    if vector == 14:
        line += f" CR2={cpu.cr2 & _M64:016x}"
    else:
        line += f" env->regs[R_EAX]={cpu.regs[0] & _M64:016x}"
    text = line + "\n"
    if dump:
        text += format_cpu_state(cpu)
    return text


# ---- address space ---------------------------------------------------------------------------

def format_cr_update(n, value):
    """QEMU's ``-d mmu`` line for a write to CR0 or CR3 (None for other registers)."""
    if n == 0:
        return f"CR0 update: CR0=0x{value & _M32:08x}\n"
    if n == 3:
        return f"CR3 update: CR3={value & _M64:016x}\n"
    return None


_ACCESS_NAMES = {0: "read", 1: "write", 2: "fetch"}      # pysev.mem.paging ACCESS_*


def format_mmu(linear, access, phys=None, error_code=None, entries=(), detail=""):
    """A page walk (a TLB miss), for ``-d mmu``.  pysev only: QEMU has no such line.

    *access* is "read", "write" or "fetch" (or paging.ACCESS_READ/WRITE/FETCH);
    *phys* the physical address found, or None when the walk faulted with
    page-fault *error_code*; *entries* the paging-structure entries read, top
    level first; *detail* why the walk failed.
    """
    access = _ACCESS_NAMES.get(access, access)
    text = f"MMU walk: {access} lin={linear & _M64:016x}"
    if phys is not None:
        text += f" -> phys={phys:016x}"
    else:
        text += f" -> #PF err={(error_code or 0) & 0xFFFF:04x}"
    if entries:
        text += " [" + " ".join(f"{e & _M64:016x}" for e in entries) + "]"
    if detail:
        text += f" ({detail})"
    return text + "\n"


# ---- the tracer ------------------------------------------------------------------------------

class Tracer:
    """Writes the enabled ``-d`` items to *stream*.

    The machine installs its methods on the CPU:

    * ``step(rip)``: the CPU's step hook (used with ``cpu`` or single-stepping);
      prints a new instruction's ``IN:`` record, then the register dump.
    * ``log_block(blk)``: replaces the CPU's block log in block mode.
    * ``log_check_exception(old, new)``: called by the CPU when an exception
      is raised, before the double- and triple-fault rules (QEMU's
      ``check_exception`` line; *old* is the exception being delivered, or None).
    * ``log_interrupt(vector, error_code, software, next_ip=None, old=None)``:
      called by the CPU before it delivers an exception or interrupt.
    * ``log_cr(n, value)``: called on a write to control register *n* with the
      value written.
    * ``log_mmu(linear, access, phys=None, error_code=None, entries=(), detail="")``:
      a page walk.
    """

    def __init__(self, cpu, items, stream=None, single_step=False):
        self.cpu = cpu
        self.items = frozenset(items)
        self.stream = stream if stream is not None else sys.stderr
        self.single_step = single_step or "cpu" in self.items
        self.interrupt_count = 0
        self._cpu_checks = False      # the CPU calls log_check_exception itself
        self._printed = {}            # block key -> block object printed for it

    def write(self, text):
        self.stream.write(text)

    # ---- instructions --------------------------------------------------------------
    def _block_text(self, blk):
        cpu = self.cpu
        text = ""
        if "in_asm" in self.items:
            text += format_block(blk.insns, cpu.seg_base[1], cpu.mode.lmask)
        if "op" in self.items:
            text += f"OP (Python for block {blk.start:#x}):\n{blk.source}\n"
        return text

    def log_block(self, blk):
        """Block mode: log a block the CPU has just translated."""
        if not self.single_step:
            text = self._block_text(blk)
            if text:
                self.write(text)

    def step(self, rip):
        """Single-step mode: called before each instruction."""
        cpu = self.cpu
        if self.items & {"in_asm", "op"}:
            try:
                blk = cpu.block_at(rip, 1)
            except Exception:       # the fetch faults: the CPU reports it when it runs
                blk = None
            if blk is not None:
                key = getattr(blk, "key", None) or (cpu.seg_base[1], rip)
                if self._printed.get(key) is not blk:
                    self._printed[key] = blk
                    self.write(self._block_text(blk))
        if "cpu" in self.items:
            self.write(format_cpu_state(cpu))

    # ---- events ---------------------------------------------------------------------
    def log_check_exception(self, old, new):
        """The CPU is about to deliver exception *new* (before the double- and
        triple-fault rules apply) while delivering *old* (None: nothing)."""
        self._cpu_checks = True
        if "int" in self.items:
            self.write(format_check_exception(old, new))

    def log_interrupt(self, vector, error_code=None, software=False, next_ip=None,
                      old=None, hardware=False, **_extra):
        """The CPU is about to deliver *vector* (after the double-fault rules)."""
        if "int" not in self.items:
            return
        cpu = self.cpu
        text = ""
        if hardware:
            text += f"Servicing hardware INT=0x{vector:02x}\n"
        elif not software and not self._cpu_checks:
            # a CPU without the exception_log hook: report the exception here
            text += format_check_exception(old, vector)
        if cpu.cr0 & _CR0_PE:
            text += format_interrupt(cpu, self.interrupt_count, vector, error_code, software)
            self.interrupt_count += 1
        if text:
            self.write(text)

    def log_cr(self, n, value):
        if "mmu" not in self.items:
            return
        if n == 3 and not self.cpu.cr0 & _CR0_PG:
            return                   # QEMU logs CR3 only while paging is on
        text = format_cr_update(n, value)
        if text:
            self.write(text)

    def log_mmu(self, linear, access, phys=None, error_code=None, entries=(), detail=""):
        if "mmu" in self.items:
            self.write(format_mmu(linear, access, phys, error_code, entries, detail))

    def log_reset(self, power_on=False):
        """After a CPU reset: QEMU logs the reset's CR0 load (twice at power-on,
        when it resets the CPU once on creation and once with the machine)."""
        if "mmu" in self.items:
            self.write(format_cr_update(0, self.cpu.cr0) * (2 if power_on else 1))

    def flush(self):
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


__all__ = ["LOG_ITEMS", "Tracer", "format_cpu_state", "format_insn", "format_block",
           "format_check_exception", "format_interrupt", "format_cr_update", "format_mmu"]
