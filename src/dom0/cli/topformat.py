"""xentop's text: the three header lines, the column table and the optional
per-vCPU, per-vif and per-disk lines, from two snapshots of ``model/figures``.
Used by ``xm top -b`` (printed) and by the full-screen view (cli/top_screen.py),
so both show the same figures in the same words.  Standard library only.

The formats are xentop's (spec §1.3): each column right-aligned to its width, one
space between columns; the STATE column is xentop's own order of the six flags
(dying, shutdown, blocked, crashed, paused, running), not ``xm list``'s."""

from __future__ import annotations

import time

from dom0.model.figures import DomainFigures, Snapshot, cpu_percent

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Cell = Callable[["Row"], str]


class Row:
    """One domain with what its row needs beyond its own figures."""

    __slots__ = ("dom", "cpu_pct", "mem_total_kib", "full_name")

    def __init__(self, dom: DomainFigures, cpu_pct: float, mem_total_kib: int,
                 full_name: bool = False) -> None:
        self.dom = dom
        self.cpu_pct = cpu_pct
        self.mem_total_kib = mem_total_kib
        self.full_name = full_name

    @property
    def mem_pct(self) -> float:
        return self.dom.memory_kib / self.mem_total_kib * 100 if self.mem_total_kib else 0.0

    @property
    def maxmem_pct(self) -> float | None:
        if self.dom.maxmem_kib is None or not self.mem_total_kib:
            return None
        return self.dom.maxmem_kib / self.mem_total_kib * 100


def xentop_state(state: str) -> str:
    """``xm list``'s flags (r b p s c d) in xentop's order: d s b c p r."""
    return "".join(c if c in state else "-" for c in "dsbcpr")


def _name(r: Row) -> str:
    return "%10s" % (r.dom.name if r.full_name else r.dom.name[:10])


