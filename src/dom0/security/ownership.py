"""Disk access enforced below xend (issue 12 item 4): a labelled domain's QEMU runs
as a user of its own, and its writable disk images belong to that user, mode 0600,
while it runs.  Another domain's QEMU, a different user, cannot open them, whatever
xend is asked or QEMU is made to do.  Like libvirt's DAC driver with dynamic
ownership, but one user per domain rather than one ``qemu`` user for all.

The pure decisions live here: the configured range of user IDs, which ID a launch
gets, which disks change owner, and what is remembered to give them back.  The
applying (chown, the store, QEMU's ``-runas``) is ``domain/ownership.py``'s.

Read-only images keep their owner and mode: several domains of one STE type may
share one, and a domain may hold several STE types while a process has one user
and (under ``-runas``) one group, so no owner or group could say "these domains".
QEMU opens them while it is still root (cold-plugged disks are opened before it
drops privileges), and a hot-plugged or inserted one is opened by xend and handed
to QEMU as a descriptor (QMP ``add-fd``): QEMU never needs to open a path itself.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dom0.errors import ConfigError, SecurityError

#: what ``xend-qemu-uid-range`` is when not configured: far above the IDs distributions
#: hand to people and services (and below systemd's container ranges at 524288)
DEFAULT_RANGE = "300000-300999"

#: disk kinds that name a host path (nbd:/iscsi: are network clients, empty is no medium)
LOCAL_KINDS = ("phy", "file")


def parse_range(text: str) -> range | None:
    """``FIRST-LAST`` (inclusive) of ``xend-qemu-uid-range``; empty or ``none``: no
    range (labelled domains' QEMUs then run as root, as unlabelled ones do)."""
    text = text.strip()
    if text.lower() in ("", "none", "off"):
        return None
    first_s, sep, last_s = text.partition("-")
    if not sep or not first_s.strip().isdigit() or not last_s.strip().isdigit():
        raise ConfigError(f"Invalid xend-qemu-uid-range {text!r}: expected FIRST-LAST, "
                          "e.g. 300000-300999")
    first, last = int(first_s), int(last_s)
    if first < 1000 or last < first or last >= (1 << 31) - 1:
        raise ConfigError(f"Invalid xend-qemu-uid-range {text!r}: FIRST at least 1000, "
                          "LAST not below FIRST, both below 2^31-1")
    return range(first, last + 1)


def pick_uid(ids: range, taken: Iterable[int], exists: Callable[[int], bool]) -> int:
    """The lowest ID of *ids* no running domain holds and no host account has (the
    range should be kept free of accounts; one that is not is skipped, never shared)."""
    held = set(taken)
    for uid in ids:
        if uid not in held and not exists(uid):
            return uid
    raise SecurityError(f"No free user ID for QEMU in xend-qemu-uid-range "
                        f"{ids.start}-{ids.stop - 1}: {len(held)} domains hold one")


@dataclass(frozen=True)
class Owner:
    """Who owned a disk before a domain took it, and its permission bits."""

    uid: int
    gid: int
    mode: int

    @classmethod
    def of(cls, st_mode: int, st_uid: int, st_gid: int) -> Owner:
        return cls(st_uid, st_gid, stat.S_IMODE(st_mode))

    def to_xattr(self) -> bytes:
        return f"{self.uid}:{self.gid}:{self.mode:o}".encode()

    @classmethod
    def from_xattr(cls, value: bytes) -> Owner | None:
        """The owner kept on the file itself; None for a value that is not ours."""
        try:
            uid, gid, mode = value.decode().split(":")
            return cls(int(uid), int(gid), int(mode, 8) & 0o7777)
        except ValueError:
            return None


@dataclass(frozen=True)
class Grant:
    """One disk given to one launch of a domain (``instance``), and what it had
    before: the record that makes giving it back survive a crash of xend."""

    path: str
    instance: str
    before: Owner
    #: the user it was given to
    given: int

    def to_record(self) -> dict[str, int | str]:
        return {"path": self.path, "instance": self.instance, "uid": self.before.uid,
                "gid": self.before.gid, "mode": self.before.mode, "given": self.given}

    @classmethod
    def from_record(cls, rec: dict[str, int | str]) -> Grant:
        return cls(str(rec["path"]), str(rec["instance"]),
                   Owner(int(rec["uid"]), int(rec["gid"]), int(rec["mode"])),
                   int(rec.get("given", -1)))

    def still_given(self, st_uid: int) -> bool:
        """Is the disk still its user's?  One taken since by another xend (the
        destination of a migration over shared storage) is that one's to give back."""
        return st_uid == self.given


#: where a taken image keeps its previous owner on itself (as libvirt's DAC driver
#: does), so that it travels with shared storage: the destination of a live
#: migration takes it from the source's QEMU user and still knows the real owner
XATTR = "trusted.dom0.owner"

#: the mode a taken disk has: its QEMU's user reads and writes it, nobody else does
TAKEN_MODE = 0o600


def takes(kind: str, writable: bool) -> bool:
    """Does a domain take ownership of a disk of this kind and mode?  Writable host
    paths only (read-only ones are shared: see the module's note)."""
    return writable and (kind in LOCAL_KINDS or kind.startswith("tap:"))

