"""An asyncio QMP session on QEMU's own library (``qemu.qmp``), in xend's terms.

One session per domain, held by xend for the domain's life.  QEMU accepts one
QMP client on the socket at a time; when xend dies the connection drops and the
re-adopting xend opens a new one.

``qemu.qmp.QMPClient`` does the protocol: greeting, capabilities, command IDs,
routing replies and events, descriptor passing.  This wrapper adds what xend
relies on and the library leaves to its user:

* a retry budget for the connection (QEMU's socket may appear just after launch);
* a timeout on every command, and ``dom0.errors`` instead of the library's own
  exceptions (QEMU's refusal keeps QEMU's text, in ``QMPError``);
* events handed to one callback as they are read, and nothing kept of them: the
  library's default listener stores every event of the connection's life in a
  queue and a history, which for a domain that runs for months is a leak;
* ``closed``, set when the connection ends, asked for or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from qemu.qmp import (
    EventListener,
    ExecInterruptedError,
    ExecuteError,
    Message,
    QMPClient,
    Runstate,
    StateError,
)
from qemu.qmp import QMPError as LibraryError

from dom0.errors import BackendError
from dom0.waiting import poll_until

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]

#: the longest QMP line we accept: large replies (query-block of many disks,
#: query-cpus-fast of many vCPUs) must not end the session (the library's default is 10 MiB)
READ_LIMIT = 16 * 1024 * 1024
#: seconds between connection attempts while QEMU's socket is not there yet
CONNECT_INTERVAL = 0.01
#: seconds closing may take: it flushes what is still unsent to a QEMU that may hang
CLOSE_TIMEOUT = 5.0


class QMPError(BackendError):
    """QEMU refused a command; the message is QEMU's own."""


class _Dispatch(EventListener):
    """Hands each event to the handler in the reader's own step, so events and
    replies reach xend in the order QEMU sent them; keeps no history."""

    def __init__(self, handler: EventHandler) -> None:
        super().__init__()
        self._handler = handler

    async def put(self, event: Message) -> None:
        data = event.get("data")
        try:
            self._handler(str(event["event"]), dict(data) if isinstance(data, dict) else {})
        except Exception:  # a handler bug must not end the session
            log.exception("QMP event handler failed for %s", event.get("event"))


def _keep_nothing(_event: Message) -> bool:
    return False


class _Client(QMPClient):
    """The library's hooks for every message log it at debug level, rendering it
    as indented JSON first even when debug logging is off (a third of a
    command's cost); render only when the line will be written."""

    def _cb_outbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", msg)
        return msg

    def _cb_inbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", msg)
        return msg


class QMPSession:
    def __init__(self, path: str, on_event: EventHandler | None = None) -> None:
        self.path = path
        self.closed = asyncio.Event()
        # no nickname: the library would make a logger per name, kept for the
        # process's life (one per launch of every domain)
        self._client = _Client(None, readbuflen=READ_LIMIT)
        # the default listener cannot be removed; make it accept nothing
        self._client.events.event_filter = _keep_nothing
        if on_event is not None:
            self._client.register_listener(_Dispatch(on_event))
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        #: QEMU keeps a passed descriptor for the next ``getfd``: one pass at a time
        self._fd_lock = asyncio.Lock()

    async def connect(self, timeout: float = 5.0) -> None:
        sock = await _open_socket(self.path, timeout)
        try:
            await asyncio.wait_for(self._client.connect(sock), timeout)
        except (LibraryError, OSError, EOFError, TimeoutError) as exc:
            sock.close()
            raise BackendError(f"no QMP session on {self.path}: {exc or 'timed out'}") from None
        self._watch = asyncio.create_task(self._watch_connection())

    async def _watch_connection(self) -> None:
        """The library leaves a dropped connection half-closed until someone calls
        ``disconnect()``; do that, and tell ``closed``."""
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()
        self.closed.set()
        if not self._closing:
            with contextlib.suppress(Exception):  # the end-of-file that ended the reader
                await self._client.disconnect()

    async def execute(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        try:
            # asyncio.timeout, not wait_for: no task per command
            async with asyncio.timeout(timeout):
                return await self._client.execute(command, arguments or None)
        except TimeoutError:
            raise BackendError(f"QEMU did not answer {command} within {timeout:g} s") from None
        except ExecuteError as exc:
            raise QMPError(str(exc)) from None
        except (ExecInterruptedError, StateError):
            raise BackendError("QMP connection closed") from None
        except LibraryError as exc:  # a reply QEMU should never send
            raise BackendError(f"QMP {command}: {exc}") from None

    async def execute_with_fd(self, command: str, fd: int, timeout: float = 10.0,
                              **arguments: Any) -> Any:
        """Send a command with a file descriptor passed first (SCM_RIGHTS), as
        ``getfd`` needs.  QEMU holds the descriptor until a ``getfd`` takes it, so
        passes are serialised and other commands may go between.  The library
        writes the descriptor's carrier byte straight to the socket: our commands
        are far smaller than the socket's buffer, so no earlier command is still
        half-written in the stream when it does."""
        async with self._fd_lock:
            try:
                self._client.send_fd_scm(fd)
            except StateError:
                raise BackendError("QMP connection closed") from None
            except (OSError, LibraryError) as exc:
                raise BackendError(f"could not pass a descriptor to QEMU: {exc}") from None
            return await self.execute(command, timeout, **arguments)

    async def close(self) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._client.runstate != Runstate.IDLE:
            # a dead peer's end-of-file, or a hung one's silence: closed anyway
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._client.disconnect()
        self.closed.set()


async def _open_socket(path: str, timeout: float) -> socket.socket:
    """Connect to QEMU's QMP socket, retrying while it is not there or not yet
    listening.  Done here, not by the library, whose failed attempts each log an
    error."""
    loop = asyncio.get_running_loop()
    connected: list[socket.socket] = []

    async def attempt() -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return False
        except BaseException:
            sock.close()
            raise
        connected.append(sock)
        return True

    if not await poll_until(attempt, timeout, interval=CONNECT_INTERVAL):
        raise BackendError(f"QMP socket {path} did not accept a connection")
    return connected[0]

