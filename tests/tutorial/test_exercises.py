"""Solutions to the exercises of docs/tutorial.md, one test each.

Each test is written to be read by a student who tried the exercise: it sets
up what the exercise describes, then asserts the answer, with the reasoning
in comments.  The tutorial names these functions; test_tutorial.py checks
that the names exist.
"""

import base64
import pathlib

import pytest

from pysev import Machine
from pysev.machine import parse_args
from pysev.mem import PhysMem
from pysev.mem.paging import PF_P, PF_RSVD, PF_U, PF_W, PagingConfig
from pysev.teach.walk import explain, format_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
LESSONCPUID = ROOT / "pysev" / "guests" / "lessoncpuid.bin"
SEVGUEST = ROOT / "pysev" / "guests" / "sevguest.bin"

P, RW, US = 1 << 0, 1 << 1, 1 << 2
C51 = 1 << 51
TIK = bytes(range(16))                      # fixed transport keys: these are tests
TEK = bytes(range(16, 32))


def lesson_tables(c, leaf=None, extra=()):
    """Lesson 2's tables: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000, PT[5]
    maps VA 0x5000 to page 0x7000.  *c* goes into every entry; *leaf* replaces PT[5];
    *extra* is (address, value) pairs written last."""
    mem = PhysMem()
    mem.add_ram(0, 0x100000)
    mem.write(0x1000, 8, 0x2000 | c | RW | P)
    mem.write(0x2000, 8, 0x3000 | c | RW | P)
    mem.write(0x3000, 8, 0x4000 | c | RW | P)
    mem.write(0x4000 + 5 * 8, 8, 0x7000 | c | RW | P if leaf is None else leaf)
    for addr, value in extra:
        mem.write(addr, 8, value)
    return mem


def sev_config(c_bit=51, reduced=1):
    return PagingConfig(4, phys_bits=48, c_bit=c_bit, reduced_bits=reduced)


@pytest.fixture
def key_files(tmp_path):
    (tmp_path / "tik.bin").write_bytes(TIK)
    (tmp_path / "tek.bin").write_bytes(TEK)
    return tmp_path / "tik.bin", tmp_path / "tek.bin"


def run_guest(bios, key_files, cpu="EPYC-Milan", props=""):
    """Run *bios* under sev-emulated to its hlt; returns (machine, COM1 output as text)."""
    tik, tek = key_files
    out = bytearray()
    kwargs = parse_args(["-bios", str(bios), "-cpu", cpu,
                         "-machine", "q35,memory-encryption=sev0",
                         "-object", f"sev-emulated,id=sev0,tik={tik},tek={tek}{props}"]
                        ).machine_kwargs()
    kwargs["serial"] = [out.extend]
    m = Machine(**kwargs)
    assert m.run(max_insns=100_000) == "hlt"
    return m, out.decode()


# ---------------------------------------------------------------------------- exercise 1

def test_make_a_mapping_shared():
    """Clear the C-bit in the *leaf* entry, PT[5], and only there."""
    private = lesson_tables(C51)
    assert explain(private, 0x1000 | C51, 0x5000, sev_config()).private

    shared = lesson_tables(C51, leaf=0x7000 | RW | P)          # PT[5] without the C-bit
    expl = explain(shared, 0x1000 | C51, 0x5000, sev_config())
    assert expl.ok and expl.physical == 0x7000 and not expl.private
    # the tables above stay private: the C-bit is still set in PML4[0], PDPT[0] and PD[0]
    assert [lvl.c_bit for lvl in expl.levels] == [True, True, True, False]
    assert format_text(expl).splitlines()[-2:] == [
        "    page frame 0x7000 (4 KiB page), C-bit clear (shared)",
        "-> physical 0x7000 (shared)"]

    # clearing it one level up, in PD[0], is not the answer: the leaf decides
    not_leaf = lesson_tables(C51, extra=[(0x3000, 0x4000 | RW | P)])
    assert explain(not_leaf, 0x1000 | C51, 0x5000, sev_config()).private


# ---------------------------------------------------------------------------- exercise 2

def guest_registers(out):
    """The CPUID 0x8000001f line of lessoncpuid's output, as {"EAX": int, ...}."""
    line = next(l for l in out.splitlines() if l.startswith("CPUID 0x8000001f:"))
    return {k: int(v, 16) for k, v in (f.split("=") for f in line.split()[2:])}


