"""pysev.teach: the page-walk explainer (text and SVG) and ``pysev walk``."""

import xml.etree.ElementTree as ET

import pytest

from pysev.mem.paging import PF_P, PF_RSVD, PF_U, PF_W, PagingConfig
from pysev.teach.svg import render
from pysev.teach.walk import explain, format_text
from pagetables import memory, put

C51 = 1 << 51
OVMF = "/usr/share/ovmf/OVMF.fd"
SVG = "{http://www.w3.org/2000/svg}"


def sev_cfg(levels=4):
    return PagingConfig(levels, phys_bits=48, c_bit=51, reduced_bits=1)


def four_level(mem, c=0, leaf_pd=None, leaf_pdpt=None):
    """PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000, VA 0x5123 -> 0x5123."""
    put(mem, 0x1000, 0, 0x2003 | c)
    put(mem, 0x2000, 0, 0x3003 | c if leaf_pdpt is None else leaf_pdpt)
    put(mem, 0x3000, 0, 0x4003 | c if leaf_pd is None else leaf_pd)
    put(mem, 0x4000, 5, 0x5003 | c)


def levels_of(expl):
    return [lvl.name for lvl in expl.levels]


# ---- every mode ------------------------------------------------------------------------

@pytest.mark.parametrize("c", [0, C51])
def test_four_level_4k(c):
    mem = memory()
    four_level(mem, c)
    cfg = sev_cfg() if c else PagingConfig(4, phys_bits=48)
    expl = explain(mem, 0x1000, 0x5123, cfg)
    assert expl.ok and expl.physical == 0x5123 and expl.private == bool(c)
    assert levels_of(expl) == ["PML4", "PDPT", "PD", "PT"]
    pt = expl.levels[-1]
    assert pt.leaf and pt.page_size == "4 KiB" and pt.index == 5
    assert pt.entry_addr == 0x4028 and pt.frame == 0x5000 and pt.c_bit == bool(c)
    assert pt.fields["P"] and pt.fields["RW"] and not pt.fields["US"] and not pt.fields["NX"]
    assert all(not lvl.reserved_bits for lvl in expl.levels)
    assert format_text(expl).splitlines()[-1] == \
        f"-> physical 0x5123 ({'private' if c else 'no SEV: not encrypted'})"


def test_four_level_2m_exact_text():
    mem = memory()
    four_level(mem, C51, leaf_pd=0x200083 | C51)
    expl = explain(mem, 0x1000, 0x2345, sev_cfg())
    assert format_text(expl).splitlines() == [
        "4-level paging, CR3 0x1000, VA 0x2345 (read, supervisor)",
        "SEV: C-bit 51, physical address bits 47 usable of 48",
        "PML4: table 0x1000 index 0 -> entry at 0x1000 = 0x0008000000002003",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=0 D=0 PS=0 G=0 NX=0",
        "    next table 0x2000, C-bit set (private)",
        "PDPT: table 0x2000 index 0 -> entry at 0x2000 = 0x0008000000003003",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=0 D=0 PS=0 G=0 NX=0",
        "    next table 0x3000, C-bit set (private)",
        "PD: table 0x3000 index 0 -> entry at 0x3000 = 0x0008000000200083",
        "    P=1 RW=1 US=0 PWT=0 PCD=0 A=0 D=0 PS=1 G=0 NX=0",
        "    page frame 0x200000 (2 MiB page), C-bit set (private)",
        "-> physical 0x202345 (private)",
    ]


def test_four_level_1g_shared_leaf_under_private_tables():
    mem = memory()
    four_level(mem, C51, leaf_pdpt=0x40000083)
    expl = explain(mem, 0x1000, 0x12345678, sev_cfg())
    assert levels_of(expl) == ["PML4", "PDPT"]
    assert expl.levels[-1].page_size == "1 GiB" and expl.levels[-1].frame == 0x40000000
    assert expl.physical == 0x52345678 and not expl.private
    assert expl.levels[0].c_bit and not expl.levels[1].c_bit


