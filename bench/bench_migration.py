#!/usr/bin/env python3
"""Live-migration benchmark of dom0: ``xm migrate --live`` between two xend
"hosts", against QEMU's own migration between two plain QEMU processes.

One run does everything (about 3 minutes on 2 cores, half of it the 90 s limit of
the capped memory-writing baseline)::

    python bench/bench_migration.py       # or: make bench

The two hosts are two network namespaces made for the run, joined by a veth pair
(10.99.0.1/24 in A, 10.99.0.2/24 in B); each runs a private xend with a
relocation server that allows only the other.  No traffic leaves the two
namespaces.  The guest has 512 MiB and is driven through its serial console.

1. Idle guest (booted to its prompt): ``xm migrate --live`` back and forth five times.
2. Memory-writing guest: 256 MiB of /dev/urandom in a tmpfs (the fill is timed),
   then a background loop that keeps rewriting 64 MiB of it with other parts of
   it, then ``xm migrate --live`` back and forth five times: xm's own prediction
   against what happened.  After each the guest must answer and its writer go on
   counting; if not, the guest's kernel error is reported and the series stops.
3. Baseline: the same guest in plain QEMU processes (same kernel, initrd, command
   line, memory and devices), the source in A, ``-incoming tcp:`` in B, driven over
   QMP (``migrate``, ``query-migrate`` until completed), in the same idle and
   memory-writing states, once with QEMU's default bandwidth cap and five times
   uncapped (back and forth); auto-converge off, and a 90 s limit after which a
   migration is cancelled and reported as not converging.

Figures: total time and downtime as xm prints them (dom0) or as ``query-migrate``
reports them (raw).  Throughput is RAM bytes transferred over QEMU's own time for
the stream (``total-time``; for dom0 xm prints it as "QEMU's stream"), which is
what the goal compares; end to end, dom0's figure over xm's total (with the
connection and the measuring before the stream) is shown too.  Goals are
reported as PASS or MISS; the script never fails because of a MISS.
Everything started (xends, domains, QEMU processes, the namespaces, temp files)
is torn down in ``finally``, also on Ctrl-C.  See bench/README.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_devices as devices  # noqa: E402  (puts tests/functional on sys.path)
from bench_core import (  # noqa: E402
    describe,
    interrupt_on_sigterm,
    kill_and_wait,
    pids_mentioning,
    print_epilogue,
    print_host,
    run,
)
from bench_devices import (  # noqa: E402
    NOTES,
    PROBLEMS,
    CommandFailed,
    check_prerequisites,
    guest_timed,
    log,
    open_console,
)
from guestconsole import GuestConsole  # noqa: E402

from dom0.cli.console import connect  # noqa: E402

REPO = HERE.parent
BIN = REPO / ".venv" / "bin"
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
QEMU = "qemu-system-x86_64"

MEM = 512  # MiB of the migrated guest
EXTRA = "quiet cryptomgr.notests"
FILL_MB = 256  # incompressible data in the guest's tmpfs
WRITE_MB = 64  # rewritten over and over by the background writer
IDLE_RUNS = 5
WRITING_RUNS = 5  # xm migrate of the memory-writing guest (and raw uncapped)
ADDR = {"A": "10.99.0.1", "B": "10.99.0.2"}
VETH = {"A": "mig0", "B": "mig1"}
RELOCATION_PORT = 8002
RAW_PORT = 4444
UNCAPPED = 1 << 40  # bytes/s: max-bandwidth for "uncapped"
RAW_TIMEOUT = 90.0  # s: a raw migration still active after this "did not converge"
XM_TIMEOUT = 300.0
BUDGET = 400.0  # s: past this no new measurement starts (the whole run stays < 8 min)
MB = 1_000_000

FILL_DIR = "/run/fill"
FILL = (f"mkdir -p {FILL_DIR} && mount -t tmpfs -o size={FILL_MB + 32}m tmpfs {FILL_DIR} && "
        f"dd if=/dev/urandom of={FILL_DIR}/a bs=1M count={FILL_MB}")
# rewrites the first WRITE_MB MiB of the data with the next windows of it in turn, so
# that the content changes on every pass; counts its passes in FILL_DIR/n
WINDOWS = FILL_MB // WRITE_MB - 1
WRITER = (f"(i=0; while true; do dd if={FILL_DIR}/a of={FILL_DIR}/a bs=1M count={WRITE_MB} "
          f"skip=$(({WRITE_MB} + i % {WINDOWS} * {WRITE_MB})) conv=notrunc 2>/dev/null; "
          f"i=$((i+1)); echo $i > {FILL_DIR}/n; done) >/dev/null 2>&1 &")

START = time.monotonic()

# xm migrate, with an observer on its client that keeps every status it got from xend
# (when, phase, RAM transferred: not printed); the output is xm's own
XM_SPY = r"""
import json, sys, time
from dom0.cli.main import main
from dom0.client import XendClient
call, t0, seen = XendClient.call, time.monotonic(), []
def observed(self, route, /, **args):
    result = call(self, route, **args)
    if route == "domain.migrate_status" and isinstance(result, dict):
        seen.append({"t": time.monotonic() - t0, "phase": result.get("phase"),
                     "transferred": result.get("transferred"), "done": result.get("done")})
        with open(sys.argv[1], "w") as f:
            json.dump(seen, f)
    return result
