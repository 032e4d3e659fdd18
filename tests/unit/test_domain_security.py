"""The access control policy as the domain layer applies it: labels read from configs,
Chinese Wall against the running domains, dry-run's report (spec §8.1), resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dom0.domain.security import DomainSecurity, label_of
from dom0.errors import SecurityError
from dom0.model.config import DomainConfig
from dom0.model.labels import Label
from dom0.security.acm import AccessControl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml").read_text()
P = "dom0.example"


def cfg(name: str, label: str | None = None, disks: list[str] | None = None) -> DomainConfig:
    values: dict[str, Any] = {"name": name, "kernel": "/k", "memory": 64,
                              "disk": disks or []}
    if label:
        values["access_control"] = [f"policy={P},label={label}"]
    return DomainConfig.from_variables(values)


@pytest.fixture
def sec(tmp_path: Path) -> tuple[DomainSecurity, list[DomainConfig]]:
    running: list[DomainConfig] = []
    s = DomainSecurity(AccessControl(tmp_path / "sec"), lambda: [(c.name, c) for c in running])
    return s, running


def test_a_label_comes_from_access_control() -> None:
    assert label_of(cfg("a", "blue")) == Label(P, "blue")
    assert label_of(cfg("a")) is None


def test_chinese_wall_counts_only_other_running_domains(sec: Any) -> None:
    s, running = sec
    s.set_policy(EXAMPLE)
    running.append(cfg("b1", "bank_blue"))
    s.check_start(cfg("b2", "bank_blue"))
    with pytest.raises(SecurityError, match="Domain in conflict set with running domain"):
        s.check_start(cfg("r1", "bank_red"))
    running.clear()
    s.check_start(cfg("r1", "bank_red"))  # allowed once the blue bank is gone


def test_dry_run_reports_as_xm_did(sec: Any, tmp_path: Path) -> None:
    s, _ = sec
    blue, red = tmp_path / "blue.img", tmp_path / "red.img"
    blue.write_bytes(b"")
    red.write_bytes(b"")
    off = s.dry_run(cfg("b", "blue", [f"file:{blue},xvda,w"]))
    assert off == {"lines": ["Checking domain:", "   b: DENIED",
                             "   --> Security off, but domain labeled",
                             "Checking resources:", f"   file:{blue}: PERMITTED",
                             "Dry Run: FAILED"], "passed": False}
    s.set_policy(EXAMPLE)
    s.set_resource_label(f"file:{blue}", "blue_disk", None)
    s.set_resource_label(f"file:{red}", f"ACM:{P}:red_disk", None)
    ok = s.dry_run(cfg("b", "blue", [f"file:{blue},xvda,w"]))
    assert ok["passed"] and ok["lines"][-1] == "Dry Run: PASSED"
    bad = s.dry_run(cfg("b", "blue", [f"file:{blue},xvda,w", f"file:{red},xvdb,w"]))
    assert bad["lines"][4:] == [f"   file:{red}: DENIED",
                                f"   --> res: red_disk (ACM:{P})",
                                f"   --> dom: blue (ACM:{P})", "Dry Run: FAILED"]
    unlabeled = s.dry_run(cfg("u"))
    assert unlabeled["lines"][:3] == ["Checking domain:", "   u: DENIED",
                                      "   --> Domain not labeled"]


def test_resource_labels_through_the_domain_layer(sec: Any) -> None:
    s, _ = sec
    with pytest.raises(SecurityError, match="No policy is installed."):
        s.set_resource_label("vlan:4", "shared_net", None)
    s.set_policy(EXAMPLE)
    s.set_resource_label("vlan:4", "shared_net", None)
    assert s.resource_label("vlan:4") == f"ACM:{P}:shared_net"
    assert s.resources() == [{"resource": "vlan:4", "type": "ACM", "policy": P,
                              "label": "shared_net"}]
    with pytest.raises(SecurityError, match="not a resource label"):
        s.set_resource_label("vlan:5", "blue", None)
    with pytest.raises(SecurityError, match=r"Security policy \(x\) incompatible"):
        s.set_resource_label("vlan:5", "x:shared_net", None)
    s.remove_resource_label("vlan:4")
    with pytest.raises(SecurityError, match="Resource not labeled"):
        s.resource_label("vlan:4")


def test_getpolicy_labels_and_dump(sec: Any) -> None:
    s, running = sec
    assert s.policy_info() is None
    with pytest.raises(SecurityError, match="No policy active, you must specify a <policy>"):
        s.labels(None, "dom")
    assert s.labels(EXAMPLE, "res") == ["blue_disk", "red_disk", "shared_net"]
    with pytest.raises(SecurityError, match="'NULL' policy. Nothing to dump."):
        s.dump_policy()
    info = s.set_policy(EXAMPLE)
    assert (info["name"], info["version"], info["type"]) == (P, "1.0", "ACM")
    dump = s.dump_policy()
    assert "Chinese Wall policy:" in dump and "Simple Type Enforcement policy:" in dump
    assert "   SystemManagement  1 0 0  <-- Domain-0" in dump
    assert "   conflict set banks: bank_blue bank_red" in dump
    running.append(cfg("b", "blue"))
    with pytest.raises(SecurityError, match="Try to halt all guests"):
        s.reset_policy()
