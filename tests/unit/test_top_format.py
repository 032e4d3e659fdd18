"""xm top's figures and their three renderings: xentop's batch text (cli/topformat),
the full-screen view (cli/top_screen, driven by textual's Pilot), and the Prometheus
text (daemon/metrics)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dom0.cli import topformat
from dom0.cli.commands.top import TopOptions
from dom0.daemon import metrics
from dom0.daemon.options import XendOptions
from dom0.domain.stats import net_figures, read_net_dev
from dom0.errors import OptionError
from dom0.model.figures import (
    DomainFigures,
    HostFigures,
    NetFigures,
    Snapshot,
    VbdFigures,
    cpu_percent,
)

HOST = HostFigures(hostname="h", version="7.2.22", mem_total_kib=1_000_000,
                   mem_free_kib=400_000, cpus=2, cpu_mhz=2596)
DOM0 = DomainFigures(name="Domain-0", uuid="0" * 32, domid=0, state="r-----",
                     cpu_seconds=500.9, memory_kib=1_000_000, maxmem_kib=None, vcpus=2,
                     vcpu_seconds=(250.0, 250.9))


def guest(cpu: float = 10.0, name: str = "guest1", domid: int = 3, state: str = "-b----",
          **kw: object) -> DomainFigures:
    values: dict[str, object] = dict(
        name=name, uuid=f"uuid-{name}", domid=domid, state=state, cpu_seconds=cpu,
        memory_kib=98304, maxmem_kib=131072, vcpus=1, vcpu_seconds=(cpu,),
        nets=(NetFigures(0, f"vif{domid}.0", tx_bytes=10240, rx_bytes=20480, tx_packets=7),),
        vbds=(VbdFigures("xvda", 51712, rd_ops=40, wr_ops=5, rd_bytes=4096),))
    values.update(kw)
    return DomainFigures(**values)  # type: ignore[arg-type]


def snap(taken: float, *doms: DomainFigures) -> Snapshot:
    return Snapshot(taken=taken, wall=time.mktime((2026, 1, 2, 13, 4, 5, 0, 0, -1)),
                    host=HOST, domains=(DOM0, *doms))


# ---- figures -------------------------------------------------------------------------


def test_cpu_percent_is_the_difference_over_the_interval() -> None:
    a, b = snap(100.0, guest(10.0)), snap(102.0, guest(11.5))
    assert cpu_percent(a, b, b.domains[1]) == pytest.approx(75.0)
    assert cpu_percent(None, b, b.domains[1]) == 0.0  # xentop's first screen
    # a domain new in the second snapshot (or restarted with a new ID) starts at 0
    assert cpu_percent(a, b, guest(11.5, domid=4)) == 0.0


def test_snapshot_crosses_json_unchanged() -> None:
    s = snap(5.0, guest(), guest(name="g2", domid=4, nets=(), vbds=()))
    assert Snapshot.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_state_tally_counts_each_domain_once() -> None:
    s = snap(1.0, guest(state="-b----"), guest(name="p", domid=5, state="--p---"),
             guest(name="c", domid=6, state="----c-"))
    assert s.state_counts() == {"running": 1, "blocked": 1, "paused": 1, "crashed": 1,
                                "dying": 0, "shutdown": 0}


def test_tap_counters_are_turned_round_to_the_guests_view(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = tmp_path / "dev"
    dev.write_text(
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        "vif3.0:    1000      10    1    2    0     0          0         0     "
        "5000      50    3    4    0     0       0          0\n")
    counters = read_net_dev(str(dev))
    n = net_figures(0, "vif3.0", counters["vif3.0"])
    # what the tap received, the guest sent
    assert (n.tx_bytes, n.tx_packets, n.tx_errors, n.tx_drops) == (1000, 10, 1, 2)
    assert (n.rx_bytes, n.rx_packets, n.rx_errors, n.rx_drops) == (5000, 50, 3, 4)
    assert net_figures(1, "gone", None) == NetFigures(1, "gone")
    assert read_net_dev(str(tmp_path / "absent")) == {}


# ---- xentop's text -----------------------------------------------------------------


def test_column_header_is_xentops() -> None:
    assert topformat.column_header() == (
        "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS "
        "NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR SSID")


def test_summary_lines() -> None:
    s = snap(1.0, guest(), guest(name="p", domid=5, state="--p---"))
    assert topformat.summary(s) == [
        "xentop - 13:04:05   Xen 7.2.22",
        "3 domains: 1 running, 1 blocked, 1 paused, 0 crashed, 0 dying, 0 shutdown",
        "Mem: 1000000k total, 600000k used, 400000k free    CPUs: 2 @ 2596MHz",
    ]


def test_rows_line_up_under_the_header() -> None:
    a, b = snap(100.0, guest(10.0)), snap(101.0, guest(10.25))
    lines = topformat.frame(b, a)
    assert lines[4] == ("  Domain-0 -----r        500    0.0    1000000  100.0   no limit"
                        "       n/a     2    0        0        0    0        0        0"
                        "        0    0")
    assert lines[5] == ("    guest1 --b---         10   25.0      98304    9.8     131072"
                        "      13.1     1    1       10       20    1        0       40"
                        "        5    0")
    header = lines[3]
    for line in lines[4:]:
        assert len(line) == len(header)


def test_names_are_cut_to_ten_unless_full() -> None:
    s = snap(1.0, guest(name="a-very-long-name"))
    assert topformat.frame(s, None)[5].startswith("a-very-lon ")
    assert topformat.frame(s, None, full_name=True)[5].startswith("a-very-long-name ")


def test_sorting_and_the_optional_lines() -> None:
    s = snap(1.0, guest(99.0, name="zz", domid=7), guest(1.0, name="aa", domid=8))
    names = [ln.split()[0] for ln in topformat.frame(s, None)[4:]]
    assert names == ["Domain-0", "aa", "zz"]  # by NAME, xentop's default
    by_cpu = topformat.rows(s, None, sort=topformat.HEADERS.index("CPU(sec)"), reverse=True)
    assert [r.dom.name for r in by_cpu] == ["Domain-0", "zz", "aa"]
    out = topformat.frame(snap(1.0, guest()), None, vcpus=True, networks=True, vbds=True,
                          repeat_header=True)
    assert out[3] == out[6] == topformat.column_header()  # before each domain
    assert out[8] == "VCPUs(sec):   0:         10s"
    assert out[9] == ("Net0 RX:    20480bytes        0pkts        0err        0drop  "
                      "TX:    10240bytes        7pkts        0err        0drop")
    assert out[10].startswith("VBD BlkBack 51712 [ca: 0]  OO:        0   RD:       40")


def test_options_and_their_errors() -> None:
    o = TopOptions({"batch": "", "delay": "0.5", "iterations": "2"})
    assert (o.batch, o.delay, o.iterations) == (True, 0.5, 2)
    assert TopOptions({}).delay == 3.0
    for bad in ({"delay": "0"}, {"delay": "x"}, {"iterations": "-1"}, {"iterations": "1.5"}):
        with pytest.raises(OptionError):
            TopOptions(bad)


# ---- the full-screen view -------------------------------------------------------------


def test_screen_shows_the_table_and_answers_xentops_keys() -> None:
    from textual.widgets import DataTable, Input, Static

    from dom0.cli.top_screen import TopApp

    shots = iter([snap(100.0 + i, guest(10.0 + i), guest(50.0, name="aa", domid=9))
                  for i in range(1000)])

    async def scenario() -> None:
        app = TopApp(lambda: next(shots), delay=60)
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            table = app.query_one(DataTable)
            assert [str(c.label) for c in table.columns.values()] == topformat.HEADERS
            assert [table.get_row_at(i)[0] for i in range(table.row_count)] == \
                ["Domain-0", "aa", "guest1"]
            summary = str(app.query_one("#summary", Static).render())
            assert "3 domains: 1 running, 2 blocked" in summary
            await pilot.press("s")  # sort by the next column: STATE
            assert app.sort_name() == "STATE"
            await pilot.press("S")
            assert [table.get_row_at(i)[0] for i in range(3)] == ["guest1", "aa", "Domain-0"]
            await pilot.press("n")
            assert "Net0 RX:" in str(app.query_one("#details", Static).render())
            await app.refresh_figures()  # a second snapshot: CPU(%) over the interval
            row = table.get_row("uuid-guest1:3")
            assert row[topformat.HEADERS.index("CPU(%)")] == "100.0"
            await pilot.press("d")
            box = app.query_one("#delay", Input)
            assert box.display
            box.value = "0.5"
            await pilot.press("enter")
            assert app.delay == 0.5 and not box.display
            await pilot.press("q")
        assert app.return_value == 0

    asyncio.run(scenario())


# ---- Prometheus ----------------------------------------------------------------------


def test_metrics_text_has_the_figures_under_prometheus_names() -> None:
    text = metrics.render(snap(1.0, guest(12.5))).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {"name": "guest1", "uuid": "uuid-guest1", "domid": "3"}
    cpu = fams["dom0_domain_cpu_seconds"]
    assert cpu.type == "counter"
    assert [(s.name, s.labels, s.value) for s in cpu.samples] == \
        [("dom0_domain_cpu_seconds_total", labels, 12.5)]
    assert fams["dom0_domain_memory_bytes"].samples[0].value == 98304 * 1024
    tx = fams["dom0_domain_network_transmit_bytes"].samples[0]
    assert tx.labels == {**labels, "vif": "vif3.0"} and tx.value == 10240
    rd = fams["dom0_domain_block_read_operations"].samples[0]
    assert rd.labels == {**labels, "device": "xvda"} and rd.value == 40
    assert fams["dom0_host_memory_total_bytes"].samples[0].value == 1_000_000 * 1024
    states = {s.labels["state"]: s.value for s in fams["dom0_domain_state"].samples}
    assert states["blocked"] == 1 and states["running"] == 0
    # Domain-0 is the host: its figures are the host metrics, not a domain's
    assert all(s.labels["name"] != "Domain-0" for s in cpu.samples)


def test_metrics_are_off_and_local_by_default() -> None:
    o = XendOptions()
    assert not o.xend_metrics_server
    assert (o.xend_metrics_address, o.xend_metrics_port) == ("localhost", 9101)
    allow = o.xend_metrics_hosts_allow
    assert metrics.peer_allowed(allow, "127.0.0.1")
    assert metrics.peer_allowed(allow, "::1")
    assert not metrics.peer_allowed(allow, "10.0.0.5")
    assert not metrics.peer_allowed(allow, None)
    assert metrics.peer_allowed(r"^10\.0\.0\.", "10.0.0.5")


# ---- measuring: the domain layer over FakeMachine ---------------------------------------


def test_figures_of_live_domains_through_the_domain_manager(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from test_lifecycle_policy import World

    from dom0.model.config import DiskSpec, VifSpec

    async def scenario() -> None:
        world = World(tmp_path)
        image = tmp_path / "disk.img"
        image.write_bytes(b"\0" * 4096)
        await world.manager.create(world.config(
            "a", memory=96, maxmem=128, vcpus=2, disks=[DiskSpec(f"file:{image}", "xvdb", "r")],
            vifs=[VifSpec({"bridge": "xenbr0"})]))
        await world.manager.create(world.config("b", memory=64), paused=True)
        await world.manager.new(world.config("halted"))  # no machine: no row
        figs = {f.name: f for f in await world.manager.figures()}
        assert sorted(figs) == ["a", "b"]
        a, b = figs["a"], figs["b"]
        assert (a.memory_kib, a.maxmem_kib, a.vcpus) == (96 * 1024, 128 * 1024, 2)
        assert [(v.dev, v.rd_ops) for v in a.vbds] == [("xvdb", 0)]
        assert [n.vifname for n in a.nets] == [f"vif{a.domid}.0"]
        assert a.state == "r-----" and b.state == "--p---"
        # a machine that does not answer shows its configured figures
        world.machines.alive.discard(world.machine(world.manager.lookup("b")).pid or 0)
        b2 = next(f for f in await world.manager.figures() if f.name == "b")
        assert b2.memory_kib == 64 * 1024

    asyncio.run(scenario())


def test_figures_are_frozen_records_without_dataclasses() -> None:
    import subprocess
    import sys

    n = NetFigures(0, "vif1.0", tx_bytes=5)
    assert n == NetFigures(devid=0, vifname="vif1.0", tx_bytes=5) and n != NetFigures(1, "x")
    assert hash(n) == hash(NetFigures(0, "vif1.0", tx_bytes=5))
    assert repr(n).startswith("NetFigures(devid=0, vifname='vif1.0', tx_bytes=5,")
    with pytest.raises(AttributeError):
        n.tx_bytes = 6  # type: ignore[misc]
    with pytest.raises(TypeError):
        NetFigures(0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        NetFigures(0, "v", colour=1)  # type: ignore[call-arg]
    # xm top's start does not pay for dataclasses (inspect, re, enum)
    code = "import sys, dom0.cli.commands.top; print('dataclasses' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_screen_ends_after_its_iterations() -> None:
    from dom0.cli.top_screen import TopApp

    calls: list[float] = []

    def fetch() -> Snapshot:
        calls.append(time.monotonic())
        return snap(float(len(calls)), guest())

    async def scenario() -> int | None:
        app = TopApp(fetch, delay=0.05, iterations=3)
        async with app.run_test() as pilot:
            while app.is_running:
                await pilot.pause(0.05)
        return app.return_value

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == 0
    assert 3 <= len(calls) <= 4  # a tick already under way when it ends may fetch once more
