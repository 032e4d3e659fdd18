"""xm's access control commands against a real xend (spec §8.1): a policy set from the
current directory, shown, surviving an xend restart; labels of config files and
resources; dry-run's report; reset.  (Enforcement on running guests is in test_acm.py.)"""

from __future__ import annotations

import shutil

from conftest import REPO, Host

EXAMPLE = REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml"
P = "dom0.example"


def with_policy_file(host: Host) -> None:
    (host.dir / "dom0").mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")


def test_policy_labels_resources_and_dry_run(make_host) -> None:  # type: ignore[no-untyped-def]
    host: Host = make_host()
    with_policy_file(host)
    assert "No policy is installed." in host.xm("getpolicy").stdout
    r = host.xm("setpolicy", "ACM", "dom0.nothere", check=False)
    assert r.returncode == 1 and "Could not read policy file from current directory or " \
        "'/etc/xen/acm-security/policies'." in r.stderr
    out = host.xm("setpolicy", "ACM", P).stdout
    assert out.startswith("Successfully set the new policy.\n")
    assert f"Policy name           : {P}" in out
    assert host.xm("labels").stdout.split() == ["SystemManagement", "bank_blue", "bank_red",
                                                "blue", "red"]
    assert host.xm("labels", "type=res").stdout.split() == ["blue_disk", "red_disk",
                                                            "shared_net"]
    r = host.xm("labels", "type=res", "type=dom", check=False)
    assert r.returncode == 1 and "Error: type is definied twice" in r.stderr

    # a config file labelled, shown, and checked
    disk = host.dir / "blue.img"
    disk.write_bytes(bytes(1 << 20))
    cfg = host.write_config("b", disk=[f"file:{disk},xvda,w"])
    host.xm("addlabel", "blue", "dom", str(cfg))
    assert f"access_control = ['policy={P},label=blue']" in cfg.read_text()
    assert host.xm("getlabel", "dom", str(cfg)).stdout.strip() == \
        f"policytype=ACM,policy={P},label=blue"
    r = host.xm("addlabel", "red", "dom", str(cfg), check=False)
    assert r.returncode == 1 and f"Config file '{cfg}' is already labeled." in r.stderr
    r = host.xm("dry-run", str(cfg), check=False)
    assert r.returncode == 255, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "Checking domain:", "   b: PERMITTED", "Checking resources:",
        f"   file:{disk}: DENIED", "   --> res: unlabeled", f"   --> dom: blue (ACM:{P})",
        "Dry Run: FAILED"]
    host.xm("addlabel", "blue_disk", "res", f"file:{disk}")
    assert host.xm("getlabel", "res", f"file:{disk}").stdout.strip() == f"ACM:{P}:blue_disk"
    assert host.xm("resources").stdout.splitlines() == [
        f"file:{disk}", "      type: ACM", f"    policy: {P}", "    label:  blue_disk"]
    r = host.xm("dry-run", str(cfg))
    assert r.stdout.splitlines()[-1] == "Dry Run: PASSED"
    host.xm("rmlabel", "dom", str(cfg))
    assert f"#access_control = ['policy={P},label=blue']" in cfg.read_text()
    r = host.xm("getlabel", "dom", str(cfg), check=False)
    assert r.returncode == 1 and "Error: Domain not labeled" in r.stderr

    # xend loads the installed policy at start
    host.xend("stop")
    host.start()
    assert f"Policy name           : {P}" in host.xm("getpolicy").stdout
    assert "<SecurityPolicyDefinition" in host.xm("getpolicy", "--dumpxml").stdout
    assert "<-- Domain-0" in host.xm("dumppolicy").stdout
    host.xm("rmlabel", "res", f"file:{disk}")
    assert host.xm("resources").stdout == ""
    assert host.xm("resetpolicy").stdout.strip() == "Successfully reset the system's policy."
    assert "No policy is installed." in host.xm("getpolicy").stdout


def test_a_hostile_policy_file_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host: Host = make_host()
    (host.dir / "evil").mkdir()
    (host.dir / "evil" / "p-security_policy.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/shadow">]>'
        "<x>&e;</x>")
    r = host.xm("setpolicy", "ACM", "evil.p", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("Error: An error occurred trying to set the policy: "
                                       "Refusing the policy")
    assert "No policy is installed." in host.xm("getpolicy").stdout
