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
from pathlib import Path

from conftest import REPO, Host

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
