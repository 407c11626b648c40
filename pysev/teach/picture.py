"""Lay out a :class:`~pysev.teach.walk.WalkExplanation` as drawing primitives.

Each level is a box (top to bottom, joined by arrows) holding the entry and a
bit-layout strip of it: set bits dark, the C-bit outlined in orange, the
reduced-phys-bits range shaded, reserved bits that are set in red.  The last
box says where the walk ended: the physical address, or the fault.

:func:`layout` is the one drawing; :mod:`pysev.teach.svg` and
:mod:`pysev.teach.png` only translate its primitives, so the SVG and the PNG
cannot drift apart.  Coordinates are pixels as in SVG: origin top left, y
down, a text's y is its baseline.
"""

from dataclasses import dataclass, field

from pysev.teach.walk import encryption, error_code_text

WIDTH = 960
MARGIN = 20
BOX_H = 118
GAP = 34
STRIP_Y = 56
CELL_H = 22
COLORS = {"box": "#f4f6fb", "edge": "#44506a", "set": "#2f3b52", "clear": "#ffffff",
          "reduced": "#d9d9d9", "cbit": "#f08c00", "rsvd": "#d62828", "ok": "#2b8a3e",
          "fault": "#c92a2a", "cell-edge": "#888888", "label": "#555555"}


class PictureError(Exception):
    """A picture cannot be produced; str() is a one-line message for the user."""


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str = "none"
    stroke_width: float = 0.0
    rx: float = 0.0
    cls: str = ""               # space-separated, as SVG's class attribute
    data: dict = field(default_factory=dict)    # SVG data-* attributes

    @property
    def classes(self):
        return self.cls.split()


@dataclass
class Text:
    x: float
    y: float
    s: str
    size: float = 13
    anchor: str = "start"       # start, middle or end, as SVG's text-anchor
    weight: str = "normal"
    fill: str = "#111111"


@dataclass
class Arrow:
    x1: float
    y1: float
    x2: float                   # the head is at (x2, y2)
    y2: float
    stroke: str = COLORS["edge"]
    width: float = 2.0


@dataclass
class Group:
    cls: str
    items: list
    data: dict = field(default_factory=dict)


@dataclass
class Picture:
    width: int
    height: int
    items: list

    def shapes(self, items=None):
        """Every primitive but the groups, in drawing order."""
        for item in self.items if items is None else items:
            if isinstance(item, Group):
                yield from self.shapes(item.items)
            else:
                yield item

    def groups(self, cls, items=None):
        """The groups of class *cls*, outermost first."""
        for item in self.items if items is None else items:
            if isinstance(item, Group):
                if item.cls == cls:
                    yield item
                yield from self.groups(cls, item.items)


def _strip(expl, lvl, x, y, width):
    """The bit-layout strip of one entry, bit width-1 on the left."""
    nbits = lvl.width
    cell = width / nbits
    items = []
    # only 64-bit entries can carry SEV's C-bit and lose bits to it
    sev_entry = lvl.width == 64
    reduced = set(range(expl.usable_bits, expl.phys_bits)) if sev_entry else set()
    rsvd_set = set(lvl.reserved_bits)
    for bit in range(nbits - 1, -1, -1):
        cx = x + (nbits - 1 - bit) * cell
        if bit in rsvd_set:
            fill = COLORS["rsvd"]
        elif lvl.entry >> bit & 1:
            fill = COLORS["set"]
        elif bit in reduced:
            fill = COLORS["reduced"]
        else:
            fill = COLORS["clear"]
        cls = ["bit"]
        if bit in reduced:
            cls.append("reduced")
        if expl.c_bit_pos == bit and sev_entry:
            cls.append("cbit")
        if bit in rsvd_set:
            cls.append("reserved-set")
        items.append(Rect(cx, y, cell, CELL_H, fill, COLORS["cell-edge"], 0.4,
                          cls=" ".join(cls), data={"bit": bit}))
    if expl.c_bit_pos is not None and sev_entry:
        cx = x + (nbits - 1 - expl.c_bit_pos) * cell
        items.append(Rect(cx, y - 2, cell, CELL_H + 4, "none", COLORS["cbit"], 2.5,
                          cls="cbit-mark"))
        items.append(Text(cx + cell / 2, y - 5, f"C({expl.c_bit_pos})", 10, "middle", "bold",
                          COLORS["cbit"]))
    labels = {nbits - 1, 0, 12} | ({51} if nbits == 64 else set())
    if reduced:
        labels.add(expl.usable_bits)
    for bit in sorted(labels):
        cx = x + (nbits - 1 - bit) * cell + cell / 2
        items.append(Text(cx, y + CELL_H + 12, str(bit), 9, "middle", fill=COLORS["label"]))
    return Group("bits", items, {"width": nbits})


