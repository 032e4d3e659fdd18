"""dom0.backends.cgroups and dom0.domain.sched: the CPU controller found from the
mount table, v2's file logic on a temporary tree shaped like cgroupfs, v1 for real on
this host's cpu controller (a thread of this test placed, capped and taken back), the
mapping of credit and SEDF parameters onto CFS, and the domain layer keeping them in
the config and the cgroup (FakeMachine, a real Store)."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dom0.backends.cgroups import CgroupV1, CgroupV2, CpuShare, detect
from dom0.backends.fake import FakeMachines
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.manager import DomainManager
from dom0.domain.network import NetworkOptions, VifController
from dom0.domain.sched import MS, Sedf, check_credit, share
from dom0.domain.settings import DomainSettings
from dom0.errors import VmError
from dom0.model.config import DomainConfig
from dom0.store.db import Store
from dom0.store.layout import Layout

# ---- finding the controller ---------------------------------------------------------


def mounts(tmp: Path, *rows: str) -> str:
    path = tmp / "mounts"
    path.write_text("".join(r + "\n" for r in rows))
    return str(path)


def test_detect_v1_on_a_hybrid_host(tmp_path: Path) -> None:
    """This machine's layout: cpu bound to v1, an empty unified hierarchy beside it."""
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("\n")
    found = detect(mounts(tmp_path,
                          "cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0",
                          f"cgroup2 {unified} cgroup2 rw,relatime 0 0",
                          "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0"))
    assert isinstance(found, CgroupV1)
    assert found.root == "/sys/fs/cgroup/cpu,cpuacct/dom0"


