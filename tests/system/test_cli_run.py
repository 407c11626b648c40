"""`pysev run`: the command line around pysev.Machine, run as a subprocess."""

import json
import pathlib
import subprocess
import sys

import pytest

from pysev.cpu.cpuid import get_model

ROOT = pathlib.Path(__file__).resolve().parents[2]

from sysboot import TOP_64K, hello_source, nasm  # noqa: E402

HELLO = hello_source('"hello"')
HELLO_INSNS = 40

TRIPLE = r"""
    lidt [cs:null_idt]
    int3
    hlt
null_idt: dw 0
          dd 0
"""


def pysev(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pysev", "run", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def image(tmp_path, code, name="bios.bin"):
    top = nasm(TOP_64K.format(code=code))
    path = tmp_path / name
    path.write_bytes(top)
    return path


@pytest.fixture
def hello(tmp_path):
    return image(tmp_path, HELLO, "hello.bin")


def reset_state(signature):
    zero_seg = {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x9300}
    regs = {name: 0 for name in ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")}
    regs.update(rdx=signature, rip=0xFFF0, rflags=0x2)
    return {
        "icount": 0,
        "stop_reason": "count",
        "regs": regs,
        "segments": {
            "es": zero_seg, "cs": {"selector": 0xF000, "base": 0xFFFF0000, "limit": 0xFFFF,
                                   "attr": 0x9B00},
            "ss": zero_seg, "ds": zero_seg, "fs": zero_seg, "gs": zero_seg,
            "ldtr": {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x8200},
            "tr": {"selector": 0, "base": 0, "limit": 0xFFFF, "attr": 0x8B00},
        },
        "gdtr": {"base": 0, "limit": 0xFFFF},
        "idtr": {"base": 0, "limit": 0xFFFF},
        "cr0": 0x60000010, "cr2": 0, "cr3": 0, "cr4": 0, "efer": 0,
    }


@pytest.mark.parametrize("cpu", ["EPYC-Milan", "qemu64"])
def test_max_insns_0_writes_the_reset_state(tmp_path, hello, cpu):
    state = tmp_path / "state.json"
    proc = pysev("-bios", hello, "-cpu", cpu, "--max-insns", "0", "--state-json", state)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == "pysev: stopped after 0 instructions (count)\n"
    assert json.loads(state.read_text()) == reset_state(get_model(cpu).signature())


def test_serial_output_is_all_of_stdout(tmp_path, hello):
    state = tmp_path / "state.json"
    proc = pysev("-bios", hello, "-nographic", "--state-json", state)
    assert (proc.returncode, proc.stdout) == (0, "hello"), proc.stderr
    # the guest left its line open: the summary starts a new one
    assert proc.stderr == f"\npysev: stopped after {HELLO_INSNS} instructions (hlt)\n"
    got = json.loads(state.read_text())
    assert got["stop_reason"] == "hlt" and got["icount"] == HELLO_INSNS
    assert got["regs"]["rax"] & 0xFF == 0x42
    assert got["regs"]["rip"] == 0x17                 # after the hlt


def test_serial_to_file_and_null(tmp_path, hello):
    out = tmp_path / "com1"
    proc = pysev("-bios", hello, "-serial", f"file:{out}", "-display", "none")
    assert (proc.returncode, proc.stdout) == (0, "")
    assert out.read_text() == "hello"
    proc = pysev("-bios", hello, "-serial", "null")
    assert (proc.returncode, proc.stdout) == (0, "")
    assert proc.stderr == f"pysev: stopped after {HELLO_INSNS} instructions (hlt)\n"


def test_max_insns_stops_the_guest(hello):
    proc = pysev("-bios", hello, "--max-insns", "9")
    assert proc.returncode == 0
    assert proc.stdout == "h"
    assert proc.stderr == "\npysev: stopped after 9 instructions (count)\n"


def test_triple_fault_with_no_reboot_fails(tmp_path):
    path = image(tmp_path, TRIPLE)
    state = tmp_path / "state.json"
    proc = pysev("-bios", path, "-no-reboot", "--state-json", state)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "pysev: stopped after 3 instructions (triple-fault)"
    assert lines[1].startswith("pysev: the guest triple faulted at f000:6: ")
    assert lines[1].endswith("; -no-reboot stops the machine instead of resetting it")
    assert len(lines) == 2
    assert json.loads(state.read_text())["stop_reason"] == "triple-fault"


def test_triple_fault_without_no_reboot_resets(tmp_path):
    path = image(tmp_path, TRIPLE)
    proc = pysev("-bios", path, "--max-insns", "40")
    assert proc.returncode == 0
    assert proc.stderr == "pysev: stopped after 40 instructions (count)\n"


def test_trace_file(tmp_path, hello):
    log = tmp_path / "trace.log"
    proc = pysev("-bios", hello, "-serial", "null", "-d", "in_asm,cpu,int,mmu,nochain",
                 "-D", log, "--max-insns", "3")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr == "pysev: stopped after 3 instructions (count)\n"
    lines = log.read_text().splitlines()
    assert lines[:5] == ["CR0 update: CR0=0x60000010", "CR0 update: CR0=0x60000010",
                         "----------------", "IN: ",
                         "0xfffffff0:  e9 0d 00                 jmp      0"]
    assert lines[6] == "EAX=00000000 EBX=00000000 ECX=00000000 EDX=00a00f11"
    assert sum(line.startswith("EFER=") for line in lines) == 3
    assert sum(line == "IN: " for line in lines) == 3


def test_trace_goes_to_stderr_without_D(hello):
    proc = pysev("-bios", hello, "-serial", "null", "-d", "in_asm", "--max-insns", "1")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.startswith("----------------\nIN: \n0xfffffff0:  e9 0d 00 ")
    assert proc.stderr.endswith("pysev: stopped after 1 instructions (count)\n")


@pytest.mark.parametrize("args, message", [
    (["-bios", "x.fd", "-foo"], "pysev run: unknown option '-foo' (supported: -bios, -m, -cpu, "
     "-machine, -serial, -debugcon, -display, -nographic, -no-reboot, -d, -D, -singlestep, "
     "-accel, -smp, -global, --max-insns, --state-json, -object, -kernel, -initrd, -append, "
     "-S, -qmp, --save-snapshot, --load-snapshot, -seed)"),
    (["-bios", "x.fd", "-m", "12X"], "pysev run: -m: invalid size '12X'"),
    (["-machine", "virt"], "pysev run: -machine: unsupported machine type 'virt' "
                           "(supported: q35, pc)"),
    (["-d", "in_asm,bogus"], "pysev run: -d: unknown log item 'bogus' (try -d help)"),
    (["-m", "64M"], "pysev run: no firmware: give -bios FILE (pysev run -help lists the options)"),
    (["-bios", "/nonexistent/x.fd"],
     "pysev run: -bios: cannot read '/nonexistent/x.fd': No such file or directory"),
    (["-bios", "{hello}", "-cpu", "486"],
     "pysev run: -cpu: unknown CPU model '486' (try -cpu help)"),
    (["-bios", "{hello}", "-D", "/nonexistent/log"],
     "pysev run: -D: cannot open '/nonexistent/log': No such file or directory"),
    (["-bios", "{hello}", "-serial", "file:/nonexistent/com1"],
     "pysev run: -serial: cannot open '/nonexistent/com1': No such file or directory"),
    (["-bios", "{hello}", "--state-json", "/nonexistent/s.json"],
     "pysev run: --state-json: cannot write '/nonexistent/s.json': No such file or directory"),
])
def test_usage_errors_are_one_line_and_exit_2(hello, args, message):
    proc = pysev(*[a.format(hello=hello) for a in args])
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message + "\n")


def test_help_items():
    proc = pysev("-d", "help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Log items (comma separated, for -d):\n")
    for item in ("in_asm", "cpu", "int", "mmu"):
        assert f"\n  {item} " in proc.stdout
    proc = pysev("-cpu", "help")
    assert proc.returncode == 0 and "EPYC-Milan" in proc.stdout and "qemu64" in proc.stdout
    proc = pysev("-machine", "help")
    assert proc.returncode == 0 and "q35" in proc.stdout and "pc" in proc.stdout
    proc = pysev("-help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: pysev run -bios FILE")


def test_run_is_listed_in_pysev_help():
    proc = subprocess.run([sys.executable, "-m", "pysev", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert any(line.split()[:1] == ["run"] for line in proc.stdout.splitlines())
