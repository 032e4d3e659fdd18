"""migration/auth.py: the relocation handshake, against the real relocation server
on a local TCP port (its launcher starts no QEMU): the shared key's HMAC proofs
both ways, and every way a peer without the key can try to get past them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_relocation_proto import REQUEST, TIMEOUT, _Launcher

from dom0.daemon import options, service
from dom0.migration import auth
from dom0.migration.auth import (
    DESTINATION_LABEL,
    SOURCE_LABEL,
    AuthError,
    Credentials,
    load_key,
    proof,
)
from dom0.migration.destination import RelocationServer
from dom0.migration.wire import MigrationError, receive, send

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
KEY = b"0123456789abcdef-the-shared-relocation-key"
KEYED = Credentials(key=KEY)


def serve(creds: Credentials, source: Callable[[Streams], Awaitable[Any]],
          launcher: _Launcher | None = None) -> Any:
    """The relocation server with *creds*, and *source* talking to it."""
    launcher = launcher or _Launcher()

    async def main() -> Any:
        server = RelocationServer(launcher, "127.0.0.1", 0, "", credentials=creds)
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


async def refusal(reader: asyncio.StreamReader) -> str:
    """The destination's one-line error reply (it must come, not a silent close)."""
    with pytest.raises(MigrationError) as refused:
        await receive(reader)
    assert "closed the connection" not in str(refused.value)
    return str(refused.value)


def full_migration(creds: Credentials) -> Callable[[Streams], Awaitable[list[str]]]:
    async def source(ends: Streams) -> list[str]:
        reader, writer = ends
        greeting = await receive(reader)
        await auth.prove_to_destination(reader, writer, creds, greeting, tls_verified=False)
        await send(writer, REQUEST)
        writer.write(bytes(REQUEST["probe"]))
        statuses = [greeting["status"], (await receive(reader))["status"]]
        await send(writer, {"op": "start", "postcopy": False})
        statuses += [(await receive(reader))["status"], (await receive(reader))["status"]]
        await send(writer, {"op": "commit"})
        statuses.append((await receive(reader))["status"])
        return statuses
    return source


# ---- the shared key, both ways -------------------------------------------------------


def test_keyed_peers_prove_themselves_both_ways_and_migrate() -> None:
    launcher = _Launcher()
    statuses = serve(KEYED, full_migration(KEYED), launcher)
    assert statuses == ["hello", "probed", "ready", "received", "running"]
    assert len(launcher.launched) == 1


def test_wrong_key_is_refused_with_a_reason_before_the_request() -> None:
    launcher = _Launcher()

    async def source(ends: Streams) -> str:
        reader, writer = ends
        greeting = await receive(reader)
        with pytest.raises(MigrationError) as refused:
            await auth.prove_to_destination(reader, writer, Credentials(key=b"x" * 32),
                                            greeting, tls_verified=False)
        return str(refused.value)

    assert serve(KEYED, source, launcher) == "authentication failed: wrong relocation key"
    assert launcher.launched == [] and launcher.checked == []


def test_a_request_without_proof_is_refused_unread() -> None:
    """Nothing the peer says is trusted before it is authenticated: the request
    (a forged domain) is never parsed, let alone checked or launched."""
    launcher = _Launcher()

    async def source(ends: Streams) -> str:
        reader, writer = ends
        greeting = await receive(reader)
        assert greeting["auth"] == "hmac-sha256" and len(greeting["nonce"]) == 64
        await send(writer, {**REQUEST, "config": {"name": "evil",
                                                  "disks": [{"uname": "file:/etc/shadow",
                                                             "dev": "xvda", "mode": "w"}]}})
        return await refusal(reader)

    assert "sent no proof" in serve(KEYED, source, launcher)
    assert launcher.checked == [] and launcher.launched == []


def test_a_replayed_proof_is_refused() -> None:
    """A proof seen on the wire is for that connection's nonce only."""
    seen: dict[str, str] = {}

    async def honest(ends: Streams) -> None:
        reader, writer = ends
        greeting = await receive(reader)
        ours = auth.new_nonce()
        seen.update(nonce=ours, proof=proof(KEY, SOURCE_LABEL, greeting["nonce"], ours))
        await send(writer, {"op": "auth", **seen})
        assert (await receive(reader))["status"] == "authenticated"

    async def replay(ends: Streams) -> str:
        reader, writer = ends
        await receive(reader)
        await send(writer, {"op": "auth", **seen})
        return await refusal(reader)

    serve(KEYED, honest)
    assert serve(KEYED, replay) == "authentication failed: wrong relocation key"


