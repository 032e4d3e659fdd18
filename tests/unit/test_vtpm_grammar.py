"""The vtpm grammar of spec §3.4."""

from __future__ import annotations

import pytest

from dom0.errors import ConfigError
from dom0.model.vtpm import VtpmSpec, parse_vtpm


def test_entries() -> None:
    assert parse_vtpm([]) is None
    assert parse_vtpm(["instance=1,backend=0"]) == VtpmSpec(1, 0)
    assert parse_vtpm(["instance=VTPMD"]) == VtpmSpec(0, 0)
    assert parse_vtpm(["backend=0", "instance=7"]) == VtpmSpec(0, 0)  # only the first
    assert VtpmSpec(1, 0).to_sxp() == ["vtpm", ["pref_instance", "1"], ["backend", "0"]]


@pytest.mark.parametrize("entry, message", [
    ("type=tpm2", "Invalid vtpm specifier: type=tpm2"),
    ("instance", "Invalid vtpm specifier: instance"),
    ("instance=0", "VM config error: vTPM instance must not be 0."),
    ("instance=x", "Vm config error: could not parse instance number."),
    ("instance=1,backend=3", "Only Domain-0 can be a vTPM backend"),
])
def test_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_vtpm([entry])
