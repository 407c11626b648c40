"""Guests under sev-emulated: the bundled SEV test guest, Debian's OVMF, and the
CPUID/MSR view a guest gets (issue "SEV emulation", points 3, 4 and 9).

* pysev/guests/sevguest.bin goes through a whole launch as QEMU and a guest
  owner run it: the machine starts in launch-secret, the owner checks the
  launch measurement, builds a secret packet (AES-128-CTR under the TEK, MAC
  under the TIK over the measurement) and injects an efi_secret table at GPA
  0x800000; the guest detects SEV as Linux's sme_enable() does, enters long
  mode, switches to page tables with the C-bit at every level (and in CR3)
  after Linux's sev_verify_cbit() check, and prints the secret.
* /usr/share/ovmf/OVMF.fd (Debian bookworm, edk2 2022.11) runs its reset
  vector to the first 64-bit instruction: its work area records SEV_STATUS
  and its page tables carry the C-bit.
* A tiny real-mode BIOS reads CPUID 0x80000000 / 0x8000001F and SEV_STATUS
  and tries to write SEV_STATUS; with and without SEV.
"""

import base64
import hashlib
import os
import pathlib
import struct
import subprocess
import uuid

import pytest

from pysev import Machine
from pysev.machine import parse_args
from pysev.qmp import QMPError
from pysev.sev import firmware, ovmf

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEVGUEST = ROOT / "pysev" / "guests" / "sevguest.bin"
OVMF = "/usr/share/ovmf/OVMF.fd"
NASM = "nasm"

SECRET_GPA = 0x800000                       # the sevguest convention (see its header)
KERNEL_PT = 0x20000                         # where sevguest builds its C-bit tables
SECRET_ENTRY_GUID = "4d9e6b54-3a7f-4c1e-9b2d-6a0c5e8f1d27"   # any GUID: the guest takes entry 1
GUEST_INSNS = 100_000                       # sevguest needs about 25,000
EPYC_MILAN_XLEVEL = 0x8000001E              # the model's maximum extended leaf without SEV


# ---------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A guest owner's transport keys, in files for -object sev-emulated,tik=,tek=."""
    d = tmp_path_factory.mktemp("keys")
    tik, tek = os.urandom(16), os.urandom(16)
    (d / "tik.bin").write_bytes(tik)
    (d / "tek.bin").write_bytes(tek)
    return {"tik": tik, "tek": tek, "tik_file": str(d / "tik.bin"), "tek_file": str(d / "tek.bin")}


def sev_args(keys, props=""):
    return ["-object", f"sev-emulated,id=sev0,tik={keys['tik_file']},tek={keys['tek_file']}{props}",
            "-machine", "q35,memory-encryption=sev0"]


def make_machine(bios, extra=()):
    """Machine.from_args for -bios *bios* plus *extra*, with COM1 captured: (machine, bytearray)."""
    out = bytearray()
    kwargs = parse_args(["-bios", str(bios), "-no-reboot", *extra]).machine_kwargs()
    kwargs["serial"] = [out.extend]
    return Machine(**kwargs), out


def owner_secret_packet(machine, keys, table):
    """What a guest owner does with the launch measurement: check it, then wrap *table*.

    Returns the sev-inject-launch-secret arguments (without gpa).
    """
    info = machine.qmp("query-sev")
    blob = base64.b64decode(machine.qmp("query-sev-launch-measure")["data"])
    assert len(blob) == 48
    measure, mnonce = blob[:32], blob[32:]
    # the expected measurement: the firmware image is the only LAUNCH_UPDATE_DATA
    digest = hashlib.sha256(pathlib.Path(machine.bios_path).read_bytes()).digest()
    expected = firmware.measurement_hmac(keys["tik"], info["api-major"], info["api-minor"],
                                         info["build-id"], info["policy"], digest, mnonce)
    assert measure == expected, "the launch measurement does not match the image"
    iv = os.urandom(16)
    trans = firmware.aes_ctr(keys["tek"], iv, table)
    mac = firmware.secret_mac(keys["tik"], 0, iv, len(table), trans, measure)
    header = struct.pack("<I", 0) + iv + mac
    return {"packet-header": base64.b64encode(header).decode(),
            "secret": base64.b64encode(trans).decode()}


def lines(out):
    return out.decode("latin-1").splitlines()


def sev_on_lines(cbitpos, reduced, secret_line):
    return ["sevguest: protected mode",
            f"SEV: active, C-bit {cbitpos}, reduced-phys-bits {reduced}",
            "sevguest: long mode",
            "C-bit page tables verified",
            secret_line,
            "sevguest: halt"]


