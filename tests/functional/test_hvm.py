"""HVM domains (builder='hvm') booting the project's disk and CD images through the
firmware, checked from inside the guest over its serial console: which medium it
came from (/proc/cmdline says dom0.boot=disk|cdrom), the disks and CD it sees, a CD
media change, an installation onto an empty disk, an emulated NIC taking an address on
the default network (NAT, DHCP) and pinging the host,
and ``xm console``."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import GUEST_DIR, Host
from guestconsole import GuestConsole
from test_console import Terminal
from test_default_network import shipped_network_script
from test_vnc import capture, lit_rows

DISK, ISO = GUEST_DIR / "disk.img", GUEST_DIR / "guest.iso"


def disk_copy(host: Host, name: str = "disk.img") -> Path:
    """A writable copy of the disk image (the built one stays pristine)."""
    path = host.dir / name
    shutil.copyfile(DISK, path)
    return path


def hvm(host: Host, name: str, disks: list[str], **values: object) -> None:
    """Create an HVM domain: firmware, no kernel file."""
    path = host.dir / f"{name}.cfg"
    values = {"name": name, "builder": "hvm", "kernel": "/usr/lib/xen/boot/hvmloader",
              "memory": 96, "serial": "pty", "disk": disks, **values}
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    host.xm("create", "-q", str(path))


def booted_from(host: Host, name: str) -> str:
    with host.console(name, boot_timeout=150) as con:
        words = con.run("cat /proc/cmdline").split()
    return next(w for w in words if w.startswith("dom0.boot="))


def test_boot_order_dc_boots_the_cd_and_its_medium_can_be_changed(host: Host) -> None:
    disk = disk_copy(host)
    medium = host.dir / "medium2"
    medium.mkdir()
    (medium / "medium.txt").write_text("second medium\n")
    second = host.dir / "second.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(second), "-V", "SECOND",
                    str(medium)], check=True, capture_output=True)
    hvm(host, "cd", [f"file:{disk},ioemu:hda,w", f"file:{ISO},hdc:cdrom,r"], boot="dc",
        vnc=1, vncpasswd="hvmpw", stdvga=1)
    with host.console("cd", boot_timeout=150) as con:
        assert "dom0.boot=cdrom" in con.run("cat /proc/cmdline")
        # its screen (the top-level vnc lines): behind the password, showing the guest
        location = host.info("cd")["vnc"]
        assert f"(location {location})" in host.xm("list", "-l", "cd").stdout
        assert capture(location, "wrong", host.dir / "bad.png").returncode != 0
        con.run("printf '\\033[2J\\033[H' > /dev/tty1; for i in 1 2 3 4 5 6; do "
                "printf '%70s\\n' | tr ' ' '#'; done > /dev/tty1")
        shot = host.dir / "screen.png"
        assert capture(location, "hvmpw", shot).returncode == 0
        assert all(n > 0 for n in lit_rows(shot)[:6]) and sum(lit_rows(shot)[8:]) == 0
        # both media are there: the IDE disk and the CD (its size is the ISO's)
        blocks = con.run("ls /sys/block").split()
        assert "sda" in blocks and "sr0" in blocks, blocks
        assert con.run("cat /sys/block/sr0/size").strip() == str(ISO.stat().st_size // 512)
        assert con.run("cat /sys/block/sr0/ro").strip() == "1"
        con.run("mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd")
        assert "install.sh" in con.run("ls /mnt/cd/install")
        con.run("umount /mnt/cd")
        host.xm("block-configure", "cd", f"file:{second}", "hdc:cdrom", "r")
        out = host.wait_for(
            lambda: "second medium" in (text := con.run(
                "mount -t iso9660 -o ro /dev/sr0 /mnt/cd 2>&1; cat /mnt/cd/medium.txt; "
                "umount /mnt/cd")) and text, 30, "the new medium in the guest")
        assert "second medium" in out
        # the drive emptied: the guest finds no medium
        host.xm("block-configure", "cd", "", "hdc:cdrom", "r")
        assert host.wait_for(lambda: "No medium found" in con.run(
            "dd if=/dev/sr0 of=/dev/null bs=2048 count=1"), 30, "an empty drive")
    listed = host.xm("block-list", "cd").stdout
    assert "5632" in listed  # hdc's device number, as Xen numbered it


def test_install_from_the_cd_onto_an_empty_disk_then_boot_it(host: Host) -> None:
    empty = host.dir / "empty.img"
    with open(empty, "wb") as f:
        f.truncate(DISK.stat().st_size)
    # boot='cd': the empty disk is not bootable, so the firmware goes on to the CD
    hvm(host, "inst", [f"file:{empty},hda,w", f"file:{ISO},hdc:cdrom,r"], boot="cd")
    with host.console("inst", boot_timeout=150) as con:
        assert "dom0.boot=cdrom" in con.run("cat /proc/cmdline")
        con.run("mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd")
        out = con.run("sh /mnt/cd/install/install.sh /dev/sda", timeout=120)
        assert "dom0 guest installed on /dev/sda" in out, out
        con.run("umount /mnt/cd && sync")
        _reboot(con)
    # the same domain, the same order: now the disk boots first (both media present)
    host.wait_for(lambda: _booted_again(host, "inst"), 180, "the installed disk to boot")
    assert booted_from(host, "inst") == "dom0.boot=disk"


def _monitor(path: Path, command: str) -> str:
    """One command on QEMU's human monitor socket; its answer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        seen = b""
        for line in (b"", command.encode() + b"\n"):
            sock.sendall(line)
            while not seen.rstrip().endswith(b"(qemu)"):
                seen += sock.recv(65536)
            if line:
                break
            seen = b""
        return seen.decode(errors="replace")


