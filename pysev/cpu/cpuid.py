"""CPU models: what CPUID reports.

Four models, named as QEMU names them:

``qemu64``
    QEMU 7.2's ``qemu64`` exactly as ``qemu-system-x86_64 -machine q35 -accel tcg
    -cpu qemu64`` reports it to one vCPU, leaf for leaf, so that a trace of a guest
    under pysev can be compared with one taken under QEMU.  The leaves were recorded
    from QEMU itself by ``tools/qemu_cpuid.py``.  The model therefore advertises
    features that pysev does not implement yet (x87, SSE, SVM, ...); they are listed
    by ``unimplemented_features`` and ``help_text()``.

``EPYC-Milan`` (the default), ``EPYC-Rome``, ``EPYC``
    AMD EPYC processors with the identification of QEMU 7.2's models of the same
    name (vendor, family/model/stepping, brand string, cache and TLB leaves), but
    advertising only those features of QEMU's definition that pysev implements
    (``IMPLEMENTED``), and hardware-like address sizes in leaf 0x80000008.

With SEV on (the ``sev`` argument of ``CpuModel.cpuid``) the maximum extended leaf is
raised to at least 0x8000001F, as QEMU does, and leaf 0x8000001F describes the SEV
guest; with SEV off that leaf reads as zeros.

The models describe one vCPU: the topology leaves (1, 0xB, 0x8000001D) report one
thread in one core, and only the APIC ID (leaf 1 EBX bits 31:24, leaf 0xB EDX) varies.
"""

import textwrap

EAX, EBX, ECX, EDX = range(4)
M32 = 0xFFFFFFFF
ZERO = (0, 0, 0, 0)

SEV_LEAF = 0x8000001F           # AMD memory encryption leaf; the minimum xlevel with SEV on
QEMU_VERSION = "7.2"            # the QEMU whose models these follow
VENDOR_AMD = "AuthenticAMD"

# ---------------------------------------------------------------------------------------
# Feature bits.  Each word: (leaf, subleaf or None, register, {bit: name}).  Names follow
# QEMU's -cpu property spelling, except "sse3" (QEMU: "pni", which it also accepts as
# "sse3").

_LEAF1_EDX = {0: "fpu", 1: "vme", 2: "de", 3: "pse", 4: "tsc", 5: "msr", 6: "pae",
              7: "mce", 8: "cx8", 9: "apic", 11: "sep", 12: "mtrr", 13: "pge", 14: "mca",
              15: "cmov", 16: "pat", 17: "pse36", 18: "pn", 19: "clflush", 21: "ds",
              22: "acpi", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2", 27: "ss", 28: "ht",
              29: "tm", 30: "ia64", 31: "pbe"}

# the leaf 1 EDX bits that AMD processors repeat in leaf 0x80000001 EDX
AMD_EDX_ALIASES = 0x0183F3FF

