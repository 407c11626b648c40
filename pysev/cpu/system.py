"""System architecture: segments and descriptors, control registers, MSRs, far
transfers, exception and interrupt delivery.

These are methods of the CPU (a mixin), called from translated code for the
instructions that touch system state, and by the run loop to deliver
exceptions.  Every method raises GuestFault before it changes any state,
so faults stay precise.

Descriptor attributes are kept in QEMU's layout: descriptor bits 8..23 of
the high dword (type, S, DPL, P, AVL, L, D/B, G) at the same positions.

   31..24 base  23 G  22 D/B  21 L  20 AVL  19..16 limit  15 P  14..13 DPL  12 S  11..8 type  7..0 base
"""

import os
import random

from decoder.records import ES, CS, SS, DS, FS, GS
from pysev.mem.paging import PagingConfig
from .faults import GuestFault, DE, UD, DF, TS, NP, SS as SS_FAULT, GP, PF

A_TYPE, A_S, A_DPL, A_P = 0xF00, 0x1000, 0x6000, 0x8000
A_L, A_DB, A_G = 1 << 21, 1 << 22, 1 << 23
ATTR_MASK = 0x00F0FF00

CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE = 1, 2, 4, 8, 0x10, 0x20
CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG = 1 << 16, 1 << 18, 1 << 29, 1 << 30, 1 << 31
CR4_VME, CR4_PVI, CR4_TSD, CR4_DE, CR4_PSE, CR4_PAE, CR4_MCE, CR4_PGE = (
    1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80)
CR4_PCE, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_UMIP, CR4_LA57 = 0x100, 0x200, 0x400, 0x800, 0x1000
CR4_FSGSBASE, CR4_PCIDE, CR4_OSXSAVE, CR4_SMEP, CR4_SMAP = (
    1 << 16, 1 << 17, 1 << 18, 1 << 20, 1 << 21)
CR4_KNOWN = (CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE
             | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_UMIP | CR4_LA57 | CR4_FSGSBASE
             | CR4_OSXSAVE | CR4_SMEP | CR4_SMAP)
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE, EFER_SVME = 1, 1 << 8, 1 << 10, 1 << 11, 1 << 12
EFER_WRITABLE = EFER_SCE | EFER_LME | EFER_NXE | EFER_SVME | (1 << 14) | (1 << 15)

IF, TF, DF_FLAG, IOPL, NT, RF, VM, AC, ID = (
    0x200, 0x100, 0x400, 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x200000)

MSR_TSC, MSR_APIC_BASE, MSR_MTRRCAP = 0x10, 0x1B, 0xFE
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176
MSR_PAT, MSR_MTRR_DEF_TYPE = 0x277, 0x2FF
MSR_EFER, MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK = (
    0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084)
MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE, MSR_TSC_AUX = (
    0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103)
# MSRs kept as plain stored values (reset value)
STORED_MSRS = {MSR_SYSENTER_CS: 0, MSR_SYSENTER_ESP: 0, MSR_SYSENTER_EIP: 0,
               MSR_PAT: 0x0007040600070406, MSR_MTRR_DEF_TYPE: 0,
               MSR_STAR: 0, MSR_LSTAR: 0, MSR_CSTAR: 0, MSR_SFMASK: 0,
               MSR_KERNEL_GS_BASE: 0, 0x8B: 0, 0x3A: 0}
STORED_MSRS.update({m: 0 for m in range(0x200, 0x210)})                 # variable MTRRs
STORED_MSRS.update({m: 0 for m in (0x250, 0x258, 0x259) + tuple(range(0x268, 0x270))})

# exception classes for the double-fault rules
CONTRIBUTORY = frozenset((DE, TS, NP, SS_FAULT, GP))
HAS_ERROR_CODE = frozenset((DF, TS, NP, SS_FAULT, GP, PF, 17, 21, 29, 30))
M64 = 0xFFFFFFFFFFFFFFFF


class TripleFault(Exception):
    """The CPU shut down: an exception while delivering a double fault."""


def gp(code=0, detail=""):
    return GuestFault(GP, code, detail=detail)


def desc_base(lo, hi):
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(lo, hi):
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & A_G:
        limit = (limit << 12) | 0xFFF
    return limit


def canonical(addr, bits=48):
    top = addr >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def paging_config(cr0, cr4, efer, phys_bits, c_bit=0, reduced_bits=0):
    """The PagingConfig that control registers CR0, CR4 and EFER select (c_bit: the SEV
    C-bit position, 0 without SEV)."""
    if not cr0 & CR0_PG:
        levels = 0
    elif not cr4 & CR4_PAE:
        levels = 2
    elif efer & EFER_LMA:
        levels = 5 if cr4 & CR4_LA57 else 4
    else:
        levels = 3
    return PagingConfig(levels, phys_bits, nxe=bool(efer & EFER_NXE), wp=bool(cr0 & CR0_WP),
                        smep=bool(cr4 & CR4_SMEP), smap=bool(cr4 & CR4_SMAP),
                        pse=bool(cr4 & CR4_PSE), c_bit=c_bit, reduced_bits=reduced_bits)


