"""`xm console` and `xm create -c` on a real terminal (a pty), as a person uses them;
and one keyboard between an `xm console` and a browser's web console at once."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from conftest import BIN, Host


class Terminal:
    """xm running on a pseudo-terminal."""

    def __init__(self, host: Host, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([str(BIN / "xm"), *args], env=host.env, cwd=host.dir,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; got {self.seen[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    raise AssertionError(f"terminal closed; got {self.seen[-400:]!r}") from None

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        os.close(self.master)
        return rc


def test_console_attach_detach_reattach(host: Host) -> None:
    host.create("con")
    host.console("con").close()  # booted
    for word in (b"first", b"second"):
        term = Terminal(host, "console", "con")
        time.sleep(0.3)
        term.type(b"echo hello-" + word + b"\r")
        term.expect(b"hello-" + word + b"\r\n")
        term.type(b"\x1d")  # Ctrl-]
        assert term.wait() == 0
    r = host.xm("console", "-q", "nosuch", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")


def test_create_c_shows_the_boot_from_the_start(host: Host) -> None:
    path = host.write_config("cc")
    term = Terminal(host, "create", "-c", str(path))
    term.expect(b"Started domain cc")
    term.expect(b"dom0-guest: boot complete", 90)
    term.expect(b"# ", 30)
    term.type(b"\x1d")
    assert term.wait() == 0
    assert host.info("cc")["state"] in ("r-----", "-b----")


class Browser:
    """A web console client (what the page's xterm.js does, over aiohttp): logged in
    with xend's token, attached to a domain's serial console WebSocket.  Its event
    loop runs in a thread of its own so the test can drive a pty meanwhile."""

    def __init__(self, url: str, token: str, dom: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.seen = b""
        self.roles: list[str] = []
        self._call(self._open(url, token, dom))

    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self, url: str, token: str, dom: str) -> None:
        # unsafe: the jar keeps cookies of an IP address (127.0.0.1) only when told to
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await self.session.post(url + "login", data={"token": token}, allow_redirects=False)
        assert r.status == 303, r.status
        self.ws = await self.session.ws_connect(url.replace("http", "ws", 1) +
                                                f"ws/console/{dom}", origin=url.rstrip("/"))

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.roles.append(json.loads(msg.data)["role"])
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.seen += msg.data
                else:
                    raise AssertionError(f"console closed: {msg}; got {self.seen[-300:]!r}")

    def role(self, n: int, timeout: float = 30.0) -> str:
        """The n-th role message (from 1)."""
        self._call(self._until(lambda: len(self.roles) >= n, timeout))
        return self.roles[n - 1]

    def expect(self, text: bytes, timeout: float = 30.0) -> None:
        self._call(self._until(lambda: text in self.seen, timeout))

    def type(self, text: str) -> None:
        self._call(self.ws.send_str(text))

    def close(self) -> None:
        async def close() -> None:
            await self.ws.close()
            await self.session.close()
        self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_xm_console_and_a_browser_share_one_keyboard(make_host: Any) -> None:
    """The first console attached types, the other watches until it leaves; keys of
    the one watching never reach the guest (its shell would run them)."""
    port = free_port()
    host: Host = make_host(f"(xend-http-server yes)\n(xend-port {port})\n"
                           "(xend-address 127.0.0.1)\n", start=False)
    host.xend("start")
    token = (host.dir / "state" / "web-token").read_text().strip()
    host.create("one")
    host.console("one").close()  # booted

    term = Terminal(host, "console", "one")  # first: the keyboard is xm's
    time.sleep(0.3)
    web = Browser(f"http://127.0.0.1:{port}/", token, "one")
    assert web.role(1) == "viewer"
    web.type("echo web-$((6*7))\r")
    term.type(b"echo xm-$((5*5))\r")
    term.expect(b"xm-25\r\n")
    web.expect(b"xm-25\r\n")  # the browser watches
    term.type(b"echo xm-again-$((5*5))\r")
    term.expect(b"xm-again-25\r\n")
    assert b"web-42" not in term.seen and b"web-42" not in web.seen

    term.type(b"\x1d")  # xm leaves: the browser has the keyboard
    assert term.wait() == 0
    assert web.role(2) == "writer"
    web.type("echo web-$((6*7))\r")
    web.expect(b"web-42\r\n")

    late = Terminal(host, "console", "one")  # now xm watches, and is told so
    late.expect(b"[xend: another console has the keyboard; this one is read-only")
    late.type(b"echo late-$((2*2))\r")
    web.type("echo web-again-$((6*7))\r")
    web.expect(b"web-again-42\r\n")
    late.expect(b"web-again-42\r\n")
    assert b"late-4" not in web.seen and b"late-4" not in late.seen
    web.close()  # the browser leaves: xm has the keyboard again
    late.expect(b"[xend: this console has the keyboard now]")
    late.type(b"echo late-$((2*2))\r")
    late.expect(b"late-4\r\n")
    late.type(b"\x1d")
    assert late.wait() == 0
