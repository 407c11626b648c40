"""The expected launch digest and the check of a launch measurement.

The launch digest is SHA-256 over what the firmware measured, in order: the
whole firmware image, then (measured direct kernel boot: ``-kernel`` with
``kernel-hashes=on``) the 176-byte kernel-hashes table QEMU, and pysev, write
into OVMF's hashes area.  The measurement that ``query-sev-launch-measure``
returns is 48 bytes, MEASURE || MNONCE, with

    MEASURE = HMAC-SHA256(TIK, 0x04 || API major || API minor || build id
                          || policy (u32 LE) || launch digest || MNONCE)

so it binds the digest, the launch policy and the firmware's API version and
build id to the TIK.  A mismatch says that at least one of them differs,
never which.
"""

import dataclasses
import hashlib
import hmac
import json

from pysev.sev import ovmf
from pysev.sev.firmware import MEASURE_LEN, MNONCE_LEN, measurement_hmac

from .common import OwnerError, decode_base64, read_file

MEASUREMENT_LEN = MEASURE_LEN + MNONCE_LEN      # 48


def launch_digest(image, kernel=None, initrd=None, cmdline=None):
    """The 32-byte launch digest of *image* (bytes), with the kernel hashes when *kernel*
    is given (*initrd* bytes and *cmdline* text are only measured with a kernel)."""
    image = bytes(image)
    digest = hashlib.sha256(image)
    if kernel is None:
        if initrd is not None or cmdline is not None:
            raise OwnerError("an initrd or a command line is only measured with a kernel")
        return digest.digest()
    try:
        area = ovmf.hashes_area(image)
    except ovmf.OvmfError as exc:
        raise OwnerError(f"the firmware's GUID table is malformed: {exc}") from None
    if area is None:
        raise OwnerError("the firmware has no kernel-hashes area (no SEV hashes-table GUID "
                         f"{ovmf.HASHES_AREA_GUID} with a non-zero base and size), so it cannot "
                         "measure a kernel: use an OVMF AmdSev build, or leave out the kernel")
    table = ovmf.kernel_hashes_table(bytes(kernel), bytes(initrd or b""), cmdline or "")
    if area[1] < len(table):
        raise OwnerError(f"the firmware's kernel-hashes area is {area[1]} bytes, too small for the "
                         f"{len(table)}-byte hashes table")
    digest.update(table)
    return digest.digest()


def parse_measurement(text, what="measurement"):
    """(MEASURE, MNONCE) from the base64 of query-sev-launch-measure's data."""
    blob = decode_base64(text, what)
    if len(blob) != MEASUREMENT_LEN:
        raise OwnerError(f"{what} must be {MEASUREMENT_LEN} bytes (MEASURE || MNONCE), "
                         f"it decodes to {len(blob)}")
    return blob[:MEASURE_LEN], blob[MEASURE_LEN:]


def read_measurement_file(path):
    """(MEASURE, MNONCE) from a file holding the base64 text, or a saved
    query-sev-launch-measure reply ({"data": ...} or {"return": {"data": ...}})."""
    raw = read_file(path, "measurement file")
    try:
        reply = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        reply = None
    if isinstance(reply, dict):
        reply = reply.get("return", reply)
        if not isinstance(reply, dict) or not isinstance(reply.get("data"), str):
            raise OwnerError(f"measurement file '{path}' is JSON without a \"data\" string")
        raw = reply["data"]
    return parse_measurement(raw, f"measurement in '{path}'")


@dataclasses.dataclass(frozen=True)
class LaunchContext:
    """What the firmware binds into the measurement besides the digest."""
    policy: int
    api_major: int
    api_minor: int
    build_id: int

    def __post_init__(self):
        checks = (("policy", self.policy, 0xFFFFFFFF), ("API major", self.api_major, 0xFF),
                  ("API minor", self.api_minor, 0xFF), ("build id", self.build_id, 0xFF))
        for name, value, top in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise OwnerError(f"{name} must be an integer from 0 to {top:#x}, got {value!r}")


QUERY_SEV_FIELDS = (("policy", "policy"), ("api_major", "api-major"),
                    ("api_minor", "api-minor"), ("build_id", "build-id"))


def context_from_query_sev(reply):
    """{field: value} for policy, api_major, api_minor, build_id from a query-sev reply
    (the SevInfo object, or the whole QMP response {"return": SevInfo})."""
    if isinstance(reply, dict) and isinstance(reply.get("return"), dict):
        reply = reply["return"]
    if not isinstance(reply, dict):
        raise OwnerError("the query-sev reply is not a JSON object")
    if reply.get("enabled") is False:
        raise OwnerError("the query-sev reply says SEV is not enabled for the guest")
    if reply.get("sev-type", "sev") != "sev":
        raise OwnerError(f"the query-sev reply is for a {reply['sev-type']} guest, not an SEV one")
    values = {}
    for field, key in QUERY_SEV_FIELDS:
        value = reply.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise OwnerError(f"the query-sev reply has no integer \"{key}\"")
        values[field] = value
    return values


def read_query_sev_file(path):
    raw = read_file(path, "query-sev reply")
    try:
        reply = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise OwnerError(f"query-sev reply '{path}' is not JSON") from None
    return context_from_query_sev(reply)


def expected_measure(tik, digest, context, mnonce):
    """The 32-byte MEASURE the firmware computes for these inputs."""
    return measurement_hmac(tik, context.api_major, context.api_minor, context.build_id,
                            context.policy, digest, mnonce)


def verify_measurement(measure, mnonce, tik, digest, context):
    """True when MEASURE is what the firmware computes from these inputs (constant time)."""
    return hmac.compare_digest(expected_measure(tik, digest, context, mnonce), measure)
