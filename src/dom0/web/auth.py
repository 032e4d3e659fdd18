"""Who may use the web console: whoever holds xend's web token.

The token is made once (32 random bytes), kept 0600 in xend's state directory, and
printed by ``xend start``.  A person types it into the login form (POST, so it is in
no URL and no access log); the answer is a session cookie (random, HttpOnly,
SameSite=Strict: no other site can make the browser use it).  Sessions live in
xend's memory: restarting xend logs everyone out."""

from __future__ import annotations

import hmac
import os
import secrets
import time

from dom0.errors import XendError

#: how long a session lasts without being used
SESSION_IDLE = 12 * 3600.0
COOKIE = "dom0_session"


def load_or_make_token(path: str) -> str:
    """The token in *path*; a new one (written 0600) when there is none.  A token
    file others can read is refused: it grants control of every domain."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    if st.st_mode & 0o077:
        raise XendError(f"web console token file {path} is readable by others "
                        f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
    with open(path) as f:
        token = f.read().strip()
    if len(token) < 16:
        raise XendError(f"web console token in {path} is shorter than 16 characters")
    return token


class Sessions:
    """Logged-in browsers: session id -> when it was last used."""

    def __init__(self, token: str, idle: float = SESSION_IDLE) -> None:
        self._token = token.encode()
        self._idle = idle
        self._last_used: dict[str, float] = {}

    def login(self, offered: str) -> str | None:
        """A new session id for the right token, else None."""
        if not hmac.compare_digest(offered.strip().encode(), self._token):
            return None
        sid = secrets.token_urlsafe(32)
        self._last_used[sid] = time.monotonic()
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        last = self._last_used.get(sid)
        now = time.monotonic()
        if last is None or now - last > self._idle:
            self._last_used.pop(sid, None)
            return False
        self._last_used[sid] = now
        return True

    def logout(self, sid: str | None) -> None:
        if sid:
            self._last_used.pop(sid, None)
