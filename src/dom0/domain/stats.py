"""Measuring the figures of ``xm top`` and the metrics exporter for every domain that
has a machine (``model/figures.py`` holds their shape).

CPU time is the vCPU threads' (utime+stime in ``/proc/<pid>/task/<tid>/stat``): the
guest's own work, not QEMU's I/O threads.  Memory is the balloon's actual value.
Network counters come from the taps (one read of ``/proc/net/dev``, which is this
process's network namespace, for all of them), disk counters from QEMU's block
statistics.  The QMP questions go to all machines at once, each with a timeout, so
one stuck QEMU costs one timeout, not one per domain, and shows its
configured figures instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from dom0.backends.machine import BlockStats
from dom0.devices import vbd as vbd_mod
from dom0.domain.domain import Domain
from dom0.domain.network import VifController
from dom0.errors import BackendError, XendError
from dom0.model.figures import DomainFigures, NetFigures, VbdFigures
from dom0.model.state import PowerState, state_string

log = logging.getLogger(__name__)

#: seconds one machine may take to answer the QMP questions of one snapshot
QMP_TIMEOUT = 2.0


def read_net_dev(path: str = "/proc/net/dev") -> dict[str, tuple[int, ...]]:
    """Interface -> its 16 counters (rx bytes packets errs drop fifo frame
    compressed multicast, tx bytes packets errs drop fifo colls carrier compressed)."""
    out: dict[str, tuple[int, ...]] = {}
    try:
        with open(path) as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        try:
            out[name.strip()] = tuple(int(x) for x in rest.split())
        except ValueError:
            continue
    return out


def net_figures(devid: int, vifname: str, counters: tuple[int, ...] | None) -> NetFigures:
    """A tap's host-side counters turned round: what the tap received the guest sent."""
    if not counters or len(counters) < 12:
        return NetFigures(devid=devid, vifname=vifname)
    rx, tx = counters[0:4], counters[8:12]
    return NetFigures(devid=devid, vifname=vifname,
                      tx_bytes=rx[0], tx_packets=rx[1], tx_errors=rx[2], tx_drops=rx[3],
                      rx_bytes=tx[0], rx_packets=tx[1], rx_errors=tx[2], rx_drops=tx[3])


class StatsCollector:
    def __init__(self, vifs: VifController, timeout: float = QMP_TIMEOUT) -> None:
        self.vifs = vifs
        self.timeout = timeout

    async def collect(self, domains: Iterable[Domain]) -> list[DomainFigures]:
        doms = [d for d in domains if d.active and d.running is not None]
        counters = read_net_dev()
        return list(await asyncio.gather(*(self.one(d, counters) for d in doms)))

    async def one(self, dom: Domain, counters: dict[str, tuple[int, ...]]) -> DomainFigures:
        assert dom.running is not None
        run = dom.running
        machine = run.machine
        cfg = dom.config
        balloon, blocks = await self._ask(dom)
        vcpus = machine.vcpu_figures()
        blocked = dom.state == PowerState.RUNNING and machine.blocked()
        try:
            vifs = self.vifs.current(dom)
        except XendError:  # a vif its config no longer resolves: counted, not measured
            vifs = []
        nets = tuple(net_figures(v.devid, v.vifname, counters.get(v.vifname)) for v in vifs)
        return DomainFigures(
            name=dom.name, uuid=dom.uuid, domid=run.domid,
            state=state_string(dom.state, blocked),
            cpu_seconds=sum(v[0] for v in vcpus),
            memory_kib=(balloon // 1024) if balloon else cfg.memory * 1024,
            maxmem_kib=cfg.max_memory * 1024,
            vcpus=cfg.vcpus,
            vcpu_seconds=tuple(v[0] for v in vcpus),
            nets=nets,
            vbds=self._vbds(dom, blocks),
        )

    async def _ask(self, dom: Domain) -> tuple[int | None, list[BlockStats] | None]:
        """The balloon and the block counters, or None for what QEMU did not answer."""
        assert dom.running is not None
        machine = dom.running.machine
        try:
            answers = await asyncio.wait_for(asyncio.gather(
                machine.balloon_bytes(self.timeout), machine.block_stats(self.timeout),
                return_exceptions=True), self.timeout)
        except TimeoutError:
            log.debug("figures of %s: QEMU did not answer in time", dom.name)
            return None, None
        for answer in answers:  # a guest without a balloon still has its disk counters
            if isinstance(answer, BaseException):
                if not isinstance(answer, BackendError):
                    raise answer
                log.debug("figures of %s: %s", dom.name, answer)
        balloon, blocks = answers
        return (None if isinstance(balloon, BaseException) else balloon,
                None if isinstance(blocks, BaseException) else blocks)

    @staticmethod
    def _vbds(dom: Domain, blocks: list[BlockStats] | None) -> tuple[VbdFigures, ...]:
        by_id = {b.device_id: b for b in blocks or ()}
        out = []
        for spec in dom.config.disks:
            try:
                vbd = vbd_mod.parse(spec, check_exists=False)
            except XendError:
                continue
            b = by_id.get(vbd.device_id)
            out.append(VbdFigures(dev=vbd.dev, devid=vbd.devid) if b is None else VbdFigures(
                dev=vbd.dev, devid=vbd.devid, oo=b.failed_ops, rd_ops=b.rd_ops,
                wr_ops=b.wr_ops, rd_bytes=b.rd_bytes, wr_bytes=b.wr_bytes))
        return tuple(out)
