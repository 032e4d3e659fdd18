"""xm top and the metrics exporter on a real guest: the figures agree with what
the host's /proc and the guest itself count over the same interval.

One host (its own network namespace, a bridge, the exporter on) and one guest with
a vif and a disk serve the whole module: booting a guest is the slow part."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Host

from dom0.cli import topformat

GUEST = "topguest"
BRIDGE_IP = "10.70.0.1"
GUEST_IP = "10.70.0.2"


@pytest.fixture(scope="module")
def top_host() -> Iterator[Host]:
    host = Host("(network-script 'network-bridge bridge=xenbr0')\n(vif-script vif-bridge)\n"
                "(xend-metrics-server yes)\n(xend-metrics-address 0.0.0.0)\n", netns=True)
    try:
        host.start()
        host.ns_run("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "xenbr0")
        img = host.dir / "data.img"
        with open(img, "wb") as f:
            f.write(os.urandom(1 << 20) * 8)
        host.create(GUEST, vif=["bridge=xenbr0"], ip=GUEST_IP, netmask="255.255.255.0",
                    disk=[f"file:{img},xvda,r"])
        host.console(GUEST).close()
        yield host
    finally:
        host.teardown()


def top_rows(host: Host, *args: str) -> list[dict[str, dict[str, str]]]:
    """Each iteration of ``xm top -b``: domain name -> {column: cell}."""
    out = host.xm("top", "-b", *args).stdout.splitlines()
    frames = []
    for i, line in enumerate(out):
        if line.startswith("xentop - "):
            assert out[i + 3] == topformat.column_header()
            frames.append({})
        elif frames and not line.startswith(("xentop", "Mem:", "      NAME")) and \
                "domains:" not in line:
            cells = line.replace("no limit", "no-limit").split()
            frames[-1][cells[0]] = dict(zip(topformat.HEADERS, cells, strict=True))
    return frames


def vcpu_seconds(pid: int) -> float:
    """The guest's vCPU threads' utime+stime, as /proc has them (QEMU names them
    ``CPU n/TCG``)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if not f.read().startswith("CPU "):
                continue
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def test_cpu_figures_agree_with_the_vcpu_threads_in_proc(top_host: Host) -> None:
    pid = top_host.info(GUEST)["pid"]
    with top_host.console(GUEST) as con:
        con.run("(while :; do :; done) & echo $! > /tmp/busy")
        try:
            time.sleep(1)
            t0, cpu0 = time.monotonic(), vcpu_seconds(pid)
            frames = top_rows(top_host, "-i", "2", "-d", "1")
            t1, cpu1 = time.monotonic(), vcpu_seconds(pid)
        finally:
            con.run("kill $(cat /tmp/busy)")
    assert len(frames) == 2
    first, second = frames[0][GUEST], frames[1][GUEST]
    assert first["CPU(%)"] == "0.0"  # xentop's first screen has no interval yet
    assert int(cpu0) <= int(second["CPU(sec)"]) <= int(cpu1)
    rate = (cpu1 - cpu0) / (t1 - t0) * 100
    assert rate > 20, f"the guest's busy loop got only {rate:.0f}% of a CPU"
    assert abs(float(second["CPU(%)"]) - rate) < 25, (second, rate)
    # running; a TCG vCPU thread may be caught waiting for QEMU's lock: then blocked
    assert second["STATE"] in ("-----r", "--b---") and second["VCPUS"] == "1"
    assert second["NETS"] == "1" and second["VBDS"] == "1"
    assert frames[1]["Domain-0"]["MAXMEM(k)"] == "no-limit"


def test_network_counters_grow_with_the_guests_pings(top_host: Host) -> None:
    domid = top_host.info(GUEST)["domid"]
    stats = f"/sys/class/net/vif{domid}.0/statistics"

    def tap(counter: str) -> int:
        return int(top_host.ns_run("cat", f"{stats}/{counter}").stdout)

    before = top_rows(top_host, "-i", "1")[0][GUEST]
    with top_host.console(GUEST) as con:
        out = con.run(f"ping -c 20 -i 0.2 -s 1000 {BRIDGE_IP}", timeout=60)
    assert "20 packets received" in out, out
    low_tx, low_rx = tap("rx_bytes"), tap("tx_bytes")
    after = top_rows(top_host, "-i", "1")[0][GUEST]
    high_tx, high_rx = tap("rx_bytes"), tap("tx_bytes")
    # 20 x 1028 bytes of ICMP each way, at least
    assert int(after["NETTX(k)"]) - int(before["NETTX(k)"]) >= 20
    assert int(after["NETRX(k)"]) - int(before["NETRX(k)"]) >= 20
    # the guest's transmit is what its tap received, and the other way round
    assert low_tx // 1024 <= int(after["NETTX(k)"]) <= high_tx // 1024
    assert low_rx // 1024 <= int(after["NETRX(k)"]) <= high_rx // 1024


