"""The domain manager: lookup, lifecycle, restart policy and re-adoption (save,
restore and migration are its StateMoves part, in moving.py).

Every operation on one domain holds that domain's lock, so operations on
different domains never wait for each other.  Every change of a live domain is
written to the store before the operation returns, so xend may die at any
instant and the next xend re-adopts what is running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from dom0.backends.qemu.machine import QemuMachine
from dom0.devices.vbd import Vbd
from dom0.domain.domain import Domain
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.moving import StateMoves
from dom0.domain.network import VifController
from dom0.domain.storage import DiskController
from dom0.errors import BackendError, ConfigError, InvalidDomain, VmError
from dom0.migration import relocation
from dom0.migration.predict import StreamRates
from dom0.model.config import NAME_RE, DiskSpec, DomainConfig, parse_cpu_list
from dom0.model.state import LIVE, STATE_FILTER, PowerState, require
from dom0.store.db import Store
from dom0.store.layout import DomainPaths, Layout

log = logging.getLogger(__name__)

MachineFactory = Callable[[DomainPaths], QemuMachine]



@dataclass
class ManagerOptions:
    minimum_restart_time: float = 60.0
    shutdown_timeout: float = 60.0
    dump_dir: str = "/var/xen/dump"
    #: how long a hot-plugged device may take to be seen by the guest (Xen: 100 s)
    device_timeout: float = 100.0
    #: the longest a save or restore stream may take
    save_timeout: float = 600.0
    host_cpus: int = os.cpu_count() or 1


class DomainManager(StateMoves):
    def __init__(self, store: Store, layout: Layout, machines: MachineFactory,
                 options: ManagerOptions, hvlog: HypervisorLog, vifs: VifController) -> None:
        self.store = store
        self.layout = layout
        self.machines = machines
        self.options = options
        self.hvlog = hvlog
        self.vifs = vifs
        self.disks = DiskController(lambda: self.domains.values(), options.device_timeout)
        self.domains: dict[str, Domain] = {}  # by UUID
        self._tasks: set[asyncio.Task[None]] = set()
        self.migrations: dict[str, relocation.MigrationJob] = {}
        self.stream_rates = StreamRates()  # what QEMU reached in past migrations

    # ---- lookup ----------------------------------------------------------------

    def lookup(self, ident: str | int) -> Domain:
        """By domain ID, name or UUID (spec: <Domain> is a name or an ID)."""
        text = str(ident)
        for dom in self.domains.values():
            if dom.active and text.isdigit() and dom.domid == int(text):
                return dom
        for dom in self.domains.values():
            if dom.name == text or dom.uuid == text:
                return dom
        raise InvalidDomain(text)

    def select(self, state: str | None = None,
             names: list[str] | None = None) -> list[Domain]:
        if names:
            return [self.lookup(n) for n in names]
        doms = sorted(self.domains.values(), key=lambda d: d.name)
        if state and state != "all":
            doms = [d for d in doms if STATE_FILTER[d.state] == state]
        return doms

    # ---- start and stop of xend ------------------------------------------------

    async def adopt_all(self) -> None:
        """Re-adopt every live domain recorded by a previous xend, then load the
        managed domains that are not running."""
        for rec in self.store.running_records():
            await self._adopt(rec)
        for config, state in self.store.managed():
            cfg = DomainConfig.from_dict(config)
            if cfg.uuid in self.domains:
                self.domains[cfg.uuid].managed = True
                continue
            self.domains[cfg.uuid] = Domain(cfg, PowerState(state), managed=True)

    async def _adopt(self, rec: dict[str, Any]) -> None:
        dom = Domain.from_record(rec)
        assert dom.instance is not None
        machine = self.machines(self.layout.domain(dom.instance))
        if not machine.recognise(rec.get("pid")):
            log.info("domain %s (id %s) ended while xend was away", dom.name, dom.domid)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) ended while xend was stopped")
            self.store.delete_running(dom.instance)
            await machine.kill()  # removes its leftover sockets
            return
        dom.machine = machine
        try:
            await machine.attach(*self._handlers(dom))
            runstate = await machine.runstate()
        except (BackendError, OSError) as exc:
            # the guest is running: never kill it for our failure; keep its record so
            # the next xend start tries again
            log.error("cannot adopt domain %s (pid %s): %s", dom.name, machine.pid, exc)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) could not be adopted: {exc}")
            await machine.detach()
            return
        self.domains[dom.uuid] = dom
        log.info("adopted domain %s (id %s, pid %s, %s)", dom.name, dom.domid, machine.pid,
                 runstate)
        if runstate == "shutdown" and dom.state in LIVE:
            # it stopped while nobody listened: its reason is unknown, call it a poweroff
            self._spawn(self._guest_stopped(dom, dom.instance, "poweroff"))
        elif runstate == "guest-panicked" and dom.state in LIVE:
            self._spawn(self._guest_stopped(dom, dom.instance, "crash"))

    async def autostart(self) -> None:
        """on_xend_start=start: start halted managed domains, resume suspended ones."""
        for dom in list(self.domains.values()):
            if dom.managed and dom.config.on_xend_start == "start" and \
                    dom.state in (PowerState.HALTED, PowerState.SUSPENDED):
                try:
                    if dom.state == PowerState.SUSPENDED:
                        await self.resume(dom.name, paused=False)
                    else:
                        await self.start_managed(dom.name)
                except Exception as exc:  # one failing domain must not stop the others
                    log.error("autostart of %s failed: %s", dom.name, exc)

    async def on_xend_stop(self) -> None:
        """Apply each live domain's on_xend_stop, then let go of all of them."""
        waits = []
        for dom in list(self.domains.values()):
            action = dom.config.on_xend_stop
            if dom.state in LIVE and action == "shutdown":
                try:
                    await self.shutdown(dom.name, "poweroff")
                    waits.append(self._wait_gone(dom, dom.instance, self.options.shutdown_timeout))
                except Exception as exc:
                    log.error("on_xend_stop shutdown of %s failed: %s", dom.name, exc)
            elif dom.state in LIVE and action == "suspend":
                try:
                    async with dom.lock:
                        await self._suspend_locked(dom)
                except Exception as exc:  # one domain must not keep the others from stopping
                    log.error("on_xend_stop suspend of %s failed: %s", dom.name, exc)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        await self.detach_all()

    async def detach_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for dom in self.domains.values():
            if dom.machine:
                await dom.machine.detach()

    # ---- creating ------------------------------------------------------------

    def _check_unique(self, cfg: DomainConfig) -> None:
        for dom in self.domains.values():
            if dom.name == cfg.name:
                if dom.active:
                    raise VmError(f"Domain '{cfg.name}' already exists with ID '{dom.domid}'")
                raise VmError(f"VM name '{cfg.name}' already exists")
            if dom.uuid == cfg.uuid:
                raise VmError(f"Domain with UUID '{cfg.uuid}' already exists as '{dom.name}'")

    def _check_bootable(self, cfg: DomainConfig) -> None:
        if not os.path.isfile(cfg.kernel):
            raise ConfigError(f"Kernel image does not exist: {cfg.kernel}")
        if cfg.ramdisk and not os.path.isfile(cfg.ramdisk):
            raise ConfigError(f"Kernel ramdisk does not exist: {cfg.ramdisk}")

    async def create(self, cfg: DomainConfig, paused: bool = False) -> Domain:
        cfg.uuid = cfg.uuid or str(uuidlib.uuid4())
        cfg.validate()
        self._check_unique(cfg)
        self._check_bootable(cfg)
        dom = Domain(cfg)
        self.domains[cfg.uuid] = dom  # reserves name and UUID while QEMU starts
        try:
            async with dom.lock:
                await self._launch(dom, paused)
        except BaseException:
            self.domains.pop(cfg.uuid, None)
            raise
        return dom

    async def new(self, cfg: DomainConfig) -> Domain:
        cfg.uuid = cfg.uuid or str(uuidlib.uuid4())
        cfg.validate()
        existing = self.domains.get(cfg.uuid)
        if existing and existing.active:
            raise VmError("Domain is already running")
        if existing:
            self.domains.pop(cfg.uuid)
        try:
            self._check_unique(cfg)
        except VmError:
            if existing:
                self.domains[cfg.uuid] = existing
            raise
        dom = existing or Domain(cfg, managed=True)
        dom.config, dom.managed = cfg, True
        self.domains[cfg.uuid] = dom
        self.store.put_managed(cfg.uuid, cfg.name, cfg.to_dict())
        return dom

    async def delete(self, ident: str) -> None:
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            require(dom.state, (PowerState.HALTED, PowerState.SUSPENDED), "Domain is not halted.")
            self.store.delete_managed(dom.uuid)
            self.domains.pop(dom.uuid, None)

    async def start_managed(self, ident: str, paused: bool = False) -> Domain:
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.managed:
                raise VmError("Domain is not managed by Xend lifecycle support.")
            if dom.active:
                raise VmError("Domain is already running")
            self._check_bootable(dom.config)
            await self._launch(dom, paused)
        return dom

    async def _launch(self, dom: Domain, paused: bool,
                      incoming: Callable[[QemuMachine], Awaitable[None]] | None = None) -> None:
        """Start a QEMU for *dom* (its lock held).  The runtime record is written
        before QEMU starts, so a kill of xend in between still finds the QEMU."""
        disks = self._resolve_disks(dom, dom.config.disks)
        dom.instance = uuidlib.uuid4().hex[:16]
        dom.domid = self.store.allocate_domid()
        dom.shutdown_reason = dom.shutdown_request = None
        dom.start_time = time.time()
        dom.machine = self.machines(self.layout.domain(dom.instance))
        dom.set_state(PowerState.PAUSED)
        nics = self.vifs.prepare(dom, dom.domid)
        dom.vif_domid = dom.domid
        self._persist(dom)
        try:
            await self.vifs.plug_all(dom, nics)
            await dom.machine.launch(dom.config, disks, nics, *self._handlers(dom),
                                     incoming=incoming is not None)
            if incoming is not None:  # a saved or migrating guest's state, before it runs
                await incoming(dom.machine)
            self._pin_vcpus(dom)
            if not paused:
                await dom.machine.cont()
                dom.set_state(PowerState.RUNNING)
            self._persist(dom)
        except BaseException:
            await dom.machine.kill()
            await self.vifs.unplug_all(dom)
            self.store.delete_running(dom.instance)
            dom.machine, dom.domid, dom.instance, dom.vif_domid = None, None, None, None
            dom.set_state(PowerState.HALTED)
            raise
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) created: QEMU pid {dom.machine.pid}, "
                       f"{dom.machine.accel}")
        log.info("started domain %s (id %d, pid %s)", dom.name, dom.domid, dom.machine.pid)

    # ---- block devices (the work is in domain/storage.py) ---------------------------

    def _resolve_disks(self, dom: Domain, disks: list[DiskSpec]) -> list[Vbd]:
        return self.disks.resolve(dom, disks)

    def _save_config(self, dom: Domain) -> None:
        self._persist(dom)
        if dom.managed:
            self.store.put_managed(dom.uuid, dom.name, dom.config.to_dict())

    async def block_attach(self, ident: str, uname: str, dev: str, mode: str) -> None:
        self._not_dom0(ident, "attach a device to")
        dom = self.lookup(ident)
        async with dom.lock:
            await self.disks.attach(dom, DiskSpec(uname, dev, mode))
            self._save_config(dom)

    async def block_detach(self, ident: str, dev: str, force: bool) -> None:
        self._not_dom0(ident, "detach a device from")
        dom = self.lookup(ident)
        async with dom.lock:
            await self.disks.detach(dom, dev, force)
            self._save_config(dom)

    async def block_configure(self, ident: str, uname: str, dev: str, mode: str) -> None:
        dom = self.lookup(ident)
        async with dom.lock:
            await self.disks.configure(dom, uname, dev, mode)
            self._save_config(dom)

    async def block_list(self, ident: str) -> list[dict[str, Any]]:
        return await self.disks.rows(self.lookup(ident))

    # ---- network interfaces ------------------------------------------------------

    async def network_attach(self, ident: str, options: dict[str, str]) -> int:
        self._not_dom0(ident, "attach a device to")
        dom = self.lookup(ident)
        async with dom.lock:
            devid = await self.vifs.attach(dom, options)
            self._save_config(dom)
            return devid

    async def network_detach(self, ident: str, devid: int, force: bool) -> None:
        self._not_dom0(ident, "detach a device from")
        dom = self.lookup(ident)
        async with dom.lock:
            await self.vifs.detach(dom, devid, force)
            self._save_config(dom)

    async def network_list(self, ident: str) -> list[dict[str, Any]]:
        return await self.vifs.rows(self.lookup(ident))

    def _pin_vcpus(self, dom: Domain) -> None:
        assert dom.machine is not None
        for vcpu, tid in enumerate(dom.machine.vcpu_threads):
            spec = dom.config.vcpu_affinity(vcpu)
            if spec is None:
                continue
            cpus = [c for c in parse_cpu_list(spec) if c < self.options.host_cpus]
            if cpus:
                os.sched_setaffinity(tid, cpus)

    def _persist(self, dom: Domain) -> None:
        if dom.instance is not None and dom.domid is not None:
            self.store.put_running(dom.instance, dom.domid, dom.record())

    # ---- events from QEMU ----------------------------------------------------

    def _handlers(self, dom: Domain) -> tuple[Callable[[str, dict[str, Any]], None],
                                               Callable[[], None]]:
        instance = dom.instance

        def on_event(event: str, data: dict[str, Any]) -> None:
            log.debug("domain %s: QMP event %s %s", dom.name, event, data)
            if event == "SHUTDOWN" and data.get("guest"):
                reason = {"guest-reset": "reboot", "guest-panic": "crash"}.get(
                    data.get("reason", ""), "poweroff")
                if reason == "poweroff" and dom.shutdown_request == "halt":
                    reason = "halt"
                self._spawn(self._guest_stopped(dom, instance, reason))
            elif event == "GUEST_PANICKED":
                self._spawn(self._guest_stopped(dom, instance, "crash"))

        def on_gone() -> None:
            self._spawn(self._vanished(dom, instance))

        return on_event, on_gone

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guest_stopped(self, dom: Domain, instance: str | None, reason: str) -> None:
        async with dom.lock:
            if dom.instance != instance or dom.state not in LIVE:
                return
            dom.shutdown_reason = reason
            dom.set_state(PowerState.CRASHED if reason == "crash" else PowerState.SHUTDOWN)
            self._persist(dom)
            key = {"reboot": "on_reboot", "crash": "on_crash"}.get(reason, "on_poweroff")
            action = dom.config.action(key)
            log.info("domain %s (id %s) %s; %s=%s", dom.name, dom.domid, reason, key, action)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) {reason}: {key}={action}")
            try:
                await self._apply_action(dom, action)
            except Exception:
                log.exception("acting on %s of %s failed; destroying it", reason, dom.name)
                await self._teardown(dom)

    async def _apply_action(self, dom: Domain, action: str) -> None:
        if action.startswith("coredump-"):
            await self._dump(dom, self._default_dump_path(dom), live=False)
            action = action[len("coredump-"):]
        if action == "destroy":
            await self._teardown(dom)
        elif action == "restart":
            now = time.time()
            if dom.last_restart and now - dom.last_restart < self.options.minimum_restart_time:
                log.error("VM %s restarting too fast (%.1f seconds since the last restart). "
                          "Refusing to restart to avoid loops.", dom.name, now - dom.last_restart)
                await self._teardown(dom)
            else:
                await self._restart_in_place(dom)
        elif action == "rename-restart":
            await self._rename_restart(dom)
        # preserve: stays shut down / crashed until destroyed

    async def _restart_in_place(self, dom: Domain) -> None:
        """Xen restarts a domain as a new domain (new ID); we reset the same QEMU,
        which is quicker and keeps its devices."""
        assert dom.machine is not None
        await dom.machine.hard_reset()
        dom.domid = self.store.allocate_domid()
        dom.start_time = dom.last_restart = time.time()
        dom.shutdown_reason = dom.shutdown_request = None
        dom.set_state(PowerState.RUNNING)
        self._persist(dom)
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) restarted")

    async def _rename_restart(self, dom: Domain) -> None:
        """Keep the stopped domain under the name Domain-<new uuid> and start a
        fresh one with the original name and UUID."""
        original = DomainConfig.from_dict(dom.config.to_dict())
        new_uuid = str(uuidlib.uuid4())
        self.domains.pop(dom.uuid, None)
        dom.config.uuid, dom.config.name = new_uuid, f"Domain-{new_uuid}"
        was_managed, dom.managed = dom.managed, False
        self.domains[new_uuid] = dom
        self._persist(dom)
        fresh = Domain(original, managed=was_managed)
        self.domains[original.uuid] = fresh
        async with fresh.lock:
            await self._launch(fresh, paused=False)

    async def _vanished(self, dom: Domain, instance: str | None) -> None:
        """QMP dropped without our asking: QEMU died (killed, or crashed itself)."""
        async with dom.lock:
            if dom.instance != instance or dom.machine is None:
                return
            if dom.machine.still_running():
                return  # still there: the connection alone failed
            log.warning("QEMU of domain %s (id %s) exited unexpectedly", dom.name, dom.domid)
            self.hvlog.add(f"Domain {dom.domid} ({dom.name}) QEMU exited unexpectedly")
            await self._teardown(dom)

    async def _teardown(self, dom: Domain) -> None:
        """Destroy the domain's QEMU and forget its runtime record (lock held)."""
        dom.set_state(PowerState.DYING)
        if dom.machine:
            await dom.machine.kill()
        if dom.vif_domid is not None:
            await self.vifs.unplug_all(dom)
            dom.vif_domid = None
        if dom.instance:
            self.store.delete_running(dom.instance)
        self.hvlog.add(f"Domain {dom.domid} ({dom.name}) destroyed")
        dom.machine, dom.instance, dom.domid = None, None, None
        if dom.managed:
            dom.set_state(PowerState.HALTED)
        else:
            self.domains.pop(dom.uuid, None)
            dom.set_state(PowerState.HALTED)

    async def _wait_gone(self, dom: Domain, instance: str | None, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while dom.instance == instance and dom.active:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise VmError(f"Domain {dom.name} did not shut down within {timeout:g} s")
            try:
                await asyncio.wait_for(dom.changed.wait(), remaining)
            except TimeoutError:
                pass

    # ---- lifecycle verbs -----------------------------------------------------

    def _not_dom0(self, ident: str, verb: str) -> None:
        if str(ident) in ("0", "Domain-0"):
            raise VmError(f"Cannot {verb} privileged domain {ident}")

    async def destroy(self, ident: str) -> None:
        self._not_dom0(ident, "destroy")
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.active:
                raise VmError("Domain is not running")
            await self._teardown(dom)

    async def shutdown(self, ident: str, mode: str = "poweroff") -> Domain:
        if str(ident) in ("0", "Domain-0"):
            raise VmError("Domain 0 cannot be shutdown")
        if mode not in ("poweroff", "halt", "reboot"):
            raise VmError(f"Invalid reason: {mode}")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            assert dom.machine is not None
            dom.shutdown_request = mode
            if dom.state == PowerState.PAUSED:
                await dom.machine.cont()
                dom.set_state(PowerState.RUNNING)
            if mode == "reboot":
                await dom.machine.send_keys("ctrl", "alt", "delete")
            else:
                await dom.machine.powerdown()
            self._persist(dom)
        self._spawn(self._shutdown_watchdog(dom, dom.instance, mode))
        return dom

    async def _shutdown_watchdog(self, dom: Domain, instance: str | None, mode: str) -> None:
        """A guest that ignores the request is stopped by force after a timeout."""
        domid = dom.domid
        try:
            await self._wait_domid_change(dom, instance, domid, self.options.shutdown_timeout)
        except VmError:
            async with dom.lock:
                if dom.instance != instance or dom.domid != domid or not dom.active:
                    return
                log.warning("Domain shutdown timeout expired: name=%s", dom.name)
                if mode == "reboot":
                    await self._restart_in_place(dom)
                else:
                    await self._teardown(dom)

    async def _wait_domid_change(self, dom: Domain, instance: str | None, domid: int | None,
                                 timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while dom.instance == instance and dom.domid == domid and dom.state in LIVE:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise VmError("timeout")
            try:
                await asyncio.wait_for(dom.changed.wait(), remaining)
            except TimeoutError:
                pass

    async def reset(self, ident: str) -> None:
        self._not_dom0(ident, "reset")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            await self._restart_in_place(dom)

    async def pause(self, ident: str) -> None:
        self._not_dom0(ident, "pause")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            assert dom.machine is not None
            await dom.machine.stop()
            dom.set_state(PowerState.PAUSED)
            self._persist(dom)

    async def unpause(self, ident: str) -> None:
        self._not_dom0(ident, "unpause")
        dom = self.lookup(ident)
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            assert dom.machine is not None
            await dom.machine.cont()
            dom.set_state(PowerState.RUNNING)
            self._persist(dom)

    async def rename(self, ident: str, new_name: str) -> None:
        self._not_dom0(ident, "rename")
        dom = self.lookup(ident)
        async with dom.lock:
            if not NAME_RE.match(new_name):
                raise VmError("Invalid VM Name")
            trial = DomainConfig.from_dict({**dom.config.to_dict(), "name": new_name})
            for other in self.domains.values():
                if other is not dom and other.name == new_name:
                    raise VmError(f"VM name '{new_name}' already exists" +
                                  (f" as domain {other.domid}" if other.active else ""))
            dom.config = trial
            self._persist(dom)
            if dom.managed:
                self.store.put_managed(dom.uuid, dom.name, dom.config.to_dict(),
                                       dom.state.value if not dom.active else "halted")

    async def sysrq(self, ident: str, key: str) -> None:
        dom = self.lookup(ident)
        if len(key) != 1 or not key.isalnum():
            raise VmError(f"Invalid sysrq key: {key}")
        async with dom.lock:
            require(dom.state, LIVE, "Domain is not running")
            assert dom.machine is not None
            await dom.machine.send_keys("alt", "sysrq", key.lower())

    def _default_dump_path(self, dom: Domain) -> str:
        stamp = time.strftime("%Y-%m%d-%H%M.%S")
        return os.path.join(self.options.dump_dir, f"{stamp}-{dom.name}.{dom.domid}.core")

    async def dump_core(self, ident: str, filename: str | None, live: bool, crash: bool,
                        reset: bool) -> str:
        self._not_dom0(ident, "dump core for")
        dom = self.lookup(ident)
        async with dom.lock:
            if not dom.active:
                raise VmError("Domain is not running")
            path = filename or self._default_dump_path(dom)
            if os.path.isdir(path):
                raise VmError(f"Cannot dump core in a directory: {path}")
            await self._dump(dom, path, live)
            if crash:
                await self._teardown(dom)
            elif reset:
                await self._restart_in_place(dom)
        return path

    async def _dump(self, dom: Domain, path: str, live: bool) -> None:
        assert dom.machine is not None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        was_running = dom.state == PowerState.RUNNING
        try:
            if was_running and not live:
                await dom.machine.stop()
            await dom.machine.dump_memory(path)
        except BackendError as exc:
            raise VmError(f"Failed to dump core: {exc}") from None
        finally:
            if was_running and not live and dom.machine:
                await dom.machine.cont()

    def vcpu_info(self, dom: Domain) -> list[dict[str, Any]]:
        if not dom.active or dom.machine is None:
            return [{"number": n, "cpu": -1, "state": "", "cpu_time": 0.0,
                     "affinity": parse_cpu_list(dom.config.vcpu_affinity(n) or "all",
                                                self.options.host_cpus)}
                    for n in range(dom.config.vcpus)]
        out = []
        figures = dom.machine.vcpu_figures()
        for n, tid in enumerate(dom.machine.vcpu_threads):
            secs, cpu, tstate = figures[n]
            try:
                affinity = sorted(os.sched_getaffinity(tid))
            except OSError:
                affinity = []
            paused = dom.state != PowerState.RUNNING
            flags = ("-" if paused or tstate in ("S", "D") else "r") + \
                    ("b" if tstate in ("S", "D") and not paused else "-") + \
                    ("p" if paused else "-")
            out.append({"number": n, "cpu": cpu, "state": flags, "cpu_time": secs,
                        "affinity": affinity})
        return out
