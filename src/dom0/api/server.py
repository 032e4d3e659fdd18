"""HTTP/1.1 + JSON on xend's Unix socket: ``POST /api/<route>`` with a JSON
object of arguments; the answer is ``{"result": ...}`` or ``{"error": {...}}``.

Only root may use it: the socket is mode 0600 and every peer's uid is checked
(SO_PEERCRED).  One request per connection keeps the client trivial.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

from dom0.api.routes import ROUTES, openapi
from dom0.errors import XendError

if TYPE_CHECKING:
    from dom0.daemon.service import Xend

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
REQUEST_TIMEOUT = 30.0
#: the longest any operation may take (a dump-core of a large guest)
OPERATION_TIMEOUT = 1200.0


class ApiServer:
    def __init__(self, xend: Xend, path: str) -> None:
        self.xend = xend
        self.path = path
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._serve, self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await asyncio.wait_for(self._handle(reader, writer), OPERATION_TIMEOUT)
        except TimeoutError:
            status, body = 504, {"error": {"class": "XendError", "message": "request timed out"}}
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            return
        data = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            writer.write(head + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _peer_uid(self, writer: asyncio.StreamWriter) -> int:
        sock = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> tuple[int, dict[str, Any]]:
        request = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        parts = request.decode("latin-1").split()
        headers = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if self._peer_uid(writer) != 0:
            return 403, _error("XendError", "Most commands need root access.")
        if len(parts) != 3:
            return 400, _error("XendError", "malformed request")
        method, target = parts[0], parts[1]
        if method == "GET" and target == "/openapi.json":
            return 200, openapi()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            return 413, _error("XendError", "request too large")
        raw = await asyncio.wait_for(reader.readexactly(length), REQUEST_TIMEOUT) if length else b""
        if method != "POST" or not target.startswith("/api/"):
            return 404, _error("XendError", f"no such resource: {method} {target}")
        return await self.dispatch(target[len("/api/"):], raw)

    async def dispatch(self, name: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        r = ROUTES.get(name)
        if r is None:
            return 404, _error("XendError", f"Invalid operation: {name}")
        try:
            args = json.loads(raw or b"{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be an object")
        except ValueError as exc:
            return 400, _error("XendError", f"bad request body: {exc}")
        missing = [p for p in r.required if p not in args]
        if missing:
            return 400, _error("XendError", f"{name}: missing argument {', '.join(missing)}")
        try:
            return 200, {"result": await r.handler(self.xend, args)}
        except XendError as exc:
            log.info("%s failed: %s", name, exc)
            return 400, {"error": exc.to_wire()}
        except Exception as exc:  # a bug must not take xend down; the client sees it
            log.exception("internal error in %s", name)
            return 500, _error("XendError", f"Internal error: {type(exc).__name__}: {exc}")


def _error(cls: str, message: str) -> dict[str, Any]:
    return {"error": {"class": cls, "message": message, "data": {}}}
