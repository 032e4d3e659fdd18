"""A domain that dies at once stays visible as crashed (issue 13 item 2), and the
memory floor at admission.

When the restart-loop guard refuses to restart a domain, Xen destroyed it and only
xend's log knew why; we keep it listed as crashed (``----c-``), with
``shutdown_reason`` (what the guest did) and ``crash_reason`` (why xend kept it
instead of acting) in its record, its console and QEMU logs kept, but no machine
and no taps.  ``xm destroy`` removes it and those logs.  on_crash=preserve leaves
the same representation.  Driven through FakeMachine, over a real Store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_lifecycle_policy import World, run

from dom0.domain.domain import Domain
from dom0.errors import BackendError, ConfigError, InvalidDomain, VmError
from dom0.model.checks import MINIMUM_MEMORY_KB
from dom0.model.config import DomainConfig, VifSpec
from dom0.model.state import PowerState


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def write_logs(world: World, dom: Domain) -> tuple[str, str]:
    """What QEMU writes while the guest runs (the fake writes no logs itself)."""
    paths = world.machine(dom).paths
    for path, text in ((paths.console_log, "Kernel panic - not syncing\n"),
                       (paths.qemu_log, "qemu: guest panicked\n")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return paths.console_log, paths.qemu_log


async def crash_loop(world: World, reason: str = "crash", **values: object) -> Domain:
    """A guest that stops twice in a row at once: the second stop comes within
    domain-minimum-restart-time of the first restart, so the loop guard gives up."""
    dom = await world.manager.create(world.config(vifs=[VifSpec({"bridge": "xenbr0"})],
                                                  **values))
    write_logs(world, dom)
    for _ in range(2):
        world.machine(dom).guest_stops(reason)
        await world.settle()
    return dom


# ---- the loop guard keeps the domain, crashed --------------------------------------------


@pytest.mark.parametrize("reason", ["crash", "reboot"])
@run
async def test_a_domain_the_loop_guard_gives_up_on_stays_listed_crashed(
        world: World, reason: str) -> None:
    dom = await crash_loop(world, reason)
    assert world.manager.lookup("guest") is dom and dom.state == PowerState.CRASHED
    info = dom.info()
    assert info["state"] == "----c-" and info["domid"] == dom.domid
    assert info["shutdown_reason"] == reason
    assert "restarting too fast" in info["crash_reason"]
    assert [d.name for d in world.manager.select("crashed")] == ["guest"]
    assert [d.name for d in world.manager.select("running")] == []
    assert [r["state"] for r in world.records()] == ["crashed"]
    assert "restarting too fast" in world.hvlog.text()


@run
async def test_the_crashed_domain_holds_no_machine_and_no_taps(world: World) -> None:
    dom = await crash_loop(world)
    assert dom.running is not None
    machine = world.machine(dom)
    assert not machine.still_running() and "kill" in machine.calls
    assert world.machines.running == []
    assert world.vifs.unplugged == world.vifs.plugged != []
    # nothing to attach a console to: xm console says the domain is not started
    assert dom.info()["console"] is None


@run
async def test_the_crashed_domain_keeps_its_logs_until_destroyed(world: World) -> None:
    dom = await crash_loop(world)
    console_log, qemu_log = world.machine(dom).paths.console_log, \
        world.machine(dom).paths.qemu_log
    assert dom.info()["console_log"] == console_log
    assert open(console_log).read() == "Kernel panic - not syncing\n"
    assert os.path.exists(qemu_log)
    await world.manager.destroy("guest")
    assert not os.path.exists(console_log) and not os.path.exists(qemu_log)
    with pytest.raises(InvalidDomain):
        world.manager.lookup("guest")
    assert world.records() == [] and world.manager.select() == []
    # the taps went with the machine: destroy does not unplug them twice
    assert len(world.vifs.unplugged) == len(world.vifs.plugged)


@run
async def test_the_crashed_domain_can_be_destroyed_by_its_id(world: World) -> None:
    dom = await crash_loop(world)
    await world.manager.destroy(str(dom.domid))
    assert world.manager.select() == []


@run
async def test_the_crashed_domain_holds_its_name(world: World) -> None:
    """As in Xen, a crashed domain still holds its name and UUID."""
    dom = await crash_loop(world)
    with pytest.raises(VmError, match=f"^Domain 'guest' already exists with ID '{dom.domid}'$"):
        await world.manager.create(world.config())
    await world.manager.destroy("guest")
    again = await world.manager.create(world.config())
    assert again.state == PowerState.RUNNING and again.crash_reason is None


@run
async def test_a_crashed_managed_domain_is_halted_again_when_destroyed(world: World) -> None:
    await world.manager.new(world.config())
    dom = await world.manager.start_managed("guest")
    for _ in range(2):
        world.machine(dom).guest_stops("crash")
        await world.settle()
    assert dom.state == PowerState.CRASHED and dom.info()["state"] == "----c-"
    with pytest.raises(VmError, match="already running"):
        await world.manager.start_managed("guest")
    await world.manager.destroy("guest")
    assert dom.state == PowerState.HALTED and dom.crash_reason is None
    assert world.managed_rows() == {"guest": "halted"} and world.records() == []
    await world.manager.start_managed("guest")
    assert dom.state == PowerState.RUNNING


@run
async def test_the_crashed_domain_survives_an_xend_restart(tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await crash_loop(first)
    await first.manager.detach_all()
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    again = second.manager.lookup("guest")
    assert again.state == PowerState.CRASHED and again.domid == dom.domid
    assert again.info()["state"] == "----c-"
    assert again.crash_reason == dom.crash_reason and again.shutdown_reason == "crash"
    assert second.machines.running == []
    await second.manager.destroy("guest")
    assert second.records() == [] and second.manager.select() == []


@run
async def test_qemu_dying_twice_is_kept_crashed(world: World) -> None:
    """QEMU killed behind xend's back, restarted in a new QEMU, killed again."""
    dom = await world.manager.create(world.config(on_crash="restart"))
    world.machine(dom).dies()
    await world.settle()
    world.machine(dom).dies()
    await world.settle()
    assert dom.state == PowerState.CRASHED and "restarting too fast" in (dom.crash_reason or "")
    assert world.machines.running == []


