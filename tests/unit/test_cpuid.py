"""CPU models (pysev/cpu/cpuid.py): qemu64 against values recorded from QEMU, the EPYC
models' feature policy, SEV leaf behaviour, names and help."""

import ast
import pathlib
import types

import pytest

from pysev.cpu import cpuid as C
from pysev.cpu.cpuid import MODELS, DEFAULT_MODEL, CpuModel, get_model, cpu_help

ROOT = pathlib.Path(__file__).resolve().parents[2]
EPYC_MODELS = ("EPYC", "EPYC-Rome", "EPYC-Milan")

# Recorded with tools/qemu_cpuid.py from QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18):
# qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64 -smp 1, APIC ID 0.
# (leaf, subleaf) -> (eax, ebx, ecx, edx); the guest tried subleaves 0..63 of each leaf.
QEMU64_RECORDED = {
    (0x00000000, 0): (0x0000000D, 0x68747541, 0x444D4163, 0x69746E65),
    (0x00000001, 0): (0x00060FB1, 0x00000800, 0x80002001, 0x078BFBFD),
    (0x00000001, 7): (0x00060FB1, 0x00000800, 0x80002001, 0x078BFBFD),
    (0x00000005, 0): (0x00000000, 0x00000000, 0x00000003, 0x00000000),
    (0x0000000B, 0): (0x00000000, 0x00000001, 0x00000100, 0x00000000),
    (0x0000000B, 1): (0x00000000, 0x00000001, 0x00000201, 0x00000000),
    (0x0000000B, 2): (0x00000000, 0x00000000, 0x00000002, 0x00000000),
    (0x0000000B, 3): (0x00000000, 0x00000000, 0x00000003, 0x00000000),
    (0x0000000B, 63): (0x00000000, 0x00000000, 0x0000003F, 0x00000000),
    (0x40000000, 0): (0x40000001, 0x54474354, 0x43544743, 0x47435447),
    (0x80000000, 0): (0x8000000A, 0x68747541, 0x444D4163, 0x69746E65),
    (0x80000001, 0): (0x00060FB1, 0x00000000, 0x00000005, 0x2193FBFD),
    (0x80000002, 0): (0x554D4551, 0x72695620, 0x6C617574, 0x55504320),
    (0x80000003, 0): (0x72657620, 0x6E6F6973, 0x352E3220, 0x0000002B),
    (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),
    (0x80000006, 0): (0x00000000, 0x42004200, 0x02008140, 0x00808140),
    (0x80000008, 0): (0x00003028, 0x00000000, 0x00000000, 0x00000000),
    (0x8000000A, 0): (0x00000001, 0x00000010, 0x00000000, 0x00000000),
}
# leaves the same run recorded as all zeros (in range, beyond the maxima, hypervisor range)
QEMU64_RECORDED_ZERO = (
    0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9, 0xA, 0xC, 0xD, 0xE, 0x20000000,
    *range(0x40000001, 0x40000012), 0x40000100, 0x40000101,
    0x80000004, 0x80000007, 0x80000009, 0x8000000B, 0x8000001F, 0x80000020, 0x80000021,
    0xC0000000, 0xC0000001, 0xFFFFFFFF,
)
# -cpu qemu64,xlevel=0x8000001F (what QEMU does to xlevel with SEV): the leaves it adds
QEMU64_XLEVEL_RECORDED = {
    (0x80000000, 0): (0x8000001F, 0x68747541, 0x444D4163, 0x69746E65),
    (0x8000001D, 0): (0x00000121, 0x0040003F, 0x000001FF, 0x00000001),
    (0x8000001D, 1): (0x00000122, 0x0040003F, 0x000001FF, 0x00000001),
    (0x8000001D, 2): (0x00000043, 0x03C0003F, 0x000001FF, 0x00000000),
    (0x8000001D, 3): (0x00000163, 0x03C0003F, 0x00003FFF, 0x00000006),
    (0x8000001D, 4): (0, 0, 0, 0),
    **{(leaf, 0): (0, 0, 0, 0) for leaf in range(0x8000000B, 0x8000001D)},
    (0x8000001E, 0): (0, 0, 0, 0),
}

