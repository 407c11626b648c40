"""The execution engine: memory access paths, the translation cache and the run loop."""

import struct
import sys

from decoder import CodeCache, disassemble
from pysev.mem import PAGE_SHIFT, PAGE_MASK, PAGE_SIZE, UNPACK, PACK
from pysev.mem.paging import walk, PageFault, ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH
from pysev.mem.paging import P as _P, A as _A, D as _D, G as _G, US as _US, RW as _RW

from . import helpers
from .faults import GuestFault, PF, GP, RepStep
from .state import CPUState
from .system import SystemMixin, TripleFault, AC
from .translate import BASE_NAMESPACE, MAX_BLOCK, translate

# The software TLB: TLB_R and TLB_W map a linear page number to the delta from
# a linear address in that page to its host offset in the memoryview MV
# (host = lin + delta).  Only pages whose host offset is page aligned are
# entered, so an aligned linear address is an aligned host offset and the
# translated code may use the memoryview cast to words (MV2, MV4, MV8).
#
# One template gives the accessors helpers use for every size: a TLB hit
# inside one page goes straight to the memoryview; anything else takes the
# slow path.
_ACCESS_TEMPLATE = '''
def rd{n}(a):
    h = TLB_R.get(a >> 12)
    if h is not None and (a & 0xfff) <= {last}:
        return U{n}(MV, a + h)[0]
    return SR{n}(a)

def wr{n}(a, v):
    h = TLB_W.get(a >> 12)
    if h is not None and (a & 0xfff) <= {last}:
        P{n}(MV, a + h, v)
        return
    SW{n}(a, v)
'''

# A TLB miss inside one page first tries the paging-structure cache (4- and
# 5-level paging): FPSC maps each 2 MiB of linear space whose page table a
# walk has reached to (index of that page table in MV8, read mask, read
# value, write mask, write value, frame mask).  When the PTE, masked, equals
# the expected value, the walk would succeed without changing memory: the
# entry is present and accessed (and dirty, for a write), has no reserved
# bit set, and grants what this privilege level needs.  Then the TLB is
# filled and the access made here; anything else takes the full walk.  The
# masks hold the reserved bits whatever the C-bit, so SEV on and off do the
# same work.
_MISS_TEMPLATE = '''
def SR{n}(a):
    e = FPSC.get(a >> 21)
    if e is not None{in_page}:
        pte = MV8[e[0] + ((a >> 12) & 0x1ff)]
        if pte & e[1] == e[2]:
            page = (pte & e[5]) >> 12
            h = WRITABLE.get(page)
            p = a >> 12
            if h is not None and not h & 0xfff:
                h -= p << 12
                TLB_R[p] = h
                if pte & e[3] == e[4] and page not in CODE:
                    TLB_W[p] = h
                return {value}
            h = READABLE.get(page)
            if h is not None and not h & 0xfff:
                h -= p << 12
                TLB_R[p] = h
                return {value}
    return SLOW_READ(a, {n})

def SW{n}(a, v):
    e = FPSC.get(a >> 21)
    if e is not None{in_page}:
        pte = MV8[e[0] + ((a >> 12) & 0x1ff)]
        if pte & e[3] == e[4]:
            page = (pte & e[5]) >> 12
            h = WRITABLE.get(page)
            if h is not None and not h & 0xfff and page not in CODE:
                p = a >> 12
                h -= p << 12
                TLB_W[p] = h
                P{n}(MV, a + h, v)
                return False
    SLOW_WRITE(a, {n}, v)
    return SMC[0]                   # it wrote to a page that holds translated code
'''


class _LittleEndianView:
    """MV2/MV4/MV8 on a big-endian host: indexed by aligned element, little endian."""

    def __init__(self, mv, size):
        self.mv, self.size = mv, size
        self.st = struct.Struct("<" + {2: "H", 4: "I", 8: "Q"}[size])

    def __getitem__(self, i):
        return self.st.unpack_from(self.mv, i * self.size)[0]

    def __setitem__(self, i, value):
        self.st.pack_into(self.mv, i * self.size, value)


class EngineError(RuntimeError):
    """A defect in pysev itself met while running guest code (not a guest exception)."""


