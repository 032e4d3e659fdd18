"""dom0.web.auth: the web console's token file and sessions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dom0.errors import XendError
from dom0.web.auth import Sessions, load_or_make_token


def test_token_is_made_once_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "web-token"
    token = load_or_make_token(str(path))
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_make_token(str(path)) == token


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    path.write_text("x" * 40)
    os.chmod(path, 0o644)
    with pytest.raises(XendError, match="readable by others"):
        load_or_make_token(str(path))


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    path.write_text("short\n")
    os.chmod(path, 0o600)
    with pytest.raises(XendError, match="shorter than 16"):
        load_or_make_token(str(path))


def test_only_the_token_opens_a_session_and_logout_ends_it() -> None:
    sessions = Sessions("s" * 43)
    assert sessions.login("wrong") is None
    assert sessions.login("s" * 42) is None
    assert not sessions.valid(None) and not sessions.valid("made-up")
    sid = sessions.login("s" * 43)
    assert sid and sessions.valid(sid)
    assert sessions.login("s" * 43) != sid  # each login its own session
    sessions.logout(sid)
    assert not sessions.valid(sid)


def test_an_idle_session_expires() -> None:
    sessions = Sessions("t" * 43, idle=-1.0)
    sid = sessions.login("t" * 43)
    assert sid and not sessions.valid(sid)