SEV_OFF_LINES = ["sevguest: protected mode",
                 "SEV not active",
                 "sevguest: long mode",
                 "page tables without C-bit loaded",
                 "no secret injected",
                 "sevguest: halt"]


def table_entries(machine, base, count):
    return struct.unpack(f"<{count}Q", machine.read_phys(base, 8 * count))


def identity_tables(machine, base):
    """(PML4E 0, PDPTEs 0-3, the 2048 PDEs) of a sevguest/OVMF-shaped 4 GiB identity map."""
    pml4 = table_entries(machine, base, 512)
    pdpt = table_entries(machine, base + 0x1000, 512)
    pds = table_entries(machine, base + 0x2000, 2048)
    assert all(e == 0 for e in pml4[1:]) and all(e == 0 for e in pdpt[4:])
    return pml4[0], pdpt[:4], pds


# ---------------------------------------------------------------------------- the bundled guest

def test_sevguest_is_a_bios_image():
    image = SEVGUEST.read_bytes()
    assert len(image) == 64 * 1024
    assert image[0xFFF0] in (0xEB, 0xE9), "a jmp at the reset vector (0xFFFFFFF0)"
    src = (ROOT / "pysev" / "guests" / "sevguest.asm").read_text()
    assert "1e74f542-71dd-4d66-963e-ef4287ff173b" in src and "0x800000" in src
    from pysev import guests
    assert "sevguest" in guests.names()


@pytest.mark.parametrize("props,cbitpos,reduced", [
    ("", 51, 1),                                  # the CPU model's defaults (EPYC-Milan)
    (",cbitpos=51,reduced-phys-bits=1", 51, 1),
    (",cbitpos=47,reduced-phys-bits=5", 47, 5),
    (",cbitpos=43,reduced-phys-bits=5", 43, 5),
    (",cbitpos=32,reduced-phys-bits=16", 32, 16),
])
def test_sevguest_launch_with_secret(keys, props, cbitpos, reduced):
    m, out = make_machine(SEVGUEST, sev_args(keys, props))
    info = m.qmp("query-sev")
    assert info["enabled"] is True and info["state"] == "launch-secret"
    table = ovmf.secret_table({SECRET_ENTRY_GUID: b"pysev launch secret\0"})
    m.qmp("sev-inject-launch-secret", **owner_secret_packet(m, keys, table), gpa=SECRET_GPA)
    assert m.read_phys(SECRET_GPA, len(table)) == table
    assert m.qmp("query-sev")["state"] == "launch-secret"

    assert m.run(max_insns=GUEST_INSNS) == "hlt", m.stop_info
    assert m.qmp("query-sev")["state"] == "running"
    assert lines(out) == sev_on_lines(cbitpos, reduced, "secret: pysev launch secret")

    # it kept the new tables: C-bit in CR3 and in every entry it walks
    c = 1 << cbitpos
    assert m.cpu.cr3 == KERNEL_PT | c
    assert m.cpu.mode.long
    pml4e, pdptes, pdes = identity_tables(m, KERNEL_PT)
    assert pml4e & c and all(e & c for e in pdptes) and all(e & c for e in pdes)
    assert pdes[5] & ~0x7F == c | 5 << 21 | 0x80          # 2 MiB page at 10 MiB, C-bit
    assert pdptes[2] & ~0x7F == c | (KERNEL_PT + 0x4000)


def test_sevguest_without_a_secret(keys):
    m, out = make_machine(SEVGUEST, sev_args(keys))
    assert m.run(max_insns=GUEST_INSNS) == "hlt", m.stop_info
    assert lines(out) == sev_on_lines(51, 1, "no secret injected")
    assert m.qmp("query-sev")["state"] == "running"


def test_sevguest_secret_with_a_bad_mac_is_not_written(keys):
    m, out = make_machine(SEVGUEST, sev_args(keys))
    table = ovmf.secret_table({SECRET_ENTRY_GUID: b"forged"})
    args = owner_secret_packet(m, keys, table)
    header = bytearray(base64.b64decode(args["packet-header"]))
    header[20] ^= 1                                         # one MAC bit
    args["packet-header"] = base64.b64encode(bytes(header)).decode()
    with pytest.raises(QMPError):
        m.qmp("sev-inject-launch-secret", **args, gpa=SECRET_GPA)
    assert m.read_phys(SECRET_GPA, len(table)) == bytes(len(table))
    assert m.run(max_insns=GUEST_INSNS) == "hlt", m.stop_info
    assert lines(out)[4] == "no secret injected"


