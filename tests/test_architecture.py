"""The layer and no-cycle contracts in pyproject.toml ([tool.importlinter]) hold, and would catch a break.

The second test copies the package, adds one import that breaks a rule, and checks
that import-linter refuses the copy, naming the import: a contract that cannot fail proves nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter over the ``viewfinder`` package under ``tree`` with the project's contracts."""
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} missing: install the dev extra (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def copy_with_import(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with ``line`` appended to ``module`` (a path under viewfinder/)."""
    shutil.copytree(ROOT / "viewfinder", tmp_path / "viewfinder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.ttc", "labels"))
    target = tmp_path / "viewfinder" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return tmp_path


def test_the_tree_keeps_its_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, refusal", [
    # a lower floor importing a higher one
    ("io/fetch.py", "from ..pipelines import create_pipeline  # noqa: E402,F401",
     "viewfinder.io is not allowed to import viewfinder.pipelines"),
    # the registry is a leaf: a registry that imports the factory closes a loop inside models/
    ("models/registry.py", "from . import factory  # noqa: E402,F401",
     "No cycles are allowed in viewfinder.models"),
])
def test_a_broken_rule_is_refused(tmp_path, module, line, refusal):
    result = lint_imports(copy_with_import(tmp_path, module, line))
    assert result.returncode != 0
    assert refusal in result.stdout
