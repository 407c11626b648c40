"""Flag instructions, nop forms, hlt, ud, int3/int/into, cpuid, rdtsc(p), rdrand/rdseed,
lahf/sahf, cli/sti, in/out, and decimal adjust."""

from decoder.records import Reg, CF, PF, AF, ZF, SF
from ..emit import emits
from .. import flags as F
from ..faults import UD, BP

_AL = Reg(0, 1, False, "al")
_AH = Reg(0, 1, True, "ah")


@emits("CLC", "STC", "CMC")
def carry(e, ins):
    if ins.mnem == "CLC":
        e.flags_merge(CF, "0")
    elif ins.mnem == "STC":
        e.flags_merge(CF, f"{CF}")
    else:
        e.flags_merge(CF, f"(0 if {e.cf()} else {CF})")


@emits("CLD", "STD")
def direction(e, ins):
    op = "&= ~0x400" if ins.mnem == "CLD" else "|= 0x400"
    e.line(f"cpu.eflags_rest {op}")


def _iopl_check(e, ins):
    """In protected mode, CPL must not exceed IOPL (no VME/PVI modelled)."""
    if e.mode.pe and e.mode.cpl:
        e.line(f"if {e.mode.cpl} > (cpu.eflags_rest >> 12) & 3:")
        e.line(f"    raise GuestFault(13, 0, detail={ins.text + ' with CPL > IOPL'!r})")
        e.fault_point()


@emits("CLI", "STI")
def interrupt_flag(e, ins):
    _iopl_check(e, ins)
    op = "&= ~0x200" if ins.mnem == "CLI" else "|= 0x200"
    e.line(f"cpu.eflags_rest {op}")
    if ins.mnem == "STI":
        # interrupts stay blocked until after the next instruction
        e.line(f"cpu.interrupt_shadow = {ins.next_ip:#x}")
    e.end_here()


@emits("LAHF")
def lahf(e, ins):
    e.set_reg(_AH, f"({e.flags_word()} & {SF | ZF | AF | PF | CF:#x}) | 2")


@emits("SAHF")
def sahf(e, ins):
    e.flags_merge(SF | ZF | AF | PF | CF, f"({e.read(_AH)} & {SF | ZF | AF | PF | CF:#x})")


@emits("NOP", "PAUSE", "LFENCE", "MFENCE", "SFENCE", "PREFETCHT0", "PREFETCHT1",
       "PREFETCHT2", "PREFETCHNTA", "PREFETCHW", "PREFETCH", "ENDBR64", "ENDBR32")
def nop(e, ins):
    pass


@emits("HLT")
def hlt(e, ins):
    if e.mode.pe and e.mode.cpl:
        e.raise_fault(13, 0, detail="hlt needs CPL 0")
        return
    e.end_halt()


@emits("UD0", "UD1", "UD2")
def ud(e, ins):
    e.raise_fault(UD, detail=ins.text)


@emits("INT3")
def int3(e, ins):
    e.raise_fault(BP, trap=True)


@emits("INT")
def int_n(e, ins):
    e.raise_fault(ins.ops[0].value, trap=True)


@emits("INT1")
def int1(e, ins):
    # ICEBP: a debug trap that is not a software interrupt (no gate DPL check)
    e.fault_point()
    e.line(f"raise GuestFault(1, None, next_ip={ins.next_ip:#x}, detail='int1')")
    e.chunk.end = ("raise",)


@emits("INTO")
def into(e, ins):
    e.line(f"if {e.cond(0)}:")
    e.line(f"    raise GuestFault(4, None, next_ip={ins.next_ip:#x})")
    e.fault_point()


@emits("CPUID")
def cpuid(e, ins):
    t = e.call_helper("cpuid", e.gpr(0, 4), e.gpr(1, 4), may_fault=False)
    for i, reg in enumerate((0, 3, 1, 2)):
        e.set_gpr(reg, 4, f"{t}[{i}] & 0xffffffff")


@emits("RDTSC", "RDTSCP")
def rdtsc(e, ins):
    if e.mode.pe and e.mode.cpl:
        e.line("if cpu.cr4 & 4:")
        e.line(f"    raise GuestFault(13, 0, detail={ins.text + ' with CR4.TSD at CPL > 0'!r})")
        e.fault_point()
    t = e.call_helper("rdtsc", may_fault=False)
    if ins.mnem == "RDTSCP":
        e.set_gpr(1, 4, "tsc_aux()")
        e.helpers.add("tsc_aux")
    e.set_gpr(0, 4, f"{t} & 0xffffffff")
    e.set_gpr(2, 4, f"{t} >> 32")


@emits("RDRAND", "RDSEED")
def rdrand(e, ins):
    (dst,) = ins.ops
    t = e.call_helper("rdrand", dst.size, may_fault=False)
    e.write(dst, t)
    e.flags(F.EFL, 8, r=f"{CF}")           # success: CF=1, the others clear


@emits("IN")
def port_in(e, ins):
    dst, port = ins.ops
    p = f"{port.value:#x}" if port.kind == "imm" else e.gpr(2, 2)
    _io_check(e, p, dst.size)
    t = e.call_helper("port_in", p, dst.size)
    e.write(dst, t)


@emits("OUT")
def port_out(e, ins):
    port, src = ins.ops
    p = f"{port.value:#x}" if port.kind == "imm" else e.gpr(2, 2)
    _io_check(e, p, src.size)
    e.call_helper("port_out", p, src.size, e.read(src), result=False)


def _io_check(e, port, size):
    if e.mode.pe and e.mode.cpl:
        e.call_helper("check_io", port, size, result=False)


@emits("DAA", "DAS", "AAA", "AAS", "AAM", "AAD")
def decimal_adjust(e, ins):
    imm = ins.ops[0].value if ins.ops else 10
    t = e.call_helper("bcd", repr(ins.mnem.lower()), e.gpr(0, 2), e.flags_word(), imm,
                      may_fault=ins.mnem == "AAM")
    if ins.mnem in ("DAA", "DAS"):
        e.set_reg(_AL, f"{t}[0] & 0xff")
    else:
        e.set_gpr(0, 2, f"{t}[0]")
    e.flags(F.EFL, 8, r=f"{t}[1]")