class CPU(CPUState, SystemMixin):
    """A CPU wired to physical memory and an optional port-I/O bus."""

    def __init__(self, mem, ports=None, cpuid=None, log=None, debug=()):
        super().__init__()
        self.tlb_r = {}
        self.tlb_w = {}
        self.tlb_global = set()
        self.pscache = {}             # paging-structure cache (see pysev.mem.paging.walk)
        self.fpsc = {}                # its entries as masks for the TLB-miss fast path
        self._wok = [False]           # the last walk found the page dirty and writable
        self.fast_blocks = {}         # IP -> block for the current CS base and mode
        self.init_system()
        self.mem = mem
        self.ports = ports
        self.cache = CodeCache()
        self.cache.on_new_code_page = self._on_new_code_page
        self.cache.on_clear = self._on_cache_clear
        self.tlb_enabled = True
        self.mem_hook = None          # callable(kind, addr, size, value) or None
        self.smc = [False]
        self.icount = 0
        self.fast_context = None
        self.exit_request = False
        self.stop_requested = False
        self.rep_one = False
        self.rep_again = False
        self.log = log
        self.debug = frozenset(debug)
        self.cpuid_fn = cpuid or helpers.default_cpuid
        self.namespace = dict(BASE_NAMESPACE)
        self.namespace.update(helpers.bind(self))
        self.namespace.update(SMC=self.smc, SEL=self.seg_sel, SLO=self.seg_lo, SHI=self.seg_hi,
                              TLB_R=self.tlb_r,
                              TLB_W=self.tlb_w, SLOW_READ=self.slow_read,
                              SLOW_WRITE=self.slow_write, FPSC=self.fpsc,
                              READABLE=mem.readable, WRITABLE=mem.writable,
                              CODE=self.cache.by_page)
        for n in (1, 2, 4, 8):
            self.namespace[f"U{n}"] = UNPACK[n]
            self.namespace[f"P{n}"] = PACK[n]
            exec(compile(_ACCESS_TEMPLATE.format(n=n, last=PAGE_SIZE - n), "<tlb access>",
                         "exec"), self.namespace)
            in_page = f" and (a & 0xfff) <= {PAGE_SIZE - n}" if n > 1 else ""
            value = ("MV[a + h]" if n == 1 else
                     f"MV{n}[(a + h) >> {n.bit_length() - 1}] if not a & {n - 1} else U{n}(MV, a + h)[0]")
            exec(compile(_MISS_TEMPLATE.format(n=n, in_page=in_page, value=value),
                         "<tlb miss>", "exec"), self.namespace)
        self.namespace["rd16"] = self.read16
        self.namespace["wr16"] = self.write16
        mem.listeners.append(self._on_map_change)
        self._on_map_change()

    # ---- memory ------------------------------------------------------------------
    def _on_map_change(self):
        mv = self.mem.mv
        ns = self.namespace
        ns["MV"] = mv
        usable = len(mv) & ~7
        for n, fmt in ((2, "H"), (4, "I"), (8, "Q")):
            ns[f"MV{n}"] = (mv[:usable].cast(fmt) if sys.byteorder == "little"
                            else _LittleEndianView(mv, n))
        self.flush_tlb()

    def _on_new_code_page(self, page):
        # a page that holds translated code must take the slow write path
        self.tlb_w.clear()

    def _on_cache_clear(self):
        self.fast_blocks.clear()

    def flush_tlb(self, everything=True):
        """Drop TLB entries: all, or (CR3 write) all but global pages."""
        self.pscache.clear()
        self.fpsc.clear()
        if everything or not self.tlb_global:
            self.tlb_r.clear()
            self.tlb_w.clear()
            self.tlb_global.clear()
        else:
            keep = self.tlb_global
            for tlb in (self.tlb_r, self.tlb_w):
                for page in [p for p in tlb if p not in keep]:
                    del tlb[page]
        self.fast_blocks.clear()

    def flush_tlb_page(self, lin):
        """INVLPG.  The TLB keeps 4 KiB entries even for large pages and does not
        remember which large page an entry came from, so it drops everything
        (a TLB may always hold less than the architecture allows)."""
        self.flush_tlb(everything=True)

    def set_tlb_enabled(self, enabled):
        self.tlb_enabled = enabled
        self.flush_tlb()

    def linear_to_phys(self, lin, access=ACCESS_READ, implicit=False):
        """Translate a linear address; a failed walk raises the guest's #PF."""
        cfg = self.paging
        if not cfg.levels:
            return lin & 0xFFFFFFFF if not self.mode.long else lin
        if cfg.levels >= 4:
            top = lin >> (56 if cfg.levels == 5 else 47)
            if top and top != (1 << (8 if cfg.levels == 5 else 17)) - 1:
                # (stack accesses raise #SS on hardware; the slow path cannot tell them apart)
                raise GuestFault(GP, 0, detail=f"non-canonical address {lin:#x}")
        user = self.cpl == 3 and not implicit
        try:
            phys, _private, glob = walk(self.mem, self.cr3, lin, access, user, cfg,
                                        bool(self.eflags_rest & AC), self.pscache, self._wok)
        except PageFault as pf:
            raise GuestFault(PF, pf.error_code, cr2=lin, detail=pf.reason) from None
        if glob and self.cr4 & 0x80 and not implicit:
            self.tlb_global.add(lin >> PAGE_SHIFT)
        if cfg.levels >= 4 and (lin >> 21) not in self.fpsc:
            self._fast_psc_entry(lin >> 21)
        return phys

    def _fast_psc_entry(self, region):
        """Turn the paging-structure cache entry for 2 MiB region `region` into the
        masks of the TLB-miss fast path (SR1..SR8, SW1..SW8), for the current
        privilege level and paging configuration; every flush drops them."""
        up = self.pscache.get(region)
        if up is None or not self.tlb_enabled or self.mem_hook is not None:
            return
        table, rw, us, _nx = up
        host = self.mem.readable.get(table >> PAGE_SHIFT)
        if host is None or host & PAGE_MASK:
            return
        cfg = self.paging
        must = _P | _A | cfg.reserved         # present, accessed, no reserved bit
        val = _P | _A
        if self.cr4 & 0x80:
            must |= _G                        # a global page must be recorded: full walk
        if self.cpl == 3:
            if not us:
                return                        # every user access here faults
            must |= _US
            val |= _US
        elif us and cfg.smap:
            must |= _US                       # a user page: SMAP and EFLAGS.AC decide
        wmust, wval = must | _D, val | _D
        if self.cpl == 3 or cfg.wp:
            if rw:
                wmust |= _RW
                wval |= _RW
            else:
                wmust, wval = 0, 1            # every write faults: never fast
        self.fpsc[region] = (host >> 3, must, val, wmust, wval, cfg.frame)

    def slow_read(self, a, size):
        off = a & PAGE_MASK
        if off + size > PAGE_SIZE:                 # crosses a page: check both, then read
            first = PAGE_SIZE - off
            lo = self.slow_read(a, first) if first in (1, 2, 4, 8) else self._bytes_read(a, first)
            rest = size - first
            nxt = (a + first) & self.mode.lmask
            hi = self.slow_read(nxt, rest) if rest in (1, 2, 4, 8) else self._bytes_read(nxt, rest)
            return lo | (hi << (8 * first))
        wok = self._wok
        wok[0] = not self.paging.levels            # without paging, RAM is writable as is
        phys = self.linear_to_phys(a)
        page = phys >> PAGE_SHIFT
        host = self.mem.readable.get(page)
        if host is not None:
            value = UNPACK[size](self.mem.mv, host + (phys & PAGE_MASK))[0]
            if self.tlb_enabled and not host & PAGE_MASK:
                lpage = a >> PAGE_SHIFT
                delta = host - (lpage << PAGE_SHIFT)
                self.tlb_r[lpage] = delta
                # a page the walk found dirty and writable can take writes at once
                if wok[0] and page in self.mem.writable and not self.cache.is_code_page(page):
                    self.tlb_w[lpage] = delta
        else:
            value = self.mem.read(phys, size)
        if self.mem_hook is not None:
            self.mem_hook("read", a, size, value)
        return value

    def _bytes_read(self, a, n):
        return sum(self.slow_read(a + i, 1) << (8 * i) for i in range(n))

    def slow_write(self, a, size, value):
        off = a & PAGE_MASK
        if off + size > PAGE_SIZE:
            # translate both pages first so a fault on the second writes nothing
            first = PAGE_SIZE - off
            nxt = (a + first) & self.mode.lmask
            self.linear_to_phys(a, ACCESS_WRITE)
            self.linear_to_phys(nxt, ACCESS_WRITE)
            for i in range(size):
                self.slow_write((a + i) & self.mode.lmask, 1, (value >> (8 * i)) & 0xFF)
            return
        if self.mem_hook is not None:
            self.mem_hook("write", a, size, value)
        phys = self.linear_to_phys(a, ACCESS_WRITE)
        self._phys_write(phys, size, value, a)

    def _phys_write(self, phys, size, value, lin=None):
        page = phys >> PAGE_SHIFT
        if self.cache.is_code_page(page):
            self.mem.write(phys, size, value)
            if self.cache.invalidate_page(page):
                self.fast_blocks.clear()
                self.smc[0] = True
            return
        host = self.mem.writable.get(page)
        if host is not None:
            PACK[size](self.mem.mv, host + (phys & PAGE_MASK), value)
            if self.tlb_enabled and lin is not None and not host & PAGE_MASK:
                lpage = lin >> PAGE_SHIFT
                self.tlb_w[lpage] = host - (lpage << PAGE_SHIFT)
        else:
            self.mem.write(phys, size, value)

    def read_linear_implicit(self, lin, size):
        """A supervisor access the CPU makes itself (descriptor tables, TSS); no TLB fill."""
        value = 0
        for i in range(size):
            phys = self.linear_to_phys((lin + i) & self.mode.lmask, ACCESS_READ, True)
            value |= self.mem.read(phys, 1) << (8 * i)
        return value

    def write_linear_implicit(self, lin, size, value):
        physs = [self.linear_to_phys((lin + i) & self.mode.lmask, ACCESS_WRITE, True)
                 for i in range(size)]
        for i, phys in enumerate(physs):
            self._phys_write(phys, 1, (value >> (8 * i)) & 0xFF)

    def read16(self, a):
        ns = self.namespace
        return ns["rd8"](a) | (ns["rd8"]((a + 8) & 0xFFFFFFFFFFFFFFFF) << 64)

    def write16(self, a, v):
        ns = self.namespace
        ns["wr8"](a, v & 0xFFFFFFFFFFFFFFFF)
        ns["wr8"]((a + 8) & 0xFFFFFFFFFFFFFFFF, v >> 64)

    def read_linear(self, a, size):
        return self.namespace[f"rd{size}"](a)

    def write_linear(self, a, size, value):
        self.namespace[f"wr{size}"](a, value)

    def invalidate_code(self, phys, size):
        """Drop translations of [phys, phys+size) after a write from outside the guest."""
        first = phys >> PAGE_SHIFT
        last = (phys + max(size, 1) - 1) >> PAGE_SHIFT
        hit = False
        for page in range(first, last + 1):
            hit |= self.cache.invalidate_page(page)
        if hit:
            self.tlb_w.clear()
            self.fast_blocks.clear()
        return hit

    # ---- translation ---------------------------------------------------------------
    def code_linear(self, ip):
        return (self.seg_base[1] + ip) & self.mode.lmask

    def block_at(self, ip, max_insns=MAX_BLOCK, stop_at=None):
        """The translated block starting at IP `ip` in the current mode (cached)."""
        lin = self.code_linear(ip)
        phys = self.linear_to_phys(lin, ACCESS_FETCH)
        # (with a memory hook, whose callback may read the registers, loops keep
        # them in cpu.regs: see translate._cached_registers)
        hooked = self.mem_hook is not None
        key = (phys, ip, self.seg_base[1], self.mode.key, max_insns, stop_at, hooked)
        blk = self.cache.get(key)
        if blk is None:
            in_page = lin & PAGE_MASK
            limit = PAGE_SIZE - in_page
            self._fetch_fault_at = None
            page_lin = lin - in_page
            code = self._fetch_code(page_lin, PAGE_SIZE + 15)
            if self._fetch_fault_at is not None and len(code) - in_page < 15:
                # the very first instruction runs into a page that cannot be fetched
                if not self._first_insn_fits(code[in_page:], ip):
                    self.linear_to_phys(self._fetch_fault_at, ACCESS_FETCH)
            blk = translate(code, ip - in_page, ip, self.mode, max_insns, ip + limit,
                            self.namespace, stop_at,
                            truncated=self._fetch_fault_at is not None, cache_regs=not hooked)
            last = lin + (blk.end_ip - ip) - 1
            pages = {phys >> PAGE_SHIFT}
            if (last >> PAGE_SHIFT) != (lin >> PAGE_SHIFT):
                pages.add(self.linear_to_phys(last & self.mode.lmask, ACCESS_FETCH) >> PAGE_SHIFT)
            blk.pages = pages
            blk.key = key
            self.cache.put(key, blk, pages)
            self._log_block(blk)
        return blk

    def _fetch_code(self, lin, n):
        """Code bytes from lin on; stops at the page end when the next page cannot be fetched
        (the instruction that crosses into it then faults when it is reached)."""
        first = PAGE_SIZE - (lin & PAGE_MASK)
        phys = self.linear_to_phys(lin, ACCESS_FETCH)
        if n <= first:
            return self.mem.read_bytes(phys, n)
        head = self.mem.read_bytes(phys, first)
        try:
            nxt = self.linear_to_phys((lin + first) & self.mode.lmask, ACCESS_FETCH)
        except GuestFault:
            self._fetch_fault_at = (lin + first) & self.mode.lmask
            return head
        return head + self.mem.read_bytes(nxt, n - first)

    def _first_insn_fits(self, code, ip):
        from decoder import decode_one
        ins = decode_one(code + bytes(15), ip, self.mode.bits)
        return not ins.invalid and ins.length <= len(code)

    def _log_block(self, blk):
        if not self.debug or self.log is None:
            return
        if "in_asm" in self.debug:
            code = b"".join(i.raw for i in blk.insns)
            self.log.write("IN:\n" + "\n".join(
                disassemble(code, blk.start, self.mode.bits)) + "\n\n")
        if "op" in self.debug:
            self.log.write(f"OP (Python for block {blk.start:#x}):\n{blk.source}\n")

    # ---- running -------------------------------------------------------------------
    def run(self, limit, until=None, step_hook=None):
        """Run at most `limit` instructions; stop before executing IP `until`.

        Returns the stop reason: "until", "count", "hlt" or "stop".
        GuestFault propagates with the state precise and self.icount exact.
        """
        done = 0
        self.rep_one = step_hook is not None       # one REP iteration per step, as QEMU
        self.halted = False
        self.stop_requested = False
        self.exit_request = False
        fast = self.fast_blocks
        fast_get = fast.get
        context = (self.seg_base[1], self.mode.key)
        if context != self.fast_context:
            fast.clear()
            self.fast_context = context
        try:
            while done < limit:
                rip = self.rip
                if rip == until:
                    return "until"
                budget = limit - done
                if step_hook is not None:
                    step_hook(rip)
                    if self.stop_requested:
                        return "stop"
                    budget = 1
                try:
                    blk = fast_get(rip)
                    if blk is None:
                        blk = fast[rip] = self.block_at(rip)
                    if blk.n > budget or (until is not None and (
                            (until in blk.ips and until != blk.start)
                            or (blk.loops and until == blk.start))):
                        blk, budget = self._limited_block(blk, rip, budget, until)
                    done += blk.fn(self, budget)
                except RepStep:
                    done += self.fault_count + 1
                    self.fault_count = 0
                    continue
                except GuestFault as fault:
                    done += self.fault_count
                    self.fault_count = 0
                    if fault.next_ip is not None:
                        done += 1                 # a trap: its instruction completed
                    if not self.deliver_exceptions:
                        raise
                    try:
                        self.deliver(fault.vector, fault.error_code, fault.next_ip is not None,
                                     fault.next_ip, fault.cr2)
                    except TripleFault:
                        return "triple-fault"
                    fast_get = self._refresh_fast()
                    continue
                except Exception as exc:
                    done += self.fault_count
                    self.fault_count = 0
                    raise EngineError(
                        f"internal error at {self.rip:#x} while running translated code: "
                        f"{type(exc).__name__}: {exc}") from exc
                if self.exit_request:
                    if self.halted:
                        return "hlt"
                    if self.stop_requested:
                        return "stop"
                    self.exit_request = False
                    fast_get = self._refresh_fast()
            return "until" if self.rip == until else "count"
        finally:
            self.icount += done

    def _refresh_fast(self):
        """The IP -> block dict is only valid for one CS base and mode."""
        context = (self.seg_base[1], self.mode.key)
        if context != self.fast_context:
            self.fast_blocks.clear()
            self.fast_context = context
        return self.fast_blocks.get

    def _limited_block(self, blk, rip, budget, until):
        """A shorter variant of blk that respects the budget and stops before `until`."""
        if blk.n > budget:
            blk = self.block_at(rip, budget)
        if until is not None and until in blk.ips and until != blk.start:
            blk = self.block_at(rip, blk.n, until)
        if blk.loops and until == blk.start:
            budget = blk.n
        return blk, budget
