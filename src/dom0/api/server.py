"""HTTP/1.1 + JSON on xend's Unix socket, served by aiohttp: ``POST /api/<route>``
with a JSON object of arguments; the answer is ``{"result": ...}`` or
``{"error": {"class", "message", "data"}}``; ``GET /openapi.json`` describes it.

Only root may use it: the socket is mode 0600 and every peer's uid is checked
(SO_PEERCRED).  aiohttp parses the HTTP (and refuses malformed requests with a 400
and a closed connection); this module adds the limits on what a request may hold,
the argument check against the route's declared types, and the operation timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from dom0.api import params
from dom0.api.routes import ROUTES, openapi
from dom0.api.services import Services
from dom0.errors import XendError

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
#: how long a client may take to send its request (idle or half-sent connections end)
REQUEST_TIMEOUT = 30.0
#: the longest any operation may take (a dump-core of a large guest)
OPERATION_TIMEOUT = 1200.0
#: request line and header limits: xm's requests are a few hundred bytes
MAX_LINE = 8190
MAX_HEADERS = 64
#: after answering a request whose body was not all read (413, 408), how long the
#: rest is drained so the client sees the answer rather than a reset
LINGER = 2.0


class ApiServer:
    def __init__(self, services: Services[Any], path: str,
                 operation_timeout: float = OPERATION_TIMEOUT,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.services = services
        self.path = path
        self.operation_timeout = operation_timeout
        self.request_timeout = request_timeout
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._only_root])
        app.router.add_post("/api/{route}", self._api)
        app.router.add_get("/openapi.json", self._openapi)
        # anything else gets the JSON error body xm understands, not aiohttp's text
        app.router.add_route("*", "/{tail:.*}", self._no_such_resource)
        return app

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.runner = web.AppRunner(
            self.app(), handle_signals=False, access_log=None,
            keepalive_timeout=self.request_timeout, max_line_size=MAX_LINE,
            max_field_size=MAX_LINE, max_headers=MAX_HEADERS, lingering_time=LINGER)
        await self.runner.setup()
        # the socket must never exist with a wider mode, not even between bind and chmod
        old = os.umask(0o177)
        try:
            await web.UnixSite(self.runner, self.path).start()
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    # ---- the handlers -------------------------------------------------------------

    @web.middleware
    async def _only_root(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _peer_uid(request) != 0:
            return _error(403, "XendError", "Most commands need root access.")
        return await handler(request)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def _no_such_resource(self, request: web.Request) -> web.Response:
        return _error(404, "XendError", f"no such resource: {request.method} {request.path}")

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["route"]
        if name not in ROUTES:
            return _error(404, "XendError", f"Invalid operation: {name}")
        try:
            async with asyncio.timeout(self.request_timeout):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "XendError", "request too large")
        except TimeoutError:
            return _error(408, "XendError", "request body not received in time")
        try:
            async with asyncio.timeout(self.operation_timeout):
                status, body = await self.dispatch(name, raw)
        except TimeoutError:
            status, body = 504, _body("XendError", "request timed out")
        return web.json_response(body, status=status)

    async def dispatch(self, name: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """One call: parse, check the arguments, run the handler, map its errors."""
        r = ROUTES[name]
        try:
            args = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as exc:  # too deep a nesting: RecursionError
            return 400, _body("XendError", f"bad request body: {_first_line(exc)}")
        if not isinstance(args, dict):
            return 400, _body("XendError", "bad request body: arguments must be an object")
        try:
            checked = params.check(name, r.params, r.required, args)
        except XendError as exc:
            return 400, {"error": exc.to_wire()}
        try:
            return 200, {"result": await r.handler(self.services, checked)}
        except XendError as exc:
            log.info("%s failed: %s", name, exc)
            return 400, {"error": exc.to_wire()}
        except Exception as exc:  # a bug must not take xend down; the client sees it
            log.exception("internal error in %s", name)
            return 500, _body("XendError", f"Internal error: {type(exc).__name__}: {exc}")


def _peer_uid(request: web.Request) -> int | None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0] or type(exc).__name__


def _body(cls: str, message: str) -> dict[str, Any]:
    return {"error": {"class": cls, "message": message, "data": {}}}


def _error(status: int, cls: str, message: str) -> web.Response:
    return web.json_response(_body(cls, message), status=status)
