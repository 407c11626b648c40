"""sev-inject-launch-secret: packets built as a guest owner builds them, checked
before anything is written; errors leave guest memory untouched."""

import base64
import hashlib
import hmac
import struct
import uuid
import warnings

import pytest
from Crypto.Cipher import AES

from pysev.machine import Machine
from pysev.qmp import QMPError
from pysev.sev import ovmf
from pysev.sev.firmware import aes_ctr, secret_mac

from sevimage import TIK, TEK, SECRET_BASE, SECRET_SIZE, synthetic_image, sev_args, b64

RAM_SIZE = 16 << 20
GPA = 0x200000                      # plain RAM, below the synthetic image's areas
IV = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
DISK_KEY_GUID = "736869e5-84f0-4973-92ec-06879ce3da0b"

# every RAM byte of a 16 MiB q35 machine: below the VGA hole, 0xC0000 up to the firmware's
# alias below 1 MiB, and from 1 MiB up
RAM_RANGES = ((0, 0xA0000), (0xC0000, 0xE0000), (0x100000, RAM_SIZE))


def secret_payload(text=b"disk passphrase: correct horse battery staple"):
    """An efi_secret table with one entry, as guest owners send."""
    return ovmf.secret_table({DISK_KEY_GUID: text})


def packet(measure, plaintext, tik=TIK, tek=TEK, iv=IV, flags=0):
    """(packet header, ciphertext) for LAUNCH_SECRET, as the guest owner builds them."""
    ciphertext = aes_ctr(tek, iv, plaintext)
    mac = secret_mac(tik, flags, iv, len(ciphertext), ciphertext, measure)
    return struct.pack("<I", flags) + iv + mac, ciphertext


def inject_args(header, ciphertext, gpa=GPA):
    args = {"packet-header": b64(header), "secret": b64(ciphertext)}
    if gpa is not None:
        args["gpa"] = gpa
    return args