XendClient.call = observed
sys.exit(main(["migrate", *sys.argv[2:]]))
"""


def over_budget() -> bool:
    return time.monotonic() - START > BUDGET


# ---- the two dom0 hosts ------------------------------------------------------------


class Host(devices.Dom0):
    """A private xend in a network namespace of its own, with a relocation server
    that allows only the other host.  The namespace and its end of the veth pair
    are made by make_hosts() before xend starts (the server binds the address)."""

    def __init__(self, tmp: Path, name: str) -> None:
        tmp.mkdir()
        super().__init__(tmp)
        self.name = name
        self.netns = f"d0mig{name}{os.getpid()}"
        self.addr = ADDR[name]
        peer = ADDR["B" if name == "A" else "A"]
        config = "".join(ln + "\n" for ln in self.config.read_text().splitlines()
                         if not ln.startswith(("(network-script", "(vif-script")))
        # relocation peers authenticate (a shared key, 0600) and an incoming domain may
        # use only the guest image's directory, as the README's Security section sets up
        key = tmp / "relocation.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("dom0-bench-shared-relocation-key\n")
        self.config.write_text(
            config + "(xend-relocation-server yes)\n"
            f"(xend-relocation-port {RELOCATION_PORT})\n"
            f"(xend-relocation-address {self.addr})\n"
            f"(xend-relocation-hosts-allow '^{re.escape(peer)}$')\n"
            f"(xend-relocation-key-file {key})\n"
            f"(xend-relocation-storage-roots {GUEST})\n")

    def make_netns(self) -> None:
        proc = run(["ip", "netns", "add", self.netns])[1]
        if proc.returncode != 0:
            raise CommandFailed("cannot make the network namespace:\n" + describe(proc))
        self.netns_made = True  # devices.Dom0.cleanup deletes it (and the veth with it)
        self.ns("ip", "link", "set", "lo", "up")

    def start(self) -> None:
        proc = self.ns(str(BIN / "xend"), "start")
        self.started = True  # a failed start may still have left a daemon: always stop
        self._check(proc)

    def has(self, dom: str) -> bool:
        return self.xm("domid", dom).returncode == 0

    def qemu_append(self) -> str | None:
        """The -append of the QEMU this xend started (for the raw baseline)."""
        for pid in pids_mentioning(str(self.dir) + "/"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if "-append" in argv[:-1]:
                return argv[argv.index("-append") + 1]
        return None


def make_hosts(tmp: Path) -> dict[str, Host]:
    hosts = {n: Host(tmp / n, n) for n in "AB"}
    for h in hosts.values():
        h.make_netns()
    a, b = hosts["A"], hosts["B"]
    proc = run(["ip", "link", "add", VETH["A"], "netns", a.netns, "type", "veth", "peer",
                "name", VETH["B"], "netns", b.netns])[1]
    if proc.returncode != 0:
        raise CommandFailed("cannot make the veth pair:\n" + describe(proc))
    for h in hosts.values():
        for argv in (("ip", "addr", "add", f"{h.addr}/24", "dev", VETH[h.name]),
                     ("ip", "link", "set", VETH[h.name], "up")):
            proc = h.ns(*argv)
            if proc.returncode != 0:
                raise CommandFailed(describe(proc))
    return hosts


def other(name: str) -> str:
    return "B" if name == "A" else "A"


Result = dict[str, Any]


def xm_migrate(hosts: dict[str, Host], src: str, dom: str, tmp: Path) -> Result:
    """``xm migrate --live`` from host *src* to the other; its printed figures."""
    dst = other(src)
    status_file = tmp / "xm-status.json"
    status_file.unlink(missing_ok=True)
    argv = [str(BIN / "python"), "-c", XM_SPY, str(status_file), "--live", dom, ADDR[dst]]
    secs, proc = run(argv, env=hosts[src].env, timeout=XM_TIMEOUT)
    shown = subprocess.CompletedProcess(
        ["xm", "migrate", "--live", dom, ADDR[dst]], proc.returncode, proc.stdout, proc.stderr)
    out = proc.stdout
    done = re.search(rf"^Migrated {re.escape(dom)} to {re.escape(ADDR[dst])}: total "
                     r"([\d.]+) s, downtime (\S+) ms(?: \(QEMU's stream ([\d.]+) s, \d+ MiB\))?$",
                     out, re.M)
    if proc.returncode != 0 or not done:
        PROBLEMS.append(f"xm migrate {src}->{dst} failed:\n" + describe(shown))
        raise CommandFailed(describe(shown))
    r: Result = {"case": "", "dir": f"{src}->{dst}", "wall": secs, "output": out.strip(),
                 "total": float(done.group(1)), "completed": True,
                 "downtime": float(done.group(2)) if done.group(2) != "?" else None,
                 "stream": float(done.group(3)) if done.group(3) else None}
    m = re.search(r"^link (\d+) MB/s, QEMU (\d+) MB/s; guest dirties ([\d.]+) MB/s"
                  r"(?: \(working set (\d+) MiB\))?, (\d+)% of its RAM in use; downtime limit "
                  r"(\d+) ms; predicted: (.*)$", out, re.M)
    if m:
        r["link"], r["qemu_rate"], r["dirty"] = (float(m.group(i)) for i in (1, 2, 3))
        r["in_use"], r["limit"] = float(m.group(5)), float(m.group(6))
        p = re.match(r"([\d.]+) s in total, (\d+) ms downtime \((\d+) rounds\)", m.group(7))
        r["predicted"] = float(p.group(1)) if p else None
        r["prediction"] = m.group(7)
    else:
        PROBLEMS.append("xm migrate printed no prediction line:\n" + describe(shown))
    r["escalations"] = re.findall(r"^not converging: (.*)$", out, re.M)
    try:
        seen = json.loads(status_file.read_text())
        r["transferred"] = int(seen[-1]["transferred"]) or None
        # before QEMU's stream starts: connection, bandwidth probe, dirty-rate sampling
        r["prestream"] = next(s["t"] for s in seen if s["phase"] != "connecting"
                              and s["phase"] != "measuring")
    except (OSError, ValueError, KeyError, TypeError, IndexError, StopIteration):
        NOTES.append("dom0: no RAM-transferred figure from xend's migration status")
    if not hosts[dst].has(dom) or hosts[src].has(dom):
        PROBLEMS.append(f"after xm migrate {src}->{dst}: {dom} should exist on {dst} only; "
                        f"xm domid on {dst}: {hosts[dst].xm('domid', dom).returncode}, "
                        f"on {src}: {hosts[src].xm('domid', dom).returncode}")
    return r


# ---- the raw QEMU baseline ---------------------------------------------------------


class Qmp:
    """A blocking QMP session (events are skipped)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = connect(path, retry_for=timeout)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        self.file.readline()  # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, execute: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise CommandFailed(f"QMP {execute}: QEMU closed the monitor")
            reply = json.loads(line)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise CommandFailed(f"QMP {execute}: {reply['error']}")

    def close(self) -> None:
        self.sock.close()


