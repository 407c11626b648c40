"""The import directions that DESIGN fixes: decoder alone imports iced_x86, mem knows only numpy."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:                      # relative: stays inside the package
                continue
            names.add(node.module.split(".")[0] if node.module else "")
    return names


def _files(*parts):
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def test_only_decoder_imports_iced():
    offenders = []
    for path in _files("pysev") + _files("benchmarks") + _files("tools"):
        if "iced_x86" in _imports(path):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert any("iced_x86" in _imports(p) for p in _files("decoder"))


def test_mem_imports_only_stdlib_and_numpy():
    for path in _files("pysev", "mem"):
        assert _imports(path) <= {"bisect", "struct", "numpy"}, path


def test_decoder_does_not_import_pysev():
    for path in _files("decoder"):
        assert "pysev" not in _imports(path), path


def test_cpu_does_not_import_machine_layers():
    for path in _files("pysev", "cpu"):
        text = path.read_text()
        for layer in ("pysev.api", "pysev.cli", "pysev.devices", "pysev.sev", "pysev.qmp"):
            assert layer not in text, (path, layer)
