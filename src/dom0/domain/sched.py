"""CPU scheduling of domains: Xen's credit and SEDF parameters, kept in each
domain's config and mapped onto its vCPU threads' cgroup (backends/cgroups.py).

Xen chose its scheduler at boot; here xend-config's ``(sched credit|sedf)`` does,
and the other scheduler's commands are refused as Xen refused them.

- **credit**: ``cpu_weight`` is the domain's relative share (cgroup CPU weight),
  ``cpu_cap`` (percent of one CPU, 0 = none) a CFS quota over a 100 ms period.
- **SEDF**: a domain without extra time gets ``slice`` per ``period`` as a CFS quota
  over that period (per vCPU); with extra time it has no quota (it may use idle CPU)
  and its share comes from its SEDF weight (1 = the default share).  A non-zero
  weight makes it weight-driven, as in Xen (period 100 ms, no slice, extra time).
  ``latency`` is kept and shown, but Linux's CFS has no counterpart to it.

The parameters live in the config (``cpu_weight``, ``cpu_cap``, ``sedf_*``), so they
travel with save files and migrations and are re-applied when a domain is launched
or re-adopted.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from dom0.backends.cgroups import DEFAULT_PERIOD_US, DEFAULT_WEIGHT, CpuCgroups, CpuShare
from dom0.domain.domain import Domain
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.table import DomainTable
from dom0.errors import VmError
from dom0.model.config import DomainConfig
from dom0.model.state import LIVE

log = logging.getLogger(__name__)

SCHEDULERS = ("credit", "sedf")
MS = 1_000_000  # ns
#: CFS accepts periods from 1 ms to 1 s
PERIOD_RANGE_NS = (1 * MS, 1000 * MS)
#: how often (every 20 ms) a dead domain's cgroup removal is tried before the sweep's turn
RELEASE_TRIES = 250
#: Xen's SEDF defaults for a guest: best effort, 100 ms period, no slice, extra time
SEDF_PERIOD_NS = 100 * MS


@dataclass(frozen=True)
class Sedf:
    """A domain's SEDF parameters, in nanoseconds as Xen's interface had them."""

    period: int = SEDF_PERIOD_NS
    slice: int = 0
    latency: int = 0
    extratime: int = 1
    weight: int = 0

    @classmethod
    def of(cls, cfg: DomainConfig) -> Sedf:
        d = cls()
        return cls(period=_given(cfg.sedf_period, d.period), slice=_given(cfg.sedf_slice, d.slice),
                   latency=_given(cfg.sedf_latency, d.latency),
                   extratime=_given(cfg.sedf_extratime, d.extratime),
                   weight=_given(cfg.sedf_weight, d.weight))

    def store(self, cfg: DomainConfig) -> None:
        cfg.sedf_period, cfg.sedf_slice, cfg.sedf_latency = self.period, self.slice, self.latency
        cfg.sedf_extratime, cfg.sedf_weight = self.extratime, self.weight

    def checked(self) -> Sedf:
        """These parameters as a domain takes them, or the error: weight-driven when a
        weight is given (Xen's rule), else a slice within a period CFS can enforce."""
        if self.weight < 0:
            raise VmError("weight is out of range")
        if self.extratime not in (0, 1):
            raise VmError("extratime must be 0 or 1")
        if self.latency < 0:
            raise VmError("latency is out of range")
        if self.weight:
            return Sedf(SEDF_PERIOD_NS, 0, self.latency, 1, self.weight)
        lo, hi = PERIOD_RANGE_NS
        if not lo <= self.period <= hi:
            raise VmError(f"period is out of range (CFS periods are {lo // MS} to "
                          f"{hi // MS} ms)")
        if not 0 <= self.slice <= self.period:
            raise VmError("slice is out of range")
        if not self.extratime and self.slice < 1 * MS:
            raise VmError("a domain without extra time needs a slice of at least 1 ms")
        return self

    def row(self) -> dict[str, Any]:
        return {"period": self.period, "slice": self.slice, "latency": self.latency,
                "extratime": self.extratime, "weight": self.weight}


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def check_credit(weight: int | None, cap: int | None, vcpus: int) -> None:
    """xend's range checks of ``xm sched-credit`` (spec §1.3)."""
    if weight is not None and not 1 <= weight <= 65535:
        raise VmError("weight is out of range")
    if cap is not None and not 0 <= cap <= 100 * vcpus:
        raise VmError("cap is out of range")


def share(cfg: DomainConfig, scheduler: str) -> CpuShare:
    """What *cfg*'s cgroup is set to under *scheduler*."""
    if scheduler == "sedf":
        sedf = Sedf.of(cfg)
        if sedf.extratime:
            weight = min(65535, sedf.weight * DEFAULT_WEIGHT) if sedf.weight else DEFAULT_WEIGHT
            return CpuShare(weight=weight)
        # SEDF's slice is per vCPU; the cgroup's quota is the domain's
        return CpuShare(quota_us=sedf.slice // 1000 * cfg.vcpus, period_us=sedf.period // 1000)
    cap = cfg.cpu_cap or 0
    return CpuShare(weight=cfg.cpu_weight or DEFAULT_WEIGHT,
                    quota_us=cap * DEFAULT_PERIOD_US // 100 if cap else None)


class Scheduler:
    """The scheduler xend runs with, and each domain's cgroup under it."""

    def __init__(self, name: str, cgroups: CpuCgroups | None, table: DomainTable,
                 hvlog: HypervisorLog) -> None:
        if name not in SCHEDULERS:
            raise VmError(f"unknown scheduler: {name}")
        self.name = name
        self.cgroups = cgroups
        self.table = table
        self.hvlog = hvlog

    def require(self, name: str) -> None:
        if name != self.name:
            raise VmError(f"Xen is running with the {self.name} scheduler")

    # ---- a domain's threads ---------------------------------------------------------

    def place(self, dom: Domain) -> None:
        """Put *dom*'s vCPU threads in its cgroup, set from its config (at launch,
        re-adoption, after a change).  A host without the CPU controller, or a write
        the kernel refuses, is reported, never fatal: the guest runs, unweighed."""
        run = dom.running
        if self.cgroups is None or run is None or not run.machine.pid:
            return
        try:
            self.cgroups.place(dom.uuid, run.machine.pid, list(run.machine.vcpu_threads),
                               share(dom.config, self.name))
        except OSError as exc:
            log.error("cgroup of domain %s: %s", dom.name, exc)
            self.hvlog.add(f"Domain {run.domid} ({dom.name}) CPU weight and cap not "
                           f"applied: {exc}")

    async def release(self, dom: Domain) -> None:
        """*dom*'s machine is gone: its cgroup goes too, once the kernel has let go of
        the dead QEMU's threads (unless another QEMU of the same domain uses it: a
        migration's destination on this host).  What is left, the next sweep takes."""
        if self.cgroups is None:
            return
        dying = set(dom.running.machine.vcpu_threads) if dom.running else set()
        try:
            for _ in range(RELEASE_TRIES):
                if self.cgroups.remove(dom.uuid) or \
                        self.cgroups.in_use(dom.uuid, besides=dying) or \
                        not os.path.isdir(self.cgroups.path(dom.uuid)):
                    return
                await asyncio.sleep(0.02)
            log.warning("cgroup of domain %s still busy; left to the next sweep", dom.name)
        except OSError as exc:
            log.warning("cgroup of domain %s not removed: %s", dom.name, exc)

    def sweep(self) -> None:
        if self.cgroups is not None:
            try:
                for name in self.cgroups.sweep():
                    log.info("removed the cgroup of ended domain %s", name)
            except OSError as exc:
                log.warning("cgroup sweep: %s", exc)

    # ---- xm sched-credit ------------------------------------------------------------------

    def dom0_credit(self) -> dict[str, int]:
        """The host's own processes: the kernel's default share, no ceiling."""
        self.require("credit")
        return {"weight": DEFAULT_WEIGHT, "cap": 0}

    def dom0_sedf(self) -> dict[str, int]:
        """The host's own processes: no reservation, free to use any idle CPU."""
        self.require("sedf")
        return {"period": 0, "slice": 0, "latency": 0, "extratime": 1, "weight": 0}

    def credit_get(self, dom: Domain) -> dict[str, int]:
        """The weight and cap in force: read back from the cgroup while the domain
        runs (-1 each when they cannot be read), else its config's."""
        self.require("credit")
        if dom.running is None or dom.state not in LIVE or self.cgroups is None:
            return {"weight": dom.config.cpu_weight or DEFAULT_WEIGHT,
                    "cap": dom.config.cpu_cap or 0}
        if self.cgroups.holds(dom.uuid, share(dom.config, self.name)):
            return {"weight": dom.config.cpu_weight or DEFAULT_WEIGHT,
                    "cap": dom.config.cpu_cap or 0}
        try:  # changed behind xend's back: what is in force, as near as it reads
            now = self.cgroups.read(dom.uuid)
        except (OSError, ValueError):
            return {"weight": -1, "cap": -1}
        cap = 0 if now.quota_us is None else round(now.quota_us * 100 / now.period_us)
        return {"weight": now.weight, "cap": cap}

    async def credit_set(self, dom: Domain, weight: int | None, cap: int | None) -> None:
        self.require("credit")
        async with dom.lock:
            check_credit(weight, cap, dom.config.vcpus)
            if weight is not None:
                dom.config.cpu_weight = weight
            if cap is not None:
                dom.config.cpu_cap = cap
            self.table.save(dom)
            self.place(dom)

    # ---- xm sched-sedf ----------------------------------------------------------------------

    def sedf_get(self, dom: Domain) -> dict[str, int]:
        self.require("sedf")
        return Sedf.of(dom.config).row()

    async def sedf_set(self, dom: Domain, values: dict[str, int]) -> None:
        """Change the named SEDF parameters (ns); the others keep their values."""
        self.require("sedf")
        async with dom.lock:
            now = Sedf.of(dom.config).row()
            unknown = set(values) - set(now)
            if unknown:
                raise VmError(f"unknown SEDF parameter: {sorted(unknown)[0]}")
            Sedf(**{**now, **values}).checked().store(dom.config)
            self.table.save(dom)
            self.place(dom)
