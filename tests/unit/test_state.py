"""dom0.model.state: Xen's six-flag state string (spec §1.3)."""

from __future__ import annotations

import pytest

from dom0.errors import VmError
from dom0.model.state import (
    ACTIVE,
    STATE_FILTER,
    STATE_FILTER_NAMES,
    XEN_API_STATUS,
    PowerState,
    require,
    state_string,
)


@pytest.mark.parametrize("state, text", [
    (PowerState.RUNNING, "r-----"),
    (PowerState.PAUSED, "--p---"),
    (PowerState.SHUTDOWN, "---s--"),
    (PowerState.CRASHED, "----c-"),
    (PowerState.DYING, "-----d"),
    (PowerState.HALTED, ""),
    (PowerState.SUSPENDED, ""),
])
def test_state_string(state: PowerState, text: str) -> None:
    assert state_string(state) == text


def test_blocked_running_domain() -> None:
    assert state_string(PowerState.RUNNING, blocked=True) == "-b----"


@pytest.mark.parametrize("state", [PowerState.PAUSED, PowerState.SHUTDOWN,
                                   PowerState.CRASHED, PowerState.DYING])
def test_blocked_only_matters_when_running(state: PowerState) -> None:
    assert state_string(state, blocked=True) == state_string(state)


def test_every_active_state_has_six_flags() -> None:
    for state in ACTIVE:
        text = state_string(state)
        assert len(text) == 6
        assert sum(c != "-" for c in text) == 1


def test_xen_api_status_numbers() -> None:
    assert XEN_API_STATUS == {
        PowerState.HALTED: 0, PowerState.PAUSED: 1, PowerState.RUNNING: 2,
        PowerState.SUSPENDED: 3, PowerState.SHUTDOWN: 4, PowerState.CRASHED: 5,
        PowerState.DYING: 6,
    }


def test_state_filter_names() -> None:
    assert STATE_FILTER_NAMES == ("halted", "paused", "running", "suspended", "crashed",
                                  "unknown", "all")
    assert set(STATE_FILTER) == set(PowerState)
    assert set(STATE_FILTER.values()) <= set(STATE_FILTER_NAMES)


def test_require() -> None:
    require(PowerState.RUNNING, (PowerState.RUNNING, PowerState.PAUSED), "unused")
    with pytest.raises(VmError) as info:
        require(PowerState.HALTED, (PowerState.RUNNING,), "Domain is not running")
    assert str(info.value) == "Domain is not running"
    assert info.value.data == {"state": "halted"}
