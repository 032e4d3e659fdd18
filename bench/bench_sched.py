#!/usr/bin/env python3
"""Scheduler benchmark of dom0: how closely the CPU time busy guests get follows the
credit weights and cap and the SEDF slice, beside the same shares set through libvirt.

One run (about 4 minutes on 2 cores)::

    python bench/bench_sched.py            # or: make bench

Guests run a busy loop in their shell, their vCPU threads pinned to host CPU 1.
What is measured is the CPU time of the guests' vCPU threads (QEMU names them
``CPU <n>/TCG``: /proc/<pid>/task/<tid>/stat) over a window, as a ratio between two
guests or as a percentage of one CPU:

* weights 256:512, two busy guests on one CPU: the ratio (goal 2.0 +- 5%);
* cap 25, one busy guest alone on its CPU: % of a CPU (goal 25 +- 3 points);
* SEDF slice 10 ms per 100 ms without extra time, alone: % (goal 10 +- 2 points);
* libvirt beside it: ``virsh schedinfo --set cpu_shares=1024`` / ``2048`` and
  ``vcpu_period=100000`` + ``vcpu_quota=25000`` on the same kind of guests.

Goals are reported PASS or MISS; the script never fails because of a MISS.  Whatever
it starts (two private xends, their QEMUs, libvirt domains, libvirtd if it was not
running) is torn down in ``finally``.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as core  # noqa: E402

BIN = Path(sys.executable).parent  # the venv's xm and xend
GUEST = core.GUEST
WINDOW = 15.0  # seconds of CPU time per measurement
PIN = "1"  # the host CPU every measured vCPU is pinned to
MEM = 128
BUSY = "while :; do :; done >/dev/null 2>&1 &\n"
TICK = os.sysconf("SC_CLK_TCK")
NOTES = core.NOTES
PROBLEMS = core.PROBLEMS


# ---- CPU time of vCPU threads ------------------------------------------------------------


def vcpu_threads(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith("CPU "):
                out.append(int(tid))
        except OSError:
            pass
    return out


def vcpu_seconds(pid: int) -> float:
    total = 0.0
    for tid in vcpu_threads(pid):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def cpu_fractions(pids: list[int]) -> list[float]:
    """Each process's vCPU CPU time over WINDOW, as a fraction of one CPU."""
    before, t0 = [vcpu_seconds(p) for p in pids], time.monotonic()
    time.sleep(WINDOW)
    after, elapsed = [vcpu_seconds(p) for p in pids], time.monotonic() - t0
    return [(b - a) / elapsed for a, b in zip(before, after, strict=True)]


# ---- making a guest busy through its serial console --------------------------------------