def build(tmp_path, image=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Machine.from_args(sev_args(tmp_path, image))


def ram_snapshot(m):
    return [m.read_phys(start, end - start) for start, end in RAM_RANGES]


def measure_of(m):
    """The first 32 bytes of the launch measurement: what the guest owner MACs."""
    return base64.b64decode(m.qmp("query-sev-launch-measure")["data"])[:32]


def qmp_error(m, command, **args):
    with pytest.raises(QMPError) as info:
        m.qmp(command, **args)
    assert info.value.error_class == "GenericError"
    return info.value.desc


@pytest.fixture
def machine(tmp_path):
    return build(tmp_path)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "synthetic.fd"
    path.write_bytes(synthetic_image())
    return path


# ---- the guest owner's primitives -------------------------------------------------------------

def test_owner_primitives_match_the_specification():
    """aes_ctr and secret_mac as SEV-FACTS.md defines them, computed independently."""
    plain = bytes(range(100))
    block = AES.new(TEK, AES.MODE_ECB)
    stream = b"".join(block.encrypt(((int.from_bytes(IV, "big") + i) % (1 << 128))
                                    .to_bytes(16, "big")) for i in range(7))
    assert aes_ctr(TEK, IV, plain) == bytes(a ^ b for a, b in zip(plain, stream))
    measure = bytes(range(32))
    ct = aes_ctr(TEK, IV, plain)
    msg = b"\x01" + struct.pack("<I", 0) + IV + struct.pack("<II", 100, 100) + ct + measure
    assert secret_mac(TIK, 0, IV, 100, ct, measure) == hmac.new(TIK, msg,
                                                                 hashlib.sha256).digest()


def test_counter_block_wraps_at_128_bits():
    iv = b"\xff" * 16
    block = AES.new(TEK, AES.MODE_ECB)
    stream = block.encrypt(iv) + block.encrypt(bytes(16))
    assert aes_ctr(TEK, iv, bytes(32)) == stream


# ---- a good packet ----------------------------------------------------------------------------

def test_correct_packet_writes_exactly_the_plaintext(machine):
    plain = secret_payload()
    header, ct = packet(measure_of(machine), plain)
    assert len(header) == 52
    before = ram_snapshot(machine)
    assert machine.qmp("sev-inject-launch-secret", **inject_args(header, ct)) == {}
    assert machine.read_phys(GPA, len(plain)) == plain
    expected = bytearray(before[2])
    expected[GPA - 0x100000:GPA - 0x100000 + len(plain)] = plain
    after = ram_snapshot(machine)
    assert after[:2] == before[:2]
    assert after[2] == bytes(expected)


def test_state_stays_launch_secret_and_more_secrets_can_follow(machine):
    measure = measure_of(machine)
    for n, gpa in enumerate((GPA, GPA + 0x1000)):
        header, ct = packet(measure, bytes([0x40 + n]) * 48, iv=bytes([n]) * 16)
        machine.qmp("sev-inject-launch-secret", **inject_args(header, ct, gpa))
        assert machine.qmp("query-sev")["state"] == "launch-secret"
    assert machine.read_phys(GPA, 48) == b"\x40" * 48
    assert machine.read_phys(GPA + 0x1000, 48) == b"\x41" * 48
    # the measurement does not change with injections
    assert measure_of(machine) == measure
    machine.qmp("cont")
    assert machine.qmp("query-sev")["state"] == "running"


def test_the_tek_decrypts(machine):
    """The MAC covers the ciphertext only: with the right TIK and a wrong TEK the
    firmware accepts the packet and writes what the TEK decrypts (not the plaintext)."""
    plain = secret_payload()
    header, ct = packet(measure_of(machine), plain, tek=TIK)
    machine.qmp("sev-inject-launch-secret", **inject_args(header, ct))
    written = machine.read_phys(GPA, len(plain))
    assert written == aes_ctr(TEK, IV, ct)
    assert written != plain


def test_secret_below_the_vga_hole(machine):
    plain = b"low memory secret"
    header, ct = packet(measure_of(machine), plain)
    machine.qmp("sev-inject-launch-secret", **inject_args(header, ct, 0xA0000 - len(plain)))
    assert machine.read_phys(0xA0000 - len(plain), len(plain)) == plain


def test_secret_ending_at_the_end_of_ram(machine):
    plain = b"top of memory"
    header, ct = packet(measure_of(machine), plain)
    machine.qmp("sev-inject-launch-secret", **inject_args(header, ct, RAM_SIZE - len(plain)))
    assert machine.read_phys(RAM_SIZE - len(plain), len(plain)) == plain


# ---- packets that must be refused ---------------------------------------------------------------

BAD_MAC = ("SEV: failed to inject secret: SEV firmware error 0xb (Bad measurement): "
           "packet MAC does not verify")


def _flip(data, byte, bit=0):
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("what", ["mac", "iv", "ciphertext", "wrong-tik", "wrong-measure",
                                  "longer-ciphertext"])
def test_a_packet_that_does_not_verify_changes_nothing(machine, what):
    measure = measure_of(machine)
    plain = secret_payload()
    header, ct = packet(measure, plain)
    if what == "mac":
        header = _flip(header, 20 + 31, 7)
    elif what == "iv":
        header = _flip(header, 4 + 5, 3)
    elif what == "ciphertext":
        ct = _flip(ct, len(ct) // 2, 1)
    elif what == "wrong-tik":
        header, ct = packet(measure, plain, tik=TEK)
    elif what == "wrong-measure":
        header, ct = packet(_flip(measure, 0), plain)
    elif what == "longer-ciphertext":
        ct = ct + b"\0"                      # the MAC covers both lengths
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct)) == BAD_MAC
    assert ram_snapshot(machine) == before
    assert machine.qmp("query-sev")["state"] == "launch-secret"


@pytest.mark.parametrize("flags,detail", [
    (1, "compressed secrets are not supported"),
    (2, "reserved packet flags 0x2"),
    (0x80000000, "reserved packet flags 0x80000000"),
])
def test_non_zero_flags_are_refused(machine, flags, detail):
    header, ct = packet(measure_of(machine), secret_payload(), flags=flags)
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct)) == (
        f"SEV: failed to inject secret: SEV firmware error 0x16 (Invalid parameter): {detail}")
    assert ram_snapshot(machine) == before


@pytest.mark.parametrize("length", [51, 53, 0x34 * 2])
def test_header_of_the_wrong_length_is_refused(machine, length):
    header, ct = packet(measure_of(machine), secret_payload())
    header = (header + bytes(64))[:length]
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct)) == (
        "SEV: failed to inject secret: SEV firmware error 0x4 (Buffer too small): "
        f"packet header is {length} bytes, expected 52")
    assert ram_snapshot(machine) == before


@pytest.mark.parametrize("bad", ["not base64!", "AAA", "A", "AAAA AAAA", "AA==AA=="])
def test_bad_base64_header(machine, bad):
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret",
                     **{"packet-header": bad, "secret": b64(b"x" * 16), "gpa": GPA}) == (
        "SEV: Failed to decode sequence header")
    assert ram_snapshot(machine) == before


@pytest.mark.parametrize("bad", ["not base64!", "AAA", "====", "@@@@"])
def test_bad_base64_data(machine, bad):
    header, _ = packet(measure_of(machine), b"x" * 16)
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret",
                     **{"packet-header": b64(header), "secret": bad, "gpa": GPA}) == (
        "SEV: Failed to decode data")
    assert ram_snapshot(machine) == before