class RawQemu:
    """One plain QEMU process of the guest, in a host's namespace."""

    count = 0

    def __init__(self, tmp: Path, host: Host, append: str, incoming: bool) -> None:
        RawQemu.count += 1
        self.host = host
        self.dir = tmp
        self.tag = f"q{RawQemu.count}"
        p = {k: str(tmp / f"{self.tag}.{k}") for k in ("con", "log", "qmp", "pid")}
        self.con_path = p["con"]
        argv = ["ip", "netns", "exec", host.netns, QEMU, "-name", f"guest=raw{self.tag}",
                "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64", "-m", f"{MEM}M",
                "-smp", "1,maxcpus=1", "-nodefaults", "-no-user-config", "-display", "none",
                "-vga", "none", "-kernel", str(GUEST / "vmlinuz"),
                "-initrd", str(GUEST / "initrd.img"), "-append", append,
                "-chardev", f"socket,id=console0,path={p['con']},server=on,wait=off,"
                f"logfile={p['log']}", "-serial", "chardev:console0",
                "-chardev", f"socket,id=qmp0,path={p['qmp']},server=on,wait=off",
                "-mon", "chardev=qmp0,mode=control", "-device", "pvpanic",
                "-device", "virtio-balloon-pci,id=balloon0",
                "-pidfile", p["pid"], "-daemonize"]
        if incoming:
            argv += ["-incoming", f"tcp:{host.addr}:{RAW_PORT}"]
        proc = run(argv)[1]
        if proc.returncode != 0:
            raise CommandFailed("raw QEMU did not start:\n" + describe(proc))
        self.pid: int | None = int(Path(p["pid"]).read_text().strip())
        self.qmp = Qmp(p["qmp"])

    def kill(self) -> None:
        try:
            self.qmp.close()
        except OSError:
            pass
        if self.pid:
            kill_and_wait(self.pid)
            self.pid = None


