"""Power states of a domain and the rules for moving between them."""

from __future__ import annotations

import enum

from dom0.errors import VmError


class PowerState(enum.Enum):
    HALTED = "halted"  # managed, no QEMU
    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"  # guest stopped, kept (on_* = preserve, or awaiting its action)
    CRASHED = "crashed"
    DYING = "dying"  # being torn down
    SUSPENDED = "suspended"  # managed, saved to its checkpoint


#: the states in which a domain has a QEMU running its guest
LIVE = (PowerState.RUNNING, PowerState.PAUSED)


#: Xen-API power-state numbers for the (status N) key of ``xm list -l``
XEN_API_STATUS = {
    PowerState.HALTED: 0, PowerState.PAUSED: 1, PowerState.RUNNING: 2,
    PowerState.SUSPENDED: 3, PowerState.SHUTDOWN: 4, PowerState.CRASHED: 5,
    PowerState.DYING: 6,
}

#: the names ``xm list --state=`` accepts, per state
STATE_FILTER = {
    PowerState.HALTED: "halted", PowerState.PAUSED: "paused", PowerState.RUNNING: "running",
    PowerState.SUSPENDED: "suspended", PowerState.SHUTDOWN: "halted",
    PowerState.CRASHED: "crashed", PowerState.DYING: "unknown",
}
STATE_FILTER_NAMES = ("halted", "paused", "running", "suspended", "crashed", "unknown", "all")

ACTIVE = (PowerState.RUNNING, PowerState.PAUSED, PowerState.SHUTDOWN, PowerState.CRASHED,
          PowerState.DYING)


def state_string(state: PowerState, blocked: bool = False) -> str:
    """Xen's six-flag column: running, blocked, paused, shutdown, crashed, dying."""
    flags = ["-"] * 6
    if state == PowerState.RUNNING:
        flags[1 if blocked else 0] = "b" if blocked else "r"
    elif state == PowerState.PAUSED:
        flags[2] = "p"
    elif state == PowerState.SHUTDOWN:
        flags[3] = "s"
    elif state == PowerState.CRASHED:
        flags[4] = "c"
    elif state == PowerState.DYING:
        flags[5] = "d"
    else:
        return ""
    return "".join(flags)


def require(state: PowerState, allowed: tuple[PowerState, ...], message: str) -> None:
    """Guard for an operation: raise the spec's message when the state does not allow it."""
    if state not in allowed:
        raise VmError(message, state=state.value)