def test_five_level():
    mem = memory()
    va = (3 << 48) | (2 << 39) | (1 << 30) | (4 << 21) | (6 << 12) | 0xABC
    put(mem, 0x1000, 3, 0x2007)
    put(mem, 0x2000, 2, 0x3007)
    put(mem, 0x3000, 1, 0x4007)
    put(mem, 0x4000, 4, 0x5007)
    put(mem, 0x5000, 6, 0x9007 | (1 << 63))
    expl = explain(mem, 0x1000, va, PagingConfig(5, phys_bits=52, nxe=True), user=True)
    assert expl.mode == "5-level" and levels_of(expl) == ["PML5", "PML4", "PDPT", "PD", "PT"]
    assert [lvl.index for lvl in expl.levels] == [3, 2, 1, 4, 6]
    assert expl.physical == 0x9ABC and expl.levels[-1].fields["NX"]


def test_pae():
    mem = memory()
    put(mem, 0x1020, 2, 0x2001)                  # PDPTE: only P (bits 2:1 are reserved)
    put(mem, 0x2000, 3, 0x3003)
    put(mem, 0x3000, 7, 0x8003)
    va = (2 << 30) | (3 << 21) | (7 << 12) | 0x10
    expl = explain(mem, 0x1020, va, PagingConfig(3, phys_bits=36), access="write")
    assert expl.mode == "PAE" and levels_of(expl) == ["PDPT", "PD", "PT"]
    assert expl.levels[0].table == 0x1020 and expl.levels[0].index == 2
    assert expl.physical == 0x8010


def test_pae_pdpte_rw_is_reserved():
    mem = memory()
    put(mem, 0x1000, 0, 0x2003)
    expl = explain(mem, 0x1000, 0x1000, PagingConfig(3, phys_bits=36))
    assert expl.error_code == PF_P | PF_RSVD and expl.levels[0].reserved_bits == [1]


def test_32bit_4m_page_with_pse36():
    mem = memory()
    put(mem, 0x1000, 1, 0x00400083 | (1 << 13), size=4)     # PSE-36: physical bit 32
    expl = explain(mem, 0x1000, 0x00412345, PagingConfig(2, phys_bits=40, pse=True))
    assert expl.mode == "32-bit" and levels_of(expl) == ["PDE"]
    pde = expl.levels[0]
    assert pde.width == 32 and "NX" not in pde.fields and pde.page_size == "4 MiB"
    assert expl.physical == 0x1_0041_2345
    assert "= 0x00402083" in format_text(expl)


def test_32bit_4k_and_pse_off():
    mem = memory()
    put(mem, 0x1000, 1, 0x2083, size=4)          # PS ignored without CR4.PSE
    put(mem, 0x2000, 0x12, 0x7003, size=4)
    expl = explain(mem, 0x1000, 0x00412345, PagingConfig(2, phys_bits=36))
    assert levels_of(expl) == ["PDE", "PTE"] and expl.physical == 0x7345


def test_paging_off():
    expl = explain(memory(), 0, 0x12345, PagingConfig(0))
    assert expl.levels == [] and expl.physical == 0x12345
    assert format_text(expl).splitlines()[-1] == \
        "-> physical 0x12345 (paging off: physical = linear)"


# ---- faults ----------------------------------------------------------------------------

def test_reserved_bit_in_reduced_range():
    mem = memory()
    four_level(mem, C51)
    put(mem, 0x3000, 0, 0x4003 | C51 | (1 << 47))       # bit 47: lost to reduced-phys-bits
    expl = explain(mem, 0x1000, 0x5123, sev_cfg(), access="write")
    assert expl.fault == "#PF" and expl.error_code == PF_P | PF_W | PF_RSVD
    assert expl.failed_level == "PD" and expl.levels[-1].reserved_bits == [47]
    text = format_text(expl).splitlines()
    assert "    ! reserved bits set: 47 !" in text
    assert text[-1] == "-> #PF error code 0xb (P|W|RSVD: reserved bit 47 set in the PD entry)"


def test_c_bit_is_reserved_without_sev():
    mem = memory()
    four_level(mem, C51)
    expl = explain(mem, 0x1000, 0x5123, PagingConfig(4, phys_bits=48))
    assert expl.error_code & PF_RSVD and expl.levels[0].reserved_bits == [51]
    assert expl.levels[0].name == "PML4" and len(expl.levels) == 1


