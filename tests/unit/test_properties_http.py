"""Properties of the HTTP request reader (issue 9 item 12): the real aiohttp server
of api/server.py, on a Unix socket, fed random and half-formed requests.  Every one
gets a reply below 500 or a closed connection, within the time the server gives a
client; never a 5xx, never a hang; and the server still answers afterwards."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator

import pytest
from fake_services import FakeDomains
from fuzzing import budget, target
from hypothesis import given
from hypothesis import strategies as st
from test_api_server import Running, read_to_eof, status_of

#: the server's request timeout here; a reply must come well within HANG
REQUEST_TIMEOUT, HANG = 0.5, 10.0


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with tempfile.TemporaryDirectory() as d:
        running = Running(f"{d}/xend.sock", FakeDomains(), request_timeout=REQUEST_TIMEOUT,
                          operation_timeout=2.0)
        yield running
        running.close()


def exchange(server: Running, data: bytes) -> bytes:
    """Send *data*, end our side (a client that sent all it will), read to EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG)
        sock.connect(server.path)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed before taking it all
        return read_to_eof(sock)  # socket.timeout here is a hang: the test fails


ROUTES = ["domain.list", "domain.info", "domain.create", "domain.destroy", "node.info",
          "no.such", "domain.list/../x", ""]
METHODS = st.sampled_from(["POST", "GET", "PUT", "HEAD", "DELETE", "OPTIONS", "BREW", ""])
HEADER = st.one_of(
    st.sampled_from(["Host: xend", "Connection: close", "Connection: keep-alive",
                     "Content-Type: application/json", "Transfer-Encoding: chunked",
                     "Expect: 100-continue", "Content-Length: 0", "Content-Length: -1",
                     "Content-Length: 99999999999999999999", "Content-Length: 2",
                     "Upgrade: websocket"]),
    st.builds(lambda k, v: f"{k}: {v}", st.text(max_size=8), st.text(max_size=16)))
BODY = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{}", b"[]", b'{"dom": "vm1"}', b'{"dom": 1}', b'{"config": {"cpus": 3}}',
                     b'{"config": []}', b"null", b'{"a": ' * 50 + b"1" + b"}" * 50,
                     b"0\r\n\r\n", b"zz\r\n{}\r\n0\r\n\r\n"]))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request line, headers and a body, each possibly malformed."""
    route = draw(st.sampled_from(ROUTES) | st.text(max_size=12))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9", ""]))
    line = f"{draw(METHODS)} /api/{route} {version}"
    headers = draw(st.lists(HEADER, max_size=5))
    body = draw(BODY)
    if draw(st.booleans()):
        headers.append(f"Content-Length: {len(body)}")
    eol = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    head = eol.join([line, *headers]) + eol + eol
    return head.encode("utf-8", "surrogatepass") + body


GOOD = (b"POST /api/domain.list HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}")
#: how often the campaign checks that the server still serves a good request
ALIVE_EVERY = 500


@budget(200)
@given(data=st.binary(max_size=300) | requests())
def test_http_reader(server: Running, data: bytes) -> None:
    """A closed connection without a reply is allowed: aiohttp drops a request whose
    client half-closed before the answer (xm never does), and garbage it cannot
    parse far enough to answer.  A 5xx or no end within HANG is not."""
    with target("HTTP request reader (api/server)") as count:
        reply = exchange(server, data)
        if reply:
            assert status_of(reply) < 500, reply[:300]
        if count % ALIVE_EVERY == 0:
            assert status_of(server.raw(GOOD)) == 200


def test_server_still_answers_after_the_campaign(server: Running) -> None:
    assert status_of(server.raw(GOOD)) == 200