FEATURE_WORDS = (
    (0x00000001, None, EDX, _LEAF1_EDX),
    (0x00000001, None, ECX, {
        0: "sse3", 1: "pclmulqdq", 2: "dtes64", 3: "monitor", 4: "ds-cpl", 5: "vmx",
        6: "smx", 7: "est", 8: "tm2", 9: "ssse3", 10: "cid", 12: "fma", 13: "cx16",
        14: "xtpr", 15: "pdcm", 17: "pcid", 18: "dca", 19: "sse4.1", 20: "sse4.2",
        21: "x2apic", 22: "movbe", 23: "popcnt", 24: "tsc-deadline", 25: "aes",
        26: "xsave", 27: "osxsave", 28: "avx", 29: "f16c", 30: "rdrand", 31: "hypervisor"}),
    (0x00000006, None, EAX, {2: "arat"}),
    (0x00000007, 0, EBX, {
        0: "fsgsbase", 1: "tsc-adjust", 2: "sgx", 3: "bmi1", 4: "hle", 5: "avx2",
        6: "fdp-excptn-only", 7: "smep", 8: "bmi2", 9: "erms", 10: "invpcid", 11: "rtm",
        13: "zero-fcs-fds", 14: "mpx", 16: "avx512f", 17: "avx512dq", 18: "rdseed",
        19: "adx", 20: "smap", 21: "avx512ifma", 22: "pcommit", 23: "clflushopt",
        24: "clwb", 25: "intel-pt", 26: "avx512pf", 27: "avx512er", 28: "avx512cd",
        29: "sha-ni", 30: "avx512bw", 31: "avx512vl"}),
    (0x00000007, 0, ECX, {
        1: "avx512vbmi", 2: "umip", 3: "pku", 4: "ospke", 5: "waitpkg", 6: "avx512vbmi2",
        8: "gfni", 9: "vaes", 10: "vpclmulqdq", 11: "avx512vnni", 12: "avx512bitalg",
        14: "avx512-vpopcntdq", 16: "la57", 22: "rdpid", 24: "bus-lock-detect",
        25: "cldemote", 27: "movdiri", 28: "movdir64b", 30: "sgxlc", 31: "pks"}),
    (0x00000007, 0, EDX, {
        2: "avx512-4vnniw", 3: "avx512-4fmaps", 4: "fsrm", 10: "md-clear", 26: "spec-ctrl",
        27: "stibp", 29: "arch-capabilities", 31: "ssbd"}),
    (0x0000000D, 1, EAX, {0: "xsaveopt", 1: "xsavec", 2: "xgetbv1", 3: "xsaves"}),
    (0x80000001, None, EDX, {
        **{b: n for b, n in _LEAF1_EDX.items() if AMD_EDX_ALIASES >> b & 1},
        11: "syscall", 20: "nx", 22: "mmxext", 25: "fxsr-opt", 26: "pdpe1gb", 27: "rdtscp",
        29: "lm", 30: "3dnowext", 31: "3dnow"}),
    (0x80000001, None, ECX, {
        0: "lahf-lm", 1: "cmp-legacy", 2: "svm", 3: "extapic", 4: "cr8legacy", 5: "abm",
        6: "sse4a", 7: "misalignsse", 8: "3dnowprefetch", 9: "osvw", 10: "ibs", 11: "xop",
        12: "skinit", 13: "wdt", 15: "lwp", 16: "fma4", 17: "tce", 19: "nodeid-msr",
        21: "tbm", 22: "topoext", 23: "perfctr-core", 24: "perfctr-nb"}),
    (0x80000007, None, EDX, {8: "invtsc"}),
    (0x80000008, None, EBX, {
        0: "clzero", 2: "xsaveerptr", 9: "wbnoinvd", 12: "ibpb", 14: "ibrs", 15: "amd-stibp",
        24: "amd-ssbd", 25: "virt-ssbd", 26: "amd-no-ssb"}),
    (0x8000000A, None, EDX, {
        0: "npt", 1: "lbrv", 2: "svm-lock", 3: "nrip-save", 4: "tsc-scale", 5: "vmcb-clean",
        6: "flushbyasid", 7: "decodeassists", 10: "pause-filter", 12: "pfthreshold",
        13: "avic", 15: "v-vmsave-vmload", 16: "vgif", 28: "svme-addr-chk"}),
)

# name -> [(leaf, subleaf, register, bit), ...]  (the AMD aliases give some names two places)
FEATURE_BITS = {}
for _leaf, _sub, _reg, _names in FEATURE_WORDS:
    for _bit, _name in _names.items():
        FEATURE_BITS.setdefault(_name, []).append((_leaf, _sub, _reg, _bit))
del _leaf, _sub, _reg, _names, _bit, _name

# ---------------------------------------------------------------------------------------
# What pysev implements, by feature name.  The default models advertise nothing else.
# Not here, on purpose: bmi1 (only TZCNT of BMI1 exists; ANDN, BEXTR, BLSI, BLSMSK and
# BLSR do not), movbe, clflush, and every x87/MMX/SSE/AVX feature (see PLANNED).
# "hypervisor" is informational: it tells the guest it runs in a virtual machine (Linux,
# for one, then does not probe for SME through MSRs that pysev does not model).

IMPLEMENTED = frozenset({
    # leaf 1 EDX
    "pse", "tsc", "msr", "pae", "cx8", "apic", "sep", "mtrr", "pge", "cmov", "pat",
    # leaf 1 ECX
    "cx16", "popcnt", "rdrand", "hypervisor",
    # leaf 7
    "smep", "rdseed", "smap", "la57",
    # leaf 0x80000001
    "syscall", "nx", "pdpe1gb", "rdtscp", "lm", "lahf-lm", "abm",
})

# x87 and SSE: a later issue implements them; until then no default model advertises
# them (qemu64 does, as QEMU does).
PLANNED = ("fpu", "mmx", "fxsr", "sse", "sse2", "sse3")


