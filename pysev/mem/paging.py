"""The page walk for every x86 paging mode: 32-bit, PAE, 4-level and 5-level.

The walker knows nothing of CPUs or SEV: it is given a PagingConfig whose
integer masks the CPU computes when CR0, CR4, EFER or the physical address
width change (and, under SEV, from the C-bit position and the
reduced-phys-bits).  A walk returns the physical address or raises
PageFault with the error code the guest would see.

Entry layout of 64-bit paging entries (PAE, 4- and 5-level):

   63  62:52 51:M  M-1:12  11:9 8  7  6  5  4   3   2   1   0
   NX  avail  rsvd  frame   avl G  PS D  A  PCD PWT U/S R/W P

where M is the usable physical-address width (MAXPHYADDR, less
reduced-phys-bits under SEV).  The SEV C-bit sits in the reserved range
but is not reserved: it marks the page private and is no address bit.
"""

P, RW, US, PWT, PCD, A, D, PS, G = (1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4,
                                    1 << 5, 1 << 6, 1 << 7, 1 << 8)
NX = 1 << 63

# #PF error code bits
PF_P, PF_W, PF_U, PF_RSVD, PF_I = 1, 2, 4, 8, 16

ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH = 0, 1, 2


class PageFault(Exception):
    def __init__(self, address, error_code, reason):
        super().__init__(address, error_code)
        self.address, self.error_code, self.reason = address, error_code, reason

    def __str__(self):
        return f"page fault at {self.address:#x} (error code {self.error_code:#x}): {self.reason}"


class PagingConfig:
    """Everything the walk needs, reduced to integers.

    levels: 0 (paging off), 2 (32-bit), 3 (PAE), 4 or 5.
    """
    __slots__ = ("levels", "phys_bits", "usable_bits", "nxe", "wp", "smep", "smap",
                 "pse", "c_bit", "frame", "reserved", "large_reserved", "pdpte_reserved",
                 "fetch_code_bit", "pml4_reserved", "pdpte_1g_ok")

    def __init__(self, levels, phys_bits=48, nxe=False, wp=False, smep=False, smap=False,
                 pse=False, c_bit=0, reduced_bits=0, gb_pages=True):
        self.levels = levels
        self.phys_bits = phys_bits
        self.nxe, self.wp, self.smep, self.smap, self.pse = nxe, wp, smep, smap, pse
        self.c_bit = (1 << c_bit) if c_bit else 0
        usable = phys_bits - reduced_bits
        self.usable_bits = usable
        above = ((1 << 52) - 1) & ~((1 << usable) - 1)      # bits usable..51
        above &= ~self.c_bit
        self.frame = ((1 << usable) - 1) & ~0xFFF
        self.reserved = above | (0 if nxe else NX)
        # large-page frames must be aligned: the low frame bits (past PAT at bit 12) are reserved
        self.large_reserved = {21: 0x1FE000, 30: 0x3FFFE000}
        # PAE PDPTEs: bits 2:1 and 8:5 reserved, and bit 63
        self.pdpte_reserved = above | 0x1E6 | NX
        # PS is reserved in PML4E/PML5E
        self.pml4_reserved = self.reserved | PS
        self.pdpte_1g_ok = gb_pages
        self.fetch_code_bit = nxe or smep


class ReadOnlyView:
    """Guest memory for a walk that must not change it (debuggers, explainers):
    reads pass through, accessed/dirty updates are dropped."""

    def __init__(self, mem):
        self.mem = mem

    def read(self, addr, size):
        return self.mem.read(addr, size)

    def write(self, addr, size, value):
        pass


def root_and_shifts(cr3, cfg):
    """The top table's address and the linear-address shift of each level (64-bit entries)."""
    if cfg.levels == 3:
        return cr3 & 0xFFFFFFE0, (30, 21, 12)
    shifts = (48, 39, 30, 21, 12) if cfg.levels == 5 else (39, 30, 21, 12)
    return cr3 & cfg.frame, shifts