def raw_migrate(src: RawQemu, hosts: dict[str, Host], append: str, tmp: Path,
                capped: bool, timeout: float = RAW_TIMEOUT) -> tuple[Result, RawQemu]:
    """Migrate *src* to a new QEMU in the other namespace; return the figures and the
    QEMU that runs the guest afterwards (the new one, or *src* if it was cancelled)."""
    dst_host = hosts[other(src.host.name)]
    dst = RawQemu(tmp, dst_host, append, incoming=True)
    r: Result = {"case": "", "dir": f"{src.host.name}->{dst_host.name}"}
    try:
        src.qmp.cmd("migrate-set-capabilities",
                    capabilities=[{"capability": "auto-converge", "state": False}])
        if not capped:
            src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": UNCAPPED})
        params = src.qmp.cmd("query-migrate-parameters")
        r["max_bandwidth"] = params.get("max-bandwidth")
        r["downtime_limit"] = params.get("downtime-limit")
        t0 = time.perf_counter()
        src.qmp.cmd("migrate", uri=f"tcp:{dst_host.addr}:{RAW_PORT}")
        while True:
            info = src.qmp.cmd("query-migrate")
            status = info.get("status")
            if status == "completed":
                r["wall"] = time.perf_counter() - t0
                break
            if status in ("failed", "cancelled"):
                raise CommandFailed(f"raw migration {status}: {info}")
            if time.perf_counter() - t0 > timeout:
                src.qmp.cmd("migrate_cancel")
                for _ in range(200):
                    if src.qmp.cmd("query-migrate").get("status") != "cancelling":
                        break
                    time.sleep(0.05)
                ram = info.get("ram", {})
                r.update(completed=False, wall=time.perf_counter() - t0,
                         total=info.get("total-time", 0) / 1000, downtime=None,
                         transferred=ram.get("transferred"), dirty_pps=ram.get("dirty-pages-rate"),
                         remaining=ram.get("remaining"), passes=ram.get("dirty-sync-count"))
                dst.kill()
                if src.qmp.cmd("query-status").get("status") != "running":
                    src.qmp.cmd("cont")
                return r, src
            time.sleep(0.1)
        ram = info.get("ram", {})
        r.update(completed=True, total=info["total-time"] / 1000,
                 downtime=float(info["downtime"]), transferred=ram.get("transferred"),
                 passes=ram.get("dirty-sync-count"))
        deadline = time.monotonic() + 30
        while dst.qmp.cmd("query-status").get("status") != "running":
            if time.monotonic() > deadline:
                raise CommandFailed("raw: the destination QEMU does not run the guest after "
                                    "the migration completed")
            time.sleep(0.05)
    except BaseException:
        dst.kill()
        raise
    src.kill()
    return r, dst


# ---- the guest's memory-writing state ----------------------------------------------


def make_dirty(con: GuestConsole, who: str) -> tuple[float, float, float]:
    """Fill FILL_MB of tmpfs with random data, start the writer; (fill seconds by the
    guest's clock and by the host's, the writer's rewrite rate in MB/s over 4 s)."""
    t0 = time.perf_counter()
    fill = guest_timed(con, f"{who}: fill", FILL, timeout=400, expect="records out")
    wall = time.perf_counter() - t0
    size = con.run(f"wc -c < {FILL_DIR}/a").strip()
    if size != str(FILL_MB << 20):
        raise CommandFailed(f"{who}: the fill made {size!r} bytes, not {FILL_MB << 20}")
    con.run(WRITER)
    time.sleep(1)
    n0, t0 = writer_passes(con), time.perf_counter()
    time.sleep(4)
    n1, t1 = writer_passes(con), time.perf_counter()
    rate = (n1 - n0) * WRITE_MB * 1.048576 / (t1 - t0)
    log(f"{who}: {FILL_MB} MiB from /dev/urandom in {fill:.1f} s by the guest's clock "
        f"({wall:.1f} s for the whole console command by the host's); the writer "
        f"rewrites {rate:.0f} MB/s")
    return fill, wall, rate


def writer_passes(con: GuestConsole) -> int:
    out = con.run(f"cat {FILL_DIR}/n").strip()
    return int(out) if out.isdigit() else 0


CRASH = re.compile(r"^.*(BUG:|Oops|Kernel panic|general protection fault|"
                   r"kernel tried to execute).*$", re.M)


def crash_evidence(logs: list[Path]) -> str:
    """The first kernel error line in the guests' console logs, newest log first."""
    for path in sorted(logs, key=lambda p: p.stat().st_mtime, reverse=True):
        m = CRASH.search(path.read_text(errors="replace"))
        if m:
            return f"its console log {path.name} has: {m.group(0).strip()!r}"
    return "no kernel error in the console logs"


