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

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import struct
from typing import Any

from dom0.backends.qemu.qmp import QMPSession
from dom0.devices.vbd import Vbd
from dom0.errors import BackendError

log = logging.getLogger(__name__)

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


# ---- handing over, over QMP -------------------------------------------------------


async def pass_file(qmp: QMPSession, path: str, fdname: str) -> None:
    """*path* created (or truncated) for writing by xend, and given to QEMU as
    *fdname* (``fd:<fdname>`` in a dump's protocol)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        await qmp.execute_with_fd("getfd", fd, fdname=fdname)
    finally:
        os.close(fd)


async def add_fd(qmp: QMPSession, fd: int, opaque: str) -> int:
    """Put *fd* in a new descriptor set tagged *opaque*; its ID (``/dev/fdset/<ID>``)."""
    added = await qmp.execute_with_fd("add-fd", fd, opaque=opaque)
    return int(added["fdset-id"])


async def drop_fdsets(qmp: QMPSession, opaque: str) -> None:
    """Forget the descriptor sets tagged *opaque* (a block node keeps its own
    duplicate while it lives)."""
    with contextlib.suppress(BackendError):
        for fdset in fdsets_of(await qmp.execute("query-fdsets"), opaque):
            await qmp.execute("remove-fd", **{"fdset-id": fdset})


async def image_description(qmp: QMPSession, vbd: Vbd,
                            description: dict[str, Any]) -> dict[str, Any]:
    """*description* (``blockdev-add``) reading the image from a descriptor xend
    opened, in a set tagged with the node's name."""
    try:
        fd = open_image(vbd)
    except OSError as exc:
        raise BackendError(f"cannot open {vbd.target}: {exc.strerror}") from None
    try:
        fdset = await add_fd(qmp, fd, vbd.node)
    finally:
        os.close(fd)
    return with_fdset(description, fdset)


async def tap_description(qmp: QMPSession, ifname: str, fdname: str,
                          description: dict[str, Any]) -> dict[str, Any]:
    """*description* (``netdev_add``) using the tap *ifname* opened by xend."""
    try:
        fd = open_tap(ifname)
    except OSError as exc:
        raise BackendError(f"cannot open tap {ifname}: {exc.strerror}") from None
    try:
        await qmp.execute_with_fd("getfd", fd, fdname=fdname)
    finally:
        os.close(fd)
    return tap_by_fd(description, fdname)


async def socket_pair(qmp: QMPSession, fdname: str) -> socket.socket:
    """One end of a new socket pair given to QEMU as *fdname*; the other, ours."""
    ours, theirs = socket.socketpair()
    try:
        await qmp.execute_with_fd("getfd", theirs.fileno(), fdname=fdname)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours


async def connect_for(qmp: QMPSession, path: str, fdname: str) -> None:
    """Connect to xend's own listener at *path* and give QEMU the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)  # a listener of ours: at once
        await qmp.execute_with_fd("getfd", sock.fileno(), fdname=fdname)


async def relay_into(qmp: QMPSession, path: str, fdname: str) -> tuple[asyncio.Server,
                                                                       asyncio.StreamWriter]:
    """Listen on *path* for one connection and pour what it brings into a socket
    pair whose other end QEMU has as *fdname* (for a QEMU that may not listen there).
    Returns the listener and our end, for the caller to close on failure."""
    ours = await socket_pair(qmp, fdname)
    _, to_qemu = await asyncio.open_unix_connection(sock=ours)

    async def pour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.close()  # one stream only
        try:
            while chunk := await reader.read(1 << 20):
                to_qemu.write(chunk)
                await to_qemu.drain()
        except OSError as exc:
            log.warning("relay into QEMU: %s", exc)
        finally:
            to_qemu.close()
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(pour, path)
    return server, to_qemu
