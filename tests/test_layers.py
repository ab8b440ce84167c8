"""The import-direction contract (docs/DESIGN.md, "Layers"): each module imports only from below.

The contract is ``[tool.importlinter]`` in pyproject.toml, checked by import-linter's
``lint-imports`` (static analysis: nothing of navya is imported). These tests run it on the
package as it is, and on a copy with one forbidden import added, which it must refuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `lint-imports`, run by the interpreter of these tests (its console script, wherever it lives)
LINT_IMPORTS = [sys.executable, "-c",
                "import sys; from importlinter.cli import lint_imports_command; "
                "sys.exit(lint_imports_command())"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contract of ``cwd/pyproject.toml`` on the ``navya`` package
    found first from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([*LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_navya_keeps_its_layers():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, message", [
    # upward: a model importing the pytest plugin
    ("models/ssdlite.py", "import navya.suite", "navya.models is not allowed to import navya.suite"),
    # a transform importing the variant registry
    ("compress/prune.py", "from navya.catalogue import get_variant",
     "navya.compress is not allowed to import navya.catalogue"),
    # independent siblings: data sets never import models
    ("data/voc.py", "import navya.models", "navya.data is not allowed to import navya.models"),
    # report sits below the command line and the plugin
    ("reporting/plot.py", "import navya.cli",
     "navya.reporting is not allowed to import navya.cli"),
], ids=["upward", "transform-imports-registry", "sibling", "report-imports-cli"])
def test_a_forbidden_import_breaks_the_contract(tmp_path, module, line, message):
    shutil.copytree(REPO / "navya", tmp_path / "navya",
                    ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "navya" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and message in result.stdout, result.stdout
    importer = "navya." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {line.split()[1]}" in result.stdout, result.stdout


def test_an_import_cycle_breaks_the_acyclic_contract(tmp_path):
    """Issue 28: compress/base <-> compress/cache and models/checkpoint <-> models/pruned were
    import cycles (lazy imports); the second contract refuses one, lazy or not."""
    shutil.copytree(REPO / "navya", tmp_path / "navya",
                    ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "navya" / "models" / "pruned.py"
    target.write_text(target.read_text() + "\n\ndef _cycle():\n"
                      "    from navya.models.checkpoint import load_checkpoint  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "no import cycles between sibling modules BROKEN" in result.stdout, result.stdout
    assert ".pruned -> .checkpoint" in result.stdout, result.stdout


def test_every_navya_import_resolves():
    """Issue 28 moved code between modules; a lazy import inside a function (which ruff and the
    import contracts do not resolve) of a name that moved would fail only when that function
    runs. Every `from navya... import name` in the package, the tests and the benchmarks must
    name something that exists."""
    import ast
    import importlib

    missing = []
    files = [*(REPO / "navya").rglob("*.py"), *(REPO / "tests").glob("*.py"),
             *(REPO / "benchmarks").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[0] == "navya"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.relative_to(REPO)}:{node.lineno}: "
                                       f"{node.module}.{alias.name}")
    assert not missing, "\n".join(missing)
