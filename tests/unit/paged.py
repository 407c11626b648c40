"""A bare 64-bit CPU under 4-level paging for tests of the TLB and the flag pass.

``paged_cpu(code, pages=None, cpl=0, cr0_wp=True, smap=False, c_bit=0)``
returns a CPU in long mode whose first 2 MiB of linear space map 1:1 through
one page table; the code is at CODE.  ``pages`` maps a linear page number to
the PTE flags of that page (default P|RW|US, accessed and dirty clear), or
None for a page that is not present.  The tables are at TABLES.
``run(cpu, count, step)`` runs to the end of the code or `count`
instructions (single-stepping when `step`) and returns a comparable state.
"""

from pysev.cpu import CPU, GPR_NAMES, GuestFault
from pysev.mem import PhysMem

CODE = 0x1000
DATA = 0x4000
STACK_TOP = 0xF000
TABLES = 0x100000            # PML4, PDPT, PD, PT (4 KiB each)
PT = TABLES + 0x3000
RAM = 0x200000
ARITH = 0x8D5
DEFAULT = 0x7                # P | RW | US


def pte_address(page):
    return PT + 8 * page


def paged_cpu(code, pages=None, cpl=0, cr0_wp=True, smap=False, c_bit=0, reduced_bits=0):
    mem = PhysMem()
    mem.add_ram(0, RAM)
    mem.load(CODE, code)
    cpu = CPU(mem)
    cpu.deliver_exceptions = False
    cpu.phys_bits = 48
    cbit = (1 << c_bit) if c_bit else 0
    if c_bit:
        cpu.sev_c_bit, cpu.sev_reduced_bits = c_bit, reduced_bits
    mem.write(TABLES, 8, (TABLES + 0x1000) | 0x7 | cbit)
    mem.write(TABLES + 0x1000, 8, (TABLES + 0x2000) | 0x7 | cbit)
    mem.write(TABLES + 0x2000, 8, PT | 0x7 | cbit)
    pages = pages or {}
    for page in range(RAM >> 12):
        flags = pages.get(page, DEFAULT)
        mem.write(pte_address(page), 8, 0 if flags is None else (page << 12) | flags | cbit)
    for seg in range(6):
        cpu.set_segment(seg, 0, 0, 0xFFFFFFFF, 0xC09300 | (0x6000 if cpl == 3 else 0))
    cpu.seg_attr[1] = 0xA09B00 | (0x6000 if cpl == 3 else 0)
    cpu.cr0 = 0x80000011 | (0x10000 if cr0_wp else 0)
    cpu.cr4 = 0x20 | (0x200000 if smap else 0)
    cpu.efer = 0x500
    cpu.cr3 = TABLES | cbit
    cpu.set_cpl(cpl)
    cpu.update_paging()
    cpu.update_mode()
    cpu.regs[4] = STACK_TOP
    cpu.eflags = 0x2
    cpu.rip = CODE
    return cpu


def state(cpu):
    out = {name: cpu.regs[k] for k, name in enumerate(GPR_NAMES)}
    out["rip"] = cpu.rip
    out["rflags"] = cpu.eflags & ARITH
    out["count"] = cpu.icount
    out["data"] = cpu.mem.read_bytes(DATA, 0x8000)
    out["ptes"] = cpu.mem.read_bytes(PT, 0x100)
    return out


def run(cpu, code, count=0, step=False):
    """Run; returns (stop reason, (vector, error code, cr2) or None, state)."""
    end = CODE + len(code)
    hook = (lambda ip: None) if step else None
    try:
        reason = cpu.run(count or 10**7, end, step_hook=hook)
        fault = None
    except GuestFault as exc:
        reason, fault = "fault", (exc.vector, exc.error_code, exc.cr2)
    return reason, fault, state(cpu)
