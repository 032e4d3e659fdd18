"""Virtual block devices: Xen's ``disk = [...]`` grammar (spec §3.1) resolved
into what QEMU needs.

A Xen disk is ``UNAME,DEV,MODE``: ``phy:sda7,xvda1,w``.  Here it becomes a QEMU
block node (``-blockdev``: file/host_device, optionally under a format driver,
or QEMU's own NBD/iSCSI clients) and a guest device: virtio-blk normally, IDE or
SCSI for ``ioemu:`` names, an IDE CD-ROM for ``:cdrom``.  The name the user gave
(``xvda1``, ``sda1``, ``hda``) travels to the guest as the device's serial
number; the project's guest image links ``/dev/<name>`` to it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from dom0.errors import DeviceError
from dom0.model.devices import DiskSpec

TAP_FORMATS = {"aio": "raw", "sync": "raw", "qcow": "qcow", "qcow2": "qcow2", "vmdk": "vmdk",
               "ioemu": "raw", "tapdisk": "raw", "ram": "raw"}
MODES = ("r", "w", "w!")
_NAME = re.compile(r"^(hd|sd|xvd|vd)([a-z]+)(\d*)$")
#: longer than any name Xen could number (``xvdzzzz255``, ``0xffffffff``): a name past
#: it is refused before any conversion (a 5,000-digit one exceeded Python's int limit)
MAX_NAME = 32
#: Xen's device numbers are 32-bit; the "ext" encoding has 20 bits of disk, 8 of partition
_MAX_NUMBER, _EXT_DISKS, _EXT_PARTS = 1 << 32, 1 << 20, 1 << 8


def shown(text: str, limit: int = MAX_NAME) -> str:
    """*text* as an error message quotes it: cut, and saying so, when too long."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Vbd:
    """One virtual block device, resolved."""

    uname: str  # as given (``phy:sda7``)
    dev: str  # the name the guest sees (``xvda1``), without ioemu:/:cdrom
    devid: int  # Xen's device number (the block-list Vdev column)
    mode: str
    kind: str  # phy, file, tap:<type>, nbd, iscsi, empty
    target: str  # path, or host:port / iscsi URL
    fmt: str  # raw, qcow2, ...
    emulated: bool
    cdrom: bool

    @property
    def writable(self) -> bool:
        return self.mode.startswith("w")

    @property
    def node(self) -> str:
        return f"vbd{self.devid}"

    @property
    def device_id(self) -> str:
        return f"vbd-dev{self.devid}"

    def to_disk_spec(self, backend: str | None = None) -> DiskSpec:
        dev = ("ioemu:" if self.emulated else "") + self.dev + (":cdrom" if self.cdrom else "")
        return DiskSpec(self.uname, dev, self.mode, backend)


