"""Live migration between hosts: the relocation protocol, both of its sides.

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

The guest runs on exactly one host: the destination runs it only after
``commit``; the source destroys its copy only after ``running``.  If anything
fails before ``commit`` the source resumes and the destination cleans up; if the
answer to ``commit`` is lost, the source keeps its copy paused rather than risk
two running copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from dom0.backends.machine import Machine
from dom0.backends.qemu import ramsample
from dom0.errors import VmError
from dom0.migration.predict import (
    DEFAULT_DOWNTIME,
    MonotonicEta,
    Prediction,
    StreamRates,
    choose_downtime_limit,
    predict,
)

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
PROBE_BYTES = 32 * 1024 * 1024
PROBE_CHUNK = 1 << 20
SAMPLE_SPAN = 0.25  # s between the first and last samples of the guest's RAM (at least)
QUIET_RATE = 5e6  # B/s by the second sample: a quiet guest, no third sample
BUSY_CPU = 0.5  # QEMU's CPU seconds per second while sampled: the guest keeps a CPU busy
FINISH_S = 0.05  # s after QEMU's stream: the commit round trip, the destination resumes
ETA_AFTER = 0.5  # s of stream before xm shows an ETA
# a link silent this long is taken as cut (see watch_link): TCP's user timeout, and
# keepalive probes after KEEPALIVE_IDLE s, every KEEPALIVE_INTERVAL s, KEEPALIVE_COUNT times
LINK_TIMEOUT = 20.0
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
CONNECT_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0


class MigrationError(VmError):
    pass


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
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise MigrationError("the other host does not speak dom0's relocation protocol")
    if message.get("status") == "error":
        raise MigrationError(str(message.get("message") or "the other host refused"))
    return message


def _reading(writer: asyncio.StreamWriter, on: bool) -> None:
    """Stop (or restart) asyncio reading the socket while QEMU owns its bytes."""
    transport: Any = writer.transport
    if on:
        transport.resume_reading()
    else:
        transport.pause_reading()


@contextlib.contextmanager
def _lent_to_qemu(writer: asyncio.StreamWriter) -> Iterator[None]:
    """The source's socket while QEMU sends on it: asyncio leaves it alone, and it
    blocks, as the socket QEMU makes itself for ``tcp:`` does (checked in
    /proc/<pid>/fdinfo).  On a non-blocking one QEMU's sending thread meets every
    full buffer with EAGAIN and a poll set up for it.  The flag belongs to the
    socket, shared with asyncio, so it goes back before asyncio reads again."""
    fd = _fd(writer)
    _reading(writer, False)
    os.set_blocking(fd, True)
    try:
        yield
    finally:
        os.set_blocking(fd, False)
        _reading(writer, True)


def watch_link(writer: asyncio.StreamWriter) -> None:
    """Let the kernel notice a link that went silent, on both hosts: QEMU blocks in
    its reads and writes of the stream, and without this a cut cable would hold
    the source's stream (and the destination's waiting QEMU) for TCP's quarter of
    an hour.  Unacknowledged data fails the connection after LINK_TIMEOUT s; a
    connection with nothing in flight (the destination, waiting) is probed."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(LINK_TIMEOUT * 1000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def _fd(writer: asyncio.StreamWriter) -> int:
    return int(writer.get_extra_info("socket").fileno())


# ---- the destination ---------------------------------------------------------


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
        _reading(writer, False)  # from now on the socket's bytes are QEMU's
        await machine.receive_incoming("", fd=_fd(writer), postcopy=postcopy)
        await send(writer, {"status": "ready"})
        await machine.wait_incoming(timeout=3600)
        _reading(writer, True)
    await send(writer, {"status": "received"})
    commit = await receive(reader)
    if commit.get("op") != "commit":
        raise MigrationError("the source did not commit")


# ---- the source ------------------------------------------------------------------


@dataclass
class MigrationJob:
    """What ``xm migrate`` polls: progress, prediction, outcome."""

    domain: str
    destination: str
    live: bool
    started: float = field(default_factory=time.monotonic)
    phase: str = "connecting"
    prediction: str = ""
    transferred: int = 0
    total: int = 0
    remaining: int = 0
    eta_s: float | None = None
    events: list[str] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    downtime_ms: float | None = None
    total_s: float | None = None
    stream_s: float | None = None  # QEMU's own time for the stream (total-time)
    new_domid: int | None = None

    def view(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "domain", "destination", "live", "phase", "prediction", "transferred", "total",
            "remaining", "eta_s", "events", "done", "error", "downtime_ms", "total_s",
            "stream_s", "new_domid")}


