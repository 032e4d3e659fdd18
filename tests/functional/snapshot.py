"""A snapshot of everything one xend "host" owns, and the invariants the fault tests
check on it: nothing lost (every domain that should exist exists, whole) and nothing
leaked (no QEMU, tap, run directory, socket or store row that belongs to nothing).

Read from the outside only — /proc, `ip link` in the host's namespace, the file
tree, the SQLite database (read-only) and `xm list` — so that a defect inside xend
cannot hide itself from the check."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: directories of a host whose files are xend's (relative to the host's directory)
OWNED_DIRS = ("run", "state", "log", "domains")
#: Xen's host-side vif names: vif<domid>.<devid>
VIF_NAME = re.compile(r"^vif(\d+)\.(\d+)$")


class HostLike(Protocol):
    dir: Path

    def ns_run(self, *argv: str, check: bool = ..., timeout: float = ...,
               input: str | None = ...) -> Any: ...

    def xm(self, *args: str, check: bool = ..., timeout: float = ...,
           input: str | None = ...) -> Any: ...


@dataclass(frozen=True)
class Row:
    """One domain's runtime record in the store's `running` table."""

    instance: str
    domid: int
    name: str
    pid: int
    state: str
    vif_domid: int
    vifs: int


@dataclass(frozen=True)
class Listed:
    """One line of `xm list`."""

    name: str
    domid: int | None  # None: a halted managed domain
    state: str


@dataclass
class Snapshot:
    #: pid -> command line of every QEMU whose command line names this host's directory
    qemus: dict[int, str] = field(default_factory=dict)
    #: network link name -> kind ("tun", "bridge", "veth", "" for plain) in the namespace
    links: dict[str, str] = field(default_factory=dict)
    #: path relative to the host's directory -> st_mode, under OWNED_DIRS
    files: dict[str, int] = field(default_factory=dict)
    #: the store's `managed` table: uuid -> (name, state)
    managed: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the store's `running` table, by instance
    running: dict[str, Row] = field(default_factory=dict)
    #: `xm list`, by name (Domain-0 left out)
    listed: dict[str, Listed] = field(default_factory=dict)

    # ---- derived views ----------------------------------------------------------

    def taps(self) -> set[str]:
        return {n for n, kind in self.links.items() if kind == "tun"}

    def sockets(self) -> set[str]:
        return {p for p, mode in self.files.items() if stat.S_ISSOCK(mode)}

    def run_dirs(self) -> set[str]:
        """Instances that have a directory under run/dom."""
        return {p.split("/")[2] for p in self.files if p.startswith("run/dom/")
                and p.count("/") >= 2}

    def qemu_of(self, row: Row) -> int | None:
        """The pid of the QEMU running *row*'s instance: its command line names the
        instance's run directory (the record's pid may not be written yet)."""
        marker = f"/run/dom/{row.instance}/"
        for pid, cmd in self.qemus.items():
            if pid == row.pid or marker in cmd:
                return pid
        return None

    def owner_of(self, pid: int) -> Row | None:
        for row in self.running.values():
            if self.qemu_of(row) == pid:
                return row
        return None

    def row_named(self, name: str) -> Row | None:
        rows = [r for r in self.running.values() if r.name == name]
        return rows[0] if rows else None


def take(host: HostLike, xend_up: bool = True) -> Snapshot:
    """Everything *host* owns, now (`xm list` left empty while xend is down)."""
    snap = Snapshot(qemus=_qemus(host.dir), links=_links(host), files=_files(host.dir))
    snap.managed, snap.running = _store(host.dir / "state" / "xend.db")
    if xend_up:
        snap.listed = _listed(host)
    return snap


def _qemus(root: Path) -> dict[int, str]:
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if zombie or not argv or b"qemu-system" not in argv[0]:
            continue
        cmdline = b" ".join(argv).decode(errors="replace")
        if str(root) + "/" in cmdline:
            found[int(pid)] = cmdline
    return found


def _links(host: HostLike) -> dict[str, str]:
    out = host.ns_run("ip", "-d", "-j", "link", "show").stdout
    return {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
            for link in json.loads(out)}


def _files(root: Path) -> dict[str, int]:
    files = {}
    for top in OWNED_DIRS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                try:
                    files[str(path.relative_to(root))] = os.lstat(path).st_mode
                except OSError:
                    pass  # removed while we walked
    return files


def _store(db: Path) -> tuple[dict[str, tuple[str, str]], dict[str, Row]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        managed = {u: (n, s) for u, n, s in
                   conn.execute("SELECT uuid, name, state FROM managed").fetchall()}
        running = {}
        for instance, domid, record in conn.execute("SELECT instance, domid, record "
                                                    "FROM running").fetchall():
            rec = json.loads(record)
            cfg = rec.get("config", {})
            vif_domid = rec.get("vif_domid")
            running[instance] = Row(instance, domid, cfg.get("name", ""), rec.get("pid") or 0,
                                    rec.get("state", ""),
                                    domid if vif_domid is None else vif_domid,
                                    len(cfg.get("vif") or cfg.get("vifs") or []))
        return managed, running
    finally:
        conn.close()


def _listed(host: HostLike) -> dict[str, Listed]:
    """`xm list` parsed: Name ID Mem VCPUs State Time(s), ID and State empty when halted."""
    lines = host.xm("list").stdout.splitlines()[1:]
    listed = {}
    for line in lines:
        cols = line.split()
        if not cols or cols[0] == "Domain-0":
            continue
        if len(cols) == 6:
            listed[cols[0]] = Listed(cols[0], int(cols[1]), cols[4])
        else:
            listed[cols[0]] = Listed(cols[0], None, "")
    return listed


# ---- the invariants ------------------------------------------------------------------

def half_there(snap: Snapshot) -> list[str]:
    """Everything that is neither fully there nor fully gone.  A domain is fully there
    when it is listed, its record is in the store, its QEMU runs and its taps exist;
    fully gone when none of those is left.  (A crashed domain kept by
    on_crash=preserve has no QEMU left to run; it is listed as crashed, with its record.)"""
    problems = []
    listed_ids = {d.domid: d for d in snap.listed.values() if d.domid is not None}
    rows_by_id = {r.domid: r for r in snap.running.values()}
    expected_taps: set[str] = set()
    for row in snap.running.values():
        crashed = row.state == "crashed"
        shown = snap.listed.get(row.name)
        if shown is None or shown.domid != row.domid:
            problems.append(f"store row {row.instance} ({row.name}, id {row.domid}) is not "
                            f"listed by xm list (listed: {shown})")
        qemu = snap.qemu_of(row)
        if qemu is None and not crashed:
            problems.append(f"store row {row.instance} ({row.name}) has no QEMU (pid {row.pid})")
        elif qemu is not None and qemu != row.pid:  # written before the launch, never completed
            problems.append(f"store row {row.instance} ({row.name}) is incomplete: it names "
                            f"pid {row.pid}, its QEMU is {qemu}")
        if row.instance not in snap.run_dirs() and not crashed:
            problems.append(f"store row {row.instance} ({row.name}) has no run directory")
        if not crashed:
            taps = {f"vif{row.vif_domid}.{i}" for i in range(row.vifs)}
            expected_taps |= taps
            for tap in sorted(taps - snap.taps()):
                problems.append(f"domain {row.name} has lost its tap {tap}")
    for pid, cmd in snap.qemus.items():
        if snap.owner_of(pid) is None:
            problems.append(f"QEMU {pid} belongs to no domain: {cmd[:200]}")
    for tap in sorted(snap.taps()):
        m = VIF_NAME.match(tap)
        if tap not in expected_taps and not (m and int(m.group(1)) in rows_by_id):
            problems.append(f"tap {tap} belongs to no domain")
    for instance in sorted(snap.run_dirs() - set(snap.running)):
        problems.append(f"run directory run/dom/{instance} belongs to no domain")
    for sock in sorted(snap.sockets()):
        parts = sock.split("/")
        if len(parts) < 3 or parts[:2] != ["run", "dom"] or parts[2] not in snap.running:
            problems.append(f"socket {sock} belongs to no domain")
    managed_names = {n for n, _ in snap.managed.values()}
    for domid, shown in listed_ids.items():
        if domid not in rows_by_id:
            problems.append(f"xm list shows {shown.name} (id {domid}) with no store row")
    for name, shown in snap.listed.items():
        if shown.domid is None and name not in managed_names:
            problems.append(f"xm list shows halted {name} that the store does not manage")
    for uuid, (name, _) in snap.managed.items():
        if name not in snap.listed:
            problems.append(f"managed domain {name} ({uuid}) is not listed")
    return problems


def fully_there(snap: Snapshot, name: str) -> bool:
    row = snap.row_named(name)
    return (row is not None and name in snap.listed and snap.qemu_of(row) == row.pid
            and all(f"vif{row.vif_domid}.{i}" in snap.taps() for i in range(row.vifs)))


def fully_gone(snap: Snapshot, name: str) -> bool:
    return snap.row_named(name) is None and name not in snap.listed


def leaked(before: Snapshot, after: Snapshot) -> list[str]:
    """What *after* holds that *before* did not, logs aside (console and QEMU logs
    of past domains are kept on purpose, as Xen kept them)."""
    problems = [f"QEMU {pid} left running: {cmd[:200]}"
                for pid, cmd in after.qemus.items() if pid not in before.qemus]
    problems += [f"link {name} ({kind}) left behind" for name, kind in after.links.items()
                 if name not in before.links]
    problems += [f"file {path} ({oct(mode)}) left behind" for path, mode in after.files.items()
                 if path not in before.files and not path.startswith("log/")]
    problems += [f"store row {i} ({row.name}) left behind" for i, row in after.running.items()
                 if i not in before.running]
    problems += [f"managed row {u} ({n}) left behind" for u, (n, _) in after.managed.items()
                 if u not in before.managed]
    problems += [f"xm list still shows {n}" for n in after.listed if n not in before.listed]
    return problems


def lost(before: Snapshot, after: Snapshot) -> list[str]:
    """What *before* held that *after* lost: domains, their records and configs."""
    problems = [f"domain {n} was lost" for n in before.listed if n not in after.listed]
    problems += [f"managed row {u} ({n}) was lost" for u, (n, _) in before.managed.items()
                 if u not in after.managed]
    return problems
