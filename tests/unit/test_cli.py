"""The pysev command line tool."""

import pathlib
import re
import subprocess
import sys
import sysconfig

import pytest

from pysev import __version__, cli

ROOT = pathlib.Path(__file__).resolve().parents[2]

GUEST_LINES = [
    "pysev demo guest: hello from 64-bit mode",
    "primes: 2 3 5 7 11 13 17 19 23 29",
    'fnv1a32("pysev: AMD SEV in pure Python") = 0xca6e3179',
    "fib(90) = 2880067194370816120",
    "pysev demo guest: done",
]
# instructions the demo guest executes, its final hlt included
DEMO_INSNS = 5046
HEADER = ("pysev demo: running the bundled 64-bit guest demo64.bin "
          "(545 bytes at 0x100000); its serial output follows")
SUMMARY = re.compile(r"pysev demo: (\d+) guest instructions in \d+\.\d{3} s \([\d,]+ instructions/s\)")


def pysev(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pysev", *args], cwd=kwargs.pop("cwd", ROOT),
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_version():
    proc = pysev("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "pysev 0.1.0\n", "")
    assert __version__ == "0.1.0"


def test_help_lists_subcommands():
    proc = pysev("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: pysev ")
    for name, _ in cli.SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", proc.stdout, flags=re.M), name


def test_no_subcommand_prints_help_and_fails():
    proc = pysev()
    assert proc.returncode == 2
    assert proc.stdout == "" and "usage: pysev" in proc.stderr


def test_demo_output():
    proc = pysev("demo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == HEADER
    assert lines[1:-1] == GUEST_LINES
    match = SUMMARY.fullmatch(lines[-1])
    assert match, lines[-1]
    assert int(match.group(1)) == DEMO_INSNS


def test_demo_in_process(capsys):
    assert cli.main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1:-1] == GUEST_LINES
    assert err == ""


def test_demo_log_op_to_file(tmp_path):
    log = tmp_path / "op.log"
    proc = pysev("demo", "-d", "op", "-D", str(log))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[1:-1] == GUEST_LINES
    text = log.read_text()
    assert "def " in text


def test_demo_log_in_asm_and_op_to_file(tmp_path):
    log = tmp_path / "both.log"
    proc = pysev("demo", "-d", "in_asm,op", "-D", str(log))
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert "def " in text
    assert "hlt" in text.lower() and "out" in text.lower()


def test_demo_log_in_asm_goes_to_stderr_without_D():
    proc = pysev("demo", "-d", "in_asm")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[1:-1] == GUEST_LINES
    assert "hlt" in proc.stderr.lower()
    assert "def " not in proc.stderr


def test_demo_D_without_d_logs_nothing(tmp_path):
    log = tmp_path / "empty.log"
    proc = pysev("demo", "-D", str(log))
    assert proc.returncode == 0
    assert log.read_text() == ""


def test_d_help_lists_items():
    proc = pysev("demo", "-d", "help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert re.search(r"^\s+in_asm\s+\S", proc.stdout, flags=re.M)
    assert re.search(r"^\s+op\s+\S", proc.stdout, flags=re.M)
    assert "pysev demo guest" not in proc.stdout  # the guest does not run


def test_d_unknown_item_is_a_one_line_error():
    proc = pysev("demo", "-d", "in_asm,bogus")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "pysev: -d: unknown log item 'bogus' (try -d help)\n"


def test_unknown_option():
    proc = pysev("demo", "--bogus")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "unrecognized arguments: --bogus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_subcommand():
    proc = pysev("nosuchcommand")
    assert proc.returncode == 2
    assert "invalid choice: 'nosuchcommand'" in proc.stderr


@pytest.mark.parametrize("value", ["-1", "ten"])
def test_bad_max_insns(value):
    proc = pysev("demo", "--max-insns", value)
    assert proc.returncode == 2
    assert "--max-insns" in proc.stderr and "Traceback" not in proc.stderr


def test_unwritable_log_file_is_a_one_line_error(tmp_path):
    proc = pysev("demo", "-d", "op", "-D", str(tmp_path / "missing" / "x.log"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("pysev: -D: cannot open ") and proc.stderr.count("\n") == 1


def test_max_insns_stops_the_guest():
    proc = pysev("demo", "--max-insns", "100")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == HEADER
    assert int(SUMMARY.fullmatch(lines[-1]).group(1)) == 100
    assert "pysev demo guest: done" not in proc.stdout
    assert "--max-insns 100" in proc.stderr


@pytest.mark.parametrize("code, message", [
    (b"\x0f\x0b", "pysev: demo: guest exception #UD (vector 6) at 0x100000"),
    (b"\x90\x31\xc9\xf7\xf1", "pysev: demo: guest exception #DE (vector 0) at 0x100003"),
    (b"\xcc", "pysev: demo: guest exception #BP (vector 3) at 0x100000"),
])
def test_guest_exception_is_a_one_line_error(monkeypatch, capsys, code, message):
    from pysev import guests
    monkeypatch.setattr(guests, "load", lambda name: code)
    assert cli.main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert err == message + "\n"
    assert out.splitlines()[0].startswith("pysev demo: running")
    assert "Traceback" not in out + err


def test_guest_exception_after_partial_line(monkeypatch, capsys):
    # mov dx, 0x3f8; mov al, 'x'; out dx, al; ud2
    code = bytes.fromhex("66baf803" "b078" "ee" "0f0b")
    from pysev import guests
    monkeypatch.setattr(guests, "load", lambda name: code)
    assert cli.main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[1] == "x"
    assert err == "pysev: demo: guest exception #UD (vector 6) at 0x100007\n"


def test_describe_guest_exception_with_error_code():
    class Fake:
        vector, address, error_code = 13, 0x1234, 0x18
    assert (cli.describe_guest_exception(Fake())
            == "guest exception #GP (vector 13) at 0x1234, error code 0x18")


def test_parse_log_items():
    assert cli.parse_log_items(None) == ()
    assert cli.parse_log_items("op") == ("op",)
    assert cli.parse_log_items("in_asm,op,in_asm") == ("in_asm", "op")
    assert cli.parse_log_items("help") is None
    with pytest.raises(cli.CliError):
        cli.parse_log_items("exec")


def test_console_script_is_installed():
    script = pathlib.Path(sysconfig.get_path("scripts")) / "pysev"
    assert script.exists(), "install the package first: python3 -m pip install -e '.[test]'"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.stdout == "pysev 0.1.0\n"
