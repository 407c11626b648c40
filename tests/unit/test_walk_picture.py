"""pysev.teach.picture: one layout of a page walk, drawn as SVG and as PNG (matplotlib)."""

import io
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from pysev.mem.paging import PagingConfig
from pysev.teach.picture import COLORS, Picture, PictureError, Rect, Text, layout
from pysev.teach.png import picture_to_png, render_png
from pysev.teach.svg import render, to_svg
from pysev.teach.walk import explain
from pagetables import memory, put

SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCALE = 2               # wide enough strokes for pixel checks
C51 = 1 << 51


def sev_cfg():
    return PagingConfig(4, phys_bits=48, c_bit=51, reduced_bits=1)


def four_level(mem, c=0):
    """PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000, VA 0x5123 -> 0x5123."""
    put(mem, 0x1000, 0, 0x2003 | c)
    put(mem, 0x2000, 0, 0x3003 | c)
    put(mem, 0x3000, 0, 0x4003 | c)
    put(mem, 0x4000, 5, 0x5003 | c)


def sev_private():
    mem = memory()
    four_level(mem, C51)
    return explain(mem, 0x1000, 0x5123, sev_cfg())


def sev_reserved_fault():
    mem = memory()
    four_level(mem, C51)
    put(mem, 0x3000, 0, 0x4003 | C51 | (1 << 47))       # bit 47: lost to reduced-phys-bits
    return explain(mem, 0x1000, 0x5123, sev_cfg(), access="write")


def paging_32bit_not_present():
    mem = memory()
    put(mem, 0x1000, 0, 0x2003, size=4)
    return explain(mem, 0x1000, 0x5000, PagingConfig(2))


def pae():
    mem = memory()
    put(mem, 0x1020, 2, 0x2001)
    put(mem, 0x2000, 3, 0x3003)
    put(mem, 0x3000, 7, 0x8003)
    va = (2 << 30) | (3 << 21) | (7 << 12) | 0x10
    return explain(mem, 0x1020, va, PagingConfig(3, phys_bits=36), access="write")


CASES = {"sev": sev_private, "fault": sev_reserved_fault, "32bit": paging_32bit_not_present,
         "pae": pae}


@pytest.fixture(scope="module")
def mimage():
    return pytest.importorskip("matplotlib.image")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory, mimage):
    """Per case: the explanation, its layout, the parsed SVG and the PNG's pixels at SCALE."""
    out = {}
    for name, make in CASES.items():
        expl = make()
        path = tmp_path_factory.mktemp("png") / f"{name}.png"
        render_png(expl, path, scale=SCALE)
        out[name] = (expl, layout(expl), ET.fromstring(render(expl)), mimage.imread(path))
    return out


def rgb(color):
    return tuple(int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))


def pixel(img, x, y):
    """The RGB at layout coordinates (x, y)."""
    return tuple(img[int(y * SCALE), int(x * SCALE), :3])


def near(got, color, tol=0.04):
    return all(abs(g - w) <= tol for g, w in zip(got, rgb(color)))


def cells(pic, level_index):
    level = list(pic.groups("level"))[level_index]
    return {r.data["bit"]: r for r in pic.shapes(level.items)
            if isinstance(r, Rect) and "bit" in r.classes}


def level_box(pic, level_index):
    return list(pic.groups("level"))[level_index].items[0]


def centre(rect):
    return rect.x + rect.w / 2, rect.y + rect.h / 2


def svg_cells(root):
    levels = [g for g in root.iter(SVG + "g") if g.get("class") == "level"]
    return [{int(r.get("data-bit")): r for r in g.iter(SVG + "rect")
             if "bit" in (r.get("class") or "").split()} for g in levels]


# ---- the PNG file ----------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 2, 1.5])
@pytest.mark.parametrize("case", list(CASES))
def test_png_size_is_layout_times_scale(case, scale, mimage):
    expl = CASES[case]()
    buf = io.BytesIO()
    render_png(expl, buf, scale=scale)
    data = buf.getvalue()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pic = layout(expl)
    assert pic.width == 960
    assert (width, height) == (round(pic.width * scale), round(pic.height * scale))


def test_png_to_a_path_is_the_same_picture(tmp_path, mimage):
    expl = sev_private()
    buf = io.BytesIO()
    render_png(expl, buf)
    render_png(expl, tmp_path / "walk.png")
    buf.seek(0)
    assert (mimage.imread(tmp_path / "walk.png") == mimage.imread(buf)).all()


def test_bad_scale():
    with pytest.raises(ValueError):
        render_png(sev_private(), io.BytesIO(), scale=0)


# ---- one layout, two backends ----------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_svg_and_png_draw_the_same_cells(case, drawn):
    """Every bit cell of the layout is in the SVG with its fill, and in the PNG in that colour."""
    expl, pic, root, img = drawn[case]
    in_svg = svg_cells(root)
    assert len(in_svg) == len(list(pic.groups("level"))) == len(expl.levels)
    for i, lvl in enumerate(expl.levels):
        laid = cells(pic, i)
        assert sorted(laid) == sorted(in_svg[i]) == list(range(lvl.width))
        for bit, rect in laid.items():
            assert in_svg[i][bit].get("fill") == rect.fill
            assert in_svg[i][bit].get("class") == rect.cls
            assert near(pixel(img, *centre(rect)), rect.fill), (lvl.name, bit)