def encode_features(names):
    """{(leaf, subleaf, register): value} with the bits of *names* set."""
    words = {}
    for name in names:
        if name not in FEATURE_BITS:
            raise ValueError(f"unknown CPUID feature {name!r}")
        for leaf, sub, reg, bit in FEATURE_BITS[name]:
            words[(leaf, sub, reg)] = words.get((leaf, sub, reg), 0) | 1 << bit
    return words


def decode_features(value_of):
    """Names of the feature bits set, in CPUID order, given value_of(leaf, subleaf, reg).

    A bit set without a name here appears as "leaf.sub:reg[bit]", so none hides.
    """
    found = []
    for leaf, sub, reg, names in FEATURE_WORDS:
        value = value_of(leaf, sub, reg)
        for bit in range(32):
            if value >> bit & 1:
                name = names.get(bit) or f"{leaf:#x}.{sub or 0}:e{'abcd'[reg]}x[{bit}]"
                if name not in found:
                    found.append(name)
    return found


def vendor_regs(vendor):
    """(EBX, ECX, EDX) of leaf 0 for a 12-character vendor string (read as EBX, EDX, ECX)."""
    raw = vendor.encode("ascii")
    if len(raw) != 12:
        raise ValueError(f"vendor string must be 12 characters: {vendor!r}")
    ebx, edx, ecx = (int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8))
    return ebx, ecx, edx


def decode_vendor(ebx, ecx, edx):
    """The vendor string of leaf 0 or 0x80000000 from EBX, ECX, EDX.

    (A hypervisor signature at 0x40000000 is stored in EBX, ECX, EDX order instead.)
    """
    return b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode("ascii", "replace")


def brand_regs(brand):
    """The twelve registers of leaves 0x80000002..4 (NUL-padded, at most 47 characters)."""
    raw = brand.encode("ascii")
    if len(raw) > 47:
        raise ValueError(f"brand string longer than 47 characters: {brand!r}")
    raw = raw.ljust(48, b"\0")
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, 48, 4))


def decode_brand(regs):
    """The brand string from the twelve registers of leaves 0x80000002..4."""
    raw = b"".join(r.to_bytes(4, "little") for r in regs)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def signature(family, model, stepping):
    """Leaf 1 EAX for a family/model/stepping, with the extended fields as x86 defines."""
    if family > 0xF:
        eax = 0xF << 8 | (family - 0xF) << 20
    else:
        eax = family << 8
    return eax | (model & 0xF) << 4 | (model >> 4) << 16 | (stepping & 0xF)


def _sev_field(sev, *names, default=None):
    for name in names:
        if isinstance(sev, dict):
            if name in sev:
                return sev[name]
        elif hasattr(sev, name):
            return getattr(sev, name)
    return default


# ---------------------------------------------------------------------------------------

