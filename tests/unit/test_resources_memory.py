"""Memory (issue 10 item 4) without QEMU: the host account and Xen's refusals, mem-set
and mem-max through the domain manager on FakeMachine, and xm's memory argument."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lifecycle_policy import World, run

from dom0.cli.commands.resources import parse_memory
from dom0.domain.memory import HostMemory, MemoryAccount
from dom0.errors import VmError

GIB = 1024 * 1024  # KiB


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def account(**kw: int | bool) -> MemoryAccount:
    base = {"host": HostMemory(total_kib=8 * GIB, available_kib=6 * GIB),
            "targets_kib": 1 * GIB, "resident_kib": 512 * 1024}
    return MemoryAccount(**{**base, **kw})  # type: ignore[arg-type]


# ---- the account ------------------------------------------------------------------------


def test_guests_count_at_their_targets_and_the_host_at_what_it_uses() -> None:
    a = account()
    # the host uses 8 - 6 - 0.5 GiB itself; the guests are promised 1 GiB
    assert a.host_own_kib == int(1.5 * GIB)
    assert a.free_kib == 8 * GIB - int(1.5 * GIB) - 1 * GIB


def test_dom0_min_mem_is_a_floor_only_when_ballooning() -> None:
    assert account(dom0_min_kib=3 * GIB).free_kib == account().free_kib
    assert account(dom0_min_kib=3 * GIB, ballooning=True).free_kib == 8 * GIB - 3 * GIB - GIB
    # below what the host uses anyway, it changes nothing
    assert account(dom0_min_kib=GIB, ballooning=True).free_kib == account().free_kib


def test_refusals_with_xens_messages() -> None:
    a = account()
    a.require(a.free_kib)
    with pytest.raises(VmError) as exc:
        a.require(a.free_kib + 1)
    assert str(exc.value) == (
        "Not enough free memory and enable-dom0-ballooning is False, so I cannot release "
        f"any more.  I need {a.free_kib + 1} KiB but only have {a.free_kib}.")
    b = account(dom0_min_kib=3 * GIB, ballooning=True)
    with pytest.raises(VmError) as exc:
        b.require(5 * GIB)
    assert str(exc.value) == (f"I need {5 * GIB} KiB, but dom0_min_mem is {3 * GIB} and "
                              f"shrinking to {3 * GIB} KiB would leave only {4 * GIB} KiB free.")


def test_free_never_goes_negative() -> None:
    assert account(targets_kib=100 * GIB).free_kib == 0


# ---- through the manager --------------------------------------------------------------


def small_host(w: World, total_mib: int) -> None:
    """The fake host has *total_mib* MiB, all of it available, and QEMUs using none."""
    w.manager.resources.host_memory = lambda: HostMemory(total_mib * 1024, total_mib * 1024)
    w.manager.resources.resident = lambda pid: 0


@run
async def test_a_create_that_does_not_fit_is_refused_before_anything_starts(
        world: World) -> None:
    small_host(world, 1000)
    await world.manager.create(world.config("a", memory=600))
    assert world.manager.free_memory_kib() == 400 * 1024
    with pytest.raises(VmError, match="I need 512000 KiB but only have 409600"):
        await world.manager.create(world.config("b", memory=500))
    assert [m.calls for m in world.machines.made][1:] == []  # no machine was built
    assert [d.name for d in world.manager.select()] == ["a"]
    await world.manager.destroy("a")
    await world.manager.create(world.config("b", memory=500))  # now it fits


@run
async def test_a_managed_start_is_checked_too(world: World) -> None:
    small_host(world, 100)
    await world.manager.new(world.config(memory=128))
    with pytest.raises(VmError, match="Not enough free memory"):
        await world.manager.start_managed("guest")
    assert not world.manager.lookup("guest").active


@run
async def test_mem_set_moves_the_balloon_and_keeps_the_target(world: World) -> None:
    small_host(world, 1000)
    dom = await world.manager.create(world.config(memory=128, maxmem=256))
    assert await world.manager.mem_set("guest", 64) == 64
    assert dom.info()["memory"] == 64 and dom.config.memory == 64
    assert world.records()[0]["config"]["memory"] == 64
    assert world.manager.free_memory_kib() == (1000 - 64) * 1024
    assert await world.manager.mem_set("guest", 256) == 256
    with pytest.raises(VmError, match="^memory_dynamic_max must be less than or equal to "
                                      "memory_static_max$"):
        await world.manager.mem_set("guest", 257)


@run
async def test_mem_set_says_how_far_a_stuck_guest_got(world: World) -> None:
    world.settings.balloon_timeout = 0.3
    dom = await world.manager.create(world.config(memory=128))
    world.machine(dom).balloon_stuck_at = 100
    assert await world.manager.mem_set("guest", 64) == 100
    assert dom.config.memory == 64  # the target stands: the guest may still get there


@run
async def test_mem_set_upwards_needs_free_memory(world: World) -> None:
    small_host(world, 300)
    await world.manager.create(world.config(memory=100, maxmem=400))
    with pytest.raises(VmError, match="I need 307200 KiB but only have 204800"):
        await world.manager.mem_set("guest", 400)


@run
async def test_mem_max_within_what_the_machine_has(world: World) -> None:
    dom = await world.manager.create(world.config(memory=100, maxmem=200))
    await world.manager.mem_max("guest", 150)
    assert dom.config.maxmem == 150 and dom.info()["maxmem"] == 150
    with pytest.raises(VmError, match="^memory_dynamic_max must be less than"):
        await world.manager.mem_set("guest", 160)
    await world.manager.mem_max("guest", 200)  # back up: QEMU still has 200
    with pytest.raises(VmError, match="above the 200 MiB it was started with"):
        await world.manager.mem_max("guest", 201)
    with pytest.raises(VmError, match="^memory_dynamic_max must be less than"):
        await world.manager.mem_max("guest", 99)


@run
async def test_a_domain_without_maxmem_cannot_grow_but_can_come_back(world: World) -> None:
    dom = await world.manager.create(world.config(memory=100))
    with pytest.raises(VmError, match="^memory_dynamic_max must be less than"):
        await world.manager.mem_set("guest", 101)
    await world.manager.mem_set("guest", 50)
    assert dom.config.maxmem == 100  # the ceiling stays the RAM it was started with
    assert await world.manager.mem_set("guest", 100) == 100


# ---- xm's memory argument (spec §1.1) ----------------------------------------------------


@pytest.mark.parametrize("text, mib", [("256", 256), ("256m", 256), ("256M", 256),
                                       ("1g", 1024), ("2G", 2048), ("262144k", 256),
                                       ("1023k", 0)])
def test_parse_memory(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


def test_parse_memory_unknown_unit_is_ignored_with_a_word(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert parse_memory("300q") == 300
    assert capsys.readouterr().out == "ignoring unknown unit\n"


@pytest.mark.parametrize("text", ["", "x", "12.5", "m"])
def test_parse_memory_bad_number_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)