SEV = {"cbitpos": 51, "reduced_phys_bits": 1}


def regs(model, leaf, subleaf=0, **kw):
    return tuple(model.cpuid(leaf, subleaf, **kw))


# ---- qemu64 is QEMU's ----------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(QEMU64_RECORDED))
def test_qemu64_matches_qemu(key):
    assert regs(MODELS["qemu64"], *key) == QEMU64_RECORDED[key]


@pytest.mark.parametrize("leaf", QEMU64_RECORDED_ZERO)
def test_qemu64_zero_leaves_match_qemu(leaf):
    for sub in (0, 1, 5):
        assert regs(MODELS["qemu64"], leaf, sub) == (0, 0, 0, 0)


def test_qemu64_with_sev_matches_qemu_with_raised_xlevel():
    model = MODELS["qemu64"]
    for (leaf, sub), want in QEMU64_XLEVEL_RECORDED.items():
        assert regs(model, leaf, sub, sev=SEV) == want, hex(leaf)
    # without SEV those leaves are beyond the maximum: QEMU gives leaf 0xD, zeros here
    assert regs(model, 0x8000001D, 0) == (0, 0, 0, 0)


def test_qemu64_identification():
    m = MODELS["qemu64"]
    assert (m.family, m.model, m.stepping) == (15, 107, 1)
    assert m.signature() == 0x00060FB1 == regs(m, 1)[0] == regs(m, 0x80000001)[0]
    assert (m.phys_bits, m.virt_bits) == (40, 48)
    assert regs(m, 0x80000008)[0] == m.phys_bits | m.virt_bits << 8
    hv = regs(m, 0x40000000)                # signature in EBX, ECX, EDX order
    assert b"".join(r.to_bytes(4, "little") for r in hv[1:]) == b"TCGTCGTCGTCG"


def test_qemu64_lists_unimplemented_features():
    m = MODELS["qemu64"]
    missing = m.unimplemented_features
    for name in ("fpu", "mmx", "fxsr", "sse", "sse2", "sse3", "svm"):
        assert name in missing
    for name in C.PLANNED:
        assert name in missing
    for name in ("tsc", "cx8", "cmov", "cx16", "lm", "nx", "syscall", "lahf-lm"):
        assert name not in missing and name in m.features()
    text = m.help_text()
    assert "not implemented" in text
    assert all(name in text.split() for name in missing)


def test_qemu64_out_of_range_rule_is_qemus():
    # QEMU answers a leaf above the maximum with the highest basic leaf; qemu64's leaf
    # 0xD is zero, so check the rule on a model whose highest leaf is not
    table = {0: (2, 0, 0, 0), 2: {0: (0x22, 0, 0, 0), 1: (0x23, 0, 0, 0)},
             0x80000000: (0x80000001, 0, 0, 0)}
    m = CpuModel("t", description="t", vendor="AuthenticAMD", family=6, model=1,
                 stepping=1, brand="t", phys_bits=40, virt_bits=48, level=2,
                 xlevel=0x80000001, table=table, out_of_range="last-basic")
    assert regs(m, 3) == (0x22, 0, 0, 0)
    assert regs(m, 0x80000002, 1) == (0x23, 0, 0, 0)
    assert regs(m, 0xC0000000) == (0x22, 0, 0, 0)


# ---- the EPYC models ---------------------------------------------------------------

@pytest.mark.parametrize("name, fms, sig, brand", [
    ("EPYC", (23, 1, 2), 0x00800F12, "AMD EPYC Processor"),
    ("EPYC-Rome", (23, 49, 0), 0x00830F10, "AMD EPYC-Rome Processor"),
    ("EPYC-Milan", (25, 1, 1), 0x00A00F11, "AMD EPYC-Milan Processor"),
])
def test_epyc_identification(name, fms, sig, brand):
    m = MODELS[name]
    assert (m.family, m.model, m.stepping) == fms
    assert m.signature() == sig == regs(m, 1)[0] == regs(m, 0x80000001)[0]
    assert m.vendor == "AuthenticAMD"
    assert m.description == brand == m.brand
    assert C.decode_brand(regs(m, 0x80000002) + regs(m, 0x80000003)
                          + regs(m, 0x80000004)) == brand
    assert regs(m, 0)[0] == 0xD and regs(m, 0x80000000)[0] == 0x8000001E


