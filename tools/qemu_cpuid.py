#!/usr/bin/env python3
"""Record the CPUID leaves that QEMU gives a CPU model, by running a tiny guest.

The guest is a 64 KiB firmware image (passed with -bios) assembled with nasm
from the source embedded below.  It starts at the reset vector in real mode,
executes CPUID for every basic leaf 0..max and every extended leaf
0x80000000..max, each with ECX = 0..NSUB-1, plus a few leaves outside both
ranges, and writes one text line per query to the isa-debugcon port 0x402:

    LEAF SUBLEAF EAX EBX ECX EDX        (eight hex digits each)

then leaves QEMU through isa-debug-exit.  This tool folds the lines into a
table (leaf -> registers when ECX does not matter, else leaf -> {subleaf:
registers}), prints it as a Python dict ready to paste into pysev/cpu/cpuid.py
or a test, and prints QEMU's warnings (features TCG filtered out of the model)
as comments above it.

    python3 tools/qemu_cpuid.py                       # -cpu qemu64 (the default)
    python3 tools/qemu_cpuid.py --cpu EPYC-Milan
    python3 tools/qemu_cpuid.py --raw                 # the guest's lines, unfolded
    python3 tools/qemu_cpuid.py --compare             # diff QEMU against pysev's model

--compare checks every (leaf, subleaf) the guest queried against
pysev.cpu.cpuid.MODELS[CPU].cpuid() and exits 1 on a difference; for qemu64
there must be none.  With --sev-xlevel the model is asked with SEV on and QEMU
runs with xlevel=0x8000001F (what QEMU does with SEV; TCG has no SEV itself, so
leaf 0x8000001F is skipped).

One vCPU is used, so the APIC ID is 0 (leaf 1 EBX bits 31:24, leaf 0xB EDX).
Needs nasm and qemu-system-x86_64 (apt-get install -y nasm qemu-system-x86).
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

NSUB = 64           # ECX values tried for each leaf

# leaves outside the basic and extended ranges, as (first, last) ranges; the guest
# also tries max+1 of each range
EXTRA_LEAVES = ((0x20000000, 0x20000000), (0x40000000, 0x40000011), (0x40000100, 0x40000101),
                (0x8000001F, 0x80000021), (0xC0000000, 0xC0000001), (0xFFFFFFFF, 0xFFFFFFFF))

GUEST_ASM = r"""
; CPUID recorder: real mode, loaded as a 64 KiB -bios image at F000:0000
bits 16
org 0

DBG     equ 0x402           ; isa-debugcon
EXIT    equ 0xf4            ; isa-debug-exit
NSUB    equ %(nsub)d
MAXV    equ 0x500           ; RAM scratch: the range maximum (dword)

start:
        cli
        cld
        xor ax, ax
        mov ss, ax
        mov ds, ax
        mov sp, 0x7000
        mov dx, DBG

        xor esi, esi                ; basic range
        call do_range
        mov esi, 0x80000000         ; extended range
        call do_range

        ; leaves outside the ranges: (first, last) pairs, ended by a zero pair
        mov bx, extra
.extra: mov esi, [cs:bx]
        mov edi, [cs:bx + 4]
        or edi, edi
        jz .done
        push bx
.one:   call do_leaf
        inc esi
        jz .next                    ; wrapped past 0xffffffff
        cmp esi, edi
        jbe .one
.next:  pop bx
        add bx, 8
        jmp .extra

.done:  mov si, endmsg
.msg:   mov al, [cs:si]
        or al, al
        jz .exit
        out dx, al
        inc si
        jmp .msg
.exit:  mov al, 0
        out EXIT, al
.halt:  hlt
        jmp .halt

; esi = first leaf of a range: query every leaf up to the range maximum (at most 0x60
; leaves), then the leaf after the maximum
do_range:
        mov eax, esi
        xor ecx, ecx
        cpuid
        mov ebx, esi
        add ebx, 0x5f
        cmp eax, esi
        jb .clamp_lo
        cmp eax, ebx
        jbe .ok
.clamp_lo:
        mov eax, ebx
.ok:    inc eax
        mov [MAXV], eax
.leaf:  call do_leaf
        inc esi
        cmp esi, [MAXV]
        jbe .leaf
        ret

; esi = leaf: query subleaves 0..NSUB-1
do_leaf:
        xor ebp, ebp
.sub:   mov eax, esi
        mov ecx, ebp
        cpuid
        push edx
        push ecx
        push ebx
        push eax
        mov dx, DBG                 ; cpuid wrote edx
        mov eax, esi
        call hex32
        mov eax, ebp
        call hex32
        pop eax
        call hex32
        pop eax
        call hex32
        pop eax
        call hex32
        pop eax
        call hex32
        mov al, 10
        out dx, al
        inc ebp
        cmp ebp, NSUB
        jb .sub
        ret

; print eax as eight hex digits and a space (dx = port)
hex32:
        mov ecx, 8
.dig:   rol eax, 4
        push eax
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 'a' - '9' - 1
.out:   out dx, al
        pop eax
        loop .dig
        mov al, ' '
        out dx, al
        ret

endmsg: db "END", 10, 0

align 4
extra:
%(extra)s
        dd 0, 0

        times 0xfff0 - ($ - $$) db 0xff
reset:  jmp 0xf000:start
        times 0x10000 - ($ - $$) db 0xff
