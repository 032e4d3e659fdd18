"""Re-adoption: at xend's start, every domain a previous xend recorded as running is
taken back (its QEMU recognised by pid, its QMP attached, its events bound), rolled back
(a launch cut short), dropped (its QEMU gone), or kept as it must be (crashed, or a copy
whose guest left during xend's death); then the managed domains not running are loaded.
The previous xend may have died at any instant: each case below is one such instant."""

from __future__ import annotations

import logging
from typing import Any

from dom0.domain.domain import Domain, Running, next_free_vif_devid
from dom0.domain.lifecycle import LaunchEvents, Lifecycle, running
from dom0.errors import BackendError
from dom0.model.state import LIVE, PowerState

log = logging.getLogger(__name__)


class Adoption:
    def __init__(self, life: Lifecycle) -> None:
        self.life = life

    async def all(self) -> None:
        """Re-adopt every live domain recorded by a previous xend, then load the
        managed domains that are not running."""
        departed: list[Domain] = []
        for rec in self.life.table.running_records():
            await self._adopt(rec, departed)
        for dom in departed:
            await self._departed(dom)
        self.life.sched.sweep()  # the cgroups of domains that ended while xend was away
        for cfg, state in self.life.table.managed_rows():
            existing = self.life.table.get(cfg.uuid)
            if existing is not None:
                existing.managed = True
            else:
                self.life.table.add(Domain(cfg, state, managed=True,
                                           next_vif_devid=next_free_vif_devid(cfg)))

    async def _adopt(self, rec: dict[str, Any], departed: list[Domain]) -> None:
        machine = self.life.machines(self.life.layout.domain(rec["instance"]))
        run = Running.from_record(rec, machine)
        dom = Domain.from_record(rec, run)
        recognised = machine.recognise(rec.get("pid"))
        if dom.launching:
            await self._roll_back(dom, run, recognised)
            return
        if not recognised and dom.state == PowerState.CRASHED:
            # its QEMU died and on_crash=preserve kept it: listed crashed until destroyed
            log.info("domain %s (id %s) stays crashed (its QEMU is gone)", dom.name, run.domid)
            self.life.table.add(dom)
            return
        if not recognised:
            log.info("domain %s (id %s) ended while xend was away", dom.name, run.domid)
            self.life.hvlog.add(f"Domain {run.domid} ({dom.name}) ended while xend was stopped")
            self.life.table.drop_running(run)
            await machine.kill()  # removes its leftover sockets
            self.life.vtpms.ended(dom)
            return
        try:
            await machine.attach(LaunchEvents(self.life, dom, run.instance))
            runstate = await machine.runstate()
        except (BackendError, OSError) as exc:
            # the guest is running: never kill it for our failure; keep its record so
            # the next xend start tries again
            log.error("cannot adopt domain %s (pid %s): %s", dom.name, machine.pid, exc)
            self.life.hvlog.add(f"Domain {run.domid} ({dom.name}) could not be adopted: {exc}")
            await machine.detach()
            return
        if runstate == "postmigrate":  # decided once every record is adopted
            departed.append(dom)
            return
        self._adopted(dom)
        log.info("adopted domain %s (id %s, pid %s, %s)", dom.name, run.domid, machine.pid,
                 runstate)
        if runstate == "shutdown" and dom.state in LIVE:
            # it stopped while nobody listened: its reason is unknown, call it a poweroff
            self.life.spawn(self.life.guest_stopped(dom, run.instance, "poweroff"))
        elif runstate == "guest-panicked" and dom.state in LIVE:
            self.life.spawn(self.life.guest_stopped(dom, run.instance, "crash"))

    async def _departed(self, dom: Domain) -> None:
        """A QEMU that finished sending its guest away while xend was stopped (QEMU's
        ``postmigrate``): the previous xend died between the end of the stream and
        the teardown of the source.  If the guest arrived here (a localhost
        migration whose copy was adopted), this is a stale copy: removed, so one UUID
        is listed once.  Otherwise it may well run at the destination: resuming it
        here would run one guest twice on the same disks, so it is kept paused for
        the user to destroy or unpause (as libvirt leaves such a domain)."""
        run = running(dom)
        arrived = self.life.table.get(dom.uuid)
        if any(instance == run.instance for _, instance, _ in self.life.table.partials()):
            # a save whose file was never completed: its guest is only here, and the
            # cut-save clean-up resumes it (mover.clean_up_cut_saves)
            self._adopted(dom)
            return
        if arrived is not None and arrived.running is not None:
            await run.machine.kill()
            await self.life.sched.release(dom)
            if run.vif_domid is not None:
                await self.life.vifs.unplug_all(dom)
            self.life.table.drop_running(run)
            self.life.vtpms.ended(dom)  # the copy's TPM state stays; the old one's goes
            self.life.hvlog.add(f"Domain {run.domid} ({dom.name}) had migrated to this host "
                           f"as domain {arrived.domid} while xend was stopped; its old "
                           f"copy was removed")
            log.info("removed the old copy of migrated domain %s (id %s)", dom.name,
                     run.domid)
            return
        dom.set_state(PowerState.PAUSED)
        self._adopted(dom)
        self.life.table.save_running(dom)
        self.life.hvlog.add(f"Domain {run.domid} ({dom.name}) finished sending its state away "
                       f"(a migration or a save) while xend was stopped; kept paused: "
                       f"destroy it if it runs elsewhere or was saved, unpause it if not")
        log.warning("domain %s (id %s) finished sending its state away while xend was "
                    "stopped; kept paused", dom.name, run.domid)

    def _adopted(self, dom: Domain) -> None:
        self.life.table.add(dom)
        self.life.sched.place(dom)  # its weight and cap in force again, from its config
        self.life.vtpms.adopted(dom, running(dom).machine)

    async def _roll_back(self, dom: Domain, run: Running, recognised: bool) -> None:
        """A launch the previous xend did not finish (it died inside it): undo it as a
        failed launch is undone, so the create either completed or never happened.
        A managed domain stays as its row says (halted, or suspended)."""
        log.warning("domain %s (id %s) was being started when xend stopped: rolling back",
                    dom.name, run.domid)
        await run.machine.kill()  # its QEMU if it started, and its sockets either way
        await self.life.vifs.unplug_all(dom)
        self.life.table.drop_running(run)
        self.life.vtpms.ended(dom)
        self.life.hvlog.add(f"Domain {run.domid} ({dom.name}) was being started when xend "
                       f"stopped; rolled back{' (QEMU killed)' if recognised else ''}")
