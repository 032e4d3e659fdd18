"""xend's own relocation key (migration/auth.own_key): what lets ``xm migrate <dom>
localhost`` authenticate with nothing configured, and what keeps it to this host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dom0.migration.auth import MIN_KEY_BYTES, AuthError, own_key


def test_made_once_root_only_and_kept_across_restarts(tmp_path: Path) -> None:
    key, path = own_key(str(tmp_path))
    assert path == str(tmp_path / "relocation.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) >= MIN_KEY_BYTES
    assert own_key(str(tmp_path)) == (key, path)  # the next start reads the same key


def test_every_xend_makes_a_different_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert own_key(str(tmp_path / "a"))[0] != own_key(str(tmp_path / "b"))[0]


def test_a_key_file_others_can_read_is_refused_not_rewritten(tmp_path: Path) -> None:
    _, path = own_key(str(tmp_path))
    os.chmod(path, 0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        own_key(str(tmp_path))


def test_a_symlink_planted_in_its_place_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x" * 64)
    (tmp_path / "relocation.key").symlink_to(target)
    with pytest.raises(AuthError):
        own_key(str(tmp_path))
    assert target.read_text() == "x" * 64


def test_an_unwritable_state_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="cannot create the relocation key"):
        own_key(str(tmp_path / "missing"))