def test_a_reflected_destination_proof_is_refused() -> None:
    """A destination's proof (its label) offered to a destination proves nothing,
    even over the right nonces: the proof is bound to its direction."""
    async def reflect(ends: Streams) -> str:
        reader, writer = ends
        nonce = (await receive(reader))["nonce"]
        ours = auth.new_nonce()
        await send(writer, {"op": "auth", "nonce": ours,
                            "proof": proof(KEY, DESTINATION_LABEL, nonce, ours)})
        return await refusal(reader)

    assert serve(KEYED, reflect) == "authentication failed: wrong relocation key"


def fake_destination(answer: Callable[[dict[str, Any], str], dict[str, Any]] | None
                     ) -> Callable[[Streams], Awaitable[None]]:
    """A destination that challenges, then answers the source's proof with
    *answer(source's message, our nonce)*, or challenges nothing if None."""
    async def talk(ends: Streams) -> None:
        reader, writer = ends
        nonce = auth.new_nonce()
        if answer is None:
            await send(writer, {"status": "hello", "version": 1})
            return
        await send(writer, {"status": "hello", "version": 1, "auth": "hmac-sha256",
                            "nonce": nonce})
        await send(writer, answer(await receive(reader), nonce))
    return talk


def source_against(destination: Callable[[Streams], Awaitable[None]],
                   creds: Credentials = KEYED) -> str:
    """Run the source's side against *destination*; what it refuses with."""
    async def main() -> str:
        server = await asyncio.start_server(lambda r, w: destination((r, w)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            greeting = await receive(reader)
            with pytest.raises(AuthError) as refused:
                await asyncio.wait_for(auth.prove_to_destination(
                    reader, writer, creds, greeting, tls_verified=False), TIMEOUT)
            return str(refused.value)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_the_source_refuses_its_own_proof_reflected_back() -> None:
    why = source_against(fake_destination(
        lambda msg, nonce: {"status": "authenticated", "proof": msg["proof"]}))
    assert "failed to prove it holds the relocation key" in why


def test_the_source_refuses_a_destination_with_another_key() -> None:
    why = source_against(fake_destination(lambda msg, nonce: {
        "status": "authenticated",
        "proof": proof(b"y" * 32, DESTINATION_LABEL, msg["nonce"], nonce)}))
    assert "failed to prove" in why


def test_the_source_refuses_a_destination_that_asks_nothing() -> None:
    assert "did not authenticate itself" in source_against(fake_destination(None))


def test_the_source_without_a_key_says_what_is_missing() -> None:
    why = source_against(fake_destination(lambda m, n: {}), Credentials())
    assert "requires the shared relocation key" in why


def test_unauthenticated_relocation_is_an_explicit_opt_in_at_the_source() -> None:
    async def main() -> None:
        await auth.prove_to_destination(
            None, None, Credentials(allow_unauthenticated=True),  # type: ignore[arg-type]
            {"status": "hello"}, tls_verified=False)
    asyncio.run(main())


# ---- garbage before authentication ------------------------------------------------------


@pytest.mark.parametrize("payload, why", [
    (b"\x00\xffgarbage\n", "does not speak dom0's relocation protocol"),
    (b"[1, 2]\n", "does not speak"),
    (b'{"op": "auth", "nonce": 5, "proof": "x"}\n', "nonce must be 64"),
    (b'{"op": "auth", "nonce": "' + b"A" * 64 + b'", "proof": "x"}\n', "nonce must be 64"),
    (b'{"op": "auth", "nonce": "' + b"a" * 64 + b'", "proof": 7}\n', "wrong relocation key"),
    (b'{"op": "auth", "nonce": "' + b"a" * 64 + b'", "proof": "\xc3\xa9"}\n',
     "wrong relocation key"),
    (b"x" * (1 << 17) + b"\n", "does not speak"),  # oversized line
])
def test_garbage_before_authentication_gets_a_reason(payload: bytes, why: str) -> None:
    launcher = _Launcher()

    async def source(ends: Streams) -> str:
        reader, writer = ends
        await receive(reader)
        writer.write(payload)
        await writer.drain()
        return await refusal(reader)

    assert why in serve(KEYED, source, launcher)
    assert launcher.checked == []


def test_a_truncated_proof_then_close_leaves_the_server_serving() -> None:
    async def source(ends: Streams) -> list[str]:
        reader, writer = ends
        await receive(reader)
        writer.write(b'{"op": "auth", "nonce": "ab')
        writer.close()
        port = writer.get_extra_info("peername")[1]
        # the server lives on: a keyed source gets through next
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)
        try:
            greeting = await receive(reader2)
            await auth.prove_to_destination(reader2, writer2, KEYED, greeting, False)
            return ["ok"]
        finally:
            writer2.close()

    assert serve(KEYED, source) == ["ok"]


# ---- bad request fields: one line why, never a silent close (item 10) -------------------


@pytest.mark.parametrize("change, why", [
    ({"op": "send"}, "Invalid operation: send"),
    ({"op": None}, "Invalid operation: None"),
    ({"version": "1"}, "unsupported relocation protocol version"),
    ({"config": None}, "carries no domain configuration"),
    ({"config": [1]}, "carries no domain configuration"),
    ({"probe": "lots"}, "probe must be an integer"),
    ({"probe": -1}, "probe must be an integer"),
    ({"probe": 1 << 40}, "probe must be an integer"),
    ({"probe": True}, "probe must be an integer"),
    ({"next_vif_devid": 1.5}, "next_vif_devid must be an integer"),
    ({"live": "yes"}, "live must be true or false"),
])
def test_a_bad_request_field_gets_a_one_line_reason(change: dict[str, Any], why: str) -> None:
    launcher = _Launcher()

    async def source(ends: Streams) -> str:
        reader, writer = ends
        await auth.prove_to_destination(reader, writer, KEYED, await receive(reader), False)
        await send(writer, {**REQUEST, **change})
        return await refusal(reader)

    said = serve(KEYED, source, launcher)
    assert why in said and "\n" not in said
    assert launcher.launched == []


def test_a_missing_request_key_gets_a_reason() -> None:
    async def source(ends: Streams) -> str:
        reader, writer = ends
        await auth.prove_to_destination(reader, writer, KEYED, await receive(reader), False)
        await send(writer, {k: v for k, v in REQUEST.items() if k != "config"})
        return await refusal(reader)

    assert "carries no domain configuration" in serve(KEYED, source)


# ---- the key file, and when a listener may start ------------------------------------------


def key_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "relocation.key"
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def test_key_file_read_and_stripped(tmp_path: Path) -> None:
    assert load_key(key_file(tmp_path, KEY + b"\n")) == KEY


@pytest.mark.parametrize("data, mode, why", [
    (KEY, 0o644, r"readable by others \(mode 0644\); chmod 600"),
    (KEY, 0o640, "readable by others"),
    (b"short\n", 0o600, "must hold 16 to 4096 bytes"),
    (b"k" * 5000, 0o600, "must hold 16 to 4096 bytes"),
])
def test_unusable_key_files_are_refused(tmp_path: Path, data: bytes, mode: int,
                                        why: str) -> None:
    with pytest.raises(AuthError, match=why):
        load_key(key_file(tmp_path, data, mode))


def test_key_file_symlink_and_missing_are_refused(tmp_path: Path) -> None:
    target = key_file(tmp_path, KEY)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.raises(AuthError):
        load_key(str(link))
    with pytest.raises(AuthError, match="No such file"):
        load_key(str(tmp_path / "absent"))
    with pytest.raises(AuthError, match="not a regular file"):
        os.chmod(tmp_path, 0o700)
        load_key(str(tmp_path))


@pytest.mark.parametrize("creds, tls, starts", [
    (Credentials(), False, False),
    (Credentials(), True, False),
    (Credentials(ca_file="/ca.pem"), False, False),  # the CA is only checked over TLS
    (Credentials(ca_file="/ca.pem"), True, True),
    (Credentials(key=KEY), False, True),
    (Credentials(key=KEY), True, True),
    (Credentials(allow_unauthenticated=True), False, True),
])
def test_a_listener_starts_only_when_it_can_authenticate(creds: Credentials, tls: bool,
                                                         starts: bool) -> None:
    assert (creds.listener_refusal(tls) is None) is starts


def write_config(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "xend-config.sxp"
    path.write_text(f"""
(xend-api-socket {tmp_path}/xend.sock)
(xend-run-path {tmp_path}/run)
(xend-log-path {tmp_path}/log)
(xend-state-path {tmp_path}/state)
(xend-domains-path {tmp_path}/domains)
(xend-dump-path {tmp_path}/dump)
(qemu-accel tcg)
(xend-relocation-server yes)
(xend-relocation-port 0)
{extra}
""")
    return str(path)


def built_relocation(tmp_path: Path, extra: str) -> list[RelocationServer]:
    async def scenario() -> list[RelocationServer]:
        xend = await service.build(options.load(write_config(tmp_path, extra)))
        xend.store.close()
        return xend.relocation

    return asyncio.run(scenario())


def test_no_auth_configured_the_listener_authenticates_with_xends_own_key(
        tmp_path: Path) -> None:
    # issue 13: nothing configured but (xend-relocation-server yes): xend's own key
    [server] = built_relocation(tmp_path, "")
    own = tmp_path / "state" / "relocation.key"
    assert server.credentials.own_key_file == str(own)
    assert server.credentials.key == own.read_bytes().strip()
    assert not server.credentials.allow_unauthenticated


def test_with_only_a_ca_the_plain_port_still_starts_no_listener(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a site that trusts certificates gets no key it did not ask for (its TLS peers
    # would be challenged for one)
    with caplog.at_level(logging.ERROR):
        assert built_relocation(tmp_path, "(xend-relocation-ca-file /nonexistent/ca.pem)") == []
    assert "no peer authentication is configured" in caplog.text
    assert "(xend-relocation-auth none)" in caplog.text
    assert not (tmp_path / "state" / "relocation.key").exists()


def test_a_world_readable_key_file_starts_no_listener(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = key_file(tmp_path, KEY, 0o644)
    with caplog.at_level(logging.ERROR):
        assert built_relocation(tmp_path, f"(xend-relocation-key-file {path})") == []
    assert "chmod 600" in caplog.text


def test_explicit_none_starts_an_unauthenticated_listener(tmp_path: Path) -> None:
    [server] = built_relocation(tmp_path, "(xend-relocation-auth none)")
    assert server.credentials.allow_unauthenticated and server.credentials.key is None


def test_keyed_listener_and_the_source_share_the_credentials(tmp_path: Path) -> None:
    path = key_file(tmp_path, KEY)

    async def scenario() -> None:
        xend = await service.build(options.load(write_config(
            tmp_path, f"(xend-relocation-key-file {path})")))
        xend.store.close()
        [server] = xend.relocation
        assert server.credentials.key == KEY
        assert xend.manager.mover.relocation_credentials is server.credentials

    asyncio.run(scenario())


def test_defaults_are_localhost_only_as_xen_shipped() -> None:
    from dom0.migration.destination import host_allowed

    opts = options.XendOptions()
    assert opts.xend_relocation_address == "localhost"
    allow = opts.xend_relocation_hosts_allow
    for name in ("localhost", "localhost.localdomain", "127.0.0.1", "::1"):
        assert host_allowed(allow, [name])
    for name in ("10.0.0.1", "127.0.0.10", "localhost.evil", "evil-localhost"):
        assert not host_allowed(allow, [name])
    assert opts.xend_relocation_auth == "required"


def test_auth_option_takes_only_required_or_none(tmp_path: Path) -> None:
    with pytest.raises(options.OptionsError, match="xend-relocation-auth"):
        options.load(write_config(tmp_path, "(xend-relocation-auth off)"))


def test_message_json_shape_of_the_challenge() -> None:
    greeting, nonce = auth.hello(KEYED)
    assert json.loads(json.dumps(greeting)) == {"status": "hello", "version": 1,
                                                "auth": "hmac-sha256", "nonce": nonce}
    assert auth.hello(Credentials()) == ({"status": "hello", "version": 1}, None)


# ---- property: nothing a peer without the key sends gets it past the challenge ---------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=80),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
ANSWERS = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    st.dictionaries(st.sampled_from(["op", "nonce", "proof", "version", "config"]), JSON,
                    max_size=4).map(lambda d: json.dumps(d).encode() + b"\n"),
    st.builds(lambda n, p: json.dumps({"op": "auth", "nonce": n, "proof": p}).encode() + b"\n",
              st.text("0123456789abcdef", min_size=64, max_size=64),
              st.text("0123456789abcdef", min_size=64, max_size=64)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANSWERS)
def test_no_answer_without_the_key_gets_past_the_challenge(answer: bytes) -> None:
    launcher = _Launcher()

    async def source(ends: Streams) -> str:
        reader, writer = ends
        await receive(reader)
        writer.write(answer)
        await writer.drain()
        return await refusal(reader)

    said = serve(KEYED, source, launcher)
    assert said and "\n" not in said
    assert launcher.checked == [] and launcher.launched == []
