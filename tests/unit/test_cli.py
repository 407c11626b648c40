"""The pysev command line tool."""

import hashlib
import os
import pathlib
import re
import subprocess
import sys
import sysconfig

import pytest

from pysev import __version__, cli

ROOT = pathlib.Path(__file__).resolve().parents[2]

SEVGUEST = ROOT / "pysev" / "guests" / "sevguest.bin"
OVMF = "/usr/share/ovmf/OVMF.fd"

# `pysev demo`: the bundled SEV test guest's serial output, as the demo shows it
GUEST_LINES = [
    "guest | sevguest: protected mode",
    "guest | SEV: active, C-bit 51, reduced-phys-bits 1",
    "guest | sevguest: long mode",
    "guest | C-bit page tables verified",
    "guest | secret: pysev demo secret: the guest owner trusts this VM",
    "guest | sevguest: halt",
]
# instructions sevguest executes with the demo's secret, its final hlt included
DEMO_INSNS = 25811
# the line before the guest's output
HEADER = "[5/6] host: cont: the guest runs; its serial output follows"


def summary_re(count=r"[\d,]+"):
    return rf"pysev demo: {count} guest instructions in \d+\.\d{{3}} s \([\d,]+ instructions/s\)"


def demo_patterns(name="sevguest.bin", what="the bundled SEV test guest, 64 KiB",
                  digest=None, gpa="0x800000", guest=GUEST_LINES,
                  end=f"      the guest halted after {DEMO_INSNS:,} instructions",
                  count=f"{DEMO_INSNS:,}"):
    """Regular expressions, one per line, for what `pysev demo` prints."""
    if digest is None:
        digest = hashlib.sha256(SEVGUEST.read_bytes()).hexdigest()
    lit = re.escape
    return [
        lit(f"pysev demo: {name} ({what}) starts paused under sev-emulated; "
            "the guest owner connects over QMP"),
        lit("[1/6] owner: query-sev: SEV enabled, state launch-secret, policy 0x1, "
            "API 1.55, build 0"),
        r"\[2/6\] owner: query-sev-launch-measure: [A-Za-z0-9+/]{64}",
        lit(f"[3/6] owner: expected launch digest, SHA-256 of {name}: {digest}"),
        lit("      measurement verified"),
        lit("[4/6] owner: sev-inject-launch-secret: a 96-byte efi_secret table, encrypted "
            f"under the TEK, at {gpa}"),
        lit(HEADER),
        *(lit(line) for line in guest),
        end if end.startswith("^") else lit(end),
        lit("[6/6] host: quit: SHUTDOWN (host-qmp-quit)"),
        summary_re(count),
    ]


def assert_lines_match(lines, patterns):
    assert len(lines) == len(patterns), "\n".join(lines)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern.lstrip("^"), line), (line, pattern)


# `pysev demo --engine-demo`: the 64-bit guest on the Emulator API
ENGINE_GUEST_LINES = [
    "pysev demo guest: hello from 64-bit mode",
    "primes: 2 3 5 7 11 13 17 19 23 29",
    'fnv1a32("pysev: AMD SEV in pure Python") = 0xca6e3179',
    "fib(90) = 2880067194370816120",
    "pysev demo guest: done",
]
# instructions the engine demo guest executes, its final hlt included
ENGINE_INSNS = 5046
ENGINE_HEADER = ("pysev demo: running the bundled 64-bit guest demo64.bin "
                 "(545 bytes at 0x100000); its serial output follows")
ENGINE_SUMMARY = re.compile(
    r"pysev demo: (\d+) guest instructions in \d+\.\d{3} s \([\d,]+ instructions/s\)")

