"""The console relay: xend's counterpart of xenconsoled.

xend holds the one connection to the guest's serial port (QEMU's socket
chardev) for as long as the domain runs and lets any number of ``xm console``
clients attach to and detach from its own per-domain socket.  QEMU therefore
always has a reader: a client detaching at any instant cannot leave the guest's
UART stuck (QEMU 7.2 stalls a serial port whose socket peer closes while a write
is pending), and output with nobody attached is simply dropped after QEMU logs it.

**One writer at a time**, as a terminal has one keyboard: every client sees the
guest's output, but only one, the writer, types into it; the others' keys are
dropped.  The first client to attach (``xm console`` or a browser, whichever
came first) is the writer; when it leaves, the client waiting longest takes over.
Each is told: an ``xm console`` client by a line on its terminal (a lone one is told
nothing, so it stays a transparent terminal), a web console by a role frame on the
framed socket (model/consoleframes.py), which the guest's output cannot forge.
Taking the keyboard away from someone typing was not chosen: two people would
fight over it with every attach.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from dataclasses import dataclass

from dom0.model.consoleframes import FRAMED_SUFFIX, OUTPUT, ROLE, VIEWER, WRITER, frame

log = logging.getLogger(__name__)


#: what a raw (``xm console``) client is told of its role, on its terminal
READ_ONLY_NOTICE = (b"\r\n[xend: another console has the keyboard; this one is read-only "
                    b"until it leaves]\r\n")
WRITER_NOTICE = b"\r\n[xend: this console has the keyboard now]\r\n"


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    #: on the framed socket (a web console): output and roles come as frames
    framed: bool

    def output(self, data: bytes) -> None:
        self.writer.write(frame(OUTPUT, data) if self.framed else data)

    def told(self, role: str) -> None:
        if self.framed:
            self.writer.write(frame(ROLE, role.encode()))
        else:
            self.writer.write(WRITER_NOTICE if role == WRITER else READ_ONLY_NOTICE)


class ConsoleRelay:
    def __init__(self, serial_socket: str, client_socket: str) -> None:
        self.serial_socket = serial_socket
        self.client_socket = client_socket
        self.framed_socket = client_socket + FRAMED_SUFFIX
        self._serial_writer: asyncio.StreamWriter | None = None
        #: attached clients, in the order they came: the first one is the writer
        self._clients: list[_Client] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                reader, self._serial_writer = await asyncio.open_unix_connection(
                    self.serial_socket)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.01)
        old = os.umask(0o177)
        try:
            for path, framed in ((self.client_socket, False), (self.framed_socket, True)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                serve = functools.partial(self._serve_client, framed=framed)
                self._servers.append(await asyncio.start_unix_server(serve, path))
        finally:
            os.umask(old)
        self._pump = asyncio.create_task(self._from_guest(reader))

    async def _from_guest(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for client in list(self._clients):
                    if client.writer.transport.get_write_buffer_size() > 1024 * 1024:
                        continue  # a client that does not read loses output, not the guest
                    client.output(data)
        except ConnectionError:
            pass
        finally:
            for client in list(self._clients):
                client.writer.close()

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, framed: bool) -> None:
        client = _Client(writer, framed)
        self._clients.append(client)
        if framed or client is not self._clients[0]:
            # a raw writer is not told: a lone xm console stays a transparent terminal
            client.told(WRITER if client is self._clients[0] else VIEWER)
        try:
            while data := await reader.read(4096):
                if self._serial_writer is not None and client is self._clients[0]:
                    self._serial_writer.write(data)
                    await self._serial_writer.drain()
        except ConnectionError:
            pass
        finally:
            was_writer = bool(self._clients) and self._clients[0] is client
            self._clients.remove(client)
            if was_writer and self._clients:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    self._clients[0].told(WRITER)
            writer.close()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for client in list(self._clients):
            client.writer.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._serial_writer is not None:
            self._serial_writer.close()
        for path in (self.client_socket, self.framed_socket):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
