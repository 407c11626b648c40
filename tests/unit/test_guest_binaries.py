"""The committed guest binaries: up to date with their sources, and correct.

The reference engine for the guests' own behaviour here is unicorn, so these
tests check the binaries independently of pysev; the pysev runs of the same
binaries are in test_cli.py (demo) and at the end of this file (benchmarks).
"""

import importlib.util
import io
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_guests = _load_tool("build_guests")

DEMO_EXPECTED = (
    b"pysev demo guest: hello from 64-bit mode\n"
    b"primes: 2 3 5 7 11 13 17 19 23 29\n"
    b'fnv1a32("pysev: AMD SEV in pure Python") = 0xca6e3179\n'
    b"fib(90) = 2880067194370816120\n"
    b"pysev demo guest: done\n"
)
# guest instructions of the demo, the final hlt excluded
DEMO_INSNS = 5045


def test_every_source_has_a_committed_binary():
    found = build_guests.sources()
    names = {asm.name for _, asm in found}
    assert {"demo64.asm", "alu.asm", "mem.asm", "call.asm"} <= names
    for rel, asm in found:
        assert (ROOT / rel / (asm.stem + ".bin")).is_file(), asm


def test_committed_binaries_match_a_fresh_nasm_build(tmp_path):
    written = build_guests.build_all(tmp_path)
    assert len(written) == len(build_guests.sources())
    for out in written:
        rel = out.relative_to(tmp_path)
        assert (ROOT / rel).read_bytes() == out.read_bytes(), f"{rel} is stale: run tools/build_guests.py"


def test_build_script_check_mode():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_guests.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundled_guest_ships_with_the_package():
    from pysev import guests
    assert "demo64" in guests.names()
    assert guests.load("demo64") == (ROOT / "pysev" / "guests" / "demo64.bin").read_bytes()
    assert "bits 64" in guests.source("demo64")


def _run_demo_on_unicorn():
    unicorn = importlib.import_module("unicorn")
    from unicorn import x86_const as x86

    from pysev import cli, guests

    code = guests.load("demo64")
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(cli.DEMO_BASE, cli.DEMO_SIZE)
    uc.mem_write(cli.DEMO_BASE, code)
    uc.reg_write(x86.UC_X86_REG_RSP, cli.DEMO_STACK_TOP)
    out = bytearray()
    count = [0]
    hlt = []

    def on_in(_uc, port, size, _data):
        return 0x60 if port == 0x3FD else 0xFF

    def on_out(_uc, port, size, value, _data):
        if port == 0x3F8:
            out.append(value & 0xFF)

    def on_code(_uc, address, size, _data):
        if _uc.mem_read(address, 1) == b"\xf4":
            hlt.append(address)
            _uc.emu_stop()
        else:
            count[0] += 1

    uc.hook_add(unicorn.UC_HOOK_INSN, on_in, None, 1, 0, x86.UC_X86_INS_IN)
    uc.hook_add(unicorn.UC_HOOK_INSN, on_out, None, 1, 0, x86.UC_X86_INS_OUT)
    uc.hook_add(unicorn.UC_HOOK_CODE, on_code)
    uc.emu_start(cli.DEMO_BASE, cli.NO_UNTIL, count=1_000_000)
    return bytes(out), count[0], hlt


def test_demo_guest_output_on_unicorn():
    out, count, hlt = _run_demo_on_unicorn()
    assert out == DEMO_EXPECTED
    assert count == DEMO_INSNS
    assert len(hlt) == 1


# -- benchmark workloads --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(bench.WORKLOADS))
def test_workload_ends_with_hlt(name):
    code = bench.WORKLOADS[name].binary()
    assert code[-1] == 0xF4
    assert code.count(b"\xf4") >= 1


@pytest.mark.parametrize("name", sorted(bench.WORKLOADS))
def test_workload_formula_holds_on_unicorn(name):
    importlib.import_module("unicorn")
    workload = bench.WORKLOADS[name]
    for n in (1, 3, 10, 100):
        assert bench.count_with_unicorn(workload, n) == workload.instructions(n)
    bench.check_formula(workload)


@pytest.mark.parametrize("name", sorted(bench.WORKLOADS))
def test_workload_formula_is_documented(name):
    workload = bench.WORKLOADS[name]
    text = (ROOT / "benchmarks" / "workloads" / f"{name}.asm").read_text()
    assert f"insns(n) = {workload.per_iteration} * n + {workload.fixed}" in text
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert f"| {workload.per_iteration}n + {workload.fixed} |" in readme


def test_default_workloads_are_about_ten_million_instructions():
    for workload in bench.WORKLOADS.values():
        assert 9_000_000 <= workload.instructions(workload.iterations) <= 11_000_000


def test_benchmark_table_with_unicorn_only():
    importlib.import_module("unicorn")
    out = io.StringIO()
    rows = bench.run(list(bench.WORKLOADS), scale=0.001, repeat=1, engines=("unicorn",), out=out)
    text = out.getvalue()
    assert text.splitlines()[0].split() == ["workload", "instructions", "pysev", "instr/s",
                                            "unicorn", "instr/s", "unicorn/pysev"]
    assert [row[0] for row in rows] == list(bench.WORKLOADS)
    assert "checked: formulas" in text


def test_benchmark_pysev_agrees_with_unicorn():
    importlib.import_module("unicorn")
    importlib.import_module("pysev.api")
    out = io.StringIO()
    bench.run(list(bench.WORKLOADS), scale=0.0002, repeat=1, out=out)
    assert "final registers and memory agree" in out.getvalue()


def test_benchmark_cli_rejects_unknown_workload():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--workload", "nope"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
