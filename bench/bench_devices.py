#!/usr/bin/env python3
"""Device benchmark of dom0: what a guest gets from its virtual disks and its
virtual network, against the same work done directly on the host.

One run does everything (about 1-2 minutes on 2 cores)::

    python bench/bench_devices.py         # or: make bench

1. Sequential disk throughput inside one guest, on a ``file:`` disk (xvdb) and on
   a ``tap:aio:`` disk (xvdc), each a 256 MiB sparse raw image: busybox ``dd``
   writes 128 MiB (bs=1M, conv=fsync) to the raw device, the guest's page cache is
   dropped, and ``dd`` reads it back; timed inside the guest with /proc/uptime.
   Baseline: GNU ``dd`` doing the same on a file in the same directory on the host
   (conv=fsync, then the file's page cache dropped with POSIX_FADV_DONTNEED).
2. Guest-to-guest TCP throughput over the bridge: ``dd | nc`` of 32 MiB from one
   guest to ``nc -l`` in another, timed inside the sender.  Baseline: the same
   32 MiB over the host's loopback with Python sockets.

Figures are MB/s (10^6 bytes per second), "median / best" over a few runs, and
the ratio guest/host of the medians.  The guests run under TCG, so they are far
below the host: that is expected and reported as it is.

The guests' network lives in a network namespace made for the run (xend runs in
it; its bridge xenbr0 gets 10.50.0.1/24); no traffic leaves that namespace or the
host's loopback.  Everything started (xend, QEMU, the namespace, the images) is
torn down in ``finally``, also on Ctrl-C.  See bench/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "functional"))

from bench_core import (  # noqa: E402
    NOTES,
    PROBLEMS,
    START,
    CommandFailed,
    describe,
    interrupt_on_sigterm,
    kill_and_wait,
    log,
    pids_mentioning,
    print_epilogue,
    print_host,
    private_xend_config,
    run,
)
from guestconsole import GuestConsole  # noqa: E402

REPO = HERE.parent
BIN = REPO / ".venv" / "bin"
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
QEMU = "qemu-system-x86_64"

MEM = 128  # MiB per guest: this guest kernel does not boot in less than ~96
IMG_MB = 256  # size of each sparse disk image
DISK_MB = 128  # written then read back
NET_MB = 32  # sent guest to guest
REPS = 5  # timed runs per measure, after one untimed warm-up
BOOT_TIMEOUT = 120.0
DD_TIMEOUT = 240.0  # one guest dd of DISK_MB under TCG
BUDGET = 400.0  # seconds: stop measuring (and clean up) past this, to stay under 8 min
BRIDGE = "xenbr0"
HOST_ADDR = "10.50.0.1/24"
ADDRS = {"d1": "10.50.0.11", "d2": "10.50.0.12"}  # d1: disks + sender; d2: receiver
PORT = 5001
MB = 1_000_000



def over_budget() -> bool:
    return time.monotonic() - START > BUDGET


# ---- dom0: a private xend in a network namespace of its own ------------------------


class Dom0:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.netns = f"d0dev{os.getpid()}"
        self.netns_made = False
        self.config = tmp / "xend.sxp"
        self.config.write_text(private_xend_config(
            tmp,
            f"(xend-scripts-path {REPO}/scripts/xen)\n"
            f"(network-script 'network-bridge bridge={BRIDGE}')\n"
            "(vif-script vif-bridge)\n"))
        self.env = dict(os.environ, XEND_CONFIG=str(self.config),
                        XM_SERVER=str(tmp / "xend.sock"))
        self.live: set[str] = set()
        self.started = False

    def _check(self, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            PROBLEMS.append(describe(proc))
            raise CommandFailed(describe(proc))

    def ns(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns, *argv], env=self.env, timeout=timeout)[1]

    def start(self) -> None:
        proc = run(["ip", "netns", "add", self.netns])[1]
        if proc.returncode != 0:
            raise CommandFailed("cannot make the network namespace:\n" + describe(proc))
        self.netns_made = True
        self.ns("ip", "link", "set", "lo", "up")
        proc = self.ns(str(BIN / "xend"), "start")
        self.started = True  # a failed start may still have left a daemon: always stop
        self._check(proc)
        self._check(self.ns("ip", "addr", "add", HOST_ADDR, "dev", BRIDGE))

    def xm(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "xm"), *args], env=self.env, timeout=timeout)[1]

    def create(self, name: str, **values: Any) -> None:
        values = {"kernel": str(GUEST / "vmlinuz"), "ramdisk": str(GUEST / "initrd.img"),
                  "memory": MEM, "name": name, "extra": "quiet cryptomgr.notests", **values}
        cfg = self.dir / f"{name}.cfg"
        cfg.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        proc = self.xm("create", str(cfg))
        self.live.add(name)  # xend may have made it even if xm failed
        self._check(proc)
        if f"Started domain {name}" not in proc.stdout:
            PROBLEMS.append("unexpected output of xm create:\n" + describe(proc))

    def console_path(self, name: str) -> str:
        """The console socket: (location ...) in (device (console ...)) of xm list -l."""
        proc = self.xm("list", "-l", name)
        self._check(proc)
        m = re.search(r"\(console\b.*?\(location '?([^)'\s]+)'?\)", proc.stdout, re.S)
        if not m:
            PROBLEMS.append("no console (location ...) in xm list -l:\n" + describe(proc))
            raise CommandFailed("no console location")
        return m.group(1)

    def qemu_blockdevs(self) -> list[str]:
        """The -blockdev arguments of our QEMU processes (to show the cache modes)."""
        out = []
        for pid in pids_mentioning(str(self.dir) + "/"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            out += [argv[i + 1] for i, a in enumerate(argv[:-1])
                    if a == "-blockdev" and "img" in argv[i + 1]]
        return sorted(set(out))

    def cleanup(self) -> None:
        if self.started:
            proc = self.xm("list", timeout=60)
            self.live |= {ln.split()[0] for ln in proc.stdout.splitlines()[1:]
                          if ln.strip()} - {"Domain-0"}
        for name in sorted(self.live):
            proc = self.xm("destroy", name, timeout=60)
            if proc.returncode != 0 and "does not exist" not in proc.stderr:
                log(f"cleanup: {describe(proc)}")
        self.live.clear()
        if self.started:
            proc = self.ns(str(BIN / "xend"), "stop", timeout=60)
            if proc.returncode != 0:
                log(f"cleanup: {describe(proc)}")
            self.started = False
        for pid in pids_mentioning(str(self.dir) + "/"):  # the last resort
            log(f"killing leftover process {pid}")
            kill_and_wait(pid)
        if self.netns_made:
            proc = run(["ip", "netns", "del", self.netns], timeout=60)[1]
            if proc.returncode != 0:
                log(f"cleanup: {describe(proc)}")
            self.netns_made = False


def open_console(dom0: Dom0, name: str) -> GuestConsole:
    path = dom0.console_path(name)
    t0 = time.perf_counter()
    try:
        con = GuestConsole(path, timeout=30)
        con.wait_prompt(BOOT_TIMEOUT)
    except (OSError, TimeoutError, ConnectionError) as exc:
        PROBLEMS.append(f"guest {name}: no shell on its console {path} within "
                        f"{BOOT_TIMEOUT:g} s: {exc}")
        raise CommandFailed(str(exc))
    log(f"{name}: shell answers ({time.perf_counter() - t0:.1f} s after create returned)")
    return con


# ---- timing inside the guest -------------------------------------------------------

Samples = dict[str, list[float]]  # measure -> seconds per run


def guest_timed(con: GuestConsole, what: str, command: str, timeout: float = DD_TIMEOUT,
                expect: str | None = None) -> float:
    """Run *command* in the guest between two reads of /proc/uptime; the guest's
    seconds (10 ms resolution).  Checked against the host's clock around it."""
    t0 = time.perf_counter()
    out = con.run(f"read a _ </proc/uptime; {command}; read b _ </proc/uptime; echo \"T $a $b\"",
                  timeout=timeout)
    wall = time.perf_counter() - t0
    m = re.search(r"^T (\d+\.\d+) (\d+\.\d+)\s*$", out, re.M)
    if not m or (expect is not None and expect not in out):
        raise CommandFailed(f"{what}: unexpected output in the guest:\n{out.strip()}")
    secs = float(m.group(2)) - float(m.group(1))
    if secs > wall + 0.05 or secs <= 0:
        NOTES.append(f"{what}: the guest measured {secs:.2f} s, the host saw the whole "
                     f"console command take {wall:.2f} s (guest clock off?)")
    return secs


