"""Basic block -> Python function.

A block is decoded, each instruction is handed to its family's emitter, a
backward pass drops lazy-flag assignments that nobody can observe, and the
statements are put together into one function that is compiled once and
cached.  The function runs the block (looping in place when the block
branches back to its own start), keeps RIP, flags and the instruction count
exact at every exit, and on an exception makes the state precise: RIP at
the faulting instruction, flags as before it.
"""

import bisect

from decoder import decode
from . import flags as F
from .emit import EMITTERS, Emitter
from .faults import GuestFault, RepStep, UD

MAX_BLOCK = 64


class Block:
    __slots__ = ("fn", "start", "lin", "n", "end_ip", "source", "insns",
                 "pages", "key", "loops")

    def __repr__(self):
        return f"<Block {self.start:#x} {self.n} insns>"


def _fault_index(lines, lineno):
    return max(bisect.bisect_right(lines, lineno) - 1, 0)


def translate(code, ip, mode, max_insns=MAX_BLOCK, page_limit=None, namespace=None,
              stop_at=None, truncated=False):
    """Translate the block whose first instruction is at IP `ip`.

    `code` holds the bytes from `ip` on (at least up to page_limit + 15, unless
    `truncated`: then the code ends where the next page could not be fetched
    and an instruction running past the end is left for a later block, which
    faults on it).  Decoding stops before an instruction starting at or past
    `page_limit` bytes from ip, or at `stop_at` (an IP), or after max_insns.
    Returns (Block, list of Insn).
    """
    insns = []
    offset = 0
    for ins in decode(code, ip, mode.bits):
        if insns and (page_limit is not None and offset >= page_limit):
            break
        if insns and stop_at is not None and ins.ip == stop_at:
            break
        if insns and ins.invalid and truncated and offset + 15 > len(code):
            break
        insns.append(ins)
        offset += ins.length
        if ins.invalid or len(insns) >= max_insns:
            break
        if ins.flow != "next":
            break
        em = EMITTERS.get(ins.mnem)
        if em is None or getattr(em, "ends_block", False):
            break
    return build(insns, ip, mode, namespace)


def build(insns, start, mode, namespace):
    e = Emitter(mode)
    chunks = []
    for ins in insns:
        c = e.begin(ins)
        em = None if ins.invalid else EMITTERS.get(ins.mnem)
        if em is None:
            detail = ("undecodable instruction bytes " + ins.raw.hex() if ins.invalid
                      else f"instruction not implemented: {ins.text}")
            e.raise_fault(UD, detail=detail)
        else:
            em(e, ins)
        chunks.append(c)
        if c.end is not None:
            break
    _drop_dead_flags(chunks)
    return _assemble(chunks, start, mode, e, namespace)


def _drop_dead_flags(chunks):
    live = True                                   # everything is live at block exit
    for c in reversed(chunks):
        if c.store:
            live = True                          # a store may end the block (SMC)
        if c.flag_lines and not live:
            c.flag_lines = []
        kept = bool(c.flag_lines)
        if c.may_fault or c.reads_flags or (kept and c.flag_reads_prior):
            live = True
        elif kept and c.flag_full:
            live = False


