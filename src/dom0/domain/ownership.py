"""Disk ownership of labelled domains, applied (issue 12 item 4; the decisions are
security/ownership.py's).

With a policy active, a labelled domain's QEMU runs as a user ID of its own from
``xend-qemu-uid-range`` (QEMU's ``-runas uid:gid``, group = user), and each writable
disk image (or block device node) is chowned to it, mode 0600, before QEMU starts,
and given back its previous owner and mode once QEMU is gone.  Both the user a
launch holds and every disk's previous owner are written to the store *before*
anything changes on disk, so an xend killed at any instant, then restarted, still
gives back what it took (re-adoption, the roll-back of a cut launch, a destroy).

It wraps the machine a launch is given (``OwnedMachine``): launch, kill, and the disk
verbs are the only points where a QEMU gains or loses a disk, so the lifecycle, the
state mover and migration need not know about it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pwd
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from dom0.backends.machine import Machine, MachineEvents, MachineSpec
from dom0.devices.vbd import Vbd
from dom0.domain.security import DomainSecurity, label_of
from dom0.errors import DeviceError
from dom0.security import ownership as rules
from dom0.security.ownership import Grant, Owner
from dom0.store.db import Store

if TYPE_CHECKING:
    from dom0.domain.domain import Domain

log = logging.getLogger(__name__)


def _account_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def labelled_under_policy(security: DomainSecurity | None, dom: Domain | None) -> bool:
    """Does this domain's QEMU run as a user of its own?  With a policy active and a
    label on the domain; otherwise it runs exactly as before (as root)."""
    return security is not None and security.acm.active is not None and \
        dom is not None and label_of(dom.config) is not None


def _current_owner(path: str) -> Owner:
    st = os.stat(path)
    return Owner.of(st.st_mode, st.st_uid, st.st_gid)


def _kept_owner(path: str) -> Owner | None:
    try:
        return Owner.from_xattr(os.getxattr(path, rules.XATTR))
    except OSError:  # none kept, or a file system without trusted attributes
        return None


def _keep_owner(path: str, owner: Owner) -> None:
    with contextlib.suppress(OSError):  # without xattrs the store alone remembers
        os.setxattr(path, rules.XATTR, owner.to_xattr())


def disk_users(spec: MachineSpec) -> frozenset[int]:
    """The QEMU users (of any xend sharing the storage) that hold the disks a launch
    will take, now: those whose image keeps an owner from before on itself."""
    out = set()
    for vbd in spec.disks:
        if rules.takes(vbd.kind, vbd.writable) and _kept_owner(vbd.target) is not None:
            with contextlib.suppress(OSError):
                out.add(os.stat(vbd.target).st_uid)
    return frozenset(out)


class DiskOwnership:
    def __init__(self, store: Store, ids: range | None,
                 wanted: Callable[[MachineSpec], bool],
                 account_exists: Callable[[int], bool] = _account_exists) -> None:
        self.store = store
        #: None: no range configured, every QEMU runs as root
        self.ids = ids
        self.wanted = wanted
        self._account_exists = account_exists

    def wrap(self, machine: Machine) -> Machine:
        instance = os.path.basename(machine.paths.run_dir)
        return cast(Machine, OwnedMachine(machine, self, instance))

    # ---- the user of a launch ----------------------------------------------------

    def user_for(self, instance: str, avoid: frozenset[int] = frozenset()) -> int:
        """The launch's user; never one of *avoid* (the users that own its disks
        now: another xend's QEMU, a migration's source, must stay told apart)."""
        assert self.ids is not None
        ids, exists = self.ids, self._account_exists
        return self.store.take_qemu_uid(
            instance, lambda taken: rules.pick_uid(ids, [*taken, *avoid], exists))

    def user_of(self, instance: str) -> int | None:
        return self.store.qemu_uid(instance)

    # ---- disks -----------------------------------------------------------------------

    def take(self, instance: str, uid: int, vbd: Vbd) -> None:
        """Give *vbd*'s image to *uid*, 0600, remembering its owner first.  A disk
        another launch of this xend holds (a shared ``w!`` disk), or one that keeps its
        owner on itself (held by another xend's QEMU: a migration's source), keeps the
        owner it had before any of them took it."""
        if not rules.takes(vbd.kind, vbd.writable):
            return
        path = os.path.realpath(vbd.target)
        held = self.store.disk_owner(path)
        try:
            if held is not None:
                before = Grant.from_record(held).before
            else:
                before = _kept_owner(path) or _current_owner(path)
            self.store.put_disk_owner(path, instance,
                                      Grant(path, instance, before, uid).to_record())
            _keep_owner(path, before)
            os.chown(path, uid, uid)
            os.chmod(path, rules.TAKEN_MODE)
        except OSError as exc:
            raise DeviceError(f"Cannot give disk {vbd.uname} to its domain's QEMU user: "
                              f"{exc.strerror}") from None

    def give_back(self, instance: str, vbd: Vbd | None = None) -> None:
        """The disks *instance* holds (or just *vbd*) get their owner and mode back."""
        only = os.path.realpath(vbd.target) if vbd is not None else None
        for rec in self.store.disk_owners(instance):
            grant = Grant.from_record(rec)
            if only is not None and grant.path != only:
                continue
            try:
                if grant.still_given(os.stat(grant.path).st_uid):
                    os.chown(grant.path, grant.before.uid, grant.before.gid)
                    os.chmod(grant.path, grant.before.mode)
                    with contextlib.suppress(OSError):
                        os.removexattr(grant.path, rules.XATTR)
            except FileNotFoundError:
                pass  # deleted meanwhile: nothing to give back
            except OSError as exc:  # kept, so that the next release tries again
                log.error("cannot give %s back its owner: %s", grant.path, exc)
                continue
            self.store.delete_disk_owner(grant.path)

    def release(self, instance: str) -> None:
        """*instance*'s QEMU is gone: its disks back, its user free again."""
        self.give_back(instance)
        self.store.release_qemu_uid(instance)

    def sweep(self, live: set[str]) -> None:
        """At xend start, after re-adoption: launches with no machine any more (a
        record left by an xend that died between steps) give back what they hold."""
        held = set(self.store.qemu_users()) | {r["instance"] for r in self.store.disk_owners()}
        for instance in held - live:
            log.info("giving back the disks of ended launch %s", instance)
            self.release(instance)


