"""dom0.backends.qemu.qmp: the QMP session xend holds per domain, against a real QEMU.

A QEMU with no machine (``-machine none -S``) starts in tens of milliseconds, so
these run with the unit tests; they are skipped only where QEMU is not installed.
Faults are caused for real: a stopped process (SIGSTOP) does not answer, a killed
one drops the connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from dom0.backends.qemu.qmp import QMPError, QMPSession
from dom0.errors import BackendError
from dom0.waiting import poll_until

QEMU = "qemu-system-x86_64"
pytestmark = pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} not installed")


def start_qemu(sock: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([QEMU, "-S", "-machine", "none", "-nodefaults", "-display", "none",
                             "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@asynccontextmanager
async def qemu_session(tmp_path: Path, on_event: Callable[[str, dict[str, Any]], None] | None
                       = None) -> AsyncIterator[tuple[QMPSession, subprocess.Popen[bytes]]]:
    sock = tmp_path / "qmp.sock"
    proc = start_qemu(sock)
    session = QMPSession(str(sock), on_event)
    try:
        await session.connect(timeout=10.0)
        yield session, proc
    finally:
        await session.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_commands_answer(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, _):
            assert (await qmp.execute("query-status"))["status"] == "prelaunch"
            # arguments are passed by keyword, as the backend passes them
            assert await qmp.execute("qom-get", path="/machine", property="type") == \
                "none-machine"
    run(go)


def test_refusal_carries_qemus_own_text(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, _):
            with pytest.raises(QMPError) as err:
                await qmp.execute("no-such-command")
            assert str(err.value) == "The command no-such-command has not been found"
            assert isinstance(err.value, BackendError)
            # the session goes on after a refusal
            assert (await qmp.execute("query-status"))["status"] == "prelaunch"
    run(go)


def test_a_command_not_answered_times_out(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, proc):
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(BackendError) as err:
                    await qmp.execute("query-status", timeout=0.2)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert str(err.value) == "QEMU did not answer query-status within 0.2 s"
            # the late answer is dropped; the next command gets its own
            assert (await qmp.execute("query-status"))["status"] == "prelaunch"
    run(go)


def test_events_reach_the_callback_and_are_not_kept(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def go() -> None:
        async with qemu_session(tmp_path, lambda e, d: seen.append((e, d))) as (qmp, _):
            await qmp.execute("cont")
            await qmp.execute("stop")
            assert await poll_until(lambda: len(seen) >= 2, 5.0)
            assert [e for e, _ in seen] == ["RESUME", "STOP"]
            assert seen[0][1] == {}
            # nothing accumulates for the connection's life (a months-long domain)
            assert qmp._client.events.history == ()
            assert qmp._client.events.empty()
    run(go)


def test_a_failing_callback_does_not_end_the_session(tmp_path: Path) -> None:
    def broken(event: str, data: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    async def go() -> None:
        async with qemu_session(tmp_path, broken) as (qmp, _):
            await qmp.execute("cont")
            await qmp.execute("stop")
            assert (await qmp.execute("query-status"))["status"] == "paused"
            assert not qmp.closed.is_set()
    run(go)


def test_closed_when_qemu_dies(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, proc):
            proc.kill()
            await asyncio.wait_for(qmp.closed.wait(), 5.0)
            with pytest.raises(BackendError, match="QMP connection closed"):
                await qmp.execute("query-status")
    run(go)


def test_a_pending_command_fails_when_qemu_dies(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, proc):
            os.kill(proc.pid, signal.SIGSTOP)
            pending = asyncio.create_task(qmp.execute("query-status", timeout=5.0))
            await asyncio.sleep(0.05)
            proc.kill()
            with pytest.raises(BackendError, match="QMP connection closed"):
                await pending
    run(go)


def test_close_when_asked(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, proc):
            await qmp.close()
            assert qmp.closed.is_set()
            with pytest.raises(BackendError, match="QMP connection closed"):
                await qmp.execute("query-status")
            # QEMU runs on and takes a new client (xend restarting)
            again = QMPSession(qmp.path)
            await again.connect()
            assert (await again.execute("query-status"))["status"] == "prelaunch"
            await again.close()
            assert proc.poll() is None
    run(go)


def test_connect_waits_for_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"

    async def go() -> None:
        qmp = QMPSession(str(sock))
        connecting = asyncio.create_task(qmp.connect(timeout=10.0))
        await asyncio.sleep(0.1)  # no socket yet: the session keeps trying
        proc = start_qemu(sock)
        try:
            await connecting
            assert (await qmp.execute("query-status"))["status"] == "prelaunch"
        finally:
            await qmp.close()
            proc.kill()
            proc.wait()
    run(go)


def test_connect_gives_up_within_its_budget(tmp_path: Path) -> None:
    async def go() -> None:
        qmp = QMPSession(str(tmp_path / "absent.sock"))
        with pytest.raises(BackendError, match="did not accept a connection"):
            await qmp.connect(timeout=0.2)
    run(go)


def test_connect_refused_by_a_silent_peer(tmp_path: Path) -> None:
    """A socket that accepts but never greets (not QEMU) is an error, not a hang."""
    sock = tmp_path / "silent.sock"

    async def go() -> None:
        server = await asyncio.start_unix_server(lambda r, w: None, str(sock))
        try:
            with pytest.raises(BackendError, match="no QMP session"):
                await QMPSession(str(sock)).connect(timeout=0.3)
        finally:
            server.close()
    run(go)


def test_a_descriptor_is_passed_with_getfd(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, _):
            read_end, write_end = os.pipe()
            try:
                await qmp.execute_with_fd("getfd", write_end, fdname="pipe")
            finally:
                os.close(write_end)
            # QEMU holds it under that name: closing it by name works, once
            await qmp.execute("closefd", fdname="pipe")
            with pytest.raises(QMPError):
                await qmp.execute("closefd", fdname="pipe")
            os.close(read_end)
    run(go)


def test_getfd_without_a_descriptor_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, _):
            with pytest.raises(QMPError, match="[Nn]o file descriptor"):
                await qmp.execute("getfd", fdname="nothing")
    run(go)


def test_a_reply_longer_than_asyncios_default_line(tmp_path: Path) -> None:
    """QEMU answers in one line; its schema (~200 KB) is past asyncio's 64 KiB."""
    async def go() -> None:
        async with qemu_session(tmp_path) as (qmp, _):
            schema = await qmp.execute("query-qmp-schema")
            assert len(json.dumps(schema)) > 64 * 1024
            assert (await qmp.execute("query-status"))["status"] == "prelaunch"
    run(go)
