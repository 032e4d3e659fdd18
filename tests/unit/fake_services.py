"""Fake services for the API's unit tests: what the routes may call (api.services),
answering from memory.  Not a mock of xend's behaviour: just enough state that
each route's handler runs to its end."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dom0.api.services import RelocationDefaults, Services
from dom0.domain.security import DomainSecurity
from dom0.errors import InvalidDomain
from dom0.model.config import DomainConfig
from dom0.model.figures import DomainFigures, HostFigures
from dom0.security.acm import AccessControl


@dataclass
class FakeDomain:
    name: str
    domid: int | None = 1
    active: bool = True

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "domid": self.domid}


@dataclass
class FakeDomains:
    domains: dict[str, FakeDomain] = field(
        default_factory=lambda: {"vm1": FakeDomain("vm1")})
    #: every call as (method, arguments), to see what the handlers passed on
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    #: how long pause() takes (the operation timeout's test)
    pause_delay: float = 0.0

    def lookup(self, ident: str | int) -> FakeDomain:
        for dom in self.domains.values():
            if ident in (dom.name, str(dom.domid)):
                return dom
        raise InvalidDomain(str(ident))

    def select(self, state: str | None = None,
               names: list[str] | None = None) -> list[FakeDomain]:
        if names:
            return [self.lookup(n) for n in names]
        return list(self.domains.values())

    def vcpu_info(self, dom: FakeDomain) -> list[dict[str, Any]]:
        return [{"number": 0}]

    def _did(self, what: str, *args: Any) -> None:
        self.calls.append((what, args))

    async def create(self, cfg: DomainConfig, paused: bool = False) -> FakeDomain:
        self._did("create", cfg, paused)
        return FakeDomain(cfg.name)

    async def new(self, cfg: DomainConfig) -> FakeDomain:
        self._did("new", cfg)
        return FakeDomain(cfg.name, None, False)

    async def delete(self, ident: str) -> None:
        self.lookup(ident)

    async def start_managed(self, ident: str, paused: bool = False) -> FakeDomain:
        return self.lookup(ident)

    async def destroy(self, ident: str) -> None:
        self.lookup(ident)

    async def shutdown(self, ident: str, mode: str = "poweroff") -> FakeDomain:
        return self.lookup(ident)

    async def reset(self, ident: str) -> None:
        self.lookup(ident)

    async def pause(self, ident: str) -> None:
        await asyncio.sleep(self.pause_delay)
        self.lookup(ident)

    async def unpause(self, ident: str) -> None:
        self.lookup(ident)

    async def rename(self, ident: str, new_name: str) -> None:
        self._did("rename", ident, new_name)

    async def sysrq(self, ident: str, key: str) -> None:
        self.lookup(ident)

    async def relabel(self, ident: str, label: str | None, policy: str | None) -> FakeDomain:
        self._did("relabel", ident, label, policy)
        return self.lookup(ident)

    async def trigger(self, ident: str, name: str, vcpu: int = 0) -> None:
        self._did("trigger", ident, name, vcpu)

    def debug_keys(self, keys: str) -> None:
        self._did("debug_keys", keys)

    async def dump_core(self, ident: str, filename: str | None, live: bool, crash: bool,
                        reset: bool) -> str:
        self._did("dump_core", ident, filename, live, crash, reset)
        return filename or "/dump/core"

    async def save(self, ident: str, path: str, checkpoint: bool) -> None:
        self._did("save", ident, path, checkpoint)

    async def restore(self, path: str, paused: bool) -> FakeDomain:
        return FakeDomain("restored")

    async def suspend(self, ident: str) -> None:
        self.lookup(ident)

    async def resume(self, ident: str, paused: bool) -> None:
        self.lookup(ident)

    def migrate(self, ident: str, host: str, port: int, live: bool, tls: bool = False) -> str:
        self._did("migrate", ident, host, port, live, tls)
        return "job1"

    def migration_status(self, job_id: str) -> dict[str, Any]:
        return {"job": job_id, "done": True}

    async def block_attach(self, ident: str, uname: str, dev: str, mode: str) -> None:
        self.lookup(ident)

    async def block_detach(self, ident: str, dev: str, force: bool) -> None:
        self.lookup(ident)

    async def block_configure(self, ident: str, uname: str, dev: str, mode: str) -> None:
        self.lookup(ident)

    async def block_list(self, ident: str) -> list[dict[str, Any]]:
        return []

    async def network_attach(self, ident: str, options: dict[str, str]) -> int:
        self._did("network_attach", ident, options)
        return 0

    async def network_detach(self, ident: str, devid: int, force: bool) -> None:
        self._did("network_detach", ident, devid, force)

    async def network_list(self, ident: str) -> list[dict[str, Any]]:
        return []

    async def vtpm_list(self, ident: str) -> list[dict[str, Any]]:
        self.lookup(ident)
        return []
    async def usb_add(self, ident: str, device: str) -> None:
        self._did("usb_add", ident, device)

    async def usb_del(self, ident: str, device: str) -> None:
        self._did("usb_del", ident, device)

    scheduler = "credit"

    def sched_credit_get(self, ident: str) -> dict[str, int]:
        self.lookup(ident)
        return {"weight": 256, "cap": 0}

    async def sched_credit_set(self, ident: str, weight: int | None, cap: int | None) -> None:
        self._did("sched_credit_set", ident, weight, cap)

    def sched_sedf_get(self, ident: str) -> dict[str, int]:
        self.lookup(ident)
        return {"period": 100_000_000, "slice": 0, "latency": 0, "extratime": 1, "weight": 0}

    async def sched_sedf_set(self, ident: str, values: dict[str, int]) -> None:
        self._did("sched_sedf_set", ident, values)
    async def figures(self) -> list[DomainFigures]:
        return [DomainFigures(name=d.name, uuid=f"uuid-{d.name}", domid=d.domid or 0,
                              state="-b----", cpu_seconds=1.5, memory_kib=98304,
                              maxmem_kib=98304, vcpus=1)
                for d in self.domains.values() if d.active]

    async def vcpu_set(self, ident: str, count: int) -> None:
        self._did("vcpu_set", self.lookup(ident).name, count)

    async def vcpu_pin(self, ident: str, vcpu: str, cpus: str) -> None:
        self._did("vcpu_pin", self.lookup(ident).name, vcpu, cpus)

    async def mem_set(self, ident: str, mib: int) -> int:
        self._did("mem_set", self.lookup(ident).name, mib)
        return mib

    async def mem_max(self, ident: str, mib: int) -> None:
        self._did("mem_max", self.lookup(ident).name, mib)


class FakeHost:
    def dom0_info(self) -> dict[str, Any]:
        return {"name": "Domain-0", "domid": 0}

    def dom0_vcpus(self) -> list[dict[str, Any]]:
        return [{"number": 0}]

    def node_info(self) -> list[tuple[str, Any]]:
        return [("host", "fake")]

    def figures(self) -> HostFigures:
        return HostFigures(hostname="fake", version="7.2.0", mem_total_kib=8 << 20,
                           mem_free_kib=4 << 20, cpus=2, cpu_mhz=2000)

    def dom0_figures(self) -> DomainFigures:
        return DomainFigures(name="Domain-0", uuid="0" * 32, domid=0, state="r-----",
                             cpu_seconds=100.0, memory_kib=8 << 20, maxmem_kib=None,
                             vcpus=2)


class FakeConfig:
    def items(self) -> list[tuple[str, Any]]:
        return [("xend-port", 8000)]


class FakeRing:
    def __init__(self) -> None:
        self.lines = "(XEN) hello\n"

    def text(self) -> str:
        return self.lines

    def clear(self) -> None:
        self.lines = ""


def services(domains: FakeDomains | None = None,
             logfile: str = "/nonexistent/xend.log") -> Services[FakeDomain]:
    return Services(domains=domains or FakeDomains(), host=FakeHost(), config=FakeConfig(),
                    messages=FakeRing(), logfile=logfile,
                    relocation=RelocationDefaults(ssl=False, port=8002, ssl_port=8003),
                    security=DomainSecurity(AccessControl(tempfile.mkdtemp(prefix="d0sec-")),
                                            lambda: []))
