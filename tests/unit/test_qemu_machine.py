"""dom0.backends.qemu.machine: adopting a running QEMU and telling its owner when it
goes, against a real QEMU with no machine (fast; skipped only without QEMU).

What a guest does (poweroff, reboot, panic) needs a booted guest: the functional
tests cover it; the translation of those QMP events is tested in test_qemu_events.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dom0.backends.machine import Machine, MachineEvents
from dom0.backends.qemu.machine import QemuMachine
from dom0.store.layout import DomainPaths, Layout
from dom0.waiting import poll_until

QEMU = "qemu-system-x86_64"
pytestmark = pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} not installed")


@dataclass
class Recorder:
    """A MachineEvents that remembers what it was told."""

    stopped: list[str] = field(default_factory=list)
    gone_count: int = 0

    def guest_stopped(self, reason: str) -> None:
        self.stopped.append(reason)

    def gone(self) -> None:
        self.gone_count += 1


def paths(tmp_path: Path) -> DomainPaths:
    layout = Layout(state_dir=str(tmp_path / "state"), domains_dir=str(tmp_path / "domains"),
                    run_dir=str(tmp_path / "run"), log_dir=str(tmp_path / "log"),
                    dump_dir=str(tmp_path / "dump"))
    return layout.domain("inst-1")


def start_qemu(p: DomainPaths) -> subprocess.Popen[bytes]:
    """A QEMU with the sockets a domain's QEMU has (argv.py), and nothing else."""
    os.makedirs(p.run_dir, exist_ok=True)
    return subprocess.Popen(
        [QEMU, "-S", "-machine", "none", "-nodefaults", "-display", "none",
         "-chardev", f"socket,id=console0,path={p.serial_socket},server=on,wait=off",
         "-chardev", f"socket,id=qmp0,path={p.qmp_socket},server=on,wait=off",
         "-mon", "chardev=qmp0,mode=control"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def adopt(p: DomainPaths, proc: subprocess.Popen[bytes],
                events: MachineEvents) -> QemuMachine:
    machine = QemuMachine(p, QEMU, "tcg")
    assert await poll_until(lambda: os.path.exists(p.qmp_socket), 10.0)
    assert machine.recognise(proc.pid)
    await machine.attach(events)
    return machine


def test_the_contract_holds() -> None:
    """mypy checks it too (machine.py); this keeps the test suite honest about it."""
    machine: Machine = QemuMachine(paths(Path("/nonexistent")), QEMU, "tcg")
    assert machine.vcpu_threads == [] and machine.pid is None


def test_gone_when_qemu_dies_unasked(tmp_path: Path) -> None:
    p, events = paths(tmp_path), Recorder()

    async def go() -> None:
        proc = start_qemu(p)
        try:
            machine = await adopt(p, proc, events)
            assert await machine.runstate() == "prelaunch"
            assert machine.still_running()
            proc.kill()
            assert await poll_until(lambda: events.gone_count == 1, 5.0)
            await machine.detach()
        finally:
            proc.kill()
            proc.wait()
        assert events.stopped == []
    asyncio.run(go())


def test_letting_go_is_not_gone(tmp_path: Path) -> None:
    p, events = paths(tmp_path), Recorder()

    async def go() -> None:
        proc = start_qemu(p)
        try:
            machine = await adopt(p, proc, events)
            await machine.detach()
            await asyncio.sleep(0.1)
            assert proc.poll() is None  # it runs on
            # a new xend adopts it again
            again = await adopt(p, proc, Recorder())
            assert await again.runstate() == "prelaunch"
            await again.detach()
        finally:
            proc.kill()
            proc.wait()
        assert events.gone_count == 0
    asyncio.run(go())


def test_kill_ends_it_without_reporting_gone(tmp_path: Path) -> None:
    p, events = paths(tmp_path), Recorder()

    async def go() -> None:
        proc = start_qemu(p)
        try:
            machine = await adopt(p, proc, events)
            await machine.kill()
            assert proc.wait(timeout=5) != 0
            assert machine.pid is None and not os.path.exists(p.run_dir)
            await asyncio.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert events.gone_count == 0
    asyncio.run(go())


def test_a_recycled_pid_is_not_recognised(tmp_path: Path) -> None:
    machine = QemuMachine(paths(tmp_path), QEMU, "tcg")
    assert not machine.recognise(os.getpid())
    assert not machine.recognise(None)
