"""pysev against QEMU on Debian's OVMF: the reset-vector path up to 64-bit mode.

The reference is QEMU 7.2 (Debian's qemu-system-x86) running
/usr/share/ovmf/OVMF.fd (Debian's ovmf package) one instruction per block:

    qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64 -m 256 -bios OVMF.fd \\
        -d cpu,in_asm,int,nochain -singlestep ...

Its checkpoints (first instruction in protected mode, first after the CR3 load,
first 64-bit instruction: QEMU's instruction 27,259) are kept with their full
register state in data/ovmf_qemu_checkpoints.json, written by

    python3 tools/qemu_trace.py checkpoints --bios /usr/share/ovmf/OVMF.fd \\
        --json tests/system/data/ovmf_qemu_checkpoints.json

so the pysev tests need no QEMU.  Numbering: QEMU's record n is the state
before its n-th instruction, which is pysev's state after n - 1 instructions.

The last tests run tools/qemu_trace.py against QEMU itself (installed by
.ci/run) on a short trace, and check the tool's comparison logic with a
machine that replays QEMU's trace.
"""

import copy
import importlib.util
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
OVMF = "/usr/share/ovmf/OVMF.fd"
FIXTURE = pathlib.Path(__file__).resolve().parent / "data" / "ovmf_qemu_checkpoints.json"


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qt = _load_tool("qemu_trace")
FIXTURE_DATA, QEMU_CPS = qt.load_fixture(FIXTURE)
QEMU_RESET = FIXTURE_DATA["reset"]


def _ovmf_problem():
    """Why the installed OVMF.fd cannot be compared with the fixture, or None."""
    if not os.path.isfile(OVMF):
        return f"{OVMF} is missing: install Debian's ovmf package (apt-get install ovmf)"
    digest = qt.sha256_file(OVMF)
    if digest != FIXTURE_DATA["bios_sha256"]:
        return (f"{OVMF} has sha256 {digest}, but the QEMU reference in {FIXTURE.name} was recorded "
                f"from an image with sha256 {FIXTURE_DATA['bios_sha256']} (Debian ovmf 2022.11-6+deb12u2); "
                f"re-record it with tools/qemu_trace.py checkpoints --json")
    return None


def _need_ovmf():
    problem = _ovmf_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


def _diff_text(diffs):
    return "\n".join(f"  {field}: qemu {qt._fmt(q)} pysev {qt._fmt(p)}" for field, q, p in diffs)


# --------------------------------------------------------------------------- the fixture itself

def test_installed_ovmf_is_the_recorded_image():
    problem = _ovmf_problem()
    assert problem is None, problem


def test_fixture_checkpoints():
    assert set(QEMU_CPS) == set(qt.CHECKPOINTS)
    assert QEMU_CPS["first_64bit"]["index"] == 27259
    assert QEMU_CPS["first_64bit"]["previous"]["insn"][1].startswith("ljmp")
    assert QEMU_CPS["protected_mode"]["previous"]["insn"][1].endswith("%cr0")
    assert QEMU_CPS["cr3_load"]["previous"]["insn"][1].endswith("%cr3")
    for name, rec in QEMU_CPS.items():
        preds = qt.predicates(QEMU_RESET["cr3"])
        assert preds[name](rec), name
        assert not preds[name](rec["previous"]), name
        assert rec["previous"]["index"] == rec["index"] - 1


# --------------------------------------------------------------------------- pysev against the fixture

def test_pysev_reset_state():
    _need_ovmf()
    try:
        state = qt.PysevRunner(OVMF).state_after(0)
    except qt.TraceError as exc:
        pytest.fail(str(exc), pytrace=False)
    diffs = qt.diff_state(QEMU_RESET, state)
    assert not diffs, "pysev's state at reset differs from QEMU's:\n" + _diff_text(diffs)