def make_busy(read: Callable[[float], bytes], write: Callable[[bytes], None],
              timeout: float = 120.0) -> None:
    """Wait for the guest's shell, then start the loop (typed, as a user would)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        write(b"\n")
        seen += read(1.0)
        if b"# " in seen:
            write(BUSY.encode())
            time.sleep(0.5)
            return
    raise core.CommandFailed(f"no shell prompt within {timeout:g} s: {seen[-300:]!r}")


def busy_unix(path: str) -> None:
    from dom0.cli.console import connect

    sock = connect(path, retry_for=30.0)
    try:
        def read(t: float) -> bytes:
            r, _, _ = select.select([sock], [], [], t)
            return sock.recv(65536) if r else b""
        make_busy(read, sock.sendall)
    finally:
        sock.close()


def busy_pty(path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)

        def read(t: float) -> bytes:
            r, _, _ = select.select([fd], [], [], t)
            return os.read(fd, 65536) if r else b""
        make_busy(read, lambda b: os.write(fd, b) and None)
    finally:
        os.close(fd)


# ---- dom0 ------------------------------------------------------------------------------------


class Xend:
    """A private xend with the scheduler given."""

    def __init__(self, tmp: Path, sched: str) -> None:
        self.dir = tmp / sched
        self.dir.mkdir()
        config = self.dir / "xend.sxp"
        config.write_text(core.private_xend_config(self.dir, f"(sched {sched})\n"))
        self.env = dict(os.environ, XEND_CONFIG=str(config), XM_SERVER=str(self.dir / "xend.sock"))
        self.started = False

    def check(self, proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        if proc.returncode != 0:
            PROBLEMS.append(core.describe(proc))
            raise core.CommandFailed(core.describe(proc))
        return proc

    def start(self) -> None:
        self.started = True
        self.check(core.run([str(BIN / "xend"), "start"], env=self.env)[1])

    def xm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.check(core.run([str(BIN / "xm"), *args], env=self.env)[1])

    def busy_guest(self, name: str, *assignments: str) -> int:
        cfg = self.dir / f"{name}.cfg"
        cfg.write_text(f'kernel = "{GUEST}/vmlinuz"\nramdisk = "{GUEST}/initrd.img"\n'
                       f'memory = {MEM}\nname = "{name}"\nextra = "quiet"\ncpus = "{PIN}"\n')
        self.xm("create", "-q", str(cfg), *assignments)
        from dom0.client import XendClient

        info = XendClient(str(self.dir / "xend.sock")).call("domain.info", dom=name)
        busy_unix(info["console"])
        return int(info["pid"])

    def stop(self) -> None:
        if not self.started:
            return
        proc = core.run([str(BIN / "xm"), "list"], env=self.env)[1]
        for line in proc.stdout.splitlines()[2:]:
            core.run([str(BIN / "xm"), "destroy", line.split()[0]], env=self.env)
        core.run([str(BIN / "xend"), "stop"], env=self.env)
        for pid in core.pids_mentioning(str(self.dir) + "/"):
            core.kill_and_wait(pid)
        self.started = False


def measure_dom0(tmp: Path, figures: dict[str, float]) -> None:
    credit = Xend(tmp, "credit")
    try:
        credit.start()
        core.log("dom0: two busy guests on CPU 1, weights 256 and 512")
        pa = credit.busy_guest("light", "cpu_weight=256")
        pb = credit.busy_guest("heavy", "cpu_weight=512")
        light, heavy = cpu_fractions([pa, pb])
        figures["dom0 weights"] = heavy / light
        core.log(f"dom0: light {light:.1%}, heavy {heavy:.1%} of a CPU")
        core.log("dom0: heavy alone (light paused), cap 25")
        credit.xm("pause", "light")
        credit.xm("sched-credit", "-d", "heavy", "-c", "25")
        (heavy,) = cpu_fractions([pb])
        figures["dom0 cap"] = heavy * 100
    finally:
        credit.stop()
    sedf = Xend(tmp, "sedf")
    try:
        sedf.start()
        core.log("dom0 (sched sedf): one busy guest, slice 10 ms per 100 ms, no extra time")
        pid = sedf.busy_guest("edf")
        sedf.xm("sched-sedf", "edf", "-p", "100", "-s", "10", "-e", "0")
        (share,) = cpu_fractions([pid])
        figures["dom0 sedf"] = share * 100
    finally:
        sedf.stop()


# ---- libvirt ---------------------------------------------------------------------------------


class VirshGuests:
    def __init__(self) -> None:
        self.img = Path(tempfile.mkdtemp(prefix="d0b-sched-", dir="/tmp"))
        self.img.chmod(0o755)
        for f in ("vmlinuz", "initrd.img"):
            shutil.copyfile(GUEST / f, self.img / f)
            (self.img / f).chmod(0o644)
        self.prefix = f"d0bs{os.getpid()}-"
        self.live: list[str] = []

    def virsh(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = core.run([*core.VIRSH, *args])[1]
        if proc.returncode != 0:
            raise core.CommandFailed(core.describe(proc))
        return proc

    def busy_guest(self, short: str) -> tuple[str, int]:
        name = self.prefix + short
        xml = self.img / f"{name}.xml"
        xml.write_text(f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{MEM}</memory>
  <vcpu>1</vcpu>
  <cputune><vcpupin vcpu='0' cpuset='{PIN}'/></cputune>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{self.img}/vmlinuz</kernel>
    <initrd>{self.img}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
""")
        self.virsh("create", str(xml))
        self.live.append(name)
        busy_pty(self.virsh("ttyconsole", name).stdout.strip())
        pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
        return name, pid

    def cleanup(self) -> None:
        for name in self.live:
            core.run([*core.VIRSH, "destroy", name], timeout=60)
            Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)
        self.live.clear()
        for pid in core.pids_mentioning(f"guest={self.prefix}"):
            core.kill_and_wait(pid)
        shutil.rmtree(self.img, ignore_errors=True)


