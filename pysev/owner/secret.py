"""Launch secrets: the efi_secret table and the LAUNCH_SECRET packet around it.

The table (read by OVMF, GRUB and Linux's efi_secret) is built by
:func:`pysev.sev.ovmf.secret_table`.  The packet is what
``sev-inject-launch-secret`` takes: a 52-byte header, FLAGS (u32, 0) || IV (16)
|| MAC (32), and the table encrypted with AES-128-CTR under the TEK, the IV
being the initial counter block.  The MAC is HMAC-SHA256 under the TIK over
0x01 || FLAGS || IV || guest length || transport length || ciphertext ||
MEASURE, so the firmware accepts the packet only for the launch whose
measurement it was made for.
"""

import os
import struct
import uuid

from pysev.sev import ovmf
from pysev.sev.firmware import MEASURE_LEN, aes_ctr, secret_mac
from pysev.sev.objects import KEY_LEN

from .common import OwnerError, encode_base64

IV_LEN = 16
FLAGS = 0                   # bit 0 (compressed) and the rest reserved: every tool sends 0


def parse_guid(text):
    """The canonical form of a GUID string, or an OwnerError."""
    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        raise OwnerError(f"'{text}' is not a GUID (expected the form "
                         "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)") from None


def build_secret_table(entries):
    """The efi_secret table for *entries*, a sequence of (GUID string, bytes) pairs."""
    table = {}
    for guid, data in entries:
        guid = parse_guid(guid)
        if guid in table:
            raise OwnerError(f"GUID {guid} is given twice; each secret needs its own GUID")
        table[guid] = bytes(data)
    if not table:
        raise OwnerError("no secrets given")
    return ovmf.secret_table(table)


def package_secret(measure, tik, tek, payload, iv=None):
    """(packet header, encrypted payload) for the launch whose MEASURE (32 bytes, or the
    48-byte measurement) is given.  *iv* defaults to 16 fresh random bytes."""
    for label, key in (("TIK", tik), ("TEK", tek)):
        if len(key) != KEY_LEN:
            raise OwnerError(f"the {label} must be {KEY_LEN} bytes, it is {len(key)}")
    measure = bytes(measure)[:MEASURE_LEN]
    if len(measure) != MEASURE_LEN:
        raise OwnerError(f"the measurement must be at least {MEASURE_LEN} bytes")
    iv = os.urandom(IV_LEN) if iv is None else bytes(iv)
    if len(iv) != IV_LEN:
        raise OwnerError(f"the IV must be {IV_LEN} bytes, it is {len(iv)}")
    payload = bytes(payload)
    if not payload:
        raise OwnerError("the secret payload is empty")
    trans = aes_ctr(tek, iv, payload)
    mac = secret_mac(tik, FLAGS, iv, len(payload), trans, measure)
    return struct.pack("<I", FLAGS) + iv + mac, trans


def inject_arguments(header, trans, gpa=None):
    """The arguments object of QMP sev-inject-launch-secret for this packet."""
    args = {"packet-header": encode_base64(header), "secret": encode_base64(trans)}
    if gpa is not None:
        args["gpa"] = gpa
    return args