def test_epyc_milan_values_recorded_from_qemu():
    # leaves that the default model takes unchanged from QEMU 7.2 -cpu EPYC-Milan
    m = MODELS["EPYC-Milan"]
    assert regs(m, 0x80000002) == (0x20444D41, 0x43595045, 0x6C694D2D, 0x50206E61)
    assert regs(m, 0x80000003) == (0x65636F72, 0x726F7373, 0, 0)
    assert regs(m, 0x80000005) == (0x01FF01FF, 0x01FF01FF, 0x20080140, 0x20080140)
    assert regs(m, 0x80000006) == (0x00000000, 0x42004200, 0x02006140, 0x01008140)
    assert regs(m, 0x8000001D, 3) == (0x00000163, 0x03C0003F, 0x00007FFF, 0x00000006)
    assert regs(m, 0x8000001D, 4) == (0, 0, 0, 0)
    assert regs(m, 0xB, 1) == (0, 1, 0x201, 0)


def test_default_model_is_milan():
    assert DEFAULT_MODEL == "EPYC-Milan"
    assert get_model() is MODELS["EPYC-Milan"]


@pytest.mark.parametrize("name", EPYC_MODELS)
def test_epyc_advertises_only_implemented_features(name):
    m = MODELS[name]
    assert m.unimplemented_features == []
    feats = set(m.features())
    assert feats <= C.IMPLEMENTED
    assert feats <= set(C.QEMU_FEATURES[name])        # a subset of QEMU's definition
    assert not feats & set(C.PLANNED)
    assert "bmi1" not in feats and "movbe" not in feats and "clflush" not in feats
    for name_ in ("lm", "nx", "syscall", "pae", "pse", "pge", "pat", "mtrr", "apic", "tsc",
                  "msr", "cx8", "cmov", "cx16", "popcnt", "abm", "rdrand", "rdseed",
                  "rdtscp", "lahf-lm", "pdpe1gb", "smep", "smap", "sep"):
        assert name_ in feats, name_
    assert "la57" not in feats        # implemented, but no EPYC before Genoa has it
    assert m.help_text().count("not implemented by pysev yet") == 0


@pytest.mark.parametrize("name", EPYC_MODELS)
def test_epyc_register_values(name):
    m = MODELS[name]
    assert regs(m, 1)[2:] == (0xC0802000, 0x0001BB78)          # ECX, EDX
    assert regs(m, 7, 0) == (0, 0x00140080, 0, 0)              # smep rdseed smap
    assert regs(m, 7, 1) == (0, 0, 0, 0)
    assert regs(m, 0x80000001)[2:] == (0x00000021, 0x2C11BB78)
    assert regs(m, 0x80000008) == (0x3030, 0, 0, 0)            # 48 physical, 48 virtual
    assert (m.phys_bits, m.virt_bits) == (48, 48)
    for leaf in (5, 6, 0xD, 0x8000000A, 0x8000001E):
        assert regs(m, leaf) == (0, 0, 0, 0), hex(leaf)


@pytest.mark.parametrize("name", list(MODELS))
def test_amd_alias_bits_agree(name):
    m = MODELS[name]
    assert regs(m, 1)[3] & C.AMD_EDX_ALIASES == regs(m, 0x80000001)[3] & C.AMD_EDX_ALIASES


@pytest.mark.parametrize("name", EPYC_MODELS)
def test_epyc_out_of_range_reads_zero(name):
    m = MODELS[name]
    for leaf in (0xE, 0x20000000, 0x40000000, 0x8000001F, 0x80000020, 0xC0000000,
                 0xFFFFFFFF):
        assert regs(m, leaf) == (0, 0, 0, 0), hex(leaf)


# ---- vendor, brand, APIC ID, inputs ---------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_vendor_strings(name):
    m = MODELS[name]
    assert C.decode_vendor(*regs(m, 0)[1:]) == "AuthenticAMD" == m.vendor
    assert C.decode_vendor(*regs(m, 0x80000000)[1:]) == "AuthenticAMD"


