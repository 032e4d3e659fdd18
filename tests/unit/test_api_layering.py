"""The API sees services, not the daemon: nothing in dom0.api imports dom0.daemon or
dom0.domain (the model, dom0.model, is shared ground), and the client imports
nothing of the server side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dom0"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("api", ("dom0.daemon", "dom0.domain", "dom0.migration", "dom0.backends")),
    ("client", ("dom0.api", "dom0.daemon", "dom0.domain", "aiohttp")),
])
def test_package_imports_nothing_above_or_beside(package: str,
                                                 forbidden: tuple[str, ...]) -> None:
    for path in sorted((SRC / package).glob("*.py")):
        bad = {m for m in imported(path) if m.startswith(forbidden)}
        assert not bad, f"{path.name} imports {sorted(bad)}"
