"""The guest owner's side of an SEV launch: what a remote owner runs, away from the host.

It never imports the emulator (pysev.cpu, pysev.machine, pysev.mem): only the
SEV byte formats and crypto of pysev.sev.firmware and pysev.sev.ovmf, so the
same code would check a real AMD machine's launch.

  keys      generate_keys, write_keys, read_key         TIK and TEK files
  measure   launch_digest, parse_measurement,           the expected digest and the
            LaunchContext, verify_measurement            check of a measurement
  secret    build_secret_table, package_secret,         efi_secret table and the
            inject_arguments                             LAUNCH_SECRET packet
  cli       ``pysev owner keygen|digest|verify|secret``

Names are imported lazily so that ``pysev --help`` does not load the crypto.
"""

from .common import OwnerError  # noqa: F401

_EXPORTS = {
    "keys": ("generate_keys", "write_keys", "read_key"),
    "measure": ("launch_digest", "parse_measurement", "read_measurement_file", "LaunchContext",
                "context_from_query_sev", "read_query_sev_file", "expected_measure",
                "verify_measurement", "MEASUREMENT_LEN"),
    "secret": ("build_secret_table", "package_secret", "inject_arguments", "parse_guid"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["OwnerError", *_WHERE]


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pysev.owner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
