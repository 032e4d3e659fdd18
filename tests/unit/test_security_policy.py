"""The ACM policy model: reading Xen's policy XML safely, the schema's and the model's
checks, and the STE and Chinese Wall decisions (spec §8.2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dom0.errors import SecurityError
from dom0.model.labels import find_policy_file, policy_filename
from dom0.security import policy

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml"


def example() -> policy.Policy:
    return policy.parse(EXAMPLE.read_bytes())


def doc(header: str = "<PolicyName>t</PolicyName><Version>1.0</Version>",
        body: str = "", labels: str = "") -> str:
    return (f'<SecurityPolicyDefinition xmlns="http://www.ibm.com">'
            f"<PolicyHeader>{header}</PolicyHeader>{body}"
            f"<SecurityLabelTemplate>{labels}</SecurityLabelTemplate>"
            f"</SecurityPolicyDefinition>")


STE = ("<SimpleTypeEnforcement><SimpleTypeEnforcementTypes><Type>a</Type><Type>b</Type>"
       "</SimpleTypeEnforcementTypes></SimpleTypeEnforcement>")


def vm(name: str, ste: str = "", cw: str = "") -> str:
    s = f"<SimpleTypeEnforcementTypes><Type>{ste}</Type></SimpleTypeEnforcementTypes>" \
        if ste else ""
    c = f"<ChineseWallTypes><Type>{cw}</Type></ChineseWallTypes>" if cw else ""
    return f"<VirtualMachineLabel><Name>{name}</Name>{s}{c}</VirtualMachineLabel>"


def test_the_example_policy_reads_into_its_types_and_labels() -> None:
    p = example()
    assert p.name == "dom0.example" and p.version == "1.0"
    assert p.ste_types == ("SystemManagement", "blue", "red", "common")
    assert p.conflicts == {"banks": frozenset({"bank_blue", "bank_red"})}
    assert p.bootstrap == "SystemManagement"
    assert p.labels() == ["SystemManagement", "bank_blue", "bank_red", "blue", "red"]
    assert p.labels("res") == ["blue_disk", "red_disk", "shared_net"]
    assert p.labels("any") == sorted(p.labels() + p.labels("res"))


def test_ste_lets_a_domain_use_only_resources_of_its_types() -> None:
    p = example()
    assert p.may_use("blue", "blue_disk") and p.may_use("red", "red_disk")
    assert not p.may_use("blue", "red_disk") and not p.may_use("bank_red", "blue_disk")
    assert p.may_use("blue", "shared_net") and p.may_use("red", "shared_net")
    assert not p.may_use("bank_blue", "shared_net")
    assert p.may_share("blue", "red")  # both hold `common`
    assert not p.may_share("bank_blue", "bank_red")


def test_chinese_wall_forbids_different_types_of_one_conflict_set() -> None:
    p = example()
    assert p.conflict("bank_blue", "bank_red") == "banks"
    assert p.conflict("bank_red", "bank_blue") == "banks"
    assert p.conflict("bank_blue", "bank_blue") is None  # the same type may run twice
    assert p.conflict("blue", "bank_red") is None
    assert p.conflict("SystemManagement", "bank_red") is None


def test_an_unknown_label_is_a_clear_error() -> None:
    with pytest.raises(SecurityError, match="Label 'green' is not defined in policy"):
        example().may_use("green", "blue_disk")


@pytest.mark.parametrize("xml, message", [
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
     '<x>&b;</x>', "Refusing the policy"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/shadow">]><x>&e;</x>',
     "Refusing the policy"),
    ("<SecurityPolicyDefinition", "not well-formed"),
    (doc(header="<Version>1.0</Version>"), "does not match the schema"),
    (doc(header="<PolicyName>t</PolicyName><Version>one</Version>"),
     "does not match the schema"),
    (doc(body="<Bogus/>"), "does not match the schema"),
    ('<SecurityPolicyDefinition xmlns="http://example.org"/>', "does not match the schema"),
    (doc(body=STE, labels="<ObjectLabels><ResourceLabel><Name>r</Name>"
                          "<SimpleTypeEnforcementTypes><Type>a</Type><Type>b</Type>"
                          "</SimpleTypeEnforcementTypes></ResourceLabel></ObjectLabels>"),
     "does not match the schema"),
    (doc(body=STE, labels=f'<SubjectLabels bootstrap="d">{vm("d", "a")}{vm("x", "z")}'
                          "</SubjectLabels>"),
     "Label 'x' names undeclared STE type 'z'"),
    (doc(body=STE, labels=f'<SubjectLabels bootstrap="nope">{vm("d", "a")}</SubjectLabels>'),
     "The bootstrap label 'nope' is not defined"),
    (doc(body=STE, labels=f'<SubjectLabels bootstrap="d">{vm("d", "a")}{vm("d", "b")}'
                          "</SubjectLabels>"),
     "Label 'd' is defined twice"),
    (doc(body="<ChineseWall><ChineseWallTypes><Type>c</Type></ChineseWallTypes><ConflictSets>"
              '<Conflict name="k"><Type>c</Type><Type>q</Type></Conflict></ConflictSets>'
              "</ChineseWall>"),
     "Conflict set 'k' names undeclared Chinese Wall type 'q'"),
])
def test_hostile_or_invalid_policies_are_refused_in_one_line(xml: str, message: str) -> None:
    with pytest.raises(SecurityError, match=message) as info:
        policy.parse(xml)
    assert "\n" not in str(info.value)


def test_a_3_0_4_policy_without_a_version_reads_as_1_0() -> None:
    assert policy.parse(doc(header="<PolicyName>old</PolicyName>")).version == "1.0"


def test_policy_names_map_dots_to_slashes() -> None:
    assert policy_filename("example.client_v1") == "example/client_v1-security_policy.xml"
    for bad in ("", ".x", "a..b", "a/b", "../etc"):
        with pytest.raises(SecurityError, match="Illegal policy name"):
            policy_filename(bad)


def test_policy_files_are_found_here_first_then_in_the_policies_directory(tmp_path: Path) -> None:
    here, pdir = tmp_path / "cwd", tmp_path / "policies"
    (pdir / "dom0").mkdir(parents=True)
    (here / "dom0").mkdir(parents=True)
    (pdir / "dom0" / "example-security_policy.xml").write_text("p")
    assert find_policy_file("dom0.example", here, pdir).parent.parent == pdir
    (here / "dom0" / "example-security_policy.xml").write_text("h")
    assert find_policy_file("dom0.example", here, pdir).parent.parent == here
    with pytest.raises(SecurityError) as info:
        find_policy_file("dom0.other", here, pdir)
    assert str(info.value) == ("Could not read policy file from current directory or "
                               f"'{pdir}'.")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_any_input_is_a_policy_or_a_security_error(data: bytes | str) -> None:
    try:
        policy.parse(data)
    except SecurityError:
        pass
