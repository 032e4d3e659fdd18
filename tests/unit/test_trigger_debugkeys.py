"""xm trigger and xm debug-keys in the domain layer, on FakeMachine: which machine
verb each trigger is, the spec's errors, and what debug keys write to xm dmesg."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lifecycle_policy import World, run

from dom0.errors import InvalidDomain, VmError
from dom0.model.state import PowerState


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@run
async def test_each_trigger_reaches_the_machine(world: World) -> None:
    dom = await world.manager.create(world.config(vcpus=2))
    machine = world.machine(dom)
    for name in ("nmi", "s3resume", "init", "reset", "NMI"):
        await world.manager.trigger("guest", name)
    await world.manager.trigger("guest", "nmi", 1)
    assert [c for c in machine.calls if c.startswith("trigger")] == [
        "trigger nmi", "trigger s3resume", "trigger init", "trigger reset", "trigger nmi",
        "trigger nmi"]
    assert dom.state == PowerState.RUNNING and dom.domid == world.manager.lookup("guest").domid


@run
async def test_power_trigger_powers_the_guest_off(world: World) -> None:
    await world.manager.create(world.config())
    await world.manager.trigger("guest", "power")
    await world.settle()
    with pytest.raises(InvalidDomain):  # on_poweroff=destroy
        world.manager.lookup("guest")


@run
async def test_trigger_errors_as_xen(world: World) -> None:
    await world.manager.create(world.config())
    with pytest.raises(VmError, match=r"^Invalid trigger: boom$"):
        await world.manager.trigger("guest", "boom")
    with pytest.raises(VmError, match=r"^Invalid VCPU: 3"):
        await world.manager.trigger("guest", "nmi", 3)
    with pytest.raises(VmError, match="privileged domain 0"):
        await world.manager.trigger("0", "nmi")
    with pytest.raises(InvalidDomain):
        await world.manager.trigger("ghost", "nmi")
    await world.manager.new(world.config(name="idle"))
    with pytest.raises(VmError, match=r"^Domain 'idle' is not started$"):
        await world.manager.trigger("idle", "nmi")


@run
async def test_debug_keys_dump_domains_and_vcpus_into_dmesg(world: World) -> None:
    dom = await world.manager.create(world.config(vcpus=2, memory=64))
    machine = world.machine(dom)
    machine.vcpu_threads = [machine.pid or 0, machine.pid or 0]
    await world.manager.new(world.config(name="idle"))
    world.manager.debug_keys("qvhx")
    text = world.hvlog.text()
    assert f"General information for domain {dom.domid} (guest):" in text
    assert f"qemu pid={machine.pid} accel=fake" in text
    assert "memory=64 MiB" in text and "General information for domain - (idle):" in text
    assert f"VCPU information for domain {dom.domid} (guest):" in text
    assert "    VCPU1: thread=" in text
    assert " 'q' pressed -> dump domain (and guest debug) info" in text
    assert "'x' pressed -> no handler ('h' lists the keys)" in text
    assert all(line.startswith("(XEN) ") for line in text.splitlines())