# ---- on_crash=preserve: the same representation -------------------------------------------


@run
async def test_preserve_of_a_panicked_guest_keeps_its_machine(world: World) -> None:
    """preserve keeps the guest's memory for `xm dump-core`: its QEMU stays."""
    dom = await world.manager.create(world.config(on_crash="preserve"))
    console_log, _ = write_logs(world, dom)
    world.machine(dom).guest_stops("crash")
    await world.settle()
    assert dom.state == PowerState.CRASHED and world.machine(dom).still_running()
    assert dom.info()["state"] == "----c-" and "on_crash=preserve" in (dom.crash_reason or "")
    await world.manager.destroy("guest")
    assert not os.path.exists(console_log) and world.records() == []


@run
async def test_preserve_of_a_dead_qemu_lets_go_of_its_taps(world: World) -> None:
    dom = await world.manager.create(world.config(on_crash="preserve",
                                                  vifs=[VifSpec({"bridge": "xenbr0"})]))
    world.machine(dom).dies()
    await world.settle()
    assert dom.state == PowerState.CRASHED and "QEMU exited" in (dom.crash_reason or "")
    assert world.vifs.unplugged == world.vifs.plugged != []
    assert dom.info()["console"] is None
    await world.manager.destroy("guest")
    assert len(world.vifs.unplugged) == len(world.vifs.plugged)