def test_sevguest_secret_after_launch_finish_is_refused(keys):
    m, out = make_machine(SEVGUEST, sev_args(keys))
    args = owner_secret_packet(m, keys, ovmf.secret_table({SECRET_ENTRY_GUID: b"late"}))
    assert m.run(max_insns=GUEST_INSNS) == "hlt"
    with pytest.raises(QMPError, match=r"^SEV: Not in correct state. \(LSECRET\) 3$"):
        m.qmp("sev-inject-launch-secret", **args, gpa=SECRET_GPA)


def test_sevguest_secret_entry_data_length_is_respected(keys):
    """The guest prints the first entry's data only (its length, not the whole table)."""
    m, out = make_machine(SEVGUEST, sev_args(keys))
    table = ovmf.secret_table({SECRET_ENTRY_GUID: b"first", str(uuid.UUID(int=1)): b"second"})
    m.qmp("sev-inject-launch-secret", **owner_secret_packet(m, keys, table), gpa=SECRET_GPA)
    assert m.run(max_insns=GUEST_INSNS) == "hlt", m.stop_info
    assert lines(out)[4] == "secret: first"


def test_sevguest_without_sev():
    m, out = make_machine(SEVGUEST)
    assert m.qmp("query-sev")["enabled"] is False
    assert m.run(max_insns=GUEST_INSNS) == "hlt", m.stop_info
    assert lines(out) == SEV_OFF_LINES
    assert m.cpu.cr3 == KERNEL_PT
    pml4e, pdptes, pdes = identity_tables(m, KERNEL_PT)
    assert all(e >> 32 == 0 for e in (pml4e, *pdptes, *pdes))


def test_c_bit_is_private_with_sev_and_reserved_without(keys):
    """The walk through sevguest's tables: with SEV its C-bit marks the page private;
    without SEV the same bit is a reserved address bit (#PF with RSVD), and the guest's
    next fetch through such an entry faults (it has no IDT: a triple fault)."""
    from pysev.mem.paging import ACCESS_FETCH, PF_P, PF_RSVD, PageFault, walk

    m, _ = make_machine(SEVGUEST, sev_args(keys))
    assert m.run(max_insns=GUEST_INSNS) == "hlt"
    phys, private, _ = walk(m.mem, m.cpu.cr3, 0xFFFF0000, ACCESS_FETCH, False, m.cpu.paging)
    assert (phys, private) == (0xFFFF0000, True)

    m, _ = make_machine(SEVGUEST)
    assert m.run(max_insns=GUEST_INSNS) == "hlt"
    phys, private, _ = walk(m.mem, m.cpu.cr3, 0xFFFF0000, ACCESS_FETCH, False, m.cpu.paging)
    assert (phys, private) == (0xFFFF0000, False)
    pde_addr = KERNEL_PT + 0x2000 + 8 * (0xFFFF0000 >> 21)
    pde = struct.unpack("<Q", m.read_phys(pde_addr, 8))[0]
    m.write_phys(pde_addr, struct.pack("<Q", pde | 1 << 51))
    with pytest.raises(PageFault) as info:
        walk(m.mem, m.cpu.cr3, 0xFFFF0000, ACCESS_FETCH, False, m.cpu.paging)
    assert info.value.error_code & (PF_P | PF_RSVD) == PF_P | PF_RSVD
    m.cpu.flush_tlb(everything=True)
    assert m.run(max_insns=10) == "triple-fault"          # resumes at the jmp after its hlt


def test_cr3_reserved_bits_below_the_c_bit_fault(keys):
    """MOV CR3 in long mode: bits 48..50 (above MAXPHYADDR 48, below C-bit 51) are reserved."""
    from pysev.cpu.faults import GuestFault

    m, _ = make_machine(SEVGUEST, sev_args(keys))
    assert m.run(max_insns=GUEST_INSNS) == "hlt"
    with pytest.raises(GuestFault):
        m.cpu.write_cr(3, KERNEL_PT | 1 << 51 | 1 << 49)


# ---------------------------------------------------------------------------- Debian's OVMF (point 9)