def test_detect_v2_when_it_offers_cpu(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    found = detect(mounts(tmp_path, f"cgroup2 {tmp_path} cgroup2 rw,nosuid 0 0"))
    assert isinstance(found, CgroupV2)
    assert found.root == f"{tmp_path}/dom0"


def test_detect_none(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    assert detect(mounts(tmp_path, f"cgroup2 {tmp_path} cgroup2 rw 0 0",
                         "cgroup /x cgroup rw,cpuset 0 0")) is None
    assert detect(str(tmp_path / "no-such-file")) is None


def test_detect_this_host() -> None:
    """The controller this host has is found (cpu is bound to v1 here)."""
    found = detect()
    assert found is not None
    assert os.path.isfile(os.path.join(found.mount, "cgroup.procs"))


# ---- v2: file logic on a tree shaped like cgroupfs ------------------------------------


@pytest.fixture
def v2(tmp_path: Path) -> CgroupV2:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    (tmp_path / "dom0").mkdir()
    (tmp_path / "dom0" / "cgroup.subtree_control").write_text("")
    (tmp_path / "dom0" / "cgroup.procs").write_text("")
    return CgroupV2(str(tmp_path))


def test_v2_weight_maps_onto_1_to_10000() -> None:
    assert CgroupV2.weight(1) == 1
    assert CgroupV2.weight(65535) == 10000
    assert CgroupV2.weight(256) == 40 and CgroupV2.weight(512) == 79  # about 1:2
    assert CgroupV2.weight(0) == 1 and CgroupV2.weight(99999) == 10000


def test_v2_place_builds_a_threaded_subtree(v2: CgroupV2, tmp_path: Path) -> None:
    path = v2.place("u1", 4000, [4001, 4002], CpuShare(weight=512, quota_us=25000))
    assert path == f"{tmp_path}/dom0/u1"
    assert "+cpu" in (tmp_path / "cgroup.subtree_control").read_text()
    assert "+cpu" in (tmp_path / "dom0" / "cgroup.subtree_control").read_text()
    # the process in the threaded root, its vCPU threads in the domain's threaded child
    assert (tmp_path / "dom0" / "cgroup.procs").read_text().split() == ["4000"]
    assert (tmp_path / "dom0" / "u1" / "cgroup.type").read_text() == "threaded"
    assert v2.threads("u1") == [4001, 4002]
    assert (tmp_path / "dom0" / "u1" / "cpu.weight").read_text() == "79"
    assert (tmp_path / "dom0" / "u1" / "cpu.max").read_text() == "25000 100000"
    assert v2.holds("u1", CpuShare(weight=512, quota_us=25000))
    assert not v2.holds("u1", CpuShare(weight=512))


def test_v2_place_again_changes_the_share_only(v2: CgroupV2, tmp_path: Path) -> None:
    v2.place("u1", 4000, [4001], CpuShare(quota_us=25000))
    v2.place("u1", 4000, [], CpuShare())
    # a process already in the root is not written again (v2 would pull its threads back)
    assert (tmp_path / "dom0" / "cgroup.procs").read_text().split() == ["4000"]
    assert (tmp_path / "dom0" / "u1" / "cpu.max").read_text() == "max 100000"
    assert v2.read("u1").quota_us is None


def test_remove_and_sweep(v2: CgroupV2, tmp_path: Path) -> None:
    v2.place("busy", 1, [2], CpuShare())
    os.makedirs(tmp_path / "dom0" / "ended")
    assert v2.sweep() == ["ended"]
    assert not (tmp_path / "dom0" / "ended").exists()
    assert v2.remove("gone") is False


# ---- v1 for real -----------------------------------------------------------------------


@pytest.fixture
def v1() -> Iterator[tuple[CgroupV1, str]]:
    found = detect()
    if not isinstance(found, CgroupV1) or os.geteuid() != 0:
        pytest.skip("needs root and a v1 cpu controller (this project's test host has both)")
    name = f"unit-test-{uuid.uuid4().hex[:8]}"
    yield found, name
    found.remove(name)


def test_v1_places_one_thread_and_caps_it(v1: tuple[CgroupV1, str]) -> None:
    cg, name = v1
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    tid = worker.native_id
    assert tid is not None
    try:
        path = cg.place(name, os.getpid(), [tid], CpuShare(weight=512, quota_us=25000))
        membership = Path(f"/proc/self/task/{tid}/cgroup").read_text()
        assert f":{path[len(cg.mount):]}\n" in membership
        # only that thread: the test's own main thread stays where it was
        assert f":{path[len(cg.mount):]}\n" not in Path("/proc/self/cgroup").read_text()
        assert Path(path, "cpu.shares").read_text().strip() == "2048"
        assert Path(path, "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert cg.read(name) == CpuShare(weight=512, quota_us=25000, period_us=100000)
        # a shorter period below the old quota: the order of the writes must allow it
        cg.apply(name, CpuShare(weight=256, quota_us=5000, period_us=10000))
        assert cg.read(name) == CpuShare(weight=256, quota_us=5000, period_us=10000)
        assert cg.remove(name) is False  # it holds a thread
        Path(cg.mount, "tasks").write_text(str(tid))
        assert cg.threads(name) == []
        assert cg.remove(name) is True
    finally:
        stop.set()
        worker.join()


# ---- the mapping of the schedulers' parameters ------------------------------------------


def cfg(**values: Any) -> DomainConfig:
    return DomainConfig(name="d", kernel="/k", **values)


def test_credit_share() -> None:
    assert share(cfg(), "credit") == CpuShare(weight=256)
    assert share(cfg(cpu_weight=512, cpu_cap=25), "credit") == \
        CpuShare(weight=512, quota_us=25000, period_us=100000)
    assert share(cfg(vcpus=2, cpu_cap=150), "credit").quota_us == 150000
    assert share(cfg(cpu_cap=0), "credit").quota_us is None


def test_sedf_share() -> None:
    assert share(cfg(), "sedf") == CpuShare(weight=256)  # best effort, extra time
    fixed = cfg(sedf_period=100 * MS, sedf_slice=10 * MS, sedf_extratime=0)
    assert share(fixed, "sedf") == CpuShare(weight=256, quota_us=10000, period_us=100000)
    fixed.vcpus = 2  # a slice per vCPU
    assert share(fixed, "sedf").quota_us == 20000
    assert share(cfg(sedf_weight=2), "sedf") == CpuShare(weight=512)


def test_sedf_checks() -> None:
    assert Sedf(weight=3, period=5 * MS, slice=MS, extratime=0).checked() == \
        Sedf(period=100 * MS, slice=0, latency=0, extratime=1, weight=3)  # weight-driven
    with pytest.raises(VmError, match="period is out of range"):
        Sedf(period=0).checked()
    with pytest.raises(VmError, match="period is out of range"):
        Sedf(period=2000 * MS).checked()
    with pytest.raises(VmError, match="slice is out of range"):
        Sedf(period=10 * MS, slice=20 * MS).checked()
    with pytest.raises(VmError, match="needs a slice"):
        Sedf(slice=0, extratime=0).checked()
    with pytest.raises(VmError, match="extratime must be 0 or 1"):
        Sedf(extratime=2).checked()


def test_credit_range_texts() -> None:
    check_credit(1, 0, 1)
    check_credit(65535, 200, 2)
    for weight, cap, text in ((0, None, "weight is out of range"),
                              (65536, None, "weight is out of range"),
                              (None, 101, "cap is out of range"),
                              (None, -1, "cap is out of range")):
        with pytest.raises(VmError, match=f"^{text}$"):
            check_credit(weight, cap, 1)


# ---- the domain layer: the config keeps them, the cgroup holds them ---------------------


class World:
    def __init__(self, tmp: Path, cgroups: CgroupV2, scheduler: str = "credit") -> None:
        tmp.mkdir()
        self.kernel = tmp / "vmlinuz"
        self.kernel.write_bytes(b"k")
        self.layout = Layout(state_dir=str(tmp / "state"), domains_dir=str(tmp / "domains"),
                             run_dir=str(tmp / "run"), log_dir=str(tmp / "log"),
                             dump_dir=str(tmp / "dump"))
        self.layout.create_dirs()
        self.store = Store(self.layout.database)
        settings = DomainSettings(scheduler=scheduler)
        self.manager = DomainManager(self.store, self.layout, FakeMachines(), settings,
                                     HypervisorLog(), VifController(NetworkOptions(), settings),
                                     cgroups)

    def config(self, **values: Any) -> DomainConfig:
        return DomainConfig(name="guest", kernel=str(self.kernel), **values)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_domain_weight_and_cap_live_in_config_and_cgroup(tmp_path: Path, v2: CgroupV2) -> None:
    world = World(tmp_path / "w", v2)

    async def scenario() -> None:
        m = world.manager
        dom = await m.create(world.config(cpu_weight=512, cpu_cap=50))
        assert dom.running is not None
        # placed at launch: the fake machine's vCPU thread, and only it
        assert v2.threads(dom.uuid) == dom.running.machine.vcpu_threads != []
        assert v2.read(dom.uuid).quota_us == 50000
        assert m.sched_credit_get("guest") == {"weight": 512, "cap": 50}
        await m.sched_credit_set("guest", 1024, None)
        assert m.sched_credit_get("guest") == {"weight": 1024, "cap": 50}
        assert Path(v2.path(dom.uuid), "cpu.weight").read_text() == str(CgroupV2.weight(1024))
        # the running record (what a restarted xend re-adopts) has the new weight
        (rec,) = world.store.running_records()
        assert rec["config"]["cpu_weight"] == 1024
        with pytest.raises(VmError, match="^weight is out of range$"):
            await m.sched_credit_set("guest", 70000, None)
        with pytest.raises(VmError, match="^cap is out of range$"):
            await m.sched_credit_set("guest", None, 101)
        assert m.sched_credit_get("Domain-0") == {"weight": 256, "cap": 0}
        with pytest.raises(VmError, match="privileged domain Domain-0"):
            await m.sched_credit_set("Domain-0", 512, None)
        with pytest.raises(VmError, match="^Xen is running with the credit scheduler$"):
            m.sched_sedf_get("guest")
        # in cgroupfs the control files do not keep rmdir from removing a cgroup
        for f in os.listdir(v2.path(dom.uuid)):
            os.unlink(os.path.join(v2.path(dom.uuid), f))
        await m.destroy("guest")
        assert not os.path.exists(v2.path(dom.uuid))

    run(scenario())


def test_domain_sedf_parameters(tmp_path: Path, v2: CgroupV2) -> None:
    world = World(tmp_path / "w", v2, scheduler="sedf")

    async def scenario() -> None:
        m = world.manager
        dom = await m.create(world.config())
        assert m.sched_sedf_get("guest") == {"period": 100 * MS, "slice": 0, "latency": 0,
                                             "extratime": 1, "weight": 0}
        await m.sched_sedf_set("guest", {"slice": 10 * MS, "extratime": 0, "latency": 5 * MS})
        assert m.sched_sedf_get("guest") == {"period": 100 * MS, "slice": 10 * MS,
                                             "latency": 5 * MS, "extratime": 0, "weight": 0}
        assert dom.config.sedf_slice == 10 * MS
        assert v2.holds(dom.uuid, CpuShare(quota_us=10000, period_us=100000))
        with pytest.raises(VmError, match="slice is out of range"):
            await m.sched_sedf_set("guest", {"slice": 200 * MS})
        assert m.sched_sedf_get("guest")["slice"] == 10 * MS  # a refused change changes nothing
        with pytest.raises(VmError, match="^Xen is running with the sedf scheduler$"):
            await m.sched_credit_set("guest", 512, None)
        assert m.sched_sedf_get("0")["extratime"] == 1

    run(scenario())
