"""Moving a domain's running state: into a save file and back (``xm save`` and
``restore``, managed ``suspend`` and ``resume``), and to another host (``xm
migrate``, and the relocation server's receiving side).

A part of DomainManager (a base class of it), kept apart because it is one
idea: the guest's state leaves its QEMU and comes back in another, through the
save-file format (migration/savefile.py) or the relocation protocol
(migration/relocation.py), with the domain's lock held and the guest running on
at most one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dom0.backends.qemu.machine import QemuMachine
from dom0.domain.domain import Domain
from dom0.errors import BackendError, VmError
from dom0.migration import relocation, savefile
from dom0.migration.predict import StreamRates
from dom0.model.config import DomainConfig
from dom0.model.state import LIVE, PowerState, require

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from dom0.domain.hvlog import HypervisorLog
    from dom0.domain.manager import ManagerOptions
    from dom0.store.db import Store
    from dom0.store.layout import Layout

log = logging.getLogger(__name__)


class StateMoves:
    if TYPE_CHECKING:  # what this part uses of the rest of DomainManager
        domains: dict[str, Domain]
        options: ManagerOptions
        layout: Layout
        store: Store
        hvlog: HypervisorLog
        migrations: dict[str, relocation.MigrationJob]
        stream_rates: StreamRates

        def lookup(self, ident: str | int) -> Domain: ...
        def _check_unique(self, cfg: DomainConfig) -> None: ...
        def _check_bootable(self, cfg: DomainConfig) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        async def _teardown(self, dom: Domain) -> None: ...
        async def _launch(self, dom: Domain, paused: bool,
                          incoming: Callable[[QemuMachine], Awaitable[None]] | None = None
                          ) -> None: ...
    # ---- save, restore, suspend, resume ---------------------------------------------

    async def save(self, ident: str, path: str, checkpoint: bool) -> None:
        if str(ident) in ("0", "Domain-0"):
            raise VmError(f"Cannot save privileged domain {ident}")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await self._save_to(dom, path, checkpoint)

    async def _save_to(self, dom: Domain, path: str, keep_running: bool) -> None:
        """Pause, stream the state into a save file, then destroy the domain (or let
        it run on).  Any failure leaves the domain as it was and no file behind."""
        assert dom.machine is not None
        machine = dom.machine
        try:
            writer = savefile.Writer(path, dom.config.to_dict())
        except OSError as exc:
            raise VmError(f"can't write guest state file {path}: {exc.strerror}") from None
        was_running = dom.state == PowerState.RUNNING
        try:
            if was_running:
                await machine.stop()
            await machine.migrate_out(writer.stream, self.options.save_timeout)
            await asyncio.to_thread(writer.commit)
        except (BackendError, OSError) as exc:
            writer.abort()
            if was_running:
                await machine.cont()
            raise VmError(f"Failed to save domain {dom.name}: {exc}") from None
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) saved to {path} "
                       f"({writer.stream_bytes // 1024} KiB)")
        if keep_running:
            if was_running:
                await machine.cont()
        else:
            await self._teardown(dom)

    async def restore(self, path: str, paused: bool) -> Domain:
        image = await asyncio.to_thread(savefile.verify, path)
        cfg = DomainConfig.from_dict(image.config)
        cfg.validate()
        self._check_unique(cfg)
        self._check_bootable(cfg)
        dom = Domain(cfg)
        dom.next_vif_devid = 1 + max((v.devid or 0 for v in cfg.vifs), default=-1)
        self.domains[cfg.uuid] = dom
        try:
            async with dom.lock:
                await self._launch(dom, paused, self._from_image(image))
        except BaseException:
            self.domains.pop(cfg.uuid, None)
            raise
        return dom

    def _from_image(self, image: savefile.SaveImage) -> Callable[[QemuMachine], Awaitable[None]]:
        async def feed(machine: QemuMachine) -> None:
            await machine.migrate_in(image.path, image.stream_offset, self.options.save_timeout)
        return feed

    def _checkpoint_path(self, dom: Domain) -> str:
        return os.path.join(self.layout.domains_dir, dom.uuid, "checkpoint.chk")

    async def suspend(self, ident: str) -> None:
        if str(ident) in ("0", "Domain-0"):
            raise VmError(f"Cannot suspend privileged domain {ident}")
        dom = self.lookup(ident)
        async with dom.lock:
            await self._suspend_locked(dom)

    async def _suspend_locked(self, dom: Domain) -> None:
        if not dom.managed:
            raise VmError("Domain is not managed by Xend lifecycle support.")
        require(dom.state, LIVE, "Domain is not running")
        path = self._checkpoint_path(dom)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        await self._save_to(dom, path, keep_running=False)
        dom.set_state(PowerState.SUSPENDED)
        self.store.put_managed(dom.uuid, dom.name, dom.config.to_dict(), "suspended")

    async def resume(self, ident: str, paused: bool) -> None:
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            if dom.state != PowerState.SUSPENDED:
                raise VmError("Cannot resume domain that is not suspended.")
            path = self._checkpoint_path(dom)
            image = await asyncio.to_thread(savefile.verify, path)
            await self._launch(dom, paused, self._from_image(image))
            self.store.set_managed_state(dom.uuid, "halted")
            os.unlink(path)

    # ---- live migration ---------------------------------------------------------------

    def migrate(self, ident: str, host: str, port: int, live: bool, tls: bool = False) -> str:
        """Start moving a domain to another host's relocation server; returns a job id
        that ``migration_status`` reports on (xm shows progress from it)."""
        if str(ident) in ("0", "Domain-0"):
            raise VmError(f"Cannot migrate privileged domain {ident}")
        dom = self.lookup(ident)
        require(dom.state, LIVE, "Domain is not running")
        job_id = uuidlib.uuid4().hex[:12]
        job = relocation.MigrationJob(dom.name, f"{host}:{port}", live)
        self.migrations[job_id] = job
        self._spawn(self._run_migration(dom, host, port, live, job, tls))
        return job_id

    async def _run_migration(self, dom: Domain, host: str, port: int, live: bool,
                             job: relocation.MigrationJob, tls: bool) -> None:
        try:
            async with dom.lock:
                if dom.state not in LIVE:
                    raise VmError("Domain is not running")
                await relocation.send_guest(dom, host, port, live, job, self.stream_rates, tls)
                self.hvlog.add(f"Domain {dom.domid} ({dom.name}) migrated to {host}:{port}")
                await self._teardown(dom)
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

    async def receive_migration(self, request: dict[str, Any], reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """The destination's side, from the relocation server."""
        cfg = DomainConfig.from_dict(request["config"])
        cfg.validate()
        self._check_unique(cfg)
        self._check_bootable(cfg)
        rate = await relocation.read_probe(reader, int(request.get("probe", 0)))
        await relocation.send(writer, {"status": "probed", "rate": rate})
        # QEMU starts while the source still measures its guest; relocation.receive_guest
        # then waits for the source's "start"
        dom = Domain(cfg)
        dom.next_vif_devid = int(request.get("next_vif_devid", 0))
        self.domains[cfg.uuid] = dom
        try:
            async with dom.lock:
                await self._launch(dom, paused=False, incoming=lambda m: relocation.receive_guest(
                    dom, request, reader, writer))
        except BaseException:
            self.domains.pop(cfg.uuid, None)
            raise
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) migrated in")
        await relocation.send(writer, {"status": "running", "domid": dom.domid})
