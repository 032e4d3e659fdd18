"""The console relay: xend's counterpart of xenconsoled.

xend holds the one connection to the guest's serial port (QEMU's socket
chardev) for as long as the domain runs and lets any number of ``xm console``
clients attach to and detach from its own per-domain socket.  QEMU therefore
always has a reader: a client detaching at any instant cannot leave the guest's
UART stuck (QEMU 7.2 stalls a serial port whose socket peer closes while a write
is pending), and output with nobody attached is simply dropped after QEMU logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

log = logging.getLogger(__name__)


class ConsoleRelay:
    def __init__(self, serial_socket: str, client_socket: str) -> None:
        self.serial_socket = serial_socket
        self.client_socket = client_socket
        self._serial_writer: asyncio.StreamWriter | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.client_socket)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, self.client_socket)
        finally:
            os.umask(old)
        self._pump = asyncio.create_task(self._from_guest(reader))

    async def _from_guest(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for client in list(self._clients):
                    if client.transport.get_write_buffer_size() > 1024 * 1024:
                        continue  # a client that does not read loses output, not the guest
                    client.write(data)
        except ConnectionError:
            pass
        finally:
            for client in list(self._clients):
                client.close()

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while data := await reader.read(4096):
                if self._serial_writer is not None:
                    self._serial_writer.write(data)
                    await self._serial_writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._serial_writer is not None:
            self._serial_writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.client_socket)
