"""An asyncio QMP session: commands with timeouts, and an event stream.

One session per domain, held by xend for the domain's life.  QEMU accepts one
QMP client on the socket at a time; when xend dies the connection drops and the
re-adopting xend opens a new one.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from dom0.errors import BackendError

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]


class QMPError(BackendError):
    """QEMU refused a command; the message is QEMU's own."""


class QMPSession:
    def __init__(self, path: str, on_event: EventHandler | None = None) -> None:
        self.path = path
        self.on_event = on_event
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=16 * 1024 * 1024)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise BackendError(f"QMP socket {self.path} did not accept a connection")
                await asyncio.sleep(0.01)
        greeting = await asyncio.wait_for(self._reader.readline(), timeout)
        if not greeting or "QMP" not in json.loads(greeting):
            raise BackendError(f"no QMP greeting on {self.path}")
        self._reader_task = asyncio.create_task(self._read_loop())
        await self.execute("qmp_capabilities", timeout=timeout)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("unparsable QMP line on %s: %r", self.path, line[:200])
                    continue
                if "event" in msg:
                    if self.on_event:
                        try:
                            self.on_event(msg["event"], msg.get("data", {}))
                        except Exception:  # a handler bug must not kill the session
                            log.exception("QMP event handler failed for %s", msg["event"])
                    continue
                fut = self._pending.pop(msg.get("id", -1), None)
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    fut.set_exception(QMPError(msg["error"].get("desc", str(msg["error"]))))
                else:
                    fut.set_result(msg.get("return"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BackendError("QMP connection closed"))
            self._pending.clear()
            self.closed.set()

    async def execute(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        if self._writer is None or self.closed.is_set():
            raise BackendError("QMP connection closed")
        self._next_id += 1
        msg_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        msg: dict[str, Any] = {"execute": command, "id": msg_id}
        if arguments:
            msg["arguments"] = arguments
        self._writer.write(json.dumps(msg).encode() + b"\n")
        try:
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise BackendError(f"QEMU did not answer {command} within {timeout:g} s") from None
        except ConnectionError:
            raise BackendError("QMP connection closed") from None

    async def execute_with_fd(self, command: str, fd: int, timeout: float = 10.0,
                              **arguments: Any) -> Any:
        """Send a command with a file descriptor attached (SCM_RIGHTS), as ``getfd``
        needs.  The message goes straight to the socket, after the stream's own
        buffer has drained, so it cannot interleave with other commands."""
        if self._writer is None or self.closed.is_set():
            raise BackendError("QMP connection closed")
        await self._writer.drain()
        self._next_id += 1
        msg_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        payload = json.dumps({"execute": command, "id": msg_id, "arguments": arguments})
        raw = self._writer.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(raw.fileno()))  # closing it closes only the dup
        try:
            sock.sendmsg([payload.encode() + b"\n"],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        finally:
            sock.close()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise BackendError(f"QEMU did not answer {command} within {timeout:g} s") from None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except asyncio.CancelledError:
                pass
        self.closed.set()
