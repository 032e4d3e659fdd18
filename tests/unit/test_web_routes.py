"""dom0.web.server: a real aiohttp server on a local port with fake services behind
it: nothing but the login form without a session, the token gives one, buttons need
the page's header, the serial console's WebSocket reaches xend's real console relay
(over Unix sockets) with one writer at a time."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from fake_services import FakeDomain, FakeDomains, services

from dom0.devices.console import ConsoleRelay
from dom0.web.auth import COOKIE
from dom0.web.server import REQUEST_HEADER, WebConsole

TOKEN = "k" * 43
POST = {REQUEST_HEADER: "1"}


class ConsoleDomain(FakeDomain):
    """A domain whose serial console is a Unix socket the test serves."""

    console = ""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "uuid": "u-" + self.name, "console": self.console,
                "power_state": "running", "memory": 96, "vcpus": 1}


def run(test: Callable[[TestClient, FakeDomains], Awaitable[None]],
        domains: FakeDomains | None = None) -> None:
    async def main() -> None:
        doms = domains or FakeDomains()
        web = WebConsole(services(doms), "127.0.0.1", 0, TOKEN)
        async with TestClient(TestServer(web.app())) as client:
            await test(client, doms)
    asyncio.run(main())


async def login(client: TestClient) -> None:
    r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_without_a_session_only_the_login_page() -> None:
    async def t(client: TestClient, doms: FakeDomains) -> None:
        r = await client.get("/", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
        r = await client.get("/login")
        assert r.status == 200 and 'name="token"' in await r.text()
        for path in ("/api/domains", "/static/app.js", "/novnc/vnc_lite.html",
                     "/vendor/xterm.js", "/ws/console/vm1", "/api/domains/vm1/vnc"):
            r = await client.get(path)
            assert r.status == 401, path
        r = await client.post("/api/domains/vm1/save", json={"file": "/tmp/x"}, headers=POST)
        assert r.status == 401 and doms.calls == []
    run(t)


def test_a_wrong_token_gives_no_session() -> None:
    async def t(client: TestClient, doms: FakeDomains) -> None:
        r = await client.post("/login", data={"token": "k" * 42}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login?failed=1"
        assert "Set-Cookie" not in r.headers
        assert (await client.get("/api/domains")).status == 401
    run(t)


def test_logged_in_the_page_lists_domains_and_logout_ends_it() -> None:
    async def t(client: TestClient, doms: FakeDomains) -> None:
        await login(client)
        r = await client.get("/")
        assert r.status == 200 and "xterm.js" in await r.text()
        rows = (await (await client.get("/api/domains")).json())["result"]
        assert [(row["name"], row["domid"]) for row in rows] == [("Domain-0", 0), ("vm1", 1)]
        assert (await client.post("/logout", headers=POST)).status == 200
        assert (await client.get("/api/domains")).status == 401
    run(t)


def test_buttons_need_the_page_header_and_report_errors() -> None:
    async def t(client: TestClient, doms: FakeDomains) -> None:
        await login(client)
        r = await client.post("/api/domains/vm1/save", json={"file": "/tmp/vm1.chk"})
        assert r.status == 403 and doms.calls == []
        r = await client.post("/api/domains/vm1/save", json={"file": "/tmp/vm1.chk"},
                              headers=POST)
        assert r.status == 200 and doms.calls == [("save", ("vm1", "/tmp/vm1.chk", False))]
        r = await client.post("/api/domains/vm1/save", json={"file": "rel"}, headers=POST)
        assert r.status == 400 and "absolute" in (await r.json())["error"]
        r = await client.post("/api/domains/nosuch/pause", headers=POST)
        assert r.status == 400 and "nosuch" in (await r.json())["error"]
        r = await client.post("/api/domains/vm1/explode", headers=POST)
        assert r.status == 404
    run(t)


def test_serial_console_one_writer_then_the_next_takes_over() -> None:
    typed: list[bytes] = []
    tmp = tempfile.mkdtemp()
    relay = ConsoleRelay(os.path.join(tmp, "serial.sock"), os.path.join(tmp, "console.sock"))

    async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The guest's serial port, behind xend's real relay: it echoes."""
        while data := await reader.read(100):
            typed.append(data)
            writer.write(data)

    async def next_text(ws: aiohttp.ClientWebSocketResponse) -> Any:
        """The next role message (the guest's output may come first)."""
        while (msg := await ws.receive()).type != aiohttp.WSMsgType.TEXT:
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
        return json.loads(msg.data)

    async def t(client: TestClient, doms: FakeDomains) -> None:
        server = await asyncio.start_unix_server(guest, relay.serial_socket)
        await relay.start()
        await login(client)
        first = await client.ws_connect("/ws/console/vm1")
        assert json.loads(await first.receive_str()) == {"role": "writer"}
        second = await client.ws_connect("/ws/console/vm1")
        assert json.loads(await second.receive_str()) == {"role": "viewer"}
        await second.send_str("ignored")
        await first.send_str("root\n")
        assert await first.receive_bytes() == b"root\n"
        await first.close()
        assert await next_text(second) == {"role": "writer"}
        await second.send_str("ls\n")
        while not (await second.receive_bytes()).endswith(b"ls\n"):
            pass
        await second.close()
        await relay.stop()
        server.close()
        assert b"".join(typed) == b"root\nls\n"

    doms = FakeDomains(domains={"vm1": ConsoleDomain("vm1")})
    ConsoleDomain.console = relay.client_socket
    run(t, doms)


def test_a_websocket_from_another_origin_is_refused() -> None:
    async def t(client: TestClient, doms: FakeDomains) -> None:
        await login(client)
        try:
            await client.ws_connect("/ws/console/vm1", origin="http://evil.example")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403
        else:
            raise AssertionError("cross-origin WebSocket accepted")
    run(t)
