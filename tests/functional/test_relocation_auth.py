"""Authenticated relocation between two namespace hosts (issue 9, item 1): mutual
TLS with certificates from a throwaway CA, and the shared key; a peer without the
key, with the wrong key, or with a certificate from another CA is refused while
the source's guest runs on; and a forged request naming /etc/shadow is refused
before the destination starts anything."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    GUEST_DIR,
    RELOCATION_KEY,
    Host,
    add_config,
    keyed,
    make_ca,
    make_cert,
    veth,
    with_certificate,
)

Setup = Callable[[Host], Host]
DESTINATION = ("(xend-relocation-server yes)\n(xend-relocation-port 8002)\n"
               "(xend-relocation-ssl-server yes)\n(xend-relocation-ssl-port 8003)\n"
               "(xend-relocation-address 10.99.0.2)\n"
               "(xend-relocation-hosts-allow '^10\\.99\\.0\\.1$')\n"
               f"(xend-relocation-storage-roots {GUEST_DIR})\n")


@pytest.fixture
def pair(make_host):  # type: ignore[no-untyped-def]
    """Source a and destination b in two namespaces, each set up before it starts."""
    def build(source: Setup, destination: Setup) -> tuple[Host, Host]:
        a = source(make_host(start=False, netns=True))
        b = destination(make_host(DESTINATION, start=False, netns=True))
        veth(a.netns, "mig0", "10.99.0.1/24", b.netns, "mig1", "10.99.0.2/24")
        a.xend("start")
        b.xend("start")
        return a, b
    return build


def still_runs_on_the_source(a: Host, b: Host, name: str, domid: int) -> None:
    assert a.info(name)["domid"] == domid
    assert a.info(name)["state"] in ("r-----", "-b----")
    assert b.xm("domid", name, check=False).returncode == 3


def test_mutual_tls_migration_with_certificates(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = make_ca(tmp_path, "site")
    a, b = pair(lambda h: with_certificate(h, ca[0], make_cert(tmp_path, ca, "host-a")),
                lambda h: with_certificate(h, ca[0], make_cert(tmp_path, ca, "host-b")))
    a.create("sec", memory=128)
    with a.console("sec") as con:
        con.run("echo over-mutual-tls > /run/mark")
    out = a.xm("migrate", "--live", "--ssl", "sec", "10.99.0.2", timeout=300).stdout
    assert "Migrated sec to 10.99.0.2" in out, out
    with b.console("sec") as con:
        assert con.run("cat /run/mark").strip() == "over-mutual-tls"
    # without a shared key the plain port could not tell its peers apart: not started
    log = (b.dir / "xend.log").read_text()
    assert "relocation server on the plain port not started: no peer authentication" in log


def test_a_certificate_from_another_ca_is_refused(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca, rogue = make_ca(tmp_path, "site"), make_ca(tmp_path, "rogue")
    a, b = pair(lambda h: with_certificate(h, ca[0], make_cert(tmp_path, rogue, "intruder")),
                lambda h: with_certificate(h, ca[0], make_cert(tmp_path, ca, "host-b")))
    domid = a.create("ctr")["domid"]
    r = a.xm("migrate", "--ssl", "ctr", "10.99.0.2", check=False)
    assert r.returncode == 1, r
    assert "it refused our certificate" in r.stderr, r.stderr
    still_runs_on_the_source(a, b, "ctr", domid)


def test_shared_key_migration_and_a_wrongly_keyed_peer(pair) -> None:  # type: ignore[no-untyped-def]
    """The shared key moves a domain; the same source with another key is refused
    with the destination's reason, and its guest runs on."""
    a, b = pair(lambda h: keyed(h, "not-the-" + RELOCATION_KEY), keyed)
    domid = a.create("ctr")["domid"]
    r = a.xm("migrate", "ctr", "10.99.0.2", check=False)
    assert r.returncode == 1, r
    assert "Error: authentication failed: wrong relocation key" in r.stderr, r.stderr
    still_runs_on_the_source(a, b, "ctr", domid)
    assert "Rejected connection from 10.99.0.1: authentication failed" in \
        (b.dir / "xend.log").read_text()


