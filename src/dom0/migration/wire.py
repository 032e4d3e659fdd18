"""The relocation protocol's wire, shared by both sides (source.py sends a
domain, destination.py receives it): JSON-line framing, the link probe, the
hand-over of the socket to QEMU, and the watch on a link that goes silent.

One TCP connection carries everything.  Control messages are JSON lines; the
QEMU migration stream itself flows over the same socket, handed to QEMU on both
ends (QMP ``getfd``), so no byte of guest memory is copied by xend.

    source                                  destination (relocation server)
                                           <-   {"status": "hello"}  (after hosts-allow)
    {"op": "receive", config, live, probe} ->
    <probe bytes: the link's bandwidth>    ->   (checks hosts-allow, config, disks)
                                           <-   {"status": "probed", "rate": B/s}
                                                (starts QEMU, -incoming defer)
    {"op": "start", "postcopy": bool}      ->   (post-copy only when predicted needed)
                                           <-   {"status": "ready"}   (QEMU waits)
    ======== QEMU migration stream ========>
                                           <-   {"status": "received"} (guest paused)
    {"op": "commit"}                       ->   (guest runs)
                                           <-   {"status": "running", "domid": N}

Over TLS (``xm migrate -s``, the SSL relocation server on port 8003) QEMU cannot
use the socket itself, so xend relays its stream through a local Unix socket on
each side, in frames (4-byte length, then data; a 0 length ends the stream).

Any step may be answered ``{"status": "error", "message": why}`` instead: the
destination then reads (and drops) what the source still sends until it closes,
so the reason is not lost to a connection reset, and the source, failing on its
side, still reads it and shows it (``Refused``).

The guest runs on exactly one host: the destination runs it only after
``commit``; the source destroys its copy only after ``running``.  If anything
fails before ``commit`` the source resumes and the destination cleans up; if the
answer to ``commit`` is lost, the source keeps its copy paused rather than risk
two running copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from dom0.errors import VmError

PROTOCOL_VERSION = 1
PROBE_BYTES = 32 * 1024 * 1024
PROBE_CHUNK = 1 << 20
# a link silent this long is taken as cut (see watch_link): TCP's user timeout, and
# keepalive probes after KEEPALIVE_IDLE s, every KEEPALIVE_INTERVAL s, KEEPALIVE_COUNT times
LINK_TIMEOUT = 20.0
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
CONNECT_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0


class MigrationError(VmError):
    pass


class Refused(MigrationError):
    """The other host said why it refuses (its ``{"status": "error"}`` message)."""


async def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()


async def receive(reader: asyncio.StreamReader, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ValueError:  # a line longer than the stream's limit: not our protocol
        raise MigrationError("the other host does not speak dom0's relocation protocol") from None
    if not line:
        raise MigrationError("the other host closed the connection")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        message = None
    if not isinstance(message, dict):
        raise MigrationError("the other host does not speak dom0's relocation protocol")
    if message.get("status") == "error":
        raise Refused(str(message.get("message") or "the other host refused"))
    return message


def reading(writer: asyncio.StreamWriter, on: bool) -> None:
    """Stop (or restart) asyncio reading the socket while QEMU owns its bytes."""
    transport: Any = writer.transport
    if on:
        transport.resume_reading()
    else:
        transport.pause_reading()


@contextlib.contextmanager
def lent_to_qemu(writer: asyncio.StreamWriter) -> Iterator[None]:
    """The source's socket while QEMU sends on it: asyncio leaves it alone, and it
    blocks, as the socket QEMU makes itself for ``tcp:`` does (checked in
    /proc/<pid>/fdinfo).  On a non-blocking one QEMU's sending thread meets every
    full buffer with EAGAIN and a poll set up for it.  The flag belongs to the
    socket, shared with asyncio, so it goes back before asyncio reads again."""
    fd = socket_fd(writer)
    reading(writer, False)
    os.set_blocking(fd, True)
    try:
        yield
    finally:
        os.set_blocking(fd, False)
        reading(writer, True)


def watch_link(writer: asyncio.StreamWriter) -> None:
    """Let the kernel notice a link that went silent, on both hosts: QEMU blocks in
    its reads and writes of the stream, and without this a cut cable would hold
    the source's stream (and the destination's waiting QEMU) for TCP's quarter of
    an hour.  Unacknowledged data fails the connection after LINK_TIMEOUT s; a
    connection with nothing in flight (the destination, waiting) is probed."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return  # already closed by the peer (e.g. a refused TLS certificate): the next read says so
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(LINK_TIMEOUT * 1000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def socket_fd(writer: asyncio.StreamWriter) -> int:
    return int(writer.get_extra_info("socket").fileno())


# ---- the probe: how fast the link is ------------------------------------------------


async def probe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """Send PROBE_BYTES; the link's bandwidth in bytes/s, as the destination timed
    their arrival (from its first read to its last), else as we timed the answer."""
    t0 = time.monotonic()
    chunk = bytes(PROBE_CHUNK)
    for _ in range(PROBE_BYTES // PROBE_CHUNK):
        writer.write(chunk)
        await writer.drain()
    probed = await receive(reader)
    ours = PROBE_BYTES / max(time.monotonic() - t0, 1e-3)
    theirs = probed.get("rate")
    return float(theirs) if isinstance(theirs, (int, float)) and theirs > 0 else ours


async def read_probe(reader: asyncio.StreamReader, size: int) -> float:
    """The destination's side of the probe: read and drop *size* bytes; their rate."""
    left, t0 = size, None
    while left > 0:
        data = await reader.read(min(left, PROBE_CHUNK))
        if not data:
            raise MigrationError("the other host closed the connection")
        if t0 is None:
            t0, first = time.monotonic(), len(data)
        left -= len(data)
    if t0 is None:
        return 0.0
    return (size - first) / max(time.monotonic() - t0, 1e-6)
