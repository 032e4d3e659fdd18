"""The host's memory as Xen's toolstack accounted it: what ``xm info`` calls
total_memory and free_memory, and the check that refuses a domain (or a
``mem-set`` upwards) that does not fit, with Xen's messages (spec §9).

Xen gave a domain its memory when it was built; QEMU commits guest pages lazily,
and a ballooned page goes back to the host.  So a running domain is counted at
its balloon target (``memory``, what ``mem-set`` sets), not at ``maxmem`` (the RAM
QEMU was started with, most of which the balloon holds back), and not at what it
has touched so far (which grows as the guest runs: counting that would admit
domains that later cannot all have what they were promised).

The host itself is Xen's domain 0.  It keeps what it uses now outside the guests
(total - available - the guests' QEMU resident memory); with ballooning enabled
(``enable-dom0-ballooning``, on when ``dom0-min-mem`` is set) it keeps at least
``dom0-min-mem``, as Xen's dom0 never shrank below it.  Free memory is what is
left once every running domain has its target.
"""

from __future__ import annotations

from dataclasses import dataclass

from dom0.errors import VmError


@dataclass(frozen=True)
class HostMemory:
    """/proc/meminfo's figures, KiB."""

    total_kib: int
    available_kib: int


def read_host_memory() -> HostMemory:
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                fields[key] = int(rest.split()[0])
    return HostMemory(fields["MemTotal"], fields["MemAvailable"])


def resident_kib(pid: int | None) -> int:
    """A process's resident memory (VmRSS), 0 when it is gone."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class MemoryAccount:
    """One look at the host: KiB throughout."""

    host: HostMemory
    #: the running domains' balloon targets, summed
    targets_kib: int
    #: their QEMU processes' resident memory, summed
    resident_kib: int
    dom0_min_kib: int = 0
    ballooning: bool = False

    @property
    def host_own_kib(self) -> int:
        """What the host uses itself, guests aside."""
        return max(0, self.host.total_kib - self.host.available_kib - self.resident_kib)

    @property
    def dom0_kib(self) -> int:
        floor = self.dom0_min_kib if self.ballooning else 0
        return max(self.host_own_kib, floor)

    @property
    def free_kib(self) -> int:
        return max(0, self.host.total_kib - self.dom0_kib - self.targets_kib)

    def require(self, need_kib: int) -> None:
        """Refuse *need_kib* more for guests when it is not free (Xen's balloon.free)."""
        free = self.free_kib
        if need_kib <= free:
            return
        if not self.ballooning:
            raise VmError("Not enough free memory and enable-dom0-ballooning is False, so I "
                          f"cannot release any more.  I need {need_kib} KiB but only have "
                          f"{free}.")
        raise VmError(f"I need {need_kib} KiB, but dom0_min_mem is {self.dom0_min_kib} and "
                      f"shrinking to {self.dom0_min_kib} KiB would leave only {free} KiB "
                      "free.")
