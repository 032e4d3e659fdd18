"""Live migration between two "hosts": two xend instances in two network
namespaces joined by a veth pair, each with its own state and sockets."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from conftest import BIN, GUEST_DIR, Host, keyed, veth
from test_storage import make_ext4

TICKER = ("(i=0; while true; do echo tick-$i; i=$((i+1)); usleep 100000; done "
          "> /dev/ttyS0 2>&1 &)")


@pytest.fixture
def two_hosts(make_host):  # type: ignore[no-untyped-def]
    def build(allow: str = r"^10\.99\.0\.1$", extra: str = "") -> tuple[Host, Host]:
        # both hosts hold the shared relocation key; the destination lets incoming
        # domains use the guest image's directory (their kernel and initrd)
        a = keyed(make_host(start=False, netns=True))
        b = keyed(make_host("(xend-relocation-server yes)\n(xend-relocation-port 8002)\n"
                            "(xend-relocation-address 10.99.0.2)\n"
                            f"(xend-relocation-hosts-allow '{allow}')\n"
                            f"(xend-relocation-storage-roots {GUEST_DIR})\n{extra}",
                            start=False, netns=True))
        veth(a.netns, "mig0", "10.99.0.1/24", b.netns, "mig1", "10.99.0.2/24")
        a.xend("start")
        b.xend("start")
        return a, b
    return build


def guest_uptime(con) -> float:  # type: ignore[no-untyped-def]
    """/proc/uptime, picked out from between the ticker's lines."""
    out = con.run("cut -d' ' -f1 /proc/uptime")
    return float(re.findall(r"^(\d+\.\d+)\s*$", out, re.M)[-1])


def last_tick(text: str) -> int:
    ticks = re.findall(r"tick-(\d+)", text)
    return int(ticks[-1]) if ticks else -1


def next_tick(con) -> int:  # type: ignore[no-untyped-def]
    """The number of the next whole tick line the console shows."""
    return last_tick(con.read_until(b"tick-", 10).decode() + con.read_until(b"\n", 5).decode())


