"""The lifecycle policy of dom0.domain, driven through FakeMachine (no QEMU): create
and destroy, on_poweroff/on_reboot/on_crash for every action, the restart-loop
guard, the shutdown watchdog, the rollback of a failed launch, domain IDs,
admission, re-adoption, and a suspended managed domain's stored state.

Each test runs its own event loop over a real Store in a temporary directory."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dom0.backends.fake import FakeMachine, FakeMachines
from dom0.devices.vif import Vif
from dom0.domain.domain import Domain
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.manager import DomainManager
from dom0.domain.network import NetworkOptions, VifController
from dom0.domain.settings import DomainSettings
from dom0.errors import BackendError, InvalidDomain, VmError
from dom0.model.config import DiskSpec, DomainConfig, VifSpec
from dom0.model.state import PowerState
from dom0.store.db import Store
from dom0.store.layout import Layout

UUID_A = "11111111-2222-3333-4444-555555555555"


class RecordingVifs(VifController):
    """The host side of vifs without netlink: records what was plugged and unplugged
    (the rollback must unplug what a failed launch plugged)."""

    def __init__(self, settings: DomainSettings) -> None:
        super().__init__(NetworkOptions(), settings)
        self.plugged: list[str] = []
        self.unplugged: list[str] = []

    async def plug_host(self, dom: Domain, vif: Vif) -> None:
        self.plugged.append(vif.vifname)

    async def unplug_host(self, dom: Domain, vif: Vif) -> None:
        self.unplugged.append(vif.vifname)


class World:
    """One xend's domain layer over a fake host, and what a test needs to look at."""

    def __init__(self, tmp: Path, machines: FakeMachines | None = None,
                 **settings: Any) -> None:
        self.tmp = tmp
        self.kernel = tmp / "vmlinuz"
        self.kernel.write_bytes(b"not really a kernel")
        self.layout = Layout(state_dir=str(tmp / "state"), domains_dir=str(tmp / "domains"),
                             run_dir=str(tmp / "run"), log_dir=str(tmp / "log"),
                             dump_dir=str(tmp / "dump"))
        self.layout.create_dirs()
        self.store = Store(self.layout.database)
        self.machines = machines or FakeMachines()
        self.settings = DomainSettings(**{"minimum_restart_time": 60.0,
                                          "shutdown_timeout": 0.05, **settings})
        self.hvlog = HypervisorLog()
        self.vifs = RecordingVifs(self.settings)
        self.manager = DomainManager(self.store, self.layout, self.machines, self.settings,
                                     self.hvlog, self.vifs)

    def config(self, name: str = "guest", **values: Any) -> DomainConfig:
        return DomainConfig(name=name, kernel=str(self.kernel), **values)

    def machine(self, dom: Domain) -> FakeMachine:
        assert dom.running is not None, f"{dom.name} has no machine"
        machine = dom.running.machine
        assert isinstance(machine, FakeMachine)
        return machine

    async def settle(self) -> None:
        """Let the event handling (spawned tasks) run to its end."""
        tasks = self.manager.lifecycle._tasks
        for _ in range(20):
            await asyncio.sleep(0)
            if tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
            else:
                return

    def records(self) -> list[dict[str, Any]]:
        return self.store.running_records()

    def managed_rows(self) -> dict[str, str]:
        return {config["name"]: state for config, state in self.store.managed()}


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Each test in a fresh event loop (asyncio.run), without a plugin."""
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 5.0))
    return wrapper


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# ---- create and destroy -------------------------------------------------------------


@run
async def test_create_runs_the_guest_and_records_it(world: World) -> None:
    dom = await world.manager.create(world.config(memory=64, extra="quiet"))
    machine = world.machine(dom)
    assert dom.state == PowerState.RUNNING
    assert machine.state == "running" and machine.calls[:2] == ["launch", "cont"]
    assert machine.spec is not None and machine.spec.cmdline == "quiet"
    assert machine.spec.memory == 64
    assert world.manager.lookup("guest") is dom
    assert world.manager.lookup(str(dom.domid)) is dom
    assert [r["domid"] for r in world.records()] == [dom.domid]
    assert dom.info()["state"] == "r-----" and dom.info()["pid"] == machine.pid


@run
async def test_create_paused_leaves_the_guest_stopped(world: World) -> None:
    dom = await world.manager.create(world.config(), paused=True)
    assert dom.state == PowerState.PAUSED
    assert "cont" not in world.machine(dom).calls


@run
async def test_destroy_kills_and_forgets(world: World) -> None:
    dom = await world.manager.create(world.config())
    machine = world.machine(dom)
    await world.manager.destroy("guest")
    assert not machine.still_running() and "kill" in machine.calls
    assert dom.running is None and dom.state == PowerState.HALTED
    assert world.records() == []
    with pytest.raises(InvalidDomain):
        world.manager.lookup("guest")


@run
async def test_destroy_unplugs_the_vifs(world: World) -> None:
    dom = await world.manager.create(world.config(vifs=[VifSpec({"bridge": "xenbr0"})]))
    tap = f"vif{dom.domid}.0"
    assert world.vifs.plugged == [tap] and [n.vifname for n in world.machine(dom).nics] == [tap]
    await world.manager.destroy("guest")
    assert world.vifs.unplugged == [tap]


@run
async def test_destroy_of_a_managed_domain_keeps_it_halted(world: World) -> None:
    await world.manager.new(world.config())
    dom = await world.manager.start_managed("guest")
    await world.manager.destroy("guest")
    assert world.manager.lookup("guest") is dom and dom.state == PowerState.HALTED
    assert world.managed_rows() == {"guest": "halted"} and world.records() == []


# ---- what the guest does: on_poweroff / on_reboot / on_crash ---------------------------

KEYS = {"poweroff": "on_poweroff", "reboot": "on_reboot", "crash": "on_crash"}


@pytest.mark.parametrize("reason", ["poweroff", "reboot", "crash"])
@run
async def test_action_destroy(world: World, reason: str) -> None:
    dom = await world.manager.create(world.config(**{KEYS[reason]: "destroy"}))
    machine = world.machine(dom)
    machine.guest_stops(reason)
    await world.settle()
    assert not machine.still_running() and world.records() == []
    assert world.manager.select() == [] and dom.shutdown_reason == reason


@pytest.mark.parametrize("reason", ["poweroff", "reboot", "crash"])
@run
async def test_action_restart_resets_in_place_with_a_new_id(world: World, reason: str) -> None:
    dom = await world.manager.create(world.config(**{KEYS[reason]: "restart"}))
    machine, first = world.machine(dom), dom.domid
    machine.guest_stops(reason)
    await world.settle()
    assert dom.state == PowerState.RUNNING and world.machine(dom) is machine
    assert "hard_reset" in machine.calls and dom.domid is not None and first is not None
    assert dom.domid > first
    assert [r["domid"] for r in world.records()] == [dom.domid]


@pytest.mark.parametrize("reason, state", [("poweroff", PowerState.SHUTDOWN),
                                           ("reboot", PowerState.SHUTDOWN),
                                           ("crash", PowerState.CRASHED)])
@run
async def test_action_preserve_keeps_the_stopped_guest(world: World, reason: str,
                                                       state: PowerState) -> None:
    dom = await world.manager.create(world.config(**{KEYS[reason]: "preserve"}))
    machine = world.machine(dom)
    machine.guest_stops(reason)
    await world.settle()
    assert dom.state == state and machine.still_running()
    assert world.records()[0]["state"] == state.value
    assert dom.info()["state"] == ("----c-" if reason == "crash" else "---s--")
    await world.manager.destroy("guest")
    assert not machine.still_running()


@pytest.mark.parametrize("reason", ["poweroff", "reboot", "crash"])
@run
async def test_action_rename_restart(world: World, reason: str) -> None:
    dom = await world.manager.create(world.config(uuid=UUID_A,
                                                  **{KEYS[reason]: "rename-restart"}))
    old = world.machine(dom)
    old.guest_stops(reason)
    await world.settle()
    fresh = world.manager.lookup("guest")
    assert fresh is not dom and fresh.uuid == UUID_A and fresh.state == PowerState.RUNNING
    assert world.machine(fresh) is not old
    assert dom.name == f"Domain-{dom.uuid}" and dom.uuid != UUID_A
    assert world.manager.lookup(dom.name) is dom and old.still_running()
    assert dom.state in (PowerState.SHUTDOWN, PowerState.CRASHED)
    assert sorted(r["config"]["name"] for r in world.records()) == sorted(["guest", dom.name])


@pytest.mark.parametrize("reason", ["poweroff", "reboot", "crash"])
@run
async def test_action_coredump_restart(world: World, reason: str) -> None:
    dom = await world.manager.create(world.config(**{KEYS[reason]: "coredump-restart"}))
    machine, first = world.machine(dom), dom.domid
    machine.guest_stops(reason)
    await world.settle()
    dumps = os.listdir(world.layout.dump_dir)
    assert len(dumps) == 1 and dumps[0].endswith(f"-guest.{first}.core")
    assert dom.state == PowerState.RUNNING and "hard_reset" in machine.calls
    assert machine.calls.index("dump_memory") < machine.calls.index("hard_reset")


@run
async def test_action_coredump_destroy(world: World) -> None:
    dom = await world.manager.create(world.config(on_crash="coredump-destroy"))
    world.machine(dom).guest_stops("crash")
    await world.settle()
    assert len(os.listdir(world.layout.dump_dir)) == 1 and world.manager.select() == []


@run
async def test_restart_loop_guard(world: World) -> None:
    """A second reboot within domain-minimum-restart-time is not restarted: the
    domain is kept listed as crashed, without its machine (issue 13; Xen destroyed
    it), until destroyed."""
    dom = await world.manager.create(world.config(on_reboot="restart"))
    machine = world.machine(dom)
    machine.guest_stops("reboot")
    await world.settle()
    assert dom.state == PowerState.RUNNING
    machine.guest_stops("reboot")
    await world.settle()
    assert world.manager.select() == [dom] and not machine.still_running()
    assert dom.state == PowerState.CRASHED and world.machines.running == []
    assert [r["state"] for r in world.records()] == ["crashed"]
    await world.manager.destroy("guest")
    assert world.manager.select() == [] and world.records() == []


@run
async def test_restarts_further_apart_than_the_guard_are_allowed(tmp_path: Path) -> None:
    world = World(tmp_path, minimum_restart_time=0.0)
    dom = await world.manager.create(world.config(on_reboot="restart"))
    for _ in range(3):
        world.machine(dom).guest_stops("reboot")
        await world.settle()
        assert dom.state == PowerState.RUNNING


@run
async def test_qemu_dying_tears_the_domain_down(world: World) -> None:
    dom = await world.manager.create(world.config(on_crash="destroy"))
    world.machine(dom).dies()
    await world.settle()
    assert world.manager.select() == [] and world.records() == []


# ---- QEMU dying behind xend's back is a crash: on_crash decides ---------------------------


@run
async def test_qemu_dying_with_on_crash_preserve_keeps_it_crashed(world: World) -> None:
    dom = await world.manager.create(world.config(on_crash="preserve"))
    machine = world.machine(dom)
    machine.dies()
    await world.settle()
    assert world.manager.lookup("guest") is dom and dom.state == PowerState.CRASHED
    assert dom.info()["state"] == "----c-" and dom.shutdown_reason == "crash"
    assert [r["state"] for r in world.records()] == ["crashed"]
    assert "QEMU exited unexpectedly" in world.hvlog.text()
    await world.manager.destroy("guest")
    assert world.manager.select() == [] and world.records() == []


@run
async def test_qemu_dying_with_on_crash_restart_starts_a_new_machine(world: World) -> None:
    dom = await world.manager.create(world.config(on_crash="restart",
                                                  vifs=[VifSpec({"bridge": "xenbr0"})]))
    old, first = world.machine(dom), dom.domid
    old.dies()
    await world.settle()
    assert dom.state == PowerState.RUNNING and world.machine(dom) is not old
    assert world.machine(dom).still_running() and world.machine(dom).state == "running"
    assert dom.domid is not None and first is not None and dom.domid > first
    assert [r["domid"] for r in world.records()] == [dom.domid]
    assert world.vifs.plugged == [f"vif{first}.0", f"vif{dom.domid}.0"]
    assert world.vifs.unplugged == [f"vif{first}.0"]
    # the loop guard: a second death within domain-minimum-restart-time is final
    # (kept listed as crashed, its taps gone, until destroyed)
    world.machine(dom).dies()
    await world.settle()
    assert dom.state == PowerState.CRASHED and world.machines.running == []
    assert world.vifs.unplugged == world.vifs.plugged
    assert [r["state"] for r in world.records()] == ["crashed"]
    await world.manager.destroy("guest")
    assert world.manager.select() == [] and world.records() == []


@pytest.mark.parametrize("action", ["coredump-destroy", "coredump-restart"])
@run
async def test_qemu_dying_with_on_crash_coredump_says_why_there_is_no_core(
        world: World, action: str) -> None:
    dom = await world.manager.create(world.config(on_crash=action))
    old = world.machine(dom)
    old.dies()
    await world.settle()
    assert not os.path.exists(world.layout.dump_dir) or os.listdir(world.layout.dump_dir) == []
    assert "no core dump" in world.hvlog.text() and "QEMU is gone" in world.hvlog.text()
    if action == "coredump-destroy":
        assert world.manager.select() == []
    else:
        assert dom.state == PowerState.RUNNING and world.machine(dom) is not old


@run
async def test_qemu_dying_with_on_crash_rename_restart(world: World) -> None:
    dom = await world.manager.create(world.config(uuid=UUID_A, on_crash="rename-restart"))
    world.machine(dom).dies()
    await world.settle()
    fresh = world.manager.lookup("guest")
    assert fresh is not dom and fresh.uuid == UUID_A and fresh.state == PowerState.RUNNING
    assert dom.name == f"Domain-{dom.uuid}" and dom.state == PowerState.CRASHED
    await world.manager.destroy(dom.name)
    assert [d.name for d in world.manager.select()] == ["guest"]


@run
async def test_a_crashed_domain_whose_qemu_died_is_still_listed_after_xend_restart(
        tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await first.manager.create(first.config(on_crash="preserve"))
    first.machine(dom).dies()
    await first.settle()
    await first.manager.detach_all()
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    again = second.manager.lookup("guest")
    assert again.state == PowerState.CRASHED and again.domid == dom.domid
    await second.manager.destroy("guest")
    assert second.records() == []


@run
async def test_a_late_event_of_an_old_machine_is_ignored(world: World) -> None:
    await world.manager.new(world.config(on_poweroff="destroy"))
    dom = await world.manager.start_managed("guest")
    old = world.machine(dom)
    events = old.events
    await world.manager.destroy("guest")
    await world.manager.start_managed("guest")
    assert events is not None
    events.guest_stopped("poweroff")  # from the first launch, arriving late
    await world.settle()
    assert dom.state == PowerState.RUNNING


# ---- xm shutdown and its watchdog ------------------------------------------------------


@run
async def test_shutdown_obeyed(world: World) -> None:
    dom = await world.manager.create(world.config())
    await world.manager.shutdown("guest")
    await world.settle()
    assert world.manager.select() == [] and dom.shutdown_reason == "poweroff"


@run
async def test_shutdown_halt_is_reported_as_halt(world: World) -> None:
    dom = await world.manager.create(world.config(on_poweroff="preserve"))
    await world.manager.shutdown("guest", "halt")
    await world.settle()
    assert dom.shutdown_reason == "halt" and dom.state == PowerState.SHUTDOWN


@run
async def test_watchdog_destroys_a_guest_ignoring_powerdown(world: World) -> None:
    dom = await world.manager.create(world.config())
    machine = world.machine(dom)
    machine.ignore_powerdown = True
    await world.manager.shutdown("guest")
    assert dom.state == PowerState.RUNNING
    await world.settle()  # the watchdog waits shutdown_timeout (0.05 s)
    assert world.manager.select() == [] and not machine.still_running()


@run
async def test_watchdog_resets_a_guest_ignoring_reboot(world: World) -> None:
    dom = await world.manager.create(world.config())
    machine, first = world.machine(dom), dom.domid
    machine.ignore_powerdown = True
    await world.manager.shutdown("guest", "reboot")
    await world.settle()
    assert dom.state == PowerState.RUNNING and "hard_reset" in machine.calls
    assert dom.domid is not None and first is not None and dom.domid > first


@run
async def test_shutdown_unpauses_a_paused_guest(world: World) -> None:
    dom = await world.manager.create(world.config(), paused=True)
    await world.manager.shutdown("guest")
    assert world.machine(dom).calls[-2:] == ["cont", "powerdown"]
    await world.settle()


# ---- admission and the rollback of a failed launch ----------------------------------------


@run
async def test_failed_launch_leaves_nothing(world: World) -> None:
    world.machines.fail_launch = BackendError("QEMU exited: no such thing")
    with pytest.raises(BackendError):
        await world.manager.create(world.config(vifs=[VifSpec({"bridge": "xenbr0"})]))
    assert world.manager.select() == [] and world.records() == []
    assert len(world.vifs.plugged) == 1 and world.vifs.unplugged == world.vifs.plugged
    assert world.machines.running == [] and "kill" in world.machines.made[0].calls
    # the name is free again
    await world.manager.create(world.config())


@run
async def test_failed_start_of_a_managed_domain_keeps_it_halted(world: World) -> None:
    dom = await world.manager.new(world.config())
    world.machines.fail_launch = BackendError("boom")
    with pytest.raises(BackendError):
        await world.manager.start_managed("guest")
    assert dom.state == PowerState.HALTED and dom.running is None
    assert world.records() == [] and world.managed_rows() == {"guest": "halted"}


@run
async def test_domain_ids_are_never_reused(world: World) -> None:
    seen = []
    for name in ("a", "b", "a", "c"):
        dom = await world.manager.create(world.config(name))
        assert dom.domid is not None
        seen.append(dom.domid)
        await world.manager.destroy(name)
    assert seen == sorted(set(seen))


@run
async def test_admit_refuses_a_duplicate_name(world: World) -> None:
    dom = await world.manager.create(world.config())
    with pytest.raises(VmError, match=f"already exists with ID '{dom.domid}'"):
        await world.manager.create(world.config())
    assert len(world.machines.made) == 1


@run
async def test_admit_refuses_a_duplicate_uuid(world: World) -> None:
    await world.manager.create(world.config("one", uuid=UUID_A))
    with pytest.raises(VmError, match="UUID"):
        await world.manager.create(world.config("two", uuid=UUID_A))


@run
async def test_admit_reserves_the_name_while_the_first_starts(world: World) -> None:
    first = asyncio.ensure_future(world.manager.create(world.config()))
    await asyncio.sleep(0)  # the first is admitted, its machine starting
    with pytest.raises(VmError, match="already exists"):
        await world.manager.create(world.config())
    await first


@run
async def test_admit_refuses_a_missing_kernel(world: World) -> None:
    with pytest.raises(VmError, match="Kernel image does not exist"):
        await world.manager.create(DomainConfig(name="g", kernel="/nonexistent/vmlinuz"))
    assert world.machines.made == []


# ---- names: Domain-0 is the host's, a name of digits would be read as an ID -------------

BAD_NAMES = [("Domain-0", "Domain 'Domain-0' already exists with ID '0'"),
             ("7", "Invalid VM Name: a name of digits only"),
             ("007", "Invalid VM Name: a name of digits only")]


@pytest.mark.parametrize("name, error", BAD_NAMES)
@run
async def test_create_and_new_refuse_a_reserved_name(world: World, name: str,
                                                     error: str) -> None:
    with pytest.raises(VmError, match=error):
        await world.manager.create(world.config(name))
    with pytest.raises(VmError, match=error):
        await world.manager.new(world.config(name))
    assert world.manager.select() == [] and world.machines.made == []
    assert world.managed_rows() == {}


@pytest.mark.parametrize("name, error", BAD_NAMES)
@run
async def test_rename_refuses_a_reserved_name(world: World, name: str, error: str) -> None:
    await world.manager.create(world.config())
    with pytest.raises(VmError, match=error):
        await world.manager.rename("guest", name)
    assert world.manager.lookup("guest").name == "guest"


@pytest.mark.parametrize("name, error", BAD_NAMES)
@run
async def test_restore_and_incoming_migration_refuse_a_reserved_name(
        world: World, name: str, error: str) -> None:
    from dom0.migration import savefile
    path = str(world.tmp / "forged.save")
    writer = savefile.Writer(path, world.config(name, uuid=UUID_A).to_dict())
    writer.stream(b"FAKE-STATE")
    writer.commit()
    with pytest.raises(VmError, match=error):
        await world.manager.restore(path, paused=False)
    config = world.config(name, uuid=UUID_A).to_dict()
    with pytest.raises(VmError, match=error):
        world.manager.mover.check(config)

    async def receive(machine: Any) -> None:
        raise AssertionError("nothing may be received for a refused domain")
    with pytest.raises(VmError, match=error):
        await world.manager.mover.launch(config, 0, receive)
    assert world.manager.select() == [] and world.machines.made == []


# ---- re-adoption at xend start ----------------------------------------------------------


@run
async def test_readoption_of_running_domains(tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await first.manager.create(first.config(on_reboot="preserve"))
    await first.manager.new(first.config("halted-one"))
    domid, pid = dom.domid, first.machine(dom).pid
    await first.manager.detach_all()  # xend stops; the guest runs on

    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    again = second.manager.lookup("guest")
    assert again.domid == domid and again.state == PowerState.RUNNING
    assert second.machine(again).pid == pid and "attach" in second.machine(again).calls
    assert second.manager.lookup("halted-one").state == PowerState.HALTED
    # and it is handled as before: its events reach the new xend
    second.machine(again).guest_stops("reboot")
    await second.settle()
    assert again.state == PowerState.SHUTDOWN


@run
async def test_readoption_drops_a_domain_that_ended_meanwhile(tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await first.manager.create(first.config())
    await first.manager.detach_all()
    first.machines.alive.clear()  # QEMU killed while xend was down
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    assert second.manager.select() == [] and second.records() == []
    assert "ended while xend was stopped" in second.hvlog.text()
    assert dom.domid is not None


@run
async def test_readoption_of_a_record_written_by_the_previous_xend(tmp_path: Path) -> None:
    """The runtime record keeps its format: one written by an older xend is read."""
    world = World(tmp_path)
    pid = world.machines.new_pid()
    world.machines.alive.add(pid)
    config = world.config("old", uuid=UUID_A).to_dict()
    world.store.put_running("0123456789abcdef", 7, {
        "version": 1, "instance": "0123456789abcdef", "domid": 7, "pid": pid,
        "config": config, "state": "paused", "managed": False, "start_time": 1000.0,
        "last_restart": None, "shutdown_reason": None, "next_vif_devid": 2,
        "vif_domid": 7})
    await world.manager.adopt_all()
    dom = world.manager.lookup("7")
    assert dom.name == "old" and dom.state == PowerState.PAUSED and dom.next_vif_devid == 2
    assert dom.running is not None and dom.running.vif_domid == 7
    assert dom.running.start_time == 1000.0
    assert world.machine(dom).paths == world.layout.domain("0123456789abcdef")


async def _xend_killed_mid_launch(tmp_path: Path, start: Callable[[World], Any]) -> World:
    """Start a launch in one xend, 'kill -9' that xend while its machine runs but the
    launch has not finished, and return the next xend after its adoption."""
    first = World(tmp_path)
    first.machines.hold_launch = asyncio.Event()
    pending = asyncio.ensure_future(start(first))
    for _ in range(100):
        await asyncio.sleep(0)
        if first.machines.running:
            break
    assert first.machines.running and not pending.done()
    # kill -9: the first xend runs no more code (its task stays parked for good)
    first.machines.hold_launch = None
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    await second.settle()
    return second


@run
async def test_a_create_cut_by_xend_death_is_rolled_back(tmp_path: Path) -> None:
    async def create(world: World) -> None:
        await world.manager.create(world.config(vifs=[VifSpec({"bridge": "xenbr0"})]))
    second = await _xend_killed_mid_launch(tmp_path, create)
    assert second.manager.select() == [] and second.records() == []
    assert second.machines.running == []
    assert second.vifs.unplugged == ["vif1.0"]
    assert "rolled back" in second.hvlog.text()
    # a retry is not refused as "already exists"
    dom = await second.manager.create(second.config())
    assert dom.state == PowerState.RUNNING


@run
async def test_a_managed_start_cut_by_xend_death_leaves_it_halted(tmp_path: Path) -> None:
    async def start(world: World) -> None:
        await world.manager.new(world.config())
        await world.manager.start_managed("guest")
    second = await _xend_killed_mid_launch(tmp_path, start)
    dom = second.manager.lookup("guest")
    assert dom.state == PowerState.HALTED and dom.running is None
    assert second.records() == [] and second.machines.running == []
    assert second.managed_rows() == {"guest": "halted"}


@run
async def test_readoption_of_a_guest_that_stopped_while_xend_was_away(tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await first.manager.create(first.config())
    machine = first.machine(dom)
    await first.manager.detach_all()
    machine.state = "shutdown"  # it powered off; nobody listened
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    await second.settle()
    assert second.manager.select() == [] and not machine.still_running()


# ---- managed domains: suspend, devices, resume -------------------------------------------


async def _suspended(world: World) -> Domain:
    await world.manager.new(world.config())
    await world.manager.start_managed("guest")
    await world.manager.suspend("guest")
    dom = world.manager.lookup("guest")
    assert dom.state == PowerState.SUSPENDED
    assert os.path.isfile(world.layout.checkpoint(dom.uuid))
    return dom


@run
async def test_suspended_state_survives_block_attach(world: World) -> None:
    dom = await _suspended(world)
    image = world.tmp / "data.img"
    image.write_bytes(bytes(1 << 16))
    await world.manager.block_attach("guest", f"file:{image}", "xvdb", "w")
    assert dom.state == PowerState.SUSPENDED
    assert world.managed_rows() == {"guest": "suspended"}
    await world.manager.block_detach("guest", "xvdb", False)
    assert world.managed_rows() == {"guest": "suspended"}


@run
async def test_suspended_state_survives_network_attach(world: World) -> None:
    await _suspended(world)
    devid = await world.manager.network_attach("guest", {"bridge": "xenbr0"})
    assert world.managed_rows() == {"guest": "suspended"}
    await world.manager.network_detach("guest", devid, False)
    assert world.managed_rows() == {"guest": "suspended"}


@run
async def test_suspended_state_survives_rename(world: World) -> None:
    await _suspended(world)
    await world.manager.rename("guest", "renamed")
    assert world.managed_rows() == {"renamed": "suspended"}


@run
async def test_suspended_attached_domain_resumes_after_xend_restart(tmp_path: Path) -> None:
    first = World(tmp_path)
    dom = await _suspended(first)
    image = tmp_path / "data.img"
    image.write_bytes(bytes(1 << 16))
    await first.manager.block_attach("guest", f"file:{image}", "xvdb", "w")
    await first.manager.detach_all()

    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    again = second.manager.lookup("guest")
    assert again.state == PowerState.SUSPENDED
    await second.manager.resume("guest", paused=False)
    assert again.state == PowerState.RUNNING
    machine = second.machine(again)
    # built as the checkpoint was (QEMU loads state only into the same devices),
    # the disk attached while suspended hot-plugged once it runs
    assert machine.spec is not None and machine.spec.disks == ()
    assert machine.calls.index("migrate_in") < machine.calls.index("attach_disk")
    assert [d.dev for d in machine.disks] == ["xvdb"]
    assert [d.dev for d in again.config.disks] == ["xvdb"]
    assert not os.path.exists(second.layout.checkpoint(dom.uuid))
    assert second.managed_rows() == {"guest": "halted"}


@run
async def test_failed_resume_stays_suspended(world: World) -> None:
    dom = await _suspended(world)
    world.machines.fail_launch = BackendError("boom")
    with pytest.raises(BackendError):
        await world.manager.resume("guest", paused=False)
    assert dom.state == PowerState.SUSPENDED and dom.running is None
    assert world.managed_rows() == {"guest": "suspended"}
    assert os.path.isfile(world.layout.checkpoint(dom.uuid))


@run
async def test_save_and_restore(world: World) -> None:
    dom = await world.manager.create(world.config())
    path = str(world.tmp / "guest.save")
    await world.manager.save("guest", path, checkpoint=False)
    assert world.manager.select() == [] and dom.running is None
    again = await world.manager.restore(path, paused=True)
    assert again.name == "guest" and again.state == PowerState.PAUSED
    assert world.machine(again).calls[:2] == ["launch", "migrate_in"]


@pytest.mark.parametrize("checkpoint", [False, True])
@run
async def test_a_save_cut_by_xend_death_leaves_no_partial_file(tmp_path: Path,
                                                               checkpoint: bool) -> None:
    """kill -9 of xend inside ``xm save``: the next xend removes the partial file,
    says so, and the guest (paused by the save) runs again."""
    first = World(tmp_path)
    dom = await first.manager.create(first.config())
    first.machines.hold_stream = asyncio.Event()
    path = tmp_path / "guest.save"
    pending = asyncio.ensure_future(first.manager.save("guest", str(path), checkpoint))
    for _ in range(100):
        await asyncio.sleep(0)
        if list(tmp_path.glob("guest.save.partial-*")):
            break
    assert list(tmp_path.glob("guest.save.partial-*")) and not pending.done()
    assert first.machine(dom).state == "paused"
    first.machines.hold_stream = None  # kill -9: the first xend runs no more code
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    assert list(tmp_path.glob("guest.save*")) == []
    assert "cut short" in second.hvlog.text()
    again = second.manager.lookup("guest")
    assert again.state == PowerState.RUNNING and second.machine(again).state == "running"
    assert second.store.partials() == []


@run
async def test_a_save_to_an_unwritable_place_names_the_cause(world: World) -> None:
    await world.manager.create(world.config())
    with pytest.raises(VmError, match="can't write guest state file .*No such file"):
        await world.manager.save("guest", str(world.tmp / "no" / "such.save"), False)
    assert world.manager.lookup("guest").state == PowerState.RUNNING
    assert world.store.partials() == []


@run
async def test_disk_detached_while_suspended_is_unplugged_after_resume(world: World) -> None:
    image = world.tmp / "data.img"
    image.write_bytes(bytes(1 << 16))
    await world.manager.new(world.config(disks=[DiskSpec(f"file:{image}", "xvdb", "w")]))
    await world.manager.start_managed("guest")
    await world.manager.suspend("guest")
    await world.manager.block_detach("guest", "xvdb", False)
    await world.manager.resume("guest", paused=True)
    dom = world.manager.lookup("guest")
    machine = world.machine(dom)
    assert machine.spec is not None and [d.dev for d in machine.spec.disks] == ["xvdb"]
    assert machine.disks == [] and dom.config.disks == []
    assert dom.state == PowerState.PAUSED and machine.state == "paused"


@run
async def test_vif_attached_while_suspended_is_hot_plugged_after_resume(world: World) -> None:
    await _suspended(world)
    devid = await world.manager.network_attach("guest", {"bridge": "xenbr0"})
    await world.manager.resume("guest", paused=False)
    dom = world.manager.lookup("guest")
    machine = world.machine(dom)
    assert machine.spec is not None and machine.spec.nics == ()
    assert [n.devid for n in machine.nics] == [devid] and "attach_nic" in machine.calls
    assert world.vifs.plugged == [f"vif{dom.domid}.{devid}"]
    assert dom.state == PowerState.RUNNING


@run
async def test_vif_ids_are_not_reused_across_an_xend_restart(tmp_path: Path) -> None:
    first = World(tmp_path)
    await first.manager.new(first.config(vifs=[VifSpec({"bridge": "xenbr0"})]))
    await first.manager.start_managed("guest")  # the vif gets ID 0
    await first.manager.destroy("guest")
    await first.manager.detach_all()
    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    assert await second.manager.network_attach("guest", {"bridge": "xenbr0"}) == 1