@pytest.mark.parametrize("name", qt.CHECKPOINTS)
def test_pysev_checkpoint(name):
    _need_ovmf()
    q = QEMU_CPS[name]
    i = q["index"]
    try:
        runner = qt.PysevRunner(OVMF)
        init = runner.state_after(0)
        before = runner.state_after(i - 2)
        at = runner.state_after(i - 1)
    except qt.TraceError as exc:
        pytest.fail(str(exc), pytrace=False)
    pred = qt.predicates(init["cr3"])[name]
    assert at["icount"] == i - 1
    assert not pred(before), f"pysev reached {name} before QEMU's instruction {i}"
    assert pred(at), f"pysev had not reached {name} at QEMU's instruction {i}"
    diffs = qt.diff_state(q["previous"], before)
    assert not diffs, (f"before instruction {i - 1} ({q['previous']['insn'][1]}), pysev differs "
                       f"from QEMU:\n" + _diff_text(diffs))
    diffs = qt.diff_state(q, at)
    assert not diffs, (f"at {name} (before instruction {i}, {q['insn'][1]}), pysev differs "
                       f"from QEMU:\n" + _diff_text(diffs))


def test_compare_cli_with_fixture():
    """The tool's compare command, with QEMU's side from the fixture (exit status 0 = all match)."""
    _need_ovmf()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "qemu_trace.py"), "compare",
                           "--bios", OVMF, "--fixture", str(FIXTURE)],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the tool against live QEMU

LIVE_INSNS = 400


@pytest.fixture(scope="module")
def live_trace(tmp_path_factory):
    """A short QEMU trace of OVMF.fd recorded through the tool's command line."""
    if shutil.which(qt.QEMU) is None:
        pytest.fail(f"{qt.QEMU} is missing: install Debian's qemu-system-x86 (see .ci/run)",
                    pytrace=False)
    _need_ovmf()
    path = tmp_path_factory.mktemp("qemu") / "trace.log"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "qemu_trace.py"), "record",
                           "--bios", OVMF, "--max-insns", str(LIVE_INSNS), "--trace", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def _plain(rec):
    """A record in the fixture's JSON form, for comparing a live record with the fixture's."""
    out = qt._fixture_record(rec)
    return json.loads(json.dumps(qt._hexify(out)))


def test_live_qemu_trace(live_trace):
    records = list(qt.parse(live_trace))
    assert len(records) >= LIVE_INSNS
    assert [r["index"] for r in records] == list(range(1, len(records) + 1))
    assert all("insn" in r for r in records), "every instruction has its disassembly"
    assert _plain(records[0]) == _plain(QEMU_RESET)
    cps = qt.checkpoints(records)
    pm = QEMU_CPS["protected_mode"]
    assert cps["protected_mode"]["index"] == pm["index"]
    assert _plain(cps["protected_mode"]) == _plain(pm)
    assert _plain(cps["protected_mode"]["previous"]) == _plain(pm["previous"])


class ReplayMachine:
    """Stands in for pysev.Machine: replays QEMU's records (record n + 1 after n instructions)."""

    def __init__(self, records, shift=0):
        self.records = records
        self.shift = shift
        self.icount = 0

    def run(self, max_insns):
        self.icount = max_insns

    def state_dict(self):
        rec = copy.deepcopy(self.records[min(max(0, self.icount + self.shift), len(self.records) - 1)])
        state = {k: rec[k] for k in ("regs", "segments", "gdtr", "idtr", "cr0", "cr2", "cr3", "cr4", "efer")}
        return dict(state, icount=self.icount, stop_reason="count")


def test_compare_logic_with_replayed_trace(live_trace):
    records = list(qt.parse(live_trace))
    cps = {"protected_mode": qt.checkpoints(records)["protected_mode"]}

    out = io.StringIO()
    assert qt.compare(cps, OVMF, out=out, machine_factory=lambda _: ReplayMachine(records),
                      reset=records[0], names=["protected_mode"]), out.getvalue()
    assert "protected_mode        18        18  ok" in out.getvalue()

    out = io.StringIO()           # a machine one instruction ahead is caught, with its index
    assert not qt.compare(cps, OVMF, out=out, machine_factory=lambda _: ReplayMachine(records, 1),
                          names=["protected_mode"], search=50)
    assert "protected_mode        18        17" in out.getvalue()
    assert "cr0: qemu 0x60000010 pysev 0x40000033" in out.getvalue()

    out = io.StringIO()           # and one behind
    assert not qt.compare(cps, OVMF, out=out, machine_factory=lambda _: ReplayMachine(records, -2),
                          names=["protected_mode"], search=50)
    assert "protected_mode        18        20" in out.getvalue()
