"""A domain as xend holds it: its configuration, power state and (when it is
live) its QEMU machine, plus the runtime record persisted for re-adoption."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dom0.model.config import DomainConfig
from dom0.model.state import ACTIVE, XEN_API_STATUS, PowerState, state_string

if TYPE_CHECKING:
    from dom0.backends.qemu.machine import QemuMachine

RECORD_VERSION = 1


@dataclass(eq=False)
class Domain:
    config: DomainConfig
    state: PowerState = PowerState.HALTED
    managed: bool = False
    domid: int | None = None
    #: unique id of the current QEMU launch (names its sockets and logs)
    instance: str | None = None
    machine: QemuMachine | None = None
    start_time: float = 0.0
    #: when on_reboot/on_crash last restarted it (the restart-loop guard)
    last_restart: float | None = None
    #: what was last asked of the guest: poweroff, reboot or halt
    shutdown_request: str | None = None
    #: why the guest stopped: poweroff, reboot, crash
    shutdown_reason: str | None = None
    #: the next vif device ID (IDs are never reused while the domain lives)
    next_vif_devid: int = 0
    #: the domain ID its vif taps were named after (vif<domid>.<devid>) when plugged
    vif_domid: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: bumped on every state change; set when anything waits for one
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def uuid(self) -> str:
        return self.config.uuid

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def set_state(self, state: PowerState) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()

    # ---- the persisted runtime record ---------------------------------------

    def record(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "instance": self.instance,
            "domid": self.domid,
            "pid": self.machine.pid if self.machine else None,
            "config": self.config.to_dict(),
            "state": self.state.value,
            "managed": self.managed,
            "start_time": self.start_time,
            "last_restart": self.last_restart,
            "shutdown_reason": self.shutdown_reason,
            "next_vif_devid": self.next_vif_devid,
            "vif_domid": self.vif_domid,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Domain:
        return cls(
            config=DomainConfig.from_dict(rec["config"]),
            state=PowerState(rec.get("state", "running")),
            managed=bool(rec.get("managed")),
            domid=rec["domid"],
            instance=rec["instance"],
            start_time=rec.get("start_time") or time.time(),
            last_restart=rec.get("last_restart"),
            shutdown_reason=rec.get("shutdown_reason"),
            next_vif_devid=rec.get("next_vif_devid", 0),
            vif_domid=rec.get("vif_domid"),
        )

    # ---- what xm sees --------------------------------------------------------

    def info(self) -> dict[str, Any]:
        m = self.machine
        blocked = m.blocked() if (m and self.state == PowerState.RUNNING) else False
        running = self.active
        return {
            "name": self.name,
            "uuid": self.uuid,
            "domid": self.domid if running else None,
            "memory": self.config.memory,
            "maxmem": self.config.max_memory,
            "vcpus": self.config.vcpus,
            "online_vcpus": self.config.vcpus if running else 0,
            "state": state_string(self.state, blocked) if running else "",
            "power_state": self.state.value,
            "status": XEN_API_STATUS[self.state],
            "cpu_time": m.cpu_seconds() if (m and running) else 0.0,
            "start_time": self.start_time if running else None,
            "uptime": time.time() - self.start_time if running else 0.0,
            "managed": self.managed,
            "shutdown_reason": self.shutdown_reason,
            "console": m.paths.console_socket if (m and running) else None,
            "console_log": m.paths.console_log if m else None,
            "pid": m.pid if m else None,
            "config": self.config.to_dict(),
        }
