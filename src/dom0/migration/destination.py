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
from dataclasses import dataclass
from typing import Any, Protocol

from dom0.backends.machine import Machine
from dom0.errors import VmError
from dom0.migration import auth
from dom0.migration.auth import Credentials
from dom0.migration.policy import StoragePolicy, host_paths
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

    def departing(self, uuid: object) -> dict[str, Any] | None:
        """The config of the domain of *uuid* migrating out of this same xend (a
        migration to localhost), or None."""

    async def launch(self, config: dict[str, Any], next_vif_devid: int,
                     receive: Receive) -> int:
        """Admit and launch the domain, its machine waiting for the stream; run
        *receive* with the machine; the guest runs when it returns.  The new ID."""


@dataclass(frozen=True)
class ReceiveRequest:
    """The source's request, each field checked (a bad one is refused with why)."""

    config: dict[str, Any]
    live: bool
    probe: int
    next_vif_devid: int

    @classmethod
    def parse(cls, message: dict[str, Any]) -> ReceiveRequest:
        op = message.get("op")
        if op != "receive":
            raise MigrationError(f"Invalid operation: {str(op)[:40]} (expected receive)")
        if message.get("version") != PROTOCOL_VERSION:
            raise MigrationError(f"unsupported relocation protocol version "
                                 f"{str(message.get('version'))[:20]} (this host speaks "
                                 f"{PROTOCOL_VERSION})")
        config = message.get("config")
        if not isinstance(config, dict):
            raise MigrationError("the request carries no domain configuration")
        probe = _count(message, "probe", MAX_PROBE)
        devid = _count(message, "next_vif_devid", MAX_DEVID)
        live = message.get("live", False)
        if not isinstance(live, bool):
            raise MigrationError("invalid relocation request: live must be true or false")
        return cls(config, live, probe, devid)


MAX_PROBE = 1 << 30
MAX_DEVID = 1 << 16


def _count(message: dict[str, Any], key: str, limit: int) -> int:
    value = message.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise MigrationError(f"invalid relocation request: {key} must be an integer from 0 "
                             f"to {limit}")
    return value


class RelocationServer:
    def __init__(self, launcher: Launcher, address: str, port: int, hosts_allow: str,
                 ssl_context: Any = None, credentials: Credentials | None = None,
                 policy: StoragePolicy | None = None) -> None:
        self.launcher = launcher
        self.address = address
        self.port = port
        self.hosts_allow = hosts_allow
        self.ssl_context = ssl_context
        #: the shared key, if any, is demanded of every peer before its request
        self.credentials = credentials or Credentials()
        self.policy = policy or StoragePolicy()
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
                await _refuse(reader, writer, f"Host {peer} is not allowed to migrate here "
                                              "(xend-relocation-hosts-allow)")
                return
            greeting, nonce = auth.hello(self.credentials)
            await send(writer, greeting)
            if nonce is not None and self.credentials.key is not None:
                await auth.check_source(reader, writer, self.credentials.key, nonce)
            request = ReceiveRequest.parse(await receive(reader))
            await self._receive(request, reader, writer)
        except auth.AuthError as exc:
            log.warning("Rejected connection from %s: %s", peer, exc)
            await _refuse(reader, writer, str(exc))
        except (TimeoutError, MigrationError, VmError, ConnectionError, OSError) as exc:
            why = str(exc) or ("the source went silent" if isinstance(exc, TimeoutError)
                               else type(exc).__name__)
            log.warning("incoming migration from %s failed: %s", peer, why)
            await _refuse(reader, writer, why)
        finally:
            writer.close()


    async def _receive(self, request: ReceiveRequest, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        """The destination's conversation after the request."""
        config = request.config
        # what the peer may make this host open, before anything (the files of a
        # domain that is only moving within this host are opened already)
        ours = self.launcher.departing(config.get("uuid"))
        self.policy.check(config, host_paths(ours) if ours else frozenset())
        self.launcher.check(config)
        rate = await read_probe(reader, request.probe)
        await send(writer, {"status": "probed", "rate": rate})
        # QEMU starts while the source still measures its guest; receive_guest then
        # waits for the source's "start"
        domid = await self.launcher.launch(
            config, request.next_vif_devid,
            lambda machine: receive_guest(machine, reader, writer))
        await send(writer, {"status": "running", "domid": domid})


#: s a refusing destination goes on reading what the source still sends (see _refuse)
REFUSAL_DRAIN = 10.0


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  why: str) -> None:
    """Tell the source why, then read and drop whatever it still sends until it
    closes: a socket closed with unread bytes in it (a probe, a request, QEMU's
    stream) answers with a reset, and a reset destroys the reason on its way
    (the source saw only ``Connection reset by peer``)."""
    try:
        await send(writer, {"status": "error", "message": why})
        reading(writer, True)  # the stream may have been QEMU's
        if writer.can_write_eof():
            writer.write_eof()  # the reason is all we have to say
        async with asyncio.timeout(REFUSAL_DRAIN):
            while await reader.read(1 << 20):
                pass
    except (ConnectionError, OSError, TimeoutError):
        pass


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
            await _relay_in(reader, to_qemu)
        finally:
            to_qemu.close()
        await _loaded(machine)
    else:
        reading(writer, False)  # from now on the socket's bytes are QEMU's
        await machine.receive_incoming("", fd=socket_fd(writer), postcopy=postcopy)
        await send(writer, {"status": "ready"})
        await _loaded(machine)
        reading(writer, True)
    await send(writer, {"status": "received"})
    commit = await receive(reader)
    if commit.get("op") != "commit":
        raise MigrationError("the source did not commit")


#: the source frames at most 1 MiB of QEMU's stream (source._relay_out); more is not ours
MAX_FRAME = 4 << 20


async def _relay_in(reader: asyncio.StreamReader, to_qemu: asyncio.StreamWriter) -> None:
    """TLS: the source's frames (4-byte length, data; 0 ends) into QEMU's socket."""
    try:
        while size := int.from_bytes(await reader.readexactly(4), "big"):
            if size > MAX_FRAME:
                raise MigrationError(f"the source's stream is not dom0's relay framing (a "
                                     f"frame of {size} bytes); is the source a dom0 xend?")
            to_qemu.write(await reader.readexactly(size))
            await to_qemu.drain()
    except asyncio.IncompleteReadError:
        raise MigrationError("the source's migration stream ended in the middle (the source "
                             "stopped or the link broke)") from None


async def _loaded(machine: Machine) -> None:
    """QEMU's verdict on the stream, said so a user can act on it: a QEMU that cannot
    load a stream exits, which alone reads as a closed QMP connection."""
    try:
        await machine.wait_incoming(timeout=3600)
    except VmError as exc:
        raise MigrationError(f"the destination's QEMU could not load the migration stream "
                             f"({exc}): the stream is corrupt or truncated, or not from a "
                             f"compatible QEMU; its log on the destination says more") from None