def test_disk_reads_counted_by_qemu_and_by_the_guest(top_host: Host) -> None:
    with top_host.console(GUEST) as con:
        guest_before = int(con.run("cat /sys/block/vda/stat").split()[0])
        before = top_rows(top_host, "-i", "1")[0][GUEST]
        con.run("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=64k")
        after = top_rows(top_host, "-i", "1")[0][GUEST]
        guest_after = int(con.run("cat /sys/block/vda/stat").split()[0])
    grew = int(after["VBD_RD"]) - int(before["VBD_RD"])
    # QEMU may merge the guest's requests, never split them
    assert 0 < grew <= guest_after - guest_before, (grew, guest_before, guest_after)
    assert after["VBD_WR"] == before["VBD_WR"]  # a read-only disk


def test_full_screen_view_shows_the_real_guest(top_host: Host) -> None:
    from textual.widgets import DataTable

    from dom0.cli.commands.top import fetch
    from dom0.cli.top_screen import TopApp

    client = top_host.client()

    async def scenario() -> list[Any]:
        app = TopApp(lambda: fetch(client), delay=60)
        async with app.run_test(size=(200, 30)) as pilot:
            await pilot.pause()
            table = app.query_one(DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            await pilot.press("q")
        return rows

    rows = asyncio.run(scenario())
    names = [r[0] for r in rows]
    assert names == ["Domain-0", GUEST]
    assert rows[1][topformat.HEADERS.index("VBDS")] == "1"


def scrape(host: Host, address: str, port: int = 9101) -> tuple[int, str]:
    """GET /metrics from inside the host's network namespace: (status, body); status
    0 when nothing listens."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        f"try:\n  r = urllib.request.urlopen('http://{address}:{port}/metrics', timeout=20)\n"
        "  print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n  print(e.code)\n"
        "except OSError:\n  print(0)\n")
    out = host.ns_run(sys.executable, "-c", code).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def metric(body: str, family: str, /, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in body.splitlines():
        if line.startswith(family + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{family} {labels} not in the scrape:\n{body}")


def test_metrics_scrape_counts_up_and_answers_only_the_local_host(top_host: Host) -> None:
    status, body = scrape(top_host, "127.0.0.1")
    assert status == 200
    first = metric(body, "dom0_domain_cpu_seconds_total", name=GUEST)
    assert metric(body, "dom0_domain_vcpus", name=GUEST) == 1
    assert metric(body, "dom0_domain_memory_bytes", name=GUEST) == 96 * 1024 * 1024
    tx = metric(body, "dom0_domain_network_transmit_bytes_total", name=GUEST)
    with top_host.console(GUEST) as con:
        con.run("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
        con.run(f"ping -c 3 -i 0.2 {BRIDGE_IP}", timeout=30)
    status, body = scrape(top_host, "127.0.0.1")
    assert metric(body, "dom0_domain_cpu_seconds_total", name=GUEST) > first
    assert metric(body, "dom0_domain_network_transmit_bytes_total", name=GUEST) > tx
    # listening on every address, but a peer that is not this host is refused
    assert scrape(top_host, BRIDGE_IP)[0] == 403


def test_metrics_listener_is_off_by_default_and_local_when_on(make_host: Any) -> None:
    plain = make_host(netns=True)
    assert scrape(plain, "127.0.0.1")[0] == 0  # nothing listens
    on = make_host("(xend-metrics-server yes)", start=False, netns=True)
    on.ns_run("ip", "link", "add", "mbr0", "type", "bridge")
    on.ns_run("ip", "addr", "add", "10.71.0.1/24", "dev", "mbr0")
    on.ns_run("ip", "link", "set", "mbr0", "up")
    on.start()
    assert scrape(on, "127.0.0.1")[0] == 200
    assert scrape(on, "10.71.0.1")[0] == 0  # bound to localhost only
