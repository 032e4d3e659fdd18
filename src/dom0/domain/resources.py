"""A domain's vCPUs and memory while it lives: ``xm vcpu-set`` (QEMU CPU hot-plug),
``xm vcpu-pin`` (the vCPU threads' host affinity), ``xm vcpu-list``, ``xm mem-set``
(the balloon), ``xm mem-max`` (the ceiling), and the memory check that admits a
domain.  Every change is written into the domain's config, so it survives an xend
restart, save/restore and migration (the config travels with the domain).

Xen's words map onto QEMU's: a vCPU is a QEMU vCPU thread (its affinity is the
thread's, ``sched_setaffinity``); Xen's vCPU hot-plug is ACPI CPU hot-plug; Xen's
balloon driver is virtio-balloon; ``maxmem`` is the RAM QEMU was started with, a
ceiling ``mem-max`` can lower and raise again but not lift (QEMU would need memory
hot-plug, which a guest sees as new DIMMs rather than a larger balloon).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from dom0.backends.machine import Machine
from dom0.domain.domain import Domain
from dom0.domain.memory import HostMemory, MemoryAccount, read_host_memory, resident_kib
from dom0.domain.settings import DomainSettings
from dom0.errors import ConfigError, VmError
from dom0.model.config import DomainConfig, parse_cpu_list
from dom0.model.state import PowerState

log = logging.getLogger(__name__)

#: a balloon that has not moved for this long has gone as far as the guest lets it
BALLOON_STALL = 5.0


class Affinity(Protocol):
    """The host scheduler's CPU affinity of a thread (unit tests use a table)."""

    def set(self, tid: int, cpus: list[int]) -> None: ...
    def get(self, tid: int) -> list[int]: ...


class HostAffinity:
    def set(self, tid: int, cpus: list[int]) -> None:
        os.sched_setaffinity(tid, cpus)

    def get(self, tid: int) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(tid))
        except OSError:
            return []


def pin_error(vcpu: int, cpus: list[int], why: str) -> VmError:
    return VmError(f"Cannot pin vcpu: {vcpu} to cpu: {cpus} - {why}")


def pin_vcpus(cfg: DomainConfig, threads: list[int], host_cpus: int, affinity: Affinity) -> None:
    """Give each vCPU thread the affinity its config names (``cpus``)."""
    for vcpu, tid in enumerate(threads):
        spec = cfg.vcpu_affinity(vcpu)
        if spec is None:
            continue
        cpus = [c for c in parse_cpu_list(spec, host_cpus) if c < host_cpus]
        if cpus:
            affinity.set(tid, cpus)


def pinned_config(cfg: DomainConfig, vcpus: Iterable[int], spec: str) -> list[str]:
    """``cpus`` as one entry per vCPU (every one the domain may have), *vcpus* set to
    *spec*: what vcpu-pin writes into the config."""
    chosen = set(vcpus)
    return [spec if n in chosen else (cfg.vcpu_affinity(n) or "all")
            for n in range(cfg.max_vcpus)]


