"""`pysev bench`: the benchmark table with pysev, unicorn and vivisect, and its SVG plot."""

import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from pysev import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
SCALE = "0.002"            # alu: 20,002 instructions on pysev, 402 on vivisect
HAVE = {"pysev": True, "unicorn": bench.unicorn_available(),
        "vivisect": bench.vivisect_available()}
# vivisect is in the test extra: its tests run (and fail loudly) without a skip
needs_vivisect = pytest.mark.usefixtures()


def table(text):
    """The table's header and rows, as {workload: {column: cell}}."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("workload "))
    rule = lines[start + 1]
    # the columns are separated by two spaces in the rule line under the header
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    header = [lines[start][a:b].strip() for a, b in spans[:-1]]
    header.append(lines[start][spans[-1][0]:].strip())
    rows = {}
    for line in lines[start + 2:]:
        cells = [line[a:b].strip() for a, b in spans]
        if cells[0] not in bench.ALL_WORKLOADS:
            break
        rows[cells[0]] = dict(zip(header, cells))
    return header, rows


def bars(path):
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    found = [(r.get("data-workload"), r.get("data-engine"), float(r.get("data-rate")))
             for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "workload"]
    legend = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "legend"]
    return found, labels, legend


def run_cli(capsys, *args):
    code = cli.main(["bench", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pysev_bench_runs_alu_on_three_engines(tmp_path):
    plot = tmp_path / "tmp.svg"
    proc = subprocess.run([sys.executable, "-m", "pysev", "bench", "--workload", "alu",
                           "--repeat", "1", "--scale", SCALE, "--plot", str(plot)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    header, rows = table(proc.stdout)
    assert header == ["workload", "instructions", "vivisect instructions", "pysev instr/s",
                      "unicorn instr/s", "vivisect instr/s", "unicorn/pysev", "pysev/vivisect"]
    row = rows["alu"]
    assert row["instructions"] == f"{bench.WORKLOADS['alu'].instructions(int(0.002 * 1_250_000)):,}"
    measured = []
    for engine in bench.ENGINES:
        cell = row[f"{engine} instr/s"]
        if HAVE[engine]:
            assert re.fullmatch(r"[\d,]+", cell), (engine, cell)
            measured.append(engine)
        else:
            assert cell == "not installed"
    if HAVE["vivisect"]:
        assert row["vivisect instructions"] == f"{8 * 50 + 2:,}"   # 1/50 of the iterations
        assert row["pysev/vivisect"].endswith("x")
    if HAVE["unicorn"]:
        assert row["unicorn/pysev"].endswith("x")
    assert "checked: " in proc.stdout
    found, labels, legend = bars(plot)
    assert [(w, e) for w, e, _ in found] == [("alu", e) for e in measured]
    assert all(rate > 0 for *_, rate in found)
    assert labels == ["alu"] and legend == list(bench.ENGINES)


def test_all_workloads_one_bar_per_workload_and_engine(tmp_path, capsys):
    plot = tmp_path / "all.svg"
    code, out, err = run_cli(capsys, "--scale", "0.001", "--plot", str(plot))
    assert code == 0, err
    _header, rows = table(out)
    assert list(rows) == list(bench.ALL_WORKLOADS)
    for name in bench.PAGING_WORKLOADS:          # system mode: pysev only
        assert rows[name]["unicorn instr/s"] in ("-", "not installed")
        assert rows[name]["vivisect instr/s"] in ("-", "not installed")
        assert rows[name]["vivisect instructions"] == "-"
    expected = [(name, engine) for name in bench.ALL_WORKLOADS for engine in bench.ENGINES
                if HAVE[engine] and (engine == "pysev" or name in bench.WORKLOADS)]
    found, labels, _legend = bars(plot)
    assert [(w, e) for w, e, _ in found] == expected
    assert labels == list(bench.ALL_WORKLOADS)
    # each bar's rate is the table's figure
    for name, engine, rate in found:
        assert rows[name][f"{engine} instr/s"] == f"{rate:,.0f}"
    assert f"plot: {plot}" in out


def test_engine_selection(tmp_path, capsys):
    plot = tmp_path / "pysev.svg"
    code, out, err = run_cli(capsys, "--workload", "alu", "--scale", "0.001",
                             "--engines", "pysev", "--plot", str(plot))
    assert code == 0, err
    header, rows = table(out)
    assert "vivisect instr/s" not in header      # vivisect columns only when it is selected
    assert rows["alu"]["unicorn instr/s"] == "-"
    assert "note:" not in out
    assert [e for _w, e, _r in bars(plot)[0]] == ["pysev"]


@needs_vivisect
def test_vivisect_only(tmp_path, capsys):
    plot = tmp_path / "viv.svg"
    code, out, err = run_cli(capsys, "--workload", "call", "--scale", "0.002",
                             "--engines", "vivisect", "--plot", str(plot))
    assert code == 0, err
    _header, rows = table(out)
    row = rows["call"]
    assert row["pysev instr/s"] == "-" and row["unicorn instr/s"] == "-"
    assert re.fullmatch(r"[\d,]+", row["vivisect instr/s"])
    assert "checked vivisect: instruction counts and final state agree" in out
    assert [e for _w, e, _r in bars(plot)[0]] == ["vivisect"]


def test_missing_engines_are_noted_not_raised(tmp_path, capsys, monkeypatch):
    # a None entry in sys.modules makes the import fail as for a missing package
    monkeypatch.setitem(sys.modules, "unicorn", None)
    monkeypatch.setitem(sys.modules, "envi", None)
    plot = tmp_path / "missing.svg"
    code, out, err = run_cli(capsys, "--workload", "alu", "--workload", "pagewalk",
                             "--scale", "0.001", "--plot", str(plot))
    assert code == 0, err
    assert "Traceback" not in out + err
    assert "note: unicorn is not installed" in out
    assert "note: vivisect is not installed" in out
    _header, rows = table(out)
    assert rows["alu"]["unicorn instr/s"] == "not installed"
    assert rows["alu"]["vivisect instr/s"] == "not installed"
    assert re.fullmatch(r"[\d,]+", rows["alu"]["pysev instr/s"])
    assert [(w, e) for w, e, _ in bars(plot)[0]] == [("alu", "pysev"), ("pagewalk", "pysev")]


def test_only_missing_engines_fail_cleanly(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "unicorn", None)
    monkeypatch.setitem(sys.modules, "envi", None)
    plot = tmp_path / "none.svg"
    code, out, err = run_cli(capsys, "--engines", "unicorn,vivisect", "--plot", str(plot))
    assert code == 1
    assert "none of the engines unicorn, vivisect is installed" in err
    assert "Traceback" not in out + err and not plot.exists()


@needs_vivisect
def test_vivisect_unsupported_instruction_shows_in_the_table(capsys, monkeypatch):
    import envi
    from envi.archs.amd64 import Amd64Emulator

    def stepi(emu):
        raise envi.UnsupportedInstruction(emu, "fake op")

    monkeypatch.setattr(Amd64Emulator, "stepi", stepi)
    code, out, err = run_cli(capsys, "--workload", "alu", "--scale", "0.001",
                             "--engines", "pysev,vivisect", "--plot", "")
    assert code == 0, err
    _header, rows = table(out)
    assert rows["alu"]["vivisect instr/s"] == "unsupported"
    assert rows["alu"]["pysev/vivisect"] == "-"
    assert "vivisect alu: unsupported: at 0x100000" in out


@needs_vivisect
def test_vivisect_wrong_result_shows_mismatch(capsys, monkeypatch):
    real = bench.run_pysev if not HAVE["unicorn"] else bench.run_unicorn

    def wrong(workload, n, repeat=1):
        result = real(workload, n, repeat)
        result.registers["rax"] ^= 1
        return result

    monkeypatch.setattr(bench, "run_unicorn" if HAVE["unicorn"] else "run_pysev", wrong)
    code, out, err = run_cli(capsys, "--workload", "alu", "--scale", "0.001",
                             "--engines", "vivisect", "--plot", "")
    assert code == 0, err
    _header, rows = table(out)
    assert rows["alu"]["vivisect instr/s"] == "mismatch"
    assert re.search(r"vivisect alu: mismatch: .*rax: vivisect=", out)


def test_default_plot_is_the_checkouts_results_svg(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "bench", lambda *args, **kw: calls.append((args, kw)) or 0)
    assert cli.main(["bench", "--workload", "mem", "--engines", "unicorn,pysev"]) == 0
    (names, scale, repeat, engines, plot), kw = calls[0]
    assert (names, scale, repeat, engines) == (["mem"], 1.0, 1, ("pysev", "unicorn"))
    assert pathlib.Path(plot) == ROOT / "benchmarks" / "results.svg"
    assert kw == {"firmware": None}             # one workload: no firmware boot
    assert cli.main(["bench"]) == 0
    assert calls[1][1] == {"firmware": "/usr/share/ovmf/OVMF.fd"}
    assert cli.main(["bench", "--firmware", "none"]) == 0
    assert calls[2][1] == {"firmware": None}


def test_all_workloads_then_the_firmware(tmp_path, capsys):
    """The full run boots OVMF after the table: the 64-bit check holds and the long run
    runs exactly its (scaled) count."""
    code, out, err = run_cli(capsys, "--scale", "0.001", "--engines", "pysev", "--plot", "")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("firmware: ")]
    assert lines[0] == "firmware: /usr/share/ovmf/OVMF.fd"
    assert re.fullmatch(r"firmware: reset vector to the first 64-bit instruction \(the "
                        r"27,259th\): \d+\.\d{3} s, best of 3, machine creation and "
                        r"translation included", lines[1])
    assert re.fullmatch(r"firmware: long run: 30,000 instructions in \d+\.\d\d s = "
                        r"[\d,]+ instructions/s; stopped \(count\) in 64-bit mode at "
                        r"0018:[0-9a-f]+", lines[2])


def test_firmware_checks_refuse_a_firmware_that_is_not_ovmf(tmp_path, capsys):
    from benchmarks import firmware
    halt = tmp_path / "halt.bin"
    halt.write_bytes(bytes(0xFF0) + b"\xf4" + bytes(15))
    assert firmware.report(str(halt), repeat=1, count=0) == 1
    _out, err = capsys.readouterr()
    assert err == ("firmware: check failed: the run ended (hlt) at instruction 1 in 16-bit "
                   "mode, not at 27,258 in 64-bit mode: not OVMF's reset vector as expected\n")
    assert firmware.report(str(tmp_path / "none.fd"), repeat=1, count=0) == 1
    _out, err = capsys.readouterr()
    assert err == (f"firmware: no firmware at {tmp_path / 'none.fd'} (Debian: apt-get "
                   "install ovmf); skipped\n")


@pytest.mark.parametrize("args, message", [
    (["--engines", "pysev,qemu"], "unknown engine 'qemu'"),
    (["--engines", ","], "no engine given"),
    (["--workload", "nope"], "unknown workload 'nope'"),
])
def test_bad_arguments(capsys, args, message):
    code, _out, err = run_cli(capsys, *args)
    assert code == 2 and message in err


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--scale", "-1"], ["--repeat", "x"]])
def test_bad_numbers(capsys, args):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *args])
    assert exc.value.code == 2
    capsys.readouterr()


def test_svg_with_failed_and_missing_engines():
    rows = [bench.Row("alu", 10, bench.Result("pysev", 0.5, 10, {}, ""), None, None, 4,
                      {"unicorn": "not installed", "vivisect": "unsupported"})]
    root = ET.fromstring(bench.plot_svg(rows))
    drawn = [r.get("data-engine") for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert drawn == ["pysev"]
