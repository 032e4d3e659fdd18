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