def walk(mem, cr3, lin, access, user, cfg, ac=False, pscache=None, wok=None):
    """Translate linear address `lin`.

    access: ACCESS_READ/WRITE/FETCH; user: the access is made at CPL 3 (not an
    implicit supervisor access); ac: EFLAGS.AC (SMAP override).
    Returns (physical address, private, global) where private tells whether
    the final entry has the C-bit (always False when no C-bit is configured)
    and global whether it has the G bit.
    Sets accessed and dirty bits on success.

    pscache, a dict the caller empties whenever it flushes its TLB, plays the
    part of the hardware's paging-structure caches in 4- and 5-level paging:
    it remembers, per 2 MiB of linear space, the page table a successful walk
    reached through a non-leaf PDE (with the permissions accumulated on the
    way), so that later misses there read only the PTE.

    wok, a one-element list, receives whether a write to the page would now
    succeed without touching the tables (dirty already, writable for this
    access), so that a read miss may fill the write TLB too.
    """
    if cfg.levels == 2:
        return _walk32(mem, cr3, lin, access, user, cfg, ac)
    write = access == ACCESS_WRITE
    fetch = access == ACCESS_FETCH
    ecode = (PF_W if write else 0) | (PF_U if user else 0) | (
        PF_I if fetch and cfg.fetch_code_bit else 0)
    table, shifts = root_and_shifts(cr3, cfg)
    rw = us = True
    nx = False
    touched = []
    frame = cfg.frame
    upper = None                      # (page table, rw, us, nx) reached through a PDE
    if pscache is not None and cfg.levels >= 4:
        hit = pscache.get(lin >> 21)
        if hit is not None:
            table, rw, us, nx = hit
            shifts = (12,)
    for shift in shifts:
        if cfg.levels == 3 and shift == 30:
            addr = table + ((lin >> 30) & 3) * 8
            entry = mem.read(addr, 8)
            if not entry & P:
                raise PageFault(lin, ecode, "PDPTE not present")
            if entry & cfg.pdpte_reserved:
                raise PageFault(lin, ecode | PF_P | PF_RSVD, "reserved bit set in PDPTE")
            table = entry & frame
            continue
        addr = table + ((lin >> shift) & 0x1FF) * 8
        entry = mem.read(addr, 8)
        if not entry & P:
            raise PageFault(lin, ecode, f"not present at level for bit {shift}")
        top = shift >= 39
        rsvd = cfg.pml4_reserved if top else cfg.reserved
        leaf = shift == 12 or (not top and entry & PS and (shift == 21 or cfg.pdpte_1g_ok))
        if top is False and shift == 30 and entry & PS and not cfg.pdpte_1g_ok:
            rsvd |= PS
        if leaf and shift != 12:
            rsvd |= cfg.large_reserved[shift]
        if entry & rsvd:
            raise PageFault(lin, ecode | PF_P | PF_RSVD, "reserved bit set")
        rw = rw and bool(entry & RW)
        us = us and bool(entry & US)
        nx = nx or bool(entry & NX and cfg.nxe)
        touched.append((addr, entry))
        if leaf:
            _check(lin, access, user, rw, us, nx, cfg, ac, ecode)
            _set_ad(mem, touched, write)
            if upper is not None:
                pscache[lin >> 21] = upper
            if wok is not None:
                wok[0] = bool((write or entry & D) and (rw or (not user and not cfg.wp)))
            size_mask = (1 << shift) - 1
            phys = (entry & frame & ~size_mask) | (lin & size_mask)
            return phys, bool(entry & cfg.c_bit), bool(entry & G)
        table = entry & frame
        if shift == 21 and pscache is not None and cfg.levels >= 4:
            upper = (table, rw, us, nx)
    raise AssertionError("unreachable")          # pragma: no cover


def _walk32(mem, cr3, lin, access, user, cfg, ac):
    write = access == ACCESS_WRITE
    ecode = (PF_W if write else 0) | (PF_U if user else 0) | (
        PF_I if access == ACCESS_FETCH and cfg.smep else 0)
    lin &= 0xFFFFFFFF
    pde_addr = (cr3 & 0xFFFFF000) + ((lin >> 22) << 2)
    pde = mem.read(pde_addr, 4)
    if not pde & P:
        raise PageFault(lin, ecode, "PDE not present")
    if pde & PS and cfg.pse:
        # 4 MiB page; PSE-36 puts physical bits 39:32 in PDE bits 20:13
        high = (pde >> 13) & 0xFF
        rsvd = (1 << 21) | (((1 << 8) - 1) & ~((1 << max(cfg.phys_bits - 32, 0)) - 1)) << 13
        if pde & rsvd:
            raise PageFault(lin, ecode | PF_P | PF_RSVD, "reserved bit set in 4 MiB PDE")
        _check(lin, access, user, bool(pde & RW), bool(pde & US), False, cfg, ac, ecode)
        _set_ad(mem, [(pde_addr, pde)], write, 4)
        return (high << 32) | (pde & 0xFFC00000) | (lin & 0x3FFFFF), False, bool(pde & G)
    pte_addr = (pde & 0xFFFFF000) + (((lin >> 12) & 0x3FF) << 2)
    pte = mem.read(pte_addr, 4)
    if not pte & P:
        raise PageFault(lin, ecode, "PTE not present")
    rw = bool(pde & RW) and bool(pte & RW)
    us = bool(pde & US) and bool(pte & US)
    _check(lin, access, user, rw, us, False, cfg, ac, ecode)
    _set_ad(mem, [(pde_addr, pde), (pte_addr, pte)], write, 4)
    return (pte & 0xFFFFF000) | (lin & 0xFFF), False, bool(pte & G)


def _check(lin, access, user, rw, us, nx, cfg, ac, ecode):
    if access == ACCESS_FETCH:
        if nx:
            raise PageFault(lin, ecode | PF_P, "instruction fetch from a no-execute page")
        if user and not us:
            raise PageFault(lin, ecode | PF_P, "user fetch from a supervisor page")
        if not user and us and cfg.smep:
            raise PageFault(lin, ecode | PF_P, "supervisor fetch from a user page (SMEP)")
        return
    if user:
        if not us:
            raise PageFault(lin, ecode | PF_P, "user access to a supervisor page")
        if access == ACCESS_WRITE and not rw:
            raise PageFault(lin, ecode | PF_P, "user write to a read-only page")
        return
    if us and cfg.smap and not ac:
        raise PageFault(lin, ecode | PF_P, "supervisor access to a user page (SMAP)")
    if access == ACCESS_WRITE and not rw and cfg.wp:
        raise PageFault(lin, ecode | PF_P, "supervisor write to a read-only page (CR0.WP)")


def _set_ad(mem, touched, write, size=8):
    last = len(touched) - 1
    for i, (addr, entry) in enumerate(touched):
        new = entry | A
        if write and i == last:
            new |= D
        if new != entry:
            mem.write(addr, size, new)


def describe_mode(levels):
    return {0: "paging off", 2: "32-bit", 3: "PAE", 4: "4-level", 5: "5-level"}[levels]
