"""What an incoming domain may touch on this host: the destination's storage
policy (``xend-relocation-storage-roots``), checked before the probe and before
QEMU starts.  Authentication says who the peer is; this says what even an
authenticated peer may make xend open.

- Every host file the domain names (disks ``file:``/``tap:``/``phy:``, the kernel,
  the ramdisk, a bootloader) must resolve (realpath: ``..`` and symlinks followed)
  to a path under one of the roots, or be a root itself (a ``phy:`` device can be
  listed as one).  No roots: no host path at all, so only diskless domains booted
  without a kernel file migrate in — the safe default.
- Network disks (``nbd:``, ``iscsi:``) name no host path and are let through: the
  destination's QEMU connects to them as the source's did.
- A vif's bridge must exist here; its script must be a bare name (run from this
  host's scripts directory, never a path the peer chose).
- A migration to localhost brings in a domain this xend already runs: the files
  the outgoing domain of that UUID uses (``vouched``) are let in wherever they
  lie, since this host opened them for it already.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dom0.devices import vbd
from dom0.errors import XendError
from dom0.migration.wire import MigrationError
from dom0.model.devices import DiskSpec

HOST_PATH_KINDS = ("phy", "file")  # and every tap:<format>
NETWORK_KINDS = ("nbd", "iscsi", "empty")
MAX_PATH = 4096


class PolicyError(MigrationError):
    """The incoming domain names something this host does not let peers use."""


@dataclass(frozen=True)
class StoragePolicy:
    #: resolved directories (or device files) an incoming domain's files must lie under
    roots: tuple[str, ...] = ()
    #: where bridges are looked up (a test may point it elsewhere)
    sys_class_net: str = "/sys/class/net"

    @classmethod
    def from_option(cls, value: str) -> StoragePolicy:
        """``xend-relocation-storage-roots``: space-separated absolute paths."""
        roots = []
        for word in value.split():
            if not os.path.isabs(word):
                raise ValueError(f"storage root {word} is not an absolute path")
            roots.append(os.path.realpath(word))
        return cls(tuple(roots))

    def check(self, config: dict[str, Any], vouched: frozenset[str] = frozenset()) -> None:
        """Refuse (PolicyError, one line saying what and why) a domain that names a
        host path outside the roots (and not *vouched* for: resolved paths this
        host's own outgoing copy of the domain uses), or a bridge or script it may
        not use."""
        for name in ("kernel", "ramdisk", "bootloader"):
            value = config.get(name) or ""
            if not isinstance(value, str):
                raise PolicyError(f"incoming domain: {name} must be a string")
            if value:
                self.check_path(value, name, vouched)
        disks = config.get("disks") or []
        if not isinstance(disks, list):
            raise PolicyError("incoming domain: disks must be a list")
        for disk in disks:
            self.check_disk(disk, vouched)
        vifs = config.get("vifs") or []
        if not isinstance(vifs, list):
            raise PolicyError("incoming domain: vifs must be a list")
        for vif in vifs:
            options = vif.get("options") if isinstance(vif, dict) else None
            if not isinstance(options, dict):
                raise PolicyError("incoming domain: a vif without options")
            self.check_vif(options)

    def check_disk(self, disk: Any, vouched: frozenset[str] = frozenset()) -> None:
        if not isinstance(disk, dict) or not all(
                isinstance(disk.get(k, ""), str) for k in ("uname", "dev", "mode")):
            raise PolicyError("incoming domain: malformed disk entry")
        spec = DiskSpec(disk.get("uname", ""), disk.get("dev", ""), disk.get("mode", "r"))
        try:
            parsed = vbd.parse(spec, check_exists=False)
        except XendError as exc:
            raise PolicyError(f"incoming domain: disk {spec.uname[:200]}: {exc}") from None
        if parsed.kind in NETWORK_KINDS:
            return
        self.check_path(parsed.target, f"disk {spec.uname}", vouched)

    def check_path(self, path: str, what: str, vouched: frozenset[str] = frozenset()) -> None:
        """*path* (realpath'd) must be a root or under one, or *vouched* for."""
        if len(path) > MAX_PATH or "\0" in path:
            raise PolicyError(f"incoming domain: {what[:200]}: not a valid path")
        if not os.path.isabs(path):
            raise PolicyError(f"incoming domain: {what}: {path} is not an absolute path")
        real = os.path.realpath(path)
        if real in vouched:
            return
        for root in self.roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return
        shown = f"{path} (resolves to {real})" if real != path else path
        allowed = " ".join(self.roots) or "none configured"
        raise PolicyError(f"incoming domain: {what}: {shown} is outside this host's "
                          f"relocation storage roots (xend-relocation-storage-roots: {allowed})")

    def check_vif(self, options: dict[str, Any]) -> None:
        bridge = options.get("bridge")
        if bridge is not None:
            if not isinstance(bridge, str) or not bridge or "/" in bridge or \
                    bridge in (".", "..") or len(bridge) > 15:
                raise PolicyError(f"incoming domain: invalid bridge name {str(bridge)[:40]!r}")
            if not os.path.isdir(os.path.join(self.sys_class_net, bridge, "bridge")):
                raise PolicyError(f"incoming domain: bridge {bridge} does not exist on this host")
        script = options.get("script")
        if script is not None:
            words = script.split() if isinstance(script, str) else []
            if not words or "/" in words[0] or words[0] in (".", ".."):
                raise PolicyError(f"incoming domain: vif script {str(script)[:80]!r} must be "
                                  "the bare name of a script in this host's scripts directory")


def host_paths(config: dict[str, Any]) -> frozenset[str]:
    """The resolved host files a domain's config (one this xend runs) names: its
    kernel, ramdisk, bootloader and the targets of its host-path disks."""
    paths = [config.get(name) or "" for name in ("kernel", "ramdisk", "bootloader")]
    for disk in config.get("disks") or []:
        try:
            parsed = vbd.parse(DiskSpec(disk["uname"], disk["dev"], disk.get("mode", "r")),
                               check_exists=False)
        except (XendError, KeyError, TypeError):
            continue
        if parsed.kind not in NETWORK_KINDS:
            paths.append(parsed.target)
    return frozenset(os.path.realpath(p) for p in paths if isinstance(p, str) and p)
