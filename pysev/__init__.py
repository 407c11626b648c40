"""pysev: a pure-Python, instruction-level model of an x86 CPU running AMD SEV guests.

This stage provides the integer x86 engine (16-, 32- and 64-bit modes) with a
unicorn-style API in :mod:`pysev.api`, simple port-I/O devices in
:mod:`pysev.devices` and the ``pysev`` command line tool in :mod:`pysev.cli`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # pysev.Machine without importing the engine on `import pysev`
    if name in ("Machine", "MachineError"):
        from pysev import machine

        return getattr(machine, name)
    raise AttributeError(f"module 'pysev' has no attribute {name!r}")
