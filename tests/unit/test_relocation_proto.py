"""dom0.migration (wire, source, destination), its pure parts: hosts-allow matching, the JSON-line
control messages (over a local socketpair), and the job ``xm migrate`` polls."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dom0.errors import VmError
from dom0.migration.destination import host_allowed
from dom0.migration.source import MigrationJob
from dom0.migration.wire import (
    MigrationError,
    receive,
    send,
)
from dom0.model import sxp

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
TIMEOUT = 5.0  # a test that hangs fails instead


# ---- hosts-allow -------------------------------------------------------------------


@pytest.mark.parametrize("patterns", ["", " ", "  \t \n"])
def test_empty_allows_everyone(patterns: str) -> None:
    assert host_allowed(patterns, ["198.51.100.7"])
    assert host_allowed(patterns, ["198.51.100.7", "evil.example.com"])
    assert host_allowed(patterns, [])


SPEC_PATTERNS = r"^localhost$ ^localhost\.localdomain$"


@pytest.mark.parametrize("names, allowed", [
    (["localhost"], True),
    (["localhost.localdomain"], True),
    (["127.0.0.1", "localhost"], True),
    (["127.0.0.1", "localhost.localdomain"], True),
    (["127.0.0.1"], False),
    (["localhostX"], False),
    (["localhost.evil.example"], False),
    (["xlocalhost"], False),
    (["localhostXlocaldomain"], False),  # the dot is escaped
    (["localhost.localdomain.evil"], False),
    ([], False),
])
def test_anchored_patterns_from_the_spec(names: list[str], allowed: bool) -> None:
    assert host_allowed(SPEC_PATTERNS, names) is allowed


def test_spec_patterns_as_read_from_xend_config_sxp() -> None:
    # in xend-config.sxp the backslash is doubled; the file's parser undoes that
    text = r"(xend-relocation-hosts-allow '^localhost$ ^localhost\\.localdomain$')"
    [[key, patterns]] = sxp.parse(text)
    assert key == "xend-relocation-hosts-allow"
    assert patterns == SPEC_PATTERNS
    assert host_allowed(patterns, ["localhost.localdomain"])
    assert not host_allowed(patterns, ["localhostXlocaldomain"])


def test_any_pattern_against_any_name() -> None:
    patterns = r"^10\.0\.0\.\d+$ ^.*\.example\.org$"
    assert host_allowed(patterns, ["10.0.0.42"])
    assert host_allowed(patterns, ["192.0.2.1", "host1.example.org"])
    assert host_allowed(patterns, ["host1.example.org", "192.0.2.1"])
    assert not host_allowed(patterns, ["192.0.2.1", "host1.example.com"])
    assert not host_allowed(patterns, ["10.0.0.42x"])


def test_patterns_are_split_on_any_whitespace() -> None:
    patterns = "^a$\t^b$\n  ^c$ "
    for name in "abc":
        assert host_allowed(patterns, [name])
    assert not host_allowed(patterns, ["d"])


def test_empty_names_are_skipped() -> None:
    # the reverse lookup may give nothing; "" must not match an anything-pattern
    assert not host_allowed("^$", ["", ""])
    assert host_allowed("^$ ^192", ["", "192.0.2.1"])


def test_unanchored_pattern_matches_at_the_start_like_xen() -> None:
    # Xen used re.match: a pattern is anchored at the start only
    assert host_allowed("localhost", ["localhost.evil.example"])
    assert host_allowed(r"192\.168\.", ["192.168.1.5"])
    assert not host_allowed("example", ["www.example.org"])


# ---- send() / receive() over a socketpair ----------------------------------------------


async def _pair() -> tuple[Streams, Streams]:
    a, b = socket.socketpair()
    ends = (await asyncio.open_connection(sock=a), await asyncio.open_connection(sock=b))
    return ends


def run_pair(body: Callable[[Streams, Streams], Awaitable[Any]]) -> Any:
    """Run ``body(ours, theirs)`` on a fresh connected pair, closing both after."""

    async def main() -> Any:
        ours, theirs = await _pair()
        try:
            return await asyncio.wait_for(body(ours, theirs), TIMEOUT)
        finally:
            for _, writer in (ours, theirs):
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass

    return asyncio.run(main())


def receive_after(payload: bytes, close: bool = False) -> dict[str, Any]:
    """What receive() makes of the peer sending ``payload`` (then closing)."""

    async def body(ours: Streams, theirs: Streams) -> dict[str, Any]:
        theirs[1].write(payload)
        await theirs[1].drain()
        if close:
            theirs[1].close()
        return await receive(ours[0], TIMEOUT)

    result: dict[str, Any] = run_pair(body)
    return result


MESSAGES: list[dict[str, Any]] = [
    {"status": "hello", "version": 1},
    {"op": "receive", "version": 1, "live": True, "probe": 16 * 1024 * 1024,
     "config": {"name": "guest-é", "memory": 256, "vif": [{"mac": "00:16:3e:00:00:01"}],
                "extra": "console=hvc0\nroot=/dev/xvda1"},
     "next_vif_devid": 2},
    {"status": "running", "domid": 7},
    {"op": "commit"},
    {},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_round_trip(message: dict[str, Any]) -> None:
    async def body(ours: Streams, theirs: Streams) -> dict[str, Any]:
        await send(ours[1], message)
        return await receive(theirs[0], TIMEOUT)

    assert run_pair(body) == message


def test_one_json_object_per_line() -> None:
    async def body(ours: Streams, theirs: Streams) -> list[bytes]:
        for message in MESSAGES:
            await send(ours[1], message)
        return [await theirs[0].readline() for _ in MESSAGES]

    lines = run_pair(body)
    assert [json.loads(line) for line in lines] == MESSAGES
    for line in lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_messages_arrive_in_order_both_ways() -> None:
    async def body(ours: Streams, theirs: Streams) -> list[dict[str, Any]]:
        got = []
        await send(theirs[1], {"status": "hello", "version": 1})
        got.append(await receive(ours[0], TIMEOUT))
        await send(ours[1], {"op": "receive", "version": 1})
        got.append(await receive(theirs[0], TIMEOUT))
        await send(theirs[1], {"status": "probed"})
        await send(theirs[1], {"status": "ready"})
        got.append(await receive(ours[0], TIMEOUT))
        got.append(await receive(ours[0], TIMEOUT))
        return got

    assert [m.get("status", m.get("op")) for m in run_pair(body)] == [
        "hello", "receive", "probed", "ready"]


def test_peer_error_becomes_migration_error() -> None:
    text = "Host 192.0.2.1 is not allowed to migrate here (xend-relocation-hosts-allow)"
    with pytest.raises(MigrationError) as exc:
        receive_after(json.dumps({"status": "error", "message": text}).encode() + b"\n")
    assert str(exc.value) == text
    assert isinstance(exc.value, VmError)


def test_peer_error_sent_with_send() -> None:
    async def body(ours: Streams, theirs: Streams) -> None:
        await send(theirs[1], {"status": "error", "message": "Invalid operation: None"})
        await receive(ours[0], TIMEOUT)

    with pytest.raises(MigrationError, match=r"^Invalid operation: None$"):
        run_pair(body)


def test_peer_error_without_message() -> None:
    with pytest.raises(MigrationError) as exc:
        receive_after(b'{"status": "error"}\n')
    assert str(exc.value) == "the other host refused"


def test_closed_peer() -> None:
    with pytest.raises(MigrationError) as exc:
        receive_after(b"", close=True)
    assert str(exc.value) == "the other host closed the connection"


def test_peer_closes_after_a_message() -> None:
    async def body(ours: Streams, theirs: Streams) -> None:
        await send(theirs[1], {"status": "probed"})
        theirs[1].close()
        assert await receive(ours[0], TIMEOUT) == {"status": "probed"}
        await receive(ours[0], TIMEOUT)

    with pytest.raises(MigrationError, match="closed the connection"):
        run_pair(body)


NOT_OUR_PROTOCOL = "the other host does not speak dom0's relocation protocol"


@pytest.mark.parametrize("payload, close", [
    (b"HTTP/1.1 400 Bad Request\r\n", False),
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", False),
    (b"{not json}\n", False),
    (b"\xff\xfe\x00garbage\n", False),
    (b"\n", False),
    (b'{"status": "hel', True),  # cut off mid-line
])
def test_garbage(payload: bytes, close: bool) -> None:
    with pytest.raises(MigrationError) as exc:
        receive_after(payload, close=close)
    assert str(exc.value) == NOT_OUR_PROTOCOL


# Regression guard: src/dom0/migration/wire.py (receive) calls message.get() on whatever json.loads
# returned; a line that is valid JSON but not an object raises AttributeError
# ("'list' object has no attribute 'get'") instead of MigrationError.
@pytest.mark.parametrize("payload", [b"[1, 2]\n", b'"hello"\n', b"42\n", b"null\n", b"true\n"])
def test_garbage_that_is_json_but_not_an_object(payload: bytes) -> None:
    with pytest.raises(MigrationError) as exc:
        receive_after(payload)
    assert str(exc.value) == NOT_OUR_PROTOCOL


# Regression guard: src/dom0/migration/wire.py (receive): StreamReader.readline() raises ValueError
# ("Separator is found, but chunk is longer than limit") for a line over the 64 KiB
# stream limit; receive() lets it through instead of raising MigrationError, and
# RelocationServer._serve does not catch ValueError either.
def test_garbage_line_longer_than_the_stream_limit() -> None:
    with pytest.raises(MigrationError):
        receive_after(b"x" * (100 * 1024) + b"\n")


# Regression guard: relocation.receive once passed the peer's "message" through unchecked;
# with {"status": "error", "message": null} (or a number) the MigrationError's message
# is not a str, so str(exc) - how xm prints it - raises TypeError
# ("__str__ returned non-string").
@pytest.mark.parametrize("value", [None, 42, ["a"]])
def test_peer_error_with_a_non_string_message(value: Any) -> None:
    payload = json.dumps({"status": "error", "message": value}).encode() + b"\n"
    with pytest.raises(MigrationError) as exc:
        receive_after(payload)
    assert isinstance(str(exc.value), str)


def test_silent_peer_times_out() -> None:
    async def body(ours: Streams, theirs: Streams) -> None:
        await receive(ours[0], timeout=0.05)

    with pytest.raises(TimeoutError):
        run_pair(body)


def test_receive_returns_a_fresh_dict() -> None:
    got = receive_after(b'{"status": "running", "domid": 3}\n')
    assert type(got) is dict
    assert got == {"status": "running", "domid": 3}


# ---- MigrationJob --------------------------------------------------------------------


VIEW_KEYS = {
    "domain", "destination", "live", "phase", "prediction", "transferred", "total",
    "remaining", "eta_s", "events", "done", "error", "downtime_ms", "total_s", "stream_s",
    "new_domid",
}


def test_job_view_keys() -> None:
    view = MigrationJob("guest", "192.0.2.1:8002", True).view()
    assert set(view) == VIEW_KEYS
    assert "started" not in view  # a monotonic clock value means nothing to xm


def test_job_view_defaults() -> None:
    view = MigrationJob("guest", "host2", False).view()
    assert view == {
        "domain": "guest", "destination": "host2", "live": False, "phase": "connecting",
        "prediction": "", "transferred": 0, "total": 0, "remaining": 0, "eta_s": None,
        "events": [], "done": False, "error": None, "downtime_ms": None, "total_s": None,
        "stream_s": None,
        "new_domid": None,
    }


def test_job_view_follows_progress_and_is_json() -> None:
    job = MigrationJob("guest", "host2", True)
    job.phase = "transferring"
    job.transferred, job.total, job.remaining = 100, 1000, 900
    job.eta_s = 4.5
    job.events.append("throttling the guest to 20%")
    job.done, job.new_domid, job.downtime_ms = True, 12, 31.5
    view = job.view()
    assert json.loads(json.dumps(view)) == view
    assert view["phase"] == "transferring"
    assert (view["transferred"], view["total"], view["remaining"]) == (100, 1000, 900)
    assert view["events"] == ["throttling the guest to 20%"]
    assert view["new_domid"] == 12


def test_jobs_do_not_share_events() -> None:
    a, b = MigrationJob("a", "h", True), MigrationJob("b", "h", True)
    a.events.append("x")
    assert b.view()["events"] == []


# ---- a link that goes silent, and what xm is told before the stream ---------------------


def test_watch_link_sets_the_timers_on_a_tcp_connection() -> None:
    from dom0.migration import wire as relocation

    async def main() -> list[int]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        relocation.watch_link(writer)
        sock = writer.get_extra_info("socket")
        got = [sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
               sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
               sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
               sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
               sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)]
        writer.close()
        server.close()
        return got

    got = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert got == [int(relocation.LINK_TIMEOUT * 1000), 1, relocation.KEEPALIVE_IDLE,
                   relocation.KEEPALIVE_INTERVAL, relocation.KEEPALIVE_COUNT]
    # the destination gives up on a silent source within about half a minute
    idle = relocation.KEEPALIVE_IDLE + relocation.KEEPALIVE_INTERVAL * relocation.KEEPALIVE_COUNT
    assert idle <= 30


def test_watch_link_on_a_connection_already_closed_is_quiet() -> None:
    """A destination that refuses our TLS certificate closes at once; watching the
    link then must not fail with an AttributeError or EBADF (the next read reports
    the close with a reason)."""
    from dom0.migration import wire as relocation

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        relocation.watch_link(writer)
        server.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_measurement_describes_what_xm_prints() -> None:
    from dom0.migration.predict import predict
    from dom0.migration.source import Measurement

    m = Measurement(ram=512 << 20, link=1.2e9, dirty=700e6, working_set=64 << 20,
                    nonzero=0.67, busy=True)
    guess = predict(m.ram, m.dirty, 4e8, 0.3, nonzero_share=m.nonzero,
                    working_set=m.working_set)
    text = m.describe(4e8, 0.3, guess)
    assert text.startswith("link 1200 MB/s, QEMU 400 MB/s; guest dirties 700.0 MB/s "
                           "(working set 64 MiB), 67% of its RAM in use; downtime limit "
                           "300 ms; predicted: ")
    idle = Measurement(512 << 20, 1e9, 0.0, None, 0.2, False)
    assert "guest dirties 0.0 MB/s, 20% of its RAM in use" in idle.describe(
        1e9, 0.02, predict(idle.ram, 0, 1e9, 0.02, nonzero_share=0.2))


# ---- the destination's conversation, with a launcher that starts no QEMU ---------------


class _Launcher:
    """The destination's launcher (the state mover's part), over a FakeMachine."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.launched: list[tuple[dict[str, Any], int]] = []
        self.checked: list[dict[str, Any]] = []

    def check(self, config: dict[str, Any]) -> None:
        self.checked.append(config)
        if self.refuse:
            raise VmError(self.refuse)

    def departing(self, uuid: object) -> dict[str, Any] | None:
        return None  # nothing migrates out of this fake host

    async def launch(self, config: dict[str, Any], next_vif_devid: int,
                     receive: Callable[[Any], Awaitable[None]]) -> int:
        from dom0.backends.fake import FakeMachines
        from dom0.store.layout import Layout

        host = FakeMachines()
        machine = host(Layout("/s", "/d", "/r", "/l", "/c").domain("incoming"))
        machine.pid = host.new_pid()
        host.alive.add(machine.pid)
        self.launched.append((config, next_vif_devid))
        await receive(machine)
        assert machine.calls == ["receive_incoming", "wait_incoming"]
        return 42