class SystemMixin:
    """System-architecture behaviour of the CPU (mixed into pysev.cpu.CPU)."""

    deliver_exceptions = True

    def init_system(self):
        self.gdtr = (0, 0xFFFF)
        self.idtr = (0, 0xFFFF)
        self.ldtr = (0, 0, 0xFFFF, 0x8200)
        self.tr = (0, 0, 0xFFFF, 0x8B00)
        self.cr8 = 0
        self.dr = [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400]
        self.cpl = 0
        self.phys_bits = 40
        self.paging = PagingConfig(0)
        self.sev_c_bit = 0
        self.sev_reduced_bits = 0
        self.msr = dict(STORED_MSRS)
        self.apic_base = 0xFEE00900
        self.tsc_offset = 0
        self.pending_fault = None
        self.triple_fault_info = None
        self.fpu_cw, self.fpu_sw, self.fpu_tw, self.mxcsr = 0x40, 0, 0x5555, 0x1F80
        self.interrupt_log = None           # hooks the machine's tracer installs
        self.exception_log = None
        self.log_cr = None
        self.interrupt_shadow = None
        self.seed_random(None)

    def seed_random(self, seed):
        """RDRAND's source: the host's (seed None) or, as QEMU's -seed, a deterministic
        generator, so that a run (and a run from a snapshot) can be repeated exactly."""
        self.random_seed = seed
        if seed is None:
            self.rng = None
            self.guest_random = os.urandom
        else:
            self.rng = random.Random(seed)
            self.guest_random = self.rng.randbytes

    # ---- reset ----------------------------------------------------------------------
    def reset(self):
        """The state after RESET, as the AMD and Intel manuals give it."""
        self.regs[:] = [0] * 16
        self.regs[2] = self.cpuid_fn(1, 0)[0]          # EDX: family/model/stepping
        self.phys_bits = (self.cpuid_fn(0x80000008, 0)[0] & 0xFF) or 36
        self.rip = 0xFFF0
        self.eflags = 0x2
        for seg in range(6):
            self.set_segment(seg, 0, 0, 0xFFFF, 0x9300)
        self.set_segment(CS, 0xF000, 0xFFFF0000, 0xFFFF, 0x9B00)
        self.cr0 = 0x60000010
        self.cr2 = self.cr3 = self.cr4 = self.cr8 = 0
        self.efer = 0
        self.gdtr = (0, 0xFFFF)
        self.idtr = (0, 0xFFFF)
        self.ldtr = (0, 0, 0xFFFF, 0x8200)
        self.tr = (0, 0, 0xFFFF, 0x8B00)
        self.dr = [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400]
        self.msr = dict(STORED_MSRS)
        self.apic_base = 0xFEE00900
        self.halted = False
        self.triple_fault_info = None
        self.pending_fault = None
        self.interrupt_shadow = None
        self.fpu_cw, self.fpu_sw, self.fpu_tw, self.mxcsr = 0x40, 0, 0x5555, 0x1F80
        self.update_paging()
        self.update_mode()

    # ---- modes ------------------------------------------------------------------------
    def update_mode(self):
        attr = self.seg_attr
        pe = bool(self.cr0 & CR0_PE)
        if self.efer & EFER_LMA and attr[CS] & A_L:
            bits, long = 64, True
        else:
            bits, long = (32 if attr[CS] & A_DB else 16), False
        stack = 8 if long else (4 if attr[SS] & A_DB else 2)
        cpl = self.cpl if pe else 0
        segcheck = pe and not long and not self.segments_flat()
        if (bits, stack, long, cpl, pe, segcheck) != self.mode.key:
            self.set_mode(bits, stack, long, cpl, pe, segcheck)
        self.exit_request = True

    def set_cpl(self, cpl):
        if cpl != self.cpl:
            self.cpl = cpl
            self.flush_tlb()          # the TLB holds permissions for one privilege level

    def update_paging(self):
        """Recompute the page-walk masks; called when CR0, CR4, EFER or the address width change."""
        self.paging = paging_config(self.cr0, self.cr4, self.efer, self.phys_bits,
                                    self.sev_c_bit, self.sev_reduced_bits)
        self.flush_tlb(everything=True)

    # ---- implicit (supervisor) memory accesses to system structures -----------------------
    def sys_read(self, lin, size):
        return self.read_linear_implicit(lin, size)

    def sys_write(self, lin, size, value):
        self.write_linear_implicit(lin, size, value)

    # ---- descriptors ------------------------------------------------------------------
    def fetch_descriptor(self, sel, fault=GP):
        """The 8-byte descriptor for selector `sel` as (lo, hi, address)."""
        index = sel & 0xFFF8
        if sel & 4:
            ldt_sel, base, limit, _ = self.ldtr
            if not ldt_sel & 0xFFFC:
                raise GuestFault(fault, sel & 0xFFFC, detail="selector refers to a null LDT")
        else:
            base, limit = self.gdtr
        if index + 7 > limit:
            raise GuestFault(fault, sel & 0xFFFC, detail=f"selector {sel:#x} beyond the table limit")
        addr = (base + index) & self.mode.lmask
        raw = self.sys_read(addr, 8)
        return raw & 0xFFFFFFFF, raw >> 32, addr

    def set_accessed(self, addr, hi):
        if not hi & 0x100:
            self.sys_write(addr + 4, 4, hi | 0x100)

    def load_seg(self, seg, sel):
        """MOV/POP to a data segment register or SS."""
        sel &= 0xFFFF
        if not self.cr0 & CR0_PE or self.eflags_rest & VM:
            self.seg_sel[seg] = sel
            self.seg_base[seg] = sel << 4
            if self.eflags_rest & VM:
                self.seg_limit[seg] = 0xFFFF
                self.seg_attr[seg] = 0xF300
            if seg == SS:
                self.update_mode()
            return
        cpl = self.cpl
        rpl = sel & 3
        if not sel & 0xFFFC:
            if seg == SS and not (self.mode.long and cpl != 3 and rpl == cpl):
                raise gp(0, "null selector loaded into SS")
            self.set_segment(seg, sel, 0, 0, 0)
            self.update_mode()
            return
        lo, hi, addr = self.fetch_descriptor(sel)
        dpl = (hi >> 13) & 3
        typ = (hi >> 8) & 0xF
        code = typ & 8
        if not hi & A_S:
            raise gp(sel & 0xFFFC, "system descriptor loaded into a segment register")
        if seg == SS:
            if rpl != cpl or dpl != cpl or code or not typ & 2:
                raise gp(sel & 0xFFFC, "SS needs a writable data segment at CPL")
            if not hi & A_P:
                raise GuestFault(SS_FAULT, sel & 0xFFFC, detail="stack segment not present")
        else:
            if code and not typ & 2:
                raise gp(sel & 0xFFFC, "execute-only code segment loaded into a data register")
            if (not code or not typ & 4) and dpl < max(cpl, rpl):
                raise gp(sel & 0xFFFC, "segment privilege check failed")
            if not hi & A_P:
                raise GuestFault(NP, sel & 0xFFFC, detail="segment not present")
        self.set_accessed(addr, hi)
        self.set_segment(seg, sel, desc_base(lo, hi), desc_limit(lo, hi), (hi | 0x100) & ATTR_MASK)
        self.update_mode()

    def load_cs(self, sel, lo, hi, cpl):
        self.set_segment(CS, (sel & 0xFFFC) | cpl, desc_base(lo, hi), desc_limit(lo, hi),
                         (hi | 0x100) & ATTR_MASK)
        self.set_cpl(cpl)

    def _code_descriptor(self, sel, for_call=False):
        if not sel & 0xFFFC:
            raise gp(0, "null code selector")
        lo, hi, addr = self.fetch_descriptor(sel)
        return lo, hi, addr

    def _check_code(self, sel, lo, hi):
        cpl, rpl, dpl = self.cpl, sel & 3, (hi >> 13) & 3
        typ = (hi >> 8) & 0xF
        if not hi & A_S or not typ & 8:
            raise gp(sel & 0xFFFC, "not a code segment")
        if typ & 4:
            if dpl > cpl:
                raise gp(sel & 0xFFFC, "conforming code segment with DPL > CPL")
        elif rpl > cpl or dpl != cpl:
            raise gp(sel & 0xFFFC, "non-conforming code segment privilege mismatch")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="code segment not present")

    def _ip_in_limit(self, ip, lo, hi, size):
        if self.efer & EFER_LMA and hi & A_L:
            if not canonical(ip):
                raise gp(0, "non-canonical target")
            return ip
        if ip > desc_limit(lo, hi):
            raise gp(0, "target beyond the code segment limit")
        return ip

    # ---- far transfers -------------------------------------------------------------------
    def far_jmp(self, sel, ip, size):
        sel &= 0xFFFF
        if not self.cr0 & CR0_PE or self.eflags_rest & VM:
            self._real_mode_transfer(sel, ip, size)
            return
        lo, hi, addr = self._code_descriptor(sel)
        if hi & A_S:
            self._direct_transfer(sel, ip, size, lo, hi, addr)
            return
        gate = self._call_gate(sel, lo, hi, addr)
        tsel, tip, tlo, thi = gate
        self._check_code(tsel if (thi >> 8) & 4 else (tsel & 0xFFFC) | self.cpl, tlo, thi)
        self.load_cs(tsel, tlo, thi, self.cpl)
        self.rip = self._ip_in_limit(tip, tlo, thi, size)
        self.update_mode()

    def _real_mode_transfer(self, sel, ip, size):
        self.seg_sel[CS] = sel
        self.seg_base[CS] = sel << 4
        self.rip = ip & ((1 << (8 * size)) - 1)
        self.update_mode()

    def _direct_transfer(self, sel, ip, size, lo, hi, addr):
        """JMP/CALL straight to a code segment (checks done by the caller for CALL)."""
        self._check_code(sel, lo, hi)
        ip = self._ip_in_limit(ip, lo, hi, size)
        self.set_accessed(addr, hi)
        self.load_cs(sel, lo, hi, self.cpl)
        self.rip = ip
        self.update_mode()

    def _call_gate(self, sel, lo, hi, addr):
        """Decode a call gate; returns (target selector, target offset, target lo, target hi)."""
        typ = (hi >> 8) & 0xF
        long = self.efer & EFER_LMA
        if typ not in ((0xC,) if long else (0x4, 0xC)):
            raise gp(sel & 0xFFFC, f"descriptor type {typ:#x} is not a usable gate "
                                   "(task switches are not implemented)")
        dpl = (hi >> 13) & 3
        if dpl < self.cpl or dpl < (sel & 3):
            raise gp(sel & 0xFFFC, "call gate privilege check failed")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="call gate not present")
        tsel = lo >> 16
        tip = (lo & 0xFFFF) | (hi & 0xFFFF0000 if typ == 0xC else 0)
        if long:
            tip |= (self.sys_read(addr + 8, 4)) << 32
        if not tsel & 0xFFFC:
            raise gp(0, "call gate with a null target")
        tlo, thi, taddr = self.fetch_descriptor(tsel)
        if not thi & A_S or not (thi >> 8) & 8:
            raise gp(tsel & 0xFFFC, "call gate target is not code")
        if (thi >> 13) & 3 > self.cpl:
            raise gp(tsel & 0xFFFC, "call gate target more privileged check failed")
        if not thi & A_P:
            raise GuestFault(NP, tsel & 0xFFFC, detail="call gate target not present")
        return tsel, tip, tlo, thi

    def _push_list(self, sp, stack_size, ss_base, values, size, supervisor=False):
        """Write values (first pushed first) below sp; returns the new sp.  No state change.

        supervisor: the pushes go to a more privileged level's stack (interrupt or
        call-gate entry from an outer ring), so they are supervisor accesses.
        """
        sm = (1 << (8 * stack_size)) - 1
        write = self.write_linear_implicit if supervisor else self.write_linear
        for v in values:
            sp = (sp - size) & sm
            write((ss_base + sp) & self.mode.lmask if stack_size != 8 else sp, size, v)
        return sp

    def far_call(self, sel, ip, size, next_ip):
        sel &= 0xFFFF
        old_cs = self.seg_sel[CS]
        real = not self.cr0 & CR0_PE or self.eflags_rest & VM
        if not real:
            lo, hi, addr = self._code_descriptor(sel)
            if hi & A_S:
                self._check_code(sel, lo, hi)
                ip = self._ip_in_limit(ip, lo, hi, size)
        if real or hi & A_S:
            sp = self._push_list(self.stack_pointer(), self.mode.stack, self.seg_base[SS],
                                 (old_cs, next_ip), size)
            self.set_sp(sp)
            if real:
                self._real_mode_transfer(sel, ip, size)
            else:
                self._direct_transfer(sel, ip, size, lo, hi, addr)
            return
        tsel, tip, tlo, thi = self._call_gate(sel, lo, hi, addr)
        gate_size = 8 if self.efer & EFER_LMA else (4 if (hi >> 8) & 0xF == 0xC else 2)
        tdpl = (thi >> 13) & 3
        conforming = (thi >> 8) & 4
        if not conforming and tdpl < self.cpl:
            # more privileged: switch stacks through the TSS
            old_ss, old_sp = self.seg_sel[SS], self.stack_pointer()
            old_base, old_stack = self.seg_base[SS], self.mode.stack
            params = []
            count = 0 if self.efer & EFER_LMA else hi & 0x1F
            for i in range(count - 1, -1, -1):          # the caller's parameters, copied
                off = (old_sp + i * gate_size) & ((1 << (8 * old_stack)) - 1)
                params.append(self.read_linear((old_base + off) & self.mode.lmask, gate_size))
            new_ss, new_sp = self.tss_stack(tdpl)
            self._switch_stack(new_ss, new_sp, tdpl)
            stack = 8 if self.efer & EFER_LMA else (4 if self.seg_attr[SS] & A_DB else 2)
            sp = self._push_list(new_sp, stack, self.seg_base[SS],
                                 [old_ss, old_sp] + params + [old_cs, next_ip], gate_size,
                                 supervisor=True)
            self.regs[4] = sp if stack != 2 else (self.regs[4] & ~0xFFFF & M64) | sp
            self.load_cs(tsel, tlo, thi, tdpl)
        else:
            sp = self._push_list(self.stack_pointer(), self.mode.stack, self.seg_base[SS],
                                 (old_cs, next_ip), gate_size)
            self.set_sp(sp)
            self.load_cs(tsel, tlo, thi, self.cpl)
        self.rip = tip
        self.update_mode()

    def far_ret(self, size, pop_extra):
        sp = self.stack_pointer()
        sm = (1 << (8 * self.mode.stack)) - 1
        base = self.seg_base[SS] if not self.mode.long else 0
        lm = self.mode.lmask
        ip = self.read_linear((base + sp) & lm, size)
        sel = self.read_linear((base + ((sp + size) & sm)) & lm, size) & 0xFFFF
        nsp = (sp + 2 * size + pop_extra) & sm
        if not self.cr0 & CR0_PE or self.eflags_rest & VM:
            self.set_sp(nsp)
            self.seg_sel[CS] = sel
            self.seg_base[CS] = sel << 4
            self.rip = ip
            self.update_mode()
            return
        lo, hi, addr = self._code_descriptor(sel)
        rpl = sel & 3
        if rpl < self.cpl:
            raise gp(sel & 0xFFFC, "far return to a more privileged level")
        typ = (hi >> 8) & 0xF
        dpl = (hi >> 13) & 3
        if not hi & A_S or not typ & 8 or (dpl > rpl if typ & 4 else dpl != rpl):
            raise gp(sel & 0xFFFC, "far return target check failed")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="code segment not present")
        if rpl > self.cpl:
            new_sp = self.read_linear((base + nsp) & lm, size)
            new_ss = self.read_linear((base + ((nsp + size) & sm)) & lm, size) & 0xFFFF
            ss_desc = self.check_outer_ss(new_ss, rpl)
            self.load_cs(sel, lo, hi, rpl)
            self.load_checked_ss(new_ss, ss_desc)
            self.regs[4] = (new_sp + pop_extra) & ((1 << (8 * size)) - 1)
            self.update_mode()
            for seg in (ES, DS, FS, GS):
                self._drop_inaccessible(seg)
        else:
            self.set_sp(nsp)
            self.load_cs(sel, lo, hi, self.cpl)
        self.rip = ip
        self.update_mode()

    def check_outer_ss(self, sel, rpl):
        """Validate the SS a return to privilege level `rpl` will load; no state changes."""
        if not sel & 0xFFFC:
            raise gp(0, "null SS on a return to an outer level")
        lo, hi, addr = self.fetch_descriptor(sel)
        typ, dpl = (hi >> 8) & 0xF, (hi >> 13) & 3
        if (sel & 3) != rpl or dpl != rpl or not hi & A_S or typ & 8 or not typ & 2:
            raise gp(sel & 0xFFFC, "bad SS on a return to an outer level")
        if not hi & A_P:
            raise GuestFault(SS_FAULT, sel & 0xFFFC, detail="stack segment not present")
        return lo, hi, addr

    def load_checked_ss(self, sel, desc):
        lo, hi, addr = desc
        self.set_accessed(addr, hi)
        self.set_segment(SS, sel, desc_base(lo, hi), desc_limit(lo, hi), (hi | 0x100) & ATTR_MASK)
        self.update_mode()

    def _drop_inaccessible(self, seg):
        attr = self.seg_attr[seg]
        dpl = (attr >> 13) & 3
        conforming_code = attr & 0x800 and attr & 0x400
        if self.seg_sel[seg] & 0xFFFC and not conforming_code and dpl < self.cpl:
            self.set_segment(seg, 0, 0, 0, 0)

    def stack_pointer(self):
        return self.regs[4] & ((1 << (8 * self.mode.stack)) - 1)

    def set_sp(self, sp):
        size = self.mode.stack
        if size == 2:
            self.regs[4] = (self.regs[4] & ~0xFFFF & M64) | (sp & 0xFFFF)
        else:
            self.regs[4] = sp & ((1 << (8 * size)) - 1)

    def tss_stack(self, dpl, ist=0):
        """SS:ESP (or RSP) for privilege level `dpl` (or IST entry `ist`) from the current TSS."""
        sel, base, limit, attr = self.tr
        if self.efer & EFER_LMA:
            off = 0x24 + 8 * (ist - 1) if ist else 4 + 8 * dpl
            if off + 7 > limit:
                raise GuestFault(TS, sel & 0xFFFC, detail="TSS too small for the stack pointer")
            return 0, self.sys_read((base + off) & M64, 8)
        if (attr >> 8) & 8:                                   # 32-bit TSS
            off = 4 + 8 * dpl
            if off + 5 > limit:
                raise GuestFault(TS, sel & 0xFFFC, detail="TSS too small for SS:ESP")
            return (self.sys_read(base + off + 4, 2), self.sys_read(base + off, 4))
        off = 2 + 4 * dpl
        if off + 3 > limit:
            raise GuestFault(TS, sel & 0xFFFC, detail="TSS too small for SS:SP")
        return self.sys_read(base + off + 2, 2), self.sys_read(base + off, 2)

    def _switch_stack(self, new_ss, new_sp, dpl):
        if self.efer & EFER_LMA:
            self.set_segment(SS, dpl, 0, 0, 0x00C09300 if dpl == 0 else 0)
            self.seg_attr[SS] = 0
            self.regs[4] = new_sp
            return
        if not new_ss & 0xFFFC:
            raise GuestFault(TS, 0, detail="null SS in the TSS")
        lo, hi, addr = self.fetch_descriptor(new_ss, TS)
        if (new_ss & 3) != dpl or (hi >> 13) & 3 != dpl or not hi & A_S or (hi >> 8) & 8 \
                or not (hi >> 8) & 2:
            raise GuestFault(TS, new_ss & 0xFFFC, detail="bad SS in the TSS")
        if not hi & A_P:
            raise GuestFault(SS_FAULT, new_ss & 0xFFFC, detail="TSS stack not present")
        self.set_segment(SS, new_ss, desc_base(lo, hi), desc_limit(lo, hi), (hi | 0x100) & ATTR_MASK)
        self.regs[4] = new_sp if hi & A_DB else (self.regs[4] & ~0xFFFF & M64) | (new_sp & 0xFFFF)

    # ---- IRET ------------------------------------------------------------------------------
    def iret(self, size):
        sm = (1 << (8 * self.mode.stack)) - 1
        base = self.seg_base[SS] if not self.mode.long else 0
        lm = self.mode.lmask
        sp = self.stack_pointer()

        def pop(i):
            return self.read_linear((base + ((sp + i * size) & sm)) & lm, size)

        ip, sel, flags = pop(0), pop(1) & 0xFFFF, pop(2)
        if not self.cr0 & CR0_PE:
            self.set_sp((sp + 3 * size) & sm)
            self.seg_sel[CS] = sel
            self.seg_base[CS] = sel << 4
            self.rip = ip
            self.write_eflags(flags, size, iret=True)
            self.update_mode()
            return
        if self.eflags_rest & NT and not self.efer & EFER_LMA:
            raise gp(0, "IRET with NT set (task return) is not implemented")
        long = bool(self.efer & EFER_LMA)
        rpl = sel & 3
        if rpl < self.cpl:
            raise gp(sel & 0xFFFC, "IRET to a more privileged level")
        lo, hi, addr = self._code_descriptor(sel)
        typ, dpl = (hi >> 8) & 0xF, (hi >> 13) & 3
        if not hi & A_S or not typ & 8 or (dpl > rpl if typ & 4 else dpl != rpl):
            raise gp(sel & 0xFFFC, "IRET target check failed")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="code segment not present")
        if flags & VM and self.cpl == 0 and not long:
            raise gp(0, "IRET to virtual-8086 mode is not implemented")
        outer = rpl > self.cpl or size == 8
        ss_desc = None
        if outer:
            new_sp, new_ss = pop(3), pop(4) & 0xFFFF
            if not (long and not new_ss & 0xFFFC and rpl != 3):
                ss_desc = self.check_outer_ss(new_ss, rpl)
        old_cpl = self.cpl
        self.load_cs(sel, lo, hi, old_cpl)          # CPL stays until the flags are written
        self.write_eflags(flags, size, iret=True)
        self.set_cpl(rpl)
        self.seg_sel[CS] = (self.seg_sel[CS] & 0xFFFC) | rpl
        self.update_mode()
        if outer:
            if ss_desc is None:
                self.set_segment(SS, new_ss, 0, 0, 0)
            else:
                self.load_checked_ss(new_ss, ss_desc)
            self.regs[4] = new_sp & ((1 << (8 * size)) - 1) if size >= 4 else \
                (self.regs[4] & ~0xFFFF & M64) | (new_sp & 0xFFFF)
            if rpl > old_cpl:
                for seg in (ES, DS, FS, GS):
                    self._drop_inaccessible(seg)
        else:
            self.set_sp((sp + 3 * size) & sm)
        self.rip = ip
        self.update_mode()

    # ---- EFLAGS --------------------------------------------------------------------------
    def write_eflags(self, value, size, iret=False):
        """POPF/IRET: what may change depends on CPL, IOPL and mode."""
        cpl = self.cpl if self.cr0 & CR0_PE else 0
        iopl = (self.eflags_rest >> 12) & 3
        mask = 0x3F7FD5 & ~(VM | 0x100000 | 0x80000)      # VIF/VIP/VM via IRET only
        if iret:
            mask |= 0x180000 | (VM if cpl == 0 else 0)
        mask &= ~RF if not iret else M64
        if cpl > 0:
            mask &= ~IOPL
        if cpl > iopl:
            mask &= ~IF
        if size == 2:
            mask &= 0xFFFF
        old = self.eflags
        new = (old & ~mask) | (value & mask)
        self.eflags = (new & 0xFFFFFFFF) | 2
        if (old ^ new) & AC and self.cr4 & CR4_SMAP:
            self.flush_tlb()                  # TLB entries were filled under the old AC

    def set_ac(self, on):
        """STAC/CLAC."""
        old = self.eflags_rest
        self.eflags_rest = (old | AC) if on else (old & ~AC)
        if (old ^ self.eflags_rest) & AC and self.cr4 & CR4_SMAP:
            self.flush_tlb()

    # ---- exception and interrupt delivery ------------------------------------------------
    def deliver(self, vector, error_code=None, software=False, next_ip=None, cr2=None):
        """Deliver an exception or interrupt through the IVT/IDT, with the double-fault rules."""
        prev = self.pending_fault
        if not software and self.exception_log is not None:
            self.exception_log(-1 if prev is None else prev, vector)
        if prev is not None:
            if prev == DF:
                self.triple_fault_info = (
                    f"exception {vector} while delivering a double fault")
                raise TripleFault(self.triple_fault_info)
            benign = not ((prev in CONTRIBUTORY or prev == PF) and
                          (vector in CONTRIBUTORY or (vector == PF and prev == PF)))
            if not benign and not software:
                vector, error_code, software, next_ip, cr2 = DF, 0, False, None, None
        if vector == PF and cr2 is not None:
            self.cr2 = cr2
        self.pending_fault = vector if not software else None
        try:
            if self.interrupt_log is not None:
                self.interrupt_log(vector, error_code, software, next_ip)
            if not self.cr0 & CR0_PE:
                self._deliver_real(vector, next_ip)
            elif self.efer & EFER_LMA:
                self._deliver_long(vector, error_code, software, next_ip)
            else:
                self._deliver_protected(vector, error_code, software, next_ip)
        except GuestFault as nested:
            return self.deliver(nested.vector, nested.error_code, False, None, nested.cr2)
        self.pending_fault = None
        self.halted = False

    def _deliver_real(self, vector, next_ip):
        base, limit = self.idtr
        if vector * 4 + 3 > limit:
            raise gp(vector * 8 + 2, "interrupt vector beyond the IVT limit")
        entry = self.read_linear_implicit((base + vector * 4) & 0xFFFFFFFF, 4)
        ip = next_ip if next_ip is not None else self.rip
        sp = self._push_list(self.stack_pointer(), self.mode.stack, self.seg_base[SS],
                             (self.eflags & 0xFFFF, self.seg_sel[CS], ip & 0xFFFF), 2)
        self.set_sp(sp)
        self.eflags_rest &= ~(IF | TF | AC | RF)
        sel = entry >> 16
        self.seg_sel[CS] = sel
        self.seg_base[CS] = sel << 4
        self.rip = entry & 0xFFFF
        self.update_mode()

    def _gate(self, vector, size, software):
        base, limit = self.idtr
        ext = 0 if software else 1
        if vector * size + size - 1 > limit:
            raise gp(vector * 8 + 2 + ext, "vector beyond the IDT limit")
        addr = (base + vector * size) & self.mode.lmask
        raw = self.sys_read(addr, 8)
        lo, hi = raw & 0xFFFFFFFF, raw >> 32
        typ, dpl = (hi >> 8) & 0x1F, (hi >> 13) & 3
        if software and dpl < self.cpl:
            raise gp(vector * 8 + 2, "software interrupt through a gate with DPL < CPL")
        if not hi & A_P:
            raise GuestFault(NP, vector * 8 + 2 + ext, detail="interrupt gate not present")
        off = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        if size == 16:
            off |= self.sys_read(addr + 8, 4) << 32
        return typ, lo >> 16, off, hi

    def _deliver_protected(self, vector, error_code, software, next_ip):
        typ, sel, off, ghi = self._gate(vector, 8, software)
        if typ not in (0x6, 0x7, 0xE, 0xF):
            raise gp(vector * 8 + 2 + (0 if software else 1),
                     f"IDT entry type {typ:#x} (task gates are not implemented)")
        gate32 = typ & 8
        if not sel & 0xFFFC:
            raise gp(0, "interrupt gate with a null selector")
        lo, hi, addr = self.fetch_descriptor(sel)
        dpl = (hi >> 13) & 3
        if not hi & A_S or not (hi >> 8) & 8 or dpl > self.cpl:
            raise gp(sel & 0xFFFC, "interrupt target is not a suitable code segment")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="interrupt target not present")
        size = 4 if gate32 else 2
        ip = next_ip if next_ip is not None else self.rip
        flags = self.eflags
        old_cs, old_ss, old_sp = self.seg_sel[CS], self.seg_sel[SS], self.stack_pointer()
        conforming = (hi >> 8) & 4
        values = []
        new_cpl = self.cpl
        if not conforming and dpl < self.cpl:
            new_ss, new_sp = self.tss_stack(dpl)
            self._switch_stack(new_ss, new_sp, dpl)
            self.set_cpl(dpl)
            self.update_mode()
            values += [old_ss, old_sp]
            new_cpl = dpl
        values += [flags, old_cs, ip]
        if vector in HAS_ERROR_CODE and error_code is not None and not software:
            values.append(error_code)
        sp = self._push_list(self.stack_pointer(), self.mode.stack, self.seg_base[SS],
                             values, size, supervisor=new_cpl < 3)
        self.set_sp(sp)
        self.load_cs(sel, lo, hi, new_cpl)
        self.rip = off if gate32 else off & 0xFFFF
        self.eflags_rest &= ~(TF | NT | RF | VM | (IF if not typ & 1 else 0))
        self.update_mode()

    def _deliver_long(self, vector, error_code, software, next_ip):
        typ, sel, off, ghi = self._gate(vector, 16, software)
        if typ not in (0xE, 0xF):
            raise gp(vector * 8 + 2 + (0 if software else 1), f"IDT entry type {typ:#x} in long mode")
        if not sel & 0xFFFC:
            raise gp(0, "interrupt gate with a null selector")
        lo, hi, addr = self.fetch_descriptor(sel)
        dpl = (hi >> 13) & 3
        if not hi & A_S or not (hi >> 8) & 8 or not hi & A_L or hi & A_DB or dpl > self.cpl:
            raise gp(sel & 0xFFFC, "interrupt target is not a 64-bit code segment")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="interrupt target not present")
        ist = ghi & 7
        ip = next_ip if next_ip is not None else self.rip
        flags = self.eflags
        old_cs, old_ss = self.seg_sel[CS], self.seg_sel[SS]
        old_sp = self.regs[4] if self.mode.long else self.stack_pointer()
        conforming = (hi >> 8) & 4
        new_cpl = self.cpl if conforming else dpl
        if ist:
            _, new_sp = self.tss_stack(dpl, ist)
        elif new_cpl < self.cpl:
            _, new_sp = self.tss_stack(new_cpl)
        else:
            new_sp = old_sp
        new_sp &= ~0xF
        values = [old_ss, old_sp, flags, old_cs, ip]
        if vector in HAS_ERROR_CODE and error_code is not None and not software:
            values.append(error_code)
        sp = new_sp
        write = self.write_linear_implicit if new_cpl < 3 else self.write_linear
        for v in values:
            sp = (sp - 8) & M64
            write(sp, 8, v)
        if new_cpl < self.cpl:
            self.set_segment(SS, new_cpl, 0, 0, 0)
        self.regs[4] = sp
        self.load_cs(sel, lo, hi, new_cpl)
        self.rip = off
        self.eflags_rest &= ~(TF | NT | RF | VM | (IF if not typ & 1 else 0))
        self.update_mode()

    # ---- control registers --------------------------------------------------------------
    def write_cr(self, n, value):
        if n == 0:
            self.write_cr0(value)
        elif n == 2:
            self.cr2 = value
        elif n == 3:
            if self.efer & EFER_LMA:
                # bits from the usable address width up are reserved, except the C-bit
                c_bit = (1 << self.sev_c_bit) if self.sev_c_bit else 0
                usable = self.phys_bits - self.sev_reduced_bits
                if (value & ~c_bit) >> usable:
                    raise gp(0, "CR3 has reserved bits set")
            self.cr3 = value & (M64 if self.efer & EFER_LMA else 0xFFFFFFFF)
            if self.log_cr is not None:
                self.log_cr(3, self.cr3)
            self.flush_tlb(everything=False)
        elif n == 4:
            self.write_cr4(value)
        elif n == 8:
            if value >> 4:
                raise gp(0, "CR8 reserved bits")
            self.cr8 = value
        else:
            raise GuestFault(UD, detail=f"mov to cr{n}")
        self.exit_request = True

    def read_cr(self, n):
        if n == 0:
            return self.cr0
        if n == 2:
            return self.cr2
        if n == 3:
            return self.cr3
        if n == 4:
            return self.cr4
        if n == 8:
            return self.cr8
        raise GuestFault(UD, detail=f"mov from cr{n}")

    def write_cr0(self, value):
        if self.log_cr is not None:
            self.log_cr(0, value)
        if value >> 32:
            raise gp(0, "CR0 bits 63:32 are reserved")
        if value & CR0_PG and not value & CR0_PE:
            raise gp(0, "CR0.PG without CR0.PE")
        if value & CR0_NW and not value & CR0_CD:
            raise gp(0, "CR0.NW without CR0.CD")
        value |= CR0_ET
        old = self.cr0
        if value & CR0_PG and not old & CR0_PG and self.efer & EFER_LME:
            if not self.cr4 & CR4_PAE:
                raise gp(0, "long mode needs CR4.PAE before CR0.PG")
            self.efer |= EFER_LMA
        if not value & CR0_PG and old & CR0_PG and self.efer & EFER_LMA:
            if self.mode.long:
                raise gp(0, "paging cannot be turned off in 64-bit mode")
            self.efer &= ~EFER_LMA
        self.cr0 = value
        if (old ^ value) & (CR0_PG | CR0_WP | CR0_PE):
            self.update_paging()
        self.update_mode()

    def write_cr4(self, value):
        if value & ~CR4_KNOWN:
            raise gp(0, f"CR4 reserved bits {value & ~CR4_KNOWN:#x}")
        if self.efer & EFER_LMA and not value & CR4_PAE:
            raise gp(0, "CR4.PAE cannot be cleared in long mode")
        if self.efer & EFER_LMA and (value ^ self.cr4) & CR4_LA57:
            raise gp(0, "CR4.LA57 cannot change in long mode")
        old = self.cr4
        self.cr4 = value
        if (old ^ value) & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP | CR4_SMAP | CR4_LA57):
            self.update_paging()

    # ---- MSRs ------------------------------------------------------------------------------
    def rdmsr(self, index):
        if index == MSR_EFER:
            return self.efer
        if index == MSR_TSC:
            return (self.read_tsc() + self.tsc_offset) & M64
        if index == MSR_TSC_AUX:
            return self.tsc_aux
        if index == MSR_FS_BASE:
            return self.seg_base[FS]
        if index == MSR_GS_BASE:
            return self.seg_base[GS]
        if index == MSR_APIC_BASE:
            return self.apic_base
        if index == MSR_MTRRCAP:
            return 0x508                      # 8 variable ranges, fixed ranges, write-combining
        extra = self.extra_msr_read(index)
        if extra is not None:
            return extra
        if index in self.msr:
            return self.msr[index]
        raise gp(0, f"rdmsr of unknown MSR {index:#x}")

    def wrmsr(self, index, value):
        if index == MSR_EFER:
            if value & ~EFER_WRITABLE & ~EFER_LMA:
                raise gp(0, f"EFER reserved bits {value:#x}")
            if (value ^ self.efer) & EFER_LME and self.cr0 & CR0_PG:
                raise gp(0, "EFER.LME cannot change while paging is on")
            old = self.efer
            self.efer = (value & ~EFER_LMA) | (old & EFER_LMA)
            if (old ^ self.efer) & EFER_NXE:
                self.update_paging()
            self.update_mode()
        elif index == MSR_TSC:
            self.tsc_offset = (value - self.read_tsc()) & M64
        elif index == MSR_TSC_AUX:
            self.tsc_aux = value & 0xFFFFFFFF
        elif index in (MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_CSTAR):
            if not canonical(value):
                raise gp(0, "non-canonical address written to an MSR")
            if index == MSR_FS_BASE:
                self.seg_base[FS] = value
            elif index == MSR_GS_BASE:
                self.seg_base[GS] = value
            else:
                self.msr[index] = value
        elif index == MSR_APIC_BASE:
            self.apic_base = value
        elif index == MSR_MTRRCAP:
            raise gp(0, "MTRRcap is read-only")
        elif self.extra_msr_write(index, value):
            pass
        elif index in self.msr:
            self.msr[index] = value
        else:
            raise gp(0, f"wrmsr of unknown MSR {index:#x}")

    def extra_msr_read(self, index):
        """Hook for MSRs a machine adds (SEV_STATUS ...); None when not handled."""
        handler = self.msr_handlers.get(index) if hasattr(self, "msr_handlers") else None
        return handler[0]() if handler else None

    def extra_msr_write(self, index, value):
        handler = self.msr_handlers.get(index) if hasattr(self, "msr_handlers") else None
        if handler is None:
            return False
        handler[1](value)
        return True

    def read_tsc(self):
        return self.namespace["rdtsc"]()

    # ---- descriptor tables ----------------------------------------------------------------
    def lldt(self, sel):
        sel &= 0xFFFF
        if not sel & 0xFFFC:
            self.ldtr = (sel, 0, 0, 0)
            return
        if sel & 4:
            raise gp(sel & 0xFFFC, "LDT selector must be in the GDT")
        lo, hi, addr = self.fetch_descriptor(sel)
        if hi & A_S or (hi >> 8) & 0xF != 2:
            raise gp(sel & 0xFFFC, "not an LDT descriptor")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="LDT not present")
        base = desc_base(lo, hi)
        if self.efer & EFER_LMA:
            base |= self.sys_read(addr + 8, 4) << 32
        self.ldtr = (sel, base, desc_limit(lo, hi), hi & ATTR_MASK)

    def ltr(self, sel):
        sel &= 0xFFFF
        if not sel & 0xFFFC or sel & 4:
            raise gp(sel & 0xFFFC, "TR selector must be a non-null GDT selector")
        lo, hi, addr = self.fetch_descriptor(sel)
        typ = (hi >> 8) & 0xF
        if hi & A_S or typ not in ((9,) if self.efer & EFER_LMA else (1, 9)):
            raise gp(sel & 0xFFFC, "not an available TSS descriptor")
        if not hi & A_P:
            raise GuestFault(NP, sel & 0xFFFC, detail="TSS not present")
        base = desc_base(lo, hi)
        if self.efer & EFER_LMA:
            base |= self.sys_read(addr + 8, 4) << 32
        self.sys_write(addr + 4, 4, hi | 0x200)            # mark busy
        self.tr = (sel, base, desc_limit(lo, hi), (hi | 0x200) & ATTR_MASK)

    def selector_info(self, sel, want):
        """LAR/LSL/VERR/VERW: (ok, value) without faulting on bad selectors."""
        sel &= 0xFFFF
        if not sel & 0xFFFC:
            return False, 0
        try:
            lo, hi, addr = self.fetch_descriptor(sel)
        except GuestFault:
            return False, 0
        typ, dpl, s = (hi >> 8) & 0xF, (hi >> 13) & 3, hi & A_S
        conforming_code = s and typ & 8 and typ & 4
        if not conforming_code and dpl < max(self.cpl, sel & 3):
            return False, 0
        if want == "lar":
            if not s and typ not in (1, 2, 3, 4, 5, 9, 0xB, 0xC):
                return False, 0
            return True, hi & 0x00F0FF00
        if want == "lsl":
            if not s and typ not in (1, 2, 3, 9, 0xB):
                return False, 0
            return True, desc_limit(lo, hi)
        if not s:
            return False, 0
        if want == "verr":
            return bool(not typ & 8 or typ & 2), 0
        return bool(not typ & 8 and typ & 2), 0                 # verw

    # ---- fast system calls ------------------------------------------------------------------
    def syscall(self, next_ip):
        if not self.efer & EFER_SCE:
            raise GuestFault(UD, detail="syscall with EFER.SCE clear")
        star = self.msr[MSR_STAR]
        sel = (star >> 32) & 0xFFFC
        if self.efer & EFER_LMA:
            self.regs[1] = next_ip
            self.regs[11] = self.eflags & ~RF & 0xFFFFFFFF
            self.set_segment(CS, sel, 0, 0xFFFFFFFF, 0x00A09B00)
            self.set_segment(SS, sel + 8, 0, 0xFFFFFFFF, 0x00C09300)
            self.rip = self.msr[MSR_LSTAR] if self.mode.long else self.msr[MSR_CSTAR]
            self.eflags = self.eflags & ~(self.msr[MSR_SFMASK] | RF) & 0xFFFFFFFF
        else:
            self.regs[1] = next_ip & 0xFFFFFFFF
            self.set_segment(CS, sel, 0, 0xFFFFFFFF, 0x00CF9B00 & ATTR_MASK)
            self.set_segment(SS, sel + 8, 0, 0xFFFFFFFF, 0x00CF9300 & ATTR_MASK)
            self.rip = star & 0xFFFFFFFF
            self.eflags = self.eflags & ~(IF | RF | VM)
        self.set_cpl(0)
        self.update_mode()

    def sysret(self, rex_w):
        if not self.efer & EFER_SCE:
            raise GuestFault(UD, detail="sysret with EFER.SCE clear")
        if self.cpl != 0 or not self.cr0 & CR0_PE:
            raise gp(0, "sysret outside CPL 0")
        star = self.msr[MSR_STAR]
        sel = (star >> 48) & 0xFFFF
        if self.efer & EFER_LMA:
            if rex_w:
                if not canonical(self.regs[1]):
                    raise gp(0, "sysret to a non-canonical RIP")
                self.set_segment(CS, (sel + 16) | 3, 0, 0xFFFFFFFF, 0x00A0FB00)
                self.rip = self.regs[1]
            else:
                self.set_segment(CS, sel | 3, 0, 0xFFFFFFFF, 0x00C0FB00)
                self.rip = self.regs[1] & 0xFFFFFFFF
            self.eflags = (self.regs[11] & 0x3C7FD7) | 2
        else:
            self.set_segment(CS, sel | 3, 0, 0xFFFFFFFF, 0x00C0FB00)
            self.rip = self.regs[1] & 0xFFFFFFFF
            self.eflags_rest |= IF
        self.seg_sel[SS] = (sel + 8) | 3
        self.seg_attr[SS] = 0x00C0F300
        self.seg_base[SS], self.seg_limit[SS] = 0, 0xFFFFFFFF
        self.set_cpl(3)
        self.update_mode()

    def sysenter(self):
        cs = self.msr[MSR_SYSENTER_CS] & 0xFFFC
        if not self.cr0 & CR0_PE or not cs:
            raise gp(0, "sysenter needs protected mode and SYSENTER_CS")
        long = bool(self.efer & EFER_LMA)
        self.eflags_rest &= ~(VM | IF | RF)
        self.set_segment(CS, cs, 0, 0xFFFFFFFF, 0x00A09B00 if long else 0x00C09B00)
        self.set_segment(SS, cs + 8, 0, 0xFFFFFFFF, 0x00C09300)
        self.regs[4] = self.msr[MSR_SYSENTER_ESP] & (M64 if long else 0xFFFFFFFF)
        self.rip = self.msr[MSR_SYSENTER_EIP] & (M64 if long else 0xFFFFFFFF)
        self.set_cpl(0)
        self.update_mode()

    def sysexit(self, rex_w):
        cs = self.msr[MSR_SYSENTER_CS] & 0xFFFC
        if not self.cr0 & CR0_PE or not cs or self.cpl != 0:
            raise gp(0, "sysexit needs protected mode, CPL 0 and SYSENTER_CS")
        if rex_w:
            self.set_segment(CS, (cs + 32) | 3, 0, 0xFFFFFFFF, 0x00A0FB00)
            self.set_segment(SS, (cs + 40) | 3, 0, 0xFFFFFFFF, 0x00C0F300)
            self.rip, self.regs[4] = self.regs[2], self.regs[1]
        else:
            self.set_segment(CS, (cs + 16) | 3, 0, 0xFFFFFFFF, 0x00C0FB00)
            self.set_segment(SS, (cs + 24) | 3, 0, 0xFFFFFFFF, 0x00C0F300)
            self.rip, self.regs[4] = self.regs[2] & 0xFFFFFFFF, self.regs[1] & 0xFFFFFFFF
        self.set_cpl(3)
        self.update_mode()

    def swapgs(self):
        kgs = self.msr[MSR_KERNEL_GS_BASE]
        self.msr[MSR_KERNEL_GS_BASE] = self.seg_base[GS]
        self.seg_base[GS] = kgs

    # ---- I/O permission ----------------------------------------------------------------------
    def check_io(self, port, size):
        """#GP(0) unless CPL <= IOPL or the TSS I/O bitmap allows every byte of the access."""
        if not self.cr0 & CR0_PE:
            return
        iopl = (self.eflags_rest >> 12) & 3
        if self.cpl <= iopl and not self.eflags_rest & VM:
            return
        sel, base, limit, attr = self.tr
        if not (attr >> 8) & 8 or limit < 0x67:
            raise gp(0, f"I/O to port {port:#x} denied (no 32-bit TSS bitmap)")
        bitmap = self.sys_read(base + 0x66, 2)
        off = bitmap + (port >> 3)
        if off + 1 > limit:
            raise gp(0, f"I/O to port {port:#x} beyond the TSS I/O bitmap")
        bits = self.sys_read(base + off, 2)
        if (bits >> (port & 7)) & ((1 << size) - 1):
            raise gp(0, f"I/O to port {port:#x} denied by the TSS I/O bitmap")
