"""String instructions (movs, stos, lods, cmps, scas, ins, outs) with every REP form.

When the CPU single-steps (cpu.rep_one), a REP instruction runs one iteration
per step, as QEMU's -singlestep does: the helper sets cpu.rep_again and the
translated code leaves RIP on the instruction.

Each iteration updates RSI/RDI/RCX before the next one starts, so a fault
in the middle leaves the registers of the completed iterations and RIP at
the instruction: the REP restarts where it stopped, as on hardware.
"""

from decoder.records import ES


def bind_strings(cpu):
    R = cpu.regs

    def setr(n, asize, value):
        if asize == 2:
            R[n] = (R[n] & 0xFFFFFFFFFFFF0000) | (value & 0xFFFF)
        else:
            R[n] = value & (0xFFFFFFFF if asize == 4 else 0xFFFFFFFFFFFFFFFF)

    def setup(size, asize):
        am = (1 << (8 * asize)) - 1
        step = -size if cpu.eflags_rest & 0x400 else size
        return am, step

    def seg_linear(seg, off):
        if cpu.mode.long:
            if seg >= 4:
                return (cpu.seg_base[seg] + off) & 0xFFFFFFFFFFFFFFFF
            return off
        return (cpu.seg_base[seg] + off) & 0xFFFFFFFF

    def string_movs(size, asize, seg, rep):
        am, step = setup(size, asize)
        rd = cpu.namespace[f"rd{size}"]
        wr = cpu.namespace[f"wr{size}"]
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return
            wr(seg_linear(ES, R[7] & am), rd(seg_linear(seg, R[6] & am)))
            setr(6, asize, (R[6] & am) + step)
            setr(7, asize, (R[7] & am) + step)
            if not rep:
                return
            setr(1, asize, c - 1)
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return

    def string_stos(size, asize, rep):
        am, step = setup(size, asize)
        wr = cpu.namespace[f"wr{size}"]
        value = R[0] & ((1 << (8 * size)) - 1)
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return
            wr(seg_linear(ES, R[7] & am), value)
            setr(7, asize, (R[7] & am) + step)
            if not rep:
                return
            setr(1, asize, c - 1)
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return

    def string_lods(size, asize, seg, rep):
        am, step = setup(size, asize)
        rd = cpu.namespace[f"rd{size}"]
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return
            v = rd(seg_linear(seg, R[6] & am))
            if size >= 4:
                R[0] = v
            else:
                m = (1 << (8 * size)) - 1
                R[0] = (R[0] & ~m & 0xFFFFFFFFFFFFFFFF) | v
            setr(6, asize, (R[6] & am) + step)
            if not rep:
                return
            setr(1, asize, c - 1)
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return

    def string_cmps(size, asize, seg, rep):
        """Returns (a, b, a - b) of the last comparison, or None if none ran."""
        am, step = setup(size, asize)
        rd = cpu.namespace[f"rd{size}"]
        last = None
        m = (1 << (8 * size)) - 1
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return last
            a = rd(seg_linear(seg, R[6] & am))
            b = rd(seg_linear(ES, R[7] & am))
            last = (a, b, a - b)
            setr(6, asize, (R[6] & am) + step)
            setr(7, asize, (R[7] & am) + step)
            if not rep:
                return last
            setr(1, asize, c - 1)
            if (rep == "repe") != (((a - b) & m) == 0):
                return last
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return last

    def string_scas(size, asize, rep):
        am, step = setup(size, asize)
        rd = cpu.namespace[f"rd{size}"]
        m = (1 << (8 * size)) - 1
        a = R[0] & m
        last = None
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return last
            b = rd(seg_linear(ES, R[7] & am))
            last = (a, b, a - b)
            setr(7, asize, (R[7] & am) + step)
            if not rep:
                return last
            setr(1, asize, c - 1)
            if (rep == "repe") != (((a - b) & m) == 0):
                return last
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return last

    def string_ins(size, asize, rep):
        am, step = setup(size, asize)
        wr = cpu.namespace[f"wr{size}"]
        port_in = cpu.namespace["port_in"]
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return
            wr(seg_linear(ES, R[7] & am), port_in(R[2] & 0xFFFF, size))
            setr(7, asize, (R[7] & am) + step)
            if not rep:
                return
            setr(1, asize, c - 1)
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return

    def string_outs(size, asize, seg, rep):
        am, step = setup(size, asize)
        rd = cpu.namespace[f"rd{size}"]
        port_out = cpu.namespace["port_out"]
        while True:
            if rep:
                c = R[1] & am
                if not c:
                    return
            port_out(R[2] & 0xFFFF, size, rd(seg_linear(seg, R[6] & am)))
            setr(6, asize, (R[6] & am) + step)
            if not rep:
                return
            setr(1, asize, c - 1)
            if cpu.rep_one and c > 1:
                cpu.rep_again = True
                return

    return {f.__name__: f for f in (string_movs, string_stos, string_lods, string_cmps,
                                     string_scas, string_ins, string_outs)}
