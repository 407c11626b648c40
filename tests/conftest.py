"""Shared helpers for the pysev test-suite.

* ``assemble(src, mode)``: nasm source -> (bytes, labels).  The source is
  assembled with ``bits <mode>`` and ``org CODE``; results are memoised in
  memory and on disk under ``tests/.asmcache`` (keyed by a hash of the source,
  the mode and the nasm version).
* ``run_code(src, mode=64, regs=..., mem=..., flags=...)``: build an Emulator
  with the standard memory layout below, load the code at ``CODE``, run it to
  the end of the code and return the emulator.  A ``hlt`` byte is placed right
  after the code (so block translation stops there); it is never executed.
* ``run_fault(...)``: like ``run_code`` but the run must raise GuestException;
  returns ``(emu, exc)``.
* ``flags_of(emu)`` / ``assert_flags(emu, {"CF": 1, ...})``; ``expect_flags("CF ZF",
  defined)`` turns a "flags set" string into such a dict; ``flags_value("CF ZF")``
  gives an rflags value.  ``GUEST_FLAGS`` + ``assert_guest_flags`` check the
  flags as the guest itself sees them (pushfq / setcc in a following block).
* ``CC``: truth tables of the 16 condition codes over CF/PF/ZF/SF/OF.

``run_code(..., emu=emu)`` reuses an emulator (much faster for loops over
inputs); the code is only rewritten when it differs from what the helper last
loaded, so do not reuse an emulator for code that modifies itself.

Standard memory layout (identical in all modes, all below 64 KiB so that
16-bit code with zero segment bases can reach everything)::

    0x00000 - 0x1ffff   RAM (zero filled)
    CODE  = 0x01000     code (at most 0x3000 bytes)
    DATA  = 0x04000     scratch data area (0x4000 - 0xbfff)
    STACK = 0x0ff00     initial rsp/esp/sp (stack region 0xc000 - 0xffff)
    UNMAPPED = 0x800000 nothing mapped there
"""

import functools
import sys
import hashlib
import os
import re
import subprocess
import tempfile

import pytest

# the differential tests import their harness modules (diffharness, forms) by name;
# one conftest for the whole tree keeps `from conftest import ...` unambiguous
_DIFF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "diff")
if _DIFF not in sys.path:
    sys.path.insert(0, _DIFF)

CODE = 0x1000
CODE_MAX = 0x3000
DATA = 0x4000
STACK = 0xFF00
RAM_SIZE = 0x20000
UNMAPPED = 0x800000
MAX_INSNS = 200_000

NASM = "/usr/bin/nasm"
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".asmcache")

# flag bit positions
FLAG_BITS = {"CF": 0, "PF": 2, "AF": 4, "ZF": 6, "SF": 7, "TF": 8, "IF": 9, "DF": 10, "OF": 11}
STATUS = ("CF", "PF", "AF", "ZF", "SF", "OF")


