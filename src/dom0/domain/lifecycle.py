"""A domain's life: admission (create, restore and incoming migration share one
``admit``), launch and teardown, what its machine reports, the restart policy
(on_poweroff/on_reboot/on_crash, the restart-loop guard, the shutdown
watchdog).  Re-adoption of the domains a previous xend left running is
adoption.py's.

Every change happens with the domain's lock held, and is written to the store
(through the table) before the operation returns, so xend may die at any
instant and the next xend re-adopts what is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from dom0.backends.machine import Machine, MachineFactory
from dom0.domain.domain import Domain, Running, next_free_vif_devid
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.network import VifController
from dom0.domain.resources import ResourceController, pin_vcpus
from dom0.domain.sched import Scheduler
from dom0.domain.security import DomainSecurity
from dom0.domain.settings import DomainSettings
from dom0.domain.spec import machine_spec, platform
from dom0.domain.storage import DiskController
from dom0.domain.table import DomainTable
from dom0.domain.vtpm import VtpmStates
from dom0.errors import BackendError, ConfigError, VmError
from dom0.model.checks import check_memory_floor
from dom0.model.config import DomainConfig
from dom0.model.hvm import HvmImage
from dom0.model.state import LIVE, PowerState
from dom0.store.layout import Layout
from dom0.waiting import wait_changes

log = logging.getLogger(__name__)

#: what runs in a launch while QEMU waits for a saved or migrating state
Incoming = Callable[[Machine], Awaitable[None]]

#: which config key says what to do when the guest stopped for a reason
ACTION_KEY = {"reboot": "on_reboot", "crash": "on_crash"}


def running(dom: Domain, message: str = "Domain is not running") -> Running:
    """The domain's running part, or the user's error when it has none."""
    if dom.running is None:
        raise VmError(message)
    return dom.running


class LaunchEvents:
    """What one launch of a domain's machine reports (``MachineEvents``).  Bound to
    the launch's instance: a late event of an earlier machine is ignored."""

    def __init__(self, life: Lifecycle, dom: Domain, instance: str) -> None:
        self.life, self.dom, self.instance = life, dom, instance

    def guest_stopped(self, reason: str) -> None:
        log.debug("domain %s: the guest stopped (%s)", self.dom.name, reason)
        if reason == "poweroff" and self.dom.shutdown_request == "halt":
            reason = "halt"  # xm shutdown -H: the same power-off, Xen's own word
        self.life.spawn(self.life.guest_stopped(self.dom, self.instance, reason))

    def gone(self) -> None:
        self.life.spawn(self.life.vanished(self.dom, self.instance))