def test_c_bit_on_epyc_rome(key_files):
    _, out = run_guest(LESSONCPUID, key_files, cpu="EPYC-Rome")
    regs = guest_registers(out)
    assert regs["EAX"] >> 1 & 1 == 1                        # SEV
    # EBX = 0x73: the C-bit position in bits 5:0 (51), reduced-phys-bits in bits 11:6 (1)
    assert regs["EBX"] == 0x73
    assert regs["EBX"] & 0x3F == 51 and regs["EBX"] >> 6 & 0x3F == 1

    # cbitpos=43,reduced-phys-bits=5: EBX = 43 | 5 << 6 = 0x16b
    _, out = run_guest(LESSONCPUID, key_files, cpu="EPYC-Rome",
                       props=",cbitpos=43,reduced-phys-bits=5")
    assert guest_registers(out)["EBX"] == 43 | 5 << 6 == 0x16B


# ---------------------------------------------------------------------------- exercise 3

def test_user_write_to_a_supervisor_page_with_a_reserved_bit():
    """The reserved-bit check comes first: the walk stops at the entry with the reserved
    bit, before any permission is looked at, so the error code is P|W|U|RSVD = 0xf;
    the U/S violation does not show (it has no bit of its own anyway: P|U says it)."""
    user_tables = [(0x1000, 0x2000 | C51 | US | RW | P),          # upper levels allow CPL 3
                   (0x2000, 0x3000 | C51 | US | RW | P),
                   (0x3000, 0x4000 | C51 | US | RW | P)]
    supervisor_leaf = 0x7000 | C51 | RW | P                        # US=0: a supervisor page

    # without the reserved bit: a protection fault, P|W|U = 0x7
    mem = lesson_tables(C51, leaf=supervisor_leaf, extra=user_tables)
    expl = explain(mem, 0x1000 | C51, 0x5000, sev_config(), access="write", user=True)
    assert expl.error_code == PF_P | PF_W | PF_U == 0x7
    assert "user access to a supervisor page" in expl.reason

    # with bit 47 set in the leaf (reserved: one reduced bit): 0xf, at the PT entry
    mem = lesson_tables(C51, leaf=supervisor_leaf | 1 << 47, extra=user_tables)
    expl = explain(mem, 0x1000 | C51, 0x5000, sev_config(), access="write", user=True)
    assert expl.error_code == PF_P | PF_W | PF_U | PF_RSVD == 0xF
    assert expl.failed_level == "PT"
    assert format_text(expl).splitlines()[-1] == \
        "-> #PF error code 0xf (P|W|U|RSVD: reserved bit 47 set in the PT entry)"


# ---------------------------------------------------------------------------- exercise 4

def test_c_bit_47_and_five_reduced_bits():
    cfg = sev_config(c_bit=47, reduced=5)
    # 48 - 5 = 43 usable address bits: a frame uses bits 12 to 42
    assert cfg.usable_bits == 43
    assert cfg.frame == (1 << 43) - 1 & ~0xFFF
    # bits 43 to 51 are reserved except the C-bit, 47
    reserved = [b for b in range(43, 52) if cfg.reserved >> b & 1]
    assert reserved == [43, 44, 45, 46, 48, 49, 50, 51]

    # the walk agrees: bit 42 is an address bit, bit 43 is reserved, bit 47 marks private
    c47 = 1 << 47
    ok = explain(lesson_tables(c47, leaf=1 << 42 | 0x7000 | c47 | RW | P), 0x1000 | c47,
                 0x5000, cfg)
    assert ok.physical == 1 << 42 | 0x7000 and ok.private
    bad = explain(lesson_tables(c47, leaf=1 << 43 | 0x7000 | c47 | RW | P), 0x1000 | c47,
                  0x5000, cfg)
    assert bad.error_code == PF_P | PF_RSVD and bad.levels[-1].reserved_bits == [43]

    # without SEV, bit 47 is below MAXPHYADDR (48): an ordinary address bit, not reserved.
    # The same tables then point 128 TiB higher, and the walk does not fault at all
    off = PagingConfig(4, phys_bits=48)
    assert not off.reserved >> 47 & 1
    expl = explain(lesson_tables(c47), 0x1000, 0x5000, off)
    assert expl.levels[0].frame == c47 | 0x2000            # PML4[0] -> a PDPT at 128 TiB
    assert expl.levels[0].reserved_bits == []


