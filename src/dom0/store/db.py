"""xend's durable records in SQLite: the domain-ID counter, managed domains, and
one runtime record per live domain (for re-adoption after xend restarts).

Each method is one transaction, so xend can be killed at any instant and the
database holds either the old or the new state, never half of one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS managed (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                    config TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'halted');
CREATE TABLE IF NOT EXISTS running (instance TEXT PRIMARY KEY, domid INTEGER NOT NULL UNIQUE,
                                    record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partials (path TEXT PRIMARY KEY, instance TEXT NOT NULL,
                                     resume INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS qemu_users (instance TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS disk_owners (path TEXT PRIMARY KEY, instance TEXT NOT NULL,
                                        record TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"


def _private(path: str) -> None:
    """The database file exists 0600 before SQLite opens it (SQLite gives its WAL
    and shared-memory files the database's mode); one an older xend left wider is
    narrowed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


class Store:
    def __init__(self, path: str) -> None:
        _private(path)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('next_domid', '1')")

    def _tx(self) -> Any:
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    # ---- domain IDs ---------------------------------------------------------

    def allocate_domid(self) -> int:
        """Next ID, increasing, skipping any ID still held by a live domain."""
        with self._tx():
            (value,) = self.db.execute("SELECT value FROM meta WHERE key='next_domid'").fetchone()
            domid = int(value)
            while self.db.execute("SELECT 1 FROM running WHERE domid=?", (domid,)).fetchone():
                domid += 1
            self.db.execute("UPDATE meta SET value=? WHERE key='next_domid'", (str(domid + 1),))
        return domid

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- runtime records of live domains -------------------------------------

    def put_running(self, instance: str, domid: int, record: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO running VALUES (?, ?, ?)",
                            (instance, domid, json.dumps(record)))

    def delete_running(self, instance: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM running WHERE instance=?", (instance,))

    def running_records(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT record FROM running ORDER BY domid").fetchall()
        return [json.loads(r[0]) for r in rows]

    # ---- save files being written ----------------------------------------------

    def put_partial(self, path: str, instance: str, resume: bool) -> None:
        """A save of the domain running as *instance* is about to write *path*
        (*resume*: the guest ran before the save paused it)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO partials VALUES (?, ?, ?)",
                            (path, instance, int(resume)))

    def delete_partial(self, path: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM partials WHERE path=?", (path,))

    def partials(self) -> list[tuple[str, str, bool]]:
        rows = self.db.execute("SELECT path, instance, resume FROM partials").fetchall()
        return [(p, i, bool(r)) for p, i, r in rows]

    # ---- QEMU users and the disks they own (ACM below xend: domain/ownership.py) ----

    def take_qemu_uid(self, instance: str, pick: Callable[[list[int]], int]) -> int:
        """The user ID of launch *instance*: the one it holds, or ``pick(taken)`` of the
        IDs no other launch holds, recorded in the same transaction."""
        with self._tx():
            row = self.db.execute("SELECT uid FROM qemu_users WHERE instance=?",
                                  (instance,)).fetchone()
            if row:
                return int(row[0])
            taken = [r[0] for r in self.db.execute("SELECT uid FROM qemu_users")]
            uid = int(pick(taken))
            self.db.execute("INSERT INTO qemu_users VALUES (?, ?)", (instance, uid))
        return uid

    def qemu_uid(self, instance: str) -> int | None:
        row = self.db.execute("SELECT uid FROM qemu_users WHERE instance=?",
                              (instance,)).fetchone()
        return int(row[0]) if row else None

    def release_qemu_uid(self, instance: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM qemu_users WHERE instance=?", (instance,))

    def qemu_users(self) -> dict[str, int]:
        return {i: int(u) for i, u in self.db.execute("SELECT instance, uid FROM qemu_users")}

    def disk_owner(self, path: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT record FROM disk_owners WHERE path=?", (path,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_disk_owner(self, path: str, instance: str, record: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO disk_owners VALUES (?, ?, ?)",
                            (path, instance, json.dumps(record)))

    def delete_disk_owner(self, path: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM disk_owners WHERE path=?", (path,))

    def disk_owners(self, instance: str | None = None) -> list[dict[str, Any]]:
        """The disks launch *instance* holds (None: every launch's)."""
        rows = self.db.execute("SELECT record FROM disk_owners" + (
            " WHERE instance=?" if instance is not None else ""),
            (instance,) if instance is not None else ()).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ---- managed domains -----------------------------------------------------

    def put_managed(self, uuid: str, name: str, config: dict[str, Any],
                    state: str = "halted") -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO managed VALUES (?, ?, ?, ?)",
                            (uuid, name, json.dumps(config), state))

    def set_managed_state(self, uuid: str, state: str) -> None:
        with self._tx():
            self.db.execute("UPDATE managed SET state=? WHERE uuid=?", (state, uuid))

    def delete_managed(self, uuid: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM managed WHERE uuid=?", (uuid,))

    def managed(self) -> list[tuple[dict[str, Any], str]]:
        rows = self.db.execute("SELECT config, state FROM managed ORDER BY name").fetchall()
        return [(json.loads(c), s) for c, s in rows]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