def _assemble(chunks, start, mode, e, namespace):
    insns = [c.ins for c in chunks]
    last = chunks[-1]
    loops = (last.end is not None and last.end[0] in ("jump", "branch")
             and isinstance(last.end[-1], int) and last.end[-1] == start)
    L = len(chunks)
    flags_used = e.uses_flags
    store_flags = "cpu.fo = fo; cpu.fa = fa; cpu.fb = fb; cpu.fr = fr" if flags_used else ""

    body = []               # (indent, text)
    ind = 3 if loops else 2

    def exit_to(indent, rip, count):
        body.append((indent, f"cpu.rip = {rip}"))
        if store_flags:
            body.append((indent, store_flags))
        body.append((indent, f"return {count}"))

    def loop_back(indent):
        body.append((indent, f"n += {L}"))
        body.append((indent, f"if n + {L} <= budget: continue"))
        exit_to(indent, f"{start:#x}", "n")

    starts = []
    for k, c in enumerate(chunks):
        starts.append(len(body))
        ins = c.ins
        body.append((ind, f"# {ins.ip:#x}: {ins.text}"))
        for text in c.lines:
            # emitters may indent their own lines with 4-space steps
            stripped = text.lstrip(" ")
            extra = (len(text) - len(stripped)) // 4
            body.append((ind + extra, stripped))
        for text in c.flag_lines:
            body.append((ind, text))
        end = c.end
        count = f"n + {k + 1}" if loops else f"{k + 1}"
        if end is None:
            if c.store and k + 1 < L:
                body.append((ind, "if SMC[0]:"))
                body.append((ind + 1, "SMC[0] = False"))
                exit_to(ind + 1, f"{ins.next_ip:#x}", count)
            if k + 1 == L:
                exit_to(ind, f"{ins.next_ip:#x}", count)
        elif end[0] == "jump":
            target = end[1]
            if loops and target == start:
                loop_back(ind)
            else:
                tgt = f"{target:#x}" if isinstance(target, int) else target
                exit_to(ind, tgt, count)
        elif end[0] == "branch":
            cond, target = end[1], end[2]
            body.append((ind, f"if {cond}:"))
            if loops and target == start:
                loop_back(ind + 1)
            else:
                tgt = f"{target:#x}" if isinstance(target, int) else target
                exit_to(ind + 1, tgt, count)
            exit_to(ind, f"{ins.next_ip:#x}", count)
        elif end[0] == "next":
            exit_to(ind, f"{ins.next_ip:#x}", count)
        elif end[0] == "halt":
            body.append((ind, "cpu.halted = cpu.exit_request = True"))
            exit_to(ind, f"{ins.next_ip:#x}", count)
        elif end[0] == "helper":
            # a helper set CS:RIP (far transfer, IRET, SYSCALL ...)
            if store_flags:
                body.append((ind, store_flags))
            body.append((ind, f"return {count}"))
        elif end[0] == "raise":
            pass

    head = ["def block(cpu, budget):",
            "    R = cpu.regs",
            "    SB = cpu.seg_base"]
    if flags_used:
        head.append("    fo = cpu.fo; fa = cpu.fa; fb = cpu.fb; fr = cpu.fr")
    if loops:
        head.append("    n = 0")
    head.append("    try:")
    if loops:
        head.append("        while True:")
    first_line = len(head) + 1            # 1-based line number of body[0]
    lines_of_insn = [first_line + s for s in starts]
    src_lines = head + ["    " * i + t for i, t in body]
    ips = tuple(c.ins.ip for c in chunks)
    handler = ["    except Exception:",
               f"        k = _fault_index({tuple(lines_of_insn)!r}, _sys.exc_info()[2].tb_lineno)",
               f"        cpu.rip = {ips!r}[k]"]
    if flags_used:
        handler.append("        " + store_flags.replace("; ", "\n        "))
    handler.append(f"        cpu.fault_count = {'n + k' if loops else 'k'}")
    handler.append("        raise")
    src_lines += handler
    source = "\n".join(src_lines) + "\n"

    glob = namespace if namespace is not None else dict(BASE_NAMESPACE)
    local_ns = {}
    exec(compile(source, f"<block {start:#x}>", "exec"), glob, local_ns)
    fn = local_ns["block"]

    blk = Block()
    blk.fn = fn
    blk.start = start
    blk.n = L
    blk.end_ip = insns[-1].next_ip
    blk.source = source
    blk.insns = insns
    blk.loops = loops
    return blk


# names every block needs, independent of the CPU instance
BASE_NAMESPACE = {
    "GuestFault": GuestFault,
    "RepStep": RepStep,
    "FLAGS": F.FLAGS,
    "CARRY": F.CARRY,
    "COND": F.COND,
    "PARITY": F.PARITY,
    "_fault_index": _fault_index,
    "_sys": __import__("sys"),
}