class OwnedMachine:
    """A machine whose launch, kill and disk verbs take and give back ownership; every
    other member is the wrapped machine's."""

    def __init__(self, inner: Machine, owner: DiskOwnership, instance: str) -> None:
        self._inner = inner
        self._owner = owner
        self._instance = instance

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def launch(self, spec: MachineSpec, events: MachineEvents,
                     incoming: bool = False) -> None:
        if self._owner.ids is not None and self._owner.wanted(spec):
            uid = self._owner.user_for(self._instance, disk_users(spec))
            for vbd in spec.disks:
                self._owner.take(self._instance, uid, vbd)
            spec = dataclasses.replace(spec, run_as=(uid, uid))
        # a failed launch is killed by the caller (Lifecycle.launch): that gives back
        await self._inner.launch(spec, events, incoming)

    async def kill(self) -> None:
        await self._inner.kill()
        self._owner.release(self._instance)

    async def attach_disk(self, vbd: Vbd, timeout: float) -> None:
        uid = self._owner.user_of(self._instance)
        if uid is not None:
            self._owner.take(self._instance, uid, vbd)
        try:
            await self._inner.attach_disk(vbd, timeout)
        except BaseException:
            with contextlib.suppress(OSError):
                self._owner.give_back(self._instance, vbd)
            raise

    async def detach_disk(self, vbd: Vbd, timeout: float) -> bool:
        gone = await self._inner.detach_disk(vbd, timeout)
        if gone:
            self._owner.give_back(self._instance, vbd)
        return gone