class Lifecycle:
    def __init__(self, table: DomainTable, layout: Layout, machines: MachineFactory,
                 settings: DomainSettings, hvlog: HypervisorLog, vifs: VifController,
                 disks: DiskController, sched: Scheduler,
                 resources: ResourceController | None = None) -> None:
        #: vCPU pinning and the memory check every launch passes (issue 10)
        self.resources = resources or ResourceController(lambda: iter(table), table.save,
                                                         settings)
        self.table = table
        self.layout = layout
        self.machines = machines
        self.settings = settings
        self.hvlog = hvlog
        self.vifs = vifs
        self.disks = disks
        #: the access control policy (sHype/ACM), consulted at every launch
        self.security: DomainSecurity | None = None
        #: each machine's vCPU threads in its domain's cgroup (weight, cap, SEDF)
        self.sched = sched
        #: where each domain's vTPM keeps its state
        self.vtpms = VtpmStates(layout, settings, lambda: iter(table), hvlog)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- admission -------------------------------------------------------------------

    def check(self, cfg: DomainConfig, migrating_in: bool = False) -> None:
        """Would *cfg* be admitted?  (Refusals come before anything starts.)"""
        cfg.uuid = cfg.uuid or str(uuidlib.uuid4())
        cfg.validate()
        self.table.check_unique(cfg, migrating_in=migrating_in)
        self.check_bootable(cfg)

    def check_bootable(self, cfg: DomainConfig) -> None:
        # also at `xm start`: a managed row may predate the floor
        check_memory_floor(cfg.memory)
        if cfg.builder == "hvm":  # firmware, not a kernel: it and the floppies must exist
            platform(cfg.kernel, cfg.hvm or HvmImage())
            return
        if not os.path.isfile(cfg.kernel):
            raise ConfigError(f"Kernel image does not exist: {cfg.kernel}")
        if cfg.ramdisk and not os.path.isfile(cfg.ramdisk):
            raise ConfigError(f"Kernel ramdisk does not exist: {cfg.ramdisk}")

    async def admit(self, cfg: DomainConfig, paused: bool = False,
                    incoming: Incoming | None = None, next_vif_devid: int = 0,
                    migrating_in: bool = False, managed: bool = False) -> Domain:
        """A new unmanaged domain from *cfg* (create, restore, incoming migration):
        validate, check unique, check bootable, reserve its name and UUID, launch
        with its lock held; on any failure it is gone again, table and store.  One
        *migrating_in* may take the UUID of a domain migrating out of this xend,
        and carries on as a *managed* one when that was."""
        self.check(cfg, migrating_in)
        dom = Domain(cfg, next_vif_devid=next_vif_devid, managed=managed)
        self.table.reserve(dom, migrating_in)
        try:
            async with dom.lock:
                await self.launch(dom, paused, incoming)
        except BaseException:
            self.table.forget(dom)
            self.vtpms.ended(dom)  # an unmanaged domain that never was: nor its TPM
            raise
        return dom

    async def launch(self, dom: Domain, paused: bool, incoming: Incoming | None = None) -> None:
        """Start a machine for *dom* (its lock held).  The runtime record is written
        before the machine starts, so a kill of xend in between still finds it.
        A failure leaves no machine, no taps and no record, and *dom* as it was."""
        if self.security is not None:  # the policy first: nothing starts if it refuses
            self.security.check_start(dom.config)
        self.resources.check_fits(dom)
        disks = self.disks.resolve(dom, dom.config.disks)
        instance = uuidlib.uuid4().hex[:16]
        tpm = self.vtpms.for_launch(dom, instance, incoming is not None)
        machine = self.machines(self.layout.domain(instance))
        domid = self.table.allocate_domid()
        before = dom.state
        nics = self.vifs.prepare(dom, domid)
        run = Running(machine, instance, domid, time.time(), vif_domid=domid,
                      tpm_state=tpm.state_dir if tpm else None)
        dom.running, dom.shutdown_reason, dom.shutdown_request = run, None, None
        dom.crash_reason = None
        dom.set_state(PowerState.PAUSED)
        dom.launching = True  # until the end: else the next xend rolls it back
        self.table.save_running(dom)
        try:
            await self.vifs.plug_all(dom, nics)
            await machine.launch(machine_spec(dom.config, disks, nics, self.settings, tpm),
                                 LaunchEvents(self, dom, instance), incoming=incoming is not None)
            if incoming is not None:  # a saved or migrating guest's state, before it runs
                await incoming(machine)
            self._pin_vcpus(dom, machine)
            self.sched.place(dom)
            if not paused:
                await machine.cont()
                dom.set_state(PowerState.RUNNING)
            # also a managed domain's row: its vifs' IDs and MACs are in its config now
            dom.launching = False
            self.table.save(dom)
            self.vtpms.launched(dom, tpm)
        except BaseException:
            dom.launching = False
            await machine.kill()
            self.vtpms.launch_failed(dom, tpm)
            await self.sched.release(dom)
            await self.vifs.unplug_all(dom)
            self.table.drop_running(run)
            dom.running = None
            dom.set_state(before if before in (PowerState.HALTED, PowerState.SUSPENDED)
                          else PowerState.HALTED)
            raise
        self.hvlog.add(f"Domain {domid} ({dom.name}) created: QEMU pid {machine.pid}, "
                       f"{machine.accel}")
        log.info("started domain %s (id %d, pid %s)", dom.name, domid, machine.pid)

    def _pin_vcpus(self, dom: Domain, machine: Machine) -> None:
        pin_vcpus(dom.config, machine.vcpu_threads, self.settings.host_cpus,
                  self.resources.affinity)

    # ---- the end of a machine ------------------------------------------------------

    async def teardown(self, dom: Domain) -> None:
        """Destroy the domain's machine and forget its runtime record (lock held);
        an unmanaged domain leaves the table.  A domain xend kept crashed had its
        logs kept for the user: they go with it."""
        kept = dom.crash_reason is not None
        dom.set_state(PowerState.DYING)
        run = dom.running
        if run is not None:
            await run.machine.kill()
            await self.sched.release(dom)
            if run.vif_domid is not None:
                await self.vifs.unplug_all(dom)
            self.table.drop_running(run)
            if kept:
                for path in (run.machine.paths.console_log, run.machine.paths.qemu_log):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) destroyed")
        dom.running, dom.crash_reason = None, None
        dom.set_state(PowerState.HALTED)
        if not dom.managed:
            self.table.forget(dom)
        self.vtpms.ended(dom)

    def _current(self, dom: Domain, instance: str) -> Running | None:
        """*dom*'s running part if it is still the launch *instance*."""
        run = dom.running
        return run if run is not None and run.instance == instance else None

    async def vanished(self, dom: Domain, instance: str) -> None:
        """The machine's connection dropped without our asking: did it die?"""
        async with dom.lock:
            run = self._current(dom, instance)
            if run is None or run.machine.still_running():
                return  # an old machine, or only the connection failed
            log.warning("QEMU of domain %s (id %s) exited unexpectedly", dom.name, run.domid)
            self.hvlog.add(f"Domain {run.domid} ({dom.name}) QEMU exited unexpectedly")
            if dom.state in LIVE:
                # for the user the guest crashed: on_crash says what follows, as in Xen
                await self._stopped(dom, run, "crash")
            # a guest already shut down or crashed stays listed as it was (preserve)

    async def wait_gone(self, dom: Domain, instance: str, timeout: float) -> None:
        if not await wait_changes(lambda: self._current(dom, instance) is None or not dom.active,
                                  lambda: dom.changed, timeout):
            raise VmError(f"Domain {dom.name} did not shut down within {timeout:g} s")

    # ---- the restart policy ----------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def guest_stopped(self, dom: Domain, instance: str, reason: str) -> None:
        async with dom.lock:
            run = self._current(dom, instance)
            if run is None or dom.state not in LIVE:
                return
            await self._stopped(dom, run, reason)

    async def _stopped(self, dom: Domain, run: Running, reason: str) -> None:
        """The guest stopped for *reason* (lock held): its on_* action follows."""
        dom.shutdown_reason = reason
        dom.set_state(PowerState.CRASHED if reason == "crash" else PowerState.SHUTDOWN)
        self.table.save_running(dom)
        key = ACTION_KEY.get(reason, "on_poweroff")
        action = dom.config.action(key)
        log.info("domain %s (id %s) %s; %s=%s", dom.name, run.domid, reason, key, action)
        self.hvlog.add(f"Domain {run.domid} ({dom.name}) {reason}: {key}={action}")
        try:
            await self._apply_action(dom, run, action)
        except Exception as exc:
            if action.endswith("destroy"):
                log.exception("acting on %s of %s failed; destroying it", reason, dom.name)
                await self.teardown(dom)
                return
            # a restart that failed: kept, so that the user sees why (a failed
            # relaunch has already let go of the old machine's taps)
            log.exception("acting on %s of %s failed; keeping it crashed", reason, dom.name)
            await self._keep_crashed(dom, dom.running or dataclasses.replace(run, vif_domid=None),
                                     f"{key}={action} failed: {exc}")

    async def _apply_action(self, dom: Domain, run: Running, action: str) -> None:
        if action.startswith("coredump-"):
            if run.machine.still_running():
                await self.dump(dom, run, self.default_dump_path(dom, run), live=False)
            else:
                log.warning("no core dump of domain %s: its QEMU is gone, and the guest's "
                            "memory with it", dom.name)
                self.hvlog.add(f"Domain {run.domid} ({dom.name}) no core dump: its QEMU is "
                               "gone (the guest's memory went with it)")
            action = action[len("coredump-"):]
        if action == "destroy":
            await self.teardown(dom)
        elif action == "restart":
            since = time.time() - (dom.last_restart or 0.0)
            if dom.last_restart and since < self.settings.minimum_restart_time:
                log.error("VM %s restarting too fast (%.1f seconds since the last restart). "
                          "Refusing to restart to avoid loops.", dom.name, since)
                # Xen destroyed it here, and only its log knew why: we keep it listed
                await self._keep_crashed(dom, run, (
                    f"restarting too fast: {dom.shutdown_reason} {since:.1f} s after its last "
                    f"restart (domain-minimum-restart-time "
                    f"{self.settings.minimum_restart_time:g} s); not restarted, to avoid loops"))
            else:
                await self.restart(dom, run)
        elif action == "rename-restart":
            await self._rename_restart(dom)
        elif dom.state == PowerState.CRASHED:  # on_crash=preserve
            if run.machine.still_running():  # its memory stays, for xm dump-core
                dom.crash_reason = "the guest crashed; on_crash=preserve keeps it"
                self.table.save_running(dom)
            else:
                await self._keep_crashed(dom, run, "QEMU exited unexpectedly; "
                                                   "on_crash=preserve keeps it")
        # on_poweroff/on_reboot=preserve: stays shut down until destroyed

    async def _keep_crashed(self, dom: Domain, run: Running, why: str) -> None:
        """Keep *dom* listed as crashed, saying *why*, until ``xm destroy`` (lock
        held): its ID, name, record and logs stay, for the user to look at; its
        machine and taps go (the guest is dead).  The record survives an xend
        restart (re-adoption keeps a crashed domain whose QEMU is gone)."""
        dom.crash_reason = why
        dom.set_state(PowerState.CRASHED)
        self.table.save_running(dom)  # first: an xend dying in between still keeps it
        await run.machine.kill()
        if run.vif_domid is not None:
            await self.vifs.unplug_all(dom)
        dom.running = dataclasses.replace(run, vif_domid=None)
        self.table.save_running(dom)
        self.hvlog.add(f"Domain {run.domid} ({dom.name}) kept as crashed: {why}")

    async def restart(self, dom: Domain, run: Running) -> None:
        """Restart the guest (lock held): its machine reset, or a new machine when
        the old one is gone (QEMU died)."""
        if run.machine.still_running():
            await self.restart_in_place(dom, run)
        else:
            await self._relaunch(dom, run)

    async def _relaunch(self, dom: Domain, run: Running) -> None:
        """A new machine for *dom*, whose QEMU died: a new domain ID and new taps, as
        Xen restarts a domain as a new domain."""
        await run.machine.kill()  # removes what the dead QEMU left in its run dir
        await self.sched.release(dom)
        if run.vif_domid is not None:
            await self.vifs.unplug_all(dom)
        self.table.drop_running(run)
        dom.running = None
        dom.last_restart = time.time()  # the loop guard counts this restart too
        await self.launch(dom, paused=False)
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) restarted in a new QEMU")

    async def restart_in_place(self, dom: Domain, run: Running) -> None:
        """Xen restarts a domain as a new domain (new ID); we reset the same machine,
        which is quicker and keeps its devices."""
        await run.machine.hard_reset()
        now = time.time()
        dom.running = dataclasses.replace(run, domid=self.table.allocate_domid(), start_time=now)
        dom.last_restart = now
        dom.shutdown_reason = dom.shutdown_request = None
        dom.set_state(PowerState.RUNNING)
        self.table.save_running(dom)
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) restarted")

    async def _rename_restart(self, dom: Domain) -> None:
        """Keep the stopped domain under the name Domain-<new uuid> and start a
        fresh one with the original name and UUID."""
        original = DomainConfig.from_dict(dom.config.to_dict())
        old_uuid, new_uuid = dom.uuid, str(uuidlib.uuid4())
        dom.config.uuid, dom.config.name = new_uuid, f"Domain-{new_uuid}"
        was_managed, dom.managed = dom.managed, False
        self.table.rekey(dom, old_uuid)
        self.table.save_running(dom)
        fresh = Domain(original, managed=was_managed,
                       next_vif_devid=next_free_vif_devid(original))
        self.table.add(fresh)
        try:
            async with fresh.lock:
                await self.launch(fresh, paused=False)
        except BaseException:
            if not was_managed:  # a managed one stays, halted, as its row says
                self.table.forget(fresh)
            raise

    async def shutdown(self, dom: Domain, mode: str) -> None:
        """Ask the guest to stop (lock held); a watchdog stops it by force when it
        does not within the shutdown timeout."""
        run = running(dom)
        dom.shutdown_request = mode
        if dom.state == PowerState.PAUSED:
            await run.machine.cont()
            dom.set_state(PowerState.RUNNING)
        if mode == "reboot":
            await run.machine.send_keys("ctrl", "alt", "delete")
        else:
            await run.machine.powerdown()
        self.table.save_running(dom)
        self.spawn(self._shutdown_watchdog(dom, run, mode))

    async def _shutdown_watchdog(self, dom: Domain, asked: Running, mode: str) -> None:
        def obeyed() -> bool:  # a new machine or domain ID, or no longer running
            run = dom.running
            return run is None or run.instance != asked.instance or \
                run.domid != asked.domid or dom.state not in LIVE

        if await wait_changes(obeyed, lambda: dom.changed, self.settings.shutdown_timeout):
            return
        async with dom.lock:
            run = dom.running
            if run is None or run.instance != asked.instance or run.domid != asked.domid or \
                    not dom.active:
                return
            log.warning("Domain shutdown timeout expired: name=%s", dom.name)
            if mode == "reboot":
                await self.restart_in_place(dom, run)
            else:
                await self.teardown(dom)

    # ---- core dumps --------------------------------------------------------------------

    def default_dump_path(self, dom: Domain, run: Running) -> str:
        return self.layout.core_dump(dom.name, run.domid, time.strftime("%Y-%m%d-%H%M.%S"))

    async def dump(self, dom: Domain, run: Running, path: str, live: bool) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        was_running = dom.state == PowerState.RUNNING
        try:
            if was_running and not live:
                await run.machine.stop()
            await run.machine.dump_memory(path)
        except BackendError as exc:
            raise VmError(f"Failed to dump core: {exc}") from None
        finally:
            if was_running and not live:
                await run.machine.cont()

    # ---- xend stopping -------------------------------------------------------------

    async def detach_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for dom in self.table:
            if dom.running is not None:
                await dom.running.machine.detach()