def _nasm_version():
    try:
        return subprocess.run([NASM, "-v"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return "?"


_NASM_VERSION = None


def parse_nasm_map(text, column="virtual"):
    """{label: address} from a nasm map file's symbol table ("real" or "virtual" column)."""
    group = {"real": 1, "virtual": 2}[column]
    labels = {}
    in_syms = False
    for line in text.splitlines():
        if line.startswith("Real") and "Name" in line:
            in_syms = True
            continue
        if in_syms:
            m = re.match(r"\s*([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+(\S+)\s*$", line)
            if m:
                labels[m.group(3)] = int(m.group(group), 16)
    return labels


@functools.lru_cache(maxsize=None)
def assemble(src, mode=64, org=CODE):
    """Assemble nasm source; returns (code_bytes, {label: address})."""
    global _NASM_VERSION
    if _NASM_VERSION is None:
        _NASM_VERSION = _nasm_version()
    key = hashlib.sha256(f"{_NASM_VERSION}\0{mode}\0{org}\0{src}".encode()).hexdigest()[:32]
    cbin = os.path.join(CACHE_DIR, key + ".bin")
    cmap = os.path.join(CACHE_DIR, key + ".map")
    try:
        with open(cbin, "rb") as f:
            code = f.read()
        with open(cmap) as f:
            labels = parse_nasm_map(f.read())
        return code, labels
    except OSError:
        pass
    with tempfile.TemporaryDirectory(prefix="pysev-asm-") as tmp:
        asm = os.path.join(tmp, "t.asm")
        out = os.path.join(tmp, "t.bin")
        mapf = os.path.join(tmp, "t.map")
        with open(asm, "w") as f:
            f.write(f"bits {mode}\norg {org:#x}\n[map symbols {mapf}]\n{src}\n__end__:\n")
        r = subprocess.run([NASM, "-f", "bin", "-w-all", "-o", out, asm], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"nasm failed:\n{r.stderr}\n--- source ---\n{src}")
        with open(out, "rb") as f:
            code = f.read()
        with open(mapf) as f:
            maptext = f.read()
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        for path, data, mode_ in ((cbin, code, "wb"), (cmap, maptext, "w")):
            tmpname = f"{path}.{os.getpid()}.tmp"
            with open(tmpname, mode_) as f:
                f.write(data)
            os.replace(tmpname, path)
    except OSError:  # pragma: no cover - read-only checkout
        pass
    return code, parse_nasm_map(maptext)


def labels(src, mode=64):
    return assemble(src, mode)[1]


def _api():
    from pysev import api

    return api


def flag_reg(mode):
    return "rflags" if mode == 64 else "eflags"


def make_emu(mode=64, **kw):
    api = _api()
    emu = api.Emulator(mode=mode, **kw)
    emu.mem_map(0, RAM_SIZE)
    return emu


def setup(src, mode=64, regs=None, mem=None, flags=None, emu=None, **kw):
    """Create (or reuse) an emulator, load the code and registers; returns (emu, code)."""
    code, _ = assemble(src, mode)
    assert len(code) <= CODE_MAX, "test code too large"
    if emu is None:
        emu = make_emu(mode, **kw)
    try:
        loaded = emu._pysev_test_loaded
    except AttributeError:
        loaded = None
    if loaded != code:
        emu.mem_write(CODE, code + b"\xf4")
        try:
            emu._pysev_test_loaded = code
        except AttributeError:
            pass
    if mode == 16:
        for s in ("cs", "ds", "es", "ss"):
            emu.reg_write(s, 0)
        emu.reg_write("sp", STACK)
    elif mode == 32:
        emu.reg_write("esp", STACK)
    else:
        emu.reg_write("rsp", STACK)
    if flags is not None:
        emu.reg_write(flag_reg(mode), flags | 2)
    for addr, data in (mem or {}).items():
        emu.mem_write(addr, bytes(data))
    for name, value in (regs or {}).items():
        emu.reg_write(name, value)
    return emu, code


def run_code(src, mode=64, regs=None, mem=None, flags=None, until=None, count=None, emu=None, **kw):
    """Assemble `src`, run it from CODE to the end of the code, return the emulator.

    `until`: a label name or an address to stop at instead of the end of the code.
    `count`: instruction limit (passed to emu_start); when given the stop reason is not checked.
    """
    emu, code = setup(src, mode, regs, mem, flags, emu, **kw)
    end = CODE + len(code)
    if isinstance(until, str):
        until = labels(src, mode)[until]
    stop = end if until is None else until
    if count is None:
        emu.emu_start(CODE, stop, count=MAX_INSNS)
        assert emu.stop_reason in ("until", "hlt"), f"stopped because of {emu.stop_reason!r}"
        if emu.stop_reason == "hlt":
            assert emu.reg_read("rip" if mode == 64 else "eip") != end + 1, "ran past the end of the code"
    else:
        emu.emu_start(CODE, stop, count=count)
    return emu


def run_fault(src, mode=64, regs=None, mem=None, flags=None, vector=None, **kw):
    """Run code that must raise GuestException; returns (emu, exc)."""
    api = _api()
    emu, code = setup(src, mode, regs, mem, flags, **kw)
    with pytest.raises(api.GuestException) as ei:
        emu.emu_start(CODE, CODE + len(code), count=MAX_INSNS)
    exc = ei.value
    if vector is not None:
        assert exc.vector == vector, f"expected vector {vector}, got {exc.vector}"
    return emu, exc


def flags_of(emu, mode=64):
    return emu.reg_read(flag_reg(mode))


def flag_dict(value, names=STATUS):
    return {n: (value >> FLAG_BITS[n]) & 1 for n in names}


def expect_flags(set_flags, defined=STATUS):
    """'CF ZF' + defined flag names -> {name: 0/1} over the defined flags."""
    s = set(set_flags.split()) if isinstance(set_flags, str) else set(set_flags)
    assert s <= set(defined), (s, defined)
    return {n: int(n in s) for n in defined}


def assert_flags(emu, expected, mode=64):
    """expected: dict flag name -> 0/1 (only these flags are compared)."""
    actual = flag_dict(flags_of(emu, mode), expected.keys())
    assert actual == dict(expected), f"flags: got {actual}, expected {dict(expected)}"


def flags_value(set_flags):
    """'CF ZF' -> rflags integer (with reserved bit 1 set)."""
    v = 2
    for n in set_flags.split() if isinstance(set_flags, str) else set_flags:
        v |= 1 << FLAG_BITS[n]
    return v


def mask(bits):
    return (1 << bits) - 1


# condition code -> 32-bit truth table; bit i is the condition's value when
# CF, PF, ZF, SF, OF = bits 0, 1, 2, 3, 4 of i.
CC = {
    "o": 0xffff0000,
    "no": 0x0000ffff,
    "b": 0xaaaaaaaa,
    "ae": 0x55555555,
    "e": 0xf0f0f0f0,
    "ne": 0x0f0f0f0f,
    "be": 0xfafafafa,
    "a": 0x05050505,
    "s": 0xff00ff00,
    "ns": 0x00ff00ff,
    "p": 0xcccccccc,
    "np": 0x33333333,
    "l": 0x00ffff00,
    "ge": 0xff0000ff,
    "le": 0xf0fffff0,
    "g": 0x0f00000f,
}
ALIASES = {"c": "b", "nae": "b", "nb": "ae", "nc": "ae", "z": "e", "nz": "ne", "na": "be", "nbe": "a",
           "pe": "p", "po": "np", "nge": "l", "nl": "ge", "ng": "le", "nle": "g"}


def combo_flags(i):
    names = [n for k, n in enumerate(("CF", "PF", "ZF", "SF", "OF")) if (i >> k) & 1]
    return flags_value(names)


# Code appended after an instruction under test so that the *guest* observes
# the flags: pushfq in the same block, then setcc in the next block (after a
# jump), which exercises the flag consumers of the translator rather than
# only emu.reg_read("rflags").
GUEST_FLAGS = """
    pushfq
    pop r15
    jmp short __gf_next
__gf_next:
    setc r8b
    seto r9b
    setz r10b
    sets r11b
    setp r12b
"""
GUEST_FLAG_REGS = {"CF": "r8b", "OF": "r9b", "ZF": "r10b", "SF": "r11b", "PF": "r12b"}


def assert_guest_flags(emu, expected):
    """check flags captured by GUEST_FLAGS (64-bit mode)."""
    pushed = flag_dict(emu.reg_read("r15"), expected.keys())
    assert pushed == dict(expected), f"pushfq flags: got {pushed}, expected {dict(expected)}"
    got = {n: emu.reg_read(GUEST_FLAG_REGS[n]) for n in expected if n in GUEST_FLAG_REGS}
    exp = {n: v for n, v in expected.items() if n in GUEST_FLAG_REGS}
    assert got == exp, f"setcc flags: got {got}, expected {exp}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def run():
    return run_code


@pytest.fixture
def fault():
    return run_fault
