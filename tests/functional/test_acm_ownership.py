"""sHype/ACM enforced below xend for disks (issue 12 item 4): with a policy active, a
labelled domain's QEMU runs as a user of its own and its writable images belong to
that user, 0600, while it runs; checked from the host, where a user would look
(/proc/<pid>/status, the images' owner and mode, opening them as that user), and
from inside the guests (the disks still work, hot-plugged too)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from conftest import GUEST_DIR, REPO, Host
from test_migration import two_hosts  # noqa: F401 (a fixture)

EXAMPLE = REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml"
P = "dom0.example"


def policy_host(make_host) -> Host:  # type: ignore[no-untyped-def]
    host: Host = make_host()
    # the QEMU users (and this test acting as them) may pass through, not list
    host.dir.chmod(0o711)
    (host.dir / "dom0").mkdir()
    shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
    host.xm("setpolicy", "ACM", P)
    return host


def image(host: Host, name: str, label: str) -> Path:
    path = host.dir / name
    path.write_bytes(bytes(1 << 20))
    path.chmod(0o644)
    host.xm("addlabel", label, "res", f"file:{path}")
    return path


def qemu_ids(host: Host, dom: str) -> tuple[int, int]:
    """(uid, gid) the domain's QEMU runs as, from /proc/<pid>/status."""
    pid = host.info(dom)["pid"]
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = int(value.split()[1])  # the effective ID
    return ids["Uid"], ids["Gid"]


def owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def open_as(uid: int, path: Path) -> subprocess.CompletedProcess[str]:
    """Open *path* for reading and writing as *uid* (its group, no others)."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "/bin/sh", "-c", 'exec 3<>"$1"', "sh", str(path)],
                          capture_output=True, text=True, timeout=30, cwd="/")


def labelled(host: Host, name: str, label: str, *disks: str) -> None:
    host.create(name, access_control=[f"policy={P},label={label}"], disk=list(disks))


def test_each_labelled_qemu_is_its_own_user_and_owns_only_its_disks(make_host) -> None:  # type: ignore[no-untyped-def]
    host = policy_host(make_host)
    a_img, b_img = image(host, "a.img", "blue_disk"), image(host, "b.img", "red_disk")
    extra = image(host, "extra.img", "blue_disk")
    labelled(host, "a", "blue", f"file:{a_img},xvdb,w")
    labelled(host, "b", "red", f"file:{b_img},xvdb,w")

    (ua, ga), (ub, gb) = qemu_ids(host, "a"), qemu_ids(host, "b")
    assert 0 not in (ua, ga, ub, gb) and ua != ub and (ua, ub) == (ga, gb)
    assert owner(a_img) == (ua, ua, 0o600) and owner(b_img) == (ub, ub, 0o600)
    assert open_as(ua, a_img).returncode == 0
    denied = open_as(ua, b_img)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr
    assert open_as(ub, b_img).returncode == 0 and open_as(ub, a_img).returncode != 0

    with host.console("a") as con:
        assert "/dev/xvdb" in con.run("ls /dev/xvdb")
        # a labelled disk hot-plugged into an unprivileged QEMU: handed over as a descriptor
        host.xm("block-attach", "a", f"file:{extra}", "xvdc", "w")
        assert owner(extra) == (ua, ua, 0o600)
        # /dev/xvdc is made by the guest's hotplug helper a moment later: until then dd
        # would write a plain file of that name
        assert "blk" in con.run("i=0; while [ ! -b /dev/xvdc ] && [ $i -lt 100 ]; do "
                                "usleep 100000; i=$((i+1)); done; [ -b /dev/xvdc ] && echo blk")
        assert "0+1 records out" in con.run(
            "echo hello > /tmp/h; dd if=/tmp/h of=/dev/xvdc bs=512 count=1 conv=fsync")
        host.xm("block-detach", "a", "xvdc")
        host.wait_for(lambda: owner(extra) == (0, 0, 0o644), 30, "extra.img given back")
    assert extra.read_bytes().startswith(b"hello")  # the guest really wrote it

    host.xm("destroy", "b")
    assert owner(b_img) == (0, 0, 0o644)
    assert owner(a_img) == (ua, ua, 0o600)
    host.xm("destroy", "a")
    assert owner(a_img) == (0, 0, 0o644)


def test_save_restore_and_an_xend_crash_keep_the_bookkeeping(make_host) -> None:  # type: ignore[no-untyped-def]
    host = policy_host(make_host)
    a_img = image(host, "a.img", "blue_disk")
    a_img.chmod(0o640)
    os.chown(a_img, 0, 4)  # a group of its own before: it must come back exactly
    labelled(host, "a", "blue", f"file:{a_img},xvdb,w")
    with host.console("a") as con:
        con.run("echo kept > /tmp/mark")
    ua, _ = qemu_ids(host, "a")
    assert owner(a_img) == (ua, ua, 0o600)

    saved = host.dir / "a.save"  # written by xend: QEMU's user could not create it there
    host.xm("save", "a", str(saved))
    assert owner(a_img) == (0, 4, 0o640)
    host.xm("restore", str(saved))
    ua2, _ = qemu_ids(host, "a")
    assert ua2 != 0 and owner(a_img) == (ua2, ua2, 0o600)
    with host.console("a") as con:
        assert "kept" in con.run("cat /tmp/mark")
        assert "/dev/xvdb" in con.run("ls /dev/xvdb")

    # xend dies; the next one still knows what the domain took, and gives it back
    host.kill9()
    host.xend("start")
    assert qemu_ids(host, "a") == (ua2, ua2) and owner(a_img) == (ua2, ua2, 0o600)
    host.xm("destroy", "a")
    assert owner(a_img) == (0, 4, 0o640)


def test_what_an_unprivileged_qemu_opens_later_xend_hands_over(make_host) -> None:  # type: ignore[no-untyped-def]
    """A CD inserted, a NIC hot-plugged, a core dump: paths and a tap QEMU's user may
    not open, opened by xend and passed as descriptors."""
    host: Host = make_host("(network-script 'network-bridge bridge=xenbr0')\n"
                           "(vif-script vif-bridge)", netns=True)
    host.dir.chmod(0o711)
    (host.dir / "dom0").mkdir()
    shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
    host.xm("setpolicy", "ACM", P)
    cd1, cd2 = image(host, "cd1.raw", "blue_disk"), image(host, "cd2.raw", "blue_disk")
    cd2.write_bytes(b"DOM0-CD-MEDIA-2".ljust(2048 * 16, b"\0"))
    cd2.chmod(0o600)  # root's alone: QEMU's user could not open it even by name
    labelled(host, "a", "blue", f"file:{cd1},hdc:cdrom,r")
    ua, _ = qemu_ids(host, "a")
    assert ua != 0
    with host.console("a") as con:
        con.run("i=0; while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do usleep 100000; "
                "i=$((i+1)); done")
        host.xm("block-configure", "a", f"file:{cd2}", "hdc:cdrom", "r")
        assert host.wait_for(
            lambda: "DOM0-CD-MEDIA-2" in con.run("dd if=/dev/sr0 bs=2048 count=1 2>/dev/null "
                                                 "| head -c 15"), 30, "the new medium")
        assert owner(cd2) == (0, 0, 0o600)  # read-only media keep their owner

        host.xm("network-attach", "a", "bridge=xenbr0", "mac=00:16:3e:0a:0b:0c")
        assert con.run("cat /sys/class/net/eth0/address").strip() == "00:16:3e:0a:0b:0c"

    core = host.dir / "a.core"
    host.xm("dump-core", "a", str(core))
    assert core.stat().st_size > 32 << 20 and owner(core)[0] == 0


def test_a_qemu_user_cannot_take_another_domains_tap(make_host) -> None:  # type: ignore[no-untyped-def]
    """Taps are root's: a QEMU running as a domain's user may not attach to another
    domain's vif (which would bypass the bridge filter)."""
    host: Host = make_host("(network-script 'network-bridge bridge=xenbr0')\n"
                           "(vif-script vif-bridge)", netns=True)
    (host.dir / "dom0").mkdir()
    shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
    host.xm("setpolicy", "ACM", P)
    host.create("a", "-p", access_control=[f"policy={P},label=blue"], vif=["bridge=xenbr0"])
    host.create("b", "-p", access_control=[f"policy={P},label=red"], vif=["bridge=xenbr0"])
    ua, _ = qemu_ids(host, "a")
    vif_b = f"vif{host.info('b')['domid']}.0"
    attach = ("import fcntl, os, struct, sys\n"
              "fd = os.open('/dev/net/tun', os.O_RDWR)\n"
              "fcntl.ioctl(fd, 0x400454CA, struct.pack('16sH', sys.argv[1].encode(), 0x1002))\n")
    r = host.ns_run("setpriv", f"--reuid={ua}", f"--regid={ua}", "--clear-groups",
                    "/usr/bin/python3", "-c", attach, vif_b, check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
    # root is refused only because b's QEMU holds it (without an owner on the tap, the
    # user was too, and only for that reason)
    r = host.ns_run("/usr/bin/python3", "-c", attach, vif_b, check=False)
    assert "Device or resource busy" in r.stderr, r.stderr


def test_a_labelled_domain_migrates_and_its_image_follows_it(two_hosts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Live migration over shared storage: the destination's QEMU, a user of its own
    (not the source's), takes the image; the source's end does not give it back
    under it; the real owner, kept on the image itself, comes back at the end."""
    storage = Path(tempfile.mkdtemp(prefix="d0t-shared-"))
    try:
        storage.chmod(0o711)
        a, b = two_hosts(extra=f"(xend-relocation-storage-roots '{GUEST_DIR} {storage}')")
        img = storage / "m.img"
        img.write_bytes(bytes(1 << 20))
        img.chmod(0o644)
        for host in (a, b):
            (host.dir / "dom0").mkdir()
            shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
            host.xm("setpolicy", "ACM", P)
            host.xm("addlabel", "blue_disk", "res", f"file:{img}")
        labelled(a, "m", "blue", f"file:{img},xvdb,w")
        ua, _ = qemu_ids(a, "m")
        with a.console("m") as con:
            con.run("echo before-move > /tmp/mark")
        a.xm("migrate", "--live", "m", "10.99.0.2", timeout=300)
        assert a.xm("domid", "m", check=False).returncode == 3
        ub, _ = qemu_ids(b, "m")
        assert ub not in (0, ua) and owner(img) == (ub, ub, 0o600)
        with b.console("m") as con:
            assert "before-move" in con.run("cat /tmp/mark")
            assert "records out" in con.run(
                "echo moved > /tmp/h; dd if=/tmp/h of=/dev/xvdb bs=512 count=1 conv=fsync")
        b.xm("destroy", "m")
        assert owner(img) == (0, 0, 0o644) and img.read_bytes().startswith(b"moved")
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def test_a_labelled_domain_migrates_over_tls(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Over the TLS port xend relays the stream through sockets in its run directory,
    which QEMU's user cannot reach: it is handed their other ends instead."""
    from test_migration import tls_hosts

    a, b = tls_hosts(two_hosts, tmp_path)
    for host in (a, b):
        (host.dir / "dom0").mkdir()
        shutil.copy(EXAMPLE, host.dir / "dom0" / "example-security_policy.xml")
        host.xm("setpolicy", "ACM", P)
    labelled(a, "t", "blue")
    assert qemu_ids(a, "t")[0] != 0
    with a.console("t") as con:
        con.run("echo over-tls > /run/mark")
    a.xm("migrate", "--live", "--ssl", "t", "10.99.0.2", timeout=300)
    assert qemu_ids(b, "t")[0] != 0
    with b.console("t") as con:
        assert con.run("cat /run/mark").strip() == "over-tls"
