"""sHype/ACM enforced on real guests (issue 12 items 3-4), with the example policy:
unlabelled domains refused, Chinese Wall between the two banks, disks by STE type, and
below xend, frames on a shared bridge only between domains with a common STE type."""

from __future__ import annotations

import shutil

from conftest import REPO, Host
from test_migration import two_hosts  # noqa: F401 (a fixture)

EXAMPLE = REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml"
P = "dom0.example"


def acm_host(make_host) -> Host:  # type: ignore[no-untyped-def]
    host: Host = make_host("(network-script 'network-bridge bridge=xenbr0')\n"
                           "(vif-script vif-bridge)", netns=True)
    (host.dir / "dom0").mkdir()
    shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
    host.xm("setpolicy", "ACM", P)
    return host


def labelled(host: Host, name: str, label: str, ip: int, **values: object) -> None:
    host.create(name, access_control=[f"policy={P},label={label}"], vif=["bridge=xenbr0"],
                ip=f"10.50.0.{ip}", netmask="255.255.255.0", **values)


def refused(host: Host, name: str, text: str, **values: object) -> None:
    r = host.xm("create", "-q", str(host.write_config(name, **values)), check=False)
    assert r.returncode == 1 and text in r.stderr, r.stderr
    assert host.xm("domid", name, check=False).returncode == 3


def test_chinese_wall_ste_disks_and_frames(make_host) -> None:  # type: ignore[no-untyped-def]
    host = acm_host(make_host)
    refused(host, "nolabel", "Error: VM is not authorized to run.")

    blue_img, red_img = host.dir / "blue.img", host.dir / "red.img"
    for img in (blue_img, red_img):
        img.write_bytes(bytes(1 << 20))
    host.xm("addlabel", "blue_disk", "res", f"file:{blue_img}")
    host.xm("addlabel", "red_disk", "res", f"file:{red_img}")
    refused(host, "b", f"VM's access to block device 'file:{red_img}' denied",
            access_control=[f"policy={P},label=blue"], disk=[f"file:{red_img},xvdb,w"])

    labelled(host, "bb", "bank_blue", 31)
    labelled(host, "b", "blue", 32, disk=[f"file:{blue_img},xvdb,w"])
    labelled(host, "r", "red", 33)
    # the second bank may not run beside the first ...
    refused(host, "br", "Error: Domain in conflict set with running domain?",
            access_control=[f"policy={P},label=bank_red"])

    with host.console("b") as con:
        assert "/dev/xvdb" in con.run("ls /dev/xvdb")  # its own disk, from inside
        r = host.xm("block-attach", "b", f"file:{red_img}", "xvdc", "w", check=False)
        assert r.returncode == 1 and "denied" in r.stderr
        assert "No such file" in con.run("ls /dev/xvdc")
        assert "1 packets received" in con.run("ping -c 1 -W 3 10.50.0.33")  # common
        assert "1 packets received" in con.run("ping -c 1 -W 3 10.50.0.31")  # blue
    with host.console("bb") as con:
        # bank_blue (blue) and red (red, common) hold no common type: no frame passes
        assert "0 packets received" in con.run("ping -c 2 -W 2 10.50.0.33")
        assert "1 packets received" in con.run("ping -c 1 -W 3 10.50.0.32")
    rules = host.ns_run("nft", "list", "table", "bridge", "dom0_acm").stdout
    assert "drop" in rules

    # ... and may once it is gone
    host.xm("destroy", "bb")
    labelled(host, "br", "bank_red", 34)
    with host.console("br") as con:
        assert "1 packets received" in con.run("ping -c 1 -W 3 10.50.0.33")  # both red

    # a policy may not be reset under labelled domains; once they are gone it may,
    # and the bridge filter goes with it
    r = host.xm("resetpolicy", check=False)
    assert r.returncode == 1 and "Try to halt all guests" in r.stderr
    for name in ("b", "r", "br"):
        host.xm("destroy", name)
    host.xm("resetpolicy")
    assert host.ns_run("nft", "list", "table", "bridge", "dom0_acm",
                       check=False).returncode != 0


def test_managed_domains_are_relabelled_and_listed_with_labels(make_host) -> None:  # type: ignore[no-untyped-def]
    host = acm_host(make_host)
    host.xm("new", str(host.write_config("m", vif=["bridge=xenbr0"])))
    assert host.xm("getlabel", "mgt", "m").stdout.strip() == "unlabeled"
    out = host.xm("addlabel", "blue", "mgt", "m").stdout
    assert out.strip() == "Successfully set the label of dormant domain 'm' to 'blue'."
    assert host.xm("getlabel", "mgt", "m").stdout.strip() == f"ACM:{P}:blue"
    host.xm("start", "m")
    labelled(host, "r", "bank_red", 41)
    # a running domain's new label is judged like a start: it may not join the wall
    r = host.xm("addlabel", "bank_blue", "mgt", "m", check=False)
    assert r.returncode == 1 and "Domain in conflict set with running domain?" in r.stderr
    r = host.xm("rmlabel", "mgt", "m", check=False)
    assert r.returncode == 1 and "VM is not authorized to run." in r.stderr
    rows = host.xm("list", "--label").stdout.splitlines()
    assert rows[0].split() == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Label"]
    # sorted by label, case-insensitively (spec §1.3)
    assert [(r.split()[0], r.split()[-1]) for r in rows[1:]] == [
        ("r", f"ACM:{P}:bank_red"), ("m", f"ACM:{P}:blue"),
        ("Domain-0", f"ACM:{P}:SystemManagement")]
    host.xm("destroy", "m")
    assert host.xm("rmlabel", "mgt", "m").stdout.strip() == \
        "Successfully removed label from domain m."
    assert host.xm("getlabel", "mgt", "m").stdout.strip() == "unlabeled"


def test_an_incoming_migration_is_judged_by_the_destinations_policy(two_hosts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The destination checks against *its* policy and running domains: a domain its
    policy does not admit is refused, the reason reaches xm migrate, the source runs on."""
    a, b = two_hosts()
    (b.dir / "dom0").mkdir()
    shutil.copy(EXAMPLE, b.dir / "dom0" / "example-security_policy.xml")
    b.xm("setpolicy", "ACM", P)  # the source has no policy: anything runs there
    a.create("mover")
    r = a.xm("migrate", "--live", "mover", "10.99.0.2", check=False)
    assert r.returncode == 1 and "VM is not authorized to run." in r.stderr, r.stderr
    assert a.info("mover")["state"] in ("r-----", "-b----")
    with a.console("mover") as con:
        assert con.run("echo still-here").strip().endswith("still-here")
    assert b.xm("domid", "mover", check=False).returncode == 3