# ---------------------------------------------------------------------------- exercise 5

def test_a_tampered_measurement(key_files, tmp_path, capsys):
    from pysev.cli import main
    from pysev.owner.secret import build_secret_table, inject_arguments, package_secret
    from pysev.qmp import QMPError

    tik, tek = key_files
    host = Machine.from_args(["-bios", str(SEVGUEST), "-serial", "null",
                              "-machine", "q35,memory-encryption=sev0",
                              "-object", f"sev-emulated,id=sev0,tik={tik},tek={tek}"])
    blob = bytearray(base64.b64decode(host.qmp("query-sev-launch-measure")["data"]))
    blob[0] ^= 1                                           # the host flips one bit
    tampered = base64.b64encode(bytes(blob)).decode()

    # the owner's check fails: exit status 1, MISMATCH on stderr
    status = main(["owner", "verify", "--measurement", tampered, "--ovmf", str(SEVGUEST),
                   "--tik", str(tik), "--policy", "0x1", "--api-major", "1",
                   "--api-minor", "55", "--build-id", "0"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert "measurement MISMATCH" in captured.err

    # a secret packaged for the tampered measurement anyway is refused by the firmware:
    # its MAC covers the measurement, and the firmware uses the one it made
    table = build_secret_table([("4d9e6b54-3a7f-4c1e-9b2d-6a0c5e8f1d27", b"passphrase")])
    header, trans = package_secret(bytes(blob[:32]), TIK, TEK, table)
    with pytest.raises(QMPError, match="Bad measurement"):
        host.qmp("sev-inject-launch-secret", **inject_arguments(header, trans, 0x800000))
    assert host.read_phys(0x800000, len(table)) == bytes(len(table))   # nothing written

    # the untampered measurement verifies, and its packet is accepted
    blob[0] ^= 1
    assert main(["owner", "verify", "--measurement", base64.b64encode(bytes(blob)).decode(),
                 "--ovmf", str(SEVGUEST), "--tik", str(tik), "--policy", "0x1",
                 "--api-major", "1", "--api-minor", "55", "--build-id", "0"]) == 0
    assert capsys.readouterr().out == "measurement OK\n"
    header, trans = package_secret(bytes(blob[:32]), TIK, TEK, table)
    host.qmp("sev-inject-launch-secret", **inject_arguments(header, trans, 0x800000))
    assert host.read_phys(0x800000, len(table)) == table


# ---------------------------------------------------------------------------- exercise 6

def test_find_the_cr3_switch_with_snapshots(key_files, tmp_path):
    """Bisect between 12,000 (the snapshot) and 25,172 (the hlt): each probe starts a
    fresh machine from the same file, so every probe sees the same guest."""
    tik, tek = key_files
    kwargs = parse_args(["-bios", str(SEVGUEST), "-seed", "1",
                         "-machine", "q35,memory-encryption=sev0",
                         "-object", f"sev-emulated,id=sev0,tik={tik},tek={tek}"]
                        ).machine_kwargs()
    kwargs["serial"] = "null"
    first = Machine(**kwargs)
    first.run(max_insns=12_000)
    snap = tmp_path / "middle.pysev"
    first.save_snapshot(snap)

    def cr3_after(n):
        m = Machine.load_snapshot(snap, serial="null")
        m.run(max_insns=n - m.icount)
        assert m.icount == n
        return m

    lo, hi = 12_000, 25_172             # no C-bit in CR3 at lo; the guest has switched by hi
    assert not cr3_after(lo).cpu.cr3 >> 51 & 1 and cr3_after(hi).cpu.cr3 >> 51 & 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cr3_after(mid).cpu.cr3 >> 51 & 1:
            hi = mid
        else:
            lo = mid
    assert hi == 24_156                 # the MOV to CR3 is the 24,156th instruction
    before, after = cr3_after(hi - 1), cr3_after(hi)
    assert before.cpu.cr3 == 0x10000 and after.cpu.cr3 == C51 | 0x20000
    # both tables map 0x800000 privately, through different tables
    walks = [explain(m.mem, m.cpu.cr3, 0x800000, m.cpu.paging) for m in (before, after)]
    assert [w.levels[0].table for w in walks] == [0x10000, 0x20000]
    assert all(w.private and w.physical == 0x800000 for w in walks)