def test_live_migration_keeps_the_counter_counting(two_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = two_hosts()
    before = a.create("ctr", memory=128)
    with a.console("ctr") as con:
        con.run(TICKER)
        uptime_before = guest_uptime(con)
        time.sleep(1)
        seen_on_a = last_tick(con.read_until(b"tick-", 5).decode() + con.run("true"))
    out = a.xm("migrate", "--live", "ctr", "10.99.0.2", timeout=300).stdout
    assert "predicted:" in out
    m = re.search(r"Migrated ctr to 10\.99\.0\.2: total ([\d.]+) s, downtime (\d+) ms", out)
    assert m, out
    print(f"\nlive migration: total {m.group(1)} s, downtime {m.group(2)} ms (QEMU's figure)")
    assert a.xm("domid", "ctr", check=False).returncode == 3  # gone from the source
    moved = b.info("ctr")
    assert moved["uuid"] == before["uuid"] and moved["state"] in ("r-----", "-b----")
    with b.console("ctr") as con:
        time.sleep(1)
        text = con.read_until(b"tick-", 10).decode()
        text += con.read_until(b"\n", 10).decode()
        assert last_tick(text) > seen_on_a  # counting on, not restarted
        assert guest_uptime(con) > uptime_before


def start_slow_migration(a: Host) -> subprocess.Popen[str]:
    """``xm migrate -l ctr`` in the background, over a slow link (5 MB/s) with 48 MiB
    of incompressible guest memory: several seconds of stream to interrupt."""
    shape_link(a, "40mbit")
    a.create("ctr", memory=160)
    with a.console("ctr") as con:
        con.run("dd if=/dev/urandom of=/run/fill bs=1M count=48 2>/dev/null", timeout=120)
        con.run(TICKER)
    return subprocess.Popen([str(BIN / "xm"), "migrate", "-l", "ctr", "10.99.0.2"],
                            env=a.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_destination_killed_mid_migration_leaves_the_source_running(two_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = two_hosts()
    proc = start_slow_migration(a)
    time.sleep(4)
    assert proc.poll() is None, proc.communicate()
    b.kill9()
    subprocess.run(["pkill", "-9", "-f", str(b.dir)], capture_output=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.startswith("Error: "), (out, err)
    info = a.info("ctr")
    assert info["state"] in ("r-----", "-b----")
    with a.console("ctr") as con:
        first = next_tick(con)
        time.sleep(1)
        assert next_tick(con) > first  # the counter still counts on the source


def test_a_network_cut_mid_stream_leaves_the_source_running(two_hosts) -> None:  # type: ignore[no-untyped-def]
    """The link goes down in the middle of the stream: the source notices (TCP's
    user timeout), resumes its guest and counts on; the destination notices too
    (keepalive) and removes its half-received domain."""
    a, b = two_hosts()
    proc = start_slow_migration(a)
    b.wait_for(lambda: b.xm("domid", "ctr", check=False).returncode == 0, 30,
               "the destination to receive")
    time.sleep(2)
    # silently, as a cable cut further along: every packet dropped, links still up
    for chain, way in (("INPUT", "-s"), ("OUTPUT", "-d")):
        a.ns_run("iptables", "-A", chain, way, "10.99.0.2", "-j", "DROP")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.startswith("Error: "), (out, err)
    assert a.info("ctr")["state"] in ("r-----", "-b----")
    with a.console("ctr") as con:
        first = next_tick(con)
        time.sleep(1)
        assert next_tick(con) > first
    b.wait_for(lambda: b.xm("domid", "ctr", check=False).returncode == 3, 60,
               "the destination to remove the domain")


def test_hosts_allow_refuses_a_host_it_does_not_match(two_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = two_hosts(allow=r"^10\.99\.0\.250$ ^trusted\.example$")
    before = a.create("ctr")
    r = a.xm("migrate", "ctr", "10.99.0.2", check=False)
    assert r.returncode == 1
    assert "Host 10.99.0.1 is not allowed to migrate here" in r.stderr
    assert a.info("ctr")["domid"] == before["domid"]
    assert b.xm("domid", "ctr", check=False).returncode == 3
    assert "Rejected connection from 10.99.0.1" in (b.dir / "xend.log").read_text()


def test_a_disk_the_destination_cannot_reach_is_refused_cleanly(two_hosts) -> None:  # type: ignore[no-untyped-def]
    """An NBD export that only the source's namespace can reach: the destination's
    QEMU cannot open it, the destination refuses, the source runs on."""
    a, b = two_hosts()
    img = make_ext4(a.dir / "local.img", files={"only": "here\n"})
    server = subprocess.Popen(["ip", "netns", "exec", a.netns, "qemu-nbd", "--persistent",
                               "--format=raw", "--bind=127.0.0.1", "--port=10809", str(img)])
    try:
        a.wait_for(lambda: "10809" in a.ns_run("ss", "-ltn").stdout, 10, "qemu-nbd")
        before = a.create("nb", disk=["nbd:127.0.0.1:10809,xvdb,w"])
        r = a.xm("migrate", "-l", "nb", "10.99.0.2", check=False)
        assert r.returncode == 1 and "Failed to connect to '127.0.0.1:10809'" in r.stderr
        assert a.info("nb")["domid"] == before["domid"]
        assert a.info("nb")["state"] in ("r-----", "-b----")
        assert b.xm("domid", "nb", check=False).returncode == 3
        with a.console("nb") as con:
            assert con.run("mount /dev/xvdb /mnt && cat /mnt/only").strip() == "here"
    finally:
        a.xm("destroy", "nb", check=False)
        server.kill()
        server.wait()


def tls_hosts(two_hosts, tmp_path) -> tuple[Host, Host]:  # type: ignore[no-untyped-def]
    """Two hosts whose destination also runs the SSL relocation server (8003)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=dom0-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return two_hosts(extra="(xend-relocation-ssl-server yes)\n(xend-relocation-ssl-port 8003)\n"
                           f"(xend-relocation-server-ssl-key-file {key})\n"
                           f"(xend-relocation-server-ssl-cert-file {cert})")  # type: ignore[no-any-return]


def test_ssl_relocation_server(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = tls_hosts(two_hosts, tmp_path)
    a.create("sec", memory=128)
    with a.console("sec") as con:
        con.run("echo over-tls > /run/mark")
    out = a.xm("migrate", "--live", "--ssl", "sec", "10.99.0.2", timeout=300).stdout
    assert "Migrated sec to 10.99.0.2" in out, out
    with b.console("sec") as con:
        assert con.run("cat /run/mark").strip() == "over-tls"
    # the plain port is a different server: a TLS client gets no answer there
    r = b.xm("migrate", "-s", "-p", "8002", "sec", "10.99.0.1", check=False)
    assert r.returncode == 1


# a guest that dirties memory far faster than a 10 MB/s link carries it: a loop that
# keeps rewriting 32 MiB of a tmpfs with new random data (~50 MB/s under TCG), so
# that every round leaves more than 2 s of sending (the largest downtime limit)
FILL = ("mkdir -p /run/f && mount -t tmpfs -o size=48m tmpfs /run/f && "
        "dd if=/dev/urandom of=/run/f/static bs=1M count=4 2>/dev/null && "
        "md5sum /run/f/static")
WRITER = ("(i=0; while true; do dd if=/dev/urandom of=/run/f/w bs=1M count=32 conv=notrunc "
          "2>/dev/null; i=$((i+1)); echo $i > /run/f/n; done >/dev/null 2>&1 &)")


def shape_link(host: Host, rate: str = "80mbit") -> None:
    host.ns_run("tc", "qdisc", "add", "dev", "mig0", "root", "tbf", "rate", rate,
                "burst", "64k", "latency", "100ms")


def start_writing_guest(host: Host, name: str) -> str:
    host.create(name, memory=128)
    with host.console(name) as con:
        con.run(FILL, timeout=120)
        digest = static_digest(con)
        con.run(WRITER)
        con.run(TICKER)
        assert writer_passes(con, wait=True) > 0
    return digest


def static_digest(con) -> str:  # type: ignore[no-untyped-def]
    """md5sum of the data that no one writes, picked out from between ticks."""
    m = re.search(r"\b([0-9a-f]{32})\s+/run/f/static", con.run("md5sum /run/f/static"))
    assert m
    return m.group(1)


def writer_passes(con, wait: bool = False) -> int:  # type: ignore[no-untyped-def]
    """How many times the writer has rewritten its 32 MiB (waits for the first)."""
    deadline = time.monotonic() + 30
    while True:
        passes = re.findall(r"^(\d+)\s*$", con.run("cat /run/f/n 2>/dev/null"), re.M)
        if passes or not wait or time.monotonic() > deadline:
            return int(passes[-1]) if passes else 0
        time.sleep(0.5)


def test_a_guest_that_does_not_converge_escalates_to_post_copy(two_hosts) -> None:  # type: ignore[no-untyped-def]
    """Predicted not to converge; throttling and a 2 s downtime limit do not help
    on a 10 MB/s link, so post-copy finishes it: the guest runs on the destination
    with its memory intact, its writer and counter going on."""
    a, b = two_hosts()
    shape_link(a)
    digest = start_writing_guest(a, "hot")
    out = a.xm("migrate", "--live", "hot", "10.99.0.2", timeout=300).stdout
    assert "will not converge" in out, out
    steps = re.findall(r"^not converging: (.*)$", out, re.M)
    assert steps == ["throttling the guest (auto-converge)", "raising the downtime limit to 2 s",
                     "switching to post-copy"], out
    assert re.search(r"^Migrated hot to 10\.99\.0\.2: total [\d.]+ s", out, re.M), out
    assert a.xm("domid", "hot", check=False).returncode == 3
    with b.console("hot") as con:
        assert static_digest(con) == digest
        before = writer_passes(con)
        first = next_tick(con)
        time.sleep(1.5)
        assert writer_passes(con) > before
        assert next_tick(con) > first


def test_without_post_copy_abort_is_the_last_resort(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Over TLS there is no post-copy (it needs QEMU's return path): after the
    throttle and the larger downtime the migration is aborted, the destination
    cleans up and the guest goes on running on the source, unchanged.  (5 MB/s:
    the first round alone outlasts the policy's 18 s, throttled or not.)"""
    a, b = tls_hosts(two_hosts, tmp_path)
    shape_link(a, "40mbit")
    digest = start_writing_guest(a, "hot")
    domid = a.info("hot")["domid"]
    r = a.xm("migrate", "--live", "--ssl", "hot", "10.99.0.2", check=False, timeout=300)
    steps = re.findall(r"^not converging: (.*)$", r.stdout, re.M)
    assert steps == ["throttling the guest (auto-converge)", "raising the downtime limit to 2 s",
                     "post-copy was not prepared for this migration", "aborting"], r.stdout
    assert r.returncode == 1 and r.stderr.startswith("Error: migration did not converge"), r
    assert a.info("hot")["domid"] == domid
    assert a.info("hot")["state"] in ("r-----", "-b----")
    b.wait_for(lambda: b.xm("domid", "hot", check=False).returncode == 3, 10,
               "the destination to clean up")
    with a.console("hot") as con:
        assert static_digest(con) == digest
        before = writer_passes(con)
        time.sleep(1.5)
        assert writer_passes(con) > before


def test_xendomains_stop_migrates_every_domain(two_hosts) -> None:  # type: ignore[no-untyped-def]
    """XENDOMAINS_MIGRATE: at stop each domain moves to the other host, live, with
    its memory; nothing is saved and nothing is left on this host."""
    a, b = two_hosts()
    save = a.dir / "save"
    sysconfig = a.dir / "xendomains"
    sysconfig.write_text(f'XENDOMAINS_MIGRATE="-l 10.99.0.2"\nXENDOMAINS_SAVE="{save}"\n'
                         f"XENDOMAINS_AUTO={a.dir}/auto\nXENDOMAINS_LOCKFILE={a.dir}/lock\n")
    uuids = {}
    for name in ("m1", "m2"):
        uuids[name] = a.create(name, memory=128)["uuid"]
        with a.console(name) as con:
            con.run(f"echo moved-{name} > /run/mark")
    r = a.ns_run("env", f"XENDOMAINS_CONFIG={sysconfig}", str(BIN / "xendomains"), "stop",
                 timeout=300)
    assert " m1(migr) m2(migr) [done]" in r.stdout, r.stdout
    assert [d["name"] for d in a.client().call("domain.list")] == ["Domain-0"]
    assert not save.exists() or not list(save.iterdir())
    for name in ("m1", "m2"):
        assert b.info(name)["uuid"] == uuids[name]
        with b.console(name) as con:
            assert con.run("cat /run/mark").strip() == f"moved-{name}"
