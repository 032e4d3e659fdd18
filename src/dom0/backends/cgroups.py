"""The host's CPU controller: one cgroup per domain holding its QEMU vCPU threads.

Xen's schedulers share the physical CPUs between domains; here the Linux CFS
scheduler does, and a cgroup per domain is where its share and its ceiling are set.
Both cgroup versions are supported and told apart from the mount table:

- **v1** (a ``cgroup`` mount with the ``cpu`` option, e.g. ``/sys/fs/cgroup/cpu``):
  ``<mount>/dom0/<uuid>/`` holds the vCPU threads (written one by one to ``tasks``:
  v1 places threads, not only processes); the rest of QEMU stays where it was.
  Weight -> ``cpu.shares``, cap -> ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.
- **v2** (a ``cgroup2`` mount whose ``cgroup.controllers`` offers ``cpu``): a thread
  may leave its process's cgroup only inside a threaded subtree, so ``<mount>/dom0``
  is a threaded root holding the QEMU processes (their I/O and helper threads) and
  ``<mount>/dom0/<uuid>`` (``cgroup.type`` threaded) holds the vCPU threads
  (``cgroup.threads``).  Weight -> ``cpu.weight``, cap -> ``cpu.max``.

Only the vCPU threads are placed, so what is weighed and capped is the guest's own
CPU time, as under Xen (whose device models ran in domain 0): QEMU's I/O threads do
the guest's disk and network work and are not charged to it.

The parameters are given in Xen's units (``CpuShare``: a credit weight 1..65535,
a quota and period in microseconds); each version converts them into its files.
Everything here is plain file I/O under a root directory, so a temporary tree shaped
like cgroupfs tests it.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: the directory under the controller's mount holding one cgroup per domain
PREFIX = "dom0"
#: CFS period used for a credit cap (the kernel's default)
DEFAULT_PERIOD_US = 100_000
#: the default credit weight: what a domain without cpu_weight gets
DEFAULT_WEIGHT = 256


@dataclass(frozen=True)
class CpuShare:
    """What a domain's cgroup is set to, in scheduler-neutral units."""

    #: relative share, on Xen's credit scale (1..65535, 256 the default)
    weight: int = DEFAULT_WEIGHT
    #: CPU time allowed per period, microseconds; None = no ceiling
    quota_us: int | None = None
    period_us: int = DEFAULT_PERIOD_US