def drop_host_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def host_timed(argv: list[str]) -> float:
    secs, proc = run(argv, timeout=DD_TIMEOUT)
    if proc.returncode != 0:
        raise CommandFailed(describe(proc))
    return secs


# ---- 1. disks ----------------------------------------------------------------------


DISKS = {"file:": ("xvdb", "f.img"), "tap:aio:": ("xvdc", "t.img")}


def measure_disks(con: GuestConsole, tmp: Path, samples: Samples) -> None:
    host_img = tmp / "host.img"
    subprocess.run(["truncate", "-s", f"{IMG_MB}M", str(host_img)], check=True)
    records = f"{DISK_MB}+0 records out"

    def host_rep() -> tuple[float, float]:
        w = host_timed(["dd", "if=/dev/zero", f"of={host_img}", "bs=1M", f"count={DISK_MB}",
                        "conv=notrunc,fsync", "status=none"])
        drop_host_cache(host_img)
        r = host_timed(["dd", f"if={host_img}", "of=/dev/null", "bs=1M", f"count={DISK_MB}",
                        "status=none"])
        return w, r

    def guest_rep(kind: str) -> tuple[float, float]:
        dev, img = DISKS[kind]
        w = guest_timed(con, f"{kind} write", f"dd if=/dev/zero of=/dev/{dev} bs=1M "
                        f"count={DISK_MB} conv=fsync", expect=records)
        drop_host_cache(tmp / img)  # a cold read as on the host (file: is host-cached)
        r = guest_timed(con, f"{kind} read", "echo 3 > /proc/sys/vm/drop_caches; "
                        f"dd if=/dev/{dev} of=/dev/null bs=1M count={DISK_MB}", expect=records)
        return w, r

    targets: list[tuple[str, Any]] = [("host", host_rep)] + [
        (f"guest {kind}", lambda k=kind: guest_rep(k)) for kind in DISKS]
    for rep in range(REPS + 1):  # rep 0: warm-up (allocates the sparse images), not counted
        if over_budget():
            NOTES.append(f"time budget reached: disk runs stopped after {max(rep - 1, 0)}")
            break
        line = []
        for label, fn in targets:  # interleaved, so that background load falls on all
            w, r = fn()
            if rep:
                samples.setdefault(f"{label} write", []).append(w)
                samples.setdefault(f"{label} read", []).append(r)
            line.append(f"{label} {DISK_MB * 1.048576 / w:.0f}/{DISK_MB * 1.048576 / r:.0f}")
        log(f"disk {'warm-up' if rep == 0 else f'run {rep}'} (write/read MB/s): "
            + ", ".join(line))