def still_writing(who: str, result: Result, con_path: str, logs: list[Path]) -> bool:
    """After a migration: the guest answers and its writer still counts.  If not, a
    note with the evidence; the caller stops its memory-writing runs."""
    try:
        con = GuestConsole(con_path, timeout=10)
        try:
            con.wait_prompt(30)
            n0 = writer_passes(con)
            time.sleep(2)
            n1 = writer_passes(con)
        finally:
            con.close()
        if n1 > n0:
            return True
        what = f"its writer no longer counts ({n0} -> {n1} passes)"
    except (OSError, TimeoutError, ConnectionError) as exc:
        what = f"it does not answer on its console ({exc})"
    NOTES.append(f"{who}: after the memory-writing migration {result['dir']} the guest is broken: "
                 f"{what}; {crash_evidence(logs)}; no further memory-writing runs")
    log(NOTES[-1])
    return False


# ---- the run -----------------------------------------------------------------------


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def plain_disk(path: Path, size: int) -> tuple[float, float]:
    """Seconds to write *size* random bytes to *path* (1 MiB writes, then fsync, as a
    save ends) and to read them back from a cold cache: the disk's own pace."""
    chunk = os.urandom(1 << 20)
    drop_caches()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    write = time.perf_counter() - t0
    drop_caches()
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
    read = time.perf_counter() - t0
    path.unlink()
    return write, read


def measure_save(host: Host, dom: str, tmp: Path, res: dict[str, Any]) -> None:
    """``xm save`` and ``xm restore`` of the memory-writing guest (page cache dropped
    before each), against writing and reading the same number of bytes on the same
    disk directly."""
    image = tmp / "mig.save"
    drop_caches()
    secs, proc = run([str(BIN / "xm"), "save", dom, str(image)], env=host.env, timeout=300)
    if proc.returncode != 0:
        PROBLEMS.append("xm save failed:\n" + describe(proc))
        raise CommandFailed(describe(proc))
    size = image.stat().st_size
    drop_caches()
    rsecs, proc = run([str(BIN / "xm"), "restore", str(image)], env=host.env, timeout=300)
    if proc.returncode != 0:
        PROBLEMS.append("xm restore failed:\n" + describe(proc))
        raise CommandFailed(describe(proc))
    write, read = plain_disk(tmp / "plain.bin", size)
    res["save"] = {"size": size, "save": secs, "restore": rsecs, "write": write, "read": read}
    log(f"dom0: xm save {size / 2**20:.0f} MiB in {secs:.2f} s, xm restore in {rsecs:.2f} s; "
        f"the disk itself: write+fsync {write:.2f} s, cold read {read:.2f} s")


def measure_dom0(hosts: dict[str, Host], tmp: Path, res: dict[str, Any]) -> None:
    a = hosts["A"]
    dom = "mig"
    log(f"dom0: creating {dom} ({MEM} MiB) on A")
    a.create(dom, memory=MEM, extra=EXTRA)
    con = open_console(a, dom)
    con.close()
    res["append"] = a.qemu_append()
    src = "A"
    # the memory-writing series starts on A, as raw QEMU's does (the direction
    # matters here: A->B streams are often slower, for dom0 and raw QEMU alike)
    for i in range(IDLE_RUNS + IDLE_RUNS % 2):
        if over_budget():
            NOTES.append(f"time budget reached: dom0 idle runs stopped after {i}")
            break
        r = xm_migrate(hosts, src, dom, tmp)
        r["case"] = "idle"
        res["dom0 idle"].append(r)
        log(f"dom0 idle {r['dir']}: total {r['total']:.2f} s, downtime {r['downtime']} ms, "
            f"{_mib(r.get('transferred'))} transferred ({r.get('prediction', '?')})")
        src = other(src)
    if over_budget():
        NOTES.append("time budget reached: dom0 memory-writing case skipped")
        return
    con = open_console(hosts[src], dom)
    try:
        res["dom0 fill"] = make_dirty(con, "dom0")
    finally:
        con.close()
    measure_save(hosts[src], dom, tmp, res)
    logs = [p for h in hosts.values() for p in (h.dir / "log" / "console").glob("*.log")]
    if not still_writing("dom0", {"dir": "save/restore"}, hosts[src].console_path(dom), logs):
        res["dom0 broken"] = "save/restore"
        return
    for i in range(WRITING_RUNS):
        if over_budget():
            NOTES.append(f"time budget reached: dom0 memory-writing runs stopped after {i}")
            break
        r = xm_migrate(hosts, src, dom, tmp)
        r["case"] = "writing"
        res["dom0 writing"].append(r)
        log(f"dom0 memory-writing {r['dir']}:\n    " + r["output"].replace("\n", "\n    "))
        src = other(src)
        logs = [p for h in hosts.values() for p in (h.dir / "log" / "console").glob("*.log")]
        if not still_writing("dom0", r, hosts[src].console_path(dom), logs):
            res["dom0 broken"] = r["dir"]
            break
    hosts[src].xm("destroy", dom)  # frees the CPU for the baseline


