"""xend's Prometheus exporter: the figures of ``xm top`` (model/figures.py) in the
Prometheus text format on ``GET /metrics``, so an existing Prometheus can watch a
dom0 host without an agent.

Off by default (``(xend-metrics-server yes)`` starts it), on localhost:9101 by default
(``xend-metrics-address``, ``xend-metrics-port``), and it answers only peers that
``xend-metrics-hosts-allow`` admits (by default the local host only, whatever the
address it listens on): the figures name every domain, which is not for everyone.

It runs on xend's own asyncio loop (aiohttp, like the API); each scrape measures
afresh (one snapshot: QMP questions to all machines at once), so there is no
sampling thread and a scrape never reports stale counters.  prometheus_client
renders the text format."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator

from aiohttp import web
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from dom0.api.services import DomainService, HostInfo, snapshot
from dom0.model.figures import Snapshot

log = logging.getLogger(__name__)

DOMAIN_LABELS = ["name", "uuid", "domid"]


def families(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (Domain-0 is the host: its own metrics)."""
    h = snap.host
    yield GaugeMetricFamily("dom0_host_memory_total_bytes", "Host memory",
                            value=h.mem_total_kib * 1024)
    yield GaugeMetricFamily("dom0_host_memory_free_bytes",
                            "Host memory free for guests", value=h.mem_free_kib * 1024)
    yield GaugeMetricFamily("dom0_host_cpus", "Host CPUs", value=h.cpus)
    guests = [d for d in snap.domains if d.domid != 0]
    yield GaugeMetricFamily("dom0_domains", "Guest domains with a machine", value=len(guests))

    cpu = CounterMetricFamily("dom0_domain_cpu_seconds", "CPU time of the domain's vCPU "
                              "threads", labels=DOMAIN_LABELS)
    mem = GaugeMetricFamily("dom0_domain_memory_bytes", "Current guest memory (balloon)",
                            labels=DOMAIN_LABELS)
    maxmem = GaugeMetricFamily("dom0_domain_memory_max_bytes", "Memory the guest may grow to",
                               labels=DOMAIN_LABELS)
    vcpus = GaugeMetricFamily("dom0_domain_vcpus", "vCPUs", labels=DOMAIN_LABELS)
    state = GaugeMetricFamily("dom0_domain_state", "1 for the domain's state",
                              labels=[*DOMAIN_LABELS, "state"])
    net = {key: CounterMetricFamily(f"dom0_domain_network_{key}", f"Network {key}, as the "
                                    "guest sees it", labels=[*DOMAIN_LABELS, "vif"])
           for key in ("transmit_bytes", "receive_bytes", "transmit_packets",
                       "receive_packets")}
    blk = {key: CounterMetricFamily(f"dom0_domain_block_{key}", f"Block device {key}",
                                    labels=[*DOMAIN_LABELS, "device"])
           for key in ("read_operations", "write_operations", "read_bytes", "write_bytes")}
    for d in guests:
        ids = [d.name, d.uuid, str(d.domid)]
        cpu.add_metric(ids, d.cpu_seconds)
        mem.add_metric(ids, d.memory_kib * 1024)
        if d.maxmem_kib is not None:
            maxmem.add_metric(ids, d.maxmem_kib * 1024)
        vcpus.add_metric(ids, d.vcpus)
        for letter, name in (("r", "running"), ("b", "blocked"), ("p", "paused"),
                             ("s", "shutdown"), ("c", "crashed"), ("d", "dying")):
            state.add_metric([*ids, name], 1.0 if letter in d.state else 0.0)
        for n in d.nets:
            vif = [*ids, n.vifname]
            net["transmit_bytes"].add_metric(vif, n.tx_bytes)
            net["receive_bytes"].add_metric(vif, n.rx_bytes)
            net["transmit_packets"].add_metric(vif, n.tx_packets)
            net["receive_packets"].add_metric(vif, n.rx_packets)
        for v in d.vbds:
            dev = [*ids, v.dev]
            blk["read_operations"].add_metric(dev, v.rd_ops)
            blk["write_operations"].add_metric(dev, v.wr_ops)
            blk["read_bytes"].add_metric(dev, v.rd_bytes)
            blk["write_bytes"].add_metric(dev, v.wr_bytes)
    yield from (cpu, mem, maxmem, vcpus, state, *net.values(), *blk.values())


class _Once:
    """A collector of one snapshot, for one rendering."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        return families(self.snap)


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(snap))  # type: ignore[arg-type]
    return generate_latest(registry)


def peer_allowed(patterns: str, peer: str | None) -> bool:
    """xend-metrics-hosts-allow: space-separated regexes against the peer's address
    (a loopback peer also answers to ``localhost``)."""
    if not peer:
        return False
    names = [peer]
    try:
        if ipaddress.ip_address(peer.split("%")[0]).is_loopback:
            names.append("localhost")
    except ValueError:
        pass
    return any(re.match(p, n) for p in patterns.split() for n in names)


class MetricsServer:
    def __init__(self, host: HostInfo, domains: DomainService, address: str, port: int,
                 hosts_allow: str) -> None:
        self.host = host
        self.domains = domains
        self.address = address
        self.port = port
        self.hosts_allow = hosts_allow
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        if not peer_allowed(self.hosts_allow, request.remote):
            log.warning("metrics scrape from %s refused (xend-metrics-hosts-allow)",
                        request.remote)
            return web.Response(status=403, text="Forbidden\n")
        body = render(await snapshot(self.host, self.domains))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address or None, self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
            self.runner = None