"""


def guest_source():
    extra = "\n".join(f"        dd {first:#x}, {last:#x}" for first, last in EXTRA_LEAVES)
    return GUEST_ASM % {"nsub": NSUB, "extra": extra}


def build_guest(workdir, nasm="nasm"):
    src = pathlib.Path(workdir) / "cpuid_guest.asm"
    out = pathlib.Path(workdir) / "cpuid_guest.bin"
    src.write_text(guest_source())
    proc = subprocess.run([nasm, "-f", "bin", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nasm failed:\n{proc.stderr.strip()}")
    if out.stat().st_size != 0x10000:
        raise RuntimeError(f"guest image is {out.stat().st_size} bytes, not 64 KiB")
    return out


def run_qemu(image, workdir, cpu="qemu64", qemu="qemu-system-x86_64",
             machine="q35", extra_args=(), timeout=60):
    """Run the guest; return (debugcon text, QEMU's stderr)."""
    log = pathlib.Path(workdir) / "debugcon.txt"
    cmd = [qemu, "-machine", machine, "-accel", "tcg", "-cpu", cpu, "-smp", "1",
           "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
           "-bios", str(image),
           "-chardev", f"file,id=dbg,path={log}",
           "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
           *extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    text = log.read_text() if log.exists() else ""
    if "END" not in text:
        raise RuntimeError(f"guest did not finish (QEMU exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}\n{text[-500:]}")
    return text, proc.stderr


def parse(text):
    """Debugcon text -> {(leaf, subleaf): (eax, ebx, ecx, edx)}."""
    raw = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue
        leaf, sub, *regs = (int(p, 16) for p in parts)
        raw[(leaf, sub)] = tuple(regs)
    return raw


def fold(raw):
    """Fold subleaves: {leaf: regs} when ECX does not matter, else {leaf: {subleaf: regs}}.

    For a leaf that depends on ECX, subleaves are kept up to the last one that
    differs from its successor; every higher subleaf equals the last one kept
    (as far as NSUB shows).
    """
    leaves = {}
    for leaf in sorted({k[0] for k in raw}):
        subs = [raw[(leaf, s)] for s in range(NSUB) if (leaf, s) in raw]
        if all(r == subs[0] for r in subs):
            leaves[leaf] = subs[0]
            continue
        last = len(subs) - 1
        while last > 0 and subs[last - 1] == subs[last]:
            last -= 1
        leaves[leaf] = {s: subs[s] for s in range(last + 1)}
    return leaves


def compare(raw, model, sev=None):
    """Lines describing where *model* differs from QEMU's *raw* answers."""
    groups = {}             # (leaf, qemu, pysev) -> subleaves
    for (leaf, sub), regs in sorted(raw.items()):
        if sev is not None and leaf == 0x8000001F:
            continue
        mine = tuple(model.cpuid(leaf, sub, sev=sev))
        if mine != regs:
            groups.setdefault((leaf, regs, mine), []).append(sub)
    diffs = []
    for (leaf, regs, mine), subs in groups.items():
        where = f"{subs[0]}" if len(subs) == 1 else f"{len(subs)} subleaves from {subs[0]}"
        diffs.append(f"leaf {leaf:#010x} ({where}): qemu {_regs(regs)} pysev {_regs(mine)}")
    return diffs


def _regs(r):
    return "(" + ", ".join(f"0x{v:08X}" for v in r) + ")"


def format_table(leaves, name="LEAVES"):
    out = [f"{name} = {{"]
    for leaf, val in leaves.items():
        if isinstance(val, dict):
            out.append(f"    0x{leaf:08X}: {{")
            for s, r in val.items():
                out.append(f"        {s}: {_regs(r)},")
            out.append("    },")
        else:
            out.append(f"    0x{leaf:08X}: {_regs(val)},")
    out.append("}")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", default="qemu64", help="QEMU -cpu value (default: qemu64)")
    parser.add_argument("--machine", default="q35", help="QEMU -machine value (default: q35)")
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU executable")
    parser.add_argument("--nasm", default="nasm", help="nasm executable")
    parser.add_argument("--raw", action="store_true", help="print the guest's lines unfolded")
    parser.add_argument("--asm", action="store_true", help="print the guest source and exit")
    parser.add_argument("--compare", action="store_true",
                        help="compare with pysev's model of the same name; exit 1 on a difference")
    parser.add_argument("--sev-xlevel", action="store_true",
                        help="with --compare: model with SEV on, QEMU with xlevel=0x8000001F")
    parser.add_argument("qemu_args", nargs="*", help="extra QEMU arguments (after --)")
    args = parser.parse_args(argv)
    if args.asm:
        print(guest_source())
        return 0
    for tool in (args.nasm, args.qemu):
        if shutil.which(tool) is None:
            print(f"qemu_cpuid: {tool} not found", file=sys.stderr)
            return 2
    cpu = args.cpu
    if args.sev_xlevel:
        cpu += ",xlevel=0x8000001F"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            image = build_guest(tmp, args.nasm)
            text, warnings = run_qemu(image, tmp, cpu=cpu, qemu=args.qemu,
                            machine=args.machine, extra_args=args.qemu_args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"qemu_cpuid: {exc}", file=sys.stderr)
            return 1
    version = subprocess.run([args.qemu, "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    if args.raw:
        print(text, end="")
        return 0
    if args.compare:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
        from pysev.cpu.cpuid import get_model
        model = get_model(args.cpu.split(",")[0])
        sev = {"cbitpos": 51, "reduced_phys_bits": 1} if args.sev_xlevel else None
        raw = parse(text)
        diffs = compare(raw, model, sev)
        for line in diffs:
            print(line)
        print(f"{model.name}: {len(raw)} queries, {len(diffs)} differences ({version})")
        return 1 if diffs else 0
    print(f"# {version}; -machine {args.machine} -accel tcg -cpu {cpu} -smp 1 (APIC ID 0)")
    for line in warnings.splitlines():          # e.g. features TCG filtered out of the model
        print(f"# {line}")
    print(format_table(fold(parse(text))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
