"""QMP events in the backend contract's words (``MachineEvents``).

QEMU runs every guest with ``-action reboot=shutdown,shutdown=pause,panic=pause``
(argv.py), so a guest that powers off, reboots or panics stops and says why in
one event; the domain layer decides what on_poweroff/on_reboot/on_crash mean.
"""

from __future__ import annotations

from typing import Any

#: SHUTDOWN's ``reason`` -> how the guest stopped (any other guest reason is a poweroff)
_SHUTDOWN_REASONS = {"guest-reset": "reboot", "guest-panic": "crash"}


def guest_stop_reason(event: str, data: dict[str, Any]) -> str | None:
    """``poweroff``, ``reboot`` or ``crash`` when *event* says the guest stopped
    itself; None for every other event (and for a stop xend asked of QEMU, whose
    SHUTDOWN carries ``guest: false``)."""
    if event == "SHUTDOWN" and data.get("guest"):
        return _SHUTDOWN_REASONS.get(str(data.get("reason", "")), "poweroff")
    if event == "GUEST_PANICKED":
        return "crash"
    return None
