"""System instructions: control/debug registers, descriptor tables, MSRs, far transfers,
IRET, fast system calls, TLB and cache control, segment queries.

Most of the work happens in pysev.cpu.system (methods of the CPU).  Privilege
checks against CPL are decided here at translation time: the CPL is part of
the mode a block is translated for.
"""

from decoder.records import ZF
from ..emit import emits, mask_of
from ..faults import GP, UD


def _privileged(e, ins):
    """Emit #GP(0) and return True when CPL > 0 in protected mode."""
    if e.mode.pe and e.mode.cpl != 0:
        e.raise_fault(GP, 0, detail=f"{ins.text} needs CPL 0")
        return True
    return False


def _helper_end(e, ins):
    """End the block after a helper that may have changed CS:RIP, mode or EFLAGS."""
    e.sync_flags_in()
    e.chunk.end = ("helper",)


def _state_changing_call(e, name, *args):
    e.sync_flags_out()
    e.call_helper(name, *args, result=False)


def mov_system(e, ins):
    dst, src = ins.ops
    if dst.kind == "sysreg":
        if dst.cls not in ("cr", "dr") or _privileged(e, ins):
            if dst.cls not in ("cr", "dr"):
                e.raise_fault(UD, detail=ins.text)
            return
        value = e.read(src)
        if dst.cls == "cr":
            if dst.num not in (0, 2, 3, 4, 8):
                e.raise_fault(UD, detail=f"{ins.text}: no such control register")
                return
            e.call_helper("write_cr", dst.num, value, result=False)
            e.end_here()
        else:
            _mov_dr(e, ins, dst.num, value, write=True)
        return
    if src.cls not in ("cr", "dr") or _privileged(e, ins):
        if src.cls not in ("cr", "dr"):
            e.raise_fault(UD, detail=ins.text)
        return
    if src.cls == "cr":
        if src.num not in (0, 2, 3, 4, 8):
            e.raise_fault(UD, detail=f"{ins.text}: no such control register")
            return
        t = e.call_helper("read_cr", src.num, may_fault=False)
        e.set_gpr(dst.num, dst.size, f"{t} & {mask_of(dst.size):#x}")
    else:
        _mov_dr(e, ins, src.num, None, write=False, dst=dst)


def _mov_dr(e, ins, n, value, write, dst=None):
    if n in (4, 5):
        e.line("if cpu.cr4 & 8:")
        e.line(f"    raise GuestFault({UD}, None, detail='dr{n} with CR4.DE set')")
        e.fault_point()
        n += 2
    if n > 7:
        e.raise_fault(UD, detail=ins.text)
        return
    if write:
        if n == 6:
            value = f"({value} & 0xf00f) | 0xffff0ff0"
        elif n == 7:
            value = f"({value} & 0xffff2bff) | 0x400"
        e.line(f"cpu.dr[{n}] = {value}")
    else:
        e.set_gpr(dst.num, dst.size, f"cpu.dr[{n}] & {mask_of(dst.size):#x}")


@emits("LGDT", "LIDT")
def load_table(e, ins):
    if _privileged(e, ins):
        return
    (mem,) = ins.ops
    a = e.addr(mem)
    limit = e.load(2, a)
    bsize = 8 if e.mode.long else 4
    base = e.load(bsize, f"({a} + 2) & {e.mode.lmask:#x}")
    if ins.osize == 2 or (not e.mode.long and mem.size == 6 and ins.raw[0] == 0x66):
        base = f"{base} & 0xffffff"
    attr = "gdtr" if ins.mnem == "LGDT" else "idtr"
    e.line(f"cpu.{attr} = ({base}, {limit})")


@emits("SGDT", "SIDT")
def store_table(e, ins):
    (mem,) = ins.ops
    attr = "gdtr" if ins.mnem == "SGDT" else "idtr"
    a = e.addr(mem)
    bsize = 8 if e.mode.long else 4
    e.store(2, a, f"cpu.{attr}[1]")
    e.store(bsize, f"({a} + 2) & {e.mode.lmask:#x}", f"cpu.{attr}[0] & {mask_of(bsize):#x}")


