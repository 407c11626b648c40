#!/usr/bin/env python3
"""Assemble the bundled guest programs with nasm.

    pysev/guests/*.asm          -> pysev/guests/<name>.bin
    benchmarks/workloads/*.asm  -> benchmarks/workloads/<name>.bin

The .bin files are committed, so running pysev needs no nasm; run this after
editing an .asm file.

    python3 tools/build_guests.py                 # rebuild in place
    python3 tools/build_guests.py --out-root DIR  # write DIR/pysev/guests/... instead
    python3 tools/build_guests.py --check         # exit 1 if a committed .bin is stale
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

# source directories, relative to the repository root; each .asm becomes a
# .bin of the same name in the same relative directory under the output root
SOURCE_DIRS = ("pysev/guests", "benchmarks/workloads")


def sources(root=ROOT):
    """All (relative directory, .asm path) pairs, sorted."""
    found = []
    for rel in SOURCE_DIRS:
        for asm in sorted((root / rel).glob("*.asm")):
            found.append((rel, asm))
    return found


def assemble(asm, out, nasm="nasm"):
    """Assemble *asm* into the flat binary *out*; raise RuntimeError on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([nasm, "-f", "bin", "-o", str(out), str(asm)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nasm failed on {asm}:\n{proc.stderr.strip()}")
    return out


def build_all(out_root=ROOT, nasm="nasm", verbose=False):
    """Assemble every guest into *out_root*; return the list of .bin paths written."""
    out_root = pathlib.Path(out_root)
    written = []
    for rel, asm in sources():
        out = out_root / rel / (asm.stem + ".bin")
        assemble(asm, out, nasm)
        if verbose:
            print(f"{asm.relative_to(ROOT)} -> {out} ({out.stat().st_size} bytes)")
        written.append(out)
    return written


def stale(nasm="nasm"):
    """Relative paths of committed .bin files that differ from a fresh build."""
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for out in build_all(tmp, nasm):
            rel = out.relative_to(tmp)
            committed = ROOT / rel
            if not committed.exists() or committed.read_bytes() != out.read_bytes():
                bad.append(str(rel))
    return bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-root", type=pathlib.Path, default=ROOT,
                        help="write the .bin files under this directory (default: the repository)")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a committed .bin differs from a fresh build")
    parser.add_argument("--nasm", default="nasm", help="nasm executable (default: nasm)")
    args = parser.parse_args(argv)
    if shutil.which(args.nasm) is None:
        print(f"build_guests: {args.nasm} not found (apt-get install -y nasm)", file=sys.stderr)
        return 2
    try:
        if args.check:
            bad = stale(args.nasm)
            for rel in bad:
                print(f"stale: {rel}")
            return 1 if bad else 0
        build_all(args.out_root, args.nasm, verbose=True)
    except RuntimeError as exc:
        print(f"build_guests: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
