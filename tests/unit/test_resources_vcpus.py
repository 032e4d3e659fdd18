"""vCPUs (issue 10 item 3) without QEMU: the hot-plug plan over QEMU's slots, vcpu-set
and vcpu-pin through the domain manager on FakeMachine (the host affinity is a
table), the config they leave behind, and xm vcpu-list's offline rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lifecycle_policy import World, run

from dom0.backends.qemu import cpuslots
from dom0.cli import format as fmt
from dom0.errors import VmError
from dom0.model.config import DomainConfig


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def slot(core: int, filled: bool) -> dict[str, object]:
    s: dict[str, object] = {"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
                            "props": {"socket-id": 0, "core-id": core, "thread-id": 0}}
    if filled:
        s["qom-path"] = f"/machine/unattached/device[{core}]" if core < 2 else \
            f"/machine/peripheral/vcpu{core}"
    return s


# ---- the plan over QEMU's slots (listed highest first, as QEMU does) -------------------


def test_plan_fills_the_lowest_empty_slots_as_the_next_vcpu_numbers() -> None:
    slots = [slot(3, False), slot(2, False), slot(1, True), slot(0, True)]
    add, remove = cpuslots.plan(slots, 4)
    assert [n for n, _ in add] == [2, 3] and remove == []
    assert cpuslots.plug_args(add[0][1], 2) == {
        "driver": "qemu64-x86_64-cpu", "id": "vcpu2", "socket-id": 0, "core-id": 2,
        "thread-id": 0}


def test_plan_empties_the_highest_slots_and_never_vcpu_0() -> None:
    slots = [slot(3, True), slot(2, True), slot(1, True), slot(0, True)]
    assert cpuslots.plan(slots, 2) == ([], ["/machine/peripheral/vcpu3",
                                            "/machine/peripheral/vcpu2"])
    assert cpuslots.plan(slots, 0)[1] == ["/machine/peripheral/vcpu3",
                                          "/machine/peripheral/vcpu2",
                                          "/machine/unattached/device[1]"]
    assert cpuslots.plan(slots, 4) == ([], [])


def test_plan_keeps_to_the_domains_slots() -> None:
    slots = [slot(n, n == 0) for n in range(4)]
    assert [n for n, _ in cpuslots.plan(slots, 5, limit=2)[0]] == [1]


def test_the_machines_vcpu_record_outlives_xend(tmp_path: Path) -> None:
    path = str(tmp_path / "vcpus.json")
    cpuslots.Budget(2).save(path)
    assert cpuslots.Budget.load(path) == cpuslots.Budget(2, True)
    cpuslots.Budget(2, can_plug=False).save(path)
    assert cpuslots.Budget.load(path) == cpuslots.Budget(2, False)
    assert cpuslots.Budget.load(str(tmp_path / "none.json")) is None


# ---- config: maxvcpus and vcpu_avail ------------------------------------------------------


@pytest.mark.parametrize("values, maximum, at_start", [
    ({"vcpus": 2}, 2, 2),
    ({"vcpus": 1, "maxvcpus": 3}, 3, 1),
    ({"vcpus": 4, "vcpu_avail": 0b0011}, 4, 2),  # Xen 3.4's way of saying the same
    ({"vcpus": 4, "vcpu_avail": 0b0101}, 4, 2),  # QEMU numbers present vCPUs from 0
    ({"vcpus": 2, "vcpu_avail": 0}, 2, 1),  # vCPU 0 is always there
])
def test_max_and_online_vcpus(values: dict[str, int], maximum: int, at_start: int) -> None:
    cfg = DomainConfig(name="v", kernel="/k", **values)
    assert (cfg.max_vcpus, cfg.online_vcpus) == (maximum, at_start)


def test_maxvcpus_below_vcpus_is_refused() -> None:
    with pytest.raises(VmError, match="maxvcpus must not be less than vcpus"):
        DomainConfig(name="v", kernel="/k", vcpus=2, maxvcpus=1).validate()


# ---- vcpu-set and vcpu-pin through the manager ---------------------------------------------


class Table:
    """The host scheduler's affinity, as a table."""

    def __init__(self) -> None:
        self.cpus: dict[int, list[int]] = {}

    def set(self, tid: int, cpus: list[int]) -> None:
        self.cpus[tid] = list(cpus)

    def get(self, tid: int) -> list[int]:
        return self.cpus.get(tid, [0, 1])


