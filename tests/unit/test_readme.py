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
