"""Explain one page walk, level by level, the way the hardware performs it.

    from pysev.teach.walk import explain, format_text
    expl = explain(machine.mem, machine.cpu.cr3, 0xfffff000, machine.cpu.paging)
    print(format_text(expl))

The verdict (physical address, private or shared, or the #PF error code) comes
from :func:`pysev.mem.paging.walk` itself, run on a read-only view of memory so
that no accessed or dirty bit is set; the per-level decoding uses the same
masks of the :class:`~pysev.mem.paging.PagingConfig`.  Explaining a walk never
changes guest memory.
"""

from pysev.mem.paging import (ACCESS_FETCH, ACCESS_READ, ACCESS_WRITE, P, PF_I, PF_P,
                              PF_RSVD, PF_U, PF_W, PS, PageFault, ReadOnlyView,
                              describe_mode, root_and_shifts, walk)

FIELD_NAMES = ("P", "RW", "US", "PWT", "PCD", "A", "D", "PS", "G", "NX")
FIELD_BITS = {"P": 0, "RW": 1, "US": 2, "PWT": 3, "PCD": 4, "A": 5, "D": 6, "PS": 7,
              "G": 8, "NX": 63}
ACCESSES = {"read": ACCESS_READ, "write": ACCESS_WRITE, "fetch": ACCESS_FETCH}
LEVEL_NAMES = {48: "PML5", 39: "PML4", 30: "PDPT", 21: "PD", 12: "PT"}
PAGE_SIZES = {12: "4 KiB", 21: "2 MiB", 22: "4 MiB", 30: "1 GiB"}


class Level:
    """One paging-structure entry the walk read."""

    def __init__(self, name, table, index, entry_addr, entry, width):
        self.name = name                # PML5 PML4 PDPT PD PT, or PDE PTE (32-bit)
        self.table = table              # physical address of the table
        self.index = index              # index into it
        self.entry_addr = entry_addr    # physical address of the entry
        self.entry = entry              # its value
        self.width = width              # entry size in bits: 32 or 64
        self.fields = {name: bool(entry >> bit & 1) for name, bit in FIELD_BITS.items()
                       if bit < width}
        self.frame = 0                  # the next table, or the page frame of a leaf
        self.c_bit = False              # the SEV C-bit is set
        self.reserved_mask = 0          # the bits reserved in this entry
        self.reserved_bits = []         # reserved bits that are set (bit numbers)
        self.leaf = False
        self.page_size = None           # "4 KiB", "2 MiB", ... for a leaf
        self.present = bool(entry & P)

    def __repr__(self):
        return (f"Level({self.name}, entry {self.entry:#x} at {self.entry_addr:#x}"
                f"{', leaf' if self.leaf else ''})")


class WalkExplanation:
    """The paging mode, the levels read and the outcome of one walk."""

    def __init__(self, va, cr3, cfg, access, user):
        self.va, self.cr3, self.cfg, self.access, self.user = va, cr3, cfg, access, user
        self.mode = describe_mode(cfg.levels)
        self.levels = []
        self.c_bit_pos = cfg.c_bit.bit_length() - 1 if getattr(cfg, "c_bit", 0) else None
        self.phys_bits = cfg.phys_bits
        self.usable_bits = getattr(cfg, "usable_bits", cfg.phys_bits)
        self.physical = None            # the final physical address, when the walk succeeds
        self.private = False            # the leaf has the C-bit
        self.fault = None               # "#PF" or "#GP" when the walk faults
        self.error_code = None
        self.reason = None              # which check failed
        self.failed_level = None        # the name of the level where it failed, if any

    @property
    def ok(self):
        return self.fault is None


def _bits(mask):
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


