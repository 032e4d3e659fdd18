"""dom0.backends.qemu.events: QMP events -> why the guest stopped."""

from __future__ import annotations

from typing import Any

import pytest

from dom0.backends.qemu.events import guest_stop_reason


@pytest.mark.parametrize("event, data, reason", [
    ("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}, "poweroff"),
    ("SHUTDOWN", {"guest": True, "reason": "guest-reset"}, "reboot"),
    ("SHUTDOWN", {"guest": True, "reason": "guest-panic"}, "crash"),
    ("SHUTDOWN", {"guest": True}, "poweroff"),
    ("GUEST_PANICKED", {"action": "pause"}, "crash"),
    # xend's own requests (quit, host-qmp-system-reset) are not the guest's doing
    ("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}, None),
    ("SHUTDOWN", {"guest": False, "reason": "host-qmp-system-reset"}, None),
    ("STOP", {}, None),
    ("RESUME", {}, None),
    ("DEVICE_DELETED", {"device": "vbd-51712"}, None),
])
def test_guest_stop_reason(event: str, data: dict[str, Any], reason: str | None) -> None:
    assert guest_stop_reason(event, data) == reason
