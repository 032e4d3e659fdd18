"""xm sched-credit and xm sched-sedf end to end without QEMU: xm's main() talks to a
real ApiServer over its socket, in front of a real DomainManager (FakeMachine for
the guest, a temporary tree shaped like cgroup v2 for its cgroup).  Output formats,
getopt behaviour, range errors and exit codes as spec §1.2, §1.3, §9."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_services import FakeConfig, FakeRing

from dom0.api.server import ApiServer
from dom0.api.services import RelocationDefaults, Services
from dom0.backends.cgroups import CgroupV2, CpuShare
from dom0.backends.fake import FakeMachines
from dom0.cli.commands.sched import CREDIT_HEADER, SEDF_HEADER, leading_options
from dom0.cli.main import main
from dom0.cli.registry import BY_NAME
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.manager import DomainManager
from dom0.domain.network import NetworkOptions, VifController
from dom0.domain.security import DomainSecurity
from dom0.domain.settings import DomainSettings
from dom0.model.config import DomainConfig
from dom0.security.acm import AccessControl
from dom0.store.db import Store
from dom0.store.layout import Layout

CaptureFixture = pytest.CaptureFixture[str]


class SchedHost:
    """The host rows xm reads: Domain-0 and the scheduler xend runs."""

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler

    def dom0_info(self) -> dict[str, Any]:
        return {"name": "Domain-0", "domid": 0, "state": "r-----"}

    def dom0_vcpus(self) -> list[dict[str, Any]]:
        return []

    def node_info(self) -> list[tuple[str, Any]]:
        return [("host", "unit"), ("xen_scheduler", self.scheduler)]


class Xend:
    """A domain manager behind a real API socket, on its own event loop thread."""

    def __init__(self, tmp: Path, scheduler: str) -> None:
        cg = tmp / "cgroup"
        (cg / "dom0").mkdir(parents=True)
        for f in ("cgroup.subtree_control", "dom0/cgroup.subtree_control", "dom0/cgroup.procs"):
            (cg / f).write_text("")
        self.cgroups = CgroupV2(str(cg))
        self.kernel = tmp / "vmlinuz"
        self.kernel.write_bytes(b"k")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # the store's SQLite connection belongs to the thread that serves
        self.run(self._build(tmp, scheduler))

    async def _build(self, tmp: Path, scheduler: str) -> None:
        layout = Layout(state_dir=str(tmp / "state"), domains_dir=str(tmp / "domains"),
                        run_dir=str(tmp / "run"), log_dir=str(tmp / "log"),
                        dump_dir=str(tmp / "dump"))
        layout.create_dirs()
        self.store = Store(layout.database)
        settings = DomainSettings(scheduler=scheduler)
        self.manager = DomainManager(self.store, layout, FakeMachines(), settings,
                                     HypervisorLog(), VifController(NetworkOptions(), settings),
                                     self.cgroups)
        services: Services[Any] = Services(
            domains=self.manager, host=SchedHost(scheduler), config=FakeConfig(),
            messages=FakeRing(), logfile="/nonexistent",
            relocation=RelocationDefaults(ssl=False, port=8002, ssl_port=8003),
            security=DomainSecurity(AccessControl(tmp / "security"), lambda: []))
        self.path = str(tmp / "xmlrpc.sock")
        self.server = ApiServer(services, self.path)
        await self.server.start()

    async def _close(self) -> None:
        await self.server.stop()
        self.store.close()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def create(self, name: str, **values: Any) -> Any:
        cfg = DomainConfig(name=name, kernel=str(self.kernel), **values)
        return self.run(self.manager.create(cfg))

    def close(self) -> None:
        self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def start(tmp: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str) -> Iterator[Xend]:
    xend = Xend(tmp, scheduler)
    monkeypatch.setenv("XM_SERVER", xend.path)
    try:
        yield xend
    finally:
        xend.close()


@pytest.fixture
def credit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Xend]:
    yield from start(tmp_path, monkeypatch, "credit")


@pytest.fixture
def sedf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Xend]:
    yield from start(tmp_path, monkeypatch, "sedf")


def xm(capsys: CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# ---- plain getopt ---------------------------------------------------------------------


def test_leading_options_stop_at_the_first_operand() -> None:
    options = BY_NAME["sched-credit"].options
    assert leading_options(["-d", "a", "-w", "5", "x", "-c", "9"], options) == \
        ["-d", "a", "-w", "5"]
    assert leading_options(["--domain", "a", "--cap=5", "x"], options) == \
        ["--domain", "a", "--cap=5"]
    assert leading_options(["-da", "--", "-w", "5"], options) == ["-da", "--"]
    assert leading_options(["vm", "-w", "5"], options) == []


# ---- sched-credit ---------------------------------------------------------------------


def test_credit_table(credit: Xend, capsys: CaptureFixture) -> None:
    credit.create("guest", cpu_weight=512, cpu_cap=25)
    status, out, _ = xm(capsys, "sched-credit")
    assert status == 0
    assert out.splitlines() == [
        CREDIT_HEADER,
        "%-32s %5s %6d %4d" % ("Domain-0", "0", 256, 0),
        "%-32s %5s %6d %4d" % ("guest", "1", 512, 25),
    ]
    assert CREDIT_HEADER == "Name                                ID Weight  Cap"
    status, out, _ = xm(capsys, "sched-credit", "-d", "guest")
    assert out.splitlines()[1:] == ["%-32s %5s %6d %4d" % ("guest", "1", 512, 25)]


def test_credit_set_reaches_config_and_cgroup(credit: Xend, capsys: CaptureFixture) -> None:
    dom = credit.create("guest")
    assert xm(capsys, "sched-credit", "-d", "guest", "-w", "1024", "-c", "50")[0] == 0
    assert dom.config.cpu_weight == 1024 and dom.config.cpu_cap == 50
    assert credit.cgroups.holds(dom.uuid, CpuShare(weight=1024, quota_us=50000))
    assert xm(capsys, "sched-credit", "--domain=guest", "--cap=0")[0] == 0
    assert dom.config.cpu_cap == 0 and dom.config.cpu_weight == 1024
    assert credit.cgroups.holds(dom.uuid, CpuShare(weight=1024))


def test_credit_options_after_an_operand_are_not_read(credit: Xend,
                                                      capsys: CaptureFixture) -> None:
    dom = credit.create("guest")
    status, out, _ = xm(capsys, "sched-credit", "guest", "-w", "512")
    assert status == 0 and out.splitlines()[0] == CREDIT_HEADER  # listed, not set
    assert dom.config.cpu_weight is None


@pytest.mark.parametrize("args, message, code", [
    (["-w", "512"], "Error: No domain given.", 1),
    (["-d", "guest", "-w", "0"], "Error: weight is out of range", 1),
    (["-d", "guest", "-w", "65536"], "Error: weight is out of range", 1),
    (["-d", "guest", "-c", "101"], "Error: cap is out of range", 1),
    (["-d", "guest", "-c", "-1"], "Error: cap is out of range", 1),
    (["-d", "nosuch"], "Error: Domain 'nosuch' does not exist.", 1),
    (["-d", "nosuch", "-w", "5"], "Error: Domain 'nosuch' does not exist.", 3),
    (["-d", "guest", "-w", "heavy"], "Error: invalid literal for int(): 'heavy'", 1),
])
def test_credit_errors(credit: Xend, capsys: CaptureFixture, args: list[str], message: str,
                       code: int) -> None:
    dom = credit.create("guest", vcpus=1)
    status, _, err = xm(capsys, "sched-credit", *args)
    assert (status, err.splitlines()[0]) == (code, message)
    assert "Traceback" not in err
    assert dom.config.cpu_weight is None and dom.config.cpu_cap is None


def test_cap_range_follows_vcpus(credit: Xend, capsys: CaptureFixture) -> None:
    dom = credit.create("guest", vcpus=2)
    assert xm(capsys, "sched-credit", "-d", "guest", "-c", "200")[0] == 0
    assert dom.config.cpu_cap == 200


def test_sedf_refused_under_credit(credit: Xend, capsys: CaptureFixture) -> None:
    status, out, err = xm(capsys, "sched-sedf")
    assert (status, out, err) == (1, "", "Error: Xen is running with the credit scheduler\n")


# ---- sched-sedf -------------------------------------------------------------------------


def test_sedf_table_and_set(sedf: Xend, capsys: CaptureFixture) -> None:
    dom = sedf.create("guest", vcpus=2)
    status, out, _ = xm(capsys, "sched-sedf")
    assert status == 0
    assert out.splitlines() == [
        SEDF_HEADER,
        "%-32s %5d %9.1f %9.1f %7.1f %6d %6d" % ("Domain-0", 0, 0, 0, 0, 1, 0),
        "%-32s %5d %9.1f %9.1f %7.1f %6d %6d" % ("guest", 1, 100, 0, 0, 1, 0),
    ]
    assert SEDF_HEADER == "Name                                ID Period(ms) Slice(ms) Lat(ms) " \
                          "Extra Weight"
    # the domain first, then options in any order (gnu getopt), in ms
    assert xm(capsys, "sched-sedf", "guest", "-s", "10", "--extra=0", "-l", "2.5")[0] == 0
    status, out, _ = xm(capsys, "sched-sedf", "guest")
    assert out.splitlines()[1] == "%-32s %5d %9.1f %9.1f %7.1f %6d %6d" % (
        "guest", 1, 100, 10, 2.5, 0, 0)
    assert dom.config.sedf_slice == 10_000_000 and dom.config.sedf_latency == 2_500_000
    # 10 ms of each 100 ms for each of its two vCPUs
    assert sedf.cgroups.holds(dom.uuid, CpuShare(quota_us=20000, period_us=100000))
    assert xm(capsys, "sched-sedf", "guest", "--extratime", "1", "-w", "2")[0] == 0
    assert sedf.cgroups.holds(dom.uuid, CpuShare(weight=512))


def test_sedf_errors(sedf: Xend, capsys: CaptureFixture) -> None:
    sedf.create("guest")
    status, _, err = xm(capsys, "sched-sedf", "guest", "-s", "200")
    assert (status, err.splitlines()[0]) == (1, "Error: slice is out of range")
    status, _, err = xm(capsys, "sched-sedf", "nosuch")
    assert (status, err.splitlines()[0]) == (1, "Error: Domain 'nosuch' does not exist.")
    status, out, err = xm(capsys, "sched-credit")
    assert (status, out, err) == (1, "", "Error: Xen is running with the sedf scheduler\n")


# ---- xend-config's (sched ...) ------------------------------------------------------------


def test_sched_option(tmp_path: Path) -> None:
    from dom0.daemon import options

    path = tmp_path / "xend-config.sxp"
    assert options.load(str(path)).domain_settings().scheduler == "credit"  # the default
    path.write_text("(sched sedf)\n")
    loaded = options.load(str(path))
    assert loaded.sched == "sedf" and loaded.domain_settings().scheduler == "sedf"
    assert ("sched", "sedf") in loaded.items()
    path.write_text("(sched bvt)\n")
    with pytest.raises(options.OptionsError, match="invalid xend config sched: bvt"):
        options.load(str(path))
