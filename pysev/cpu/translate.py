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

from decoder import decode_one
from . import flags as F
from .emit import EMITTERS, Emitter
from .faults import GuestFault, RepStep, UD

MAX_BLOCK = 64


class Block:
    __slots__ = ("fn", "start", "lin", "n", "end_ip", "ips", "source", "insns",
                 "pages", "key", "loops")

    def __repr__(self):
        return f"<Block {self.start:#x} {self.n} insns>"


def _fault_index(lines, lineno):
    return max(bisect.bisect_right(lines, lineno) - 1, 0)


def translate(code, code_ip, ip, mode, max_insns=MAX_BLOCK, limit_ip=None, namespace=None,
              stop_at=None, truncated=False):
    """Translate the block (a trace) whose first instruction is at IP `ip`.

    `code` holds the bytes of the code page from IP `code_ip` on, plus 15
    bytes of the next page (unless `truncated`: the next page could not be
    fetched, and an instruction running into it is left for a later block,
    which faults on it).  Every instruction of the block starts before
    `limit_ip` (the end of the page).

    The block follows control flow while it stays on the page: through direct
    jumps and calls, past conditional branches (exiting when taken), and
    through a RET whose return address the block itself pushed (a guard exits
    when the stack says otherwise).  It stops at an instruction it already
    holds (a branch back to its start makes it loop in place), at `stop_at`,
    after max_insns, and at anything that changes the mode or needs the
    dispatcher.
    """
    e = Emitter(mode)
    chunks = []
    visited = set()
    returns = []                         # return addresses pushed by calls in this block
    cur = ip

    def usable(target):
        return (isinstance(target, int) and code_ip <= target < limit_ip
                and target not in visited and target != stop_at
                and len(chunks) < max_insns)

    while True:
        off = cur - code_ip
        ins = decode_one(code[off:off + 15] + (b"" if truncated else bytes(15)), cur, mode.bits)
        if ins.invalid and truncated and off + 15 > len(code) and chunks:
            # runs into a page that cannot be fetched: end before it
            chunks[-1].end = chunks[-1].end or ("goto", cur)
            break
        visited.add(cur)
        c = _emit(e, ins)
        chunks.append(c)
        end = c.end
        nxt = None
        if end is None:
            nxt = ins.next_ip
            if not usable(nxt):
                break
            c.end = ("goto", nxt)
        elif end[0] == "jump":
            target = end[1]
            if ins.mnem == "CALL" and isinstance(target, int):
                returns.append(ins.next_ip)
            elif ins.mnem == "RET" and not isinstance(target, int) and returns:
                expect = returns.pop()
                if usable(expect):
                    c.end = ("guard", target, expect)
                    nxt = expect
            if nxt is None and target != ip and usable(target):
                c.end = ("goto", target)
                nxt = target
            if nxt is None:
                break
        elif end[0] == "branch" and end[2] != ip and usable(ins.next_ip):
            c.end = ("exit_if", end[1], end[2])
            nxt = ins.next_ip
        else:
            break
        cur = nxt
    _drop_dead_flags(chunks)
    return _assemble(chunks, ip, mode, e, namespace)


def _emit(e, ins):
    c = e.begin(ins)
    em = None if ins.invalid else EMITTERS.get(ins.mnem)
    if em is None:
        detail = ("undecodable instruction bytes " + ins.raw.hex() if ins.invalid
                  else f"instruction not implemented: {ins.text}")
        e.raise_fault(UD, detail=detail)
    else:
        em(e, ins)
    return c


def _drop_dead_flags(chunks):
    live = True                                   # everything is live at block exit
    for c in reversed(chunks):
        if c.store or (c.end is not None and c.end[0] != "goto"):
            live = True                          # a store may end the block (SMC); an exit
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

    def loop_back(indent, done):
        body.append((indent, f"n += {done}"))
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
        elif end[0] == "goto":
            # the block goes on at end[1] (a jump, call or fall-through it follows)
            target = f"{end[1]:#x}"
            if k + 1 == L:
                exit_to(ind, target, count)
            elif c.store:
                body.append((ind, "if SMC[0]:"))
                body.append((ind + 1, "SMC[0] = False"))
                exit_to(ind + 1, target, count)
        elif end[0] == "guard":
            # a RET predicted to return to end[2]; anything else leaves the block
            body.append((ind, f"if {end[1]} != {end[2]:#x}:"))
            exit_to(ind + 1, end[1], count)
            if k + 1 == L:
                exit_to(ind, f"{end[2]:#x}", count)
        elif end[0] == "exit_if":
            body.append((ind, f"if {end[1]}:"))
            exit_to(ind + 1, f"{end[2]:#x}", count)
            if k + 1 == L:
                exit_to(ind, f"{ins.next_ip:#x}", count)
        elif end[0] == "jump":
            target = end[1]
            if loops and target == start:
                loop_back(ind, k + 1)
            else:
                tgt = f"{target:#x}" if isinstance(target, int) else target
                exit_to(ind, tgt, count)
        elif end[0] == "branch":
            cond, target = end[1], end[2]
            body.append((ind, f"if {cond}:"))
            if loops and target == start:
                loop_back(ind + 1, k + 1)
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
    blk.end_ip = max(i.ip + i.length for i in insns)
    blk.ips = frozenset(i.ip for i in insns)
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
