"""The vtpm grammar of spec §3.4."""

from __future__ import annotations

import json

import pytest

from dom0.cli.configfile import build_config
from dom0.errors import ConfigError
from dom0.model.config import DomainConfig
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


def test_the_config_field_prints_and_reads_back_as_a_device() -> None:
    cfg = build_config({"name": "vm", "kernel": "/k", "vtpm": ["instance=1,backend=0"]})
    assert cfg.vtpms == [VtpmSpec(1, 0)] and "vtpm" not in cfg.other
    assert cfg.to_sxp()[-1] == ["device", ["vtpm", ["pref_instance", "1"], ["backend", "0"]]]
    assert DomainConfig.from_sxp(cfg.to_sxp()).vtpms == cfg.vtpms
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # one string (vtpm = 'instance=1' in a config file) is a list of that one
    assert build_config({"name": "vm", "kernel": "/k", "vtpm": "instance=VTPMD"}).vtpms == [
        VtpmSpec(0, 0)]
    assert build_config({"name": "vm", "kernel": "/k"}).vtpms == []


def test_a_bad_entry_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(ConfigError, match="Invalid vtpm specifier: type=tpm2"):
        build_config({"name": "vm", "kernel": "/k", "vtpm": ["instance=1,type=tpm2"]})
