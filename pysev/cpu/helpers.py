"""Run-time helpers that translated code calls for rare or complex work.

bind(cpu) returns the names a block's namespace gets; each helper closes
over the CPU.  Helpers that change registers do so only after every memory
access that can fault, so faults stay precise.
"""

import os
import time

from decoder.records import CF, PF, AF, ZF, SF, OF, ARITH_FLAGS
from . import flags as F
from .faults import GuestFault, DE, GP

M64 = 0xFFFFFFFFFFFFFFFF


def default_cpuid(leaf, subleaf):
    """A small AMD-like CPUID for the bare engine (the machine installs a real model)."""
    if leaf == 0:
        return (0xD, 0x68747541, 0x444D4163, 0x69746E65)      # "AuthenticAMD"
    if leaf == 1:
        # family 0x19 model 0x01 stepping 1; EDX: FPU TSC MSR CX8 CMOV; ECX: SSE3 CX16 POPCNT RDRAND
        return (0x00A00F11, 0x00000800, 0x40802001, 0x00008131)
    if leaf == 7 and subleaf == 0:
        return (0, 0x00040008, 0, 0)                          # BMI1, RDSEED
    if leaf == 0x80000000:
        return (0x80000008, 0x68747541, 0x444D4163, 0x69746E65)
    if leaf == 0x80000001:
        return (0x00A00F11, 0, 0x00000021, 0x28100800)        # LAHF64, LZCNT(ABM); SYSCALL NX LM RDTSCP
    if leaf == 0x80000008:
        return (0x00003028, 0, 0, 0)                          # 40 physical, 48 linear bits
    return (0, 0, 0, 0)


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


