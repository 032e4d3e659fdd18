"""A machine that runs no guest: the ``Machine`` contract in memory, so the domain
layer's policy (restart actions, the loop guard, the shutdown watchdog, the
rollback of a failed launch, re-adoption) is unit-tested in milliseconds.

A test drives it from the guest's side: ``guest_stops("reboot")`` is the guest
rebooting, ``dies()`` is QEMU killed behind xend's back, ``fail_launch`` makes
the next launch fail as QEMU would, ``hold_launch`` keeps launches inside
(to let a test "kill xend" there), ``ignore_powerdown`` a guest deaf to the
power button.  ``FakeMachines`` is the factory the manager is built with; it
keeps every machine it made and knows which pids are "alive" (re-adoption).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from typing import Any

from dom0.backends import machine as contract
from dom0.backends.machine import MachineEvents, MachineSpec
from dom0.devices.vbd import Vbd
from dom0.devices.vif import Vif
from dom0.errors import BackendError
from dom0.model.usb import UsbDevice, UsbSlot
from dom0.store.layout import DomainPaths


def fake_threads(count: int) -> list[int]:
    """Thread IDs of a fake machine's vCPUs: above any pid_max (2^22), so that one
    handed to the real kernel by mistake fails (ESRCH) rather than pins a real thread."""
    return [(1 << 22) + 1000 + n for n in range(count)]


class FakeMachines:
    """The factory (``MachineFactory``), and the fake host's process table."""

    def __init__(self) -> None:
        self.made: list[FakeMachine] = []
        #: pids of machines that run (what /proc would show)
        self.alive: set[int] = set()
        self._pids = itertools.count(4000)
        #: the next launch fails with this (then it is cleared)
        self.fail_launch: BackendError | None = None
        #: launches wait on this once their process runs (xend killed mid-launch)
        self.hold_launch: asyncio.Event | None = None
        #: outgoing streams wait on this after their first bytes (xend killed mid-save)
        self.hold_stream: asyncio.Event | None = None

    def __call__(self, paths: DomainPaths) -> FakeMachine:
        machine = FakeMachine(paths, self)
        self.made.append(machine)
        return machine

    def new_pid(self) -> int:
        return next(self._pids)

    @property
    def running(self) -> list[FakeMachine]:
        return [m for m in self.made if m.pid is not None and m.pid in self.alive]