def measure_raw(hosts: dict[str, Host], tmp: Path, res: dict[str, Any],
                live: list[RawQemu]) -> None:
    append = res.get("append") or f"console=ttyS0 {EXTRA}"
    log(f"raw: booting the guest in plain QEMU in A (-append {append!r})")
    guest = RawQemu(tmp, hosts["A"], append, incoming=False)
    live.append(guest)
    con = GuestConsole(guest.con_path, timeout=30)
    try:
        con.wait_prompt(devices.BOOT_TIMEOUT)
    finally:
        con.close()
    res["raw default params"] = guest.qmp.cmd("query-migrate-parameters")

    def one(key: str, capped: bool) -> bool:
        """One migration; False if the memory-writing guest broke."""
        nonlocal guest
        if over_budget():
            NOTES.append(f"time budget reached: {key} skipped")
            return True
        timeout = min(RAW_TIMEOUT, max(20.0, BUDGET + 60 - (time.monotonic() - START)))
        r, guest = raw_migrate(guest, hosts, append, tmp, capped, timeout)
        live[:] = [guest]
        res[key].append(r)
        if r["completed"]:
            log(f"{key} {r['dir']}: total {r['total']:.2f} s, downtime {r['downtime']:.0f} ms, "
                f"{_mib(r['transferred'])} transferred, {r['passes']} passes")
        else:
            log(f"{key} {r['dir']}: did not converge within {timeout:.0f} s "
                f"({_mib(r['transferred'])} sent, {_mib(r['remaining'])} left, "
                f"{r['passes']} passes); cancelled")
        if "writing" in key and not still_writing("raw", r, guest.con_path,
                                                  list(tmp.glob("*.log"))):
            res["raw broken"] = r["dir"]
            return False
        return True

    # uncapped first: a QEMU's first migration costs it more (dirty logging starts
    # from cold), and dom0's idle series starts with one too
    for _ in range(IDLE_RUNS):
        one("raw idle uncapped", False)
    one("raw idle capped", True)
    if over_budget():
        NOTES.append("time budget reached: raw memory-writing cases skipped")
        return
    con = GuestConsole(guest.con_path, timeout=30)
    try:
        con.wait_prompt(30)
        res["raw fill"] = make_dirty(con, "raw")
    finally:
        con.close()
    # capped first: a cancelled run leaves the guest where it is, with its parameters
    if not one("raw writing capped", True):
        return
    for _ in range(WRITING_RUNS):
        if not one("raw writing uncapped", False):
            break


# ---- reporting ---------------------------------------------------------------------


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.0f} MiB"