def with_table(w: World) -> Table:
    table = Table()
    w.manager.resources.affinity = table
    w.settings.host_cpus = 2
    return table


@run
async def test_vcpu_set_plugs_up_to_maxvcpus_and_records_vcpu_avail(world: World) -> None:
    with_table(world)
    dom = await world.manager.create(world.config(vcpus=1, maxvcpus=3))
    machine = world.machine(dom)
    assert machine.spec is not None and (machine.spec.vcpus, machine.spec.maxvcpus) == (1, 3)
    await world.manager.vcpu_set("guest", 3)
    assert len(machine.vcpu_threads) == 3 and dom.info()["online_vcpus"] == 3
    assert dom.config.vcpu_avail == 0b111
    await world.manager.vcpu_set("guest", 1)
    assert dom.config.vcpu_avail == 0b1 and dom.config.online_vcpus == 1
    rec = world.records()[0]
    assert rec["config"]["vcpu_avail"] == 1  # written down: the next xend sees it


@run
async def test_vcpu_set_refusals_use_xens_words(world: World) -> None:
    await world.manager.create(world.config(vcpus=2))
    with pytest.raises(VmError, match="^Cannot set vcpus greater than max vcpus on running "
                                      "domain$"):
        await world.manager.vcpu_set("guest", 3)
    with pytest.raises(VmError, match="^Zero or less VCPUs is invalid$"):
        await world.manager.vcpu_set("guest", 0)


@run
async def test_vcpu_set_of_a_halted_managed_domain_sets_its_count(world: World) -> None:
    await world.manager.new(world.config(vcpus=1, cpus=["1"]))
    await world.manager.vcpu_set("guest", 3)
    cfg = world.manager.lookup("guest").config
    assert (cfg.vcpus, cfg.vcpu_avail, cfg.cpus) == (3, None, ["1", "all", "all"])
    assert [c["name"] for c, _ in world.store.managed()] == ["guest"]
    assert next(c for c, _ in world.store.managed())["vcpus"] == 3


@run
async def test_vcpu_pin_pins_the_thread_and_keeps_it_in_the_config(world: World) -> None:
    table = with_table(world)
    dom = await world.manager.create(world.config(vcpus=1, maxvcpus=2))
    threads = world.machine(dom).vcpu_threads
    await world.manager.vcpu_pin("guest", "0", "1")
    assert table.cpus == {threads[0]: [1]}
    # an offline vCPU's pin waits in the config, and is applied when it is plugged
    await world.manager.vcpu_pin("guest", "1", "0-1,^1")
    assert dom.config.cpus == ["1", "0-1,^1"]
    await world.manager.vcpu_set("guest", 2)
    assert table.cpus[world.machine(dom).vcpu_threads[1]] == [0]
    await world.manager.vcpu_pin("guest", "all", "all")
    assert dom.config.cpus == ["all", "all"] and set(map(tuple, table.cpus.values())) == {(0, 1)}


@run
async def test_vcpu_pin_refusals(world: World) -> None:
    with_table(world)
    await world.manager.create(world.config(vcpus=2))
    with pytest.raises(VmError, match=r"^Cannot pin vcpu: 2 to cpu: \[0\] - \(22, 'Invalid "
                                      r"argument'\)$"):
        await world.manager.vcpu_pin("guest", "2", "0")
    with pytest.raises(VmError, match=r"^Cannot pin vcpu: 0 to cpu: \[1, 5\] - "):
        await world.manager.vcpu_pin("guest", "0", "1,5")  # the host has CPUs 0 and 1
    with pytest.raises(VmError, match="Invalid CPU list"):
        await world.manager.vcpu_pin("guest", "0", "1-x")


@run
async def test_vcpu_rows_show_unplugged_vcpus_offline(world: World) -> None:
    with_table(world)
    dom = await world.manager.create(world.config(vcpus=1, maxvcpus=2, cpus="1"))
    rows = world.manager.vcpu_info(dom)
    assert [(r["number"], r["online"], r["state"]) for r in rows] == \
        [(0, True, "-b-"), (1, False, "--p")]
    text = fmt.vcpu_list([{"name": "guest", "domid": dom.domid, "vcpus": rows}], 2)
    assert text.split("\n")[1:] == [
        "guest                                1     0     0   -b-       0.0 1",  # pinned at start
        "guest                                1     1     -   --p       0.0 1"]