class CgroupError(OSError):
    pass


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _append(path: str, value: str) -> None:
    """A thread or process into a cgroup: ``echo TID >> tasks``, as the kernel's
    documentation writes it (and on a plain file, the list grows)."""
    with open(path, "a") as f:
        f.write(value + "\n")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class CpuCgroups:
    """One cgroup per domain under ``<mount>/dom0``; the version-specific parts are
    the subclasses' (file names, value scales, how threads are placed)."""

    version = 0

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.root = os.path.join(mount, PREFIX)
        #: the mount options naming its controllers (v1: ``cpu,cpuacct``)
        self.options: list[str] = []

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    # ---- what a domain's cgroup is ------------------------------------------------

    def place(self, name: str, pid: int, tids: list[int], share: CpuShare) -> str:
        """Create (or re-use) the cgroup *name*, set *share*, move the threads *tids*
        of process *pid* into it.  Returns its path.  Idempotent: re-adoption, a
        changed share and a hot-plugged vCPU call it again."""
        for attempt in range(3):
            try:
                return self._place(name, pid, tids, share)
            except FileNotFoundError:
                # removed between our mkdir and our writes: the end of another QEMU of
                # the same domain (a migration's source on this host) took it away
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _place(self, name: str, pid: int, tids: list[int], share: CpuShare) -> str:
        self._prepare_root()
        self._take_process(pid)
        path = self.path(name)
        try:
            self._make(path)
        except FileExistsError:
            pass
        self.apply(name, share)
        for tid in tids:
            try:
                self._add_thread(path, tid)
            except ProcessLookupError:
                pass  # a vCPU thread that just ended (its QEMU stopping): nothing to place
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
        return path

    def apply(self, name: str, share: CpuShare) -> None:
        for file, value in self.files(share).items():
            _write(os.path.join(self.path(name), file), value)

    def files(self, share: CpuShare) -> dict[str, str]:
        """The controller's files and what *share* writes into them, in order."""
        raise NotImplementedError

    def holds(self, name: str, share: CpuShare) -> bool:
        """Does the cgroup hold exactly what *share* writes?  (A read back through
        ``read`` may round: v2's weight scale is coarser than Xen's.)"""
        try:
            return all(_read(os.path.join(self.path(name), f)) == v
                       for f, v in self.files(share).items())
        except OSError:
            return False

    def read(self, name: str) -> CpuShare:
        raise NotImplementedError

    def threads(self, name: str) -> list[int]:
        raise NotImplementedError

    def remove(self, name: str) -> bool:
        """Remove the cgroup *name*; False when it still holds threads (another QEMU
        of the same domain: the destination of a migration on this host) or is gone."""
        try:
            os.rmdir(self.path(name))
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise

    def in_use(self, name: str, besides: Collection[int] = ()) -> bool:
        """Does a live thread other than *besides* use the cgroup?  (A killed QEMU's
        threads take a moment to exit, and keep rmdir refusing meanwhile.)"""
        return any(_alive(tid) for tid in self.threads(name) if tid not in besides)

    def sweep(self) -> list[str]:
        """Remove every empty domain cgroup (domains that ended while no xend
        watched); the names removed."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.isdir(self.path(n)) and not self.threads(n)
                and self.remove(n)]

    # ---- version-specific ------------------------------------------------------------

    def _prepare_root(self) -> None:
        try:
            os.mkdir(self.root)
        except FileExistsError:
            pass

    def _make(self, path: str) -> None:
        os.mkdir(path)

    def _take_process(self, pid: int) -> None:
        """v1 moves single threads anywhere: the process stays where it is."""

    def _add_thread(self, path: str, tid: int) -> None:
        raise NotImplementedError


class CgroupV1(CpuCgroups):
    """The v1 ``cpu`` controller: shares scale 256 <-> 1024 (Xen's default weight is
    the kernel's default share)."""

    version = 1
    MIN_SHARES, MAX_SHARES = 2, 262144

    @staticmethod
    def shares(weight: int) -> int:
        return max(CgroupV1.MIN_SHARES, min(CgroupV1.MAX_SHARES, weight * 4))

    def apply(self, name: str, share: CpuShare) -> None:
        # no quota first: the kernel refuses a period that would break the old quota
        _write(os.path.join(self.path(name), "cpu.cfs_quota_us"), "-1")
        super().apply(name, share)

    def files(self, share: CpuShare) -> dict[str, str]:
        return {"cpu.shares": str(self.shares(share.weight)),
                "cpu.cfs_period_us": str(share.period_us),
                "cpu.cfs_quota_us": "-1" if share.quota_us is None else str(share.quota_us)}

    def read(self, name: str) -> CpuShare:
        path = self.path(name)
        quota = int(_read(os.path.join(path, "cpu.cfs_quota_us")))
        return CpuShare(weight=int(_read(os.path.join(path, "cpu.shares"))) // 4,
                        quota_us=None if quota < 0 else quota,
                        period_us=int(_read(os.path.join(path, "cpu.cfs_period_us"))))

    def threads(self, name: str) -> list[int]:
        return _ids(os.path.join(self.path(name), "tasks"))

    def _add_thread(self, path: str, tid: int) -> None:
        _append(os.path.join(path, "tasks"), str(tid))


class CgroupV2(CpuCgroups):
    """The v2 ``cpu`` controller: Xen's weight 1..65535 mapped linearly onto
    ``cpu.weight`` 1..10000 (the kernel's 100 is not Xen's 256: the scales differ,
    the proportions between domains are what carries over)."""

    version = 2

    @staticmethod
    def weight(xen_weight: int) -> int:
        w = max(1, min(65535, xen_weight))
        return 1 + round((w - 1) * 9999 / 65534)

    @staticmethod
    def xen_weight(cpu_weight: int) -> int:
        return 1 + round((cpu_weight - 1) * 65534 / 9999)

    def _prepare_root(self) -> None:
        """``dom0`` holds the QEMU processes and lets its children take the cpu
        controller; the mount's root must hand it down first."""
        super()._prepare_root()
        for parent in (self.mount, self.root):
            control = os.path.join(parent, "cgroup.subtree_control")
            if "cpu" not in _read(control).split():
                _write(control, "+cpu")

    def _make(self, path: str) -> None:
        os.mkdir(path)
        _write(os.path.join(path, "cgroup.type"), "threaded")

    def files(self, share: CpuShare) -> dict[str, str]:
        quota = "max" if share.quota_us is None else str(share.quota_us)
        return {"cpu.weight": str(self.weight(share.weight)),
                "cpu.max": f"{quota} {share.period_us}"}

    def read(self, name: str) -> CpuShare:
        path = self.path(name)
        quota, _, period = _read(os.path.join(path, "cpu.max")).partition(" ")
        return CpuShare(weight=self.xen_weight(int(_read(os.path.join(path, "cpu.weight")))),
                        quota_us=None if quota == "max" else int(quota),
                        period_us=int(period or DEFAULT_PERIOD_US))

    def threads(self, name: str) -> list[int]:
        return _ids(os.path.join(self.path(name), "cgroup.threads"))

    def _take_process(self, pid: int) -> None:
        """The whole QEMU process into the threaded root, from where its vCPU threads
        can enter its domain's cgroup (v2 moves threads only within a subtree)."""
        if pid not in _ids(os.path.join(self.root, "cgroup.procs")):
            _append(os.path.join(self.root, "cgroup.procs"), str(pid))

    def _add_thread(self, path: str, tid: int) -> None:
        _append(os.path.join(path, "cgroup.threads"), str(tid))


def _alive(tid: int) -> bool:
    try:
        with open(f"/proc/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ids(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(path).split()]
    except FileNotFoundError:
        return []


def detect(mounts: str = "/proc/self/mounts") -> CpuCgroups | None:
    """The CPU controller of this host: v1 when a v1 hierarchy has ``cpu`` (a hybrid
    host binds it there, and v2 then cannot have it), else v2 when the unified
    hierarchy offers it; None when neither (domains then run unweighed).

    An xend started by ``ip netns exec`` has a mount namespace of its own with a fresh
    /sys, without the cgroup mounts: the host's hierarchy (found in init's mount table)
    is then mounted again, privately, at ``PRIVATE_MOUNT`` (a second mount of a
    hierarchy is the same hierarchy: the same cgroups, seen by both)."""
    found = _detect(mounts)
    if found is None and mounts == "/proc/self/mounts":
        host = _detect("/proc/1/mounts", probe=False)
        if host is not None:
            found = _mount_again(host)
    return found


#: where a host's CPU hierarchy is mounted again when this mount namespace lacks it
PRIVATE_MOUNT = "/run/dom0-cgroup-cpu"


def _detect(mounts: str, probe: bool = True) -> CpuCgroups | None:
    try:
        with open(mounts) as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for row in rows:
        if len(row) >= 4 and row[2] == "cgroup" and "cpu" in row[3].split(","):
            found = CgroupV1(row[1])
            found.options = [o for o in row[3].split(",") if o not in MOUNT_FLAGS]
            return found
    for row in rows:
        if len(row) >= 3 and row[2] == "cgroup2":
            try:
                controllers = _read(os.path.join(row[1], "cgroup.controllers")).split() \
                    if probe else ["cpu"]
            except OSError:
                continue
            if "cpu" in controllers:
                return CgroupV2(row[1])
    return None


MOUNT_FLAGS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec"}


def _mount_again(host: CpuCgroups) -> CpuCgroups | None:
    import subprocess

    os.makedirs(PRIVATE_MOUNT, exist_ok=True)
    if isinstance(host, CgroupV1):
        argv = ["mount", "-t", "cgroup", "-o", ",".join(host.options), "cgroup", PRIVATE_MOUNT]
    else:
        argv = ["mount", "-t", "cgroup2", "cgroup2", PRIVATE_MOUNT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("cannot mount the cgroup CPU controller: %s", exc)
        return None
    if done.returncode != 0:
        log.error("cannot mount the cgroup CPU controller: %s", done.stderr.strip())
        return None
    return type(host)(PRIVATE_MOUNT)