def test_vendor_and_brand_encoding_round_trip():
    assert C.vendor_regs("AuthenticAMD") == (0x68747541, 0x444D4163, 0x69746E65)
    assert C.decode_vendor(*C.vendor_regs("GenuineIntel")) == "GenuineIntel"
    with pytest.raises(ValueError):
        C.vendor_regs("AMD")
    assert C.decode_brand(C.brand_regs("x" * 47)) == "x" * 47
    with pytest.raises(ValueError):
        C.brand_regs("x" * 48)


def test_qemu64_brand_string():
    m = MODELS["qemu64"]
    words = regs(m, 0x80000002) + regs(m, 0x80000003) + regs(m, 0x80000004)
    assert C.decode_brand(words) == "QEMU Virtual CPU version 2.5+" == m.brand


@pytest.mark.parametrize("name", list(MODELS))
def test_apic_id(name):
    m = MODELS[name]
    assert regs(m, 1, apic_id=5)[1] == 0x05000800
    assert regs(m, 1, apic_id=5)[0::2] == regs(m, 1)[0::2]
    for sub in (0, 1, 2):
        assert regs(m, 0xB, sub, apic_id=5)[3] == 5


def test_inputs_are_32_bit():
    m = MODELS["EPYC-Milan"]
    assert regs(m, 1 | 0xABCD << 32) == regs(m, 1)
    assert regs(m, 0xB, 2 | 1 << 40) == regs(m, 0xB, 2)


def test_cpuid_fn_for_the_cpu():
    fn = MODELS["EPYC-Milan"].cpuid_fn(sev=SEV, apic_id=1)
    assert fn(0x80000000, 0)[0] == 0x8000001F
    assert fn(1, 0)[1] >> 24 == 1
    assert fn(0x8000001F, 0) == regs(MODELS["EPYC-Milan"], 0x8000001F, sev=SEV)


# ---- SEV ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_sev_off(name):
    m = MODELS[name]
    assert regs(m, 0x8000001F) == (0, 0, 0, 0)
    assert regs(m, 0x80000000)[0] == m.xlevel < 0x8000001F
    assert m.max_extended_leaf() == m.xlevel
    assert regs(m, 0x8000001F, sev=None) == (0, 0, 0, 0)
    assert regs(m, 0x8000001F, sev=False) == (0, 0, 0, 0)


@pytest.mark.parametrize("name", list(MODELS))
def test_sev_raises_max_extended_leaf(name):
    m = MODELS[name]
    assert regs(m, 0x80000000, sev=SEV)[0] == 0x8000001F
    assert m.max_extended_leaf(SEV) == 0x8000001F
    assert regs(m, 0x80000000, sev=SEV)[1:] == regs(m, 0x80000000)[1:]
    assert regs(m, 0x80000020, sev=SEV) == (0, 0, 0, 0)


def test_sev_does_not_lower_a_higher_max_extended_leaf():
    table = {0: (1, 0, 0, 0), 0x80000000: (0x80000021, 0, 0, 0),
             0x80000021: (0x21, 0, 0, 0)}
    m = CpuModel("t", description="t", vendor="AuthenticAMD", family=25, model=17,
                 stepping=0, brand="t", phys_bits=52, virt_bits=57, level=1,
                 xlevel=0x80000021, table=table)
    assert regs(m, 0x80000000, sev=SEV)[0] == 0x80000021
    assert regs(m, 0x80000021, sev=SEV) == (0x21, 0, 0, 0)
    assert regs(m, 0x8000001F, sev=SEV)[0] == 2


def test_sev_leaf_epyc():
    m = MODELS["EPYC-Milan"]
    assert regs(m, 0x8000001F, sev=SEV) == (0x2, 51 | 1 << 6, 509, 1)
    assert regs(m, 0x8000001F, sev=dict(SEV, es=True)) == (0xA, 51 | 1 << 6, 509, 1)
    assert regs(m, 0x8000001F, sev=dict(SEV, es=True, snp=True))[0] == 0x1A
    assert regs(m, 0x8000001F, sev=dict(SEV, snp=True))[0] == 0x1A
    obj = types.SimpleNamespace(cbitpos=47, reduced_phys_bits=5, es=True, snp=False)
    assert regs(m, 0x8000001F, sev=obj) == (0xA, 47 | 5 << 6, 509, 1)
    # subleaf does not matter
    assert regs(m, 0x8000001F, 3, sev=obj) == regs(m, 0x8000001F, 0, sev=obj)