class CpuModel:
    """One CPU model: identification plus a table of leaves.

    table maps leaf -> (eax, ebx, ecx, edx) for a leaf that ignores ECX, or
    leaf -> {subleaf: (eax, ebx, ecx, edx)} for one indexed by ECX (subleaves not
    listed read as zeros).  Leaf 0xB (the topology) and the APIC ID in leaf 1 are
    computed; leaf 0x80000000 EAX and leaf 0x8000001F depend on SEV.

    With SEV on, leaf 0x8000001F reads EAX = SEV (bit 1), SEV-ES (bit 3, also set for
    SNP), SEV-SNP (bit 4); EBX = C-bit position | reduced physical address bits << 6
    (QEMU's layout); ECX = sev_guests, the number of encrypted guests the "hardware"
    supports, and EDX = sev_min_asid, the lowest ASID usable by a SEV (non-ES) guest.
    The EPYC models report 509 and 1 there, as Milan hardware typically does; qemu64
    reports 0 and 0, as QEMU's own leaf does (QEMU fills in only EAX and EBX).

    out_of_range says what a leaf above the maximum (basic or extended) returns:
    "last-basic" is QEMU's (and Intel's) rule, the registers of the highest basic
    leaf; "zero" is AMD hardware's, zeros.  extra_leaves are leaves outside both
    ranges that the model answers anyway (QEMU's hypervisor leaves).
    """

    # Where the C-bit sits and how many address bits SEV takes, when a guest of
    # this model runs with SEV (EPYC parts: bit 51, one bit; the sev-emulated
    # object's cbitpos and reduced-phys-bits override these).
    sev_cbitpos = 51
    sev_reduced_phys_bits = 1

    def __init__(self, name, *, description, vendor, family, model, stepping, brand,
                 phys_bits, virt_bits, level, xlevel, table, out_of_range="zero",
                 extra_leaves=(), qemu_features=None, origin="", sev_guests=509,
                 sev_min_asid=1):
        self.name = name
        self.description = description
        self.vendor = vendor
        self.family = family
        self.model = model
        self.stepping = stepping
        self.brand = brand
        self.phys_bits = phys_bits
        self.virt_bits = virt_bits
        self.level = level
        self.xlevel = xlevel
        self.out_of_range = out_of_range
        self.extra_leaves = frozenset(extra_leaves)
        self.qemu_features = qemu_features      # QEMU's definition, when it differs
        self.origin = origin
        self.sev_guests = sev_guests
        self.sev_min_asid = sev_min_asid
        self._table = dict(table)
        if out_of_range not in ("zero", "last-basic"):
            raise ValueError(f"out_of_range must be 'zero' or 'last-basic': {out_of_range!r}")

    def __repr__(self):
        return f"<CpuModel {self.name}>"

    # -- identification --------------------------------------------------------------

    def signature(self):
        """Leaf 1 EAX: family, model and stepping (also EDX after reset)."""
        return signature(self.family, self.model, self.stepping)

    def features(self):
        """Names of the features the model advertises, in CPUID order."""
        return decode_features(self._word)

    @property
    def unimplemented_features(self):
        """Advertised features that pysev does not implement (empty for the EPYC models)."""
        return [f for f in self.features() if f not in IMPLEMENTED]

    def _word(self, leaf, sub, reg):
        entry = self._table.get(leaf, ZERO)
        if isinstance(entry, dict):
            entry = entry.get(sub or 0, ZERO)
        return entry[reg]

    # -- the instruction -------------------------------------------------------------

    def max_extended_leaf(self, sev=None):
        return max(self.xlevel, SEV_LEAF) if _sev_on(sev) else self.xlevel

    def cpuid(self, leaf, subleaf=0, *, sev=None, apic_id=0):
        """(eax, ebx, ecx, edx) for CPUID with EAX = leaf, ECX = subleaf.

        sev: None or False (SEV off), or an object or dict with cbitpos,
        reduced_phys_bits, es, snp (missing fields default to C-bit 51, 1 reduced
        bit, no ES, no SNP).  apic_id: this vCPU's APIC ID.
        """
        leaf &= M32
        subleaf &= M32
        sev_on = _sev_on(sev)
        xlevel = self.max_extended_leaf(sev)
        if not (leaf <= self.level or 0x80000000 <= leaf <= xlevel
                or leaf in self.extra_leaves):
            if self.out_of_range == "zero":
                return ZERO
            leaf = self.level
        if leaf == 0x80000000:
            return (xlevel,) + self._table[0x80000000][1:]
        if leaf == SEV_LEAF and sev_on:
            return self._sev_leaf(sev)
        if leaf == 0xB:
            # one thread per core, one core per package; QEMU's layout
            apic_id &= M32
            if subleaf == 0:
                return (0, 1, 0x100, apic_id)
            if subleaf == 1:
                return (0, 1, 0x201, apic_id)
            return (0, 0, subleaf & 0xFF, apic_id)
        entry = self._table.get(leaf, ZERO)
        if isinstance(entry, dict):
            entry = entry.get(subleaf, ZERO)
        if leaf == 1:
            eax, ebx, ecx, edx = entry
            return (eax, (ebx & 0x00FFFFFF) | (apic_id & 0xFF) << 24, ecx, edx)
        return entry

    def _sev_leaf(self, sev):
        cbitpos = _sev_field(sev, "cbitpos", "cbit_pos", default=51)
        reduced = _sev_field(sev, "reduced_phys_bits", "reduced-phys-bits", default=1)
        es = bool(_sev_field(sev, "es", "sev_es", default=False))
        snp = bool(_sev_field(sev, "snp", "sev_snp", default=False))
        if not 0 <= cbitpos < 64 or not 0 <= reduced < 64:
            raise ValueError(f"SEV cbitpos {cbitpos} / reduced_phys_bits {reduced} "
                             "out of range 0..63")
        eax = 1 << 1                            # SEV
        if es or snp:                           # SNP guests are SEV-ES guests too
            eax |= 1 << 3
        if snp:
            eax |= 1 << 4
        return (eax, cbitpos | reduced << 6, self.sev_guests, self.sev_min_asid)

    def cpuid_fn(self, *, sev=None, apic_id=0):
        """A (leaf, subleaf) -> registers function for cpu.cpuid_fn."""
        def cpuid_fn(leaf, subleaf):
            return self.cpuid(leaf, subleaf, sev=sev, apic_id=apic_id)
        return cpuid_fn

    # -- help --------------------------------------------------------------------------

    def help_text(self):
        """Several lines describing the model, for `-cpu help` on one model."""
        lines = [
            f"{self.name}: {self.description}",
            f"  vendor {self.vendor}, family {self.family} model {self.model} "
            f"stepping {self.stepping} (signature {self.signature():#010x})",
            f"  brand \"{self.brand}\"",
            f"  address sizes: {self.phys_bits} bits physical, {self.virt_bits} bits virtual",
            f"  leaves 0..{self.level:#x} and 0x80000000..{self.xlevel:#x} "
            f"({SEV_LEAF:#x} with SEV)",
        ]
        if self.origin:
            lines.append(f"  {self.origin}")
        lines += _wrap("features:", self.features())
        missing = self.unimplemented_features
        if missing:
            lines += _wrap("advertised but not implemented by pysev yet:", missing)
        if self.qemu_features is not None:
            left_out = [f for f in self.qemu_features if f not in IMPLEMENTED]
            if left_out:
                lines += _wrap(f"left out of QEMU's {self.name} (not implemented by pysev):",
                               left_out)
        return "\n".join(lines)


