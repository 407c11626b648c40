"""AMD SEV: the QOM-like object model, the emulated SEV firmware, OVMF metadata.

pysev.sev is handed memory by the machine and never imports pysev.cpu.
"""
from .qom import QomError, object_new, type_help, parse_object_option, TYPES  # noqa: F401
from . import objects  # noqa: F401  (registers the types)
from .firmware import SevGuestContext, SevFirmwareError  # noqa: F401
