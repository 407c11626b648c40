"""Real firmware on pysev: Debian's OVMF.fd from the reset vector.

    python3 -m benchmarks.firmware [--bios FILE] [--long N] [--repeat N]

Two figures, each from a fresh machine (nothing translated yet):

* **to 64-bit**: wall time from creating the machine to OVMF's first
  instruction in 64-bit mode.  OVMF's reset vector (SEC, ResetVector/) goes
  real mode -> 32-bit protected mode -> builds page tables -> long mode; the
  far jump into 64-bit code is its 27,258th instruction, as in QEMU (the
  trace tests check that count), so the machine runs 27,258 instructions and
  the run checks that the CPU was in 32-bit mode one instruction earlier and
  is in 64-bit mode now.  Machine creation, decoding and translation count.
* **long run**: N instructions (30 million by default) from power-on, as far
  as OVMF's SEC phase goes on pysev (into its LZMA decompressor), in
  instructions per second, with where the CPU got to.

Only pysev runs this: unicorn has no PC machine to boot firmware on, and
vivisect no system mode.
"""

import argparse
import os
import sys
import time

OVMF = "/usr/share/ovmf/OVMF.fd"
TO_64BIT = 27_258               # instructions up to and including the jump into 64-bit code
LONG_RUN = 30_000_000
PROGRESS_EVERY = 10_000_000


class FirmwareBenchError(Exception):
    pass


def machine(bios):
    from pysev import Machine
    return Machine(bios=bios, serial="null")


def time_to_64bit(bios):
    """(seconds, machine) for a fresh machine run to its first 64-bit instruction."""
    start = time.perf_counter()
    m = machine(bios)
    reason = m.run(max_insns=TO_64BIT)
    seconds = time.perf_counter() - start
    if m.cpu.mode.bits != 64 or m.icount != TO_64BIT:
        raise FirmwareBenchError(f"the run ended ({reason}) at instruction {m.icount:,} in "
                                 f"{m.cpu.mode.bits}-bit mode, not at {TO_64BIT:,} in 64-bit "
                                 "mode: not OVMF's reset vector as expected")
    check = machine(bios)
    check.run(max_insns=TO_64BIT - 1)
    if check.cpu.mode.bits == 64:
        raise FirmwareBenchError(f"the CPU was in 64-bit mode before instruction {TO_64BIT}")
    return seconds, m


def long_run(bios, count, progress=None):
    """(seconds, machine, reason) for *count* instructions from power-on."""
    m = machine(bios)
    start = time.perf_counter()
    done, reason = 0, "count"
    while done < count:
        step = min(PROGRESS_EVERY, count - done)
        reason = m.run(max_insns=step)
        done = m.icount
        if progress is not None:
            progress(done, time.perf_counter() - start)
        if reason != "count":
            break
    return time.perf_counter() - start, m, reason


def report(bios, repeat=3, count=LONG_RUN, out=None, err=None):
    """Print the two figures for *bios*; returns 0, or 1 when a check fails or the
    file is missing (then one line on *err* says so)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if not os.path.isfile(bios):
        print(f"firmware: no firmware at {bios} (Debian: apt-get install ovmf); skipped",
              file=err)
        return 1
    try:
        best = min(time_to_64bit(bios)[0] for _ in range(repeat))
        print(f"firmware: {bios}", file=out)
        print(f"firmware: reset vector to the first 64-bit instruction (the "
              f"{TO_64BIT + 1:,}th): {best:.3f} s, best of {repeat}, machine creation and "
              "translation included", file=out)
        if count:
            def progress(done, seconds):
                print(f"firmware: ... {done:,} instructions in {seconds:.1f} s", file=err)
            seconds, m, reason = long_run(bios, count, progress)
            cpu = m.cpu
            print(f"firmware: long run: {m.icount:,} instructions in {seconds:.2f} s = "
                  f"{m.icount / seconds:,.0f} instructions/s; stopped ({reason}) in "
                  f"{cpu.mode.bits}-bit mode at {cpu.seg_sel[1]:04x}:{cpu.rip:x}", file=out)
    except FirmwareBenchError as exc:
        print(f"firmware: check failed: {exc}", file=err)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="Boot real firmware (OVMF) on pysev and "
                                                 "report its speed.")
    parser.add_argument("--bios", default=OVMF, help=f"the firmware image (default {OVMF})")
    parser.add_argument("--long", type=int, default=LONG_RUN, metavar="N",
                        help=f"instructions of the long run (default {LONG_RUN:,}; 0: skip it)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="best of N for the time to 64-bit mode (default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.long < 0:
        parser.error("--repeat must be at least 1 and --long at least 0")
    return report(args.bios, args.repeat, args.long)


if __name__ == "__main__":
    sys.exit(main())