def test_misaligned_2m_frame_is_reserved():
    mem = memory()
    four_level(mem, leaf_pd=0x200083 | (1 << 13))
    expl = explain(mem, 0x1000, 0x5123, PagingConfig(4, phys_bits=48))
    assert expl.levels[-1].reserved_bits == [13] and expl.error_code == PF_P | PF_RSVD


def test_not_present():
    mem = memory()
    four_level(mem)
    expl = explain(mem, 0x1000, 0x6000, PagingConfig(4, phys_bits=48), access="write",
                   user=True)
    assert expl.error_code == PF_W | PF_U and expl.failed_level == "PT"
    assert format_text(expl).splitlines()[-1] == \
        "-> #PF error code 0x6 (W|U: PT entry not present (P=0))"


def test_permission_fault_uses_the_walks_reason():
    mem = memory()
    four_level(mem)
    expl = explain(mem, 0x1000, 0x5000, PagingConfig(4, phys_bits=48), user=True)
    assert expl.error_code == PF_P | PF_U and "supervisor page" in expl.reason


def test_non_canonical():
    expl = explain(memory(), 0x1000, 0x0000_8000_0000_0000, PagingConfig(4))
    assert expl.fault == "#GP" and expl.levels == []


def test_explaining_changes_no_memory():
    mem = memory()
    four_level(mem, C51)
    before = mem.read_bytes(0, 0x6000)
    for access in ("read", "write", "fetch"):
        assert explain(mem, 0x1000, 0x5123, sev_cfg(), access=access).ok
    assert mem.read_bytes(0, 0x6000) == before


# ---- SVG -------------------------------------------------------------------------------

def groups(root, cls):
    return [g for g in root.iter(SVG + "g") if g.get("class") == cls]


def test_svg_levels_and_c_bit():
    mem = memory()
    four_level(mem, C51)
    root = ET.fromstring(render(explain(mem, 0x1000, 0x5123, sev_cfg())))
    assert root.tag == SVG + "svg"
    levels = groups(root, "level")
    assert [g.get("data-name") for g in levels] == ["PML4", "PDPT", "PD", "PT"]
    for g in levels:
        bits = [r for r in g.iter(SVG + "rect") if "bit" in (r.get("class") or "").split()]
        assert len(bits) == 64
        assert [r.get("data-bit") for r in bits if "cbit" in r.get("class").split()] == ["51"]
        assert [r.get("data-bit") for r in bits if "reduced" in r.get("class").split()] == ["47"]
    result = "".join(groups(root, "result")[0].itertext())
    assert "physical 0x5123 (private)" in result


def test_svg_fault_and_32bit():
    mem = memory()
    put(mem, 0x1000, 0, 0x2003, size=4)
    root = ET.fromstring(render(explain(mem, 0x1000, 0x5000, PagingConfig(2))))
    levels = groups(root, "level")
    assert len(levels) == 2
    assert len([r for r in levels[0].iter(SVG + "rect") if r.get("data-bit")]) == 32
    assert "#PF error code 0x0" in "".join(groups(root, "result")[0].itertext())


# ---- pysev walk ------------------------------------------------------------------------

def test_cli_bad_va(capsys):
    from pysev.cli import main
    assert main(["walk", "0xzz", "--bios", "x.fd", "--max-insns", "1"]) == 2
    assert "bad virtual address" in capsys.readouterr().err


def test_cli_ovmf_64bit(tmp_path, capsys):
    from pysev.cli import main
    svg = tmp_path / "walk.svg"
    assert main(["walk", "0xfffff000", "--bios", OVMF, "--max-insns", "27258",
                 "--svg", str(svg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "4-level paging, CR3 0x800000, VA 0xfffff000 (read, supervisor)" in out
    assert "    page frame 0xffe00000 (2 MiB page)" in out
    assert out[-1] == "-> physical 0xfffff000 (no SEV: not encrypted)"
    assert len(groups(ET.parse(svg).getroot(), "level")) == 3