async def send_guest(machine: Machine, config: dict[str, Any], next_vif_devid: int,
                     host: str, port: int, live: bool, job: MigrationJob,
                     rates: StreamRates, tls: bool = False) -> None:
    """The source's part (the domain's lock held by the caller): *machine* runs the
    domain of *config*; *rates* is what QEMU reached in this xend's earlier
    migrations, and learns from this one."""
    context = None
    if tls:  # encryption, like Xen's SSL relocation; peers are not authenticated
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        raise MigrationError(f"can't connect: {exc}") from None
    watch_link(writer)
    was_running = await machine.runstate() == "running"
    committed = False
    try:
        async def handshake() -> float:
            await receive(reader, CONNECT_TIMEOUT)  # hello, or why this host refuses us
            await send(writer, {"op": "receive", "version": PROTOCOL_VERSION, "live": live,
                                "config": config, "probe": PROBE_BYTES,
                                "next_vif_devid": next_vif_devid})
            job.phase = "measuring"
            return await _probe(reader, writer)

        m = await _measure(machine, live, handshake)
        bandwidth = rates.effective(m.link, m.busy)
        limit = choose_downtime_limit(m.ram, m.dirty, bandwidth, m.nonzero, m.working_set)
        guess = predict(m.ram, m.dirty, bandwidth, limit, live=live, nonzero_share=m.nonzero,
                        working_set=m.working_set)
        if guess.converges:  # the user's clock started at xm migrate
            guess = dataclasses.replace(
                guess, total_s=guess.total_s + time.monotonic() - job.started + FINISH_S)
        job.prediction = m.describe(bandwidth, limit, guess)
        postcopy = live and not guess.converges and not tls
        await send(writer, {"op": "start", "postcopy": postcopy})
        measured = time.monotonic()
        await receive(reader)  # ready: the destination's QEMU waits
        job.phase = "transferring"
        log.info("migration of %s to %s:%d: %s (measured after %.0f ms, the destination "
                 "ready %.0f ms later)", job.domain, host, port, job.prediction,
                 (measured - job.started) * 1000, (time.monotonic() - measured) * 1000)
        if tls:
            await _relay_out(machine, writer, live, job,
                             guess.total_s if guess.converges else None, limit)
        else:
            with _lent_to_qemu(writer):
                await machine.start_migration("", live, fd=_fd(writer), postcopy=postcopy,
                                              downtime_limit=limit)
                final = await _follow(machine, job,
                                      guess.total_s if guess.converges else None, limit)
            if not job.events:  # an escalated migration says nothing of QEMU's pace
                rates.learn(m.busy, _achieved(final), m.link)
        await receive(reader)  # received: the destination holds the guest, paused
        job.phase = "committing"
        await send(writer, {"op": "commit"})
        committed = True
        running = await receive(reader)
        job.new_domid = running.get("domid")
    except BaseException as exc:
        if not committed:
            await _recover_source(machine, was_running)
            writer.close()
            if isinstance(exc, (MigrationError, VmError)):
                raise
            if isinstance(exc, (OSError, asyncio.TimeoutError)):
                raise MigrationError(f"migration failed: {exc or type(exc).__name__}") from None
            raise
        writer.close()
        raise MigrationError("the destination did not confirm it runs the domain; the "
                             "source copy is kept paused (check the destination)") from None
    writer.close()
    job.total_s = time.monotonic() - job.started


@dataclass(frozen=True)
class Measurement:
    """What the prediction starts from."""

    ram: int  # bytes
    link: float  # bytes/s the probe got through
    dirty: float  # bytes/s of distinct pages the guest changes (0 when not live)
    working_set: float | None  # bytes it keeps rewriting, when that showed
    nonzero: float  # share of its RAM that is not zero pages
    busy: bool  # the guest kept a CPU busy meanwhile

    def describe(self, qemu_rate: float, limit: float, guess: Prediction) -> str:
        ws = "" if self.working_set is None else \
            f" (working set {self.working_set / 2**20:.0f} MiB)"
        return (f"link {self.link / 1e6:.0f} MB/s, QEMU {qemu_rate / 1e6:.0f} MB/s; "
                f"guest dirties {self.dirty / 1e6:.1f} MB/s{ws}, "
                f"{self.nonzero * 100:.0f}% of its RAM in use; downtime limit "
                f"{limit * 1000:.0f} ms; {guess.describe()}")


async def _take(sampler: ramsample.RamSampler | None) -> ramsample.Sample | None:
    """One sample of the guest's RAM, or None when there is no sampler or the
    kernel will not let xend read QEMU's memory (e.g. a Yama ptrace policy)."""
    if sampler is None:
        return None
    try:
        return await asyncio.to_thread(sampler.take)
    except OSError as exc:
        log.warning("cannot read the guest's RAM (%s); QEMU's dirty-rate sampler instead", exc)
        return None