def test_svg_is_the_layout():
    expl = sev_reserved_fault()
    assert render(expl) == to_svg(layout(expl))


# ---- what the PNG shows ----------------------------------------------------------------

def test_private_leaf_c_bit_is_dark_and_outlined(drawn):
    expl, pic, _root, img = drawn["sev"]
    leaf = len(expl.levels) - 1
    assert expl.levels[leaf].leaf and expl.levels[leaf].c_bit
    cbit = cells(pic, leaf)[51]
    assert cbit.classes == ["bit", "cbit"]
    assert near(pixel(img, *centre(cbit)), COLORS["set"])
    x, y = centre(cbit)
    # the outline sits 2 px outside the cell, above, below and at both sides
    for px, py in ((x, cbit.y - 2), (x, cbit.y + cbit.h + 2), (cbit.x, y),
                   (cbit.x + cbit.w, y)):
        assert near(pixel(img, px, py), COLORS["cbit"], tol=0.08), (px, py)
    # and the neighbours are not outlined
    assert not near(pixel(img, cbit.x - cbit.w / 2, cbit.y - 2), COLORS["cbit"], tol=0.2)


def test_reduced_phys_bits_are_grey_when_clear(drawn):
    expl, pic, _root, img = drawn["sev"]
    assert (expl.usable_bits, expl.phys_bits) == (47, 48)
    for i in range(len(expl.levels)):
        laid = cells(pic, i)
        assert [b for b, r in laid.items() if "reduced" in r.classes] == [47]
        assert near(pixel(img, *centre(laid[47])), COLORS["reduced"])
        assert near(pixel(img, *centre(laid[46])), COLORS["clear"])


def test_reserved_bit_is_red_and_the_walk_ends_in_a_fault(drawn):
    expl, pic, _root, img = drawn["fault"]
    assert expl.failed_level == "PD" and len(expl.levels) == 3
    pd = cells(pic, 2)
    assert pd[47].classes == ["bit", "reduced", "reserved-set"]
    assert near(pixel(img, *centre(pd[47])), COLORS["rsvd"])
    assert not near(pixel(img, *centre(cells(pic, 1)[47])), COLORS["rsvd"], tol=0.2)
    box = level_box(pic, 2)
    assert box.stroke == COLORS["fault"]
    assert near(pixel(img, box.x + 40, box.y), COLORS["fault"], tol=0.1)
    result = next(pic.groups("result"))
    end = result.items[0]
    assert end.stroke == COLORS["fault"] and "RSVD" in result.items[1].s
    assert near(pixel(img, end.x + 40, end.y), COLORS["fault"], tol=0.1)


def test_successful_walk_ends_in_green(drawn):
    _expl, pic, root, img = drawn["sev"]
    end = next(pic.groups("result")).items[0]
    assert near(pixel(img, end.x + 40, end.y), COLORS["ok"], tol=0.1)
    assert "physical 0x5123 (private)" in "".join(
        next(g for g in root.iter(SVG + "g") if g.get("class") == "result").itertext())


@pytest.mark.parametrize("case", ["32bit", "pae"])
def test_no_c_bit_no_orange(case, drawn):
    expl, pic, root, img = drawn[case]
    assert expl.c_bit_pos is None
    assert not [s for s in pic.shapes() if isinstance(s, Rect) and "cbit" in s.cls]
    assert not [r for r in root.iter(SVG + "rect") if "cbit" in (r.get("class") or "")]
    orange = (abs(img[..., :3] - rgb(COLORS["cbit"])) < 0.1).all(axis=-1)
    assert not orange.any()


def test_32bit_strip_and_not_present_end(drawn):
    expl, pic, _root, img = drawn["32bit"]
    assert [lvl.width for lvl in expl.levels] == [32, 32]
    pde = cells(pic, 0)
    assert pde[0].w == pytest.approx(900 / 32)
    assert near(pixel(img, *centre(pde[13])), COLORS["set"])        # next table 0x2000
    assert near(pixel(img, *centre(pde[12])), COLORS["clear"])
    box = level_box(pic, 1)
    assert near(pixel(img, box.x + 40, box.y), COLORS["fault"], tol=0.1)


def test_pae_pdpte_has_64_cells():
    pic = layout(pae())
    assert [g.data["name"] for g in pic.groups("level")] == ["PDPT", "PD", "PT"]
    assert [len(cells(pic, i)) for i in range(3)] == [64, 64, 64]


# ---- without matplotlib ----------------------------------------------------------------

def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    for name in ("matplotlib", "matplotlib.backends.backend_agg", "matplotlib.figure",
                 "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(PictureError, match=r"needs matplotlib.*pysev\[plot\]"):
        picture_to_png(layout(sev_private()), io.BytesIO())
    assert render(sev_private()).startswith("<svg")


def test_svg_path_does_not_import_matplotlib():
    code = ("import sys, pysev, pysev.teach.svg, pysev.teach.png, pysev.teach.picture; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_png_text_is_literal(mimage):
    """A dollar sign is text, not the start of matplotlib's mathtext."""
    pic = Picture(200, 40, [Text(5, 20, r"$\frac{ 0x5000$")])
    buf = io.BytesIO()
    picture_to_png(pic, buf)
    assert buf.getvalue()[:8] == PNG_SIGNATURE