# OVMF's work area (OvmfPkg/Include/WorkArea.h, ResetVector.nasmb of edk2 2022.11):
# PcdOvmfWorkAreaBase = 0x80B000 holds CONFIDENTIAL_COMPUTING_WORK_AREA_HEADER
# {u8 GuestType, u8 Reserved1[3]}; the SEV-ES work area follows at 0x80B004, 25
# bytes that CheckSevFeatures clears: u64 SevStatusMsrValue, u64 RandomData (SEV-ES
# only), u64 EncryptionMask (1 << C-bit), u8 ReceivedVc.
WORK_AREA = 0x80B000
WORK_AREA_LEN = 4 + 25
GUEST_TYPE_AMD_SEV = 1
OVMF_PT = 0x800000                           # PcdOvmfSecPageTablesBase
OVMF_FIRST_64BIT_RIP = 0xFFFFF8F3            # jumpTo64BitAndLandHere in this image
OVMF_INSNS = 40_000                          # it gets there after about 27,300


def need_ovmf():
    if not os.path.isfile(OVMF):
        pytest.fail(f"{OVMF} is missing: install Debian's ovmf package", pytrace=False)


def run_to_long_mode(m):
    """Single-step to the first 64-bit instruction (about 0.3 s for OVMF)."""
    start = m.icount
    while not m.cpu.mode.long:
        assert m.run(max_insns=1) == "count", m.stop_info
        assert m.icount - start < OVMF_INSNS, "OVMF did not reach 64-bit mode"
    return m


def ovmf_work_area(sev_status, cbitpos):
    mask = 1 << cbitpos if cbitpos is not None else 0
    guest_type = GUEST_TYPE_AMD_SEV if sev_status else 0
    return bytes([guest_type, 0, 0, 0]) + struct.pack("<QQQB", sev_status, 0, mask, 0)


@pytest.mark.parametrize("reduced", [1, 2, 3, 4, 5])
def test_ovmf_under_sev(keys, reduced):
    need_ovmf()
    m, _ = make_machine(OVMF, sev_args(keys, f",cbitpos=51,reduced-phys-bits={reduced}"))
    run_to_long_mode(m)
    assert m.cpu.rip == OVMF_FIRST_64BIT_RIP
    # its work area records SEV_STATUS (1: SEV, no ES, no SNP) and the C-bit mask
    assert m.read_phys(WORK_AREA, WORK_AREA_LEN) == ovmf_work_area(1, 51)

    # edk2 2022.11 writes the C-bit mask into the upper dword of every entry it
    # builds (PML4E, PDPTEs and the 2 MiB PDEs: PageTables64.asm), not only the
    # leaves; CR3 is loaded in 32-bit mode, without it
    c = 1 << 51
    assert m.cpu.cr3 == OVMF_PT
    pml4e, pdptes, pdes = identity_tables(m, OVMF_PT)
    assert pml4e == c | (OVMF_PT + 0x1000) | 0x23
    assert list(pdptes) == [c | (OVMF_PT + 0x2000 + 0x1000 * i) | 0x23 for i in range(4)]
    for i, pde in enumerate(pdes):
        assert pde == c | i << 21 | 0xE3, f"PDE {i} = {pde:#x}"       # P RW A D PS


def test_ovmf_under_sev_cbit_47(keys):
    need_ovmf()
    m, _ = make_machine(OVMF, sev_args(keys, ",cbitpos=47,reduced-phys-bits=1"))
    run_to_long_mode(m)
    assert m.read_phys(WORK_AREA, WORK_AREA_LEN) == ovmf_work_area(1, 47)
    pml4e, pdptes, pdes = identity_tables(m, OVMF_PT)
    assert all(e >> 32 == 1 << 15 for e in (pml4e, *pdptes, *pdes))


def test_ovmf_without_sev():
    need_ovmf()
    m, _ = make_machine(OVMF)
    run_to_long_mode(m)
    assert m.cpu.rip == OVMF_FIRST_64BIT_RIP
    assert m.read_phys(WORK_AREA, WORK_AREA_LEN) == ovmf_work_area(0, None)
    assert m.cpu.cr3 == OVMF_PT
    pml4e, pdptes, pdes = identity_tables(m, OVMF_PT)
    assert pml4e == (OVMF_PT + 0x1000) | 0x23
    assert all(e >> 32 == 0 for e in (pml4e, *pdptes, *pdes))
    assert list(pdes) == [i << 21 | 0xE3 for i in range(2048)]


# ---------------------------------------------------------------------------- CPUID and SEV_STATUS (point 3)

