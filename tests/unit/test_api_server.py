"""dom0.api.server: a real aiohttp server on a tmp Unix socket, fed raw bytes.
Malformed HTTP gets a 4xx and a closed connection — never a hang, never a 500;
only root is served; a slow operation answers 504."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_services import FakeDomains, services

from dom0.api.routes import openapi
from dom0.api.server import MAX_BODY, ApiServer
from dom0.client import XendClient
from dom0.errors import InvalidDomain, XendError


class Running:
    """An ApiServer on its own event loop thread, so the test may block on sockets."""

    def __init__(self, path: str, domains: FakeDomains, **kw: Any) -> None:
        self.path = path
        self.domains = domains
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ApiServer(services(domains), path, **kw)
        self._run(self.server.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self._run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes, read until the server closes: the test fails on a hang."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before taking it all
            return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    assert reply.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), reply[:200]
    return int(reply.split(b" ", 2)[1])


def body_of(reply: bytes) -> Any:
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def post(route: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST /api/{route} HTTP/1.1\r\nHost: xend\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


@pytest.fixture
def domains() -> FakeDomains:
    return FakeDomains()


@pytest.fixture
def server(tmp_path: Path, domains: FakeDomains) -> Iterator[Running]:
    running = Running(str(tmp_path / "run" / "xend.sock"), domains, request_timeout=1.0)
    yield running
    running.close()


def test_socket_is_private(server: Running) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


def test_call_through_the_client(server: Running) -> None:
    client = XendClient(server.path, timeout=5)
    assert client.call("domain.info", dom="vm1") == {"name": "vm1", "domid": 1}
    with pytest.raises(InvalidDomain):
        client.call("domain.info", dom="ghost")
    with pytest.raises(XendError, match="parameter dom must be a string, not integer"):
        client.call("domain.info", dom=3)


def test_openapi_served(server: Running) -> None:
    reply = server.raw(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 200
    assert body_of(reply) == openapi()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /api/domain.list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    (b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
     404),
    (post("no.such", b"{}"), 404),
])
def test_unknown_resources_get_json_errors(server: Running, request_bytes: bytes,
                                           status: int) -> None:
    reply = server.raw(request_bytes)
    assert status_of(reply) == status
    assert body_of(reply)["error"]["class"] == "XendError"


MALFORMED = {
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "long request line": b"POST /api/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    "long header": b"POST /api/domain.list HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
    "many headers": b"POST /api/domain.list HTTP/1.1\r\n"
                    + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n",
    "bad length": b"POST /api/domain.list HTTP/1.1\r\nContent-Length: ten\r\n\r\n{}",
    "negative length": b"POST /api/domain.list HTTP/1.1\r\nContent-Length: -5\r\n\r\n{}",
    "two lengths": b"POST /api/domain.list HTTP/1.1\r\nContent-Length: 2\r\n"
                   b"Content-Length: 3\r\n\r\n{}",
    "bad chunk": b"POST /api/domain.list HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\n{}\r\n0\r\n\r\n",
    "bad version": b"POST /api/domain.list HTTP/9.9\r\n\r\n",
    "nul in target": b"POST /api/domain.\x00list HTTP/1.1\r\n\r\n",
    "not json": post("domain.list", b"{not json"),
    "json array": post("domain.list", b"[1, 2]"),
    "json string": post("domain.list", b'"x"'),
    "deep json": post("domain.list", b"[" * 200000 + b"]" * 200000),
    "deep object": post("domain.create", b'{"config": ' + b'{"a": ' * 100000 + b"1"
                        + b"}" * 100000 + b"}"),
    "bad utf-8": post("domain.list", b'{"state": "\xff\xfe"}'),
    "wrong type": post("domain.info", b'{"dom": 1}'),
    "unknown param": post("domain.info", b'{"dom": "vm1", "fd": 0}'),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_request_gets_4xx_and_close(server: Running, name: str) -> None:
    reply = server.raw(MALFORMED[name])
    assert 400 <= status_of(reply) < 500, reply[:300]


def test_body_over_the_limit(server: Running) -> None:
    body = b'{"state": "' + b"x" * (MAX_BODY + 10) + b'"}'
    assert status_of(server.raw(post("domain.list", body), timeout=30)) == 413


def test_half_sent_body_times_out(server: Running) -> None:
    reply = server.raw(b"POST /api/domain.list HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 100\r\n\r\n{")
    assert status_of(reply) == 408


def test_idle_and_half_sent_headers_are_closed(server: Running) -> None:
    assert server.raw(b"", timeout=5) == b""
    assert server.raw(b"POST /api/domain.list HTTP/1.1\r\nHost", timeout=5) == b""


def test_operation_timeout_is_504(tmp_path: Path) -> None:
    running = Running(str(tmp_path / "s"), FakeDomains(pause_delay=5), operation_timeout=0.2)
    try:
        reply = running.raw(post("domain.pause", b'{"dom": "vm1"}'))
    finally:
        running.close()
    assert status_of(reply) == 504
    assert body_of(reply)["error"]["message"] == "request timed out"


def test_non_root_peer_is_refused() -> None:
    # a directory and socket others may reach, so only SO_PEERCRED stands in the way
    base = tempfile.mkdtemp(prefix="d0api-", dir="/tmp")
    os.chmod(base, 0o755)
    running = Running(os.path.join(base, "s"), FakeDomains())
    try:
        os.chmod(running.path, 0o666)
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
                "s.sendall(b'POST /api/domain.list HTTP/1.1\\r\\nHost: x\\r\\n"
                "Content-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}')\n"
                "out=b''\nwhile (c := s.recv(65536)): out += c\nprint(out.decode())")
        out = subprocess.run([sys.executable, "-c", code, running.path], user=65534,
                             capture_output=True, text=True, timeout=20, check=True).stdout
    finally:
        running.close()
        os.rmdir(base)
    assert out.startswith("HTTP/1.1 403 ")
    assert json.loads(out.partition("\n\n")[2])["error"]["message"] == \
        "Most commands need root access."
