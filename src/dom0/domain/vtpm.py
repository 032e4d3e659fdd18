"""Where each domain's virtual TPM keeps its state, and what ``xm vtpm-list`` shows.

The state lives under the domain's directory (``<xend-domains-path>/<uuid>/``, 0700)
as long as the domain exists: a managed domain keeps it across shutdown, reboot and
xend restarts, and loses it with ``xm delete``; an unmanaged one loses it when it is
destroyed or shut down (it ceases to exist), or moved to another host.

A launch that boots the guest uses the directory the domain's ``vtpm`` link points
at (made on first use).  A launch that takes the guest's state from a stream
(``xm restore``, ``xm resume``, an incoming migration) starts its TPM emulator on a
fresh, empty directory of its own, ``vtpm.<instance>``, which QEMU fills from the
stream; once that launch runs, the link moves to it.  So the copy of a guest
migrating in to this same host never shares a directory with the copy leaving, and
the leaving copy's directory goes once nothing uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from typing import Any

from dom0.backends.machine import Machine, Tpm
from dom0.domain.domain import Domain, Running
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.settings import DomainSettings
from dom0.errors import VmError
from dom0.model.config import DomainConfig
from dom0.model.vtpm import VERSIONS
from dom0.store.layout import Layout

log = logging.getLogger(__name__)

#: xenbus states, as ``xm vtpm-list`` shows them (spec §1.3)
CONNECTED, CLOSED = 4, 6


def keep_version(old: DomainConfig, new: DomainConfig) -> None:
    """A managed domain redefined (``xm new``) keeps the TPM version its TPM's state
    is of."""
    if old.vtpms and new.vtpms and old.vtpms[0].version and not new.vtpms[0].version:
        new.vtpms[0] = dataclasses.replace(new.vtpms[0], version=old.vtpms[0].version)


class VtpmStates:
    def __init__(self, layout: Layout, settings: DomainSettings,
                 domains: Callable[[], Iterable[Domain]], hvlog: HypervisorLog) -> None:
        self.layout = layout
        self.settings = settings
        #: every domain xend holds, those migrating out included
        self.domains = domains
        self.hvlog = hvlog

    # ---- a launch -----------------------------------------------------------------

    def for_launch(self, dom: Domain, instance: str, incoming: bool) -> Tpm | None:
        """The TPM of *dom*'s launch *instance* (None: it has no vtpm)."""
        if not dom.config.vtpms:
            return None
        version = self.version(dom)
        link = self.layout.vtpm_link(dom.uuid)
        if not incoming and os.path.isdir(link):
            return Tpm(version, os.path.realpath(link))
        state = self.layout.vtpm_state(dom.uuid, instance)
        shutil.rmtree(state, ignore_errors=True)  # a stream's state goes into an empty one
        os.makedirs(state, mode=0o700)
        os.chmod(os.path.dirname(state), 0o700)
        if not incoming:
            self._point_link(dom.uuid, state)
        return Tpm(version, state)

    def version(self, dom: Domain) -> str:
        """The TPM version of *dom*'s vTPM, fixed in its config on first use (a later
        change of xend-config's ``vtpm-version`` does not swap a guest's TPM for an
        empty one of another kind)."""
        spec = dom.config.vtpms[0]
        if not spec.version:
            if self.settings.vtpm_version not in VERSIONS:  # not fixed in the config then
                raise VmError(f"vTPM version {self.settings.vtpm_version} is not supported "
                              "(xend-config's vtpm-version: 1.2 or 2.0)")
            spec = dataclasses.replace(spec, version=self.settings.vtpm_version)
            dom.config.vtpms[0] = spec
        return spec.version

    def launched(self, dom: Domain, tpm: Tpm | None) -> None:
        """*dom*'s launch with *tpm* runs: the state it holds is the domain's now."""
        if tpm is None:
            return
        self._point_link(dom.uuid, tpm.state_dir)
        self.prune(dom.uuid)

    def launch_failed(self, dom: Domain, tpm: Tpm | None) -> None:
        """A launch did not happen: the directory it alone used goes."""
        if tpm is not None and os.path.realpath(self.layout.vtpm_link(dom.uuid)) != \
                os.path.realpath(tpm.state_dir):
            shutil.rmtree(tpm.state_dir, ignore_errors=True)

    def adopted(self, dom: Domain, machine: Machine) -> None:
        """A running *dom* re-adopted by a new xend: its emulator should still run.
        QEMU cannot reconnect to a new one, so a dead one is said plainly: the guest's
        TPM no longer answers until the domain is started anew (its state is kept)."""
        if dom.config.vtpms and machine.tpm_pid() is None:
            log.error("the vTPM emulator (swtpm) of domain %s is gone", dom.name)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) vTPM emulator (swtpm) is gone: "
                           "its TPM no longer answers; destroy and start it again")

    # ---- the end of a launch, or of the domain ---------------------------------------

    def ended(self, dom: Domain) -> None:
        """*dom*'s machine is gone.  An unmanaged domain ends with it, and its TPM's
        secrets with it, unless the same guest runs on here (migrated to this host):
        then only what no launch uses goes."""
        if not dom.managed and not self._others(dom):
            self.remove(dom.uuid)
        else:
            self.prune(dom.uuid)

    def remove(self, uuid: str) -> None:
        """The domain is deleted: every state of its TPM goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.layout.vtpm_link(uuid))
        for state in self._states(uuid):
            shutil.rmtree(state, ignore_errors=True)

    def prune(self, uuid: str) -> None:
        """Remove the state directories of *uuid* that neither the link nor a live
        launch of the domain uses (those a restore or migration left behind)."""
        link = self.layout.vtpm_link(uuid)
        keep = {os.path.realpath(link)} if os.path.islink(link) else set()
        keep |= {os.path.realpath(self.state_of(d.running)) for d in self.domains()
                 if d.uuid == uuid and d.running is not None and self.state_of(d.running)}
        for state in self._states(uuid):
            if os.path.realpath(state) not in keep:
                shutil.rmtree(state, ignore_errors=True)

    def state_of(self, run: Running) -> str:
        """The state directory the launch *run* uses ("" if it has no TPM)."""
        return run.tpm_state or ""

    def _others(self, dom: Domain) -> bool:
        return any(d is not dom and d.uuid == dom.uuid for d in self.domains())

    def _states(self, uuid: str) -> list[str]:
        return glob.glob(glob.escape(self.layout.vtpm_state(uuid, "")) + "*")

    def _point_link(self, uuid: str, state: str) -> None:
        """Point the domain's link at *state*, atomically (rename over it)."""
        link = self.layout.vtpm_link(uuid)
        if os.path.islink(link) and os.readlink(link) == os.path.basename(state):
            return
        tmp = f"{link}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.path.basename(state), tmp)
        os.replace(tmp, link)

    # ---- xm vtpm-list ------------------------------------------------------------------

    def rows(self, dom: Domain) -> list[dict[str, Any]]:
        """One row per vTPM (Xen: at most one), with Xen's columns: the emulator's
        state as a xenbus state (4 connected while it runs, 6 closed when it died
        under a running guest, 1 when the domain is not running)."""
        out: list[dict[str, Any]] = []
        run = dom.running
        pid = run.machine.tpm_pid() if run is not None else None
        for idx, spec in enumerate(dom.config.vtpms):
            if run is None or not run.machine.still_running():
                state = 1
            else:
                state = CONNECTED if pid is not None else CLOSED
            out.append({
                "idx": idx, "backend-id": spec.backend, "handle": idx, "state": state,
                "event-ch": -1, "ring-ref": -1,
                "be-path": f"/local/domain/0/backend/vtpm/{dom.domid}/{idx}"
                if dom.domid is not None else "??",
                "pref_instance": spec.instance, "instance": spec.instance,
                "version": spec.version or self.settings.vtpm_version,
            })
            if pid is not None:
                out[-1]["pid"] = pid
        return out