#: (header, width, cell, sort key): xentop's columns, in its order
COLUMNS: list[tuple[str, int, Cell, Callable[[Row], Any]]] = [
    ("NAME", 10, _name, lambda r: r.dom.name),
    ("STATE", 6, lambda r: "%6s" % xentop_state(r.dom.state), lambda r: xentop_state(r.dom.state)),
    ("CPU(sec)", 10, lambda r: "%10d" % int(r.dom.cpu_seconds), lambda r: r.dom.cpu_seconds),
    ("CPU(%)", 6, lambda r: "%6.1f" % r.cpu_pct, lambda r: r.cpu_pct),
    ("MEM(k)", 10, lambda r: "%10d" % r.dom.memory_kib, lambda r: r.dom.memory_kib),
    ("MEM(%)", 6, lambda r: "%6.1f" % r.mem_pct, lambda r: r.mem_pct),
    ("MAXMEM(k)", 10,
     lambda r: "%10s" % ("no limit" if r.dom.maxmem_kib is None else r.dom.maxmem_kib),
     lambda r: r.dom.maxmem_kib if r.dom.maxmem_kib is not None else 1 << 62),
    ("MAXMEM(%)", 9,
     lambda r: "%9s" % "n/a" if r.maxmem_pct is None else "%9.1f" % r.maxmem_pct,
     lambda r: r.maxmem_pct if r.maxmem_pct is not None else 1e9),
    ("VCPUS", 5, lambda r: "%5d" % r.dom.vcpus, lambda r: r.dom.vcpus),
    ("NETS", 4, lambda r: "%4d" % len(r.dom.nets), lambda r: len(r.dom.nets)),
    ("NETTX(k)", 8, lambda r: "%8d" % (r.dom.net_tx_bytes // 1024),
     lambda r: r.dom.net_tx_bytes),
    ("NETRX(k)", 8, lambda r: "%8d" % (r.dom.net_rx_bytes // 1024),
     lambda r: r.dom.net_rx_bytes),
    ("VBDS", 4, lambda r: "%4d" % len(r.dom.vbds), lambda r: len(r.dom.vbds)),
    ("VBD_OO", 8, lambda r: "%8d" % r.dom.vbd_oo, lambda r: r.dom.vbd_oo),
    ("VBD_RD", 8, lambda r: "%8d" % r.dom.vbd_rd, lambda r: r.dom.vbd_rd),
    ("VBD_WR", 8, lambda r: "%8d" % r.dom.vbd_wr, lambda r: r.dom.vbd_wr),
    ("SSID", 4, lambda r: "%4d" % r.dom.ssid, lambda r: r.dom.ssid),
]
HEADERS = [c[0] for c in COLUMNS]


def summary(snap: Snapshot) -> list[str]:
    """The three lines above the table."""
    h = snap.host
    n = snap.state_counts()
    used = h.mem_total_kib - h.mem_free_kib
    return [
        f"xentop - {time.strftime('%H:%M:%S', time.localtime(snap.wall))}   Xen {h.version}",
        f"{len(snap.domains)} domains: {n['running']} running, {n['blocked']} blocked, "
        f"{n['paused']} paused, {n['crashed']} crashed, {n['dying']} dying, "
        f"{n['shutdown']} shutdown",
        f"Mem: {h.mem_total_kib}k total, {used}k used, {h.mem_free_kib}k free    "
        f"CPUs: {h.cpus} @ {h.cpu_mhz}MHz",
    ]


def column_header() -> str:
    return " ".join("%*s" % (width, name) for name, width, _, _ in COLUMNS)


def rows(snap: Snapshot, prev: Snapshot | None, sort: int = 0, reverse: bool = False,
         full_name: bool = False) -> list[Row]:
    """The domains as rows, sorted by column number *sort* (xentop's default: NAME)."""
    out = [Row(d, cpu_percent(prev, snap, d), snap.host.mem_total_kib, full_name)
           for d in snap.domains]
    return sorted(out, key=COLUMNS[sort][3], reverse=reverse)


def cells(row: Row) -> list[str]:
    return [cell(row) for _, _, cell, _ in COLUMNS]


def line(row: Row) -> str:
    return " ".join(cells(row))


def vcpu_lines(dom: DomainFigures) -> list[str]:
    """``-v``: each vCPU's CPU seconds, five to a line."""
    text = "VCPUs(sec): "
    for i, secs in enumerate(dom.vcpu_seconds):
        if i and i % 5 == 0:
            text += "\n            "
        text += " %2d: %10ds" % (i, int(secs))
    return text.split("\n")


def net_lines(dom: DomainFigures) -> list[str]:
    """``-n``: each vif's counters, as the guest sees them."""
    return ["Net%d RX: %8dbytes %8dpkts %8derr %8ddrop  TX: %8dbytes %8dpkts %8derr %8ddrop"
            % (n.devid, n.rx_bytes, n.rx_packets, n.rx_errors, n.rx_drops,
               n.tx_bytes, n.tx_packets, n.tx_errors, n.tx_drops) for n in dom.nets]


def vbd_lines(dom: DomainFigures) -> list[str]:
    """``-x``: each disk's counters (sectors are 512 bytes)."""
    return ["VBD BlkBack %5d [%2x:%2x]  OO: %8d   RD: %8d   WR: %8d  RSECT: %10d  WSECT: %10d"
            % (v.devid, v.devid >> 8, v.devid & 0xFF, v.oo, v.rd_ops, v.wr_ops,
               v.rd_bytes // 512, v.wr_bytes // 512) for v in dom.vbds]


def frame(snap: Snapshot, prev: Snapshot | None, sort: int = 0, reverse: bool = False,
          vcpus: bool = False, networks: bool = False, vbds: bool = False,
          repeat_header: bool = False, full_name: bool = False) -> list[str]:
    """One iteration of ``xm top -b``: the summary, the column header, the rows."""
    out = summary(snap)
    for i, row in enumerate(rows(snap, prev, sort, reverse, full_name)):
        if i == 0 or repeat_header:
            out.append(column_header())
        out.append(line(row))
        if vcpus:
            out += vcpu_lines(row.dom)
        if networks:
            out += net_lines(row.dom)
        if vbds:
            out += vbd_lines(row.dom)
    return out
