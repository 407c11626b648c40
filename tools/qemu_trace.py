#!/usr/bin/env python3
"""Record an instruction trace of a firmware image under QEMU and compare pysev with it.

QEMU (qemu-system-x86_64, TCG) is run with one instruction per translation
block and block chaining disabled, so its ``-d cpu`` log holds the register
state before every instruction it executes::

    qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64 -m 256 -bios FILE \\
        -display none -serial null -monitor none -no-reboot \\
        -d cpu,in_asm,int,nochain -singlestep -D trace.log

Instruction numbering ("QEMU numbering") is the order of the dumps in that log:
record *n* (1-based) is the state printed before QEMU's *n*-th instruction,
i.e. after *n - 1* instructions.  Every started instruction counts once,
including one that raises an exception; an instruction with a REP prefix counts
once per iteration (QEMU ends its block after each iteration).  pysev's
``Machine.run(max_insns=n - 1)`` should leave the state of record *n*.

Library use::

    import qemu_trace as qt
    qt.record("/usr/share/ovmf/OVMF.fd", "trace.log", 30000)
    recs = list(qt.parse("trace.log"))
    cps = qt.checkpoints(recs)          # {"protected_mode": rec, "cr3_load": rec, "first_64bit": rec}
    ok = qt.compare(cps, "/usr/share/ovmf/OVMF.fd")

Command line::

    python3 tools/qemu_trace.py record  --bios FILE [--max-insns N] [--trace FILE]
    python3 tools/qemu_trace.py compare --bios FILE [--max-insns N] [--trace FILE | --fixture JSON]
    python3 tools/qemu_trace.py checkpoints --bios FILE [--trace FILE] [--json OUT]
    python3 tools/qemu_trace.py features --bios FILE [--trace FILE] [--until first_64bit]

``record`` writes the QEMU log; ``compare`` records one (into a temporary
file unless --trace names an existing log; or takes QEMU's checkpoints from a
JSON fixture written by ``checkpoints --json``), runs pysev to each checkpoint
and prints a table; it exits with status 0 only when every checkpoint matches.
``features`` lists what the guest used (mnemonics, I/O ports, MSRs, CPUID leaves).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

QEMU = "qemu-system-x86_64"
DEFAULT_MAX_INSNS = 30000
DEFAULT_TIMEOUT = 120.0          # seconds QEMU may take to log max_insns instructions
LOG_ITEMS = "cpu,in_asm,int,nochain"

SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
GPR32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

CHECKPOINTS = ("protected_mode", "cr3_load", "first_64bit")

CR0_PE = 1 << 0
EFER_LMA = 1 << 10
SEG_L = 1 << 21                  # long-mode bit in QEMU's segment "flags"
# QEMU's segment "flags" are the descriptor's whole high dword, so they also
# carry base bits 24..31 / 0..7 and limit bits 16..19; pysev's seg_attr holds
# only the attribute bits (type, S, DPL, P, AVL, L, D/B, G).  Base and limit
# are compared on their own, so attributes are compared under this mask.
ATTR_MASK = 0x00F0FF00

# the machine pysev is started as, in pysev.Machine.from_args form
PYSEV_ARGS = ["-cpu", "qemu64", "-m", "256", "-machine", "q35"]


class TraceError(Exception):
    """A problem the user can act on (QEMU missing, trace too short, ...)."""


# --------------------------------------------------------------------------- recording

def qemu_command(bios_path, log_path, cpu="qemu64", memory="256", qemu=QEMU, version=(7, 2)):
    """The QEMU command line used by :func:`record`.

    One instruction per translation block is ``-singlestep`` up to QEMU 8.0
    and the accelerator property ``one-insn-per-tb`` from 8.1 on.
    """
    if version >= (8, 1):
        accel, one_insn = ["-accel", "tcg,one-insn-per-tb=on"], []
    else:
        accel, one_insn = ["-accel", "tcg"], ["-singlestep"]
    return ([qemu, "-machine", "q35"] + accel + ["-cpu", cpu, "-m", str(memory),
            "-bios", bios_path,
            "-display", "none", "-serial", "null", "-monitor", "none", "-no-reboot",
            "-d", LOG_ITEMS] + one_insn + ["-D", log_path])


def qemu_version_tuple(text):
    """(major, minor) from ``qemu --version`` output; (0, 0) when not recognised."""
    m = re.search(r"version (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def qemu_version(qemu=QEMU):
    """First line of ``qemu --version`` (e.g. 'QEMU emulator version 7.2.22 (Debian ...)')."""
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TraceError(f"cannot run {qemu}: {exc}") from None
    return out.splitlines()[0].strip() if out else "?"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_DUMP_START = re.compile(rb"^(?:EIP|RIP)=", re.M)


def record(bios_path, out_path, max_insns=DEFAULT_MAX_INSNS, cpu="qemu64", *,
           qemu=QEMU, timeout=DEFAULT_TIMEOUT, margin=None):
    """Run QEMU on *bios_path* until its log at *out_path* holds *max_insns* instructions.

    QEMU runs until the log holds ``max_insns + margin`` register dumps (it is
    then stopped with SIGTERM, which makes it flush and close the log), until
    it exits by itself, or until *timeout* seconds have passed.  Returns the
    number of instruction records in the log; raises :class:`TraceError` when
    fewer than *max_insns* were logged.
    """
    if shutil.which(qemu) is None:
        raise TraceError(f"{qemu} not found (Debian: apt-get install qemu-system-x86)")
    if not os.path.isfile(bios_path):
        raise TraceError(f"firmware image {bios_path} not found")
    if margin is None:
        margin = max(200, max_insns // 20)
    target = max_insns + margin
    if os.path.exists(out_path):
        os.unlink(out_path)
    cmd = qemu_command(bios_path, out_path, cpu=cpu, qemu=qemu,
                       version=qemu_version_tuple(qemu_version(qemu)))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    dumps = 0
    pos = 0
    tail = b""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                with open(out_path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except FileNotFoundError:
                continue
            pos += len(data)
            chunk = tail + data
            cut = chunk.rfind(b"\n") + 1          # count whole lines only
            dumps += len(_DUMP_START.findall(chunk, 0, cut))
            tail = chunk[cut:]
            if dumps >= target:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)       # QEMU shuts down cleanly and flushes the log
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    count = sum(1 for _ in parse(out_path))
    if count < max_insns:
        msg = f"QEMU logged only {count} of {max_insns} instructions"
        if stderr.strip():
            msg += f"; QEMU said: {stderr.strip().splitlines()[-1]}"
        raise TraceError(msg)
    return count


# --------------------------------------------------------------------------- parsing

_KV = re.compile(r"([A-Z][A-Z0-9]*)\s*=\s*([0-9a-fA-F]+)")
_SEG = re.compile(r"^(ES|CS|SS|DS|FS|GS|LDT|TR)\s*=\s*([0-9a-f]{4}) ([0-9a-f]+) "
                  r"([0-9a-f]{8}) ([0-9a-f]{8})(.*)$")
_TABLE = re.compile(r"^(GDT|IDT)=\s+([0-9a-f]+) ([0-9a-f]{8})")
_IPLINE = re.compile(r"^(EIP|RIP)=([0-9a-f]+) (?:EFL|RFL)=([0-9a-f]+) (\[[^\]]*\])(.*)$")
_EFER = re.compile(r"^EFER=[0-9a-f]{16}$")
_CC = re.compile(r"^CCS=([0-9a-f]+) CCD=([0-9a-f]+) CCO=(\S+)")
_ASM = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s{2,}(\S.*))?$")
_INT = re.compile(r"^\s*(\d+): v=([0-9a-f]+) e=([0-9a-f]+) i=(\d) cpl=(\d) IP=([0-9a-f]+):([0-9a-f]+) "
                  r"pc=([0-9a-f]+) SP=([0-9a-f]+):([0-9a-f]+)(?: CR2=([0-9a-f]+))?")


def _parse_dump(lines):
    """One ``-d cpu`` register dump (list of lines) -> state dict (without index)."""
    rec = {"regs": {}, "segments": {}}
    regs = rec["regs"]
    width = 32
    for line in lines:
        m = _IPLINE.match(line)
        if m:
            width = 64 if m.group(1) == "RIP" else 32
            regs["rip"] = int(m.group(2), 16)
            regs["rflags"] = int(m.group(3), 16)
            rec["flags_str"] = m.group(4)
            rec["mode"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(5))}
            continue
        m = _SEG.match(line)
        if m:
            name = m.group(1).lower()
            seg = {"selector": int(m.group(2), 16), "base": int(m.group(3), 16),
                   "limit": int(m.group(4), 16), "attr": int(m.group(5), 16)}
            desc = m.group(6).strip()
            if desc:
                seg["desc"] = desc
            if name == "ldt":
                rec["ldtr"] = seg
            elif name == "tr":
                rec["tr"] = seg
            else:
                rec["segments"][name] = seg
            rec["lma_format"] = len(m.group(3)) == 16
            continue
        m = _TABLE.match(line)
        if m:
            rec[m.group(1).lower() + "r"] = {"base": int(m.group(2), 16), "limit": int(m.group(3), 16)}
            continue
        m = _CC.match(line)
        if m:
            rec["cc"] = {"src": int(m.group(1), 16), "dst": int(m.group(2), 16), "op": m.group(3)}
            continue
        for key, value in _KV.findall(line):
            k = key.lower()
            v = int(value, 16)
            if k in GPR32:
                regs["r" + k[1:]] = v
            elif k in GPR64:
                regs[k] = v
            elif k in ("cr0", "cr2", "cr3", "cr4", "efer", "dr6", "dr7"):
                rec[k] = v
            elif re.fullmatch(r"dr[0-3]", k):
                rec.setdefault("dr", [0, 0, 0, 0])[int(k[2])] = v
    rec["width"] = width
    cs = rec["segments"].get("cs")
    if cs is not None and "rip" in regs:
        rec["cs_base"] = cs["base"]
        rec["ip"] = regs["rip"]
        rec["pc"] = (cs["base"] + regs["rip"]) & ((1 << 64) - 1)
    return rec


def parse(trace_path):
    """Iterate over the instruction records of a QEMU log written by :func:`record`.

    Each record is a dict with the same layout as pysev's ``Machine.state_dict()``
    where the two overlap, plus QEMU-only fields:

    ``index``        1-based instruction number (QEMU numbering)
    ``regs``         rax..rdi, rsp, rbp (r8..r15 too in 64-bit code), rip, rflags;
                     outside 64-bit code QEMU shows only the low 32 bits (``width`` 32)
    ``cs_base``, ``ip``, ``pc``   CS base, offset (== regs["rip"]) and linear address
    ``segments``     es cs ss ds fs gs -> {selector, base, limit, attr[, desc]}
    ``ldtr``, ``tr``, ``gdtr``, ``idtr``, ``cr0``, ``cr2``, ``cr3``, ``cr4``, ``efer``,
    ``dr`` (DR0-3), ``dr6``, ``dr7``
    ``flags_str``    e.g. "[---Z-P-]";  ``mode``  {"CPL", "II", "A20", "SMM", "HLT"}
    ``cc``           QEMU's lazy flags state {src, dst, op}
    ``lma_format``   True when QEMU printed long-mode (16-digit) bases
    ``insn``         (bytes hex, disassembly) of the instruction at ``pc`` as last
                     translated, when the log has it
    ``events``       interrupts/exceptions QEMU logged after this record (-d int)

    A truncated final dump is dropped.
    """
    asm = {}                 # linear pc -> (bytes, text) of the latest translation
    index = 0
    pending = None           # last complete instruction record, yielded lazily
    dump = None              # lines of the dump being read
    dump_is_int = None       # the interrupt line a dump belongs to, if any
    last_int = None
    in_asm = False
    last_asm_pc = None

    def finish():
        nonlocal dump, index, pending, last_int
        lines, intr = dump, dump_is_int
        dump = None
        rec = _parse_dump(lines)
        if intr is not None:
            if pending is not None:
                pending.setdefault("events", []).append(dict(intr, state=rec))
            return None
        index += 1
        rec["index"] = index
        ins = asm.get(rec.get("pc"))
        if ins is not None:
            rec["insn"] = ins
        out, pending = pending, rec
        return out

    with open(trace_path, "r", encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith(("EAX=", "RAX=")):
                # a new dump; one still open was cut short (cannot happen in a whole log)
                dump = [line]
                dump_is_int, last_int = last_int, None
                in_asm = False
                continue
            if dump is not None:
                dump.append(line)
                if _EFER.match(line):              # the last line of an x86 -d cpu dump
                    out = finish()
                    if out is not None:
                        yield out
                continue
            if line.startswith("IN:"):
                in_asm = True
                last_asm_pc = None
                continue
            if in_asm:
                m = _ASM.match(line)
                if m:
                    pc = int(m.group(1), 16)
                    if m.group(3) is None and last_asm_pc is not None:
                        b, t = asm[last_asm_pc]   # continuation of a long instruction's bytes
                        asm[last_asm_pc] = (b + " " + m.group(2), t)
                    else:
                        asm[pc] = (m.group(2), (m.group(3) or "").strip())
                        last_asm_pc = pc
                    continue
                if not line.strip():
                    in_asm = False
                continue
            m = _INT.match(line)
            if m:
                last_int = {"vector": int(m.group(2), 16), "error_code": int(m.group(3), 16),
                            "is_int": int(m.group(4)), "cpl": int(m.group(5)),
                            "cs": int(m.group(6), 16), "ip": int(m.group(7), 16),
                            "pc": int(m.group(8), 16), "text": line.strip()}
                continue
            if line.startswith("check_exception") and pending is not None:
                pending.setdefault("events", []).append({"text": line.strip()})
        if pending is not None:
            yield pending


# --------------------------------------------------------------------------- checkpoints

def _gpr_mask(rec):
    return (1 << 64) - 1 if rec.get("width", 64) == 64 else 0xFFFFFFFF


def is_protected(state):
    return bool(state["cr0"] & CR0_PE)


def is_64bit(state):
    return bool(state["efer"] & EFER_LMA) and bool(state["segments"]["cs"]["attr"] & SEG_L)


def predicates(initial_cr3):
    """checkpoint name -> predicate over a state (QEMU record or pysev state_dict)."""
    return {
        "protected_mode": is_protected,
        "cr3_load": lambda s: s["cr3"] != initial_cr3,
        "first_64bit": is_64bit,
    }


def checkpoints(records):
    """Find the checkpoints in QEMU records (an iterable from :func:`parse`).

    ``protected_mode``  first record with CR0.PE = 1 (the instruction after the
                        one that set PE)
    ``cr3_load``        first record whose CR3 differs from the first record's
    ``first_64bit``     first record with EFER.LMA = 1 and CS.L = 1: the first
                        instruction executed in 64-bit mode

    Returns {name: record}; each record also gets ``previous``, the record
    before it (the instruction that caused the change is ``previous["insn"]``).
    Names not reached are missing from the result.
    """
    found = {}
    preds = None
    prev = None
    for rec in records:
        if preds is None:
            preds = predicates(rec["cr3"])
        for name, pred in preds.items():
            if name not in found and pred(rec):
                found[name] = dict(rec, previous=prev)
        if len(found) == len(preds):
            break
        prev = rec
    return {name: found[name] for name in CHECKPOINTS if name in found}


# --------------------------------------------------------------------------- feature summary

_PORT_IMM = re.compile(r"\$0x([0-9a-f]+)")
_SREG = re.compile(r"%[c-gs]s\b")


def code_mode(state):
    """16, 32 or 64: the code size of the instruction at *state*."""
    attr = state["segments"]["cs"]["attr"]
    if is_64bit(state):
        return 64
    if state["cr0"] & CR0_PE and attr & (1 << 22):
        return 32
    return 16


def mnemonic(text):
    """A mnemonic from QEMU's (AT&T) disassembly, with moves to/from special registers told apart."""
    words = text.split()
    if not words:
        return "?"
    mn = words[0]
    if mn in ("rep", "repe", "repne", "repz", "repnz", "lock") and len(words) > 1:
        return mn + " " + words[1]
    if mn.startswith("mov") and len(words) > 1:
        ops = " ".join(words[1:])
        if "%cr" in ops:
            return mn + " (crN)"
        if "%db" in ops or "%dr" in ops:
            return mn + " (drN)"
        if _SREG.search(ops):
            return mn + " (sreg)"
    return mn


