"""The confidential-guest object types, mirroring QEMU's QOM hierarchy:

    confidential-guest-support            (abstract)
      x86-confidential-guest              (abstract)
        sev-common                        (abstract) sev-device, kernel-hashes,
                                                     cbitpos, reduced-phys-bits
          sev-guest                       dh-cert-file, session-file, legacy-vm-type,
                                          handle, policy
            sev-emulated                  tik, tek
          sev-snp-guest                   declared for a later issue

Why sev-emulated sits under sev-guest (the question QEMU's reviewers asked of
the RFC): the guest sees exactly an SEV guest.  Its launch interface is
sev-guest's: the policy it is launched with, its firmware handle, the guest
owner's session (dh-cert-file and session-file: the way real guest owners
hand over TEK and TIK), and what query-sev reports ("sev-type": "sev",
policy, handle).  Only the back end differs: instead of /dev/sev and KVM, an
emulated SEV firmware runs the launch commands.  So sev-emulated keeps every
property that describes the guest, refuses the two that only configure the
KVM back end (sev-device, legacy-vm-type) with an error saying so, and adds
tik/tek, the one thing emulation needs that hardware does not: transport
keys a guest owner can know without a real platform key exchange.  An SNP
emulation would sit under sev-snp-guest in the same way.
"""

import os
import warnings

from .qom import QObject, Prop, QomError

KEY_LEN = 16


class ConfidentialGuestSupport(QObject, type_name="confidential-guest-support", abstract=True):
    def complete(self):
        pass


class X86ConfidentialGuest(ConfidentialGuestSupport, type_name="x86-confidential-guest",
                           parent="confidential-guest-support", abstract=True):
    pass


def _check_cbitpos(obj, value):
    if not 32 <= value <= 63:
        raise ValueError(f"must be in the range 32 to 63 (got {value})")


def _check_rpb(obj, value):
    if not 1 <= value <= 63:
        raise ValueError(f"must be in the range 1 to 63 (got {value})")


class SevCommon(X86ConfidentialGuest, type_name="sev-common", parent="x86-confidential-guest",
                abstract=True):
    properties = (
        Prop("sev-device", "str", "/dev/sev", "SEV device to use"),
        Prop("kernel-hashes", "bool", False,
             "add kernel hashes to guest firmware for measured Linux boot"),
        Prop("cbitpos", "uint32", None,
             "C-bit location in page table entries (default: the CPU model's)",
             validate=_check_cbitpos),
        Prop("reduced-phys-bits", "uint32", None,
             "number of bits in physical addresses that become unavailable when SEV is "
             "enabled (default: the CPU model's)", validate=_check_rpb),
    )


class SevGuest(SevCommon, type_name="sev-guest", parent="sev-common"):
    properties = (
        Prop("dh-cert-file", "str", None, "guest owners DH certificate (encoded with base64)"),
        Prop("session-file", "str", None, "guest owners session parameters (encoded with base64)"),
        Prop("legacy-vm-type", "OnOffAuto", "auto",
             "use legacy VM type to support SEV-ES guests (KVM back end only)"),
        Prop("handle", "uint32", 0, "SEV firmware handle (0: the firmware assigns one)"),
        Prop("policy", "uint32", 0x1, "SEV guest policy"),
    )


def _refuse_kvm_only(name, why):
    def validate(obj, value):
        raise ValueError(f"does not apply to sev-emulated: {why}")
    return validate


def _read_key(label):
    """apply() for tik/tek: read the 16-byte key file now, all or nothing."""
    def apply(obj, path):
        try:
            with open(path, "rb") as f:
                data = f.read(KEY_LEN + 1)
        except OSError as exc:
            raise QomError(f"Parameter '{label}': cannot read key file '{path}': "
                           f"{exc.strerror or exc}") from None
        if len(data) != KEY_LEN:
            size = os.path.getsize(path)
            raise QomError(f"Parameter '{label}': key file '{path}' must hold exactly "
                           f"{KEY_LEN} bytes, it has {size}")
        obj._keys[label] = data              # only now, with a complete key
    return apply


class SevEmulated(SevGuest, type_name="sev-emulated", parent="sev-guest"):
    properties = (
        Prop("sev-device", "str", None, "not applicable: sev-emulated has no host device",
             validate=_refuse_kvm_only(
                 "sev-device", "it emulates the SEV firmware and opens no host SEV device")),
        Prop("legacy-vm-type", "OnOffAuto", None, "not applicable: a KVM VM-type choice",
             validate=_refuse_kvm_only(
                 "legacy-vm-type", "it selects the KVM VM type and pysev uses no KVM")),
        Prop("tik", "str", None,
             "path to a file holding the 16-byte Transport Integrity Key "
             "(all zeros when not given)", apply=_read_key("tik"), instance=True),
        Prop("tek", "str", None,
             "path to a file holding the 16-byte Transport Encryption Key "
             "(all zeros when not given)", apply=_read_key("tek"), instance=True),
    )

    def __init__(self, obj_id=None):
        self._keys = {}
        super().__init__(obj_id)

    def __repr__(self):
        # keys are never shown; only whether each came from a file
        return (f"<sev-emulated id={self.id!r} policy={self.get('policy'):#x} "
                f"tik={'file' if 'tik' in self._keys else 'zero'} "
                f"tek={'file' if 'tek' in self._keys else 'zero'}>")

    def complete(self):
        for label in ("tik", "tek"):
            if label not in self._keys:
                warnings.warn(f"sev-emulated: no {label} given, using an all-zero "
                              f"{label.upper()} (anyone can forge measurements)", stacklevel=3)

    def transport_keys(self):
        """(TIK, TEK): only the launch code asks for these."""
        return self._keys.get("tik", bytes(KEY_LEN)), self._keys.get("tek", bytes(KEY_LEN))


class SevSnpGuest(SevCommon, type_name="sev-snp-guest", parent="sev-common"):
    """Declared so that the hierarchy is complete; SNP launch comes in a later issue."""
    properties = (
        Prop("policy", "uint64", 0x30000, "SEV-SNP guest policy"),
        Prop("guest-visible-workarounds", "str", None,
             "guest OS visible workarounds (base64, 16 bytes)"),
        Prop("id-block", "str", None, "IMI ID block (base64, 96 bytes)"),
        Prop("id-auth", "str", None, "IMI ID auth structure (base64, up to 4096 bytes)"),
        Prop("author-key-enabled", "bool", False, "the id-auth carries an author key"),
        Prop("vcek-disabled", "bool", False, "guests may not use the VCEK"),
        Prop("host-data", "str", None, "host data for the attestation report (base64, 32 bytes)"),
    )