def _wrap(title, names, width=92):
    return textwrap.wrap(title + " " + " ".join(names), width=width,
                         initial_indent="  ", subsequent_indent="    ",
                         break_on_hyphens=False, break_long_words=False)


def _sev_on(sev):
    return sev is not None and sev is not False


# ---------------------------------------------------------------------------------------
# qemu64: recorded from QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18) by tools/qemu_cpuid.py,
# -machine q35 -accel tcg -cpu qemu64, one vCPU (APIC ID 0).  Leaves not listed read as
# zeros.  Leaf 0xB is computed (see CpuModel.cpuid); leaf 0x8000001D lies beyond the
# maximum extended leaf (0x8000000A) and shows only when SEV raises it to 0x8000001F (it
# was recorded with -cpu qemu64,xlevel=0x8000001F).  QEMU answers leaves above the
# maximum with the highest basic leaf (0xD), all zeros here, and answers the hypervisor
# leaves 0x40000000 ("TCGTCGTCGTCG") and 0x40000001.

QEMU64_LEAVES = {
    0x00000000: (0x0000000D, 0x68747541, 0x444D4163, 0x69746E65),
    0x00000001: (0x00060FB1, 0x00000800, 0x80002001, 0x078BFBFD),
    0x00000005: (0x00000000, 0x00000000, 0x00000003, 0x00000000),
    0x40000000: (0x40000001, 0x54474354, 0x43544743, 0x47435447),
    0x80000000: (0x8000000A, 0x68747541, 0x444D4163, 0x69746E65),
    0x80000001: (0x00060FB1, 0x00000000, 0x00000005, 0x2193FBFD),
    0x80000002: (0x554D4551, 0x72695620, 0x6C617574, 0x55504320),
    0x80000003: (0x72657620, 0x6E6F6973, 0x352E3220, 0x0000002B),
    0x80000005: (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),
    0x80000006: (0x00000000, 0x42004200, 0x02008140, 0x00808140),
    0x80000008: (0x00003028, 0x00000000, 0x00000000, 0x00000000),
    0x8000000A: (0x00000001, 0x00000010, 0x00000000, 0x00000000),
    0x8000001D: {
        0: (0x00000121, 0x0040003F, 0x000001FF, 0x00000001),
        1: (0x00000122, 0x0040003F, 0x000001FF, 0x00000001),
        2: (0x00000043, 0x03C0003F, 0x000001FF, 0x00000000),
        3: (0x00000163, 0x03C0003F, 0x00003FFF, 0x00000006),
    },
}