def _selector_operand(e, op):
    if op.kind == "reg":
        return f"({e.read(op)} & 0xffff)"
    return e.load(2, e.addr(op))


@emits("LLDT", "LTR")
def load_system_selector(e, ins):
    if not e.mode.pe:
        e.raise_fault(UD, detail=f"{ins.text} in real mode")
        return
    if _privileged(e, ins):
        return
    sel = _selector_operand(e, ins.ops[0])
    e.call_helper(ins.mnem.lower(), sel, result=False)


@emits("SLDT", "STR")
def store_system_selector(e, ins):
    if not e.mode.pe:
        e.raise_fault(UD, detail=f"{ins.text} in real mode")
        return
    (op,) = ins.ops
    attr = "ldtr" if ins.mnem == "SLDT" else "tr"
    if op.kind == "reg":
        e.set_gpr(op.num, op.size, f"cpu.{attr}[0]")
    else:
        e.store(2, e.addr(op), f"cpu.{attr}[0]")


@emits("LMSW")
def lmsw(e, ins):
    if _privileged(e, ins):
        return
    v = _selector_operand(e, ins.ops[0])
    # PE can be set but not cleared; MP, EM, TS are loaded
    e.call_helper("write_cr", 0, f"(cpu.cr0 & ~0xe) | ({v} & 0xf) | (cpu.cr0 & 1)", result=False)
    e.end_here()


@emits("SMSW")
def smsw(e, ins):
    (op,) = ins.ops
    if op.kind == "reg":
        e.set_gpr(op.num, op.size, f"cpu.cr0 & {mask_of(op.size):#x}")
    else:
        e.store(2, e.addr(op), "cpu.cr0 & 0xffff")


@emits("CLTS")
def clts(e, ins):
    if _privileged(e, ins):
        return
    e.line("cpu.cr0 &= ~8")


@emits("INVLPG")
def invlpg(e, ins):
    if _privileged(e, ins):
        return
    e.call_helper("flush_tlb_page", e.linear(ins.ops[0].seg, e.ea(ins.ops[0])),
                  result=False, may_fault=False)
    e.end_here()


@emits("INVD", "WBINVD", "WBNOINVD")
def cache_control(e, ins):
    _privileged(e, ins)


@emits("CLFLUSH", "CLFLUSHOPT", "CLWB")
def clflush(e, ins):
    e.load(1, e.addr(ins.ops[0]))            # the access is checked like a read


@emits("RDMSR")
def rdmsr(e, ins):
    if _privileged(e, ins):
        return
    t = e.call_helper("rdmsr", e.gpr(1, 4))
    e.set_gpr(0, 4, f"{t} & 0xffffffff")
    e.set_gpr(2, 4, f"{t} >> 32")


@emits("WRMSR")
def wrmsr(e, ins):
    if _privileged(e, ins):
        return
    e.call_helper("wrmsr", e.gpr(1, 4), f"({e.gpr(2, 4)} << 32) | {e.gpr(0, 4)}", result=False)
    e.end_here()


@emits("SWAPGS")
def swapgs(e, ins):
    if not e.mode.long:
        e.raise_fault(UD, detail="swapgs outside 64-bit mode")
        return
    if _privileged(e, ins):
        return
    e.call_helper("swapgs", result=False, may_fault=False)


def _far_size(ins):
    form = ins.form
    for suffix, size in (("1616", 2), ("1632", 4), ("1664", 8)):
        if form.endswith(suffix):
            return size
    return 4


def _far_target(e, ins):
    """(selector, offset, size) expressions of a far JMP/CALL, or None for near forms."""
    op = ins.ops[0]
    if not (op.kind == "far" or (op.kind == "mem" and "_M16" in ins.form)):
        return None
    size = _far_size(ins)
    if op.kind == "far":
        return f"{op.selector:#x}", f"{op.offset:#x}", size
    a = e.addr(op)
    off = e.load(size, a)
    return e.load(2, f"({a} + {size}) & {e.mode.lmask:#x}"), off, size


