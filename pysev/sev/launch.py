"""The SEV launch as QEMU runs it, against the emulated firmware.

Sequence (target/i386/sev.c and hw/i386/pc_sysfw_ovmf.c in QEMU):
  machine creation   LAUNCH_START (policy, handle, transport keys)
                     LAUNCH_UPDATE_DATA over the whole firmware image
                     with kernel-hashes=on: the 176-byte hashes table, written
                     into OVMF's hashes area, then LAUNCH_UPDATE_DATA over it
  machine-init-done  LAUNCH_MEASURE: state launch-secret
  (paused: the guest owner reads the measurement and injects secrets)
  first run / cont   LAUNCH_FINISH: state running, migration blocked

The messages of QMP errors are QEMU's where the situation is the same.
"""

import base64
import binascii

from . import ovmf
from .firmware import (SevGuestContext, SevFirmwareError, STATE_NAMES, STATE_SHORT,
                       LUPDATE, LSECRET, POLICY_ES)

API_MAJOR, API_MINOR, BUILD_ID = 1, 55, 0
MIGRATION_BLOCKER = "SEV: Migration is not implemented"


def _b64(text):
    """Strict base64 decoding; None (like an empty result) when it is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


class SevError(Exception):
    """A launch or QMP-level error; the message is the one the user sees."""


class SevLaunch:
    """One SEV guest's launch: the configuration object, the firmware context, memory."""

    def __init__(self, obj, mem, image, image_base, kernel=None, initrd=b"", cmdline="",
                 cpu_cbitpos=51, cpu_reduced_bits=1, phys_bits=48):
        self.obj = obj
        self.mem = mem
        self.image = image
        self.image_base = image_base
        self.cbitpos = obj.get("cbitpos") if obj.get("cbitpos") is not None else cpu_cbitpos
        self.reduced_phys_bits = (obj.get("reduced-phys-bits")
                                  if obj.get("reduced-phys-bits") is not None
                                  else cpu_reduced_bits)
        usable = phys_bits - self.reduced_phys_bits
        if self.reduced_phys_bits >= phys_bits:
            raise SevError(f"sev-emulated: reduced-phys-bits={self.reduced_phys_bits} leaves no "
                           f"usable physical address bits (the CPU has {phys_bits})")
        if self.cbitpos < usable:
            raise SevError(f"sev-emulated: cbitpos={self.cbitpos} falls inside the usable "
                           f"physical address bits 0 to {usable - 1} (the CPU has {phys_bits} "
                           f"address bits, reduced-phys-bits={self.reduced_phys_bits})")
        for name in ("dh-cert-file", "session-file"):
            if obj.get(name):
                raise SevError(f"sev-emulated: {name} is not supported yet: give the transport "
                               "keys with tik= and tek=")
        policy = obj.get("policy")
        if policy & POLICY_ES:
            raise SevError(f"sev-emulated: policy {policy:#x} asks for SEV-ES, which is not "
                           "emulated yet")
        self.ctx = SevGuestContext(API_MAJOR, API_MINOR, BUILD_ID)
        self.kernel, self.initrd, self.cmdline = kernel, initrd, cmdline
        self.migration_blockers = []
        self._measure_blob = None            # MEASURE || MNONCE from LAUNCH_MEASURE
        self._started = False

    # ---- the launch sequence ------------------------------------------------------------
    def start(self):
        """LAUNCH_START and the measured updates, at machine creation."""
        tik, tek = self.obj.transport_keys()
        handle = self.obj.get("handle") or 1
        try:
            self.ctx.launch_start(self.obj.get("policy"), tik, tek, handle)
        except SevFirmwareError as exc:
            raise SevError(f"sev_launch_start: LAUNCH_START failed: {exc}") from None
        self.ctx.launch_update_data(self.image, self.image_base)
        if self.obj.get("kernel-hashes") and self.kernel is not None:
            entries = ovmf.parse_guid_table(self.image)
            if ovmf.HASHES_AREA_GUID not in entries:
                raise SevError("SEV: kernel specified but guest firmware has no hashes table GUID")
            table = ovmf.kernel_hashes_table(self.kernel, self.initrd or b"", self.cmdline or "")
            area = ovmf.hashes_area(self.image)
            base, size = area if area is not None else (0, 0)
            if size < len(table):
                raise SevError(f"SEV: guest firmware hashes table area is invalid "
                               f"(base={base:#x} size={size:#x})")
            region = self.mem.region_at(base)
            if region is None or region.kind != "ram" or base + len(table) > region.end:
                raise SevError("SEV: cannot map hashes table guest memory area")
            self.mem.load(base, table)
            self.ctx.launch_update_data(table, base)
        self._started = True

    def machine_init_done(self):
        if self.ctx.state == LUPDATE:
            self._measure_blob = self.ctx.launch_measure()

    def vm_running(self):
        """The first transition to running: LAUNCH_FINISH."""
        if self.ctx.state in (LUPDATE, LSECRET):
            self.ctx.launch_finish()
            self.migration_blockers.append(MIGRATION_BLOCKER)

    # ---- QMP ------------------------------------------------------------------------------
    @property
    def state(self):
        return STATE_NAMES[self.ctx.state]

    def query_sev(self):
        return {"enabled": True, "api-major": API_MAJOR, "api-minor": API_MINOR,
                "build-id": BUILD_ID, "policy": self.ctx.policy, "state": self.state,
                "handle": self.ctx.handle, "sev-type": "sev"}

    def query_launch_measure(self):
        if self._measure_blob is None or self.ctx.state < LSECRET:
            raise SevError("SEV launch measurement is not available")
        return {"data": base64.b64encode(self._measure_blob).decode()}

    def inject_secret(self, packet_header, secret, gpa=None):
        """sev-inject-launch-secret: verify, decrypt, write; nothing is written on failure."""
        if self.ctx.state != LSECRET:
            raise SevError(f"SEV: Not in correct state. (LSECRET) {self.ctx.state:x}")
        header = _b64(packet_header)
        if not header:
            raise SevError("SEV: Failed to decode sequence header")
        data = _b64(secret)
        if not data:
            raise SevError("SEV: Failed to decode data")
        if gpa is None:
            area = ovmf.secret_area(self.image)
            if area is None:
                raise SevError("SEV: no secret area found in OVMF, gpa must be specified.")
            gpa, size = area
            if len(data) > size:
                raise SevError(f"SEV: secret of {len(data)} bytes does not fit OVMF's secret "
                               f"area ({size} bytes)")
        region = self.mem.region_at(gpa)
        end = self.mem.region_at(gpa + max(len(data), 1) - 1)
        if region is None or region.kind != "ram" or end is not region:
            raise SevError(f"SEV: Failed to calculate HVA for GPA {gpa:#x}")
        try:
            plain = self.ctx.launch_secret(header, data)
        except SevFirmwareError as exc:
            raise SevError(f"SEV: failed to inject secret: {exc}") from None
        self.mem.write_bytes(gpa, plain)
        return gpa, len(plain)

    def state_name_short(self):
        return STATE_SHORT[self.ctx.state]