# ---- 2. network --------------------------------------------------------------------


def loopback_once(nbytes: int) -> float:
    """Seconds to send *nbytes* over the host's loopback until the receiver has all."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = [0]

    def receive() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                got[0] += len(chunk)

    thread = threading.Thread(target=receive, daemon=True)  # never holds up an exit
    thread.start()
    block = bytes(1 << 20)
    try:
        t0 = time.perf_counter()
        with socket.create_connection(srv.getsockname()) as c:
            for _ in range(nbytes // len(block)):
                c.sendall(block)
        thread.join(60)
        secs = time.perf_counter() - t0
    finally:
        srv.close()
    if got[0] != nbytes:
        raise CommandFailed(f"loopback: received {got[0]} of {nbytes} bytes")
    return secs


def guest_net_once(sender: GuestConsole, receiver: GuestConsole, dst: str) -> float:
    nbytes = NET_MB << 20
    receiver.run(f"rm -f /run/got; (nc -l -p {PORT} | wc -c > /run/got.tmp; "
                 "mv /run/got.tmp /run/got) >/dev/null 2>&1 &")
    deadline = time.monotonic() + 20
    while f":{PORT} " not in receiver.run("netstat -ltn"):
        if time.monotonic() > deadline:
            raise CommandFailed(f"nc -l -p {PORT} is not listening in the receiver")
        time.sleep(0.1)
    secs = guest_timed(sender, "guest->guest nc", f"dd if=/dev/zero bs=1M count={NET_MB} "
                       f"2>/dev/null | nc {dst} {PORT}", timeout=300)
    deadline = time.monotonic() + 30
    while True:
        got = receiver.run("cat /run/got 2>/dev/null").strip()
        if got or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if got != str(nbytes):
        raise CommandFailed(f"guest->guest: the receiver counted {got or 'nothing'} bytes, "
                            f"not {nbytes}")
    return secs


def measure_net(sender: GuestConsole, receiver: GuestConsole, samples: Samples) -> None:
    dst = ADDRS["d2"]
    out = sender.run(f"ping -c 1 -W 5 {dst}", timeout=20)
    if "1 packets received" not in out:
        PROBLEMS.append(f"guest d1 cannot ping d2 ({dst}) over {BRIDGE}:\n{out.strip()}")
        raise CommandFailed("no connectivity between the guests")
    for rep in range(REPS + 1):  # rep 0: warm-up
        if over_budget():
            NOTES.append(f"time budget reached: network runs stopped after {max(rep - 1, 0)}")
            break
        h = loopback_once(NET_MB << 20)
        g = guest_net_once(sender, receiver, dst)
        if rep:
            samples.setdefault("host loopback", []).append(h)
            samples.setdefault("guest -> guest", []).append(g)
        mbytes = NET_MB * 1.048576
        log(f"net {'warm-up' if rep == 0 else f'run {rep}'}: host loopback "
            f"{mbytes / h:.0f} MB/s, guest->guest {mbytes / g:.1f} MB/s")


# ---- reporting ---------------------------------------------------------------------


def rate(mib: int, secs: list[float] | None) -> tuple[float | None, float | None]:
    """(median, best) in MB/s for runs of *mib* MiB taking *secs*."""
    if not secs:
        return None, None
    nbytes = mib * 1_048_576
    return nbytes / statistics.median(secs) / MB, nbytes / min(secs) / MB


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def cell(mib: int, secs: list[float] | None) -> str:
    med, best = rate(mib, secs)
    return "-" if med is None else f"{_num(med)} / {_num(best)}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def report(samples: Samples, blockdevs: list[str]) -> None:
    print(f"\n1. sequential disk throughput, {DISK_MB} MiB with dd bs=1M on a {IMG_MB} MiB "
          "sparse raw image\n   (MB/s = 10^6 B/s, median / best over the runs; ratio of "
          "medians; write includes fsync, read after dropping caches)")
    head = "%-36s %15s %15s %9s %9s" % ("target", "write MB/s", "read MB/s",
                                        "w g/host", "r g/host")
    print(head)
    print("-" * len(head))
    hw = rate(DISK_MB, samples.get("host write"))[0]
    hr = rate(DISK_MB, samples.get("host read"))[0]
    rows = [("host", "host file, same directory (GNU dd)")] + [
        (f"guest {k}", f"guest {k} disk (/dev/{DISKS[k][0]})") for k in DISKS]
    for key, label in rows:
        w, r = samples.get(f"{key} write"), samples.get(f"{key} read")
        gw, gr = rate(DISK_MB, w)[0], rate(DISK_MB, r)[0]
        print("%-36s %15s %15s %9s %9s" % (
            label, cell(DISK_MB, w), cell(DISK_MB, r),
            "" if key == "host" else ratio(gw, hw), "" if key == "host" else ratio(gr, hr)))
    if blockdevs:
        print("QEMU -blockdev of the guest's disks (as dom0 started it):")
        for b in blockdevs:
            print("  " + b)

    print(f"\n2. TCP throughput, {NET_MB} MiB  (MB/s = 10^6 B/s, median / best over the "
          "runs; ratio of medians)")
    head = "%-52s %17s %9s" % ("path", "MB/s", "g/host")
    print(head)
    print("-" * len(head))
    h = rate(NET_MB, samples.get("host loopback"))[0]
    g = rate(NET_MB, samples.get("guest -> guest"))[0]
    print("%-52s %17s %9s" % ("host loopback, Python sockets (until all received)",
                              cell(NET_MB, samples.get("host loopback")), ""))
    print("%-52s %17s %9s" % (f"guest -> guest over {BRIDGE}, dd | nc (in sender)",
                              cell(NET_MB, samples.get("guest -> guest")), ratio(g, h)))


def environment() -> None:
    print_host("dom0 device benchmark")
    print(f"guest: {GUEST}, {MEM} MiB, 1 vCPU; {REPS} timed runs each after a warm-up; "
          "guest times from /proc/uptime (10 ms resolution)")


def check_prerequisites() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root")
    for b in ("xm", "xend"):
        if not (BIN / b).exists():
            problems.append(f"{BIN / b} missing (make setup)")
    for tool in (QEMU, "ip", "dd", "truncate"):
        if not shutil.which(tool):
            problems.append(f"{tool} is not installed")
    for f in ("vmlinuz", "initrd.img"):
        if not (GUEST / f).is_file():
            problems.append(f"guest image {GUEST / f} missing (make guest)")
    return problems


def main() -> int:
    missing = check_prerequisites()
    if missing:
        print("cannot run the benchmark: " + "; ".join(missing), file=sys.stderr)
        return 1

    interrupt_on_sigterm()
    environment()
    tmp = Path(tempfile.mkdtemp(prefix="d0d-", dir="/tmp"))  # short: unix socket paths
    dom0 = Dom0(tmp)
    samples: Samples = {}
    blockdevs: list[str] = []
    consoles: list[GuestConsole] = []
    interrupted = False
    try:
        log(f"starting a private xend in network namespace {dom0.netns}")
        dom0.start()
        for _, img in DISKS.values():
            subprocess.run(["truncate", "-s", f"{IMG_MB}M", str(tmp / img)], check=True)
        net = {"vif": [f"bridge={BRIDGE}"], "netmask": "255.255.255.0"}
        log("creating d1 (file: xvdb, tap:aio: xvdc, vif) and d2 (vif)")
        dom0.create("d1", disk=[f"file:{tmp}/f.img,xvdb,w", f"tap:aio:{tmp}/t.img,xvdc,w"],
                    ip=ADDRS["d1"], **net)
        dom0.create("d2", ip=ADDRS["d2"], **net)
        blockdevs = dom0.qemu_blockdevs()
        d1 = open_console(dom0, "d1")
        consoles.append(d1)
        d2 = open_console(dom0, "d2")
        consoles.append(d2)
        for step, fn in (("1. disks", lambda: measure_disks(d1, tmp, samples)),
                         ("2. network", lambda: measure_net(d1, d2, samples))):
            log(step)
            try:
                fn()
            except (CommandFailed, TimeoutError, ConnectionError) as exc:
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
        for con in consoles:
            con.close()
        try:
            dom0.cleanup()
        except Exception as exc:  # the rest must still go
            log(f"cleanup failed: {exc!r}")
            for pid in pids_mentioning(str(tmp) + "/"):
                kill_and_wait(pid)
            run(["ip", "netns", "del", dom0.netns], timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupted:
        return 130

    report(samples, blockdevs)
    return print_epilogue(NOTES, PROBLEMS, START)


if __name__ == "__main__":
    sys.exit(main())
