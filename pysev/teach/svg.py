"""Draw a :class:`~pysev.teach.walk.WalkExplanation` as a standalone SVG.

The drawing itself is :func:`pysev.teach.picture.layout`; this module writes
its primitives as SVG elements, groups as ``<g>`` with their class and data-*
attributes so that a reader (or a test) can find each level and bit.
"""

from xml.sax.saxutils import escape, quoteattr

from pysev.teach.picture import Arrow, Group, Rect, Text, layout


def _num(v):
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _attrs(cls, data):
    out = f" class={quoteattr(cls)}" if cls else ""
    return out + "".join(f" data-{k}={quoteattr(str(v))}" for k, v in data.items())


def _rect(r):
    rx = f' rx="{_num(r.rx)}"' if r.rx else ""
    stroke = (f' stroke="{r.stroke}" stroke-width="{_num(r.stroke_width)}"'
              if r.stroke != "none" else "")
    return (f'<rect{_attrs(r.cls, r.data)} x="{_num(r.x)}" y="{_num(r.y)}" '
            f'width="{_num(r.w)}" height="{_num(r.h)}"{rx} fill="{r.fill}"{stroke}/>')


def _text(t):
    return (f'<text x="{_num(t.x)}" y="{_num(t.y)}" font-family="monospace" '
            f'font-size="{_num(t.size)}" text-anchor="{t.anchor}" font-weight="{t.weight}" '
            f'fill="{t.fill}">{escape(t.s)}</text>')


def _arrow(a, marker):
    return (f'<line x1="{_num(a.x1)}" y1="{_num(a.y1)}" x2="{_num(a.x2)}" y2="{_num(a.y2)}" '
            f'stroke="{a.stroke}" stroke-width="{_num(a.width)}" marker-end="url(#{marker})"/>')


def _marker(mid, color):
    return (f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
            f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{color}"/></marker>')


def _items(items, markers, out):
    for item in items:
        if isinstance(item, Group):
            out.append(f"<g{_attrs(item.cls, item.data)}>")
            _items(item.items, markers, out)
            out.append("</g>")
        elif isinstance(item, Rect):
            out.append(_rect(item))
        elif isinstance(item, Text):
            out.append(_text(item))
        elif isinstance(item, Arrow):
            out.append(_arrow(item, markers[item.stroke]))
        else:
            raise TypeError(f"no SVG for {item!r}")


def to_svg(pic):
    """The SVG document (a str) of a :class:`~pysev.teach.picture.Picture`."""
    # SVG 1.1 markers cannot take the line's colour, so one marker per arrow colour
    markers = {}
    for shape in pic.shapes():
        if isinstance(shape, Arrow) and shape.stroke not in markers:
            markers[shape.stroke] = "arrow" if not markers else f"arrow{len(markers)}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width}" '
           f'height="{pic.height}" viewBox="0 0 {pic.width} {pic.height}">']
    if markers:
        out.append("<defs>" + "".join(_marker(m, c) for c, m in markers.items()) + "</defs>")
    _items(pic.items, markers, out)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render(expl):
    """The SVG document (a str) of a walk explanation."""
    return to_svg(layout(expl))
