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


def test_demo_sample_output_matches_the_guest():
    spec = importlib.util.spec_from_file_location("_cli_tests", pathlib.Path(__file__).with_name("test_cli.py"))
    cli_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_tests)
    GUEST_LINES, HEADER = cli_tests.GUEST_LINES, cli_tests.HEADER
    sample = section(README, "Quick start")
    assert HEADER in sample.splitlines()
    lines = sample.splitlines()
    start = lines.index(HEADER)
    assert lines[start + 1:start + 1 + len(GUEST_LINES)] == GUEST_LINES
