"""Virtual block devices on real guests: images made here, seen from inside."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

from conftest import GUEST_DIR, Host, veth


def make_ext4(path: Path, size_mb: int = 24, files: dict[str, str] | None = None) -> Path:
    """A sparse ext4 image, optionally holding files (mkfs.ext4 -d)."""
    content = path.parent / (path.name + ".d")
    content.mkdir()
    for name, text in (files or {}).items():
        (content / name).write_text(text)
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(path)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(content), str(path)], check=True)
    return path


def partitions(con) -> set[str]:  # type: ignore[no-untyped-def]
    return {ln.split()[-1] for ln in con.run("cat /proc/partitions").splitlines()[2:]
            if ln.split()}


def test_file_disk_keeps_data_across_destroy_and_create(host: Host) -> None:
    img = make_ext4(host.dir / "data.img")
    host.create("fd", disk=[f"file:{img},xvdb,w"])
    with host.console("fd") as con:
        assert con.run("readlink /dev/xvdb").strip().startswith("/dev/vd")
        con.run("mount /dev/xvdb /mnt && echo kept-across-boots > /mnt/proof && umount /mnt")
    host.xm("destroy", "fd")
    host.create("fd", disk=[f"file:{img},xvdb,w"])
    with host.console("fd") as con:
        assert con.run("mount -o ro /dev/xvdb /mnt && cat /mnt/proof").strip() \
            == "kept-across-boots"


def test_root_on_a_tap_aio_disk_exported_as_sda1(host: Host) -> None:
    root = host.dir / "root.img"
    subprocess.run(["cp", "--sparse=always", str(GUEST_DIR / "rootfs.ext4"), str(root)],
                   check=True)
    host.create("rootdisk", disk=[f"tap:aio:{root},sda1,w"], root="/dev/sda1")
    with host.console("rootdisk") as con:
        mounts = con.run("cat /proc/mounts")
        assert any(ln.split()[1] == "/" and ln.split()[2] == "ext4" for ln in mounts.splitlines())
        assert "root=/dev/sda1" in con.run("cat /proc/cmdline")


def test_hotplug_attach_list_detach(host: Host) -> None:
    img = make_ext4(host.dir / "hot.img", files={"hello": "from-the-host"})
    info = host.create("hp")
    with host.console("hp") as con:
        before = partitions(con)
        host.xm("block-attach", "hp", f"file:{img}", "xvdc", "w")
        # block-attach returned: the guest already has it
        new = partitions(con) - before
        assert len(new) == 1
        # /dev/xvdc itself is made by the guest's hotplug helper, a moment later
        con.run("i=0; while [ ! -b /dev/xvdc ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); "
                "done")
        assert con.run("mount /dev/xvdc /mnt && cat /mnt/hello && umount /mnt").strip() \
            == "from-the-host"
        rows = host.xm("block-list", "hp").stdout.splitlines()
        assert rows[0] == "Vdev  BE handle state evt-ch ring-ref BE-path"
        assert rows[1].split()[0] == "51744" and rows[1].split()[3] == "4"
        assert f"/local/domain/0/backend/vbd/{info['domid']}/51744" in rows[1]
        r = host.xm("block-attach", "hp", f"file:{img}", "xvdc", "w", check=False)
        assert r.returncode == 1 and "Error: Device xvdc is already connected." in r.stderr
        host.xm("block-detach", "hp", "xvdc")
        assert partitions(con) == before
        assert host.xm("block-list", "hp").stdout == ""  # like xm: no devices, no header


def test_writable_disk_in_use_is_refused_even_through_another_path(host: Host) -> None:
    img = make_ext4(host.dir / "shared.img")
    alias = host.dir / "alias.img"
    alias.symlink_to(img)
    host.create("owner", disk=[f"file:{img},xvdb,w"])
    r = host.xm("create", str(host.write_config("thief", disk=[f"file:{alias},xvdb,w"])),
                check=False)
    assert r.returncode == 1
    assert f"Error: Device {alias} is mounted in a guest domain,\nand so cannot be mounted now." \
        in r.stderr
    r = host.xm("create", str(host.write_config("reader", disk=[f"file:{alias},xvdb,r"])),
                check=False)
    assert "read-write in a guest domain,\nand so cannot be mounted read-only now." in r.stderr
    host.create("forced", disk=[f"file:{alias},xvdb,w!"])  # w! overrides
    ro = make_ext4(host.dir / "ro.img")
    host.create("ro1", disk=[f"file:{ro},xvdb,r"])
    host.create("ro2", disk=[f"file:{ro},xvdb,r"])  # read-only sharing is fine
    with host.console("ro2") as con:
        assert con.run("mount -o ro /dev/xvdb /mnt && echo mounted").strip() == "mounted"


def test_qcow2_clones_share_one_base_image(host: Host) -> None:
    base = make_ext4(host.dir / "base.img", files={"os": "base-image\n"})
    digest = hashlib.sha256(base.read_bytes()).hexdigest()
    for n in (1, 2):
        clone = host.dir / f"clone{n}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
                        str(clone)], check=True)
        host.create(f"cl{n}", disk=[f"tap:qcow2:{clone},xvda,w"])
    for n in (1, 2):
        with host.console(f"cl{n}") as con:
            out = con.run(f"mount /dev/xvda /mnt && cat /mnt/os && echo clone{n} > /mnt/mine && "
                          "sync && cat /mnt/mine && umount /mnt")
            assert out.split() == ["base-image", f"clone{n}"]
    assert hashlib.sha256(base.read_bytes()).hexdigest() == digest


def test_nbd_disk_is_readable_in_the_guest(host: Host) -> None:
    img = make_ext4(host.dir / "nbd.img", files={"served": "over-nbd"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["qemu-nbd", "--persistent", "--read-only", "--format=raw",
                               "--bind=127.0.0.1", f"--port={port}", str(img)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        host.create("nb", disk=[f"nbd:127.0.0.1:{port},xvdb,r"])
        with host.console("nb") as con:
            assert con.run("mount -o ro /dev/xvdb /mnt && cat /mnt/served").strip() == "over-nbd"
    finally:
        host.xm("destroy", "nb", check=False)
        server.kill()
        server.wait()


def test_bad_disk_specs_get_xens_errors(host: Host) -> None:
    cases = [
        (["file:/nonexistent.img,xvdb,w"], "Error: Disk image does not exist: /nonexistent.img"),
        (["bogus:/x,xvdb,w"], 'Error: Block device type "bogus" is invalid.'),
        (["file:/etc/hostname,xvdb,rw"], "Error: Invalid mode"),
        (["file:/etc/hostname,qqq,w"], "Error: Unable to find number for device (qqq)"),
        (["phy:/etc/hostname,xvdb,w"], "Error: /etc/hostname is not a block device."),
    ]
    for n, (disk, message) in enumerate(cases):
        r = host.xm("create", str(host.write_config(f"bad{n}", disk=disk)), check=False)
        assert r.returncode == 1 and message in r.stderr, (disk, r.stderr)


class Loop:
    """A loop device over an image, for phy: disks (this kernel has no device-mapper)."""

    def __init__(self, image: Path) -> None:
        self.dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["losetup", "-d", self.dev], capture_output=True)


def test_phy_disk_from_a_loop_device(host: Host) -> None:
    img = make_ext4(host.dir / "phy.img", files={"via": "phy\n"})
    with Loop(img) as loop:
        name = loop.dev[len("/dev/"):]  # phy: names are relative to /dev
        host.create("ph", disk=[f"phy:{name},xvdb,r"])
        with host.console("ph") as con:
            assert con.run("mount -o ro /dev/xvdb /mnt && cat /mnt/via").strip() == "phy"
        host.xm("destroy", "ph")


def test_storage_mounted_read_write_on_the_host_is_refused(host: Host) -> None:
    img = make_ext4(host.dir / "busy.img")
    mnt = host.dir / "mnt"
    mnt.mkdir()
    with Loop(img) as loop:
        subprocess.run(["mount", loop.dev, str(mnt)], check=True)
        try:
            r = host.xm("create", str(host.write_config("h1", disk=[f"phy:{loop.dev},xvdb,w"])),
                        check=False)
            assert f"Error: Device {loop.dev} is mounted in the privileged domain,\nand so " \
                   "cannot be mounted by a guest." in r.stderr
            # the image file behind that loop device is caught too
            r = host.xm("create", str(host.write_config("h2", disk=[f"file:{img},xvdb,r"])),
                        check=False)
            assert "is mounted read-write in the privileged domain" in r.stderr
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


def test_cdrom_media_change_with_block_configure(host: Host) -> None:
    media = host.dir / "media.raw"
    media.write_bytes(b"DOM0-CD-MEDIA-1".ljust(2048 * 16, b"\0"))
    host.create("cd", disk=[",hdc:cdrom,r"])
    with host.console("cd") as con:
        con.run("i=0; while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do usleep 100000; "
                "i=$((i+1)); done")
        assert "DOM0-CD" not in con.run("dd if=/dev/sr0 bs=2048 count=1 2>&1 | head -c 20")
        host.xm("block-configure", "cd", f"file:{media}", "hdc:cdrom", "r")
        out = host.wait_for(
            lambda: "DOM0-CD-MEDIA-1" in con.run("dd if=/dev/sr0 bs=2048 count=1 2>/dev/null "
                                                 "| head -c 15"), 30, "the new medium")
        assert out
    rows = host.xm("block-list", "cd").stdout.splitlines()
    assert rows[1].split()[0] == "5632"  # hdc


def test_iscsi_disk_is_readable_in_the_guest(make_host) -> None:  # type: ignore[no-untyped-def]
    """An iSCSI LUN served by tgt, read through QEMU's own iSCSI client; the target
    listens on loopback inside the host's own network namespace."""
    host = make_host(netns=True)
    img = make_ext4(host.dir / "lun.img", files={"lun": "over-iscsi\n"})
    iqn = "iqn.2026-11.dom0.test:lun"
    # tgtadm finds tgtd by a control socket in /var/run/tgtd, shared by all
    # namespaces: a port of our own keeps us off any other tgtd on the machine
    control = str(1000 + os.getpid() % 20000)
    tgtd = subprocess.Popen(["ip", "netns", "exec", host.netns, "tgtd", "-f", "-C", control,
                             "--iscsi", "portal=127.0.0.1:3260"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def tgtadm(*args: str) -> None:
            host.ns_run("tgtadm", "-C", control, "--lld", "iscsi", *args)

        host.wait_for(lambda: host.ns_run("tgtadm", "-C", control, "--lld", "iscsi",
                                          "--mode", "target",
                                          "--op", "show", check=False).returncode == 0,
                      20, "tgtd")
        tgtadm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", iqn)
        tgtadm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
               "--backing-store", str(img))
        tgtadm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")
        host.create("is", disk=[f"iscsi://127.0.0.1/{iqn}/1,xvdb,r"])
        with host.console("is") as con:
            assert con.run("mount -o ro /dev/xvdb /mnt && cat /mnt/lun").strip() == "over-iscsi"
        host.xm("destroy", "is")
    finally:
        tgtd.kill()  # tgtd ignores SIGTERM while it has targets
        tgtd.wait(10)


GANESHA_CONF = """
NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = 2049; Bind_addr = {addr};
                 Enable_RQUOTA = false; Enable_NLM = false; }}
NFSV4 {{ Graceless = true; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{ Export_Id = 1; Path = {path}; Pseudo = /guestroot; Access_Type = RW;
          Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP;
          FSAL {{ Name = VFS; }} }}
LOG {{ Default_Log_Level = WARN; }}
"""


def test_nfs_root_from_a_server_in_another_namespace(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host("(network-script 'network-bridge bridge=xenbr0')", netns=True)
    export = host.dir / "export"
    mnt = host.dir / "rootfs"
    mnt.mkdir()
    with Loop(GUEST_DIR / "rootfs.ext4") as loop:
        subprocess.run(["mount", "-o", "ro", loop.dev, str(mnt)], check=True)
        try:
            subprocess.run(["cp", "-a", str(mnt), str(export)], check=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    server_ns = host.netns + "n"
    subprocess.run(["ip", "netns", "add", server_ns], check=True)
    ganesha = None
    try:
        veth(host.netns, "nfs0", None, server_ns, "nfs1", "10.50.0.2/24")
        host.ns_run("ip", "link", "set", "nfs0", "master", "xenbr0")
        conf = host.dir / "ganesha.conf"
        conf.write_text(GANESHA_CONF.format(addr="10.50.0.2", path=export))
        ganesha = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, "ganesha.nfsd", "-F", "-f", str(conf),
             "-L", str(host.dir / "ganesha.log"), "-p", str(host.dir / "ganesha.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host.wait_for(lambda: ":2049" in subprocess.run(
            ["ip", "netns", "exec", server_ns, "ss", "-ltn"], capture_output=True,
            text=True).stdout, 30, "the NFS server")
        host.create("nfsroot", vif=["bridge=xenbr0"], ip="10.50.0.11",
                    netmask="255.255.255.0", root="/dev/nfs", nfs_server="10.50.0.2",
                    nfs_root="/guestroot")
        with host.console("nfsroot") as con:
            root = [ln.split() for ln in con.run("cat /proc/mounts").splitlines()
                    if len(ln.split()) > 2 and ln.split()[1] == "/"]
            assert root and root[-1][0] == "10.50.0.2:/guestroot" and root[-1][2] == "nfs4"
            con.run("echo written-by-the-guest > /proof && sync")
        assert (export / "proof").read_text() == "written-by-the-guest\n"
        host.xm("destroy", "nfsroot")
    finally:
        if ganesha:
            ganesha.kill()
            ganesha.wait(10)
        subprocess.run(["ip", "netns", "del", server_ns], capture_output=True)