def test_an_unauthenticated_peer_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    """A source that opted into unauthenticated relocation cannot push to a keyed
    destination: it has nothing to answer the challenge with."""
    a, b = pair(lambda h: add_config(h, "(xend-relocation-auth none)"), keyed)
    domid = a.create("ctr")["domid"]
    r = a.xm("migrate", "ctr", "10.99.0.2", check=False)
    assert r.returncode == 1
    assert "requires the shared relocation key" in r.stderr, r.stderr
    still_runs_on_the_source(a, b, "ctr", domid)


FORGER = """
import asyncio, json, sys
from dom0.migration import auth
from dom0.migration.auth import Credentials
from dom0.migration.wire import MigrationError, receive, send

async def main(key, config):
    reader, writer = await asyncio.open_connection("10.99.0.2", 8002)
    greeting = await receive(reader)
    try:
        if key:
            await auth.prove_to_destination(reader, writer, Credentials(key=key.encode()),
                                            greeting, tls_verified=False)
        await send(writer, {"op": "receive", "version": 1, "live": False, "config": config,
                            "probe": 0, "next_vif_devid": 0})
        print(json.dumps(await receive(reader)))
    except MigrationError as exc:
        print("refused:", exc)

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


def test_the_etc_shadow_forgery_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    """The forged handshake of issue 9 (a guest whose disk is /etc/shadow), from an
    allowed host: without the key it is refused unread; with the key the storage
    policy refuses it before QEMU starts."""
    a, b = pair(lambda h: h, keyed)
    config = {"name": "forged", "kernel": str(GUEST_DIR / "vmlinuz"),
              "disks": [{"uname": "file:/etc/shadow", "dev": "xvda", "mode": "r",
                         "backend": None}]}

    def forge(key: str) -> str:
        return a.ns_run(sys.executable, "-c", FORGER, key, json.dumps(config)).stdout.strip()

    assert "refused: authentication failed" in forge("")
    said = forge(RELOCATION_KEY)
    assert said.startswith("refused: incoming domain: disk file:/etc/shadow: /etc/shadow is "
                           "outside this host's relocation storage roots"), said
    assert b.xm("domid", "forged", check=False).returncode == 3
    qemus = subprocess.run(["pgrep", "-f", f"{b.dir}.*qemu|qemu.*{b.dir}"],
                           capture_output=True, text=True).stdout
    assert qemus == ""


GARBAGE_STREAM = """
import asyncio, json, sys
from dom0.migration import auth
from dom0.migration.auth import Credentials
from dom0.migration.wire import MigrationError, receive, send

async def main(key, config):
    reader, writer = await asyncio.open_connection("10.99.0.2", 8002)
    await auth.prove_to_destination(reader, writer, Credentials(key=key.encode()),
                                    await receive(reader), tls_verified=False)
    await send(writer, {"op": "receive", "version": 1, "live": False, "config": config,
                        "probe": 0, "next_vif_devid": 0})
    try:
        await receive(reader)  # probed
        await send(writer, {"op": "start", "postcopy": False})
        await receive(reader)  # ready: QEMU reads what follows
        writer.write(b"this is not a QEMU migration stream" * 1000)
        await writer.drain()
        print(json.dumps(await receive(reader, 60)))
    except MigrationError as exc:
        print("refused:", exc)

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


def test_a_garbage_migration_stream_says_why(pair) -> None:  # type: ignore[no-untyped-def]
    """A keyed peer that sends garbage where QEMU's stream belongs gets a cause it
    can act on (not "QMP connection closed"), and nothing is left on the destination."""
    a, b = pair(lambda h: h, keyed)
    config = {"name": "junk", "kernel": str(GUEST_DIR / "vmlinuz"),
              "ramdisk": str(GUEST_DIR / "initrd.img"), "memory": 96}
    said = a.ns_run(sys.executable, "-c", GARBAGE_STREAM, RELOCATION_KEY,
                    json.dumps(config)).stdout.strip()
    assert said.startswith("refused: the destination's QEMU could not load the migration "
                           "stream"), said
    b.wait_for(lambda: b.xm("domid", "junk", check=False).returncode == 3, 20,
               "the destination to clean up")
