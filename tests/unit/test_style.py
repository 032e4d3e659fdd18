"""Style as part of the suite: ruff on everything, mypy on the typed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    r = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "bench"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean() -> None:
    r = subprocess.run([str(BIN / "mypy")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_hold() -> None:
    """The layering of pyproject.toml's [tool.importlinter] contracts: imports point only
    down, siblings form no cycles, xm imports nothing of the daemon side."""
    r = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_test_modules_have_unique_names() -> None:
    """tests/ has no __init__.py files, so pytest imports each test module by its base name:
    a unit and a functional module of the same name stop the whole run at collection."""
    seen: dict[str, Path] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a module name"
        seen[path.name] = path
