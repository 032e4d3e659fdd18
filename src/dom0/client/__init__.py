"""The synchronous client of the xend API (used by xm and by tests).

Deliberately small: a Unix socket, one HTTP request, JSON.  It imports nothing
heavy, so ``xm list`` costs little more than the interpreter's start.
"""

from __future__ import annotations

import _socket
import os

from dom0.client import wire
from dom0.client.routes import XendApi
from dom0.errors import ProtocolError, XendNotRunning, from_wire

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/var/run/xend/xmlrpc.sock"


def server_path() -> str:
    """``XM_SERVER`` (a path or ``httpu://`` URI), else the default socket."""
    value = os.environ.get("XM_SERVER", "")
    if value.startswith("httpu://"):
        value = value[len("httpu://"):]
    return value or DEFAULT_SOCKET


class XendClient(XendApi):
    """One HTTP request per call on xend's Unix socket; the typed methods come from
    ``XendApi`` (``client.domain_create(config=..., paused=...)``)."""

    def __init__(self, path: str | None = None, timeout: float | None = 1200.0) -> None:
        self.path = path or server_path()
        self.timeout = timeout
        #: $DOM0_XEND_COMMAND's transport (a remote xend through ``xm serve``), made on
        #: first use; never for an explicit socket path
        self._command: Any = None
        if path is None and os.environ.get("DOM0_XEND_COMMAND"):
            from dom0.client.stdio import CommandTransport, configured_command

            self._command = CommandTransport(configured_command() or "")

    def call(self, _route: str, /, **args: Any) -> Any:
        body = wire.dumps(args).encode()
        request = (f"POST /api/{_route} HTTP/1.1\r\nHost: xend\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode() + body
        if self._command is not None:
            return self._parse(self._command.exchange(request))
        return self._parse(self.exchange(request))

    def exchange(self, request: bytes) -> bytes:
        """One request on a fresh connection to xend's socket; the raw reply."""
        # _socket rather than socket: the socket module imports enum (a few ms)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except OSError as exc:
                if os.geteuid() != 0 and isinstance(exc, PermissionError):
                    raise XendNotRunning(
                        "Most commands need root access. Please try again as root.") from None
                raise XendNotRunning(
                    f"Unable to connect to xend: {exc.strerror or exc}. Is xend running?"
                ) from None
            sock.sendall(request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            sock.close()
        return b"".join(chunks)

    @staticmethod
    def _parse(raw: bytes) -> Any:
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1."):
            raise ProtocolError("Xend has probably crashed!  Invalid or missing HTTP status code.")
        try:
            reply = wire.loads(body.decode())
        except ValueError:
            raise ProtocolError("Xend has probably crashed!  Invalid reply.") from None
        if "error" in reply:
            raise from_wire(reply["error"])
        return reply.get("result")
