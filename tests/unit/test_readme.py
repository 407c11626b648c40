"""The README's examples are real: its Python example runs, and CI runs its test command."""

import contextlib
import importlib.util
import io
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def fenced_blocks(text, lang):
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.M | re.S)


def section(text, title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def readme_test_command():
    blocks = fenced_blocks(section(README, "Tests"), "sh")
    assert len(blocks) == 1, "the Tests section must have exactly one sh block"
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(lines) == 1, "the test command must be a single line"
    return lines[0]


def test_python_example_runs():
    blocks = fenced_blocks(README, "python")
    assert blocks, "README has no python example"
    namespace = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    emu = namespace["emu"]
    assert emu.reg_read("rax") == 55
    assert emu.insn_count == 32
    assert out.getvalue() == "rax = 55 after 32 instructions\n"


def test_test_command_is_the_one_ci_runs():
    command = readme_test_command()
    assert "pytest" in command and "pip install -e '.[test]'" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()


def test_ci_script_installs_nasm_and_fails_fast():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[0].startswith("#!") and "bash" in ci[0]
    assert "set -euo pipefail" in ci
    command = readme_test_command()
    assert command.startswith("apt-get update && apt-get install -y nasm qemu-system-x86 ovmf && ")
    assert command in ci


def test_demo_command_is_documented():
    blocks = fenced_blocks(section(README, "Quick start"), "sh")
    assert "python3 -m pip install -e . && pysev demo" in [b.strip() for b in blocks]


def all_blocks(text):
    """The fenced blocks of *text*, each as a list of lines, whatever their language."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_demo_sample_output_matches_the_demo():
    """The Quick start's sample output is what `pysev demo` prints, line for line (the
    measurement, the time and the rate are free; the digest and the count are exact)."""
    spec = importlib.util.spec_from_file_location("_cli_tests", pathlib.Path(__file__).with_name("test_cli.py"))
    cli_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_tests)
    quick = section(README, "Quick start")
    samples = [b for b in all_blocks(quick) if cli_tests.HEADER in b]
    assert len(samples) == 1, "the Quick start needs one sample output block of `pysev demo`"
    cli_tests.assert_lines_match(samples[0], cli_tests.demo_patterns())


def _run(args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "pysev", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_walk_example_output_and_picture_are_current(tmp_path):
    """The README's `pysev walk` command prints what the README shows and draws the
    committed picture (docs/images/walk-sevguest.svg) byte for byte."""
    import shlex
    text = section(README, "Teaching C-bit paging: `pysev walk`, snapshots and the tutorial")
    command = [b for b in fenced_blocks(text, "sh") if b.startswith("pysev walk")][0]
    args = shlex.split(command.strip())[1:]
    args = [str(ROOT / a) if a.startswith("pysev/guests/") else a for a in args]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = [b for b in fenced_blocks(text, "text") if b.startswith("pysev walk:")][0]
    assert result.stdout == shown
    assert (tmp_path / "walk.svg").read_text() == \
        (ROOT / "docs" / "images" / "walk-sevguest.svg").read_text()
    assert (tmp_path / "walk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](docs/images/walk-sevguest.svg)" in text
    assert "[docs/tutorial.md](docs/tutorial.md)" in text


def test_snapshot_examples_run(tmp_path):
    """The Snapshots section's commands and Python example, in order, in one directory."""
    import shlex
    text = section(README, "Teaching C-bit paging: `pysev walk`, snapshots and the tutorial")
    keys = _run(["owner", "keygen", "--tik", "tik.bin", "--tek", "tek.bin"], tmp_path)
    assert keys.returncode == 0, keys.stderr
    (tmp_path / "pysev").symlink_to(ROOT / "pysev")
    block = [b for b in fenced_blocks(text, "sh") if "--save-snapshot" in b][0]
    outputs = []
    for line in block.splitlines():
        args = shlex.split(line.split("#")[0])
        result = _run(args[1:], tmp_path)
        assert result.returncode == 0, (line, result.stderr)
        outputs.append(result)
    assert outputs[0].stderr == "pysev: stopped after 12000 instructions (count)\n"
    assert outputs[1].stdout.startswith("sevguest: long mode\n")
    assert outputs[2].stdout.splitlines()[0].startswith(
        "pysev walk: snapshot middle.pysev, run on to 25172 instructions (hlt)")
    python = [b for b in fenced_blocks(text, "python") if "load_snapshot" in b][0]
    import os
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(python.replace('serial="stdio"', 'serial="null"'), "README.md",
                         "exec"), {"__name__": "readme_snapshot"})
    finally:
        os.chdir(here)
    from pysev.snapshot import describe
    assert "after 25172 instructions" in describe(tmp_path / "later.pysev")