def _reboot(con: GuestConsole) -> None:
    """``reboot -f`` in the guest, until its kernel says it restarts (a line typed
    while the console is busy can be lost: it is typed again)."""
    for _ in range(3):
        con.send("reboot -f\n")
        try:
            con.read_until(b"Restarting system", 20)
            return
        except TimeoutError:
            continue
    raise AssertionError("the guest did not reboot")


def _booted_again(host: Host, name: str) -> bool:
    try:
        return booted_from(host, name) == "dom0.boot=disk"
    except (OSError, TimeoutError, ConnectionError):
        time.sleep(1)
        return False


def test_disk_boot_with_an_e1000_nic_on_the_default_network_and_xm_console(
        make_host) -> None:  # type: ignore[no-untyped-def]
    # the network a newcomer gets: the shipped xend-config's NAT with DHCP on xenbr0
    host = make_host(shipped_network_script(), netns=True)
    disk = disk_copy(host)
    floppy = host.dir / "floppy.img"
    with open(floppy, "wb") as f:
        f.truncate(1440 * 1024)
    hvm(host, "net", [f"file:{disk},ioemu:hda,w"],
        vif=["type=ioemu,model=e1000"], fda=str(floppy), monitor=1)
    # the guest kernel has no floppy driver: QEMU's own monitor (monitor=1) shows the drive
    (sock,) = host.dir.glob("run/dom/*/monitor.sock")
    blocks = _monitor(sock, "info block")
    assert re.search(rf"floppy0 \(#block\d+\): {re.escape(str(floppy))} \(raw\)", blocks), blocks
    with host.console("net", boot_timeout=150) as con:
        assert "dom0.boot=disk" in con.run("cat /proc/cmdline")
        driver = con.run("basename $(readlink /sys/class/net/eth0/device/driver)").strip()
        assert driver == "e1000"
        # the disk's boot line asks for no address: the guest asks the DHCP server itself
        con.run("udhcpc -i eth0 -s /etc/udhcpc/default.script -n -q -t 10 -T 1 -S",
                timeout=60)
        lease = re.search(r"inet (10\.0\.0\.\d+)/24", con.run("ip -4 -o addr show eth0"))
        assert lease, con.run("ip -4 -o addr show eth0")
        out = con.run("ping -c 3 -W 3 10.0.0.1", timeout=60)
        assert "3 packets received" in out, out
    host.ns_run("ping", "-c", "1", "-W", "5", lease.group(1))  # and the host reaches it
    term = Terminal(host, "console", "net")
    time.sleep(0.3)
    term.type(b"echo hvm-$((6*7))\r")
    term.expect(b"hvm-42\r\n")
    term.type(b"\x1d")  # Ctrl-]
    assert term.wait() == 0


def test_bios_ovmf_boots_uefi(host: Host) -> None:
    """bios='ovmf': UEFI firmware.  The project's images boot through SYSLINUX (BIOS
    only), so UEFI finds no boot loader on the disk and opens its shell on the serial
    console, where it answers as UEFI."""
    disk = disk_copy(host)
    hvm(host, "uefi", [f"file:{disk},hda,w"], bios="ovmf")
    with GuestConsole(host.info("uefi")["console"]) as con:
        con.read_until(b"Shell> ", 120)
        con.send("ver\r")
        con.read_until(b"UEFI Interactive Shell", 30)
    assert "bios ovmf" in host.xm("list", "-l", "uefi").stdout


def test_hvm_save_and_restore(host: Host) -> None:
    disk = disk_copy(host)
    hvm(host, "sr", [f"file:{disk},hda,w"])
    with host.console("sr", boot_timeout=150) as con:
        con.run("echo kept > /tmp/mark")
    # the disk is IDE without ioemu: too, and in use by the guest
    row = host.xm("block-list", "sr").stdout.splitlines()[1].split()
    assert row[0] == "768" and row[3] == "4", row
    saved = host.dir / "sr.save"
    host.xm("save", "sr", str(saved))
    host.xm("restore", str(saved))
    with host.console("sr") as con:
        assert con.run("cat /tmp/mark").strip() == "kept"
        assert "dom0.boot=disk" in con.run("cat /proc/cmdline")


def test_scsi_boot_disk_and_a_virtio_disk(host: Host) -> None:
    """``sda`` is a SCSI disk on an HVM machine (the firmware boots it), ``xvdb`` virtio."""
    disk = disk_copy(host)
    extra = host.dir / "extra.img"
    with open(extra, "wb") as f:
        f.truncate(8 << 20)
    hvm(host, "scsi", [f"file:{disk},sda,w", f"file:{extra},xvdb,w"])
    with host.console("scsi", boot_timeout=150) as con:
        assert "dom0.boot=disk" in con.run("cat /proc/cmdline")
        # a SCSI target (on QEMU's virtio-scsi HBA), not a virtio-blk disk
        assert "/host0/target0:0:0/" in con.run("readlink -f /sys/block/sda/device")
        assert "virtio" in con.run("readlink -f /sys/block/vda/device")
        assert con.run("cat /sys/block/vda/size").strip() == str((8 << 20) // 512)