def test_empty_header_and_data_fail_to_decode(machine):
    # QEMU treats an empty decoded header or secret as a decoding failure
    header, ct = packet(measure_of(machine), b"x" * 16)
    assert qmp_error(machine, "sev-inject-launch-secret",
                     **{"packet-header": "", "secret": b64(ct), "gpa": GPA}) == (
        "SEV: Failed to decode sequence header")
    assert qmp_error(machine, "sev-inject-launch-secret",
                     **{"packet-header": b64(header), "secret": "", "gpa": GPA}) == (
        "SEV: Failed to decode data")


@pytest.mark.parametrize("gpa,size", [
    (0xA0000, 32),                   # the VGA hole
    (0xBFFF0, 32),                   # the VGA hole's last bytes, into RAM at 0xC0000
    (0xA0000 - 16, 32),              # RAM into the VGA hole
    (0xE0000, 32),                   # the firmware's alias below 1 MiB (ROM)
    (RAM_SIZE, 32),                  # just above RAM
    (RAM_SIZE - 16, 32),             # crossing the end of RAM
    (0xFFFFFF00, 32),                # the firmware (ROM) below 4 GiB
    (1 << 40, 32),                   # far above everything
])
def test_secret_outside_ram_is_refused(machine, gpa, size):
    header, ct = packet(measure_of(machine), bytes(range(size)))
    before = ram_snapshot(machine)
    rom = machine.read_phys(0xFFFFFF00, 0x100)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct, gpa)) == (
        f"SEV: Failed to calculate HVA for GPA {gpa:#x}")
    assert ram_snapshot(machine) == before
    assert machine.read_phys(0xFFFFFF00, 0x100) == rom


def test_wrong_state_after_cont(machine):
    header, ct = packet(measure_of(machine), secret_payload())
    machine.qmp("cont")
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct)) == (
        "SEV: Not in correct state. (LSECRET) 3")
    assert ram_snapshot(machine) == before


def test_gpa_must_be_an_integer(machine):
    header, ct = packet(measure_of(machine), b"x" * 16)
    assert qmp_error(machine, "sev-inject-launch-secret",
                     **{"packet-header": b64(header), "secret": b64(ct), "gpa": "0x1000"}) == (
        "Invalid parameter type for 'gpa', expected: integer")


# ---- without gpa: OVMF's secret area ----------------------------------------------------------

def test_no_gpa_and_no_secret_area_in_debian_ovmf(machine):
    header, ct = packet(measure_of(machine), secret_payload())
    before = ram_snapshot(machine)
    assert qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct, None)) == (
        "SEV: no secret area found in OVMF, gpa must be specified.")
    assert ram_snapshot(machine) == before


def test_no_gpa_writes_to_the_secret_area(tmp_path, image):
    m = build(tmp_path, image)
    plain = secret_payload()
    header, ct = packet(measure_of(m), plain)
    before = ram_snapshot(m)
    assert m.qmp("sev-inject-launch-secret", **inject_args(header, ct, None)) == {}
    assert m.read_phys(SECRET_BASE, len(plain)) == plain
    expected = bytearray(before[2])
    off = SECRET_BASE - 0x100000
    expected[off:off + len(plain)] = plain
    assert ram_snapshot(m)[2] == bytes(expected)
    # the table a guest reads back: header GUID, total length, then the entry
    table = m.read_phys(SECRET_BASE, SECRET_SIZE)
    assert uuid.UUID(bytes_le=table[:16]) == uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
    assert uuid.UUID(bytes_le=table[20:36]) == uuid.UUID(DISK_KEY_GUID)
    assert m.qmp("query-sev")["state"] == "launch-secret"


def test_no_gpa_secret_larger_than_the_area(tmp_path, image):
    m = build(tmp_path, image)
    header, ct = packet(measure_of(m), bytes(SECRET_SIZE + 16))
    before = ram_snapshot(m)
    assert qmp_error(m, "sev-inject-launch-secret", **inject_args(header, ct, None)) == (
        f"SEV: secret of {SECRET_SIZE + 16} bytes does not fit OVMF's secret area "
        f"({SECRET_SIZE} bytes)")
    assert ram_snapshot(m) == before


def test_errors_never_show_the_keys(machine):
    measure = measure_of(machine)
    texts = []
    for header, ct in (packet(measure, b"x" * 32, tik=TEK), packet(measure, b"y" * 32, flags=2),
                       (bytes(51), b"z" * 32)):
        texts.append(qmp_error(machine, "sev-inject-launch-secret", **inject_args(header, ct)))
    for text in texts:
        for key in (TIK, TEK):
            assert key.hex() not in text.lower()
            assert repr(key) not in text
            assert key.decode("latin-1") not in text