def test_sev_leaf_qemu64_is_qemus_layout():
    m = MODELS["qemu64"]
    # QEMU fills in EAX and EBX only
    assert regs(m, 0x8000001F, sev=dict(SEV, es=True)) == (0xA, 51 | 1 << 6, 0, 0)


def test_sev_leaf_defaults_and_checks():
    m = MODELS["EPYC-Milan"]
    assert regs(m, 0x8000001F, sev={})[:2] == (0x2, 51 | 1 << 6)
    with pytest.raises(ValueError):
        m.cpuid(0x8000001F, 0, sev={"cbitpos": 64, "reduced_phys_bits": 1})


# ---- names and help ---------------------------------------------------------------------

def test_model_names():
    assert list(MODELS) == ["qemu64", "EPYC", "EPYC-Rome", "EPYC-Milan"]
    for name, m in MODELS.items():
        assert m.name == name and get_model(name) is m
    assert get_model("epyc-milan") is MODELS["EPYC-Milan"]


def test_unknown_model():
    with pytest.raises(ValueError) as err:
        get_model("pentium4")
    msg = str(err.value)
    assert "pentium4" in msg and "unknown CPU model" in msg
    for name in MODELS:
        assert name in msg


def test_cpu_help():
    text = cpu_help()
    for name, m in MODELS.items():
        assert name in text and m.description in text
    default_line = [ln for ln in text.splitlines() if "EPYC-Milan" in ln][0]
    assert "default" in default_line
    qemu64_line = [ln for ln in text.splitlines() if "qemu64" in ln][0]
    assert "not implemented" in qemu64_line
    assert len(text.splitlines()) <= 8


@pytest.mark.parametrize("name", list(MODELS))
def test_help_text(name):
    m = MODELS[name]
    text = m.help_text()
    assert text.startswith(f"{name}: {m.description}")
    assert f"{m.signature():#010x}" in text
    assert f"{m.phys_bits} bits physical" in text


# ---- feature tables -------------------------------------------------------------------

def test_feature_bit_positions():
    assert C.FEATURE_BITS["la57"] == [(7, 0, C.ECX, 16)]
    assert C.FEATURE_BITS["rdseed"] == [(7, 0, C.EBX, 18)]
    assert C.FEATURE_BITS["pdpe1gb"] == [(0x80000001, None, C.EDX, 26)]
    assert C.FEATURE_BITS["abm"] == [(0x80000001, None, C.ECX, 5)]
    assert C.FEATURE_BITS["sep"] == [(1, None, C.EDX, 11)]        # not an AMD alias
    assert sorted(C.FEATURE_BITS["pae"]) == [(1, None, C.EDX, 6), (0x80000001, None, C.EDX, 6)]
    assert C.encode_features(["lm", "nx"]) == {(0x80000001, None, C.EDX): 1 << 29 | 1 << 20}
    with pytest.raises(ValueError):
        C.encode_features(["no-such-feature"])


def test_unnamed_bits_are_reported():
    found = C.decode_features(lambda leaf, sub, reg: 1 << 10 if (leaf, reg) == (1, C.EDX) else 0)
    assert found == ["0x1.0:edx[10]"]


def test_implemented_and_planned_are_known_names():
    assert C.IMPLEMENTED <= set(C.FEATURE_BITS)
    assert set(C.PLANNED) <= set(C.FEATURE_BITS)
    assert not C.IMPLEMENTED & set(C.PLANNED)
    assert "bmi1" not in C.IMPLEMENTED
    for name, feats in C.QEMU_FEATURES.items():
        assert set(feats) <= set(C.FEATURE_BITS), name


def test_module_imports_only_stdlib():
    tree = ast.parse((ROOT / "pysev" / "cpu" / "cpuid.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0] if node.module else "")
    assert names <= {"textwrap"}