def device_number(name: str) -> int:
    """Xen's number for a virtual device name (``xvda1`` -> 51713, ``hda`` -> 768);
    ``ioemu:`` and ``:disk``/``:cdrom`` decorations are ignored."""
    name = name[len("ioemu:"):] if name.startswith("ioemu:") else name
    name = name.rsplit(":", 1)[0] if name.endswith((":cdrom", ":disk")) else name
    if len(name) > MAX_NAME:
        raise DeviceError(f"Unable to find number for device ({shown(name)}): "
                          f"a device name has at most {MAX_NAME} characters")
    number = None
    if name.isascii() and name.isdigit():
        number = int(name)
    elif name.lower().startswith("0x"):
        try:
            number = int(name, 16)
        except ValueError:
            pass
    if number is not None:
        if number >= _MAX_NUMBER:
            raise DeviceError(f"Unable to find number for device ({name}): "
                              "device numbers are 32-bit")
        return number
    m = _NAME.fullmatch(name)
    if not m:
        raise DeviceError(f"Unable to find number for device ({name})")
    prefix, letters, part_s = m.groups()
    disk = 0
    for c in letters:
        disk = disk * 26 + (ord(c) - ord("a") + 1)
    disk -= 1
    part = int(part_s or 0)
    if prefix in ("xvd", "vd"):
        if disk < 16 and part < 16:
            return (202 << 8) | (disk << 4) | part
        if disk >= _EXT_DISKS or part >= _EXT_PARTS:
            raise DeviceError(f"Unable to find number for device ({name})")
        return (1 << 28) | (disk << 8) | part  # the "ext" encoding
    if prefix == "sd":
        majors = [8, 65, 66, 67, 68, 69, 70, 71, 128, 129, 130, 131, 132, 133, 134, 135]
        if disk // 16 >= len(majors) or part > 15:
            raise DeviceError(f"Unable to find number for device ({name})")
        return (majors[disk // 16] << 8) | ((disk % 16) << 4) | part
    # hd: two disks per IDE channel
    majors_hd = [3, 22, 33, 34, 56, 57, 88, 89, 90, 91]
    if disk // 2 >= len(majors_hd) or part > 63:
        raise DeviceError(f"Unable to find number for device ({name})")
    return (majors_hd[disk // 2] << 8) | ((disk % 2) << 6) | part


def parse(spec: DiskSpec, check_exists: bool = True) -> Vbd:
    """Resolve and check one disk; the errors are Xen's (spec §3.1)."""
    if spec.mode not in MODES:
        raise DeviceError("Invalid mode")
    dev = spec.dev
    emulated = dev.startswith("ioemu:")
    if emulated:
        dev = dev[len("ioemu:"):]
    cdrom = False
    if dev.endswith(":cdrom"):
        dev, cdrom = dev[: -len(":cdrom")], True
    elif dev.endswith(":disk"):
        dev = dev[: -len(":disk")]
    devid = device_number(dev)
    if not spec.uname:
        if not cdrom:
            raise DeviceError("Block device must have physical details specified")
        return Vbd("", dev, devid, "r", "empty", "", "raw", True, True)
    if ":" not in spec.uname:
        raise DeviceError("Block device must have physical details specified")
    kind, _, params = spec.uname.partition(":")
    fmt = "raw"
    if kind == "phy":
        target = _phy_path(params)
        if check_exists:
            try:
                if not stat.S_ISBLK(os.stat(target).st_mode):
                    raise DeviceError(f"{target} is not a block device.")
            except OSError:  # missing, or a name the kernel refuses (too long...)
                raise DeviceError(f"{shown(target, 256)} is not a block device.") from None
    elif kind == "file":
        target = params[2:] if params.startswith("//") else params
        _check_image(target, check_exists)
    elif kind == "tap":
        tap_type, _, target = params.partition(":")
        if tap_type not in TAP_FORMATS or not target:
            raise DeviceError(f'Block device type "tap:{tap_type}" is invalid.')
        kind, fmt = f"tap:{tap_type}", TAP_FORMATS[tap_type]
        _check_image(target, check_exists)
    elif kind == "nbd":
        target = params  # host:port
        host, _, port = params.rpartition(":")
        if not host or not port.isdigit():
            raise DeviceError(f"Invalid NBD device {params}: expected nbd:<host>:<port>")
    elif kind == "iscsi":
        target = params if params.startswith("iscsi://") else "iscsi:" + params
    else:
        raise DeviceError(f'Block device type "{kind}" is invalid.')
    mode = "r" if cdrom else spec.mode
    return Vbd(spec.uname, dev, devid, mode, kind, target, fmt, emulated, cdrom)


def _phy_path(params: str) -> str:
    """``sda7``, ``/dev/sda7``, ``vg/lv``, or a device number (``0x301`` = 3:1)."""
    if params.startswith("/"):
        return params
    number = None
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", params):
        number = int(params, 16)
    elif params.isascii() and params.isdigit() and len(params) <= 10:  # 32-bit at most
        number = int(params)
    if number is not None:
        try:
            with open(f"/sys/dev/block/{number >> 8}:{number & 0xFF}/uevent") as f:
                for line in f:
                    if line.startswith("DEVNAME="):
                        return "/dev/" + line.strip().split("=", 1)[1]
        except OSError:
            pass
        return params
    return "/dev/" + params


def _check_image(path: str, check_exists: bool) -> None:
    if check_exists and not os.path.exists(path):
        raise DeviceError(f"Disk image does not exist: {shown(path, 256)}")


# ---- QEMU -----------------------------------------------------------------------


def blockdev(vbd: Vbd) -> dict[str, Any]:
    """The ``-blockdev``/``blockdev-add`` description of the backend."""
    ro = not vbd.writable
    if vbd.kind == "nbd":
        host, _, port = vbd.target.rpartition(":")
        proto: dict[str, Any] = {"driver": "nbd",
                                 "server": {"type": "inet", "host": host, "port": port}}
    elif vbd.kind == "iscsi":
        proto = {"driver": "iscsi", **_iscsi_options(vbd.target)}
    elif vbd.kind == "phy":
        proto = {"driver": "host_device", "filename": vbd.target}
    else:
        proto = {"driver": "file", "filename": vbd.target}
    if vbd.kind == "tap:aio":
        proto.update({"aio": "native", "cache": {"direct": True}})
    if vbd.mode == "w!" and proto["driver"] in ("file", "host_device"):
        proto["locking"] = "off"  # the user asked to share it writable: QEMU must not refuse
    if vbd.fmt == "raw":
        return {"node-name": vbd.node, "read-only": ro, "auto-read-only": ro, **proto}
    return {"node-name": vbd.node, "driver": vbd.fmt, "read-only": ro,
            "file": {"node-name": vbd.node + "-file", "read-only": ro, **proto}}


def _iscsi_options(url: str) -> dict[str, Any]:
    """``iscsi://<host>[:port]/<target-iqn>/<lun>``."""
    m = re.match(r"^iscsi:(?://)?([^/:]+)(?::(\d+))?/([^/]+)/(\d+)$", url)
    if not m:
        raise DeviceError(f"Invalid iSCSI device {url}: expected "
                          "iscsi://<host>[:port]/<target>/<lun>")
    host, port, target, lun = m.groups()
    return {"transport": "tcp", "portal": f"{host}:{port or 3260}", "target": target,
            "lun": int(lun)}


def device(vbd: Vbd) -> dict[str, Any]:
    """The ``-device``/``device_add`` description of what the guest sees."""
    props: dict[str, Any] = {"id": vbd.device_id}
    if vbd.kind != "empty":
        props["drive"] = vbd.node
    serial = {"serial": vbd.dev[:20]}
    place = _ide_place(vbd.dev)
    if vbd.cdrom:
        return {"driver": "ide-cd", **props, **place, **serial}
    if vbd.emulated and vbd.dev.startswith("hd"):
        return {"driver": "ide-hd", **props, **place, **serial}
    if vbd.emulated:
        return {"driver": "scsi-hd", "bus": "scsi0.0", **props, **serial}
    extra = {"write-cache": "off"} if vbd.kind == "tap:sync" else {}
    return {"driver": "virtio-blk-pci", **props, **serial, **extra}


def _ide_place(dev: str) -> dict[str, Any]:
    """hda..hdd where a PC has them (primary/secondary channel, master/slave), so that
    ``hdc:cdrom`` is the secondary master as the guest and its BIOS expect; other
    names are placed by QEMU."""
    m = re.fullmatch(r"hd([a-d])", dev)
    if not m:
        return {}
    n = ord(m.group(1)) - ord("a")
    return {"bus": f"ide.{n // 2}", "unit": n % 2}


def _flatten(prefix: str, value: dict[str, Any]) -> list[str]:
    out = []
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out += _flatten(name + ".", v)
        elif isinstance(v, bool):
            out.append(f"{name}={'on' if v else 'off'}")
        else:
            out.append(f"{name}={v}")
    return out


def argv(vbds: list[Vbd]) -> list[str]:
    """Cold-plug arguments for all of a domain's disks."""
    out: list[str] = []
    if any(v.emulated and not v.cdrom and not v.dev.startswith("hd") for v in vbds):
        out += ["-device", "virtio-scsi-pci,id=scsi0"]
    for vbd in vbds:
        if vbd.kind != "empty":
            out += ["-blockdev", ",".join(_flatten("", blockdev(vbd)))]
        dev = device(vbd)
        out += ["-device", ",".join([dev.pop("driver")] + _flatten("", dev))]
    return out


# ---- sharing (the Xen block script's checks) -------------------------------------


def identity(vbd: Vbd) -> tuple[int, int] | None:
    """What two disks share when they are the same storage: the inode of an image
    (any path, symlink or hard link to it) or the device number of a block device."""
    if vbd.kind in ("nbd", "iscsi", "empty"):
        return None
    try:
        st = os.stat(vbd.target)
    except OSError:
        return None
    if stat.S_ISBLK(st.st_mode):
        return (0, st.st_rdev)
    return (st.st_dev, st.st_ino)


def host_mounts_writable(vbd: Vbd) -> bool | None:
    """Is the device (or the image, through a loop device) mounted on the host?
    True for read-write, False for read-only, None when not mounted."""
    ident = identity(vbd)
    if ident is None:
        return None
    devices = set()
    if ident[0] == 0:
        devices.add(ident[1])
    else:
        devices |= _loop_devices_of(ident)
    if not devices:
        return None
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            major, minor = (int(x) for x in fields[2].split(":"))
            if os.makedev(major, minor) in devices:
                rw = "rw" in fields[5].split(",")
                found = bool(found) or rw
    return found


def _loop_devices_of(ident: tuple[int, int]) -> set[int]:
    out: set[int] = set()
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return out
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                backing = f.read().strip()
            st = os.stat(backing)
            if (st.st_dev, st.st_ino) == ident:
                with open(f"/sys/block/{name}/dev") as f:
                    major, minor = (int(x) for x in f.read().split(":"))
                out.add(os.makedev(major, minor))
        except OSError:
            continue
    return out


def sharing_error(dev: str, requested_writable: bool, holder: str, holder_writable: bool) -> str:
    """Xen's wording: ``Device <dev> is mounted [read-write ]in [a guest|the privileged ]
    domain,\\nand so cannot be mounted [read-only ][now|by a guest].``"""
    where = "the privileged domain" if holder == "host" else "a guest domain"
    rw = "read-write " if holder_writable and not requested_writable else ""
    ro = "" if requested_writable else "read-only "
    when = "by a guest" if holder == "host" else "now"
    return f"Device {dev} is mounted {rw}in {where},\nand so cannot be mounted {ro}{when}."
