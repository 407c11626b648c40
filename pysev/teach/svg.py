"""Draw a :class:`~pysev.teach.walk.WalkExplanation` as a standalone SVG.

Each level is a box (top to bottom, joined by arrows) holding the entry and a
bit-layout strip of it: set bits dark, the C-bit outlined in orange, the
reduced-phys-bits range shaded, reserved bits that are set in red.  The last
box says where the walk ended: the physical address, or the fault.
"""

from xml.sax.saxutils import escape

from pysev.teach.walk import error_code_text

WIDTH = 960
MARGIN = 20
BOX_H = 118
GAP = 34
STRIP_Y = 56
CELL_H = 22
COLORS = {"box": "#f4f6fb", "edge": "#44506a", "set": "#2f3b52", "clear": "#ffffff",
          "reduced": "#d9d9d9", "cbit": "#f08c00", "rsvd": "#d62828", "ok": "#2b8a3e",
          "fault": "#c92a2a"}


def _text(x, y, s, size=13, anchor="start", weight="normal", fill="#111", family="monospace"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-family="{family}" font-size="{size}" '
            f'text-anchor="{anchor}" font-weight="{weight}" fill="{fill}">{escape(s)}</text>')


def _strip(expl, lvl, x, y, width):
    """The bit-layout strip of one entry, bit width-1 on the left."""
    nbits = lvl.width
    cell = width / nbits
    parts = [f'<g class="bits" data-width="{nbits}">']
    reduced = set(range(expl.usable_bits, expl.phys_bits)) if lvl.width == 64 else set()
    rsvd_set = set(lvl.reserved_bits)
    for bit in range(nbits - 1, -1, -1):
        cx = x + (nbits - 1 - bit) * cell
        is_set = lvl.entry >> bit & 1
        if bit in rsvd_set:
            fill = COLORS["rsvd"]
        elif is_set:
            fill = COLORS["set"]
        elif bit in reduced:
            fill = COLORS["reduced"]
        else:
            fill = COLORS["clear"]
        cls = ["bit"]
        if bit in reduced:
            cls.append("reduced")
        if expl.c_bit_pos == bit and lvl.width == 64:
            cls.append("cbit")
        if bit in rsvd_set:
            cls.append("reserved-set")
        parts.append(f'<rect class="{" ".join(cls)}" data-bit="{bit}" x="{cx:.2f}" y="{y}" '
                     f'width="{cell:.2f}" height="{CELL_H}" fill="{fill}" '
                     f'stroke="#888" stroke-width="0.4"/>')
    if expl.c_bit_pos is not None and lvl.width == 64:
        cx = x + (nbits - 1 - expl.c_bit_pos) * cell
        parts.append(f'<rect class="cbit-mark" x="{cx:.2f}" y="{y - 2}" width="{cell:.2f}" '
                     f'height="{CELL_H + 4}" fill="none" stroke="{COLORS["cbit"]}" '
                     f'stroke-width="2.5"/>')
        parts.append(_text(cx + cell / 2, y - 5, f"C({expl.c_bit_pos})", 10, "middle",
                           "bold", COLORS["cbit"]))
    labels = {nbits - 1, 0, 12} | ({51} if nbits == 64 else set())
    if reduced:
        labels.add(expl.usable_bits)
    for bit in sorted(labels):
        cx = x + (nbits - 1 - bit) * cell + cell / 2
        parts.append(_text(cx, y + CELL_H + 12, str(bit), 9, "middle", fill="#555"))
    parts.append("</g>")
    return parts


def render(expl):
    """The SVG document (a str) of a walk explanation."""
    n = len(expl.levels)
    height = MARGIN * 2 + 56 + n * (BOX_H + GAP) + 60
    who = "user" if expl.user else "supervisor"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
           'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           f'fill="{COLORS["edge"]}"/></marker></defs>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           _text(MARGIN, MARGIN + 14, f"{expl.mode} paging: VA {expl.va:#x}, CR3 {expl.cr3:#x} "
                 f"({expl.access}, {who})", 16, weight="bold")]
    sub = (f"SEV C-bit {expl.c_bit_pos}; physical bits {expl.usable_bits} usable of "
           f"{expl.phys_bits} (shaded: reduced-phys-bits)") if expl.c_bit_pos is not None \
        else f"physical address bits: {expl.phys_bits}"
    if not expl.cfg.levels:
        sub = "paging off: physical = linear"
    out.append(_text(MARGIN, MARGIN + 36, sub, 12, fill="#444"))
    y = MARGIN + 56
    inner = WIDTH - 2 * MARGIN
    for i, lvl in enumerate(expl.levels):
        out.append(f'<g class="level" data-name="{lvl.name}" data-leaf="{int(lvl.leaf)}">')
        edge = COLORS["fault"] if (not lvl.present or lvl.reserved_bits) else COLORS["edge"]
        out.append(f'<rect x="{MARGIN}" y="{y}" width="{inner}" height="{BOX_H}" rx="6" '
                   f'fill="{COLORS["box"]}" stroke="{edge}" stroke-width="1.5"/>')
        digits = lvl.width // 4
        out.append(_text(MARGIN + 10, y + 20, f"{lvl.name}  table {lvl.table:#x}  index "
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
        out.append(_text(MARGIN + 10, y + 38, f"flags: {flags} | {what}", 12,
                         fill=COLORS["fault"] if lvl.reserved_bits else "#222"))
        out += _strip(expl, lvl, MARGIN + 10, y + STRIP_Y + 8, inner - 20)
        out.append("</g>")
        y += BOX_H
        out.append(f'<line x1="{WIDTH / 2}" y1="{y + 2}" x2="{WIDTH / 2}" y2="{y + GAP - 4}" '
                   f'stroke="{COLORS["edge"]}" stroke-width="2" marker-end="url(#arrow)"/>')
        y += GAP
    if expl.fault == "#PF":
        end = (f"#PF error code {expl.error_code:#x} ({error_code_text(expl.error_code)}): "
               f"{expl.reason}")
        color = COLORS["fault"]
    elif expl.fault:
        end, color = f"{expl.fault}: {expl.reason}", COLORS["fault"]
    else:
        end = f"physical {expl.physical:#x} ({'private' if expl.private else 'shared'})"
        color = COLORS["ok"]
    out.append('<g class="result">')
    out.append(f'<rect x="{MARGIN}" y="{y}" width="{inner}" height="40" rx="6" fill="#fff" '
               f'stroke="{color}" stroke-width="2"/>')
    out.append(_text(WIDTH / 2, y + 25, end, 14, "middle", "bold", color))
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
