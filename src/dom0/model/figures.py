"""The figures ``xm top`` shows and xend's Prometheus exporter serves: one home for
both.  xend measures them (``domain/stats.py`` for domains, ``daemon/host.py`` for
the host) into a ``Snapshot``; the snapshot crosses the API as JSON and comes back
as the same dataclasses on xm's side.

Counters are cumulative (CPU seconds, bytes, operations); rates such as CPU(%)
are differences between two snapshots (``cpu_percent``), as xentop computed them,
so any number of clients can watch without xend keeping state for them.

Network figures are the guest's view: ``tx`` is what the guest sent (its tap
received it), ``rx`` what it received, as xentop reported them (it swapped the
host-side vif counters the same way)."""

from __future__ import annotations

TYPE_CHECKING = False  # mypy takes it as true: it checks the real dataclasses

if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Any
else:  # xm top's start: the same records without importing dataclasses (model/records.py)
    from dom0.model.records import dataclass


@dataclass(frozen=True)
class NetFigures:
    """One vif, counted from the guest's side."""

    devid: int
    vifname: str
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_drops: int = 0
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_drops: int = 0


@dataclass(frozen=True)
class VbdFigures:
    """One virtual block device: QEMU's block statistics of it."""

    dev: str
    devid: int
    #: Xen's "out of requests" count: a ring we do not have, so QEMU's failed operations
    oo: int = 0
    rd_ops: int = 0
    wr_ops: int = 0
    rd_bytes: int = 0
    wr_bytes: int = 0


@dataclass(frozen=True)
class DomainFigures:
    name: str
    uuid: str
    domid: int
    #: ``xm list``'s six flags: running, blocked, paused, shutdown, crashed, dying
    state: str
    #: CPU time of the vCPU threads (Domain-0: the host's busy time)
    cpu_seconds: float
    #: the guest's current size (the balloon's actual value), KiB
    memory_kib: int
    #: what it may grow to; None is "no limit"
    maxmem_kib: int | None
    vcpus: int
    vcpu_seconds: tuple[float, ...] = ()
    nets: tuple[NetFigures, ...] = ()
    vbds: tuple[VbdFigures, ...] = ()
    #: the ACM security label's ID: 0 until labels exist
    ssid: int = 0

    @property
    def net_tx_bytes(self) -> int:
        return sum(n.tx_bytes for n in self.nets)

    @property
    def net_rx_bytes(self) -> int:
        return sum(n.rx_bytes for n in self.nets)

    @property
    def vbd_oo(self) -> int:
        return sum(v.oo for v in self.vbds)

    @property
    def vbd_rd(self) -> int:
        return sum(v.rd_ops for v in self.vbds)

    @property
    def vbd_wr(self) -> int:
        return sum(v.wr_ops for v in self.vbds)

    def flag(self, letter: str) -> bool:
        return letter in self.state

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["vcpu_seconds"] = list(self.vcpu_seconds)
        out["nets"] = [dict(vars(n)) for n in self.nets]
        out["vbds"] = [dict(vars(v)) for v in self.vbds]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DomainFigures:
        d = dict(d)
        d["vcpu_seconds"] = tuple(d.get("vcpu_seconds", ()))
        d["nets"] = tuple(NetFigures(**n) for n in d.get("nets", ()))
        d["vbds"] = tuple(VbdFigures(**v) for v in d.get("vbds", ()))
        return cls(**d)


@dataclass(frozen=True)
class HostFigures:
    hostname: str
    #: what stands for Xen's version in xentop's title: the QEMU version
    version: str
    mem_total_kib: int
    mem_free_kib: int
    cpus: int
    cpu_mhz: int


@dataclass(frozen=True)
class Snapshot:
    """Every domain's figures at one moment."""

    #: CLOCK_MONOTONIC seconds when it was taken (rates divide by differences of it)
    taken: float
    #: wall-clock time of the same moment (the header's HH:MM:SS)
    wall: float
    host: HostFigures
    domains: tuple[DomainFigures, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """For the wire (JSON): nested records as objects."""
        return {"taken": self.taken, "wall": self.wall, "host": dict(vars(self.host)),
                "domains": [d.to_dict() for d in self.domains]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        return cls(taken=float(d["taken"]), wall=float(d["wall"]),
                   host=HostFigures(**d["host"]),
                   domains=tuple(DomainFigures.from_dict(x) for x in d["domains"]))

    def state_counts(self) -> dict[str, int]:
        """xentop's tally: each domain counted once, by the first of its flags in
        the order running, blocked, paused, shutdown, crashed, dying."""
        counts = dict.fromkeys(("running", "blocked", "paused", "crashed", "dying",
                                "shutdown"), 0)
        for dom in self.domains:
            for letter, name in (("r", "running"), ("b", "blocked"), ("p", "paused"),
                                 ("s", "shutdown"), ("c", "crashed"), ("d", "dying")):
                if dom.flag(letter):
                    counts[name] += 1
                    break
        return counts


def cpu_percent(prev: Snapshot | None, cur: Snapshot, dom: DomainFigures) -> float:
    """CPU(%) of *dom* between two snapshots (100 = one host CPU); 0.0 without a
    previous one or when the domain is new in *cur* (as xentop's first screen)."""
    if prev is None or cur.taken <= prev.taken:
        return 0.0
    before = next((d for d in prev.domains if d.uuid == dom.uuid and d.domid == dom.domid),
                  None)
    if before is None:
        return 0.0
    used = max(0.0, dom.cpu_seconds - before.cpu_seconds)
    return used / (cur.taken - prev.taken) * 100.0
