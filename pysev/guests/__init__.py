"""Guest programs bundled with pysev.

Each guest is a flat binary ``<name>.bin`` assembled with nasm from the
``<name>.asm`` beside it (see ``tools/build_guests.py``); both are installed
with the package, so running a guest needs no assembler.
"""

from importlib import resources


def names():
    """Names of the bundled guests (without the .bin suffix), sorted."""
    return sorted(p.name[:-4] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".bin"))


def load(name):
    """The bytes of the bundled guest *name* (e.g. ``"demo64"``)."""
    return resources.files(__name__).joinpath(name + ".bin").read_bytes()


def source(name):
    """The nasm source text of the bundled guest *name*."""
    return resources.files(__name__).joinpath(name + ".asm").read_text()
