"""OVMF's metadata for SEV: the GUID table at the end of the flash image, and
the kernel-hashes table QEMU writes into the hashes area for measured
direct kernel boot.

GUID table layout (read backwards from the end of the image):

    flash_end - 0x30:  footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d
    flash_end - 0x32:  u16 total length of the table (entries + length + footer)
    before that, entries, each   [data][u16 length of the whole entry][GUID]

GUIDs are stored in the little-endian (Microsoft) byte order.
"""

import hashlib
import struct
import uuid

FOOTER_GUID = "96b582de-1fb2-45f7-baea-a366c55a082d"
SECRET_AREA_GUID = "4c2eb361-7d9b-4cc3-8081-127c90d3d294"
HASHES_AREA_GUID = "7255371f-3a3b-4b04-927b-1da6efa8d454"
SEV_ES_RESET_GUID = "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
SEV_METADATA_GUID = "dc886566-984a-4798-a75e-5585a7bf67cc"

HASH_TABLE_GUID = "9438d606-4f22-4cc9-b479-a793d411fd21"
CMDLINE_GUID = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a"
INITRD_GUID = "44baf731-3a2f-4bd7-9af1-41e29169781d"
KERNEL_GUID = "4de79437-abd2-427f-b835-d5b172d2045b"
HASH_TABLE_SIZE = 176           # 168 bytes of table padded to a multiple of 16


class OvmfError(ValueError):
    pass


def guid_bytes(text):
    return uuid.UUID(text).bytes_le


def parse_guid_table(image):
    """{guid string: data bytes} from the image's GUID table; {} when it has none."""
    n = len(image)
    if n < 0x32:
        return {}
    footer = image[n - 0x30:n - 0x20]
    if footer != guid_bytes(FOOTER_GUID):
        return {}
    total = struct.unpack_from("<H", image, n - 0x32)[0]
    body_len = total - 16 - 2
    end = n - 0x32
    if body_len < 0 or body_len > end:
        raise OvmfError(f"OVMF GUID table length {total} does not fit the image")
    table = image[end - body_len:end]
    entries = {}
    pos = len(table)
    while pos >= 18:
        guid = uuid.UUID(bytes_le=bytes(table[pos - 16:pos]))
        length = struct.unpack_from("<H", table, pos - 18)[0]
        if length < 18 or length > pos:
            raise OvmfError(f"OVMF GUID table entry {guid} has a bad length {length}")
        entries[str(guid)] = bytes(table[pos - length:pos - 18])
        pos -= length
    return entries


def _area(entries, guid):
    data = entries.get(guid)
    if data is None or len(data) < 8:
        return None
    base, size = struct.unpack_from("<II", data)
    if not base or not size:
        return None
    return base, size


def secret_area(image):
    """(base, size) of the launch-secret area, or None (no AmdSev build)."""
    return _area(parse_guid_table(image), SECRET_AREA_GUID)


def hashes_area(image):
    """(base, size) of the kernel-hashes area, or None."""
    return _area(parse_guid_table(image), HASHES_AREA_GUID)


def sev_es_reset_block(image):
    """(CS base, IP) where SEV-ES application processors start, or None."""
    data = parse_guid_table(image).get(SEV_ES_RESET_GUID)
    if data is None or len(data) < 4:
        return None
    value = struct.unpack_from("<I", data)[0]
    return (value >> 16) << 16, value & 0xFFFF


def kernel_hashes_table(kernel, initrd=b"", cmdline=""):
    """The 176-byte table QEMU writes for kernel-hashes=on (SEV-FACTS layout).

    The command line is hashed with its trailing NUL ("\\0" when empty); a
    missing initrd hashes as the empty string.
    """
    cmd = (cmdline.encode() if isinstance(cmdline, str) else bytes(cmdline)) + b"\0"
    out = bytearray()
    out += guid_bytes(HASH_TABLE_GUID) + struct.pack("<H", 168)
    for guid, data in ((CMDLINE_GUID, cmd), (INITRD_GUID, initrd), (KERNEL_GUID, kernel)):
        out += guid_bytes(guid) + struct.pack("<H", 50) + hashlib.sha256(data).digest()
    out += bytes(HASH_TABLE_SIZE - len(out))
    return bytes(out)


def secret_table(entries):
    """An efi_secret-format table from {guid string: bytes}, padded to 16 bytes."""
    body = bytearray()
    for guid, data in entries.items():
        body += guid_bytes(guid) + struct.pack("<I", 20 + len(data)) + bytes(data)
    table = bytearray(guid_bytes("1e74f542-71dd-4d66-963e-ef4287ff173b"))
    table += struct.pack("<I", 20 + len(body)) + body
    table += bytes(-len(table) % 16)
    return bytes(table)