def _decode_32(mem, cr3, va, cfg, levels):
    va &= 0xFFFFFFFF
    table = cr3 & 0xFFFFF000
    index = va >> 22
    pde = Level("PDE", table, index, table + index * 4, mem.read(table + index * 4, 4), 32)
    levels.append(pde)
    if not pde.present:
        return
    if pde.entry & PS and cfg.pse:
        extra = max(cfg.phys_bits - 32, 0)
        pde.reserved_mask = (1 << 21) | ((0xFF & ~((1 << extra) - 1)) << 13)
        pde.reserved_bits = _bits(pde.entry & pde.reserved_mask)
        pde.leaf, pde.page_size = True, PAGE_SIZES[22]
        pde.frame = (((pde.entry >> 13) & 0xFF) << 32) | (pde.entry & 0xFFC00000)
        return
    pde.frame = pde.entry & 0xFFFFF000
    index = (va >> 12) & 0x3FF
    addr = pde.frame + index * 4
    pte = Level("PTE", pde.frame, index, addr, mem.read(addr, 4), 32)
    levels.append(pte)
    pte.frame = pte.entry & 0xFFFFF000
    pte.leaf, pte.page_size = True, PAGE_SIZES[12]


def _decode_64(mem, cr3, va, cfg, levels):
    table, shifts = root_and_shifts(cr3, cfg)
    for shift in shifts:
        pae_pdpte = cfg.levels == 3 and shift == 30
        index = (va >> 30) & 3 if pae_pdpte else (va >> shift) & 0x1FF
        addr = table + index * 8
        entry = mem.read(addr, 8)
        lvl = Level(LEVEL_NAMES[shift], table, index, addr, entry, 64)
        levels.append(lvl)
        lvl.c_bit = bool(entry & cfg.c_bit)
        lvl.frame = entry & cfg.frame
        if pae_pdpte:
            rsvd = cfg.pdpte_reserved
        else:
            top = shift >= 39
            rsvd = cfg.pml4_reserved if top else cfg.reserved
            lvl.leaf = shift == 12 or bool(not top and entry & PS
                                           and (shift == 21 or cfg.pdpte_1g_ok))
            if shift == 30 and entry & PS and not cfg.pdpte_1g_ok:
                rsvd |= PS
            if lvl.leaf and shift != 12:
                rsvd |= cfg.large_reserved[shift]
                lvl.frame &= ~((1 << shift) - 1)
        lvl.reserved_mask = rsvd
        if lvl.leaf:
            lvl.page_size = PAGE_SIZES[shift]
        if not lvl.present:
            lvl.leaf, lvl.page_size = False, None
            return
        lvl.reserved_bits = _bits(entry & rsvd)
        if lvl.reserved_bits or lvl.leaf:
            return
        table = lvl.frame


def explain(mem, cr3, va, cfg, access="read", user=False, ac=False):
    """Explain the walk of linear address *va* under CR3 *cr3* and paging config *cfg*.

    access: "read", "write" or "fetch"; user: a CPL-3 access; ac: EFLAGS.AC.
    Returns a :class:`WalkExplanation`; guest memory is never written.  Raises
    ValueError for an unknown access or a VA that *cfg*'s mode cannot have (above 4 GiB
    outside long mode).
    """
    if access not in ACCESSES:
        raise ValueError(f"access must be one of {', '.join(ACCESSES)}, not {access!r}")
    if not 0 <= va < 1 << 64:
        raise ValueError(f"VA {va:#x} is not a 64-bit address")
    if cfg.levels < 4 and va >> 32:
        # outside long mode linear addresses have 32 bits: explaining va & 0xffffffff
        # under va's name would show a walk the guest never makes for va
        mode = f"{describe_mode(cfg.levels)} paging" if cfg.levels else "paging off"
        raise ValueError(f"VA {va:#x} does not fit in 32 bits: with {mode} (not long mode) "
                         "linear addresses are 32-bit")
    expl = WalkExplanation(va, cr3, cfg, access, user)
    if not cfg.levels:
        expl.physical = va & 0xFFFFFFFF
        return expl
    if cfg.levels >= 4:
        top = va >> (56 if cfg.levels == 5 else 47)
        if top and top != (1 << (8 if cfg.levels == 5 else 17)) - 1:
            expl.fault, expl.error_code = "#GP", 0
            expl.reason = "non-canonical address: no walk takes place"
            return expl
    view = ReadOnlyView(mem)
    if cfg.levels == 2:
        _decode_32(view, cr3, va, cfg, expl.levels)
    else:
        _decode_64(view, cr3, va, cfg, expl.levels)
    try:
        phys, private, _glob = walk(view, cr3, va, ACCESSES[access], user, cfg, ac)
    except PageFault as pf:
        expl.fault, expl.error_code = "#PF", pf.error_code
        last = expl.levels[-1] if expl.levels else None
        if last is not None:
            expl.failed_level = last.name
        if last is not None and not last.present:
            expl.reason = f"{last.name} entry not present (P=0)"
        elif last is not None and last.reserved_bits:
            bits = ", ".join(str(b) for b in last.reserved_bits)
            s = "s" if len(last.reserved_bits) > 1 else ""
            expl.reason = f"reserved bit{s} {bits} set in the {last.name} entry"
        else:
            expl.reason = pf.reason
        return expl
    expl.physical, expl.private = phys, private
    return expl