def _qemu64():
    return CpuModel(
        "qemu64", description="QEMU Virtual CPU version 2.5+", vendor=VENDOR_AMD,
        family=15, model=107, stepping=1, brand="QEMU Virtual CPU version 2.5+",
        phys_bits=40, virt_bits=48, level=0xD, xlevel=0x8000000A, table=QEMU64_LEAVES,
        out_of_range="last-basic", extra_leaves=(0x40000000, 0x40000001),
        sev_guests=0, sev_min_asid=0,
        origin=f"leaves exactly as QEMU {QEMU_VERSION} gives them under TCG "
               "(-machine q35 -accel tcg -cpu qemu64)")


# ---------------------------------------------------------------------------------------
# EPYC models.  From QEMU 7.2 (target/i386/cpu.c, version 1 of each model, which is what
# -machine q35 picks): family/model/stepping, level 0xD, xlevel 0x8000001E, brand, and
# the cache/TLB leaves 0x80000005, 0x80000006 and 0x8000001D as QEMU reports them to one
# vCPU (recorded with tools/qemu_cpuid.py --cpu NAME).  QEMU_FEATURES is QEMU's feature
# list for the model (what TCG reports plus what it filters out with a warning); the
# models advertise its intersection with IMPLEMENTED.  Differences from QEMU, on purpose:
#   - leaf 0x80000008 reports 48 physical and 48 virtual address bits, as the hardware
#     does (QEMU under TCG reports 40 physical bits);
#   - leaves 5 (MONITOR/MWAIT), 6 (ARAT), 0xD (XSAVE) and 0x8000000A (SVM) read as zeros,
#     their features not being advertised;
#   - leaves above the maximum read as zeros, as on AMD hardware (QEMU repeats leaf 0xD);
#   - no hypervisor leaves at 0x40000000.

_EPYC_BASE = (
    "fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2"
)

QEMU_FEATURES = {
    "EPYC": (
        _EPYC_BASE + " sse3 pclmulqdq monitor ssse3 fma cx16 sse4.1 sse4.2 movbe popcnt aes "
        "xsave avx f16c rdrand hypervisor arat fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap "
        "clflushopt sha-ni xsaveopt xsavec xgetbv1 syscall nx mmxext fxsr-opt pdpe1gb rdtscp "
        "lm lahf-lm svm cr8legacy abm sse4a misalignsse 3dnowprefetch osvw topoext npt "
        "nrip-save"),
    "EPYC-Rome": (
        _EPYC_BASE + " sse3 pclmulqdq monitor ssse3 fma cx16 sse4.1 sse4.2 movbe popcnt aes "
        "xsave avx f16c rdrand hypervisor arat fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap "
        "clflushopt clwb sha-ni umip rdpid xsaveopt xsavec xgetbv1 xsaves syscall nx mmxext "
        "fxsr-opt pdpe1gb rdtscp lm lahf-lm svm cr8legacy abm sse4a misalignsse "
        "3dnowprefetch osvw topoext perfctr-core clzero xsaveerptr wbnoinvd ibpb amd-stibp "
        "npt nrip-save"),
    "EPYC-Milan": (
        _EPYC_BASE + " sse3 pclmulqdq monitor ssse3 fma cx16 pcid sse4.1 sse4.2 movbe popcnt "
        "aes xsave avx f16c rdrand hypervisor arat fsgsbase bmi1 avx2 smep bmi2 erms invpcid "
        "rdseed adx smap clflushopt clwb sha-ni umip pku rdpid fsrm xsaveopt xsavec xgetbv1 "
        "xsaves syscall nx mmxext fxsr-opt pdpe1gb rdtscp lm lahf-lm svm cr8legacy abm "
        "sse4a misalignsse 3dnowprefetch osvw topoext perfctr-core clzero xsaveerptr "
        "wbnoinvd ibpb ibrs amd-stibp amd-ssbd npt nrip-save svme-addr-chk"),
}
QEMU_FEATURES = {k: tuple(v.split()) for k, v in QEMU_FEATURES.items()}