def _med(rs: list[Result], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _thr(r: Result) -> float | None:
    """End to end: RAM bytes transferred / total time (for dom0 from xm migrate's
    start, so with the connection and the measurements before the stream)."""
    if r.get("transferred") and r.get("total"):
        return r["transferred"] / r["total"] / MB
    return None


def _sthr(r: Result) -> float | None:
    """The stream's: RAM bytes transferred / QEMU's total-time of the migration (for
    raw QEMU that is its total; for dom0 what xm reports as QEMU's stream)."""
    if r.get("transferred") and (r.get("stream") or r.get("total")):
        return r["transferred"] / (r.get("stream") or r["total"]) / MB
    return None


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def report(res: dict[str, Any]) -> None:
    rows = [("dom0 idle", "raw idle uncapped"), ("raw idle capped", "raw idle uncapped"),
            ("raw idle uncapped", None),
            ("dom0 writing", "raw writing uncapped"),
            ("raw writing capped", "raw writing uncapped"), ("raw writing uncapped", None)]
    print(f"\nLive migration of a {MEM} MiB guest between two network namespaces over a "
          "veth pair\n(total s and downtime ms: median over the runs; MB/s = RAM bytes "
          "transferred / total time, 10^6 B/s;\n ratios x/raw-uncapped of the same guest "
          "state, medians)")
    head = "%-22s %4s %-17s %8s %9s %8s %8s %8s %8s %8s %8s" % (
        "case", "runs", "result", "total s", "downtime", "MB/s", "strm MB/s", "total/r",
        "down/r", "MB/s /r", "strm /r")
    print(head)
    print("-" * len(head))
    for key, base in rows:
        rs = res.get(key, [])
        if not rs:
            print("%-22s %4s %-17s" % (key, 0, "not measured"))
            continue
        done = [r for r in rs if r.get("completed")]
        result = (f"completed {len(done)}/{len(rs)}" if len(done) == len(rs) or done
                  else "did not converge")
        total = _med(done, "total")
        down = _med(done, "downtime")
        thr = [t for t in (_thr(r) for r in rs) if t is not None]
        thr_med = statistics.median(thr) if thr else None
        b = res.get(base, []) if base else []
        bdone = [r for r in b if r.get("completed")]
        bthr = [t for t in (_thr(r) for r in b) if t is not None]
        sthr = [t for t in (_sthr(r) for r in rs) if t is not None]
        sthr_med = statistics.median(sthr) if sthr else None
        bsthr = [t for t in (_sthr(r) for r in b) if t is not None]
        print("%-22s %4d %-17s %8s %9s %8s %8s %8s %8s %8s %8s" % (
            key, len(rs), result, _fmt(total), _fmt(down, 0), _fmt(thr_med, 1),
            _fmt(sthr_med, 1),
            _ratio(total, _med(bdone, "total")) if base else "",
            _ratio(down, _med(bdone, "downtime")) if base else "",
            _ratio(thr_med, statistics.median(bthr) if bthr else None) if base else "",
            _ratio(sthr_med, statistics.median(bsthr) if bsthr else None) if base else ""))
    print("(a raw case that did not converge: MB/s is what it sent until it was "
          "cancelled / the time until then)")

    print("\nPer run")
    for key in ("dom0 idle", "raw idle capped", "raw idle uncapped", "dom0 writing",
                "raw writing capped", "raw writing uncapped"):
        for r in res.get(key, []):
            extra = ""
            if key.startswith("dom0"):
                extra = (f"; xm: link {_fmt(r.get('link'), 0)} MB/s (QEMU "
                         f"{_fmt(r.get('qemu_rate'), 0)}), in use {_fmt(r.get('in_use'), 0)}%, "
                         f"downtime limit {_fmt(r.get('limit'), 0)} ms, dirty "
                         f"{_fmt(r.get('dirty'), 1)} MB/s, predicted: {r.get('prediction', '?')}"
                         f"; escalations: {', '.join(r['escalations']) or 'none'}"
                         f"; xm saw the stream start after ~{_fmt(r.get('prestream'), 1)} s"
                         f"; xm wall {r['wall']:.2f} s")
            else:
                extra = (f"; max-bandwidth {r.get('max_bandwidth')}, downtime-limit "
                         f"{r.get('downtime_limit')} ms, {r.get('passes')} dirty syncs; "
                         f"wall {r['wall']:.2f} s")
            state = ("completed" if r.get("completed") else "did not converge (cancelled at "
                     f"{_fmt(r.get('total'))} s)")
            print(f"  {key:21s} {r['dir']}: {state}, total {_fmt(r.get('total'))} s, "
                  f"downtime {_fmt(r.get('downtime'), 0)} ms, {_mib(r.get('transferred'))}"
                  f" transferred{extra}")
    for who in ("dom0", "raw"):
        if f"{who} fill" in res:
            guest, wall, rate = res[f"{who} fill"]
            print(f"  {who}: filling {FILL_MB} MiB from /dev/urandom took {guest:.1f} s by "
                  f"the guest's clock, {wall:.1f} s for the console command by the host's; "
                  f"the writer then rewrote {rate:.0f} MB/s")
    params = res.get("raw default params")
    if params:
        print(f"  QEMU's defaults (query-migrate-parameters of a fresh QEMU): max-bandwidth "
              f"{params.get('max-bandwidth')} B/s, downtime-limit "
              f"{params.get('downtime-limit')} ms")
    report_save(res)
    goals(res)


def report_save(res: dict[str, Any]) -> None:
    r = res.get("save")
    if not r:
        print("\nSave and restore: not measured")
        return
    mb = r["size"] / MB
    print(f"\nSave and restore of the memory-writing guest ({r['size'] / 2**20:.0f} MiB save "
          "file, page cache dropped before each; MB/s = file bytes / wall time of xm)")
    print(f"  xm save     {r['save']:6.2f} s  {mb / r['save']:7.1f} MB/s   the disk: write+fsync "
          f"{r['write']:.2f} s, {mb / r['write']:.1f} MB/s   ratio {r['write'] / r['save']:.2f}")
    print(f"  xm restore  {r['restore']:6.2f} s  {mb / r['restore']:7.1f} MB/s   the disk: cold "
          f"read {r['read']:.2f} s, {mb / r['read']:.1f} MB/s   "
          f"ratio {r['read'] / r['restore']:.2f}")
    print("  (restore reads the file twice: xend checks its SHA-256 before QEMU reads it, "
          "the second time from the page cache)")


def goals(res: dict[str, Any]) -> None:
    print("\nGoals")

    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "MISS")

    idle = [r for r in res.get("dom0 idle", []) if r.get("completed")]
    down = _med(idle, "downtime")
    print(f"  {verdict(None if down is None else down <= 20)}  idle guest downtime <= 20 ms: "
          f"{_fmt(down, 0)} ms (median of {len(idle)}; raw uncapped "
          f"{_fmt(_med(res.get('raw idle uncapped', []), 'downtime'), 0)} ms)")
    for state in ("idle", "writing"):
        def med(f: Any, key: str) -> float | None:
            vals = [t for t in (f(r) for r in res.get(key, [])) if t is not None]
            return statistics.median(vals) if vals else None
        dm, bm = med(_sthr, f"dom0 {state}"), med(_sthr, f"raw {state} uncapped")
        em = med(_thr, f"dom0 {state}")
        ok = None if dm is None or bm is None else dm >= 0.8 * bm
        print(f"  {verdict(ok)}  dom0 stream throughput >= 0.8 x raw uncapped, {state} guest: "
              f"{_fmt(dm, 1)} vs {_fmt(bm, 1)} MB/s (ratio {_ratio(dm, bm)}); end to end, "
              f"with xm's connection and measurements before the stream: {_fmt(em, 1)} MB/s "
              f"(ratio {_ratio(em, bm)})")
    w = res.get("dom0 writing", [])
    if not w:
        print("  n/a   memory-writing guest completes, predicted time within 20 %: "
              "not measured")
        return
    errs, parts = [], []
    for r in w:
        pred = r.get("predicted")
        if pred:
            errs.append(abs(r["total"] - pred) / pred)
            parts.append(f"{r['dir']} predicted {pred:.1f} s, actual {r['total']:.2f} s "
                         f"({errs[-1] * 100:.0f} %)")
        else:
            parts.append(f"{r['dir']} {r.get('prediction', 'no prediction')}, actual "
                         f"{r['total']:.2f} s")
        parts[-1] += (f", escalation: {', '.join(r['escalations'])}" if r["escalations"]
                      else ", no escalation")
    broken = res.get("dom0 broken")
    if broken:
        parts.append(f"the guest was broken after the migration {broken} (see Notes)"
                     + (f"; so was raw QEMU's after {res['raw broken']}"
                        if res.get("raw broken") else ""))
    complete = all(r["completed"] for r in w) and not broken
    good = complete and len(errs) == len(w) and statistics.median(errs) <= 0.2
    print(f"  {verdict(good)}  memory-writing guest completes ({len(w)} of {WRITING_RUNS} runs "
          f"done), predicted time within 20 % (median |actual-predicted|/predicted "
          f"{_fmt(statistics.median(errs) * 100 if errs else None, 0)} %):\n"
          + "".join(f"          {p}\n" for p in parts), end="")