async def _measure(machine: Any, live: bool,
                   handshake: Callable[[], Awaitable[float]]) -> Measurement:
    """Sample the guest's RAM before, after and (unless it is quiet) a little after
    *handshake* (which connects and probes the link, and returns its bandwidth):
    the guest is measured while the connection is made, not after it."""
    ram, sampler = await machine.ram_sampler()
    cpu0 = machine.cpu_seconds()
    first = await _take(sampler)
    link = await handshake()
    mid = await _take(sampler) if first else None
    working_set: float | None = None
    if first is not None and mid is not None:
        dirty, last = ramsample.dirty_rate(first, mid, ram), mid
        # a quiet guest: its first pass is the whole migration, and how little it
        # dirties meanwhile needs no longer look; otherwise a third sample
        if dirty > QUIET_RATE:
            await asyncio.sleep(SAMPLE_SPAN - (time.monotonic() - first.at))
            last = await _take(sampler) or mid
            if last is not mid:
                dirty, working_set = ramsample.dirt(first, mid, last, ram)
        nonzero, span = last.nonzero_share, last.at - first.at
    else:  # QEMU's own sampler: a whole second, and no word on zero pages
        t0 = time.monotonic()
        dirty = await machine.dirty_rate(1)
        nonzero, span = 1.0, time.monotonic() - t0
    if not live:
        dirty, working_set = 0.0, None
    busy = (machine.cpu_seconds() - cpu0) / max(span, 1e-3) >= BUSY_CPU
    return Measurement(ram, link, dirty, working_set, nonzero, busy)


async def _probe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
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


async def _relay_out(machine: Any, writer: asyncio.StreamWriter, live: bool,
                     job: MigrationJob, predicted: float | None, limit: float) -> None:
    """TLS: QEMU migrates to a local socket; xend frames its bytes into the TLS stream."""
    path = machine.migration_socket
    pumped = asyncio.get_running_loop().create_future()

    async def pump(reader: asyncio.StreamReader, qemu: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(1 << 20):
                writer.write(len(chunk).to_bytes(4, "big") + chunk)
                await writer.drain()
            writer.write((0).to_bytes(4, "big"))
            await writer.drain()
            pumped.set_result(None)
        except Exception as exc:
            if not pumped.done():
                pumped.set_exception(exc)
        finally:
            qemu.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(pump, path)
    try:
        await machine.start_migration(f"unix:{path}", live, downtime_limit=limit)
        await _follow(machine, job, predicted, limit)
        await asyncio.wait_for(pumped, STEP_TIMEOUT)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _recover_source(machine: Any, was_running: bool) -> None:
    try:
        info = await machine.migration_info()
        if info.get("status") in ("active", "setup", "pre-switchover", "device"):
            await machine.escalate_migration(4)  # cancel
            for _ in range(100):
                if (await machine.migration_info()).get("status") not in ("active", "cancelling"):
                    break
                await asyncio.sleep(0.05)
        if was_running and await machine.runstate() != "running":
            await machine.cont()
    except Exception as exc:  # recovery must not hide the original failure
        log.error("could not resume the source after a failed migration: %s", exc)


def _achieved(info: dict[str, Any]) -> float:
    """Bytes/s of non-zero pages QEMU streamed, from its final query-migrate."""
    seconds = float(info.get("total-time") or 0) / 1000
    return float(info.get("ram", {}).get("normal-bytes", 0)) / seconds if seconds > 0 else 0.0


async def _follow(machine: Any, job: MigrationJob, predicted: float | None,
                  limit: float = DEFAULT_DOWNTIME) -> dict[str, Any]:
    """Poll QEMU until the stream is done; escalate when it does not converge.
    *predicted* is the predicted total (from the job's start) when it converges;
    a downtime *limit* below QEMU's default that the guest turns out not to meet
    goes back to the default once the prediction is half as late again."""
    eta = MonotonicEta()
    stream_start = time.monotonic()
    step = 0
    next_escalation = time.monotonic() + (max(2 * predicted, 5.0) if predicted else 3.0)
    relax_at = job.started + 1.5 * predicted if predicted and limit < DEFAULT_DOWNTIME else None
    while True:
        info = await machine.migration_info()
        status = info.get("status")
        ram = info.get("ram", {})
        job.transferred = int(ram.get("transferred", 0))
        job.total = int(ram.get("total", 0))
        job.remaining = int(ram.get("remaining", 0))
        now = time.monotonic()
        # the average rate since the stream began: QEMU's own (mbps) is over its last
        # 100 ms, and the first of those only fill the sockets' buffers
        streamed = now - stream_start
        if streamed >= ETA_AFTER and job.transferred > 0:
            job.eta_s = eta.update(job.remaining / (job.transferred / streamed))
        if status == "completed":
            job.downtime_ms = info.get("downtime")
            if isinstance(info.get("total-time"), (int, float)):
                job.stream_s = info["total-time"] / 1000
            log.info("migration of %s: %s", job.domain, json.dumps(info))
            return info
        if status in ("failed", "cancelled"):
            raise MigrationError(f"migration {status}: {info.get('error-desc', '')}".strip())
        if status == "active" and relax_at is not None and now > relax_at:
            relax_at = None
            await machine.set_downtime_limit(DEFAULT_DOWNTIME)
            job.events.append(f"back to QEMU's default downtime limit of "
                              f"{DEFAULT_DOWNTIME * 1000:.0f} ms")
        if status == "active" and job.live and now > next_escalation:
            step += 1
            job.events.append(await machine.escalate_migration(step))
            if step >= 4:
                raise MigrationError("migration did not converge; aborted after throttling, "
                                     "a larger downtime and post-copy")
            next_escalation = now + 5.0
        await asyncio.sleep(0.1)