class FakeMachine:
    accel = "fake"

    def __init__(self, paths: DomainPaths, host: FakeMachines) -> None:
        self.paths = paths
        self.host = host
        self.pid: int | None = None
        self.vcpu_threads: list[int] = []
        self.vnc_location: str | None = None
        self.spec: MachineSpec | None = None
        self.events: MachineEvents | None = None
        #: QEMU's runstate words
        self.state = "prelaunch"
        #: every call made to it, by name, in order
        self.calls: list[str] = []
        self.ignore_powerdown = False
        self.incoming = False
        self.disks: list[Vbd] = []
        self.nics: list[Vif] = []
        #: the devices on its USB controller; None: it has none
        self.usb: list[UsbSlot] | None = None
        #: MiB the guest holds (the balloon's actual), and where a guest that cannot
        #: give more memory back stops
        self.balloon_now: int | None = None
        self.balloon_stuck_at: int | None = None

    # ---- what a test does to it ------------------------------------------------

    def guest_stops(self, reason: str) -> None:
        """The guest powers off, reboots or crashes (QEMU keeps the process)."""
        if self.events is None:
            raise RuntimeError("the machine was never launched or attached")
        self.state = "guest-panicked" if reason == "crash" else "shutdown"
        self.events.guest_stopped(reason)

    def dies(self) -> None:
        """QEMU is killed behind xend's back: the connection drops."""
        if self.pid is not None:
            self.host.alive.discard(self.pid)
        self.state = "gone"
        if self.events is not None:
            self.events.gone()

    # ---- bringing it up and letting go -------------------------------------------

    async def launch(self, spec: MachineSpec, events: MachineEvents,
                     incoming: bool = False) -> None:
        self.calls.append("launch")
        if self.host.fail_launch is not None:
            error, self.host.fail_launch = self.host.fail_launch, None
            raise error
        self.spec, self.events, self.incoming = spec, events, incoming
        self.disks, self.nics = list(spec.disks), list(spec.nics)
        self.usb = None if spec.usb is None else list(spec.usb)
        self.pid = self.host.new_pid()
        self.host.alive.add(self.pid)
        self.vcpu_threads = fake_threads(spec.vcpus)
        self.balloon_now = spec.memory
        self.state = "inmigrate" if incoming else "prelaunch"
        if self.host.hold_launch is not None:
            await self.host.hold_launch.wait()

    def recognise(self, pid: int | None) -> bool:
        if pid is None:  # not recorded yet: the pidfile of a machine at our paths
            pid = next((m.pid for m in self.host.made
                        if m is not self and m.paths == self.paths and m.pid is not None), None)
        if pid is not None and pid in self.host.alive:
            self.pid = pid
            # the same process as an earlier machine object's (a previous xend's)
            self.state = next((m.state for m in self.host.made
                               if m is not self and m.pid == pid), "running")
            return True
        return False

    async def attach(self, events: MachineEvents) -> None:
        self.calls.append("attach")
        self.events = events

    async def detach(self) -> None:
        self.calls.append("detach")
        self.events = None

    async def kill(self) -> None:
        self.calls.append("kill")
        if self.pid is not None:
            self.host.alive.discard(self.pid)
        self.pid, self.events, self.state = None, None, "gone"

    def still_running(self) -> bool:
        return self.pid is not None and self.pid in self.host.alive

    def tpm_pid(self) -> int | None:
        """The emulator "runs" with the machine when its spec has a TPM."""
        has_tpm = self.spec is not None and self.spec.tpm is not None
        return self.pid + 1 if has_tpm and self.still_running() and self.pid else None

    # ---- the guest -----------------------------------------------------------------

    def _check(self, verb: str) -> None:
        self.calls.append(verb)
        if not self.still_running():
            raise BackendError(f"{verb}: the machine is not running")

    async def runstate(self) -> str:
        self._check("runstate")
        return self.state

    async def cont(self) -> None:
        self._check("cont")
        self.state = "running"

    async def stop(self) -> None:
        self._check("stop")
        self.state = "paused"

    async def hard_reset(self) -> None:
        self._check("hard_reset")
        self.state = "running"

    async def powerdown(self) -> None:
        self._check("powerdown")
        if not self.ignore_powerdown:
            # a real guest takes a moment to shut down: the event comes later
            asyncio.get_running_loop().call_soon(self.guest_stops, "poweroff")

    async def trigger(self, name: str) -> None:
        self._check("trigger " + name)
        if name == "power" and not self.ignore_powerdown:
            asyncio.get_running_loop().call_soon(self.guest_stops, "poweroff")
        elif name in ("reset", "init"):
            self.state = "running"

    async def send_keys(self, *keys: str) -> None:
        self._check("send_keys " + "-".join(keys))
        if keys == ("ctrl", "alt", "delete") and not self.ignore_powerdown:
            asyncio.get_running_loop().call_soon(self.guest_stops, "reboot")

    async def screendump(self, path: str) -> None:
        self._check("screendump")

    async def dump_memory(self, path: str, timeout: float = 600.0) -> None:
        self._check("dump_memory")
        with open(path, "wb") as f:
            f.write(b"fake core of " + (self.spec.name if self.spec else "?").encode())

    # ---- devices ---------------------------------------------------------------------

    async def attach_disk(self, vbd: Vbd, timeout: float) -> None:
        self._check("attach_disk")
        self.disks.append(vbd)

    async def detach_disk(self, vbd: Vbd, timeout: float) -> bool:
        self._check("detach_disk")
        self.disks = [d for d in self.disks if d.devid != vbd.devid]
        return True

    async def change_media(self, old: Vbd, new: Vbd) -> None:
        self._check("change_media")

    async def attach_nic(self, vif: Vif, timeout: float) -> None:
        self._check("attach_nic")
        self.nics.append(vif)

    async def detach_nic(self, vif: Vif, timeout: float) -> bool:
        self._check("detach_nic")
        self.nics = [n for n in self.nics if n.devid != vif.devid]
        return True

    async def attach_usb(self, slot: UsbSlot) -> None:
        self._check("attach_usb")
        if self.usb is None:  # QEMU's own words
            raise BackendError("Bus 'usb.0' not found")
        if any(s.device == slot.device for s in self.usb):
            raise BackendError(f"Duplicate device ID '{slot.device.device_id}' for device")
        if any(s.port == slot.port for s in self.usb):
            raise BackendError(f"usb port {slot.port} (bus usb.0) not found (in use?)")
        self.usb.append(slot)

    async def detach_usb(self, dev: UsbDevice, timeout: float) -> bool:
        self._check("detach_usb")
        if self.usb is None or not any(s.device == dev for s in self.usb):
            raise BackendError(f"Device '{dev.device_id}' not found")
        self.usb = [s for s in self.usb if s.device != dev]
        return True

    async def guest_uses(self, device_id: str) -> bool:
        return self.still_running()

    # ---- state streams: save/restore and migration ------------------------------------

    async def migrate_out(self, sink: Callable[[bytes], None], timeout: float) -> None:
        self._check("migrate_out")
        sink(b"FAKE-STATE " + (self.spec.uuid if self.spec else "").encode())
        if self.host.hold_stream is not None:
            await self.host.hold_stream.wait()
        self.state = "postmigrate"  # as QEMU: stopped, its state sent

    async def migrate_in(self, image_path: str, offset: int, timeout: float) -> None:
        self._check("migrate_in")
        if not os.path.exists(image_path):
            raise BackendError(f"no such state file: {image_path}")
        self.state = "paused"

    @property
    def migration_socket(self) -> str:
        return self.paths.migration_socket

    async def start_migration(self, uri: str, live: bool, fd: int | None = None,
                              postcopy: bool = False, downtime_limit: float = 0.3) -> None:
        self._check("start_migration")
        self.state = "postmigrate"  # the fake's stream is complete at once

    async def receive_incoming(self, uri: str, fd: int | None = None,
                               postcopy: bool = False) -> None:
        self._check("receive_incoming")

    async def wait_incoming(self, timeout: float) -> None:
        self._check("wait_incoming")
        self.state = "paused"

    async def migration_info(self) -> dict[str, Any]:
        return {"status": "completed"}

    async def set_downtime_limit(self, seconds: float) -> None:
        self._check("set_downtime_limit")

    async def escalate_migration(self, step: int) -> str:
        self._check("escalate_migration")
        return "aborting"

    async def dirty_rate(self, seconds: int = 1) -> float:
        return 0.0

    async def ram_sampler(self) -> tuple[int, Any]:
        return ((self.spec.maxmem if self.spec else 0) << 20, None)

    # ---- vCPUs and memory ---------------------------------------------------------------
    # The guest reaches a balloon target at once unless ``balloon_stuck_at`` says where
    # it stops.

    async def refresh_vcpus(self) -> None:
        self._check("refresh_vcpus")

    async def set_vcpu_count(self, count: int, timeout: float) -> int:
        self._check(f"set_vcpu_count {count}")
        top = max(self.spec.maxvcpus, self.spec.vcpus) if self.spec else 1
        self.vcpu_threads = fake_threads(max(1, min(count, top)))
        return len(self.vcpu_threads)

    async def set_balloon(self, mib: int) -> None:
        self._check("set_balloon")
        self.balloon_now = mib if self.balloon_stuck_at is None else max(mib, self.balloon_stuck_at)

    async def ram_mib(self) -> int:
        return self.spec.maxmem if self.spec else 0

    # ---- host-side figures ------------------------------------------------------------

    def cpu_seconds(self) -> float:
        return 0.0

    def vcpu_figures(self) -> list[tuple[float, int, str]]:
        return [(0.0, 0, "S") for _ in self.vcpu_threads]  # idle vCPUs on host CPU 0

    def blocked(self) -> bool:
        return False

    # ---- xm top and the metrics exporter ----------------------------------------------

    async def block_stats(self, timeout: float) -> list[contract.BlockStats]:
        self._check("block_stats")
        return [contract.BlockStats(device_id=d.device_id) for d in self.disks]

    async def balloon_bytes(self, timeout: float | None = None) -> int:
        self._check("balloon_bytes")
        return (self.balloon_now or 0) << 20


def _is_a_machine(machine: FakeMachine) -> contract.Machine:
    """mypy checks here that FakeMachine implements the contract."""
    return machine