def environment() -> None:
    print_host("dom0 migration benchmark")
    print(f"guest: {GUEST}, {MEM} MiB, 1 vCPU, extra {EXTRA!r}; {IDLE_RUNS} idle runs; "
          f"memory-writing: {FILL_MB} MiB random data, {WRITE_MB} MiB rewritten in a loop")


def main() -> int:
    missing = check_prerequisites()
    if missing:
        print("cannot run the benchmark: " + "; ".join(missing), file=sys.stderr)
        return 1

    interrupt_on_sigterm()
    environment()
    tmp = Path(tempfile.mkdtemp(prefix="d0m-", dir="/tmp"))  # short: unix socket paths
    hosts: dict[str, Host] = {}
    raws: list[RawQemu] = []
    res: dict[str, Any] = {k: [] for k in (
        "dom0 idle", "dom0 writing", "raw idle capped", "raw idle uncapped",
        "raw writing capped", "raw writing uncapped")}
    interrupted = False
    try:
        log("making namespaces A and B, the veth pair, and starting the two xends")
        hosts.update(make_hosts(tmp))
        for h in hosts.values():
            h.start()
        for step, fn in (("dom0", lambda: measure_dom0(hosts, tmp, res)),
                         ("raw QEMU", lambda: measure_raw(hosts, tmp / "raw", res, raws))):
            if step == "raw QEMU":
                (tmp / "raw").mkdir()
            try:
                fn()
            except (CommandFailed, TimeoutError, ConnectionError, OSError) as exc:
                log(f"{step} stopped: {exc}")
                NOTES.append(f"{step} stopped: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    except CommandFailed as exc:
        log(f"stopped: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("cleaning up")
        for q in raws:
            q.kill()
        for h in hosts.values():
            try:
                h.cleanup()
            except Exception as exc:  # the rest must still go
                log(f"cleanup of host {h.name} failed: {exc!r}")
                run(["ip", "netns", "del", h.netns], timeout=60)
        for pid in pids_mentioning(str(tmp) + "/"):  # the last resort
            log(f"killing leftover process {pid}")
            kill_and_wait(pid)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupted:
        return 130

    report(res)
    return print_epilogue(NOTES, PROBLEMS, START)


if __name__ == "__main__":
    sys.exit(main())