def _level(expl, lvl, y, inner):
    edge = COLORS["fault"] if (not lvl.present or lvl.reserved_bits) else COLORS["edge"]
    items = [Rect(MARGIN, y, inner, BOX_H, COLORS["box"], edge, 1.5, rx=6)]
    digits = lvl.width // 4
    items.append(Text(MARGIN + 10, y + 20, f"{lvl.name}  table {lvl.table:#x}  index "
                      f"{lvl.index}  entry at {lvl.entry_addr:#x} = "
                      f"{lvl.entry:#0{digits + 2}x}", 13, weight="bold"))
    flags = " ".join(n for n, v in lvl.fields.items() if v) or "(no flags)"
    if not lvl.present:
        what = "not present"
    elif lvl.leaf:
        what = f"leaf: {lvl.page_size} page at {lvl.frame:#x}"
    else:
        what = f"next table {lvl.frame:#x}"
    if expl.c_bit_pos is not None and lvl.width == 64 and lvl.present:
        what += ", C-bit set (private)" if lvl.c_bit else ", C-bit clear (shared)"
    if lvl.reserved_bits:
        what += "; reserved bits set: " + ", ".join(map(str, lvl.reserved_bits))
    items.append(Text(MARGIN + 10, y + 38, f"flags: {flags} | {what}", 12,
                      fill=COLORS["fault"] if lvl.reserved_bits else "#222222"))
    items.append(_strip(expl, lvl, MARGIN + 10, y + STRIP_Y + 8, inner - 20))
    return Group("level", items, {"name": lvl.name, "leaf": int(lvl.leaf)})


def _outcome(expl):
    if expl.fault == "#PF":
        return (f"#PF error code {expl.error_code:#x} ({error_code_text(expl.error_code)}): "
                f"{expl.reason}"), COLORS["fault"]
    if expl.fault:
        return f"{expl.fault}: {expl.reason}", COLORS["fault"]
    return f"physical {expl.physical:#x} ({encryption(expl)})", COLORS["ok"]


def layout(expl):
    """The :class:`Picture` of a walk explanation."""
    n = len(expl.levels)
    height = MARGIN * 2 + 56 + n * (BOX_H + GAP) + 60
    who = "user" if expl.user else "supervisor"
    items = [Rect(0, 0, WIDTH, height, "#ffffff"),
             Text(MARGIN, MARGIN + 14, f"{expl.mode} paging: VA {expl.va:#x}, CR3 "
                  f"{expl.cr3:#x} ({expl.access}, {who})", 16, weight="bold")]
    if not expl.cfg.levels:
        sub = "paging off: physical = linear"
    elif expl.c_bit_pos is not None:
        sub = (f"SEV C-bit {expl.c_bit_pos}; physical bits {expl.usable_bits} usable of "
               f"{expl.phys_bits} (shaded: reduced-phys-bits)")
    else:
        sub = f"physical address bits: {expl.phys_bits}"
    items.append(Text(MARGIN, MARGIN + 36, sub, 12, fill="#444444"))
    y = MARGIN + 56
    inner = WIDTH - 2 * MARGIN
    for lvl in expl.levels:
        items.append(_level(expl, lvl, y, inner))
        y += BOX_H
        items.append(Arrow(WIDTH / 2, y + 2, WIDTH / 2, y + GAP - 4))
        y += GAP
    end, color = _outcome(expl)
    items.append(Group("result", [Rect(MARGIN, y, inner, 40, "#ffffff", color, 2, rx=6),
                                  Text(WIDTH / 2, y + 25, end, 14, "middle", "bold", color)]))
    return Picture(WIDTH, height, items)