# Real mode: reads CPUID 0x80000000 and 0x8000001F and SEV_STATUS into RAM at 0x500,
# then writes SEV_STATUS; the #GP handler (IVT vector 13) counts and skips the
# 2-byte instruction.  Layout at 0x500: u32 CPUID 0x80000000 EAX; u32 x 4 CPUID
# 0x8000001F EAX EBX ECX EDX; u32 x 2 SEV_STATUS EDX:EAX; u8 #GPs after rdmsr; u8
# #GPs after wrmsr; u32 x 2 SEV_STATUS read again after the write.
PROBE_ASM = r"""
bits 16
org 0xF000                      ; a 4 KiB image: IP = 0xF000 + offset (CS base 0xFFFF0000)
RES     equ 0x500
GPS     equ 0x540
start:
        cli
        xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        mov     byte [GPS], 0
        mov     word [13 * 4], gp_handler
        mov     word [13 * 4 + 2], 0xF000      ; the image's alias below 1 MiB
        mov     eax, 0x80000000
        cpuid
        mov     [RES], eax
        mov     eax, 0x8000001F
        xor     ecx, ecx
        cpuid
        mov     [RES + 4], eax
        mov     [RES + 8], ebx
        mov     [RES + 12], ecx
        mov     [RES + 16], edx
        mov     ecx, 0xC0010131
        rdmsr
        mov     [RES + 20], eax
        mov     [RES + 24], edx
        mov     al, [GPS]
        mov     [RES + 28], al
        mov     ecx, 0xC0010131
        mov     eax, 0
        mov     edx, 0
        wrmsr
        mov     al, [GPS]
        mov     [RES + 29], al
        mov     ecx, 0xC0010131
        rdmsr
        mov     [RES + 32], eax
        mov     [RES + 36], edx
        hlt
gp_handler:
        push    bp
        mov     bp, sp
        add     word [bp + 2], 2        ; skip rdmsr/wrmsr
        inc     byte [GPS]
        pop     bp
        iret
        times   0xFF0 - ($ - $$) db 0
        jmp     start
        times   0x1000 - ($ - $$) db 0
"""


@pytest.fixture(scope="module")
def probe_bios(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.asm").write_text(PROBE_ASM)
    subprocess.run([NASM, "-f", "bin", "-o", str(d / "probe.bin"), str(d / "probe.asm")],
                   check=True, capture_output=True)
    return d / "probe.bin"


def run_probe(bios, extra=()):
    m, _ = make_machine(bios, extra)
    assert m.run(max_insns=1000) == "hlt", m.stop_info
    raw = m.read_phys(0x500, 40)
    xlevel, *leaf = struct.unpack_from("<5I", raw, 0)
    status = struct.unpack_from("<Q", raw, 20)[0]
    gp_read, gp_write = raw[28], raw[29]
    status_after = struct.unpack_from("<Q", raw, 32)[0]
    return m, xlevel, tuple(leaf), status, gp_read, gp_write, status_after


@pytest.mark.parametrize("props,cbitpos,reduced", [
    ("", 51, 1), (",cbitpos=47,reduced-phys-bits=5", 47, 5), (",reduced-phys-bits=3", 51, 3)])
def test_guest_cpuid_and_sev_status_with_sev(keys, probe_bios, props, cbitpos, reduced):
    m, xlevel, leaf, status, gp_read, gp_write, status_after = run_probe(
        probe_bios, sev_args(keys, props))
    assert xlevel == 0x8000001F
    eax, ebx, ecx, edx = leaf
    assert eax == 1 << 1                              # SEV; not SME, ES or SNP
    assert ebx & 0x3F == cbitpos and (ebx >> 6) & 0x3F == reduced
    assert ebx >> 12 == 0
    model = m.cpu_model
    assert (ecx, edx) == (model.sev_guests, model.sev_min_asid)
    assert status == 1 and gp_read == 0
    assert gp_write == 1                              # SEV_STATUS is read-only
    assert status_after == 1
    # the same view through the host-side hooks
    assert m.cpu.cpuid_fn(0x8000001F, 0) == leaf
    assert m.cpu.rdmsr(0xC0010131) == 1


def test_guest_cpuid_and_sev_status_without_sev(probe_bios):
    m, xlevel, leaf, status, gp_read, gp_write, status_after = run_probe(probe_bios)
    assert xlevel == EPYC_MILAN_XLEVEL                # below 0x8000001F: no SEV leaf
    assert leaf == (0, 0, 0, 0)
    assert status == 0 and gp_read == 0 and status_after == 0
    assert gp_write == 1
    assert m.cpu.cpuid_fn(0x80000000, 0)[0] == EPYC_MILAN_XLEVEL
    assert m.cpu.rdmsr(0xC0010131) == 0
