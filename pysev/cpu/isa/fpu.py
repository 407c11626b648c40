"""The x87 and SSE control state that firmware initialises: FNINIT, FLDCW, FNSTCW,
FNSTSW, FNCLEX, WAIT, LDMXCSR, STMXCSR.  Arithmetic on x87 and SSE registers comes
in a later issue; those instructions stay #UD."""

from decoder.records import Reg
from ..emit import emits
from ..faults import UD


def _nm_check(e, wait=False):
    # CR0.TS (and for WAIT, CR0.MP together with TS) makes FPU instructions raise #NM
    cond = "cpu.cr0 & 0xa == 0xa" if wait else "cpu.cr0 & 0xc"
    e.line(f"if {cond}:")
    e.line("    raise GuestFault(7, None, detail='FPU not available (CR0.TS/EM)')")
    e.fault_point()


@emits("WAIT")
def wait(e, ins):
    _nm_check(e, wait=True)


@emits("FNINIT", "FNCLEX")
def fninit(e, ins):
    _nm_check(e)
    if ins.mnem == "FNINIT":
        e.line("cpu.fpu_cw = 0x37f; cpu.fpu_sw = 0; cpu.fpu_tw = 0xffff")
    else:
        e.line("cpu.fpu_sw &= 0x7f00")


@emits("FLDCW")
def fldcw(e, ins):
    _nm_check(e)
    v = e.load(2, e.addr(ins.ops[0]))
    e.line(f"cpu.fpu_cw = {v}")


@emits("FNSTCW", "FNSTSW")
def fnstcw(e, ins):
    _nm_check(e)
    (op,) = ins.ops
    field = "cpu.fpu_cw" if ins.mnem == "FNSTCW" else "cpu.fpu_sw"
    if op.kind == "reg":
        e.set_reg(Reg(0, 2, False, "ax"), field)
    else:
        e.store(2, e.addr(op), field)


@emits("LDMXCSR", "STMXCSR")
def mxcsr(e, ins):
    e.line("if not cpu.cr4 & 0x200 or cpu.cr0 & 4:")
    e.line(f"    raise GuestFault({UD}, None, detail='SSE not enabled (CR4.OSFXSR/CR0.EM)')")
    e.fault_point()
    a = e.addr(ins.ops[0])
    if ins.mnem == "LDMXCSR":
        v = e.load(4, a)
        e.line(f"if {v} & ~0xffff:")
        e.line("    raise GuestFault(13, 0, detail='reserved MXCSR bits')")
        e.line(f"cpu.mxcsr = {v}")
    else:
        e.store(4, a, "cpu.mxcsr")
