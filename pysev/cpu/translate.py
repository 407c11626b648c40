"""Basic block -> Python function.

A block is decoded, each instruction is handed to its family's emitter, a
backward pass decides where each lazy-flag assignment goes (in place, only
into the exits and fault-handler cases that can observe it, or nowhere;
across the basic blocks the trace joins and, for a block that loops in
place, across its back edge), and the statements are put together into one
function that is compiled once and cached.  The function runs the block
(looping in place when the block branches back to its own start; such a
loop keeps the registers it uses in locals), keeps RIP, registers, flags and
the instruction count exact at every exit, and on an exception makes the
state precise: RIP at the faulting instruction, registers and flags as
before it.
"""

import bisect
import re

from decoder import decode_one
from . import flags as F
from .emit import EMITTERS, Emitter
from .faults import GuestFault, RepStep, UD

MAX_BLOCK = 64

_REG = re.compile(r"\bR\[(\d+)\]")
_R_ANY = re.compile(r"\bR\b")


class Block:
    __slots__ = ("fn", "start", "lin", "n", "end_ip", "ips", "source", "insns",
                 "pages", "key", "loops")

    def __repr__(self):
        return f"<Block {self.start:#x} {self.n} insns>"


def _fault_index(lines, lineno):
    return max(bisect.bisect_right(lines, lineno) - 1, 0)


def translate(code, code_ip, ip, mode, max_insns=MAX_BLOCK, limit_ip=None, namespace=None,
              stop_at=None, truncated=False, cache_regs=True):
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
    last = chunks[-1]
    loops = (last.end is not None and last.end[0] in ("jump", "branch")
             and isinstance(last.end[-1], int) and last.end[-1] == ip)
    _drop_dead_flags(chunks, loops)
    return _assemble(chunks, ip, mode, e, namespace, cache_regs)


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


def _reads_locals(c):
    """Whether chunk c reads the flag locals (fo, fa, fb, fr) before it writes them."""
    return c.reads_flags or bool(c.flag_lines and c.flag_reads_prior)


def _exits_after(c):
    return c.store or (c.end is not None and c.end[0] != "goto")


def _head_needs_flags(chunks):
    """Whether the flags at the start of a looping block are observed (read, or
    stored by an exit or by the fault handler) before the block overwrites them
    all: the liveness that flows across the loop's back edge."""
    for c in chunks:
        if _reads_locals(c) or c.may_fault:
            return True
        if c.flag_lines and c.flag_full:
            return False
        if _exits_after(c):
            return True                          # an exit (or the SMC exit) comes first
    return True


def _drop_dead_flags(chunks, loops=False):
    """Decide, per instruction, where its lazy-flag assignments go.

    Backwards over the block, two kinds of liveness: `live_local` (something
    later in the block reads the flag locals; for a block that loops in place,
    also whatever the loop head needs, as the back edge carries the locals
    there) and `live_exit` (an exit of the block, or the fault handler of an
    instruction that may fault, stores the flags into the CPU before they are
    overwritten).  An instruction's flag lines are

    - kept in place when live_local, or when live_exit and they read other
      locals or values that may change;
    - moved ("sunk", c.flag_sunk) into the exits and the fault handler cases
      that follow them when only live_exit and they use nothing but
      temporaries and literals (these keep their values to the end of the
      pass through the block);
    - dropped when neither.
    """
    live_local = loops and _head_needs_flags(chunks)
    live_exit = True                             # every block ends in an exit
    for c in reversed(chunks):
        c.flag_sunk = False
        if _exits_after(c):
            live_exit = True                     # a store may end the block (SMC); an exit
        if c.flag_lines:
            if live_local:
                pass
            elif live_exit and c.flag_static and not c.flag_reads_prior:
                c.flag_sunk = True
            elif not live_exit:
                c.flag_lines = []
        if _reads_locals(c):
            live_local = True
        elif c.flag_full:
            # c overwrites all flags (whatever became of its lines, nothing after
            # it reads the locals they would have set)
            live_local = False
            live_exit = c.may_fault
        elif c.may_fault:
            live_exit = True


def _cached_registers(chunks):
    """The general registers a looping block may keep in locals (r0 ... r15), or None.

    Only when every register access in its code is R[<number>] and no
    instruction calls a helper (which may read or write cpu.regs): then the
    registers are loaded once on entry and stored back at every exit and in
    the fault handler.  Instructions write registers only after their memory
    accesses, so the locals hold the state before a faulting instruction."""
    regs = set()
    for c in chunks:
        if c.calls:
            return None
        texts = list(c.lines)
        if c.end is not None:
            texts += [str(part) for part in c.end[1:]]
        for text in texts:
            if "cpu." in text or "regs" in text:
                return None
            found = _REG.findall(text)
            if len(found) != len(_R_ANY.findall(text)):
                return None                      # R used otherwise than R[n]
            regs.update(int(n) for n in found)
    return sorted(regs)


