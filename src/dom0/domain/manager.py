"""The domain manager: the one face the API sees, composed of the domain table
(table.py: lookup, uniqueness, the store's rows), the lifecycle (lifecycle.py:
admission, launch, teardown, events, restart policy, re-adoption) and the state
mover (mover.py: save, restore, suspend, resume, migrate).

The verbs here are short: find the domain, take its lock, check its state, ask
its machine, write it down.  Operations on different domains never wait for
each other (each holds its own domain's lock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from dom0.backends.cgroups import CpuCgroups
from dom0.backends.machine import MachineFactory
from dom0.domain import usbports
from dom0.domain.adoption import Adoption
from dom0.domain.debugkeys import run_keys
from dom0.domain.domain import Domain
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.lifecycle import Lifecycle, running
from dom0.domain.memory import HostMemory, read_host_memory
from dom0.domain.mover import StateMover, not_dom0
from dom0.domain.network import VifController
from dom0.domain.resources import Affinity, ResourceController
from dom0.domain.sched import Scheduler
from dom0.domain.security import DomainSecurity
from dom0.domain.settings import DomainSettings
from dom0.domain.stats import StatsCollector
from dom0.domain.storage import DiskController
from dom0.domain.table import DomainTable
from dom0.domain.vtpm import keep_version
from dom0.errors import VmError
from dom0.model.checks import check_name
from dom0.model.config import DiskSpec, DomainConfig
from dom0.model.figures import DomainFigures
from dom0.model.state import LIVE, PowerState, require
from dom0.store.db import Store
from dom0.store.layout import Layout

log = logging.getLogger(__name__)

#: ``xm trigger``'s names (spec §1.2)
TRIGGERS = ("nmi", "reset", "init", "s3resume", "power")


class DomainManager:
    def __init__(self, store: Store, layout: Layout, machines: MachineFactory,
                 settings: DomainSettings, hvlog: HypervisorLog, vifs: VifController,
                 cgroups: CpuCgroups | None = None, affinity: Affinity | None = None,
                 host_memory: Callable[[], HostMemory] = read_host_memory) -> None:
        self.settings = settings
        self.hvlog = hvlog
        self.table = DomainTable(store)
        self.vifs = vifs
        self.disks = DiskController(lambda: iter(self.table), settings)
        #: *cgroups* None: a host without the CPU controller (domains run unweighed)
        self.sched = Scheduler(settings.scheduler, cgroups, self.table, hvlog)
        self.resources = ResourceController(lambda: iter(self.table), self.table.save,
                                            settings, affinity, host_memory)
        self.lifecycle = Lifecycle(self.table, layout, machines, settings, hvlog, vifs,
                                   self.disks, self.sched, self.resources)
        self.adoption = Adoption(self.lifecycle)
        self.mover = StateMover(self.table, self.lifecycle, layout, settings, hvlog)
        self.security: DomainSecurity | None = None
        self.stats = StatsCollector(vifs)

    def use_security(self, security: DomainSecurity) -> None:
        """Enforce the access control policy at every launch, vif and disk."""
        self.security = self.lifecycle.security = self.vifs.security = security

    def running_vifs(self) -> list[tuple[DomainConfig, list[str]]]:
        """Each running domain's config and host-side vif names (the frame filter's)."""
        return [(d.config, [v.vifname for v in self.vifs.current(d)])
                for d in self.table if d.active and d.running is not None]

    # ---- lookup ----------------------------------------------------------------

    def lookup(self, ident: str | int) -> Domain:
        return self.table.lookup(ident)

    def select(self, state: str | None = None,
               names: list[str] | None = None) -> list[Domain]:
        return self.table.select(state, names)

    async def figures(self) -> list[DomainFigures]:
        """Every live domain's figures (xm top, the metrics exporter), measured at once."""
        return await self.stats.collect(self.table)

    # ---- start and stop of xend ------------------------------------------------

    async def adopt_all(self) -> None:
        await self.adoption.all()
        await self.mover.clean_up_cut_saves()

    async def autostart(self) -> None:
        """on_xend_start=start: start halted managed domains, resume suspended ones."""
        for dom in self.table:
            if dom.managed and dom.config.on_xend_start == "start" and \
                    dom.state in (PowerState.HALTED, PowerState.SUSPENDED):
                try:
                    if dom.state == PowerState.SUSPENDED:
                        await self.mover.resume(dom.name, paused=False)
                    else:
                        await self.start_managed(dom.name)
                except Exception as exc:  # one failing domain must not stop the others
                    log.error("autostart of %s failed: %s", dom.name, exc)

    async def on_xend_stop(self) -> None:
        """Apply each live domain's on_xend_stop, then let go of all of them."""
        waits = []
        for dom in self.table:
            action = dom.config.on_xend_stop
            if dom.state in LIVE and action == "shutdown":
                try:
                    await self.shutdown(dom.name, "poweroff")
                    instance = running(dom).instance
                    waits.append(self.lifecycle.wait_gone(dom, instance,
                                                          self.settings.shutdown_timeout))
                except Exception as exc:
                    log.error("on_xend_stop shutdown of %s failed: %s", dom.name, exc)
            elif dom.state in LIVE and action == "suspend":
                try:
                    async with dom.lock:
                        await self.mover.suspend_locked(dom)
                except Exception as exc:  # one domain must not keep the others from stopping
                    log.error("on_xend_stop suspend of %s failed: %s", dom.name, exc)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        await self.detach_all()

    async def detach_all(self) -> None:
        await self.lifecycle.detach_all()

    # ---- creating ------------------------------------------------------------

    async def create(self, cfg: DomainConfig, paused: bool = False) -> Domain:
        return await self.lifecycle.admit(cfg, paused)

    async def new(self, cfg: DomainConfig) -> Domain:
        """Define (or redefine) a managed domain."""
        cfg.uuid = cfg.uuid or str(uuidlib.uuid4())
        cfg.validate()
        existing = self.table.get(cfg.uuid)
        if existing and existing.active:
            raise VmError("Domain is already running")
        self.table.check_unique(cfg, besides=existing)
        if existing:
            keep_version(existing.config, cfg)
        dom = existing or Domain(cfg, managed=True)
        dom.config, dom.managed = cfg, True
        self.table.add(dom)
        self.table.save(dom)
        return dom

    async def delete(self, ident: str) -> None:
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            require(dom.state, (PowerState.HALTED, PowerState.SUSPENDED), "Domain is not halted.")
            self.table.drop_managed(dom)
            self.table.forget(dom)
            self.lifecycle.vtpms.remove(dom.uuid)

    async def start_managed(self, ident: str, paused: bool = False) -> Domain:
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            if dom.active:
                raise VmError("Domain is already running")
            self.lifecycle.check_bootable(dom.config)
            await self.lifecycle.launch(dom, paused)
        return dom

    # ---- lifecycle verbs -----------------------------------------------------

    async def destroy(self, ident: str) -> None:
        not_dom0(ident, "destroy")
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.active:
                raise VmError("Domain is not running")
            await self.lifecycle.teardown(dom)

    async def shutdown(self, ident: str, mode: str = "poweroff") -> Domain:
        if str(ident) in ("0", "Domain-0"):
            raise VmError("Domain 0 cannot be shutdown")
        if mode not in ("poweroff", "halt", "reboot"):
            raise VmError(f"Invalid reason: {mode}")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await self.lifecycle.shutdown(dom, mode)
        return dom

    async def reset(self, ident: str) -> None:
        not_dom0(ident, "reset")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await self.lifecycle.restart(dom, running(dom))

    async def pause(self, ident: str) -> None:
        not_dom0(ident, "pause")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await running(dom).machine.stop()
            dom.set_state(PowerState.PAUSED)
            self.table.save_running(dom)

    async def unpause(self, ident: str) -> None:
        not_dom0(ident, "unpause")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await running(dom).machine.cont()
            dom.set_state(PowerState.RUNNING)
            self.table.save_running(dom)

    async def rename(self, ident: str, new_name: str) -> None:
        not_dom0(ident, "rename")
        dom = self.lookup(ident)
        async with dom.lock:
            check_name(new_name)
            trial = DomainConfig.from_dict({**dom.config.to_dict(), "name": new_name})
            for other in self.table:
                if other is not dom and other.name == new_name:
                    raise VmError(f"VM name '{new_name}' already exists" +
                                  (f" as domain {other.domid}" if other.active else ""))
            dom.config = trial
            self.table.save(dom)

    async def relabel(self, ident: str, label: str | None, policy: str | None) -> Domain:
        """``xm addlabel <label> mgt <dom>`` / ``rmlabel mgt``: a domain's ACM label,
        judged by the policy (a running domain's new label too), kept in its config."""
        dom = self.lookup(ident)
        if self.security is None:
            raise VmError("Access control is not available")
        async with dom.lock:
            entries = self.security.relabel(dom.config, label, policy, dom.active)
            if not entries and "access_control" not in dom.config.other:
                raise VmError("Domain not labeled")
            dom.config.other = {k: v for k, v in dom.config.other.items()
                                if k != "access_control"}
            if entries:
                dom.config.other["access_control"] = entries
            self.table.save(dom)
            if dom.active:
                await asyncio.to_thread(self.security.refresh_frame_filter)
        return dom

    async def sysrq(self, ident: str, key: str) -> None:
        dom = self.lookup(ident)
        if len(key) != 1 or not key.isalnum():
            raise VmError(f"Invalid sysrq key: {key}")
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await running(dom).machine.send_keys("alt", "sysrq", key.lower())

    async def trigger(self, ident: str, name: str, vcpu: int = 0) -> None:
        """Xen's send_trigger; see the machine's ``trigger`` for what each one is."""
        not_dom0(ident, "send a trigger to")
        if name.lower() not in TRIGGERS:
            raise VmError(f"Invalid trigger: {name}")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, f"Domain '{ident}' is not started")
            if not 0 <= vcpu < dom.config.vcpus:
                raise VmError(f"Invalid VCPU: {vcpu} (the domain has {dom.config.vcpus})")
            await running(dom).machine.trigger(name.lower())

    def debug_keys(self, keys: str) -> None:
        """Xen's debug keys, answered by dumping our own state into ``xm dmesg``."""
        run_keys(keys, list(self.table), self.hvlog.add)

    async def dump_core(self, ident: str, filename: str | None, live: bool, crash: bool,
                        reset: bool) -> str:
        not_dom0(ident, "dump core for")
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.active:
                raise VmError("Domain is not running")
            run = running(dom)
            path = filename or self.lifecycle.default_dump_path(dom, run)
            if os.path.isdir(path):
                raise VmError(f"Cannot dump core in a directory: {path}")
            await self.lifecycle.dump(dom, run, path, live)
            if crash:
                await self.lifecycle.teardown(dom)
            elif reset:
                await self.lifecycle.restart_in_place(dom, run)
        return path

    # ---- CPU scheduling (domain/sched.py) ---------------------------------------------

    @property
    def scheduler(self) -> str:
        return self.sched.name

    def sched_credit_get(self, ident: str) -> dict[str, int]:
        if str(ident) in ("0", "Domain-0"):
            return self.sched.dom0_credit()
        return self.sched.credit_get(self.lookup(ident))

    async def sched_credit_set(self, ident: str, weight: int | None, cap: int | None) -> None:
        not_dom0(ident, "set the scheduling of")
        await self.sched.credit_set(self.lookup(ident), weight, cap)

    def sched_sedf_get(self, ident: str) -> dict[str, int]:
        if str(ident) in ("0", "Domain-0"):
            return self.sched.dom0_sedf()
        return self.sched.sedf_get(self.lookup(ident))

    async def sched_sedf_set(self, ident: str, values: dict[str, int]) -> None:
        not_dom0(ident, "set the scheduling of")
        await self.sched.sedf_set(self.lookup(ident), values)

    def vcpu_info(self, dom: Domain) -> list[dict[str, Any]]:
        return self.resources.vcpu_rows(dom)

    # ---- vCPUs and memory (domain/resources.py) ------------------------------------------

    async def vcpu_set(self, ident: str, count: int) -> None:
        dom = self.lookup(ident)
        try:
            await self.resources.vcpu_set(dom, count)
        finally:  # hot-plugged vCPU threads join the domain's cgroup (weight, cap)
            self.sched.place(dom)

    async def vcpu_pin(self, ident: str, vcpu: str, cpus: str) -> None:
        await self.resources.vcpu_pin(self.lookup(ident), vcpu, cpus)

    async def mem_set(self, ident: str, mib: int) -> int:
        return await self.resources.mem_set(self.lookup(ident), mib)

    async def mem_max(self, ident: str, mib: int) -> None:
        await self.resources.mem_max(self.lookup(ident), mib)

    def free_memory_kib(self) -> int:
        return self.resources.free_memory_kib()

    # ---- save, restore, suspend, resume, migrate (the state mover) ---------------------

    async def save(self, ident: str, path: str, checkpoint: bool) -> None:
        await self.mover.save(ident, path, checkpoint)

    async def restore(self, path: str, paused: bool) -> Domain:
        return await self.mover.restore(path, paused)

    async def suspend(self, ident: str) -> None:
        await self.mover.suspend(ident)

    async def resume(self, ident: str, paused: bool) -> None:
        await self.mover.resume(ident, paused)

    def migrate(self, ident: str, host: str, port: int, live: bool, tls: bool = False) -> str:
        return self.mover.migrate(ident, host, port, live, tls)

    def migration_status(self, job_id: str) -> dict[str, Any]:
        return self.mover.migration_status(job_id)

    # ---- devices: the config changes with them, and is written down ---------------------

    async def block_attach(self, ident: str, uname: str, dev: str, mode: str) -> None:
        not_dom0(ident, "attach a device to")
        dom = self.lookup(ident)
        async with dom.lock:
            if self.security is not None:
                self.security.check_disk(dom.config, uname)
            await self.disks.attach(dom, DiskSpec(uname, dev, mode))
            self.table.save(dom)

    async def block_detach(self, ident: str, dev: str, force: bool) -> None:
        not_dom0(ident, "detach a device from")
        dom = self.lookup(ident)
        async with dom.lock:
            await self.disks.detach(dom, dev, force)
            self.table.save(dom)

    async def block_configure(self, ident: str, uname: str, dev: str, mode: str) -> None:
        dom = self.lookup(ident)
        async with dom.lock:
            if self.security is not None and uname:
                self.security.check_disk(dom.config, uname)
            await self.disks.configure(dom, uname, dev, mode)
            self.table.save(dom)

    async def block_list(self, ident: str) -> list[dict[str, Any]]:
        return await self.disks.rows(self.lookup(ident))

    async def network_attach(self, ident: str, options: dict[str, str]) -> int:
        not_dom0(ident, "attach a device to")
        dom = self.lookup(ident)
        async with dom.lock:
            devid = await self.vifs.attach(dom, options)
            self.table.save(dom)
            return devid

    async def network_detach(self, ident: str, devid: int, force: bool) -> None:
        not_dom0(ident, "detach a device from")
        dom = self.lookup(ident)
        async with dom.lock:
            await self.vifs.detach(dom, devid, force)
            self.table.save(dom)

    async def network_list(self, ident: str) -> list[dict[str, Any]]:
        return await self.vifs.rows(self.lookup(ident))

    async def vtpm_list(self, ident: str) -> list[dict[str, Any]]:
        return self.lifecycle.vtpms.rows(self.lookup(ident))
    # ---- USB (usbports.py): a running domain's USB devices ------------------------------

    async def usb_add(self, ident: str, device: str) -> None:
        not_dom0(ident, "attach a device to")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, f"Domain '{ident}' is not started")
            await usbports.add(dom, device)
            self.table.save(dom)

    async def usb_del(self, ident: str, device: str) -> None:
        not_dom0(ident, "detach a device from")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, f"Domain '{ident}' is not started")
            await usbports.delete(dom, device)
            self.table.save(dom)
