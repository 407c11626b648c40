"""The emulated SEV firmware (the AMD Secure Processor's guest commands).

It keeps one guest context: its state, policy, handle, the transport keys
(TEK, TIK) and the launch digest, and implements the launch commands as the
AMD SEV API specification describes them:

  LAUNCH_START          UNINIT   -> LUPDATE
  LAUNCH_UPDATE_DATA    LUPDATE     (the plaintext is hashed into the digest now)
  LAUNCH_UPDATE_VMSA    LUPDATE     (SEV-ES)
  LAUNCH_MEASURE        LUPDATE  -> LSECRET
  LAUNCH_SECRET         LSECRET     (MAC verified before a byte is written)
  LAUNCH_FINISH         LSECRET  -> RUNNING  (or LUPDATE -> RUNNING)

Key material never leaves this object: reprs and errors name keys, never
show them.
"""

import hashlib
import hmac
import os
import struct

from Crypto.Cipher import AES
from Crypto.Util import Counter

UNINIT, LUPDATE, LSECRET, RUNNING, SUPDATE, RUPDATE, SENT = range(7)
# QEMU's SevState names (qapi/misc-i386.json)
STATE_NAMES = ("uninit", "launch-update", "launch-secret", "running", "send-update",
               "receive-update", "sent")
STATE_SHORT = ("UNINIT", "LUPDATE", "LSECRET", "RUNNING", "SUPDATE", "RUPDATE", "SENT")

# SEV API status codes (AMD SEV API specification, table "Status Codes")
SUCCESS, INVALID_PLATFORM_STATE, INVALID_GUEST_STATE, INVALID_CONFIG, INVALID_LENGTH = range(5)
POLICY_FAILURE, BAD_SIGNATURE, BAD_MEASUREMENT, INVALID_PARAM = 0x07, 0x0A, 0x0B, 0x16
STATUS_TEXT = {
    INVALID_PLATFORM_STATE: "Platform state is invalid",
    INVALID_GUEST_STATE: "Guest state is invalid",
    INVALID_CONFIG: "Platform configuration is invalid",
    INVALID_LENGTH: "Buffer too small",
    POLICY_FAILURE: "Request is not allowed by guest policy",
    BAD_SIGNATURE: "Bad signature",
    BAD_MEASUREMENT: "Bad measurement",
    INVALID_PARAM: "Invalid parameter",
}

SECRET_HEADER_LEN = 52
MEASURE_LEN = 32
MNONCE_LEN = 16

# Policy bits
POLICY_NODBG, POLICY_NOKS, POLICY_ES, POLICY_NOSEND, POLICY_DOMAIN, POLICY_SEV = (
    1, 2, 4, 8, 16, 32)


class SevFirmwareError(Exception):
    """A firmware command failed with an SEV API status code."""

    def __init__(self, code, detail=""):
        self.code = code
        self.detail = detail
        text = STATUS_TEXT.get(code, "unknown error")
        super().__init__(f"SEV firmware error {code:#x} ({text})" + (f": {detail}" if detail else ""))


def measurement_hmac(tik, api_major, api_minor, build, policy, digest, mnonce):
    """LAUNCH_MEASURE: HMAC-SHA256 keyed with the TIK over the launch context."""
    msg = (bytes([0x04, api_major, api_minor, build]) + struct.pack("<I", policy)
           + digest + mnonce)
    return hmac.new(tik, msg, hashlib.sha256).digest()


def secret_mac(tik, flags, iv, guest_length, trans_data, measure):
    """The MAC a LAUNCH_SECRET packet header carries."""
    msg = (b"\x01" + struct.pack("<I", flags) + iv + struct.pack("<II", guest_length,
                                                                  len(trans_data))
           + trans_data + measure)
    return hmac.new(tik, msg, hashlib.sha256).digest()


def aes_ctr(key, iv, data):
    """AES-128-CTR with `iv` as the whole initial 128-bit counter block."""
    ctr = Counter.new(128, initial_value=int.from_bytes(iv, "big"))
    return AES.new(key, AES.MODE_CTR, counter=ctr).encrypt(data)


