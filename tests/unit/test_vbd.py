"""dom0.devices.vbd: Xen's disk grammar (spec §3.1) resolved into QEMU's block
nodes and guest devices, plus the sharing checks' identities and wording."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dom0.devices import vbd
from dom0.devices.vbd import Vbd
from dom0.errors import DeviceError
from dom0.model.config import DiskSpec


@pytest.fixture
def img(tmp_path: Path) -> Path:
    p = tmp_path / "disk.img"
    p.write_bytes(b"\0" * 512)
    return p


def parse(uname: str, dev: str, mode: str = "w", check: bool = True) -> Vbd:
    return vbd.parse(DiskSpec(uname, dev, mode), check_exists=check)


# ---- device_number -----------------------------------------------------------------


@pytest.mark.parametrize("name, number", [
    ("xvda", 51712), ("xvda1", 51713), ("xvdb", 51728), ("xvdp15", (202 << 8) | (15 << 4) | 15),
    ("hda", 768), ("hdb", 832), ("hdc", 5632), ("hdd", 5696), ("hda1", 769), ("hdb63", 895),
    ("sda", 2048), ("sda1", 2049), ("sdb", 2064), ("sdp15", 2303), ("sdq", 65 << 8),
    ("51713", 51713), ("0", 0), ("0xca01", 51713), ("0XCA01", 51713), ("0x301", 0x301),
])
def test_device_number(name: str, number: int) -> None:
    assert vbd.device_number(name) == number


def test_device_number_ext_encoding_beyond_fifteen_disks_or_partitions() -> None:
    assert vbd.device_number("xvdq") == (1 << 28) | (16 << 8)
    assert vbd.device_number("xvdaa") == (1 << 28) | (26 << 8)
    assert vbd.device_number("xvda16") == (1 << 28) | 16


@pytest.mark.parametrize("name, number", [
    ("ioemu:hda", 768), ("hdc:cdrom", 5632), ("ioemu:hdc:cdrom", 5632), ("xvda1:disk", 51713),
    ("ioemu:sdb:disk", 2064),
])
def test_device_number_ignores_decorations(name: str, number: int) -> None:
    assert vbd.device_number(name) == number


@pytest.mark.parametrize("name", [
    "junk", "", "xvd", "0x", "0xzz", "-1", "xvda-1", "hda64", "sda16", "XVDA", "nvme0n1",
])
def test_device_number_junk_is_xens_error(name: str) -> None:
    with pytest.raises(DeviceError) as e:
        vbd.device_number(name)
    assert str(e.value) == f"Unable to find number for device ({name})"


# str.isdigit() is true for non-ASCII digits ("²" used to crash int() with ValueError; "１"
# and "٣" were taken as 1 and 3), and a regex `$` matches before a trailing newline ("xvda\n"
# was 51712).  Each must be Xen's "Unable to find number for device (<dev>)".
@pytest.mark.parametrize("name", ["²", "１", "٣", "xvda\n"])
def test_device_number_rejects_non_ascii_digits_and_trailing_newline(name: str) -> None:
    with pytest.raises(DeviceError) as e:
        vbd.device_number(name)
    assert str(e.value) == f"Unable to find number for device ({name})"


# ---- parse ---------------------------------------------------------------------------


def test_parse_file(img: Path) -> None:
    v = parse(f"file:{img}", "xvda1", "w")
    assert v == Vbd(f"file:{img}", "xvda1", 51713, "w", "file", str(img), "raw", False, False)
    assert v.writable
    assert (v.node, v.device_id) == ("vbd51713", "vbd-dev51713")


def test_parse_file_url_form(img: Path) -> None:
    v = parse(f"file://{img}", "xvda")  # file:///tmp/.../disk.img
    assert v.kind == "file" and v.target == str(img)


@pytest.mark.parametrize("tap, fmt", [
    ("aio", "raw"), ("sync", "raw"), ("qcow2", "qcow2"), ("vmdk", "vmdk"), ("qcow", "qcow"),
    ("ram", "raw"), ("ioemu", "raw"), ("tapdisk", "raw"),
])
def test_parse_tap(img: Path, tap: str, fmt: str) -> None:
    v = parse(f"tap:{tap}:{img}", "xvdb", "r")
    assert (v.kind, v.fmt, v.target, v.devid, v.mode) == (f"tap:{tap}", fmt, str(img), 51728, "r")
    assert not v.writable


def test_parse_nbd_and_iscsi_need_no_local_file() -> None:
    v = parse("nbd:192.0.2.7:10809", "xvda", "r")
    assert (v.kind, v.target) == ("nbd", "192.0.2.7:10809")
    v = parse("iscsi://192.0.2.8/iqn.2001-04.com.example:disk1/0", "xvdb")
    assert (v.kind, v.target) == ("iscsi", "iscsi://192.0.2.8/iqn.2001-04.com.example:disk1/0")


@pytest.mark.parametrize("uname", ["nbd:10809", "nbd:host:port", "nbd:host:"])
def test_parse_bad_nbd(uname: str) -> None:
    with pytest.raises(DeviceError, match="^Invalid NBD device"):
        parse(uname, "xvda")


def test_parse_empty_cdrom() -> None:
    v = parse("", "hdc:cdrom", "r")
    assert v == Vbd("", "hdc", 5632, "r", "empty", "", "raw", True, True)
    assert not v.writable


def test_parse_cdrom_with_an_image_is_always_read_only(img: Path) -> None:
    v = parse(f"file:{img}", "hdc:cdrom", "w")
    assert (v.cdrom, v.mode, v.kind, v.dev) == (True, "r", "file", "hdc")


def test_parse_ioemu_prefix_and_disk_suffix(img: Path) -> None:
    v = parse(f"file:{img}", "ioemu:hda", "w")
    assert (v.emulated, v.cdrom, v.dev, v.devid) == (True, False, "hda", 768)
    v = parse(f"file:{img}", "ioemu:sda:disk", "w")
    assert (v.emulated, v.cdrom, v.dev, v.devid) == (True, False, "sda", 2048)
    v = parse(f"file:{img}", "xvda", "w")
    assert not v.emulated


@pytest.mark.parametrize("dev", ["ioemu:hda", "hdc:cdrom", "ioemu:sdb", "xvda1"])
def test_to_disk_spec_round_trips(img: Path, dev: str) -> None:
    spec = DiskSpec(f"file:{img}", dev, "r")
    assert vbd.parse(spec).to_disk_spec() == spec
    assert vbd.parse(spec).to_disk_spec("1").backend == "1"


@pytest.mark.parametrize("mode", ["r", "w", "w!"])
def test_valid_modes(img: Path, mode: str) -> None:
    assert parse(f"file:{img}", "xvda", mode).mode == mode


@pytest.mark.parametrize("mode", ["", "rw", "ro", "W", "w!!", "!"])
def test_invalid_mode(img: Path, mode: str) -> None:
    with pytest.raises(DeviceError) as e:
        parse(f"file:{img}", "xvda", mode)
    assert str(e.value) == "Invalid mode"


@pytest.mark.parametrize("uname, kind", [
    ("foo:/x", "foo"), ("vhd:/x", "vhd"), ("tap:bogus:/x", "tap:bogus"), ("tap:aio", "tap:aio"),
])
def test_invalid_type(uname: str, kind: str) -> None:
    with pytest.raises(DeviceError) as e:
        parse(uname, "xvda", check=False)
    assert str(e.value) == f'Block device type "{kind}" is invalid.'


@pytest.mark.parametrize("uname, dev", [("", "xvda"), ("/tmp/x.img", "xvda"), ("sda7", "hda")])
def test_missing_physical_details(uname: str, dev: str) -> None:
    with pytest.raises(DeviceError) as e:
        parse(uname, dev, check=False)
    assert str(e.value) == "Block device must have physical details specified"


@pytest.mark.parametrize("prefix", ["file:", "file://", "tap:aio:", "tap:qcow2:"])
def test_missing_image(tmp_path: Path, prefix: str) -> None:
    missing = tmp_path / "nope.img"
    with pytest.raises(DeviceError) as e:
        parse(f"{prefix}{missing}", "xvda")
    assert str(e.value) == f"Disk image does not exist: {missing}"
    # without the check it resolves anyway
    assert parse(f"{prefix}{missing}", "xvda", check=False).target == str(missing)


def test_phy_not_a_block_device(img: Path, tmp_path: Path) -> None:
    for path in (str(img), str(tmp_path / "absent"), "/dev/null"):
        with pytest.raises(DeviceError) as e:
            parse(f"phy:{path}", "xvda")
        assert str(e.value) == f"{path} is not a block device."


def test_phy_relative_name_gets_dev_prefix() -> None:
    v = parse("phy:sda7", "xvda1", check=False)
    assert (v.kind, v.target) == ("phy", "/dev/sda7")
    assert parse("phy:/dev/vg0/lv", "xvda1", check=False).target == "/dev/vg0/lv"


def test_bad_device_name_in_a_disk(img: Path) -> None:
    with pytest.raises(DeviceError, match=r"^Unable to find number for device \(floppy\)$"):
        parse(f"file:{img}", "floppy")


# ---- blockdev --------------------------------------------------------------------------


def test_blockdev_raw_file(img: Path) -> None:
    assert vbd.blockdev(parse(f"file:{img}", "xvda", "w")) == {
        "node-name": "vbd51712", "read-only": False, "auto-read-only": False,
        "driver": "file", "filename": str(img)}


def test_blockdev_read_only_for_mode_r(img: Path) -> None:
    b = vbd.blockdev(parse(f"file:{img}", "xvda", "r"))
    assert b["read-only"] is True and b["auto-read-only"] is True


def test_blockdev_phy_is_a_host_device() -> None:
    b = vbd.blockdev(parse("phy:sda7", "xvda", "w", check=False))
    assert (b["driver"], b["filename"]) == ("host_device", "/dev/sda7")
    assert "locking" not in b


def test_blockdev_tap_aio_is_native_and_direct(img: Path) -> None:
    b = vbd.blockdev(parse(f"tap:aio:{img}", "xvda", "w"))
    assert (b["driver"], b["aio"], b["cache"]) == ("file", "native", {"direct": True})
    b = vbd.blockdev(parse(f"tap:sync:{img}", "xvda", "w"))
    assert "aio" not in b and "cache" not in b


def test_blockdev_qcow2_format_over_a_file(img: Path) -> None:
    assert vbd.blockdev(parse(f"tap:qcow2:{img}", "xvdb", "r")) == {
        "node-name": "vbd51728", "driver": "qcow2", "read-only": True,
        "file": {"node-name": "vbd51728-file", "read-only": True, "driver": "file",
                 "filename": str(img)}}


def test_blockdev_nbd() -> None:
    assert vbd.blockdev(parse("nbd:192.0.2.7:10809", "xvda", "r")) == {
        "node-name": "vbd51712", "read-only": True, "auto-read-only": True, "driver": "nbd",
        "server": {"type": "inet", "host": "192.0.2.7", "port": "10809"}}


def test_blockdev_iscsi() -> None:
    b = vbd.blockdev(parse("iscsi://192.0.2.8/iqn.2001-04.com.example:disk1/3", "xvda"))
    assert b == {"node-name": "vbd51712", "read-only": False, "auto-read-only": False,
                 "driver": "iscsi", "transport": "tcp", "portal": "192.0.2.8:3260",
                 "target": "iqn.2001-04.com.example:disk1", "lun": 3}
    b = vbd.blockdev(parse("iscsi://san:3261/iqn.x/0", "xvda"))
    assert (b["portal"], b["target"], b["lun"]) == ("san:3261", "iqn.x", 0)


def test_blockdev_bad_iscsi_url() -> None:
    v = parse("iscsi://san/no-lun", "xvda")
    with pytest.raises(DeviceError, match="^Invalid iSCSI device"):
        vbd.blockdev(v)


def test_blockdev_locking_off_only_for_w_bang(img: Path) -> None:
    assert vbd.blockdev(parse(f"file:{img}", "xvda", "w!"))["locking"] == "off"
    assert "locking" not in vbd.blockdev(parse(f"file:{img}", "xvda", "w"))
    assert vbd.blockdev(parse("phy:sda7", "xvda", "w!", check=False))["locking"] == "off"
    qcow = vbd.blockdev(parse(f"tap:qcow2:{img}", "xvda", "w!"))
    assert qcow["file"]["locking"] == "off" and "locking" not in qcow
    assert "locking" not in vbd.blockdev(parse("nbd:h:1", "xvda", "w!"))


# ---- device -------------------------------------------------------------------------------


def test_device_virtio_with_the_xen_name_as_serial(img: Path) -> None:
    assert vbd.device(parse(f"file:{img}", "xvda1")) == {
        "driver": "virtio-blk-pci", "id": "vbd-dev51713", "drive": "vbd51713", "serial": "xvda1"}
    assert vbd.device(parse(f"file:{img}", "sda1"))["driver"] == "virtio-blk-pci"


def test_device_ioemu_hd_is_ide(img: Path) -> None:
    assert vbd.device(parse(f"file:{img}", "ioemu:hdb")) == {
        "driver": "ide-hd", "id": "vbd-dev832", "drive": "vbd832", "bus": "ide.0", "unit": 1,
        "serial": "hdb"}


def test_device_ioemu_sd_is_scsi(img: Path) -> None:
    assert vbd.device(parse(f"file:{img}", "ioemu:sda")) == {
        "driver": "scsi-hd", "bus": "scsi0.0", "id": "vbd-dev2048", "drive": "vbd2048",
        "serial": "sda"}


def test_device_cdrom(img: Path) -> None:
    assert vbd.device(parse(f"file:{img}", "hdc:cdrom", "r")) == {
        "driver": "ide-cd", "id": "vbd-dev5632", "drive": "vbd5632", "bus": "ide.1", "unit": 0,
        "serial": "hdc"}
    # an empty drive has no backing node
    assert vbd.device(parse("", "hdc:cdrom", "r")) == {
        "driver": "ide-cd", "id": "vbd-dev5632", "bus": "ide.1", "unit": 0, "serial": "hdc"}


def test_device_tap_sync_turns_the_write_cache_off(img: Path) -> None:
    assert vbd.device(parse(f"tap:sync:{img}", "xvda"))["write-cache"] == "off"
    assert "write-cache" not in vbd.device(parse(f"tap:aio:{img}", "xvda"))


# ---- argv ------------------------------------------------------------------------------------


def test_argv_flattens_options(img: Path) -> None:
    assert vbd.argv([parse(f"tap:aio:{img}", "xvda", "r")]) == [
        "-blockdev", "node-name=vbd51712,read-only=on,auto-read-only=on,driver=file,"
        f"filename={img},aio=native,cache.direct=on",
        "-device", "virtio-blk-pci,id=vbd-dev51712,drive=vbd51712,serial=xvda"]


def test_argv_nested_format_node(img: Path) -> None:
    assert vbd.argv([parse(f"tap:qcow2:{img}", "xvdb", "w")])[1] == (
        "node-name=vbd51728,driver=qcow2,read-only=off,file.node-name=vbd51728-file,"
        f"file.read-only=off,file.driver=file,file.filename={img}")


def test_argv_empty_cdrom_has_no_blockdev() -> None:
    assert vbd.argv([parse("", "hdc:cdrom", "r")]) == [
        "-device", "ide-cd,id=vbd-dev5632,bus=ide.1,unit=0,serial=hdc"]


def test_argv_adds_one_scsi_controller_only_for_emulated_sd(img: Path) -> None:
    vbds = [parse(f"file:{img}", "xvda"), parse(f"file:{img}", "ioemu:sda"),
            parse(f"file:{img}", "ioemu:sdb"), parse(f"file:{img}", "ioemu:hda")]
    out = vbd.argv(vbds)
    assert out[:2] == ["-device", "virtio-scsi-pci,id=scsi0"]
    assert out.count("virtio-scsi-pci,id=scsi0") == 1
    assert sum(a.startswith("scsi-hd,bus=scsi0.0,") for a in out) == 2
    assert out.count("-blockdev") == 4


@pytest.mark.parametrize("devs", [
    ["xvda"], ["ioemu:hda", "ioemu:hdb"], ["sda"], ["ioemu:sdc:cdrom"], ["hdc:cdrom"], [],
])
def test_argv_no_scsi_controller_without_emulated_sd_disk(img: Path, devs: list[str]) -> None:
    out = vbd.argv([parse(f"file:{img}", d, "r") for d in devs])
    assert not any("virtio-scsi-pci" in a for a in out)
    assert len(out) == 4 * len(devs)


# ---- sharing -------------------------------------------------------------------------------


def test_identity_same_for_links_and_different_for_another_file(img: Path, tmp_path: Path) -> None:
    sym = tmp_path / "sym.img"
    sym.symlink_to(img)
    hard = tmp_path / "hard.img"
    os.link(img, hard)
    other = tmp_path / "other.img"
    other.write_bytes(b"\0" * 512)
    base = vbd.identity(parse(f"file:{img}", "xvda"))
    assert base is not None
    assert vbd.identity(parse(f"file:{sym}", "xvdb")) == base
    assert vbd.identity(parse(f"tap:aio:{hard}", "xvdc")) == base
    assert vbd.identity(parse(f"file:{other}", "xvdd")) != base


def test_identity_none_for_network_empty_and_missing(tmp_path: Path) -> None:
    assert vbd.identity(parse("nbd:h:1", "xvda")) is None
    assert vbd.identity(parse("iscsi://h/iqn/0", "xvda")) is None
    assert vbd.identity(parse("", "hdc:cdrom", "r")) is None
    assert vbd.identity(parse(f"file:{tmp_path / 'gone'}", "xvda", check=False)) is None


def test_a_fresh_image_is_not_mounted_on_the_host(img: Path) -> None:
    assert vbd.host_mounts_writable(parse(f"file:{img}", "xvda")) is None
    assert vbd.host_mounts_writable(parse("nbd:h:1", "xvda")) is None


@pytest.mark.parametrize("requested_w, holder, holder_w, text", [
    (True, "guest", True,
     "Device X is mounted in a guest domain,\nand so cannot be mounted now."),
    (True, "guest", False,
     "Device X is mounted in a guest domain,\nand so cannot be mounted now."),
    (False, "guest", True,
     "Device X is mounted read-write in a guest domain,\nand so cannot be mounted read-only now."),
    (True, "host", True,
     "Device X is mounted in the privileged domain,\nand so cannot be mounted by a guest."),
    (False, "host", True,
     "Device X is mounted read-write in the privileged domain,\n"
     "and so cannot be mounted read-only by a guest."),
])
def test_sharing_error_wording(requested_w: bool, holder: str, holder_w: bool, text: str) -> None:
    assert vbd.sharing_error("X", requested_w, holder, holder_w) == text


# ---- over-long and out-of-range names: a DeviceError with a cause (issue 9 item 10) ----


@pytest.mark.parametrize("name", ["1" * 5000, "xvda" + "1" * 5000, "xvd" + "a" * 5000,
                                  "0x" + "f" * 5000, "ioemu:hd" + "a" * 5000 + ":cdrom"])
def test_over_long_device_name_is_a_device_error(name: str) -> None:
    """Before: an internal ValueError (Python's 4,300-digit int limit) or a number too
    big to print."""
    with pytest.raises(DeviceError, match=r"^Unable to find number for device \(.{32}\.\.\. "
                       r"\(\d+ characters\)\): a device name has at most 32 characters$"):
        vbd.device_number(name)
    with pytest.raises(DeviceError, match="a device name has at most 32 characters"):
        parse("file:/x", name, check=False)


@pytest.mark.parametrize("name", ["4294967296", "0x100000000", "xvdzzzzz1", "xvda256"])
def test_device_numbers_past_32_bits_are_refused(name: str) -> None:
    with pytest.raises(DeviceError, match=r"^Unable to find number for device"):
        vbd.device_number(name)


def test_largest_numbers_still_accepted() -> None:
    assert vbd.device_number("4294967295") == 2**32 - 1
    assert vbd.device_number("xvda255") == (1 << 28) | 255
    assert vbd.device_number("xvdzzzz1") < 2**32


@pytest.mark.parametrize("params", ["1" * 5000, "a" * 5000])
def test_over_long_phy_name_is_a_device_error(params: str) -> None:
    """Before: a 5,000-digit number was a ValueError, a 5,000-character name an OSError
    (ENAMETOOLONG) escaping stat."""
    with pytest.raises(DeviceError, match=r"^/dev/.*\.\.\. \(5005 characters\) is not a block"):
        parse("phy:" + params, "xvda")
