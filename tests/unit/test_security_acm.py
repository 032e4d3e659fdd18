"""xend's access control with the example policy: installing, updating and resetting
the policy against running domains, and the checks at each entry point (spec §8.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0.errors import SecurityError
from dom0.model.labels import Label
from dom0.security.acm import AccessControl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml").read_text()
P = "dom0.example"


def lab(name: str, policy: str = P) -> Label:
    return Label(policy, name)


@pytest.fixture
def acm(tmp_path: Path) -> AccessControl:
    a = AccessControl(tmp_path / "security")
    a.set_policy(EXAMPLE, [])
    return a


def test_the_policy_survives_a_restart_and_reset_removes_it(tmp_path: Path,
                                                              acm: AccessControl) -> None:
    again = AccessControl(tmp_path / "security")
    assert again.active is not None and again.active.name == P
    with pytest.raises(SecurityError, match="Could not reset the system's policy. Try to "
                                            "halt all guests."):
        again.reset_policy([("a", lab("blue"))])
    again.reset_policy([("a", None)])
    assert again.active is None and AccessControl(tmp_path / "security").active is None


def test_no_policy_enforces_nothing(tmp_path: Path) -> None:
    a = AccessControl(tmp_path / "none")
    a.check_run(None, [])
    a.check_disk(None, "phy:/dev/sdz")
    a.check_network(None, "xenbr0")
    assert a.may_share_frames(lab("bank_blue"), lab("bank_red"))


def test_chinese_wall_at_start(acm: AccessControl) -> None:
    acm.check_run(lab("bank_blue"), [("x", lab("bank_blue")), ("y", None)])
    with pytest.raises(SecurityError, match=r"^Domain in conflict set with running domain\?$"):
        acm.check_run(lab("bank_red"), [("x", lab("bank_blue"))])
    with pytest.raises(SecurityError, match="^VM is not authorized to run.$"):
        acm.check_run(None, [])
    with pytest.raises(SecurityError, match="^VM is not authorized to run.$"):
        acm.check_run(lab("green"), [])
    with pytest.raises(SecurityError, match=r"Security policy \(other\) incompatible with "
                                            r"enforced policy \(dom0.example\)."):
        acm.check_run(lab("blue", "other"), [])


def test_ste_on_disks(acm: AccessControl, tmp_path: Path) -> None:
    img = tmp_path / "blue.img"
    img.write_bytes(b"")
    acm.resources.add(f"file:{img}", lab("blue_disk"))
    acm.check_disk(lab("blue"), f"file:{img}")
    acm.check_disk(lab("bank_blue"), f"file:{img}")
    with pytest.raises(SecurityError, match=f"^VM's access to block device 'file:{img}' denied"):
        acm.check_disk(lab("red"), f"file:{img}")
    with pytest.raises(SecurityError, match="VM must have a security label to access block"):
        acm.check_disk(None, f"file:{img}")
    with pytest.raises(SecurityError, match="Resource 'phy:/dev/sdq' is not labeled"):
        acm.check_disk(lab("blue"), "phy:/dev/sdq")


def test_ste_on_networks(acm: AccessControl) -> None:
    acm.resources.add("bridge:xenbr0", lab("shared_net"))
    acm.check_network(lab("blue"), "xenbr0")
    acm.check_network(lab("red"), "xenbr0")
    with pytest.raises(SecurityError, match="VM's access to network device denied"):
        acm.check_network(lab("bank_blue"), "xenbr0")
    acm.check_network(lab("bank_blue"), "xenbr1")  # unlabelled: shared, frames filtered
    with pytest.raises(SecurityError, match="must have a security label to access network"):
        acm.check_network(None, "xenbr1")
    assert acm.may_share_frames(lab("blue"), lab("red"))
    assert not acm.may_share_frames(lab("bank_blue"), lab("bank_red"))
    assert not acm.may_share_frames(lab("bank_blue"), None)


def test_an_update_that_running_domains_would_violate_is_refused(acm: AccessControl) -> None:
    without_red = EXAMPLE.replace("<Name>bank_red</Name>", "<Name>bank_rouge</Name>")
    with pytest.raises(SecurityError, match="label 'bank_red' of domain 'r' is not in policy"):
        acm.set_policy(without_red, [("r", lab("bank_red"))])
    other = EXAMPLE.replace("<PolicyName>dom0.example</PolicyName>",
                            "<PolicyName>dom0.other</PolicyName>")
    with pytest.raises(SecurityError, match="domain 'b' is labeled for policy 'dom0.example'"):
        acm.set_policy(other, [("b", lab("blue"))])
    assert acm.active is not None and acm.active.name == P  # unchanged
    # an update naming the old policy as FromPolicy keeps running domains valid
    renamed = other.replace("<Version>1.0</Version>", "<Version>1.1</Version><FromPolicy>"
                            "<PolicyName>dom0.example</PolicyName><Version>1.0</Version>"
                            "</FromPolicy>")
    acm.resources.add("vlan:3", lab("shared_net"))
    acm.set_policy(renamed, [("b", lab("blue"))])
    assert acm.active is not None and acm.active.name == "dom0.other"
    assert acm.resources.get("vlan:3") == lab("shared_net", "dom0.other")


def test_a_policy_making_running_domains_conflict_is_refused(acm: AccessControl) -> None:
    merged = EXAMPLE.replace("<Type>bank_red</Type>\n      </Conflict>",
                             "<Type>bank_red</Type>\n      </Conflict>")
    # blue and red run side by side today; a conflict set between them is refused
    conflicting = merged.replace(
        "</ConflictSets>",
        '<Conflict name="colours"><Type>bank_blue</Type><Type>SystemManagement</Type>'
        "</Conflict></ConflictSets>")
    with pytest.raises(SecurityError, match="domains 'a' and 'b' are in one conflict set"):
        acm.set_policy(conflicting, [("a", lab("bank_blue")), ("b", lab("SystemManagement"))])


def test_a_damaged_installed_policy_loads_none_and_says_so(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "policy.xml").write_text("<broken")
    assert AccessControl(d).active is None
    assert "is invalid, no policy loaded" in caplog.text
