"""docs/tutorial.md, run step by step: every command and snippet in it, with its output.

How the tutorial is read
------------------------
* A lesson is a ``## `` section of the tutorial.  Its steps are numbered in order.
* A step is a ```` ```sh ```` or ```` ```python ```` block followed (blank lines
  only in between) by a ```` ```text ```` block: the output the step prints.
* Every code block must be a step or a step's output; a block whose opening
  fence line is preceded by the line ``<!-- not run -->`` is exempt (the
  tutorial has none today).  ``test_every_code_block_is_a_step`` checks this.

How a step runs
---------------
* The tutorial is one session, as a reader works through it: one working
  directory and one Python namespace for all its steps, in order (lesson 3
  uses the tables lesson 2 built, lesson 2 the keys of lesson 1).  Each
  pytest worker runs the steps in order, each once, in a fresh temporary
  directory, and keeps their outputs: the test of step N runs steps 1 to N
  first if this worker has not yet run them, then compares step N's output.
  So each step is a test of its own, under ``-n`` and ``-k`` too; after a
  failing step, later steps may fail for its sake (the first failure counts).
* The working directory holds ``pysev/guests``, a symbolic link to the
  repository's ``pysev/guests``, so the relative paths of the tutorial
  (written for a reader at the root of a clone) work; whatever the steps
  write (keys, a measurement, a secret packet) stays in that directory.
* sh: each non-blank line is one command; it must start with ``pysev `` or
  ``python3 ``.  ``pysev`` becomes ``<this python> -m pysev`` and ``python3``
  this interpreter, with the repository first on ``PYTHONPATH``, so the steps
  run this checkout's code whether or not the console script is installed.
  Each line runs in bash (redirections such as ``> secret.json`` work).  The
  step's output is, command after command, its stdout then its stderr: what a
  reader sees in a terminal.  Exit statuses are not compared (the output is).
* python: the block is exec'd in the session's namespace, in the working
  directory; its output is what it writes to stdout and stderr (together, in
  order, as in an interactive session; a guest's serial output with the
  default ``-serial stdio`` included).

How output is compared
----------------------
Exactly, line by line, except that a line consisting of ``...`` matches any
number of lines (none included), and ``...`` inside a line matches any text
on that line (doctest's ELLIPSIS, without its other options).
"""

import contextlib
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
EXERCISES = pathlib.Path(__file__).with_name("test_exercises.py")
NOT_RUN = "<!-- not run -->"
STEP_LANGS = ("sh", "python")
TIMEOUT = 120


# ---------------------------------------------------------------------------- parsing

class Block:
    def __init__(self, lang, text, line, lesson, not_run, follows_blank_only):
        self.lang, self.text, self.line, self.lesson = lang, text, line, lesson
        self.not_run = not_run
        self.follows_blank_only = follows_blank_only   # only blank lines since the last block


def parse_blocks(text):
    """Every fenced code block of the markdown *text*, with its lesson (## heading)."""
    blocks = []
    lesson = None
    lines = text.splitlines()
    i = 0
    since_block = []                 # non-fence lines since the previous block ended
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\S*)\s*$", line)
        if fence is None:
            if line.startswith("## "):
                lesson = line[3:].strip()
            since_block.append(line)
            i += 1
            continue
        prev = next((s for s in reversed(since_block) if s.strip()), "")
        follows = not any(s.strip() for s in since_block)
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise AssertionError(f"tutorial line {start}: unclosed code block")
        body = "\n".join(lines[start:i])
        blocks.append(Block(fence.group(1), body, start, lesson, prev.strip() == NOT_RUN,
                            follows))
        since_block = []
        i += 1
    return blocks


def lesson_id(title):
    m = re.match(r"Lesson (\d+)\b", title or "")
    if m:
        return f"lesson{m.group(1)}"
    return re.sub(r"[^a-z0-9]+", "-", (title or "intro").lower()).strip("-")[:30]