# (family, model, stepping, brand, 0x80000005, 0x80000006, 0x8000001D subleaves 0..3)
_EPYC_IDS = {
    "EPYC": (
        23, 1, 2, "AMD EPYC Processor",
        (0x01FF01FF, 0x01FF01FF, 0x20080140, 0x40040140),
        (0x00000000, 0x42004200, 0x02006140, 0x00408140),
        ((0x00000121, 0x01C0003F, 0x0000003F, 0x00000001),
         (0x00000122, 0x00C0003F, 0x000000FF, 0x00000001),
         (0x00000043, 0x01C0003F, 0x000003FF, 0x00000000),
         (0x00000163, 0x03C0003F, 0x00001FFF, 0x00000006))),
    "EPYC-Rome": (
        23, 49, 0, "AMD EPYC-Rome Processor",
        (0x01FF01FF, 0x01FF01FF, 0x20080140, 0x20080140),
        (0x00000000, 0x42004200, 0x02006140, 0x00808140),
        ((0x00000121, 0x01C0003F, 0x0000003F, 0x00000001),
         (0x00000122, 0x01C0003F, 0x0000003F, 0x00000001),
         (0x00000043, 0x01C0003F, 0x000003FF, 0x00000000),
         (0x00000163, 0x03C0003F, 0x00003FFF, 0x00000006))),
    "EPYC-Milan": (
        25, 1, 1, "AMD EPYC-Milan Processor",
        (0x01FF01FF, 0x01FF01FF, 0x20080140, 0x20080140),
        (0x00000000, 0x42004200, 0x02006140, 0x01008140),
        ((0x00000121, 0x01C0003F, 0x0000003F, 0x00000001),
         (0x00000122, 0x01C0003F, 0x0000003F, 0x00000001),
         (0x00000043, 0x01C0003F, 0x000003FF, 0x00000000),
         (0x00000163, 0x03C0003F, 0x00007FFF, 0x00000006))),
}


def _epyc(name, phys_bits=48, virt_bits=48):
    family, model, stepping, brand, l1, l2, caches = _EPYC_IDS[name]
    qemu = QEMU_FEATURES[name]
    words = encode_features(f for f in qemu if f in IMPLEMENTED)

    def word(leaf, sub, reg):
        return words.get((leaf, sub, reg), 0)

    level, xlevel = 0xD, 0x8000001E
    sig = signature(family, model, stepping)
    ven = vendor_regs(VENDOR_AMD)
    b = brand_regs(brand)
    table = {
        0x00000000: (level,) + ven,
        0x00000001: (sig, 0x00000800, word(1, None, ECX), word(1, None, EDX)),
        0x00000007: {0: (0, word(7, 0, EBX), word(7, 0, ECX), word(7, 0, EDX))},
        0x80000000: (xlevel,) + ven,
        0x80000001: (sig, 0, word(0x80000001, None, ECX), word(0x80000001, None, EDX)),
        0x80000002: b[0:4],
        0x80000003: b[4:8],
        0x80000004: b[8:12],
        0x80000005: l1,
        0x80000006: l2,
        0x80000008: (phys_bits | virt_bits << 8, word(0x80000008, None, EBX), 0, 0),
        0x8000001D: dict(enumerate(caches)),
    }
    return CpuModel(
        name, description=brand, vendor=VENDOR_AMD, family=family, model=model,
        stepping=stepping, brand=brand, phys_bits=phys_bits, virt_bits=virt_bits,
        level=level, xlevel=xlevel, table=table, out_of_range="zero",
        qemu_features=qemu,
        origin=f"identification as QEMU {QEMU_VERSION}'s {name}; advertises only "
               "features pysev implements")


MODELS = {m.name: m for m in (_qemu64(), _epyc("EPYC"), _epyc("EPYC-Rome"),
                              _epyc("EPYC-Milan"))}
DEFAULT_MODEL = "EPYC-Milan"


def get_model(name=None):
    """The model called *name* (QEMU's spelling; case is not significant)."""
    if name is None:
        name = DEFAULT_MODEL
    if name in MODELS:
        return MODELS[name]
    for key, model in MODELS.items():
        if key.lower() == str(name).lower():
            return model
    raise ValueError(f"unknown CPU model {name!r}; available models: "
                     + ", ".join(MODELS) + " (see -cpu help)")


def cpu_help():
    """A short list of the models, like `qemu-system-x86_64 -cpu help`."""
    width = max(len(n) for n in MODELS)
    lines = ["Available CPU models:"]
    for name, model in MODELS.items():
        note = []
        if name == DEFAULT_MODEL:
            note.append("default")
        if model.unimplemented_features:
            note.append(f"QEMU's leaves; {len(model.unimplemented_features)} advertised "
                        "features not implemented")
        suffix = f"  ({'; '.join(note)})" if note else ""
        lines.append(f"  {name:<{width}}  {model.description}{suffix}")
    return "\n".join(lines)