def features(records, until=None):
    """What the guest used up to (not including) record index *until*.

    Returns {"instructions", "mnemonics": {(code size, mnemonic): count},
    "ports": {port: {"in"/"out": [(size, value)]}}, "msr_read": {msr: [values]},
    "msr_write": {msr: [values]}, "cpuid": {(leaf, subleaf): (eax, ebx, ecx, edx)},
    "exceptions": [...]}, from the disassembly and the register state around each instruction.
    """
    mnemonics = {}
    ports = {}
    msr_read, msr_write, cpuid, exceptions = {}, {}, {}, []
    prev = None
    count = 0

    def after(prev, rec):
        insn = prev.get("insn", ("", ""))[1]
        op = insn.split()[0] if insn else "?"
        r0, r1 = prev["regs"], rec["regs"]
        if op == "rdmsr":
            msr_read.setdefault(r0["rcx"] & 0xFFFFFFFF, []).append(
                ((r1["rdx"] & 0xFFFFFFFF) << 32) | (r1["rax"] & 0xFFFFFFFF))
        elif op == "wrmsr":
            msr_write.setdefault(r0["rcx"] & 0xFFFFFFFF, []).append(
                ((r0["rdx"] & 0xFFFFFFFF) << 32) | (r0["rax"] & 0xFFFFFFFF))
        elif op == "cpuid":
            key = (r0["rax"] & 0xFFFFFFFF, r0["rcx"] & 0xFFFFFFFF)
            cpuid[key] = tuple(r1[r] & 0xFFFFFFFF for r in ("rax", "rbx", "rcx", "rdx"))
        elif op.startswith(("in", "out")) and op[:-1] in ("in", "out", "ins", "outs"):
            m = _PORT_IMM.search(insn)
            port = int(m.group(1), 16) if m and "%dx" not in insn else r0["rdx"] & 0xFFFF
            size = {"b": 1, "w": 2, "l": 4}.get(op[-1], 0)
            value = None
            if op in ("inb", "inw", "inl"):
                value = r1["rax"] & ((1 << (8 * size)) - 1)
            elif op in ("outb", "outw", "outl"):
                value = r0["rax"] & ((1 << (8 * size)) - 1)
            kind = "in" if op.startswith("in") else "out"
            ports.setdefault(port, {}).setdefault(kind, []).append((size, value))

    for rec in records:
        if until is not None and rec["index"] >= until:
            if prev is not None:
                after(prev, rec)
            break
        if prev is not None:
            after(prev, rec)
        count += 1
        mn = mnemonic(rec.get("insn", ("", "?"))[1])
        key = (code_mode(rec), mn)
        mnemonics[key] = mnemonics.get(key, 0) + 1
        exceptions.extend(dict(e, index=rec["index"]) for e in rec.get("events", ()))
        prev = rec
    return {"instructions": count, "mnemonics": mnemonics, "ports": ports,
            "msr_read": msr_read, "msr_write": msr_write, "cpuid": cpuid,
            "exceptions": exceptions}


