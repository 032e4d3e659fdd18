"""Files xend opens for a QEMU that no longer runs as root.

A labelled domain's QEMU drops to a user of its own (``-runas``, domain/ownership.py)
once it has opened its cold-plugged devices, sockets, logs and pidfile.  Whatever it
must open later (a hot-plugged disk, a CD inserted, a save file, a core dump, a
screenshot) xend opens as root and hands over as a descriptor: QMP ``add-fd`` and
``/dev/fdset/N`` for the block layer and ``screendump``, ``getfd`` and ``fd:`` for
migration and dumps.  QEMU's user then needs no access to any path at all, not even
to the image's directory.  A QEMU running as root (an unlabelled domain) opens paths
itself, as it always did.
"""

from __future__ import annotations

import fcntl
import os
import struct
from typing import Any

from dom0.devices.vbd import Vbd

#: disk kinds that name a host path QEMU would otherwise open itself
LOCAL_KINDS = ("phy", "file")


def unprivileged(pid: int | None) -> bool:
    """Does the QEMU process *pid* run as a user other than root (``-runas``)?  Read
    from /proc, so a QEMU xend re-adopted after a restart is known too."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[2]) != 0  # the effective user
    except (OSError, ValueError, IndexError):
        pass
    return False


def handed_over(vbd: Vbd) -> bool:
    """Is this disk a host path (so an unprivileged QEMU gets it as a descriptor)?"""
    return vbd.kind in LOCAL_KINDS or vbd.kind.startswith("tap:")


def open_image(vbd: Vbd) -> int:
    """The image opened as QEMU's block layer would (read-write or read-only);
    ``O_CLOEXEC``: only the copy passed over the QMP socket reaches QEMU."""
    return os.open(vbd.target, (os.O_RDWR if vbd.writable else os.O_RDONLY) | os.O_CLOEXEC)


#: linux/if_tun.h
_TUNSETIFF, _IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR = 0x400454CA, 0x0002, 0x1000, 0x4000


def open_tap(name: str) -> int:
    """A descriptor on the (persistent) tap *name*, opened as QEMU opens one by name
    (an unprivileged QEMU may not: attaching to a tap takes CAP_NET_ADMIN)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(),
                                                _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR))
    except OSError:
        os.close(fd)
        raise
    return fd


def tap_by_fd(netdev: dict[str, Any], fdname: str) -> dict[str, Any]:
    """A ``netdev_add`` of a tap given as a descriptor (QEMU refuses a name or
    scripts beside ``fd``)."""
    out = {k: v for k, v in netdev.items() if k not in ("ifname", "script", "downscript")}
    out["fd"] = fdname
    return out


def with_fdset(description: dict[str, Any], fdset: int) -> dict[str, Any]:
    """A ``blockdev-add`` description whose protocol node reads descriptor set
    *fdset* instead of its path (the protocol node: the top one for raw images, its
    ``file`` child under a format driver)."""
    out = dict(description)
    if "filename" in out:
        out["filename"] = f"/dev/fdset/{fdset}"
    elif isinstance(out.get("file"), dict):
        out["file"] = with_fdset(out["file"], fdset)
    return out


def fdsets_of(fdsets: list[dict[str, Any]], opaque: str) -> list[int]:
    """IDs of the descriptor sets (``query-fdsets``) holding a descriptor tagged
    *opaque*: found again by tag, so a re-adopted QEMU's sets can be removed too."""
    return [int(s["fdset-id"]) for s in fdsets
            if any(fd.get("opaque") == opaque for fd in s.get("fds", []))]
