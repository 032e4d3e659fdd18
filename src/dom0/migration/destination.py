"""The destination of a live migration: the relocation server (xend-relocation-
server, hosts-allow) and the whole destination conversation, from the request
to "running".  The domain is started by a launcher the daemon hands in (the
domain layer's state mover): migration never reaches up into domain/.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from dom0.backends.machine import Machine
from dom0.errors import VmError
from dom0.migration.wire import (
    PROTOCOL_VERSION,
    MigrationError,
    read_probe,
    reading,
    receive,
    send,
    socket_fd,
    watch_link,
)

log = logging.getLogger(__name__)


def host_allowed(patterns: str, names: list[str]) -> bool:
    """xend-relocation-hosts-allow: space-separated regexes against name or address."""
    if not patterns.strip():
        return True
    return any(re.match(p, n) for p in patterns.split() for n in names if n)


#: the destination's part of a migration, run while QEMU waits with -incoming
Receive = Callable[[Machine], Awaitable[None]]


class Launcher(Protocol):
    """What the destination is handed to start the incoming domain (the domain
    layer's state mover implements it)."""

    def check(self, config: dict[str, Any]) -> None:
        """Refuse (a VmError) a domain that could not be admitted here."""

    async def launch(self, config: dict[str, Any], next_vif_devid: int,
                     receive: Receive) -> int:
        """Admit and launch the domain, its machine waiting for the stream; run
        *receive* with the machine; the guest runs when it returns.  The new ID."""


class RelocationServer:
    def __init__(self, launcher: Launcher, address: str, port: int, hosts_allow: str,
                 ssl_context: Any = None) -> None:
        self.launcher = launcher
        self.address = address
        self.port = port
        self.hosts_allow = hosts_allow
        self.ssl_context = ssl_context
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.address or None, self.port,
                                                 ssl=self.ssl_context, reuse_address=True)

    async def stop(self) -> None:
        if self.server:
            self.server.close()

    async def _peer_names(self, peer: str) -> list[str]:
        names = [peer]
        if any(c.isalpha() for c in self.hosts_allow):  # only names need a lookup
            try:
                names.append(await asyncio.wait_for(asyncio.to_thread(socket.getfqdn, peer), 3))
            except TimeoutError:
                pass
        return names

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        watch_link(writer)
        try:
            if not host_allowed(self.hosts_allow, await self._peer_names(peer)):
                log.warning("Rejected connection from %s", peer)
                await send(writer, {"status": "error",
                                    "message": f"Host {peer} is not allowed to migrate here "
                                               "(xend-relocation-hosts-allow)"})
                return
            await send(writer, {"status": "hello", "version": PROTOCOL_VERSION})
            request = await receive(reader)
            op = request.get("op")
            if op != "receive" or request.get("version") != PROTOCOL_VERSION:
                await send(writer, {"status": "error", "message": f"Invalid operation: {op}"})
                return
            await self._receive(request, reader, writer)
        except (TimeoutError, MigrationError, VmError, ConnectionError) as exc:
            log.warning("incoming migration from %s failed: %s", peer, exc)
            try:
                await send(writer, {"status": "error", "message": str(exc)})
            except ConnectionError:
                pass
        finally:
            writer.close()


    async def _receive(self, request: dict[str, Any], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        """The destination's conversation after the request."""
        config = request.get("config")
        if not isinstance(config, dict):
            raise MigrationError("the request carries no domain configuration")
        self.launcher.check(config)
        rate = await read_probe(reader, int(request.get("probe", 0)))
        await send(writer, {"status": "probed", "rate": rate})
        # QEMU starts while the source still measures its guest; receive_guest then
        # waits for the source's "start"
        domid = await self.launcher.launch(
            config, int(request.get("next_vif_devid", 0)),
            lambda machine: receive_guest(machine, reader, writer))
        await send(writer, {"status": "running", "domid": domid})


def _tls(writer: asyncio.StreamWriter) -> bool:
    return writer.get_extra_info("ssl_object") is not None


async def receive_guest(machine: Machine, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    """The destination's part once QEMU runs with ``-incoming defer``: run by the
    launcher's launch, which resumes the guest when this returns."""
    start = await receive(reader)
    if start.get("op") != "start":
        raise MigrationError(f"Invalid operation: {start.get('op')}")
    postcopy = bool(start.get("postcopy"))
    if _tls(writer):
        path = machine.migration_socket
        await machine.receive_incoming(f"unix:{path}")
        _, to_qemu = await asyncio.open_unix_connection(path)
        await send(writer, {"status": "ready"})
        try:
            while size := int.from_bytes(await reader.readexactly(4), "big"):
                to_qemu.write(await reader.readexactly(size))
                await to_qemu.drain()
        finally:
            to_qemu.close()
        await machine.wait_incoming(timeout=3600)
    else:
        reading(writer, False)  # from now on the socket's bytes are QEMU's
        await machine.receive_incoming("", fd=socket_fd(writer), postcopy=postcopy)
        await send(writer, {"status": "ready"})
        await machine.wait_incoming(timeout=3600)
        reading(writer, True)
    await send(writer, {"status": "received"})
    commit = await receive(reader)
    if commit.get("op") != "commit":
        raise MigrationError("the source did not commit")
