"""The SEV launch: the measurement, the launch digest against sev-snp-measure,
measured direct boot (kernel hashes), the state sequence and the QMP queries."""

import base64
import hashlib
import hmac
import shutil
import struct
import subprocess
import warnings

import pytest

from pysev.machine import Machine, MachineError
from pysev.qmp import QMPError
from pysev.sev.firmware import (SevGuestContext, SevFirmwareError, measurement_hmac, LUPDATE,
                                LSECRET, UNINIT, INVALID_GUEST_STATE)
from pysev.sev.launch import MIGRATION_BLOCKER

from sevimage import (OVMF, TIK, TEK, HASHES_BASE, HASHES_SIZE, SECRET_BASE, IMAGE_SIZE,
                      synthetic_image, fake_bzimage, sev_args, le_guid, b64, sha256)

# the published LAUNCH_MEASURE vector of sev-tool (SEV-FACTS.md)
VECTOR_TIK = bytes.fromhex("66320db73158a35a255d051758e95ed4")
VECTOR_MNONCE = bytes.fromhex("4fbe0bedbad6c86ae8f68971d103e554")
VECTOR_MEASURE = bytes.fromhex(
    "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea")

QUERY_SEV_KEYS = {"enabled", "api-major", "api-minor", "build-id", "policy", "state", "handle",
                  "sev-type"}

CMDLINE = "console=ttyS0 root=/dev/vda1 quiet"