class Step:
    def __init__(self, lesson, number, code, expected):
        self.lesson, self.number, self.code, self.expected = lesson, number, code, expected

    @property
    def id(self):
        return f"{lesson_id(self.lesson)}-step{self.number}"

    def __repr__(self):
        return f"Step({self.id}, line {self.code.line})"


def parse_steps(text):
    """(steps, uncovered blocks) of the tutorial *text*."""
    blocks = parse_blocks(text)
    steps, covered = [], set()
    counts = {}
    for k, block in enumerate(blocks):
        if block.lang not in STEP_LANGS or block.not_run or k + 1 == len(blocks):
            continue
        out = blocks[k + 1]
        if out.lang != "text" or not out.follows_blank_only or out.lesson != block.lesson:
            continue
        counts[block.lesson] = counts.get(block.lesson, 0) + 1
        steps.append(Step(block.lesson, counts[block.lesson], block, out))
        covered.update((k, k + 1))
    uncovered = [b for k, b in enumerate(blocks) if k not in covered and not b.not_run]
    return steps, uncovered


def tutorial_steps():
    return parse_steps(TUTORIAL.read_text())[0]


# ---------------------------------------------------------------------------- matching

def ellipsis_regex(expected):
    """A regex for the whole output: `...` lines match any lines, `...` in a line any text."""
    if expected == "":
        return re.compile("")                   # no output at all
    parts = []
    for line in expected.split("\n"):
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(r"[^\n]*".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def normalise(text):
    text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def output_matches(expected, actual):
    return ellipsis_regex(expected).fullmatch(normalise(actual)) is not None


def check_output(step, actual):
    expected = step.expected.text
    if not output_matches(expected, actual):
        pytest.fail(f"tutorial step {step.id} (docs/tutorial.md line {step.code.line}): "
                    f"the output differs.\n--- expected ---\n{expected}\n--- actual ---\n"
                    f"{actual}", pytrace=False)


# ---------------------------------------------------------------------------- running

def workdir(directory):
    d = directory / "work"
    (d / "pysev").mkdir(parents=True)
    (d / "pysev" / "guests").symlink_to(ROOT / "pysev" / "guests", target_is_directory=True)
    return d


def command_line(line):
    exe = shlex.quote(sys.executable)
    if line.startswith("pysev "):
        return f"{exe} -m pysev {line[len('pysev '):]}"
    if line.startswith("python3 "):
        return f"{exe} {line[len('python3 '):]}"
    raise AssertionError(f"a sh step's command must start with 'pysev ' or 'python3 ': {line!r}")


def run_sh(code, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("PYTHONSTARTUP", None)
    out = []
    for line in code.splitlines():
        if not line.strip():
            continue
        proc = subprocess.run(["bash", "-c", command_line(line)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        out.append(proc.stdout + proc.stderr)
    return "".join(out)


def run_python(code, namespace, name):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        exec(compile(code, name, "exec"), namespace)
    return buf.getvalue()


def run_step(step, cwd, namespace):
    if step.code.lang == "sh":
        return run_sh(step.code.text, cwd)
    return run_python(step.code.text, namespace, f"<docs/tutorial.md {step.id}>")


# ---------------------------------------------------------------------------- the tests

STEPS = tutorial_steps()


class Session:
    """The tutorial's steps run in order, each once: outputs (or errors) by step id."""

    def __init__(self, directory):
        self.cwd = directory
        self.namespace = {"__name__": "__tutorial__"}
        self.results = {}
        self.done = 0

    def result(self, step):
        while step.id not in self.results:
            nxt = STEPS[self.done]
            self.done += 1
            old = os.getcwd()
            os.chdir(self.cwd)
            try:
                self.results[nxt.id] = ("output", run_step(nxt, self.cwd, self.namespace))
            except Exception as exc:            # reported by that step's test
                self.results[nxt.id] = ("error", exc)
            finally:
                os.chdir(old)
        return self.results[step.id]


@pytest.fixture(scope="session")
def session(tmp_path_factory):
    return Session(workdir(tmp_path_factory.mktemp("tutorial")))


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_step(step, session):
    kind, value = session.result(step)
    if kind == "error":
        raise value
    check_output(step, value)


def test_every_code_block_is_a_step():
    steps, uncovered = parse_steps(TUTORIAL.read_text())
    assert steps, "no steps found in docs/tutorial.md"
    assert not uncovered, "code blocks that are no step (a ```sh or ```python block followed " \
        "by a ```text block) nor marked '<!-- not run -->': " + ", ".join(
            f"line {b.line} ({b.lang or 'no language'})" for b in uncovered)


def test_sh_steps_use_only_pysev_and_python3():
    for step in STEPS:
        if step.code.lang == "sh":
            for line in step.code.text.splitlines():
                if line.strip():
                    command_line(line)


def test_every_lesson_has_steps():
    text = TUTORIAL.read_text()
    lessons = re.findall(r"^## (Lesson \d+.*)$", text, re.M)
    assert len(lessons) >= 6
    with_steps = {s.lesson for s in STEPS}
    assert [t for t in lessons if t not in with_steps] == []


def test_the_snapshot_section_follows_lesson_2():
    """It saves sevguest, whose page tables lesson 2 shows, with lesson 1's keys."""
    text = TUTORIAL.read_text()
    head, sep, rest = text.partition("\n## Starting from a snapshot\n")
    assert sep, "the section '## Starting from a snapshot' is missing"
    assert "## Lesson 2:" in head and "## Lesson 3:" not in head


def test_exercises_name_their_solutions():
    """Each exercise names the test in tests/tutorial/test_exercises.py that solves it."""
    text = TUTORIAL.read_text()
    exercises = text.partition("\n## Exercises\n")[2]
    assert exercises, "no '## Exercises' section"
    named = re.findall(r"`tests/tutorial/test_exercises\.py::(test_\w+)`", exercises)
    count = len(re.findall(r"^### Exercise \d+", exercises, re.M))
    assert count >= 3 and len(named) == count
    defined = set(re.findall(r"^def (test_\w+)\(", EXERCISES.read_text(), re.M))
    assert set(named) <= defined, sorted(set(named) - defined)


# ---------------------------------------------------------------------------- the runner itself

@pytest.mark.parametrize("expected,actual,ok", [
    ("a\nb", "a\nb\n", True),
    ("a\nb", "a\nb", True),
    ("a\nb", "a\nc\n", False),
    ("a\n...\nd", "a\nb\nc\nd\n", True),
    ("a\n...\nd", "a\nd\n", True),
    ("a\n...\nd", "a\nb\n", False),
    ("x = ...!", "x = 12 34!\n", True),
    ("x = ...!", "x = 1\n2!\n", False),
    ("a...", "ab\nc\n", False),
    ("(1+1)*[2]", "(1+1)*[2]\n", True),
    ("", "", True),
    ("a", "a\n\n", False),
])
def test_ellipsis_matching(expected, actual, ok):
    assert output_matches(expected, actual) is ok


def test_parser_pairs_blocks():
    text = "\n".join([
        "## Lesson 1: x", "```sh", "pysev --version", "```", "", "```text", "v", "```",
        "```python", "print(1)", "```", "words", "```text", "1", "```",
        "## Lesson 2: y", NOT_RUN, "```python", "pass", "```",
        "```python", "print(2)", "```", "```text", "2", "```",
    ])
    steps, uncovered = parse_steps(text)
    assert [(s.id, s.code.text, s.expected.text) for s in steps] == [
        ("lesson1-step1", "pysev --version", "v"), ("lesson2-step1", "print(2)", "2")]
    assert [(b.line, b.lang) for b in uncovered] == [(9, "python"), (13, "text")]