def converse(launcher: _Launcher,
             source: Callable[[Streams], Awaitable[Any]]) -> Any:
    """Run the relocation server on a local TCP port and *source* as its client."""
    from dom0.migration.destination import RelocationServer

    async def main() -> Any:
        server = RelocationServer(launcher, "127.0.0.1", 0, "")
        await server.start()
        assert server.server is not None
        port = server.server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(source((reader, writer)), TIMEOUT)
            finally:
                writer.close()
        finally:
            await server.stop()

    return asyncio.run(main())


REQUEST = {"op": "receive", "version": 1, "live": True, "config": {"name": "mig"},
           "probe": 1 << 20, "next_vif_devid": 3}


def test_destination_refuses_before_the_probe_and_before_anything_starts() -> None:
    launcher = _Launcher(refuse="Domain 'mig' already exists with ID '5'")

    async def source(ends: Streams) -> str:
        reader, writer = ends
        assert (await receive(reader))["status"] == "hello"
        await send(writer, REQUEST)  # no probe bytes sent: the answer comes first
        with pytest.raises(MigrationError) as refused:
            await receive(reader)
        return str(refused.value)

    assert converse(launcher, source) == "Domain 'mig' already exists with ID '5'"
    assert launcher.launched == []


def test_destination_conversation_to_running() -> None:
    launcher = _Launcher()

    async def source(ends: Streams) -> list[dict[str, Any]]:
        reader, writer = ends
        answers = [await receive(reader)]
        await send(writer, REQUEST)
        writer.write(bytes(1 << 20))
        answers.append(await receive(reader))
        await send(writer, {"op": "start", "postcopy": False})
        answers.append(await receive(reader))
        answers.append(await receive(reader))
        await send(writer, {"op": "commit"})
        answers.append(await receive(reader))
        return answers

    answers = converse(launcher, source)
    assert [a["status"] for a in answers] == ["hello", "probed", "ready", "received", "running"]
    assert answers[0]["version"] == 1 and answers[1]["rate"] > 0
    assert answers[-1]["domid"] == 42
    assert launcher.launched == [({"name": "mig"}, 3)]


# ---- the TLS relay's framing, fed garbage ----------------------------------------------


@pytest.mark.parametrize("payload, why", [
    ((5 << 20).to_bytes(4, "big") + b"x" * 10, "not dom0's relay framing"),
    ((100).to_bytes(4, "big") + b"x" * 10, "ended in the middle"),
    (b"\x00\x00", "ended in the middle"),
])
def test_relay_framing_garbage_says_why(payload: bytes, why: str) -> None:
    from dom0.migration.destination import _relay_in

    async def main() -> str:
        reader = asyncio.StreamReader()
        reader.feed_data(payload)
        reader.feed_eof()
        sink: list[bytes] = []

        class Sink:
            def write(self, data: bytes) -> None:
                sink.append(data)

            async def drain(self) -> None:
                pass

        with pytest.raises(MigrationError) as refused:
            await _relay_in(reader, Sink())  # type: ignore[arg-type]
        return str(refused.value)

    assert why in asyncio.run(main())