def error_code_text(code):
    """The #PF error code's bits by name, e.g. "P|W|RSVD"."""
    names = [n for bit, n in ((PF_P, "P"), (PF_W, "W"), (PF_U, "U"), (PF_RSVD, "RSVD"),
                              (PF_I, "I")) if code & bit]
    return "|".join(names) if names else "not-present, read, supervisor"


def _hex(value, width):
    return f"{value:#0{width // 4 + 2}x}"


def format_text(expl):
    """A readable multi-line account of the walk."""
    who = "user" if expl.user else "supervisor"
    mode = f"{expl.mode} paging" if expl.cfg.levels else "paging off"
    out = [f"{mode}, CR3 {expl.cr3:#x}, VA {expl.va:#x} ({expl.access}, {who})"]
    if not expl.cfg.levels:
        out.append(f"-> physical {expl.physical:#x} (paging off: physical = linear)")
        return "\n".join(out)
    if expl.c_bit_pos is not None:
        out.append(f"SEV: C-bit {expl.c_bit_pos}, physical address bits "
                   f"{expl.usable_bits} usable of {expl.phys_bits}")
    for lvl in expl.levels:
        out.append(f"{lvl.name}: table {lvl.table:#x} index {lvl.index} -> entry at "
                   f"{lvl.entry_addr:#x} = {_hex(lvl.entry, lvl.width)}")
        out.append("    " + " ".join(f"{n}={int(v)}" for n, v in lvl.fields.items()))
        if not lvl.present:
            out.append("    not present: the walk stops here")
            continue
        what = f"page frame {lvl.frame:#x} ({lvl.page_size} page)" if lvl.leaf \
            else f"next table {lvl.frame:#x}"
        if expl.c_bit_pos is not None and lvl.width == 64:
            what += f", C-bit {'set (private)' if lvl.c_bit else 'clear (shared)'}"
        out.append("    " + what)
        if lvl.reserved_bits:
            out.append("    ! reserved bits set: " + ", ".join(str(b) for b in lvl.reserved_bits)
                       + " !")
    if expl.fault == "#PF":
        out.append(f"-> #PF error code {expl.error_code:#x} ({error_code_text(expl.error_code)}: "
                   f"{expl.reason})")
    elif expl.fault:
        out.append(f"-> {expl.fault} error code {expl.error_code:#x} ({expl.reason})")
    else:
        out.append(f"-> physical {expl.physical:#x} ({encryption(expl)})")
    return "\n".join(out)


def encryption(expl):
    """How the page a successful walk reached is seen: "private" (the C-bit: encrypted
    with the guest's key), "shared", or, with no C-bit in this paging configuration,
    "no SEV: not encrypted"."""
    if expl.c_bit_pos is None:
        return "no SEV: not encrypted"
    return "private" if expl.private else "shared"
