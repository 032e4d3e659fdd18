"""Moving a domain's running state: into a save file and back (``xm save`` and
``restore``, managed ``suspend`` and ``resume``), to another host (``xm
migrate``), and the launcher the relocation server is handed for a domain
coming in.

One idea: the guest's state leaves its machine and comes back in another,
through the save-file format (migration/savefile.py) or the relocation protocol
(migration/source.py and destination.py), with the domain's lock held and the guest running on
at most one place.  Admission and launch are the lifecycle's; this module only
says where the state comes from and goes to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid as uuidlib
from collections.abc import Coroutine
from typing import Any

from dom0.backends.machine import Machine
from dom0.domain.domain import Domain, Running, next_free_vif_devid
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.lifecycle import Incoming, Lifecycle, running
from dom0.domain.settings import DomainSettings
from dom0.domain.table import DomainTable
from dom0.errors import BackendError, VmError
from dom0.migration import destination, savefile, source
from dom0.migration.auth import Credentials
from dom0.migration.predict import StreamRates
from dom0.model.config import DomainConfig
from dom0.model.state import LIVE, PowerState, require
from dom0.store.layout import Layout

log = logging.getLogger(__name__)


def not_dom0(ident: str | int, verb: str) -> None:
    if str(ident) in ("0", "Domain-0"):
        raise VmError(f"Cannot {verb} privileged domain {ident}")


class StateMover:
    def __init__(self, table: DomainTable, lifecycle: Lifecycle, layout: Layout,
                 settings: DomainSettings, hvlog: HypervisorLog) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.disks = lifecycle.disks
        self.vifs = lifecycle.vifs
        self.layout = layout
        self.settings = settings
        self.hvlog = hvlog
        self.migrations: dict[str, source.MigrationJob] = {}
        self.stream_rates = StreamRates()  # what QEMU reached in past migrations
        #: how this host proves itself to relocation peers (the daemon sets it)
        self.relocation_credentials = Credentials()

    # ---- save, restore, suspend, resume ---------------------------------------------

    async def save(self, ident: str, path: str, checkpoint: bool) -> None:
        not_dom0(ident, "save")
        dom = self.table.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await self._save_to(dom, running(dom), path, checkpoint)

    async def _save_to(self, dom: Domain, run: Running, path: str, keep_running: bool) -> None:
        """Pause, stream the state into a save file, then destroy the domain (or let
        it run on).  Any failure leaves the domain as it was and no file behind."""
        machine = run.machine
        was_running = dom.state == PowerState.RUNNING
        partial = savefile.partial_path(path)
        self.table.note_partial(partial, run, was_running)
        try:
            try:
                writer = savefile.Writer(path, dom.config.to_dict())
            except OSError as exc:
                raise VmError(f"can't write guest state file {path}: {exc.strerror}") \
                    from None
            try:
                if was_running:
                    await machine.stop()
                await machine.migrate_out(writer.stream, self.settings.save_timeout)
                await asyncio.to_thread(writer.commit)
            except (BackendError, OSError) as exc:
                writer.abort()
                if was_running:
                    await machine.cont()
                raise VmError(f"Failed to save domain {dom.name}: {writer.failure(exc)}") \
                    from None
        finally:
            self.table.drop_partial(partial)
        self.hvlog.add(f"Domain {run.domid} ({dom.name}) saved to {path} "
                       f"({writer.stream_bytes // 1024} KiB)")
        if keep_running:
            if was_running:
                await machine.cont()
        else:
            await self.lifecycle.teardown(dom)

    async def clean_up_cut_saves(self) -> None:
        """At xend start, after re-adoption: the saves a previous xend was writing
        when it died can never finish.  Their partial files are removed, and a guest
        such a save had paused runs again (as after any failed save)."""
        for partial, instance, resume in self.table.partials():
            try:
                os.unlink(partial)
                log.warning("removed %s: its save was cut short when xend stopped", partial)
                self.hvlog.add(f"Removed {partial}: its save was cut short when xend stopped")
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot remove %s, left by a save cut short: %s", partial, exc)
            dom = next((d for d in self.table
                        if d.running is not None and d.running.instance == instance), None)
            if resume and dom is not None and dom.running is not None and \
                    dom.state == PowerState.RUNNING:
                try:
                    await dom.running.machine.cont()
                except BackendError as exc:
                    log.error("cannot resume %s after its cut save: %s", dom.name, exc)
            self.table.drop_partial(partial)

    async def restore(self, path: str, paused: bool) -> Domain:
        image = await asyncio.to_thread(savefile.verify, path)
        cfg = DomainConfig.from_dict(image.config)
        held = self.table.get(cfg.uuid) if cfg.uuid else None
        if held is not None and held.managed and held.config.name == cfg.name:
            return await self._restore_managed(held, paused, image)
        return await self.lifecycle.admit(cfg, paused, self._from_image(image),
                                          next_free_vif_devid(cfg))

    async def _restore_managed(self, dom: Domain, paused: bool,
                               image: savefile.SaveImage) -> Domain:
        """The save file of a managed domain (its name and UUID): it runs again as
        that domain, as in Xen, which refused only another UUID under the name."""
        async with dom.lock:
            if dom.active:
                raise VmError(f"Domain '{dom.name}' already exists with ID '{dom.domid}'")
            require(dom.state, (PowerState.HALTED,), f"VM name '{dom.name}' already exists")
            self.table.check_unique(dom.config, besides=dom)
            await self._launch_suspended(dom, paused, image)
            self.table.save(dom)
        return dom

    def _from_image(self, image: savefile.SaveImage) -> Incoming:
        async def feed(machine: Machine) -> None:
            await machine.migrate_in(image.path, image.stream_offset, self.settings.save_timeout)
        return feed

    async def suspend(self, ident: str) -> None:
        not_dom0(ident, "suspend")
        dom = self.table.lookup(ident)
        async with dom.lock:
            await self.suspend_locked(dom)

    async def suspend_locked(self, dom: Domain) -> None:
        if not dom.managed:
            raise VmError("Domain is not managed by Xend lifecycle support.")
        require(dom.state, LIVE, "Domain is not running")
        path = self.layout.checkpoint(dom.uuid)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        await self._save_to(dom, running(dom), path, keep_running=False)
        dom.set_state(PowerState.SUSPENDED)
        self.table.save(dom)

    async def resume(self, ident: str, paused: bool) -> None:
        dom = self.table.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            if dom.state != PowerState.SUSPENDED:
                raise VmError("Cannot resume domain that is not suspended.")
            path = self.layout.checkpoint(dom.uuid)
            image = await asyncio.to_thread(savefile.verify, path)
            await self._launch_suspended(dom, paused, image)
            self.table.save(dom)  # no longer suspended
            os.unlink(path)

    async def _launch_suspended(self, dom: Domain, paused: bool,
                                image: savefile.SaveImage) -> None:
        """Resume *dom* from its checkpoint.  QEMU loads a state only into the
        devices it was saved from, so the machine is built with the disks and vifs
        of the checkpoint; those attached or detached while the domain was
        suspended are then hot-plugged, as if that had happened once it runs."""
        saved = DomainConfig.from_dict(image.config)
        now = dom.config
        disks_gone = [d for d in saved.disks if d not in now.disks]
        disks_added = [d for d in now.disks if d not in saved.disks]
        vifs_gone = [v for v in saved.vifs if v not in now.vifs]
        vifs_added = [v for v in now.vifs if v not in saved.vifs]
        changes = disks_gone + disks_added + vifs_gone + vifs_added
        dom.config = dataclasses.replace(now, disks=list(saved.disks), vifs=list(saved.vifs))
        try:
            await self.lifecycle.launch(dom, paused and not changes, self._from_image(image))
        except BaseException:
            dom.config = now
            raise
        for disk in disks_gone:
            await self._changing(dom, f"disk {disk.dev}", self.disks.detach(dom, disk.dev, True))
        for vif in vifs_gone:
            await self._changing(dom, f"vif {vif.devid}",
                                 self.vifs.detach(dom, vif.devid or 0, True))
        for disk in disks_added:
            await self._changing(dom, f"disk {disk.dev}", self.disks.attach(dom, disk))
        for vif in vifs_added:
            await self._changing(dom, f"vif {vif.devid}", self.vifs.plug(dom, vif))
        if paused and changes:
            await running(dom).machine.stop()
            dom.set_state(PowerState.PAUSED)

    async def _changing(self, dom: Domain, device: str,
                        change: Coroutine[Any, Any, None]) -> None:
        """One device change after a resume: the guest runs on without a device that
        cannot be attached (it is said in the log and left out of the config)."""
        try:
            await change
        except VmError as exc:
            log.error("resume of %s: %s: %s", dom.name, device, exc)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) resumed without {device}: {exc}")

    # ---- live migration out ------------------------------------------------------------

    def migrate(self, ident: str, host: str, port: int, live: bool, tls: bool = False) -> str:
        """Start moving a domain to another host's relocation server; returns a job id
        that ``migration_status`` reports on (xm shows progress from it)."""
        if str(ident) in ("0", "Domain-0"):
            raise VmError(f"Cannot migrate privileged domain {ident}")
        dom = self.table.lookup(ident)
        require(dom.state, LIVE, "Domain is not running")
        job_id = uuidlib.uuid4().hex[:12]
        job = source.MigrationJob(dom.name, f"{host}:{port}", live)
        self.migrations[job_id] = job
        self.lifecycle.spawn(self._run_migration(dom, host, port, live, job, tls))
        return job_id

    async def _run_migration(self, dom: Domain, host: str, port: int, live: bool,
                             job: source.MigrationJob, tls: bool) -> None:
        try:
            async with dom.lock:
                if dom.state not in LIVE:
                    raise VmError("Domain is not running")
                run = running(dom)
                config = dom.config.to_dict()
                self.table.depart(dom)  # migrating-<name> meanwhile, as in Xen
                try:
                    await source.send_guest(run.machine, config, dom.next_vif_devid, host,
                                            port, live, job, self.stream_rates, tls,
                                            credentials=self.relocation_credentials)
                except BaseException:
                    self.table.settle(dom)  # its name back: it runs on here
                    raise
                self.hvlog.add(f"Domain {run.domid} ({dom.name}) migrated to {host}:{port}")
                moved_here = self.table.arrived_here(dom)
                await self.lifecycle.teardown(dom)
                if moved_here:  # localhost: the incoming copy is this domain now
                    self.table.forget(dom)
                else:
                    self.table.settle(dom)  # a managed domain stays, halted, by its name
        except Exception as exc:  # reported to xm through the job
            log.warning("migration of %s to %s failed: %s", dom.name, host, exc)
            job.error = str(exc) or type(exc).__name__
        finally:
            job.phase = "failed" if job.error else "done"
            job.done = True

    def migration_status(self, job_id: str) -> dict[str, Any]:
        job = self.migrations.get(job_id)
        if job is None:
            raise VmError(f"No such migration: {job_id}")
        if job.done:
            self.migrations.pop(job_id, None)
        return job.view()

    # ---- live migration in: the relocation server's launcher ------------------------------

    def check(self, config: dict[str, Any]) -> None:
        self.lifecycle.check(DomainConfig.from_dict(config), migrating_in=True)

    def departing(self, uuid: object) -> dict[str, Any] | None:
        leaving = self.table.leaving(uuid) if isinstance(uuid, str) else None
        return leaving.config.to_dict() if leaving is not None else None

    async def launch(self, config: dict[str, Any], next_vif_devid: int,
                     receive: destination.Receive) -> int:
        cfg = DomainConfig.from_dict(config)
        # from this same xend (localhost): a managed domain stays managed
        leaving = self.table.leaving(cfg.uuid)
        dom = await self.lifecycle.admit(cfg, paused=False, incoming=receive,
                                         next_vif_devid=next_vif_devid, migrating_in=True,
                                         managed=leaving is not None and leaving.managed)
        run = running(dom)
        self.hvlog.add(f"Domain {run.domid} ({dom.name}) migrated in")
        return run.domid