def measure_libvirt(tmp: Path, figures: dict[str, float]) -> None:
    libvirt = core.Libvirt(tmp)
    guests = None
    try:
        if not libvirt.ensure():
            NOTES.append("libvirt could not run here: its column is empty")
            return
        guests = VirshGuests()
        core.log("libvirt: two busy guests on CPU 1, cpu_shares 1024 and 2048")
        a, pa = guests.busy_guest("light")
        b, pb = guests.busy_guest("heavy")
        guests.virsh("schedinfo", a, "--live", "--set", "cpu_shares=1024")
        guests.virsh("schedinfo", b, "--live", "--set", "cpu_shares=2048")
        light, heavy = cpu_fractions([pa, pb])
        figures["libvirt weights"] = heavy / light
        core.log(f"libvirt: light {light:.1%}, heavy {heavy:.1%} of a CPU")
        core.log("libvirt: heavy alone (light suspended), vcpu_quota 25000 per 100000")
        guests.virsh("suspend", a)
        guests.virsh("schedinfo", b, "--live", "--set", "vcpu_period=100000")
        guests.virsh("schedinfo", b, "--live", "--set", "vcpu_quota=25000")
        (heavy,) = cpu_fractions([pb])
        figures["libvirt cap"] = heavy * 100
    except core.CommandFailed as exc:
        NOTES.append(f"libvirt measurement stopped: {exc}")
    finally:
        if guests is not None:
            guests.cleanup()
        libvirt.stop()


# ---- report ------------------------------------------------------------------------------------


def report(figures: dict[str, float]) -> None:
    rows = [
        ("weights 256:512 (CPU-time ratio)", "weights", 2.0, 0.10, "{:.2f}"),
        ("cap 25 (% of a CPU)", "cap", 25.0, 3.0, "{:.1f}"),
        ("SEDF 10 ms / 100 ms (% of a CPU)", "sedf", 10.0, 2.0, "{:.1f}"),
    ]
    print(f"\n{'measure':36} {'goal':>12} {'dom0':>8} {'libvirt':>8}  dom0 vs goal")
    for label, key, goal, tol, fmt in rows:
        ours = figures.get(f"dom0 {key}")
        theirs = figures.get(f"libvirt {key}")
        verdict = "-" if ours is None else ("PASS" if abs(ours - goal) <= tol else "MISS")
        goal_text = f"{fmt.format(goal)}+-{fmt.format(tol)}"
        print(f"{label:36} {goal_text:>12} "
              f"{fmt.format(ours) if ours is not None else '-':>8} "
              f"{fmt.format(theirs) if theirs is not None else '-':>8}  {verdict}")
    print(f"\n(CPU time of the guests' vCPU threads over {WINDOW:g} s windows, vCPUs pinned to "
          f"host CPU {PIN}; libvirt has no SEDF)")


def main() -> int:
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    if (os.cpu_count() or 1) < 2:
        print("needs two host CPUs (the guests are pinned to CPU 1)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="d0b-sched-", dir="/tmp"))
    figures: dict[str, float] = {}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            measure_dom0(tmp, figures)
        except core.CommandFailed as exc:
            core.log(f"dom0 measurement stopped: {exc}")
        measure_libvirt(tmp, figures)
    except KeyboardInterrupt:
        core.log("interrupted")
        return 130
    finally:
        for pid in core.pids_mentioning(str(tmp) + "/"):
            core.kill_and_wait(pid)
        shutil.rmtree(tmp, ignore_errors=True)
    report(figures)
    return core.print_epilogue(NOTES, PROBLEMS, core.START)


if __name__ == "__main__":
    sys.exit(main())
