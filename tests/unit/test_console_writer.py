"""The console relay's one writer (devices/console.py), over real Unix sockets: a
serial-port peer stands where QEMU's chardev would be, an ``xm console``-style raw
client and a web-console-style framed client attach to the relay as xend's would."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_lifecycle_policy import run

from dom0.devices.console import READ_ONLY_NOTICE, WRITER_NOTICE, ConsoleRelay
from dom0.model.consoleframes import FRAMED_SUFFIX, OUTPUT, ROLE, read_frame

Ends = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Serial:
    """The guest's side of the serial port: what reached it, and a way to print."""

    def __init__(self) -> None:
        self.received = b""
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        while data := await reader.read(4096):
            self.received += data
            self.changed.set()

    async def wait_for(self, text: bytes) -> None:
        while text not in self.received:
            self.changed.clear()
            await self.changed.wait()


async def relay_with_serial(tmp: Path) -> tuple[ConsoleRelay, Serial, asyncio.AbstractServer]:
    serial = Serial()
    server = await asyncio.start_unix_server(serial.serve, str(tmp / "serial.sock"))
    relay = ConsoleRelay(str(tmp / "serial.sock"), str(tmp / "console.sock"))
    await relay.start()
    await serial.connected.wait()
    return relay, serial, server


async def read_exactly_text(reader: asyncio.StreamReader, text: bytes) -> None:
    seen = b""
    while text not in seen:
        chunk = await reader.read(4096)
        assert chunk, f"closed; got {seen!r}"
        seen += chunk


async def next_role(reader: asyncio.StreamReader) -> str:
    while True:
        got = await read_frame(reader)
        assert got is not None
        if got[0] == ROLE:
            return got[1].decode()


@run
async def test_first_console_types_the_others_watch_until_it_leaves(tmp_path: Path) -> None:
    relay, serial, server = await relay_with_serial(tmp_path)
    try:
        # an xm console first: the writer (and, alone, told nothing)
        xm_r, xm_w = await asyncio.open_unix_connection(relay.client_socket)
        await asyncio.sleep(0.05)
        # then a browser: a viewer, told so in a role frame
        web_r, web_w = await asyncio.open_unix_connection(relay.client_socket + FRAMED_SUFFIX)
        assert await next_role(web_r) == "viewer"
        web_w.write(b"from-the-browser\n")
        xm_w.write(b"from-xm\n")
        await serial.wait_for(b"from-xm\n")
        # both see the guest's output; the browser's in output frames
        assert serial.writer is not None
        serial.writer.write(b"guest says hi")
        await read_exactly_text(xm_r, b"guest says hi")
        assert await read_frame(web_r) == (OUTPUT, b"guest says hi")
        # a second xm console watches too, and is told on its terminal
        xm2_r, xm2_w = await asyncio.open_unix_connection(relay.client_socket)
        await read_exactly_text(xm2_r, READ_ONLY_NOTICE)
        # the writer leaves: the one waiting longest (the browser) takes the keyboard
        xm_w.close()
        assert await next_role(web_r) == "writer"
        web_w.write(b"browser-now\n")
        await serial.wait_for(b"browser-now\n")
        xm2_w.write(b"still-not-xm2\n")
        web_w.close()  # and after the browser, the second xm console
        await read_exactly_text(xm2_r, WRITER_NOTICE)
        xm2_w.write(b"xm2-now\n")
        await serial.wait_for(b"xm2-now\n")
        assert b"from-the-browser" not in serial.received
        assert b"still-not-xm2" not in serial.received
        xm2_w.close()
    finally:
        await relay.stop()
        server.close()
    assert not Path(relay.client_socket).exists()
    assert not Path(relay.client_socket + FRAMED_SUFFIX).exists()


@run
async def test_a_browser_alone_is_the_writer(tmp_path: Path) -> None:
    relay, serial, server = await relay_with_serial(tmp_path)
    try:
        web_r, web_w = await asyncio.open_unix_connection(relay.client_socket + FRAMED_SUFFIX)
        assert await next_role(web_r) == "writer"
        web_w.write(b"echo hello\n")
        await serial.wait_for(b"echo hello\n")
        web_w.close()
    finally:
        await relay.stop()
        server.close()
