"""Inputs for the SEV tests: a small synthetic firmware image with an OVMF-style
GUID table, transport key files, and guest-owner helpers.

The synthetic image (64 KiB by default) is all zeros except for a HLT at the
reset vector (flash_end - 0x10) and the GUID table that ends at
flash_end - 0x20: the entries (secret area, hashes area), then the u16 total
length and the footer GUID.  Each entry is [data][u16 entry length][GUID],
GUIDs in the little-endian byte order, exactly as OVMF's AmdSev build lays
them out (SEV-FACTS.md, "OVMF metadata").
"""

import base64
import hashlib
import struct
import uuid

FOOTER_GUID = "96b582de-1fb2-45f7-baea-a366c55a082d"
SECRET_AREA_GUID = "4c2eb361-7d9b-4cc3-8081-127c90d3d294"
HASHES_AREA_GUID = "7255371f-3a3b-4b04-927b-1da6efa8d454"

OVMF = "/usr/share/ovmf/OVMF.fd"

# the areas the synthetic image declares: inside RAM for any -m of 16 MiB or more
SECRET_BASE, SECRET_SIZE = 0x80B000, 0x1000
HASHES_BASE, HASHES_SIZE = 0x80C000, 0x400
IMAGE_SIZE = 0x10000
RAM = "16M"

# recognisable transport keys (each byte pattern is easy to look for)
TIK = bytes.fromhex("5a17c0de" * 4)
TEK = bytes.fromhex("7e4b00b5" * 4)


def le_guid(text):
    return uuid.UUID(text).bytes_le


def guid_entry(guid, data):
    return bytes(data) + struct.pack("<H", len(data) + 18) + le_guid(guid)


def synthetic_image(size=IMAGE_SIZE, secret=(SECRET_BASE, SECRET_SIZE),
                    hashes=(HASHES_BASE, HASHES_SIZE)):
    """A firmware image of *size* bytes whose GUID table declares the two areas."""
    body = b""
    if secret is not None:
        body += guid_entry(SECRET_AREA_GUID, struct.pack("<II", *secret))
    if hashes is not None:
        body += guid_entry(HASHES_AREA_GUID, struct.pack("<II", *hashes))
    table = body + struct.pack("<H", len(body) + 18) + le_guid(FOOTER_GUID)
    image = bytearray(size)
    end = size - 0x20
    image[end - len(table):end] = table
    image[size - 0x10] = 0xF4                       # hlt at the reset vector
    image[size - 0x0F:size - 0x0D] = b"\xeb\xfd"    # jmp back to the hlt
    return bytes(image)


def fake_bzimage(setup_sects=4, payload=0x2000):
    """A small file with a valid bzImage setup header (boot protocol 2.15), enough for
    pysev's direct-boot loader; its protected-mode part is a recognisable pattern."""
    image = bytearray((setup_sects + 1) * 512 + payload)
    image[0x1F1] = setup_sects
    struct.pack_into("<H", image, 0x1FE, 0xAA55)          # boot_flag
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x020F)          # protocol 2.15
    image[0x211] = 0x01                                   # loadflags: LOADED_HIGH
    struct.pack_into("<I", image, 0x214, 0x100000)        # code32_start
    struct.pack_into("<I", image, 0x22C, 0x7FFFFFFF)      # initrd_addr_max
    struct.pack_into("<I", image, 0x230, 0x200000)        # kernel_alignment
    image[0x234] = 1                                      # relocatable_kernel
    image[0x235] = 21                                     # min_alignment
    struct.pack_into("<I", image, 0x238, 2047)            # cmdline_size
    struct.pack_into("<Q", image, 0x258, 0x1000000)       # pref_address
    struct.pack_into("<I", image, 0x260, 0x100000)        # init_size
    start = (setup_sects + 1) * 512
    image[start:] = bytes((i * 13 + 5) & 0xFF for i in range(payload))
    return bytes(image)


def write_key(path, key):
    path.write_bytes(key)
    return str(path)


def sev_args(tmp_path, image=None, *, extra="", tik=TIK, tek=TEK, ram=RAM, more=()):
    """`pysev run` arguments for an SEV guest on *image* (a path) or Debian's OVMF."""
    tik_path = write_key(tmp_path / "tik.bin", tik)
    tek_path = write_key(tmp_path / "tek.bin", tek)
    obj = f"sev-emulated,id=sev0,tik={tik_path},tek={tek_path}" + (f",{extra}" if extra else "")
    return ["-bios", str(image or OVMF), "-m", ram, "-serial", "null",
            "-object", obj, "-machine", "q35,memory-encryption=sev0", *more]


def b64(data):
    return base64.b64encode(bytes(data)).decode()


def sha256(data):
    return hashlib.sha256(data).digest()