def _assemble(chunks, start, mode, e, namespace, cache_regs=True):
    insns = [c.ins for c in chunks]
    last = chunks[-1]
    loops = (last.end is not None and last.end[0] in ("jump", "branch")
             and isinstance(last.end[-1], int) and last.end[-1] == start)
    L = len(chunks)
    flags_used = e.uses_flags
    store_flags = "cpu.fo = fo; cpu.fa = fa; cpu.fb = fb; cpu.fr = fr" if flags_used else ""
    # a block that loops in place keeps the registers it uses in locals
    cached = _cached_registers(chunks) if loops and cache_regs else None
    store_regs = "; ".join(f"R[{n}] = r{n}" for n in cached) if cached else ""

    body = []               # (indent, text)
    ind = 3 if loops else 2
    pending = []            # flag lines moved into the exits (see _drop_dead_flags)

    def exit_to(indent, rip, count):
        if store_regs:
            body.append((indent, store_regs))
        body.append((indent, f"cpu.rip = {rip}"))
        if store_flags:
            for text in pending:
                body.append((indent, text))
            body.append((indent, store_flags))
        body.append((indent, f"return {count}"))

    def loop_back(indent, done):
        body.append((indent, f"n += {done}"))
        body.append((indent, "if n <= last: continue"))     # room for one more pass
        exit_to(indent, f"{start:#x}", "n")

    starts = []
    state_before = []       # per instruction: the sunk flag lines in force before it
    for k, c in enumerate(chunks):
        starts.append(len(body))
        state_before.append(pending)
        ins = c.ins
        body.append((ind, f"# {ins.ip:#x}: {ins.text}"))
        for text in c.lines:
            # emitters may indent their own lines with 4-space steps
            stripped = text.lstrip(" ")
            extra = (len(text) - len(stripped)) // 4
            body.append((ind + extra, stripped))
        if c.flag_sunk:
            pending = c.flag_lines
        elif c.flag_lines or c.flag_full:
            pending = []                    # in place, or overwritten unobserved
            for text in c.flag_lines:
                body.append((ind, text))
        end = c.end
        count = f"n + {k + 1}" if loops else f"{k + 1}"
        smc_test = "if smc:" if c.inline_stores and not c.calls else "if SMC[0]:"
        if end is None:
            if c.store and k + 1 < L:
                body.append((ind, smc_test))
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
                body.append((ind, smc_test))
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
                for text in pending:
                    body.append((ind, text))
                body.append((ind, store_flags))
            body.append((ind, f"return {count}"))
        elif end[0] == "raise":
            pass

    head = ["def block(cpu, budget):",
            "    R = cpu.regs",
            "    SB = cpu.seg_base"]
    if flags_used:
        head.append("    fo = cpu.fo; fa = cpu.fa; fb = cpu.fb; fr = cpu.fr")
    if any(c.inline_stores for c in chunks):
        head.append("    smc = False")
    if loops:
        head.append("    n = 0")
        head.append(f"    last = budget - {L}")
    if cached:
        head.append("    " + "; ".join(f"r{n} = R[{n}]" for n in cached))
    head.append("    try:")
    if loops:
        head.append("        while True:")
    first_line = len(head) + 1            # 1-based line number of body[0]
    lines_of_insn = [first_line + s for s in starts]
    if cached:
        body = [(i, t if t == store_regs else _REG.sub(r"r\1", t)) for i, t in body]
    src_lines = head + ["    " * i + t for i, t in body]
    ips = tuple(c.ins.ip for c in chunks)
    handler = ["    except Exception:",
               f"        k = _fault_index({tuple(lines_of_insn)!r}, _sys.exc_info()[2].tb_lineno)",
               f"        cpu.rip = {ips!r}[k]"]
    if cached:
        handler.append("        " + store_regs)
    if flags_used:
        cases = {}
        for k, lines in enumerate(state_before):
            if lines:
                cases.setdefault(id(lines), (lines, []))[1].append(k)
        word = "if"
        for lines, ks in cases.values():
            handler.append(f"        {word} k in {tuple(ks)!r}:")
            handler.extend("            " + text for text in lines)
            word = "elif"
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
