"""The source of a live migration (``xm migrate``): measure the guest while the
link is probed, predict, hand the socket to QEMU (or relay it over TLS), follow
QEMU's progress and escalate when it does not converge, and recover the guest
when anything fails before the destination commits.

It is handed the domain's machine and config, never the domain: migration does
not import domain/.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dom0.backends import ramsample
from dom0.backends.machine import Machine
from dom0.errors import VmError
from dom0.migration import auth
from dom0.migration.auth import Credentials
from dom0.migration.predict import (
    DEFAULT_DOWNTIME,
    MonotonicEta,
    Prediction,
    StreamRates,
    choose_downtime_limit,
    predict,
)
from dom0.migration.wire import (
    CONNECT_TIMEOUT,
    PROBE_BYTES,
    PROTOCOL_VERSION,
    STEP_TIMEOUT,
    MigrationError,
    Refused,
    lent_to_qemu,
    probe,
    receive,
    send,
    socket_fd,
    watch_link,
)

log = logging.getLogger(__name__)

SAMPLE_SPAN = 0.25  # s between the first and last samples of the guest's RAM (at least)
QUIET_RATE = 5e6  # B/s by the second sample: a quiet guest, no third sample
BUSY_CPU = 0.5  # QEMU's CPU seconds per second while sampled: the guest keeps a CPU busy
FINISH_S = 0.05  # s after QEMU's stream: the commit round trip, the destination resumes
ETA_AFTER = 0.5  # s of stream before xm shows an ETA


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
                     rates: StreamRates, tls: bool = False,
                     credentials: Credentials | None = None) -> None:
    """The source's part (the domain's lock held by the caller): *machine* runs the
    domain of *config*; *rates* is what QEMU reached in this xend's earlier
    migrations, and learns from this one; *credentials* prove this host to the
    destination and say what it must prove back (auth.py)."""
    creds = credentials or Credentials()
    try:
        context = creds.client_tls() if tls else None
    except (OSError, ssl.SSLError) as exc:
        raise MigrationError(f"relocation TLS credentials unusable: {exc}") from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT)
    except ssl.SSLError as exc:
        raise MigrationError(_tls_refusal(exc, host, port)) from None
    except (TimeoutError, OSError) as exc:
        raise MigrationError(f"can't connect: {exc}") from None
    watch_link(writer)
    was_running = await machine.runstate() == "running"
    committed = False
    try:
        async def handshake() -> float:
            greeting = await _hello(reader, tls)  # or why this host refuses us
            await auth.prove_to_destination(reader, writer, creds, greeting,
                                            tls_verified=tls and creds.ca_file is not None)
            await send(writer, {"op": "receive", "version": PROTOCOL_VERSION, "live": live,
                                "config": config, "probe": PROBE_BYTES,
                                "next_vif_devid": next_vif_devid})
            job.phase = "measuring"
            return await probe(reader, writer)

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
            with lent_to_qemu(writer):
                await machine.start_migration("", live, fd=socket_fd(writer), postcopy=postcopy,
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
            reason = await _their_reason(reader) if _ours(exc) else None
            writer.close()
            if reason is not None:  # the destination's word on what went wrong
                raise Refused(reason) from None
            if isinstance(exc, (MigrationError, VmError)):
                raise
            if isinstance(exc, ssl.SSLError):  # TLS 1.3: a refused certificate shows here
                raise MigrationError(_tls_refusal(exc, host, port)) from None
            if isinstance(exc, (OSError, asyncio.TimeoutError)):
                raise MigrationError(f"migration failed: {exc or type(exc).__name__}") from None
            raise
        writer.close()
        raise MigrationError("the destination did not confirm it runs the domain; the "
                             "source copy is kept paused (check the destination)") from None
    writer.close()
    job.total_s = time.monotonic() - job.started


REASON_WAIT = 2.0  # s the source waits for the destination's reason after a failure


class Aborted(MigrationError):
    """The source gave the migration up itself (the destination only sees its end)."""


def _ours(exc: BaseException) -> bool:
    """A failure seen on this side (not the destination's own refusal, not our
    refusal of the destination or our abort, not a cancellation), for which the
    destination may have said why."""
    return isinstance(exc, Exception) and \
        not isinstance(exc, (Refused, Aborted, auth.AuthError))


async def _their_reason(reader: asyncio.StreamReader) -> str | None:
    """After a failure here: the destination's refusal, if it sends one within
    REASON_WAIT s (a stream cut short here is often a refusal there: its QEMU
    failed, its disks could not be opened); None if it says nothing."""
    try:
        async with asyncio.timeout(REASON_WAIT):
            while True:
                await receive(reader, REASON_WAIT)
    except Refused as exc:
        return str(exc)
    except (MigrationError, TimeoutError, OSError, ValueError):
        return None


async def _hello(reader: asyncio.StreamReader, tls: bool) -> dict[str, Any]:
    try:
        return await receive(reader, CONNECT_TIMEOUT)
    except MigrationError as exc:
        # TLS 1.3 checks our certificate after our side of the handshake is done: a
        # destination that refuses it shows as a close before its hello
        if tls and str(exc) == "the other host closed the connection":
            raise MigrationError(
                "the destination closed the TLS connection before its hello: it refused "
                "our certificate (is xend-relocation-server-ssl-cert-file signed by the CA "
                "in the destination's xend-relocation-ca-file?)") from None
        raise


def _tls_refusal(exc: ssl.SSLError, host: str, port: int) -> str:
    """What xm shows when TLS fails: the alert's reason (the destination can send no
    other), and what to check."""
    return (f"TLS with {host}:{port} failed ({exc.reason or exc}): check that both hosts' "
            "certificates (xend-relocation-server-ssl-cert-file) are signed by the CA the "
            "other trusts (xend-relocation-ca-file)")


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
                raise Aborted("migration did not converge; aborted after throttling, "
                              "a larger downtime and post-copy")
            next_escalation = now + 5.0
        await asyncio.sleep(0.1)
