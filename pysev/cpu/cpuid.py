"""CPU models: what CPUID reports.

Four models, named as QEMU names them:

``qemu64``
    QEMU 7.2's ``qemu64`` exactly as ``qemu-system-x86_64 -machine q35 -accel tcg
    -cpu qemu64`` (one vCPU) reports it, leaf for leaf, so that a trace of a guest
    under pysev can be compared with one taken under QEMU.  The leaves were recorded
    from QEMU itself by ``tools/qemu_cpuid.py``.  The model therefore advertises
    features that pysev does not implement yet (x87, SSE, SVM, ...); they are listed
    in ``unimplemented_features`` and in ``help_text()``.

``EPYC-Milan`` (the default), ``EPYC-Rome``, ``EPYC``
    AMD EPYC processors with the identification of QEMU 7.2's models of the same
    name (vendor, family/model/stepping, brand string, cache and TLB leaves), but
    advertising only the features of QEMU's definition that pysev implements
    (``IMPLEMENTED``), and hardware-like address sizes in leaf 0x80000008.

With SEV on (the ``sev`` argument of ``CpuModel.cpuid``) the maximum extended leaf is
raised to 0x8000001F, as QEMU does, and leaf 0x8000001F describes the SEV guest.

The models describe one vCPU: the topology leaves (1, 0xB, 0x8000001D) report one
thread in one core; only the APIC ID (leaf 1 EBX bits 31:24, leaf 0xB EDX) varies.
"""

EAX, EBX, ECX, EDX = range(4)
M32 = 0xFFFFFFFF

SEV_LEAF = 0x8000001F           # AMD memory encryption leaf; the minimum xlevel with SEV on
QEMU_VERSION = "7.2"            # the QEMU whose models these follow

# ---------------------------------------------------------------------------------------
# Feature bits: (leaf, subleaf or None, register, names of bits 0..31).  Names follow
# QEMU's -cpu property spelling (except "sse3", which QEMU also accepts for "pni");
# None marks a bit without a name here.

def _bits(**named):
    names = [None] * 32
    for name, bit in named.items():
        names[bit] = name.replace("_", "-")
    return tuple(names)


_LEAF1_EDX = ("fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce",
              "cx8", "apic", None, "sep", "mtrr", "pge", "mca", "cmov",
              "pat", "pse36", "pn", "clflush", None, "ds", "acpi", "mmx",
              "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64", "pbe")

# leaf 1 EDX bits that AMD processors repeat in leaf 0x80000001 EDX
AMD_EDX_ALIASES = 0x0183F3FF

_EXT1_EDX = tuple(_LEAF1_EDX[b] if AMD_EDX_ALIASES >> b & 1 else None for b in range(32))
_EXT1_EDX = _EXT1_EDX[:11] + ("syscall",) + _EXT1_EDX[12:]
_EXT1_EDX = tuple(n or dict(nx=20, mmxext=22, fxsr_opt=25, pdpe1gb=26, rdtscp=27, lm=29)
                  .__class__ and n for n in _EXT1_EDX)
_EXT1_EDX = tuple(
    {20: "nx", 22: "mmxext", 25: "fxsr-opt", 26: "pdpe1gb", 27: "rdtscp", 29: "lm",
     30: "3dnowext", 31: "3dnow"}.get(b, _EXT1_EDX[b]) for b in range(32))

FEATURE_WORDS = (
    (0x00000001, None, EDX, _LEAF1_EDX),
    (0x00000001, None, ECX, ("sse3", "pclmulqdq", "dtes64", "monitor", "ds-cpl", "vmx",
                             "smx", "est", "tm2", "ssse3", "cid", None, "fma", "cx16",
                             "xtpr", "pdcm", None, "pcid", "dca", "sse4.1", "sse4.2",
                             "x2apic", "movbe", "popcnt", "tsc-deadline", "aes", "xsave",
                             "osxsave", "avx", "f16c", "rdrand", "hypervisor")),
    (0x00000006, None, EAX, _bits(arat=2)),
    (0x00000007, 0, EBX, ("fsgsbase", "tsc-adjust", "sgx", "bmi1", "hle", "avx2",
                          "fdp-excptn-only", "smep", "bmi2", "erms", "invpcid", "rtm",
                          None, "zero-fcs-fds", "mpx", None, "avx512f", "avx512dq",
                          "rdseed", "adx", "smap", "avx512ifma", "pcommit", "clflushopt",
                          "clwb", "intel-pt", "avx512pf", "avx512er", "avx512cd",
                          "sha-ni", "avx512bw", "avx512vl")),
    (0x00000007, 0, ECX, _bits(avx512vbmi=1, umip=2, pku=3, ospke=4, waitpkg=5,
                               avx512vbmi2=6, gfni=8, vaes=9, vpclmulqdq=10,
                               avx512vnni=11, avx512bitalg=12, avx512_vpopcntdq=14,
                               la57=16, rdpid=22, bus_lock_detect=24, cldemote=25,
                               movdiri=27, movdir64b=28, sgxlc=30, pks=31)),
    (0x00000007, 0, EDX, _bits(avx512_4vnniw=2, avx512_4fmaps=3, fsrm=4, md_clear=10,
                               spec_ctrl=26, stibp=27, arch_capabilities=29, ssbd=31)),
    (0x0000000D, 1, EAX, _bits(xsaveopt=0, xsavec=1, xgetbv1=2, xsaves=3)),
    (0x80000001, None, EDX, _EXT1_EDX),
    (0x80000001, None, ECX, _bits(lahf_lm=0, cmp_legacy=1, svm=2, extapic=3, cr8legacy=4,
                                  abm=5, sse4a=6, misalignsse=7, osvw=9, ibs=10, xop=11,
                                  skinit=12, wdt=13, lwp=15, fma4=16, tce=17,
                                  nodeid_msr=19, tbm=21, topoext=22, perfctr_core=23,
                                  perfctr_nb=24) [:8] + ("3dnowprefetch",)
     + _bits(osvw=9, ibs=10, xop=11, skinit=12, wdt=13, lwp=15, fma4=16, tce=17,
             nodeid_msr=19, tbm=21, topoext=22, perfctr_core=23, perfctr_nb=24)[9:]),
    (0x80000007, None, EDX, _bits(invtsc=8)),
    (0x80000008, None, EBX, _bits(clzero=0, xsaveerptr=2, wbnoinvd=9, ibpb=12, ibrs=14,
                                  amd_stibp=15, amd_ssbd=24, virt_ssbd=25, amd_no_ssb=26)),
    (0x8000000A, None, EDX, _bits(npt=0, lbrv=1, svm_lock=2, nrip_save=3, tsc_scale=4,
                                  vmcb_clean=5, flushbyasid=6, decodeassists=7,
                                  pause_filter=10, pfthreshold=12, avic=13,
                                  v_vmsave_vmload=15, vgif=16, svme_addr_chk=28)),
)