def build(args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Machine.from_args(args)


def qmp_error(m, command, **args):
    with pytest.raises(QMPError) as info:
        m.qmp(command, **args)
    assert info.value.error_class == "GenericError"
    return info.value.desc


def sev_snp_measure(*args):
    assert shutil.which("sev-snp-measure"), (
        "sev-snp-measure is not installed: pip install sev-snp-measure (it is in the test extra)")
    proc = subprocess.run(["sev-snp-measure", "--mode", "sev", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return bytes.fromhex(proc.stdout.strip())


def measurement(m):
    data = base64.b64decode(m.qmp("query-sev-launch-measure")["data"], validate=True)
    assert len(data) == 48
    return data


def expected_measure(info, digest, mnonce, tik=TIK):
    """LAUNCH_MEASURE computed from the SEV API specification, without pysev."""
    msg = (bytes([0x04, info["api-major"], info["api-minor"], info["build-id"]])
           + struct.pack("<I", info["policy"]) + digest + mnonce)
    return hmac.new(tik, msg, hashlib.sha256).digest()


def hashes_table(kernel, initrd=b"", cmdline=None):
    """The 176-byte kernel-hashes table (SEV-FACTS.md), built here independently."""
    cmd = (cmdline.encode() if cmdline else b"") + b"\0"
    out = le_guid("9438d606-4f22-4cc9-b479-a793d411fd21") + struct.pack("<H", 168)
    for guid, data in (("97d02dd8-bd20-4c94-aa78-e7714d36ab2a", cmd),
                       ("44baf731-3a2f-4bd7-9af1-41e29169781d", initrd),
                       ("4de79437-abd2-427f-b835-d5b172d2045b", kernel)):
        out += le_guid(guid) + struct.pack("<H", 50) + sha256(data)
    return out + bytes(8)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "synthetic.fd"
    path.write_bytes(synthetic_image())
    return path


@pytest.fixture
def boot_files(tmp_path):
    """A small fake bzImage (a valid setup header, no real kernel) and an initrd."""
    kpath = tmp_path / "bzImage"
    kpath.write_bytes(fake_bzimage())
    ipath = tmp_path / "initrd.img"
    ipath.write_bytes(b"070701" + bytes(range(256)) * 8)
    return kpath, ipath


@pytest.fixture(scope="module")
def ovmf_digest():
    return sev_snp_measure("--ovmf", OVMF)


# ---- LAUNCH_MEASURE: the published vector ----------------------------------------------------

def test_published_vector_through_measurement_hmac():
    measure = measurement_hmac(VECTOR_TIK, 0x00, 0x12, 0x0F, 0, hashlib.sha256(b"").digest(),
                               VECTOR_MNONCE)
    assert measure == VECTOR_MEASURE


def test_published_vector_through_a_guest_context():
    ctx = SevGuestContext(api_major=0x00, api_minor=0x12, build=0x0F)
    assert ctx.state == UNINIT
    ctx.launch_start(0, VECTOR_TIK, bytes(16))
    assert ctx.state == LUPDATE
    blob = ctx.launch_measure(mnonce=VECTOR_MNONCE)
    assert blob == VECTOR_MEASURE + VECTOR_MNONCE
    assert ctx.state == LSECRET
    assert ctx.launch_digest == hashlib.sha256(b"").digest()
    assert ctx.measurement == VECTOR_MEASURE


def test_published_vector_with_the_mnonce_from_the_rng():
    ctx = SevGuestContext(0x00, 0x12, 0x0F, rng=lambda n: VECTOR_MNONCE[:n])
    ctx.launch_start(0, VECTOR_TIK, bytes(16))
    assert ctx.launch_measure() == VECTOR_MEASURE + VECTOR_MNONCE


def test_context_commands_check_the_state():
    ctx = SevGuestContext(0x00, 0x12, 0x0F)
    with pytest.raises(SevFirmwareError) as info:
        ctx.launch_update_data(b"x")
    assert info.value.code == INVALID_GUEST_STATE
    assert str(info.value) == "SEV firmware error 0x2 (Guest state is invalid): in state UNINIT"
    ctx.launch_start(0, VECTOR_TIK, bytes(16))
    ctx.launch_finish()
    with pytest.raises(SevFirmwareError):
        ctx.launch_measure(VECTOR_MNONCE)


# ---- the launch digest ------------------------------------------------------------------------

def test_debian_ovmf_digest_matches_sev_snp_measure(tmp_path, ovmf_digest):
    with open(OVMF, "rb") as f:
        assert ovmf_digest == sha256(f.read())
    m = build(sev_args(tmp_path))
    assert m.sev.ctx.launch_digest == ovmf_digest
    info = m.qmp("query-sev")
    data = measurement(m)
    assert data[:32] == expected_measure(info, ovmf_digest, data[32:])


@pytest.mark.parametrize("with_initrd,cmdline", [(True, CMDLINE), (False, None)])
def test_kernel_hashes_digest_matches_sev_snp_measure(tmp_path, image, boot_files, with_initrd,
                                                      cmdline):
    kernel, initrd = boot_files
    more = ["-kernel", str(kernel)]
    tool = ["--ovmf", str(image), "--kernel", str(kernel)]
    if with_initrd:
        more += ["-initrd", str(initrd)]
        tool += ["--initrd", str(initrd)]
    if cmdline is not None:
        more += ["-append", cmdline]
        tool += ["--append", cmdline]
    m = build(sev_args(tmp_path, image, extra="kernel-hashes=on", more=more))
    digest = sev_snp_measure(*tool)
    assert m.sev.ctx.launch_digest == digest
    table = hashes_table(kernel.read_bytes(), initrd.read_bytes() if with_initrd else b"",
                         cmdline)
    assert len(table) == 176
    assert digest == sha256(image.read_bytes() + table)
    # the table QEMU writes sits at the base of OVMF's hashes area; the rest stays zero
    assert m.read_phys(HASHES_BASE, 176) == table
    assert m.read_phys(HASHES_BASE + 176, HASHES_SIZE - 176) == bytes(HASHES_SIZE - 176)
    data = measurement(m)
    assert data[:32] == expected_measure(m.qmp("query-sev"), digest, data[32:])


def test_without_kernel_hashes_the_digest_is_the_image_alone(tmp_path, image, boot_files):
    kernel, initrd = boot_files
    m = build(sev_args(tmp_path, image, more=["-kernel", str(kernel), "-initrd", str(initrd),
                                               "-append", CMDLINE]))
    digest = sev_snp_measure("--ovmf", str(image))
    assert digest == sha256(image.read_bytes())
    assert m.sev.ctx.launch_digest == digest
    assert m.read_phys(HASHES_BASE, HASHES_SIZE) == bytes(HASHES_SIZE)
    data = measurement(m)
    assert data[:32] == expected_measure(m.qmp("query-sev"), digest, data[32:])


def test_kernel_hashes_without_a_kernel_measure_the_image_alone(tmp_path, image):
    m = build(sev_args(tmp_path, image, extra="kernel-hashes=on"))
    assert m.sev.ctx.launch_digest == sha256(image.read_bytes())
    assert m.read_phys(HASHES_BASE, HASHES_SIZE) == bytes(HASHES_SIZE)


def test_kernel_hashes_need_a_hashes_area(tmp_path, boot_files):
    # Debian's OVMF carries the hashes-area GUID with base 0 and size 0
    kernel, _ = boot_files
    with pytest.raises(MachineError) as info:
        build(sev_args(tmp_path, extra="kernel-hashes=on", more=["-kernel", str(kernel)]))
    assert "hashes table" in str(info.value)


def test_kernel_hashes_area_too_small(tmp_path, boot_files):
    kernel, _ = boot_files
    small = tmp_path / "small.fd"
    small.write_bytes(synthetic_image(hashes=(HASHES_BASE, 0x40)))
    with pytest.raises(MachineError) as info:
        build(sev_args(tmp_path, small, extra="kernel-hashes=on", more=["-kernel", str(kernel)]))
    # QEMU's wording for an area that cannot hold the 176-byte table
    assert str(info.value) == ("pysev run: SEV: guest firmware hashes table area is invalid "
                               "(base=0x80c000 size=0x40)")


def test_kernel_hashes_area_outside_ram_is_refused(tmp_path, boot_files):
    # the table would be measured but never reach guest memory (QEMU fails to map it)
    kernel, _ = boot_files
    bad = tmp_path / "hole.fd"
    bad.write_bytes(synthetic_image(hashes=(0xA0000, 0x1000)))
    with pytest.raises(MachineError):
        build(sev_args(tmp_path, bad, extra="kernel-hashes=on", more=["-kernel", str(kernel)]))


def test_missing_kernel_file(tmp_path, image):
    with pytest.raises(MachineError) as info:
        build(sev_args(tmp_path, image, extra="kernel-hashes=on",
                       more=["-kernel", str(tmp_path / "none")]))
    assert str(info.value) == (f"pysev run: -kernel: cannot read '{tmp_path / 'none'}': "
                               "No such file or directory")


def test_the_digest_is_taken_at_update_time(tmp_path, image, boot_files):
    kernel, initrd = boot_files
    m = build(sev_args(tmp_path, image, extra="kernel-hashes=on",
                       more=["-kernel", str(kernel), "-initrd", str(initrd)]))
    before = m.qmp("query-sev-launch-measure")
    digest = m.sev.ctx.launch_digest
    image_base = (1 << 32) - IMAGE_SIZE
    # overwrite the firmware through its alias below 1 MiB, as a loader would (ROM
    # ignores guest writes), and the measured hashes table and other RAM as the guest
    m.mem.load(0x100000 - IMAGE_SIZE, b"\xcc" * IMAGE_SIZE)
    assert m.read_phys(image_base, 16) == b"\xcc" * 16
    m.write_phys(HASHES_BASE, b"\xee" * 176)
    m.write_phys(SECRET_BASE, b"\xdd" * 64)
    assert m.read_phys(HASHES_BASE, 176) == b"\xee" * 176
    assert m.qmp("query-sev-launch-measure") == before
    assert m.sev.ctx.launch_digest == digest


# ---- the state sequence ---------------------------------------------------------------------

def test_state_after_creation_and_cont(tmp_path):
    m = build(sev_args(tmp_path))
    assert m.qmp("query-sev")["state"] == "launch-secret"
    assert m.sev.migration_blockers == []
    assert m.qmp("cont") == {}
    assert m.qmp("query-sev")["state"] == "running"
    assert m.sev.migration_blockers == [MIGRATION_BLOCKER]
    m.qmp("stop")
    m.qmp("cont")
    assert m.qmp("query-sev")["state"] == "running"
    assert m.sev.migration_blockers == ["SEV: Migration is not implemented"]


def test_state_after_run(tmp_path, image):
    m = build(sev_args(tmp_path, image))
    assert m.qmp("query-sev")["state"] == "launch-secret"
    assert m.run(max_insns=10) == "hlt"
    assert m.qmp("query-sev")["state"] == "running"
    assert m.sev.migration_blockers == [MIGRATION_BLOCKER]


def test_measurement_stays_available_when_running(tmp_path):
    m = build(sev_args(tmp_path))
    before = m.qmp("query-sev-launch-measure")
    m.qmp("cont")
    assert m.qmp("query-sev-launch-measure") == before


# ---- query-sev and query-sev-launch-measure ----------------------------------------------------

def test_query_sev_fields(tmp_path):
    m = build(sev_args(tmp_path))
    info = m.qmp("query-sev")
    assert set(info) == QUERY_SEV_KEYS
    assert info == {"enabled": True, "api-major": 1, "api-minor": 55, "build-id": 0,
                    "policy": 1, "state": "launch-secret", "handle": 1, "sev-type": "sev"}


def test_query_sev_reports_policy_and_handle(tmp_path):
    m = build(sev_args(tmp_path, extra="policy=0x3,handle=7"))
    info = m.qmp("query-sev")
    assert (info["policy"], info["handle"]) == (3, 7)
    data = measurement(m)
    with open(OVMF, "rb") as f:
        digest = sha256(f.read())
    assert data[:32] == expected_measure(info, digest, data[32:])


def test_measurement_uses_the_tik(tmp_path):
    m = build(sev_args(tmp_path))
    data = measurement(m)
    with open(OVMF, "rb") as f:
        digest = sha256(f.read())
    info = m.qmp("query-sev")
    assert data[:32] == expected_measure(info, digest, data[32:], TIK)
    assert data[:32] != expected_measure(info, digest, data[32:], TEK)
    assert data[:32] != expected_measure(info, digest, data[32:], bytes(16))


def test_zero_tik_when_none_is_given(tmp_path):
    m = build(["-bios", OVMF, "-m", "16M", "-serial", "null", "-object", "sev-emulated,id=sev0",
               "-machine", "q35,memory-encryption=sev0"])
    data = measurement(m)
    with open(OVMF, "rb") as f:
        digest = sha256(f.read())
    assert data[:32] == expected_measure(m.qmp("query-sev"), digest, data[32:], bytes(16))


def test_two_machines_get_different_mnonces(tmp_path):
    a = measurement(build(sev_args(tmp_path)))
    b = measurement(build(sev_args(tmp_path)))
    assert a[32:] != b[32:]
    assert a[:32] != b[:32]


# ---- without SEV, and the commands sev-emulated does not support ---------------------------------

def test_queries_without_sev():
    m = build(["-bios", OVMF, "-m", "16M", "-serial", "null"])
    info = m.qmp("query-sev")
    assert info["enabled"] is False
    assert set(info) == QUERY_SEV_KEYS
    assert qmp_error(m, "query-sev-launch-measure") == "SEV feature is not available"
    assert qmp_error(m, "sev-inject-launch-secret", **{"packet-header": b64(bytes(52)),
                                                        "secret": b64(bytes(16))}) == (
        "SEV not enabled for guest")
    assert qmp_error(m, "query-sev-capabilities") == "SEV feature is not available"
    assert qmp_error(m, "query-sev-attestation-report", mnonce=b64(bytes(16))) == (
        "SEV feature is not available")


def test_capabilities_are_not_supported(tmp_path):
    m = build(sev_args(tmp_path))
    assert qmp_error(m, "query-sev-capabilities") == (
        "query-sev-capabilities is not supported by sev-emulated yet (it has no platform "
        "certificate chain)")


def test_attestation_report_is_not_supported(tmp_path):
    m = build(sev_args(tmp_path))
    assert qmp_error(m, "query-sev-attestation-report", mnonce=b64(bytes(16))) == (
        "query-sev-attestation-report is not supported by sev-emulated yet")


@pytest.mark.parametrize("size", [15, 17, 0])
def test_attestation_report_mnonce_size(tmp_path, size):
    m = build(sev_args(tmp_path))
    assert qmp_error(m, "query-sev-attestation-report", mnonce=b64(bytes(size))) == (
        f"SEV: mnonce must be 16 bytes (got {size})")


def test_attestation_report_bad_mnonce(tmp_path):
    m = build(sev_args(tmp_path))
    assert qmp_error(m, "query-sev-attestation-report", mnonce="not base64!") == (
        "SEV: failed to decode mnonce")
    assert qmp_error(m, "query-sev-attestation-report") == "Parameter 'mnonce' is missing"
