"""dom0.store.db: the SQLite store of domain IDs, runtime records and managed
domains."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.store.db import SCHEMA_VERSION, Store


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "xend.db")


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def test_new_store_meta(store: Store) -> None:
    assert store.get_meta("schema") == SCHEMA_VERSION
    assert store.get_meta("next_domid") == "1"
    assert store.get_meta("missing") is None
    assert store.running_records() == []
    assert store.managed() == []


def test_allocate_domid_increases(store: Store) -> None:
    assert [store.allocate_domid() for _ in range(4)] == [1, 2, 3, 4]


def test_allocate_domid_skips_running_ids(store: Store) -> None:
    store.put_running("a", 1, {"name": "a"})
    store.put_running("b", 2, {"name": "b"})
    store.put_running("c", 4, {"name": "c"})
    assert store.allocate_domid() == 3
    assert store.allocate_domid() == 5


def test_allocate_domid_does_not_reuse_freed_ids(store: Store) -> None:
    first = store.allocate_domid()
    store.put_running("a", first, {})
    store.delete_running("a")
    assert store.allocate_domid() == first + 1


def test_allocate_domid_never_returns_a_held_id(store: Store) -> None:
    held = set()
    for n in range(20):
        domid = store.allocate_domid()
        assert domid not in held
        if n % 3 == 0:
            # a live domain holds an ID just ahead of the counter
            store.put_running(f"i{n}", domid + 1, {})
            held.add(domid + 1)
        held.add(domid)


def test_running_records(store: Store) -> None:
    store.put_running("i2", 7, {"name": "b", "domid": 7})
    store.put_running("i1", 3, {"name": "a", "domid": 3, "nested": {"x": [1, 2]}})
    assert store.running_records() == [
        {"name": "a", "domid": 3, "nested": {"x": [1, 2]}},
        {"name": "b", "domid": 7},
    ]
    store.put_running("i2", 7, {"name": "b2", "domid": 7})  # replace by instance
    assert [r["name"] for r in store.running_records()] == ["a", "b2"]
    store.delete_running("i1")
    store.delete_running("nonexistent")
    assert store.running_records() == [{"name": "b2", "domid": 7}]


def test_running_domid_is_never_held_twice(store: Store) -> None:
    store.put_running("i1", 3, {"i": 1})
    try:
        store.put_running("i2", 3, {"i": 2})
    except sqlite3.IntegrityError:
        pass
    assert len(store.running_records()) == 1


def test_managed(store: Store) -> None:
    store.put_managed("u2", "zeta", {"name": "zeta"})
    store.put_managed("u1", "alpha", {"name": "alpha", "memory": 64}, state="suspended")
    assert store.managed() == [({"name": "alpha", "memory": 64}, "suspended"),
                               ({"name": "zeta"}, "halted")]
    store.set_managed_state("u2", "running")
    store.put_managed("u1", "alpha", {"name": "alpha", "memory": 128})
    assert store.managed() == [({"name": "alpha", "memory": 128}, "halted"),
                               ({"name": "zeta"}, "running")]
    store.delete_managed("u1")
    assert store.managed() == [({"name": "zeta"}, "running")]


def test_managed_names_stay_unique(store: Store) -> None:
    store.put_managed("u1", "same", {"u": 1})
    try:
        store.put_managed("u2", "same", {"u": 2})
    except sqlite3.IntegrityError:
        pass
    assert len(store.managed()) == 1


def test_data_survives_reopening(db_path: str) -> None:
    s = Store(db_path)
    s.allocate_domid()
    s.allocate_domid()
    s.put_running("i1", 9, {"name": "live"})
    s.put_managed("u1", "m", {"name": "m"}, state="suspended")
    s.set_meta("custom", "v")
    s.close()

    s = Store(db_path)
    try:
        assert s.allocate_domid() == 3
        assert s.running_records() == [{"name": "live"}]
        assert s.managed() == [({"name": "m"}, "suspended")]
        assert s.get_meta("custom") == "v"
        assert s.get_meta("schema") == SCHEMA_VERSION
    finally:
        s.close()


def test_two_connections_share_the_counter(db_path: str) -> None:
    a, b = Store(db_path), Store(db_path)
    try:
        got = [a.allocate_domid(), b.allocate_domid(), a.allocate_domid()]
    finally:
        a.close()
        b.close()
    assert got == [1, 2, 3]


def test_failed_transaction_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store._tx():
            store.db.execute("INSERT INTO managed VALUES ('u', 'n', '{}', 'halted')")
            raise RuntimeError("crash mid-way")
    assert store.managed() == []
    store.put_managed("u", "n", {})  # the connection is usable afterwards
    assert store.managed() == [({}, "halted")]


def test_database_files_are_private(tmp_path: Path) -> None:
    """Domain configs (and their paths) are in there: 0600, also the WAL files,
    whatever the umask."""
    old = os.umask(0)
    try:
        store = Store(str(tmp_path / "xend.db"))
        store.put_running("a", 1, {"name": "a"})
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files][0] == "xend.db"
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        store.close()
    finally:
        os.umask(old)