@run
async def test_destroying_a_crashed_guest_by_on_crash_destroy_keeps_its_logs(
        world: World) -> None:
    """Only a domain xend kept crashed has its logs removed with it."""
    dom = await world.manager.create(world.config(on_crash="destroy"))
    console_log, _ = write_logs(world, dom)
    world.machine(dom).guest_stops("crash")
    await world.settle()
    assert world.manager.select() == [] and os.path.exists(console_log)


# ---- the memory floor --------------------------------------------------------------------


def test_the_floor_is_32_mib() -> None:
    assert MINIMUM_MEMORY_KB == 32768


@pytest.mark.parametrize("memory", [1, 16, 31])
@run
async def test_create_and_new_refuse_memory_below_the_floor(world: World, memory: int) -> None:
    message = f"^Domain memory must be at least {MINIMUM_MEMORY_KB} KB$"
    with pytest.raises(ConfigError, match=message):
        await world.manager.create(world.config(memory=memory))
    with pytest.raises(ConfigError, match=message):
        await world.manager.new(world.config(memory=memory))
    assert world.machines.made == [] and world.managed_rows() == {}


@run
async def test_memory_at_the_floor_is_admitted(world: World) -> None:
    dom = await world.manager.create(world.config(memory=32))
    assert dom.state == PowerState.RUNNING


def test_memory_zero_keeps_its_own_message() -> None:
    with pytest.raises(ConfigError, match="greater than zero"):
        DomainConfig(name="g", kernel="/k", memory=0).validate()


@run
async def test_start_refuses_a_managed_domain_below_the_floor(world: World) -> None:
    """A row written before the floor existed (or by hand) is refused at start."""
    cfg = world.config(memory=16, uuid="11111111-2222-3333-4444-555555555555")
    world.store.put_managed(cfg.uuid, cfg.name, cfg.to_dict(), "halted")
    await world.manager.adopt_all()
    with pytest.raises(ConfigError, match="at least 32768 KB"):
        await world.manager.start_managed("guest")
    assert world.machines.made == []


@run
async def test_restore_refuses_memory_below_the_floor(world: World) -> None:
    from dom0.migration import savefile
    path = str(world.tmp / "small.save")
    writer = savefile.Writer(path, world.config(memory=16).to_dict())
    writer.stream(b"FAKE-STATE")
    writer.commit()
    with pytest.raises(ConfigError, match="at least 32768 KB"):
        await world.manager.restore(path, paused=False)
    assert world.machines.made == []


# ---- what xm list -l shows -----------------------------------------------------------------


@run
async def test_list_long_shows_the_reasons_and_the_kept_log(world: World) -> None:
    from dom0.cli.format import domain_sxp, list_long

    dom = await crash_loop(world)
    text = list_long([dom.info()])
    assert "(state ----c-)" in text and "(shutdown_reason crash)" in text
    assert "(crash_reason\n        'restarting too fast: crash " in text
    log = world.machine(dom).paths.console_log
    assert ["log", log] in next(d[1] for d in domain_sxp(dom.info())
                                if d[0] == "device" and d[1][0] == "console")
    assert log in text and "(location" not in text


@run
async def test_a_failed_restart_is_kept_crashed_with_its_cause(world: World) -> None:
    """QEMU died and the new one cannot start: the domain stays, saying why."""
    dom = await world.manager.create(world.config(on_crash="restart",
                                                  vifs=[VifSpec({"bridge": "xenbr0"})]))
    world.machines.fail_launch = BackendError("QEMU exited: cannot allocate memory")
    world.machine(dom).dies()
    await world.settle()
    assert world.manager.lookup("guest") is dom and dom.state == PowerState.CRASHED
    assert dom.crash_reason == "on_crash=restart failed: QEMU exited: cannot allocate memory"
    assert world.machines.running == [] and world.vifs.unplugged == world.vifs.plugged
    assert [r["state"] for r in world.records()] == ["crashed"]
    await world.manager.destroy("guest")
    assert world.manager.select() == [] and world.records() == []
    assert len(world.vifs.unplugged) == len(world.vifs.plugged)