@emits("JMP")
def jmp(e, ins):
    from .branch import jmp as near_jmp
    far = _far_target(e, ins)
    if far is None:
        return near_jmp(e, ins)
    _state_changing_call(e, "far_jmp", *far)
    _helper_end(e, ins)


@emits("CALL")
def call(e, ins):
    from .branch import call as near_call
    far = _far_target(e, ins)
    if far is None:
        return near_call(e, ins)
    _state_changing_call(e, "far_call", *far, f"{ins.next_ip:#x}")
    _helper_end(e, ins)


@emits("RETF")
def retf(e, ins):
    size = {"W": 2, "D": 4, "Q": 8}[ins.form[4]]
    extra = ins.ops[0].value if ins.ops else 0
    _state_changing_call(e, "far_ret", size, extra)
    _helper_end(e, ins)


@emits("IRET", "IRETD", "IRETQ")
def iret(e, ins):
    size = {"IRETW": 2, "IRETD": 4, "IRETQ": 8}[ins.form]
    _state_changing_call(e, "iret", size)
    _helper_end(e, ins)


@emits("SYSCALL")
def syscall(e, ins):
    _state_changing_call(e, "syscall", f"{ins.next_ip:#x}")
    _helper_end(e, ins)


@emits("SYSRET", "SYSRETQ")
def sysret(e, ins):
    _state_changing_call(e, "sysret", ins.mnem == "SYSRETQ")
    _helper_end(e, ins)


@emits("SYSENTER")
def sysenter(e, ins):
    _state_changing_call(e, "sysenter")
    _helper_end(e, ins)


@emits("SYSEXIT", "SYSEXITQ")
def sysexit(e, ins):
    _state_changing_call(e, "sysexit", ins.form.endswith("Q"))
    _helper_end(e, ins)


@emits("VERR", "VERW")
def verify(e, ins):
    if not e.mode.pe:
        e.raise_fault(UD, detail=f"{ins.text} in real mode")
        return
    sel = _selector_operand(e, ins.ops[0])
    t = e.call_helper("selector_info", sel, repr(ins.mnem.lower()))
    e.flags_merge(ZF, f"({ZF} if {t}[0] else 0)")


@emits("LAR", "LSL")
def load_access(e, ins):
    if not e.mode.pe:
        e.raise_fault(UD, detail=f"{ins.text} in real mode")
        return
    dst, src = ins.ops
    sel = _selector_operand(e, src)
    t = e.call_helper("selector_info", sel, repr(ins.mnem.lower()))
    e.line(f"if {t}[0]:")
    e.line(f"    R[{dst.num}] = " + (f"{t}[1] & {mask_of(dst.size):#x}" if dst.size >= 4 else
                                    f"(R[{dst.num}] & ~0xffff & 0xffffffffffffffff) | ({t}[1] & 0xffff)"))
    e.flags_merge(ZF, f"({ZF} if {t}[0] else 0)")


@emits("ARPL")
def arpl(e, ins):
    dst, src = ins.ops
    d = e.get(dst) if dst.kind == "mem" else f"({e.read(dst)} & 0xffff)"
    if dst.kind != "mem":
        t = e.tmp()
        e.line(f"{t} = {d}")
        d = t
    s = f"({e.read(src)} & 3)"
    adj = e.tmp()
    e.line(f"{adj} = ({d} & 3) < {s}")
    e.line(f"if {adj}:")
    e.indent += 1
    new = f"({d} & 0xfffc) | {s}"
    if dst.kind == "mem":
        e.store(2, e.addr(dst), f"({new})")
    else:
        e.set_gpr(dst.num, 2, f"({new})")
    e.indent -= 1
    e.flags_merge(ZF, f"({ZF} if {adj} else 0)")


@emits("STAC", "CLAC")
def stac_clac(e, ins):
    if e.mode.pe and e.mode.cpl != 0:
        e.raise_fault(UD, detail=f"{ins.text} needs CPL 0")
        return
    e.call_helper("set_ac", ins.mnem == "STAC", result=False, may_fault=False)