def bind(cpu):
    ns = {}

    def helper(fn):
        ns[fn.__name__] = fn
        return fn

    # ---- division ---------------------------------------------------------------
    @helper
    def div_u(size, dividend, divisor):
        if divisor == 0:
            raise GuestFault(DE, detail="divide by zero")
        q, r = divmod(dividend, divisor)
        if q >> (8 * size):
            raise GuestFault(DE, detail="quotient too large")
        return q, r

    @helper
    def div_s(size, dividend, divisor):
        bits = 8 * size
        if divisor == 0:
            raise GuestFault(DE, detail="divide by zero")
        n = _signed(dividend, 2 * bits)
        d = _signed(divisor, bits)
        q = abs(n) // abs(d)
        if (n < 0) != (d < 0):
            q = -q
        r = n - q * d
        if not -(1 << (bits - 1)) <= q < (1 << (bits - 1)):
            raise GuestFault(DE, detail="quotient too large")
        m = (1 << bits) - 1
        return q & m, r & m

    # ---- rotates and double shifts: return (result, flags word) or None -------------
    @helper
    def rotate(op, size, v, count, old):
        bits = 8 * size
        m = (1 << bits) - 1
        c = count & (0x3F if size == 8 else 0x1F)
        if not c:
            return None
        msb = bits - 1
        flags = old & ~(CF | OF)
        if op == "rol":
            t = c % bits
            r = ((v << t) | (v >> (bits - t))) & m if t else v
            cf = r & 1
            of = ((r >> msb) ^ cf) & 1
        elif op == "ror":
            t = c % bits
            r = ((v >> t) | (v << (bits - t))) & m if t else v
            cf = (r >> msb) & 1
            of = ((r >> msb) ^ (r >> (msb - 1))) & 1
        else:
            cin = old & CF
            t = c % (bits + 1) if size < 4 else c
            if op == "rcl":
                x = (cin << bits) | v
                x = ((x << t) | (x >> (bits + 1 - t))) & ((m << 1) | 1) if t else x
                r, cf = x & m, (x >> bits) & 1
                of = ((r >> msb) ^ cf) & 1
            else:
                of = ((v >> msb) ^ cin) & 1
                x = (cin << bits) | v
                x = ((x >> t) | (x << (bits + 1 - t))) & ((m << 1) | 1) if t else x
                r, cf = x & m, (x >> bits) & 1
        return r, flags | (CF if cf else 0) | (OF if of else 0)

    @helper
    def shift_double(op, size, dst, src, count, old):
        bits = 8 * size
        m = (1 << bits) - 1
        c = count & (0x3F if size == 8 else 0x1F)
        if not c:
            return None
        if op == "shld":
            x = (dst << bits) | src
            wide = x << c
            r = (wide >> bits) & m
            cf = (x >> (2 * bits - c)) & 1 if c <= 2 * bits else 0
        else:
            x = (src << bits) | dst
            r = (x >> c) & m
            cf = (x >> (c - 1)) & 1
        of = ((r ^ dst) >> (bits - 1)) & 1
        flags = F.PARITY[r & 0xFF] | (ZF if r == 0 else 0) | (SF if r >> (bits - 1) else 0)
        return r, flags | (CF if cf else 0) | (OF if of else 0)

    # ---- decimal adjust -------------------------------------------------------------
    @helper
    def bcd(op, ax, old, imm=10):
        al, ah = ax & 0xFF, (ax >> 8) & 0xFF
        cf, af = old & CF, old & AF
        flags = old & ~ARITH_FLAGS
        if op == "daa":
            old_al, old_cf = al, cf
            cf = 0
            if (al & 0xF) > 9 or af:
                al = (al + 6) & 0xFF
                cf = old_cf or (old_al + 6 > 0xFF)
                af = AF
            else:
                af = 0
            if old_al > 0x99 or old_cf:
                al = (al + 0x60) & 0xFF
                cf = 1
            else:
                cf = 0
            res = ah << 8 | al
            of = 0
        elif op == "das":
            old_al, old_cf = al, cf
            cf = 0
            if (al & 0xF) > 9 or af:
                cf = old_cf or al < 6
                al = (al - 6) & 0xFF
                af = AF
            else:
                af = 0
            if old_al > 0x99 or old_cf:
                al = (al - 0x60) & 0xFF
                cf = 1
            res = ah << 8 | al
            of = 0
        elif op in ("aaa", "aas"):
            if (al & 0xF) > 9 or af:
                if op == "aaa":
                    ax = (ax + 0x106) & 0xFFFF
                else:
                    ax = (ax - 6) & 0xFFFF
                    ax = (ax & 0xFF) | ((((ax >> 8) - 1) & 0xFF) << 8)
                af, cf = AF, 1
            else:
                af, cf = 0, 0
            res = ax & 0xFF0F
            al = res & 0xFF
            of = 0
            return res, (old & (ZF | SF | PF | OF)) | (CF if cf else 0) | af
        elif op == "aam":
            if imm == 0:
                raise GuestFault(DE, detail="aam with divisor 0")
            ah, al = divmod(al, imm)
            res = (ah << 8) | al
            cf = af = of = 0
        else:                                   # aad
            al = (al + ah * imm) & 0xFF
            res = al
            cf = af = of = 0
        flags = (F.PARITY[al] | (ZF if al == 0 else 0) | (SF if al & 0x80 else 0)
                 | (CF if cf else 0) | (AF if af else 0) | (OF if of else 0))
        return res, flags

    # ---- CPUID, time stamp, random numbers -----------------------------------------------
    @helper
    def cpuid(leaf, subleaf):
        return cpu.cpuid_fn(leaf, subleaf)

    @helper
    def rdtsc():
        return time.perf_counter_ns() & M64

    @helper
    def tsc_aux():
        return cpu.tsc_aux & 0xFFFFFFFF

    @helper
    def rdrand(size):
        return int.from_bytes(cpu.guest_random(size), "little")

    # ---- port I/O ---------------------------------------------------------------------------
    @helper
    def port_in(port, size):
        if cpu.ports is None:
            return (1 << (8 * size)) - 1
        return cpu.ports.read(port, size) & ((1 << (8 * size)) - 1)

    @helper
    def port_out(port, size, value):
        if cpu.ports is not None:
            cpu.ports.write(port, size, value)

    # ---- system methods that translated code calls directly ------------------------------
    for name in ("load_seg", "far_jmp", "far_call", "far_ret", "iret", "write_cr", "read_cr",
                 "rdmsr", "wrmsr", "lldt", "ltr", "selector_info", "syscall", "sysret",
                 "sysenter", "sysexit", "swapgs", "check_io", "write_eflags", "flush_tlb_page",
                 "set_ac"):
        ns[name] = getattr(cpu, name)

    @helper
    def rest_flags():
        return cpu.eflags_rest

    @helper
    def check_align16(addr):
        if addr & 15:
            raise GuestFault(GP, 0, detail="cmpxchg16b operand not 16-byte aligned")

    # ---- string instructions -------------------------------------------------------------------
    from .strings import bind_strings
    ns.update(bind_strings(cpu))
    return ns
