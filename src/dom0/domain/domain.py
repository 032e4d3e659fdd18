"""A domain as xend holds it: its configuration, power state and (when it is
live) its running part, plus the runtime record persisted for re-adoption."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dom0.backends.machine import Machine
from dom0.model.config import DomainConfig
from dom0.model.state import ACTIVE, XEN_API_STATUS, PowerState, state_string

RECORD_VERSION = 1


def next_free_vif_devid(cfg: DomainConfig) -> int:
    """The next vif device ID of a domain whose vifs were numbered before (a
    managed, restored or migrating one): IDs are never reused in its life."""
    return 1 + max((v.devid for v in cfg.vifs if v.devid is not None), default=-1)


@dataclass(frozen=True, eq=False)
class Running:
    """What exists only while a domain has a machine: made whole at launch or
    re-adoption, dropped whole at teardown (a restart in place replaces it with
    a new domain ID and start time)."""

    machine: Machine
    #: unique id of this launch (names its sockets and logs)
    instance: str
    domid: int
    start_time: float
    #: the domain ID its vif taps were named after (vif<domid>.<devid>) when plugged;
    #: a restart in place changes ``domid`` but not the taps
    vif_domid: int | None = None
    #: the directory its vTPM keeps its state in (domain/vtpm.py), None: no vTPM
    tpm_state: str | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any], machine: Machine) -> Running:
        return cls(machine=machine, instance=rec["instance"], domid=rec["domid"],
                   start_time=rec.get("start_time") or time.time(),
                   vif_domid=rec.get("vif_domid"), tpm_state=rec.get("tpm_state"))


@dataclass(eq=False)
class Domain:
    config: DomainConfig
    state: PowerState = PowerState.HALTED
    managed: bool = False
    running: Running | None = None
    #: when on_reboot/on_crash last restarted it (the restart-loop guard)
    last_restart: float | None = None
    #: what was last asked of the guest: poweroff, reboot or halt
    shutdown_request: str | None = None
    #: why the guest stopped: poweroff, reboot, crash
    shutdown_reason: str | None = None
    #: why xend keeps it crashed rather than acting on it (the loop guard gave up,
    #: on_crash=preserve): set while it is kept, shown by ``xm list -l``
    crash_reason: str | None = None
    #: the next vif device ID (IDs are never reused while the domain lives)
    next_vif_devid: int = 0
    #: its machine is being started: a record still saying so at re-adoption is
    #: a launch cut short by xend's death, rolled back (a create is atomic)
    launching: bool = False
    #: its guest is being sent away (xm migrate): listed as ``migrating-<name>``, and
    #: an incoming migration of its UUID to this same xend (localhost) is let in
    migrating_out: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: bumped on every state change; set when anything waits for one
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"migrating-{self.config.name}" if self.migrating_out else self.config.name

    @property
    def uuid(self) -> str:
        return self.config.uuid

    @property
    def domid(self) -> int | None:
        return self.running.domid if self.running else None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def set_state(self, state: PowerState) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()

    # ---- the persisted runtime record ---------------------------------------

    def record(self, run: Running) -> dict[str, Any]:
        """The runtime record of this domain running as *run*.  Its keys are those
        xend has always written (a record of an older xend is re-adopted)."""
        return {
            "version": RECORD_VERSION,
            "instance": run.instance,
            "domid": run.domid,
            "pid": run.machine.pid,
            "config": self.config.to_dict(),
            "state": self.state.value,
            "managed": self.managed,
            "start_time": run.start_time,
            "last_restart": self.last_restart,
            "shutdown_reason": self.shutdown_reason,
            "crash_reason": self.crash_reason,
            "next_vif_devid": self.next_vif_devid,
            "vif_domid": run.vif_domid,
            "launching": self.launching,
            "tpm_state": run.tpm_state,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], run: Running) -> Domain:
        return cls(
            config=DomainConfig.from_dict(rec["config"]),
            state=PowerState(rec.get("state", "running")),
            managed=bool(rec.get("managed")),
            running=run,
            last_restart=rec.get("last_restart"),
            shutdown_reason=rec.get("shutdown_reason"),
            crash_reason=rec.get("crash_reason"),
            next_vif_devid=rec.get("next_vif_devid", 0),
            launching=bool(rec.get("launching")),
        )

    # ---- what xm sees --------------------------------------------------------

    def info(self) -> dict[str, Any]:
        run = self.running if self.active else None
        m = self.running.machine if self.running else None
        blocked = run.machine.blocked() if (run and self.state == PowerState.RUNNING) else False
        # a domain kept crashed after its QEMU ended has nothing to attach to
        console = run.machine.paths.console_socket if run and (
            self.state != PowerState.CRASHED or run.machine.still_running()) else None
        return {
            "name": self.name,
            "uuid": self.uuid,
            "domid": run.domid if run else None,
            # what the guest holds now (the balloon's actual), else its target
            "memory": (run.machine.balloon_now or self.config.memory) if run
            else self.config.memory,
            "maxmem": self.config.max_memory,
            "vcpus": self.config.vcpus,
            "online_vcpus": len(run.machine.vcpu_threads) if run else 0,
            "state": state_string(self.state, blocked) if run else "",
            "power_state": self.state.value,
            "status": XEN_API_STATUS[self.state],
            "cpu_time": run.machine.cpu_seconds() if run else 0.0,
            "start_time": run.start_time if run else None,
            "uptime": time.time() - run.start_time if run else 0.0,
            "managed": self.managed,
            "shutdown_reason": self.shutdown_reason,
            "crash_reason": self.crash_reason,
            "console": console,
            "console_log": m.paths.console_log if m else None,
            "vnc": run.machine.vnc_location if run else None,
            "pid": m.pid if m else None,
            "config": self.config.to_dict(),
        }