# 4 KiB firmware images, entered at 0xFFFFFFF0 (offset 0xFF0), CS base 0xFFFF0000
HLT_BIOS = bytes(0xFF0) + bytes.fromhex("faf4") + bytes(14)                  # cli; hlt
# lidt cs:[0xfff8] (limit 0); int3: #BP, #GP, #DF cannot be delivered -> triple fault
TRIPLE_FAULT_BIOS = bytes(0xFF0) + bytes.fromhex("2e0f011ef8ff" "cc" "90") + bytes(8)


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


# ---- pysev demo: the SEV launch ----------------------------------------------------------

@pytest.fixture
def tmpdir_env(tmp_path):
    """TMPDIR for a demo subprocess: the demo's temporary directory (keys, QMP socket)
    goes there, so the test can check it was removed."""
    d = tmp_path / "tmp"
    d.mkdir()
    return d, dict(os.environ, TMPDIR=str(d))


def assert_cleaned_up(d):
    assert list(d.iterdir()) == [], "the demo left its temporary files"


def need_ovmf():
    if not os.path.isfile(OVMF):
        pytest.fail(f"{OVMF} is missing: install Debian's ovmf package", pytrace=False)


def test_demo_output(tmpdir_env):
    d, env = tmpdir_env
    proc = pysev("demo", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_lines_match(proc.stdout.splitlines(), demo_patterns())
    assert_cleaned_up(d)


def test_demo_in_process(capsys):
    assert cli.main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert_lines_match(out.splitlines(), demo_patterns())
    assert err == ""


def test_demo_help():
    proc = pysev("demo", "--help")
    assert proc.returncode == 0
    for option in ("--bios", "--secret-gpa", "--engine-demo", "--max-insns", "-d", "-D"):
        assert option in proc.stdout


def test_demo_log_op_to_file(tmp_path):
    log = tmp_path / "op.log"
    proc = pysev("demo", "-d", "op", "-D", str(log))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_lines_match(proc.stdout.splitlines(), demo_patterns())
    assert "def " in log.read_text()


def test_demo_log_in_asm_and_op_to_file(tmp_path):
    log = tmp_path / "both.log"
    proc = pysev("demo", "-d", "in_asm,op", "-D", str(log))
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert "def " in text
    assert "IN:" in text and "hlt" in text.lower() and "out" in text.lower()


def test_demo_log_in_asm_goes_to_stderr_without_D():
    proc = pysev("demo", "-d", "in_asm")
    assert proc.returncode == 0
    assert_lines_match(proc.stdout.splitlines(), demo_patterns())
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
    for item in ("in_asm", "op", "cpu", "int", "mmu"):
        assert re.search(rf"^\s+{item}\s+\S", proc.stdout, flags=re.M), item
    assert "guest |" not in proc.stdout and "[1/6]" not in proc.stdout   # nothing runs


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


@pytest.mark.parametrize("option", ["--max-insns", "--secret-gpa"])
@pytest.mark.parametrize("value", ["-1", "ten"])
def test_bad_numbers(option, value):
    proc = pysev("demo", option, value)
    assert proc.returncode == 2
    assert option in proc.stderr and "Traceback" not in proc.stderr


def test_unwritable_log_file_is_a_one_line_error(tmp_path):
    proc = pysev("demo", "-d", "op", "-D", str(tmp_path / "missing" / "x.log"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("pysev: -D: cannot open ") and proc.stderr.count("\n") == 1


def test_max_insns_stops_the_guest(tmpdir_env):
    d, env = tmpdir_env
    proc = pysev("demo", "--max-insns", "100", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    end = ("^      stopped at --max-insns 100 before the guest halted: "
           "32-bit protected mode, at 0008:ffff[0-9a-f]{4}")
    # the run stops inside the first line: it is ended before the report
    assert_lines_match(proc.stdout.splitlines(),
                       demo_patterns(guest=["guest | sevgu"], end=end, count="100"))
    assert_cleaned_up(d)


def test_secret_gpa_elsewhere_is_not_found_by_the_guest(capsys):
    """sevguest reads 0x800000 only: a secret put elsewhere is not seen."""
    assert cli.main(["demo", "--secret-gpa", "0x900000"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "encrypted under the TEK, at 0x900000" in out
    guest = [line for line in out.splitlines() if line.startswith("guest | ")]
    assert guest[4] == "guest | no secret injected"


def test_secret_gpa_outside_ram_is_a_one_line_error(tmpdir_env):
    d, env = tmpdir_env
    proc = pysev("demo", "--secret-gpa", "0x10000000", env=env)       # RAM is 128 MiB
    assert proc.returncode == 1
    assert proc.stderr == ("pysev: demo: sev-inject-launch-secret: SEV: Failed to calculate "
                           "HVA for GPA 0x10000000\n")
    lines = proc.stdout.splitlines()
    assert lines[-1] == "      measurement verified"
    assert "guest |" not in proc.stdout                     # the guest never ran
    assert_cleaned_up(d)


def test_measurement_mismatch_sends_no_secret(monkeypatch, capsys):
    """An owner whose expected digest differs refuses to go on; the paused guest
    never runs and the machine is shut down."""
    from pysev.owner import measure
    monkeypatch.setattr(measure, "launch_digest", lambda image, *a: bytes(32))
    assert cli.main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("pysev: demo: measurement MISMATCH: ") and err.count("\n") == 1
    assert "[4/6]" not in out and "guest |" not in out
    assert out.splitlines()[-1].startswith("[3/6] owner: expected launch digest, SHA-256 of "
                                           "sevguest.bin: " + "00" * 32)


# ---- pysev demo --bios FILE -------------------------------------------------------------

def test_bios_ovmf(tmpdir_env):
    """Debian's OVMF under the demo: measured, secret injected, run to --max-insns
    (it is in 64-bit mode after 27,259 instructions)."""
    need_ovmf()
    d, env = tmpdir_env
    image = pathlib.Path(OVMF).read_bytes()
    proc = pysev("demo", "--bios", OVMF, "--max-insns", "30000", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    end = ("^      stopped at --max-insns 30,000 before the guest halted: "
           "64-bit mode, paging on, at 0018:[0-9a-f]{8}")
    assert_lines_match(proc.stdout.splitlines(), demo_patterns(
        name="OVMF.fd", what=f"your firmware, {len(image) >> 20} MiB",
        digest=hashlib.sha256(image).hexdigest(), guest=[], end=end, count="30,000"))
    assert_cleaned_up(d)


def test_bios_default_limit_and_progress(monkeypatch, capsys):
    """With --bios the run stops at a default limit (20 million; smaller here), with
    a progress line every TICK instructions."""
    need_ovmf()
    from pysev import demo
    assert demo.DEFAULT_BIOS_INSNS == cli.DEMO_BIOS_INSNS == 20_000_000
    assert demo.SevDemo(bios=OVMF).limit == 20_000_000
    assert demo.SevDemo().limit == 0                        # the bundled guest: none
    monkeypatch.setattr(demo, "DEFAULT_BIOS_INSNS", 25_000)
    monkeypatch.setattr(demo, "TICK", 10_000)
    assert cli.main(["demo", "--bios", OVMF]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    start = lines.index(HEADER)
    assert re.fullmatch(r"      10,000 instructions, \d+\.\d s", lines[start + 1])
    assert re.fullmatch(r"      20,000 instructions, \d+\.\d s", lines[start + 2])
    assert lines[start + 3].startswith("      stopped at --max-insns 25,000 before the guest "
                                       "halted: ")
    assert re.fullmatch(summary_re("25,000"), lines[-1])


def test_bios_that_halts(tmp_path, tmpdir_env):
    d, env = tmpdir_env
    bios = tmp_path / "halt.bin"
    bios.write_bytes(HLT_BIOS)
    proc = pysev("demo", "--bios", str(bios), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_lines_match(proc.stdout.splitlines(), demo_patterns(
        name="halt.bin", what="your firmware, 4 KiB",
        digest=hashlib.sha256(HLT_BIOS).hexdigest(), guest=[],
        end="      the guest halted after 2 instructions", count="2"))
    assert_cleaned_up(d)


def test_bios_that_triple_faults(tmp_path, tmpdir_env):
    d, env = tmpdir_env
    bios = tmp_path / "tf.bin"
    bios.write_bytes(TRIPLE_FAULT_BIOS)
    proc = pysev("demo", "--bios", str(bios), env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("pysev: demo: the guest triple faulted")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-3] == ("      the guest triple faulted after 2 instructions: real mode, "
                         "at f000:fff6")
    assert lines[-2] == "[6/6] host: quit: SHUTDOWN (guest-reset)"
    assert re.fullmatch(summary_re("2"), lines[-1])
    assert_cleaned_up(d)


@pytest.mark.parametrize("content, message", [
    (None, "pysev: demo: --bios: cannot read '{path}': No such file or directory"),
    (b"\x90" * 1000, "pysev: demo: --bios: '{path}' is 1000 bytes, not a multiple of 4 KiB"),
    (b"", "pysev: demo: --bios: '{path}' is empty"),
])
def test_bad_bios_is_a_one_line_error(tmp_path, tmpdir_env, content, message):
    d, env = tmpdir_env
    path = tmp_path / "fw.bin"
    if content is not None:
        path.write_bytes(content)
    proc = pysev("demo", "--bios", str(path), env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == message.format(path=path) + "\n"
    assert_cleaned_up(d)


def test_engine_demo_takes_no_bios():
    proc = pysev("demo", "--engine-demo", "--bios", OVMF)
    assert proc.returncode == 2
    assert proc.stderr == ("pysev: demo: --engine-demo runs the bundled 64-bit guest: it takes "
                           "no --bios or --secret-gpa\n")


def test_sigterm_cleans_up(tmpdir_env):
    """SIGTERM mid-run: the machine is shut down, the socket and the keys removed."""
    import signal
    import time

    need_ovmf()
    d, env = tmpdir_env
    proc = subprocess.Popen([sys.executable, "-m", "pysev", "demo", "--bios", OVMF,
                             "--max-insns", "0"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name == "qmp.sock" for p in d.rglob("*")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143
    assert err == "pysev: demo: terminated\n"
    assert_cleaned_up(d)


# ---- pysev demo --engine-demo: demo64.bin on the Emulator API -----------------------------

def test_engine_demo_output():
    proc = pysev("demo", "--engine-demo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == ENGINE_HEADER
    assert lines[1:-1] == ENGINE_GUEST_LINES
    match = ENGINE_SUMMARY.fullmatch(lines[-1])
    assert match, lines[-1]
    assert int(match.group(1)) == ENGINE_INSNS


def test_engine_demo_log_op_to_file(tmp_path):
    log = tmp_path / "op.log"
    proc = pysev("demo", "--engine-demo", "-d", "op", "-D", str(log))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:-1] == ENGINE_GUEST_LINES
    assert "def " in log.read_text()


def test_engine_demo_max_insns_stops_the_guest():
    proc = pysev("demo", "--engine-demo", "--max-insns", "100")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == ENGINE_HEADER
    assert int(ENGINE_SUMMARY.fullmatch(lines[-1]).group(1)) == 100
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
    assert cli.main(["demo", "--engine-demo"]) == 1
    out, err = capsys.readouterr()
    assert err == message + "\n"
    assert out.splitlines()[0].startswith("pysev demo: running")
    assert "Traceback" not in out + err


def test_guest_exception_after_partial_line(monkeypatch, capsys):
    # mov dx, 0x3f8; mov al, 'x'; out dx, al; ud2
    code = bytes.fromhex("66baf803" "b078" "ee" "0f0b")
    from pysev import guests
    monkeypatch.setattr(guests, "load", lambda name: code)
    assert cli.main(["demo", "--engine-demo"]) == 1
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