def print_features(feat, out=sys.stdout):
    p = lambda *a: print(*a, file=out)
    p(f"instructions: {feat['instructions']}")
    distinct = sorted({mn for _, mn in feat["mnemonics"]})
    p(f"distinct mnemonics ({len(distinct)}): " + " ".join(distinct))
    for mode in (16, 32, 64):
        items = [(mn, n) for (m, mn), n in feat["mnemonics"].items() if m == mode]
        if not items:
            continue
        total = sum(n for _, n in items)
        p(f"  {mode}-bit code: {total} instructions, {len(items)} mnemonics")
        for mn, n in sorted(items, key=lambda kv: (-kv[1], kv[0])):
            p(f"    {mn:<18} {n}")
    p(f"I/O ports ({len(feat['ports'])}):")
    for port, kinds in sorted(feat["ports"].items()):
        desc = []
        for kind, uses in sorted(kinds.items()):
            sizes = sorted({s for s, _ in uses})
            values = sorted({v for _, v in uses if v is not None})
            vals = ", ".join(f"{v:#x}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
            desc.append(f"{kind} x{len(uses)} size {sizes} values [{vals}]")
        p(f"  {port:#06x}: " + "; ".join(desc))
    for key, label in (("msr_read", "MSRs read"), ("msr_write", "MSRs written")):
        p(f"{label} ({len(feat[key])}):")
        for msr, vals in sorted(feat[key].items()):
            p(f"  {msr:#010x}: " + ", ".join(f"{v:#x}" for v in sorted(set(vals))))
    p(f"CPUID leaves ({len(feat['cpuid'])}):")
    for (leaf, sub), res in sorted(feat["cpuid"].items()):
        p(f"  {leaf:#010x}/{sub:#x} -> " + " ".join(f"{v:08x}" for v in res))
    p(f"exceptions/interrupts: {len(feat['exceptions'])}")
    for e in feat["exceptions"]:
        p(f"  at {e['index']}: {e.get('text', e)}")


# --------------------------------------------------------------------------- JSON fixture

_NOT_HEX = {"index", "width", "mode", "flags_str", "desc", "insn", "op", "text", "is_int", "cpl"}


def _hexify(obj, key=None):
    """Integers -> "0x..." strings (register values read better in hex), except _NOT_HEX keys."""
    if key in _NOT_HEX or isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return f"{obj:#x}"
    if isinstance(obj, dict):
        return {k: _hexify(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_hexify(v) for v in obj]
    return obj


def _unhexify(obj, key=None):
    if key in _NOT_HEX:
        return obj
    if isinstance(obj, str) and re.fullmatch(r"0x[0-9a-f]+", obj):
        return int(obj, 16)
    if isinstance(obj, dict):
        return {k: _unhexify(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unhexify(v) for v in obj]
    return obj


def _fixture_record(rec):
    keep = ("index", "cs_base", "ip", "pc", "width", "regs", "segments", "ldtr", "tr", "gdtr",
            "idtr", "cr0", "cr2", "cr3", "cr4", "efer", "dr", "dr6", "dr7", "flags_str", "mode",
            "cc", "lma_format", "insn")
    out = {k: rec[k] for k in keep if k in rec}
    if "insn" in out:
        out["insn"] = list(out["insn"])
    return out


def fixture_dict(cps, bios_path, qemu_ver, max_insns=None, reset=None):
    """A JSON-ready dict of QEMU's checkpoints (each with its previous record).

    *reset*, when given, is QEMU's first record (the state at reset).
    """
    data = {
        "bios": os.path.abspath(bios_path),
        "bios_sha256": sha256_file(bios_path),
        "bios_size": os.path.getsize(bios_path),
        "qemu_version": qemu_ver,
        "qemu_command": " ".join(qemu_command(os.path.basename(bios_path), "trace.log",
                                              version=qemu_version_tuple(qemu_ver))[1:]),
        "numbering": "index n = QEMU's n-th executed instruction; its record is the state before it "
                     "(= pysev after n - 1 instructions)",
    }
    if max_insns is not None:
        data["max_insns"] = max_insns
    if reset is not None:
        data["reset"] = _hexify(_fixture_record(reset))
    data["checkpoints"] = {}
    for name, rec in cps.items():
        entry = _fixture_record(rec)
        if rec.get("previous") is not None:
            entry["previous"] = _fixture_record(rec["previous"])
        data["checkpoints"][name] = _hexify(entry)
    return data


def _record_from_json(entry):
    rec = _unhexify(entry)
    for r in (rec, rec.get("previous")):
        if r is not None and "insn" in r:
            r["insn"] = tuple(r["insn"])
    return rec


def load_fixture(path):
    """Read a fixture written by ``checkpoints --json``: (data, {name: record}).

    ``data`` is the whole JSON document; ``data["reset"]``, when present, is
    QEMU's first record, converted like the checkpoint records.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "reset" in data:
        data["reset"] = _record_from_json(data["reset"])
    cps = {name: _record_from_json(entry) for name, entry in data["checkpoints"].items()}
    return data, cps


# --------------------------------------------------------------------------- pysev side

def _import_pysev():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import pysev
    except ImportError as exc:
        raise TraceError(f"cannot import pysev: {exc}") from None
    machine = getattr(pysev, "Machine", None)
    if machine is None:
        raise TraceError("pysev.Machine is not available in this pysev (system mode not built yet)")
    return machine


def new_machine(bios_path):
    Machine = _import_pysev()
    return Machine.from_args(["-bios", bios_path] + PYSEV_ARGS)


class PysevRunner:
    """Runs a pysev machine forward and hands out its state after *n* instructions.

    ``Machine.run(max_insns=n)`` stops after *n* instructions since reset (the
    contract).  Should a machine count *n* from its current state instead, the
    runner notices (via ``state_dict()["icount"]``) and adapts.  Asking for a
    count behind the machine's starts a new machine.
    """

    def __init__(self, bios_path, machine_factory=None):
        self.bios_path = bios_path
        self.factory = machine_factory or new_machine
        self.machine = self.factory(bios_path)
        self.cumulative = None      # None: not known yet; False: run() counts from the current state

    def icount(self):
        return self.machine.state_dict()["icount"]

    def state_after(self, n):
        """pysev's state dict after *n* instructions (before QEMU's instruction n + 1)."""
        cur = self.icount()
        if n < cur:
            self.machine = self.factory(self.bios_path)
            cur = 0
        if n > cur:
            arg = n if cur == 0 or self.cumulative is not False else n - cur
            self.machine.run(max_insns=arg)
            got = self.icount()
            if got != n and cur > 0 and self.cumulative is None and got == cur + arg:
                self.cumulative = False               # redo from reset with the other reading
                self.machine = self.factory(self.bios_path)
                self.machine.run(max_insns=n)
                got = self.icount()
            elif got == n and cur > 0 and arg == n:
                self.cumulative = True
            if got != n:
                reason = self.machine.state_dict().get("stop_reason")
                raise TraceError(f"pysev stopped after {got} instructions instead of {n} "
                                 f"(stop_reason {reason!r})")
        return self.machine.state_dict()


def pysev_states(bios_path, indices, machine_factory=None):
    """pysev's state before QEMU instruction *i* (after *i - 1* instructions), for each *i*.

    Returns {i: state_dict}.  *machine_factory(bios_path)* makes the machine
    (default: ``pysev.Machine.from_args``, see :data:`PYSEV_ARGS`).
    """
    runner = PysevRunner(bios_path, machine_factory)
    return {i: runner.state_after(i - 1) for i in sorted(set(indices))}


def diff_state(qrec, pstate):
    """Fields where pysev's state differs from a QEMU record: list of (field, qemu, pysev).

    Registers QEMU prints with 32 bits (outside 64-bit code) are compared on
    their low 32 bits; bases, CR2 and CR3 likewise when QEMU printed them short;
    segment attributes under :data:`ATTR_MASK`.
    """
    diffs = []
    gmask = _gpr_mask(qrec)
    smask = (1 << 64) - 1 if qrec.get("lma_format", True) else 0xFFFFFFFF

    def cmp(field, q, p, mask=(1 << 64) - 1):
        if p is None:
            diffs.append((field, q, "missing"))
        elif (q & mask) != (p & mask):
            diffs.append((field, q, p))

    pregs = pstate.get("regs", {})
    for name, q in qrec["regs"].items():
        cmp(name, q, pregs.get(name), gmask)
    psegs = pstate.get("segments", {})
    for name in SEG_NAMES:
        qs = qrec["segments"].get(name)
        ps = psegs.get(name)
        if qs is None:
            continue
        if ps is None:
            diffs.append((name, "present", "missing"))
            continue
        for f in ("selector", "base", "limit", "attr"):
            cmp(f"{name}.{f}", qs[f], ps.get(f), SEG_MASKS.get(f, smask if f == "base" else ALL))
    for name in ("ldtr", "tr"):
        if name in pstate and name in qrec:
            for f in ("selector", "base", "limit", "attr"):
                cmp(f"{name}.{f}", qrec[name][f], pstate[name].get(f),
                    SEG_MASKS.get(f, smask if f == "base" else ALL))
    for name in ("gdtr", "idtr"):
        ps = pstate.get(name) or {}
        cmp(f"{name}.base", qrec[name]["base"], ps.get("base"), smask)
        cmp(f"{name}.limit", qrec[name]["limit"], ps.get("limit"))
    for name in ("cr0", "cr4", "efer"):
        cmp(name, qrec[name], pstate.get(name))
    for name in ("cr2", "cr3"):
        cmp(name, qrec[name], pstate.get(name), smask)
    return diffs


ALL = (1 << 64) - 1
SEG_MASKS = {"attr": ATTR_MASK}


def _fmt(v):
    return f"{v:#x}" if isinstance(v, int) else str(v)


def compare(cps, bios_path, out=sys.stdout, verbose=True, search=2000, machine_factory=None,
            reset=None, names=CHECKPOINTS):
    """Run pysev to each QEMU checkpoint and print a table; True when all match.

    For a checkpoint at QEMU index *i*, pysev matches when (a) its state after
    *i - 1* instructions equals QEMU's record *i*, (b) after *i - 2*
    instructions the checkpoint condition did not hold yet, and (c) that
    earlier state equals QEMU's record *i - 1* when the checkpoint carries it.
    Otherwise pysev's own index for the checkpoint is searched for (from reset
    when pysev got there early, else up to *search* instructions past *i*).
    *reset*, QEMU's first record, adds a row comparing the state at reset.
    *names* selects the checkpoints to check.
    """
    p = lambda *a: print(*a, file=out)
    runner = PysevRunner(bios_path, machine_factory)
    init = runner.state_after(0)
    preds = predicates(init["cr3"])
    rows = []
    details = []
    all_ok = True
    if reset is not None:
        diffs = diff_state(reset, init)
        all_ok = not diffs
        rows.append(("reset", "1", "1", "ok" if not diffs else f"{len(diffs)} field(s) differ"))
        details += [f"  reset: {field}: qemu {_fmt(qv)} pysev {_fmt(pv)}" for field, qv, pv in diffs]
    for name in names:
        if name not in cps:
            rows.append((name, "-", "-", "QEMU did not reach it"))
            all_ok = False
            continue
        q = cps[name]
        i = q["index"]
        pred = preds[name]
        try:
            before = runner.state_after(i - 2) if i >= 2 else None
            at = runner.state_after(i - 1)
        except TraceError as exc:
            rows.append((name, str(i), "?", str(exc)))
            all_ok = False
            runner = PysevRunner(bios_path, machine_factory)
            continue
        problems = []
        early = before is not None and pred(before)
        pysev_index = str(i)
        if early or not pred(at):
            pysev_index = find_index(bios_path, pred, i, early, search, machine_factory)
            problems.append("reached at a different instruction")
        diffs = diff_state(q, at)
        prev_q = q.get("previous")
        prev_diffs = diff_state(prev_q, before) if prev_q is not None and before is not None else []
        if diffs:
            problems.append(f"{len(diffs)} field(s) differ at index {i}")
        if prev_diffs:
            problems.append(f"{len(prev_diffs)} field(s) differ at index {i - 1}")
        ok = not problems
        all_ok &= ok
        rows.append((name, str(i), pysev_index, "ok" if ok else "; ".join(problems)))
        for label, dl in ((i, diffs), (i - 1, prev_diffs)):
            details += [f"  {name} at index {label}: {field}: qemu {_fmt(qv)} pysev {_fmt(pv)}"
                        for field, qv, pv in dl]
    w = max(len(r[0]) for r in rows)
    p(f"{'checkpoint':<{w}}  {'qemu':>8}  {'pysev':>8}  result")
    for name, qi, pi, res in rows:
        p(f"{name:<{w}}  {qi:>8}  {pi:>8}  {res}")
    if verbose and details:
        p("differences:")
        for line in details:
            p(line)
    return all_ok


def find_index(bios_path, pred, i, early, search=2000, machine_factory=None, chunk=512):
    """pysev's index for a checkpoint: 1 + the first instruction count after which *pred* holds.

    Searches counts 0 .. i - 2 when *early*, else i - 1 .. i - 1 + *search*;
    returns the index as a string, "?" when pysev stopped, or ">N" when not found.
    """
    lo, hi = (0, i - 2) if early else (i - 1, i - 1 + search)
    runner = PysevRunner(bios_path, machine_factory)
    try:
        last, n = lo - 1, lo                     # coarse pass: find the chunk
        while not pred(runner.state_after(n)):
            if n >= hi:
                return "?" if early else f">{hi + 1}"
            last, n = n, min(n + chunk, hi)
        for m in range(last + 1, n + 1):         # fine pass
            if pred(runner.state_after(m)):
                return str(m + 1)
    except TraceError:
        return "?"
    return "?"


# --------------------------------------------------------------------------- CLI

def _qemu_reference(args):
    """QEMU's (checkpoints, first record) from --fixture, an existing --trace or a new recording."""
    if getattr(args, "fixture", None):
        data, cps = load_fixture(args.fixture)
        digest = sha256_file(args.bios)
        if data.get("bios_sha256") != digest:
            raise TraceError(f"{args.bios} (sha256 {digest}) is not the image the fixture was "
                             f"recorded from (sha256 {data.get('bios_sha256')})")
        return cps, data.get("reset")
    trace = args.trace
    tmp = None
    if not trace or not os.path.exists(trace):
        if not trace:
            tmp = tempfile.mkdtemp(prefix="qemu-trace-")
            trace = os.path.join(tmp, "trace.log")
        record(args.bios, trace, args.max_insns, cpu=args.cpu)
    try:
        return checkpoints(parse(trace)), next(iter(parse(trace)), None)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _print_checkpoints(cps, out=sys.stdout):
    for name in CHECKPOINTS:
        rec = cps.get(name)
        if rec is None:
            print(f"{name:<15} not reached", file=out)
            continue
        prev = rec.get("previous") or {}
        cause = prev.get("insn", ("", "?"))[1]
        here = rec.get("insn", ("", "?"))[1]
        print(f"{name:<15} index {rec['index']:>7}  pc {rec['pc']:#x}  {here:<30}  "
              f"(after #{rec['index'] - 1}: {cause})", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bios", required=True, help="firmware image (e.g. /usr/share/ovmf/OVMF.fd)")
    common.add_argument("--max-insns", type=int, default=DEFAULT_MAX_INSNS,
                        help=f"instructions to record (default {DEFAULT_MAX_INSNS})")
    common.add_argument("--trace", help="QEMU log to write (record) or read if it exists")
    common.add_argument("--cpu", default="qemu64", help="QEMU -cpu model (default qemu64)")
    sub.add_parser("record", parents=[common], help="record a QEMU trace")
    c = sub.add_parser("compare", parents=[common], help="compare pysev with QEMU at the checkpoints")
    c.add_argument("--fixture", help="take QEMU's checkpoints from this JSON file (written by "
                   "'checkpoints --json') instead of running QEMU")
    k = sub.add_parser("checkpoints", parents=[common], help="print QEMU's checkpoints")
    k.add_argument("--json", help="also write them as a JSON fixture to this file")
    f = sub.add_parser("features", parents=[common], help="list instructions/ports/MSRs/CPUID used")
    f.add_argument("--until", default="first_64bit",
                   help="checkpoint name or instruction index to stop at (default first_64bit)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "record":
            trace = args.trace or "trace.log"
            n = record(args.bios, trace, args.max_insns, cpu=args.cpu)
            print(f"{trace}: {n} instructions logged")
            return 0
        if args.cmd == "compare":
            _import_pysev()                  # a clear error when pysev.Machine is missing
            cps, reset = _qemu_reference(args)
            _print_checkpoints(cps)
            return 0 if compare(cps, args.bios, reset=reset) else 1
        if args.cmd == "checkpoints":
            cps, reset = _qemu_reference(args)
            _print_checkpoints(cps)
            if args.json:
                data = fixture_dict(cps, args.bios, qemu_version(), args.max_insns, reset=reset)
                with open(args.json, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=1)
                    fh.write("\n")
            return 0 if len(cps) == len(CHECKPOINTS) else 1
        if args.cmd == "features":
            tmp = None
            trace = args.trace
            if not trace or not os.path.exists(trace):
                if not trace:
                    tmp = tempfile.mkdtemp(prefix="qemu-trace-")
                    trace = os.path.join(tmp, "trace.log")
                record(args.bios, trace, args.max_insns, cpu=args.cpu)
            try:
                until = args.until
                if not until.isdigit():
                    cps = checkpoints(parse(trace))
                    if until not in cps:
                        raise TraceError(f"checkpoint {until} not reached in the trace")
                    until = cps[until]["index"]
                print_features(features(parse(trace), int(until)))
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
            return 0
    except TraceError as exc:
        print(f"qemu_trace: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