class SevGuestContext:
    """One guest's launch, as the SEV firmware keeps it."""

    def __init__(self, api_major=1, api_minor=55, build=0, rng=os.urandom):
        self.api_major, self.api_minor, self.build = api_major, api_minor, build
        self.state = UNINIT
        self.policy = 0
        self.handle = 0
        self._tik = self._tek = None
        self._digest = hashlib.sha256()
        self._final_digest = None      # set when restored from a snapshot
        self._measure = None           # HMAC part of the last LAUNCH_MEASURE
        self._rng = rng
        self.updates = []              # (gpa, length) of each LAUNCH_UPDATE_DATA, for reports
        self.vmsa_count = 0

    def __repr__(self):
        return (f"<SevGuestContext state={STATE_NAMES[self.state]} policy={self.policy:#x} "
                f"handle={self.handle}>")

    def _need_keys(self):
        if self._tik is None:
            raise SevFirmwareError(INVALID_GUEST_STATE, "the guest's transport keys are not "
                                   "here (it was restored from a snapshot, which holds none)")

    def _need(self, *states):
        if self.state not in states:
            raise SevFirmwareError(INVALID_GUEST_STATE,
                                   f"in state {STATE_SHORT[self.state]}")

    # ---- launch commands -------------------------------------------------------------
    def launch_start(self, policy, tik, tek, handle=1):
        self._need(UNINIT)
        if len(tik) != 16 or len(tek) != 16:
            raise SevFirmwareError(INVALID_PARAM, "transport keys must be 16 bytes")
        self.policy = policy & 0xFFFFFFFF
        min_api = ((policy >> 16) & 0xFF, (policy >> 24) & 0xFF)
        if min_api > (self.api_major, self.api_minor):
            raise SevFirmwareError(POLICY_FAILURE, "policy needs a newer firmware API")
        self._tik, self._tek = bytes(tik), bytes(tek)
        self.handle = handle
        self.state = LUPDATE

    def launch_update_data(self, data, gpa=0):
        self._need(LUPDATE)
        self._need_keys()
        self._digest.update(data)
        self.updates.append((gpa, len(data)))

    def launch_update_vmsa(self, vmsa):
        self._need(LUPDATE)
        if len(vmsa) != 4096:
            raise SevFirmwareError(INVALID_LENGTH, "a VMSA is 4096 bytes")
        self._digest.update(vmsa)
        self.vmsa_count += 1

    @property
    def launch_digest(self):
        return self._digest.digest() if self._final_digest is None else self._final_digest

    # ---- restoring a snapshot (pysev.snapshot): the state, never the keys --------------
    def restore_digest(self, digest):
        """The launch digest as saved; no further LAUNCH_UPDATE can extend it."""
        self._final_digest = bytes(digest)

    def restore_measure(self, measure):
        self._measure = None if measure is None else bytes(measure)

    def drop_keys(self):
        self._tik = self._tek = None

    @property
    def has_keys(self):
        return self._tik is not None

    def launch_measure(self, mnonce=None):
        """Returns MEASURE (32 bytes) || MNONCE (16 bytes) and moves to LSECRET."""
        self._need(LUPDATE, LSECRET)
        self._need_keys()
        mnonce = self._rng(MNONCE_LEN) if mnonce is None else bytes(mnonce)
        measure = measurement_hmac(self._tik, self.api_major, self.api_minor, self.build,
                                   self.policy, self.launch_digest, mnonce)
        self._measure = measure
        self.state = LSECRET
        return measure + mnonce

    def launch_secret(self, header, trans_data, guest_length=None):
        """Verify and decrypt a secret packet; returns the plaintext to place in the guest.

        Nothing is returned (so nothing is written) unless the MAC checks out.
        """
        self._need(LSECRET)
        self._need_keys()
        if len(header) != SECRET_HEADER_LEN:
            raise SevFirmwareError(INVALID_LENGTH,
                                   f"packet header is {len(header)} bytes, expected 52")
        flags = struct.unpack_from("<I", header, 0)[0]
        iv = bytes(header[4:20])
        mac = bytes(header[20:52])
        if flags & ~1:
            raise SevFirmwareError(INVALID_PARAM, f"reserved packet flags {flags:#x}")
        if flags & 1:
            raise SevFirmwareError(INVALID_PARAM, "compressed secrets are not supported")
        if guest_length is None:
            guest_length = len(trans_data)
        if not 0 < guest_length <= len(trans_data):
            raise SevFirmwareError(INVALID_LENGTH, "guest length does not fit the data")
        expected = secret_mac(self._tik, flags, iv, guest_length, bytes(trans_data),
                              self._measure)
        if not hmac.compare_digest(expected, mac):
            raise SevFirmwareError(BAD_MEASUREMENT, "packet MAC does not verify")
        return aes_ctr(self._tek, iv, bytes(trans_data))[:guest_length]

    def launch_finish(self):
        self._need(LUPDATE, LSECRET)
        self.state = RUNNING

    @property
    def measurement(self):
        """The 32-byte HMAC of the last LAUNCH_MEASURE, or None."""
        return self._measure