class ResourceController:
    def __init__(self, domains: Callable[[], Iterable[Domain]], save: Callable[[Domain], None],
                 settings: DomainSettings, affinity: Affinity | None = None,
                 host_memory: Callable[[], HostMemory] = read_host_memory,
                 resident: Callable[[int | None], int] = resident_kib) -> None:
        self.domains = domains
        self.save = save
        self.settings = settings
        self.affinity: Affinity = affinity or HostAffinity()
        self.host_memory = host_memory
        self.resident = resident

    # ---- memory accounting ---------------------------------------------------------

    def account(self, besides: Domain | None = None) -> MemoryAccount:
        """The host now, every domain with a machine counted (but *besides*)."""
        live = [d for d in self.domains() if d.running is not None and d is not besides]
        return MemoryAccount(
            host=self.host_memory(),
            targets_kib=sum(d.config.memory for d in live) * 1024,
            resident_kib=sum(self.resident(d.running.machine.pid) for d in live
                             if d.running is not None),
            dom0_min_kib=self.settings.dom0_min_mem * 1024,
            ballooning=self.settings.dom0_ballooning)

    def free_memory_kib(self) -> int:
        return self.account().free_kib

    def check_fits(self, dom: Domain) -> None:
        """Refuse to start *dom* when its memory is not free (create, start, restore,
        incoming migration: they all launch)."""
        self.account(besides=dom).require(dom.config.memory * 1024)

    # ---- vCPUs ------------------------------------------------------------------------

    async def vcpu_set(self, dom: Domain, count: int) -> None:
        if count <= 0:
            raise VmError("Zero or less VCPUs is invalid")
        async with dom.lock:
            cfg = dom.config
            run = dom.running if dom.active else None
            if run is None:
                # Xen: a halted domain's vcpu-set sets how many it has
                cfg.vcpus, cfg.vcpu_avail = count, None
                if cfg.maxvcpus is not None and cfg.maxvcpus < count:
                    cfg.maxvcpus = count
                if isinstance(cfg.cpus, list):
                    cfg.cpus = [cfg.vcpu_affinity(n) or "all" for n in range(count)]
                self._store(dom)
                return
            if count > cfg.max_vcpus:
                raise VmError("Cannot set vcpus greater than max vcpus on running domain")
            got = await run.machine.set_vcpu_count(count, self.settings.device_timeout)
            pin_vcpus(cfg, run.machine.vcpu_threads, self.settings.host_cpus, self.affinity)
            cfg.vcpu_avail = (1 << got) - 1
            self._store(dom)
            if got != count:
                raise VmError(f"The guest did not release its vCPU {got - 1} within "
                              f"{self.settings.device_timeout:g} s; it has {got} vCPUs")

    async def vcpu_pin(self, dom: Domain, vcpu: str, cpus: str) -> None:
        host = self.settings.host_cpus
        chosen = parse_cpu_list(cpus, host)
        async with dom.lock:
            cfg = dom.config
            if str(vcpu).lower() == "all":
                vcpus = list(range(cfg.max_vcpus))
            else:
                try:
                    vcpus = [int(vcpu)]
                except ValueError:
                    raise VmError("Invalid argument.") from None
            for v in vcpus:
                if not 0 <= v < cfg.max_vcpus:
                    raise pin_error(v, chosen, "(22, 'Invalid argument')")
                if not chosen or any(c >= host for c in chosen):
                    raise pin_error(v, chosen, "(22, 'Invalid argument')")
            threads = dom.running.machine.vcpu_threads if dom.running and dom.active else []
            for v in vcpus:
                if v < len(threads):  # an offline vCPU gets it when it is plugged
                    try:
                        self.affinity.set(threads[v], chosen)
                    except OSError as exc:
                        raise pin_error(v, chosen, f"({exc.errno}, '{exc.strerror}')") \
                            from None
            cfg.cpus = pinned_config(cfg, vcpus, cpus if cpus != "all" else "all")
            self._store(dom)

    def vcpu_rows(self, dom: Domain) -> list[dict[str, Any]]:
        """``xm vcpu-list``'s rows: every vCPU the domain may have, the ones not
        plugged in as offline."""
        cfg, host = dom.config, self.settings.host_cpus
        run = dom.running if dom.active else None

        def configured(n: int) -> list[int]:
            return parse_cpu_list(cfg.vcpu_affinity(n) or "all", host)

        if run is None:
            return [{"number": n, "cpu": -1, "state": "", "cpu_time": 0.0,
                     "affinity": configured(n)} for n in range(cfg.max_vcpus)]
        figures = run.machine.vcpu_figures()
        paused = dom.state != PowerState.RUNNING
        out: list[dict[str, Any]] = []
        for n in range(cfg.max_vcpus):
            if n >= len(run.machine.vcpu_threads) or n >= len(figures):
                out.append({"number": n, "cpu": -1, "state": "--p", "cpu_time": 0.0,
                            "affinity": configured(n), "online": False})
                continue
            secs, cpu, tstate = figures[n]
            asleep = tstate in ("S", "D")
            flags = ("-" if paused or asleep else "r") + ("b" if asleep and not paused else "-") \
                + ("p" if paused else "-")
            out.append({"number": n, "cpu": cpu, "state": flags, "cpu_time": secs,
                        "affinity": self.affinity.get(run.machine.vcpu_threads[n]),
                        "online": True})
        return out

    # ---- memory -------------------------------------------------------------------------

    async def mem_set(self, dom: Domain, mib: int) -> int:
        """Move the balloon to *mib*; returns the MiB the guest holds once it got
        there, or once it stopped moving (a guest that cannot give more back)."""
        async with dom.lock:
            cfg = dom.config
            self._check(cfg, memory=mib)
            # without maxmem the ceiling is the memory: it stays where it was
            cfg.maxmem = cfg.max_memory
            run = dom.running if dom.active else None
            if run is None:
                cfg.memory = mib
                self._store(dom)
                return mib
            if mib > cfg.memory:  # as Xen: the growth must be free
                self.account().require((mib - cfg.memory) * 1024)
            await run.machine.set_balloon(mib)
            cfg.memory = mib
            self._store(dom)
            machine = run.machine
        # the wait is outside the lock: xm list and others may look meanwhile
        return await self._balloon_settles(machine, mib)

    async def _balloon_settles(self, machine: Machine, target: int) -> int:
        loop = asyncio.get_running_loop()
        last, since = await machine.balloon_bytes() >> 20, loop.time()
        start = since
        while last != target and loop.time() - since < BALLOON_STALL and \
                loop.time() - start < self.settings.balloon_timeout:
            await asyncio.sleep(0.1)
            now = await machine.balloon_bytes() >> 20
            if now != last:
                last, since = now, loop.time()
        return last

    async def mem_max(self, dom: Domain, mib: int) -> None:
        async with dom.lock:
            cfg = dom.config
            self._check(cfg, maxmem=mib)
            run = dom.running if dom.active else None
            if run is not None:
                ram = await run.machine.ram_mib()
                if mib > ram:
                    raise VmError(f"Cannot raise the memory maximum of domain {dom.name} above "
                                  f"the {ram} MiB it was started with (no memory hot-plug)")
            cfg.maxmem = mib
            self._store(dom)

    async def balloon_actual(self, dom: Domain) -> int | None:
        """MiB the guest holds now (None when it has no machine to ask)."""
        run = dom.running if dom.active else None
        if run is None:
            return None
        try:
            return await run.machine.balloon_bytes() >> 20
        except Exception:  # a guest without a balloon driver yet: its target stands
            return None

    # ---- helpers --------------------------------------------------------------------------

    @staticmethod
    def _check(cfg: DomainConfig, **change: int) -> None:
        """Would *cfg* with *change* be valid?  Xen's own check texts."""
        if change.get("memory", 1) <= 0 or change.get("maxmem", 1) <= 0:
            raise VmError("Invalid memory size")
        # maxmem stays what it is (a domain without one is built with its memory)
        trial = DomainConfig.from_dict({**cfg.to_dict(), "maxmem": cfg.max_memory, **change})
        try:
            trial.validate()
        except ConfigError as exc:
            raise VmError(str(exc)) from None

    def _store(self, dom: Domain) -> None:
        self.save(dom)
