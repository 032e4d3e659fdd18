"""QEMU's vCPU slots (``query-hotpluggable-cpus``) and what ``xm vcpu-set`` does
with them: pure, so the plan is unit-tested without QEMU.

A machine started with ``-smp N,maxcpus=M`` has M slots, the first N filled.  A
slot is filled with ``device_add`` of the CPU type QEMU names for it, at the slot's
topology (socket/die/core/thread ids); a filled slot is emptied with
``device_del`` of its QOM path, which asks the guest (ACPI) to offline and eject
the CPU.  vCPU numbers follow slot order, so we fill the lowest empty slots and
empty the highest filled ones: the present vCPUs stay 0..count-1, as in Xen.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

#: Under TCG, QEMU 7.2 dies (an assertion in tcg_register_thread, or a crash) when a
#: vCPU is plugged into a machine that has had one unplugged, in whatever slot and
#: however many slots it has.  xend refuses that plug instead: the guest keeps running
#: with the vCPUs it has, and a restart of the domain lifts the limit.
TCG_REPLUG = ("QEMU (TCG) cannot plug a vCPU into a machine it has unplugged one from "
              "(QEMU 7.2 would abort); restart the domain to have more vCPUs")


@dataclass
class Budget:
    """The machine's vCPU slots and whether it may still plug, kept in its run
    directory (it outlives xend)."""

    #: the domain's vCPU slots (the spares above are never filled as such)
    max: int
    #: a vCPU may be plugged (false under TCG once one was unplugged: TCG_REPLUG)
    can_plug: bool = True

    @classmethod
    def load(cls, path: str) -> Budget | None:
        try:
            with open(path) as f:
                return cls(**json.load(f))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, path)

#: topology properties, most significant first
_TOPOLOGY = ("node-id", "socket-id", "die-id", "cluster-id", "core-id", "thread-id")

Slot = dict[str, Any]


def ordered(slots: list[Slot]) -> list[Slot]:
    """The slots in vCPU order (QEMU lists them highest first)."""
    return sorted(slots, key=lambda s: tuple(s.get("props", {}).get(k, 0) for k in _TOPOLOGY))


def plug_args(slot: Slot, vcpu: int) -> dict[str, Any]:
    """``device_add`` arguments filling *slot* as vCPU number *vcpu*."""
    return {"driver": slot["type"], "id": f"vcpu{vcpu}", **slot.get("props", {})}


def plan(slots: list[Slot], count: int,
         limit: int | None = None) -> tuple[list[tuple[int, Slot]], list[str]]:
    """What brings the present vCPUs to *count*: (vCPU number, slot) pairs to fill,
    and the QOM paths to empty, highest first.  vCPU 0 is never removed; only the
    first *limit* slots are the domain's."""
    slots = ordered(slots)[:limit]
    filled = [i for i, s in enumerate(slots) if s.get("qom-path")]
    empty = [i for i, s in enumerate(slots) if not s.get("qom-path")]
    count = max(1, min(count, len(slots)))
    if count >= len(filled):
        return [(i, slots[i]) for i in empty[:count - len(filled)]], []
    doomed = [i for i in reversed(filled) if i != 0][:len(filled) - count]
    return [], [str(slots[i]["qom-path"]) for i in doomed]
