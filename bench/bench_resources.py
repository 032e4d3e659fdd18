#!/usr/bin/env python3
"""How long ``xm vcpu-set`` and ``xm mem-set`` take to take effect inside the guest,
beside ``virsh setvcpus --live`` and ``virsh setmem --live`` on the same guest image
under libvirt (issue 10 item 9).  One run (about 3-5 minutes on 2 cores)::

    python bench/bench_resources.py

Each guest (vcpus 1 of at most 2; 128 MiB) runs a watcher that prints
``/sys/devices/system/cpu/online`` and MemTotal on its serial console the moment
either changes (polled every 10 ms in the guest).  A step is timed from the start of
the command to the arrival of the watcher's line showing the new state, as the user
would see it inside the guest: QEMU's hot-plug, the guest's ACPI and its onlining of
the CPU (or the balloon's inflation), and the command's own start-up, all included.
The command's own duration is printed too (xm mem-set returns once the guest holds
the target; virsh setmem returns at once).  Figures are "median / min" in ms over
REPS rounds (the vCPU steps once: QEMU 7.2 under TCG dies on a vCPU plugged after
an unplug, so xm refuses a second plug and virsh's would kill the guest); ratios are
dom0 / virsh (below 1: dom0 is faster).  Nothing here fails
on a slow figure.

Everything it starts (a private xend, libvirt domains, and libvirtd if it was not
running) is torn down in ``finally``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_core import (  # noqa: E402
    BIN,
    GUEST,
    NOTES,
    PROBLEMS,
    START,
    VIRSH,
    CommandFailed,
    Libvirt,
    check_prerequisites,
    describe,
    interrupt_on_sigterm,
    log,
    print_epilogue,
    print_host,
    private_xend_config,
    run,
)

REPS = 3  # rounds of the memory steps (the vCPU steps run once: see measure)
MEM = 128  # MiB at start, and the maximum
LOW = 96  # MiB mem-set goes down to
STEP_TIMEOUT = 60.0
#: the guest's watcher: one line per change of (online CPUs, MemTotal)
WATCHER = ("w() { p=; while :; do c=\"$(cat /sys/devices/system/cpu/online) "
           "$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)\"; "
           "[ \"$c\" != \"$p\" ] && echo \"@W $c @\"; p=$c; usleep 10000; done; }; "
           "w >/dev/ttyS0 2>&1 &\n")
WATCHED = re.compile(rb"@W (\S+) (\d+) @")


class Console:
    """A guest's serial console on a Unix socket: every watcher line, timestamped on
    arrival by a reader thread."""

    def __init__(self, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise CommandFailed(f"no console socket at {path}") from None
                time.sleep(0.2)
        self.tail = b""  # the last few KiB, for the prompt
        self.seen: list[tuple[float, str, int]] = []  # (arrival, online CPUs, MemTotal KiB)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        partial = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            with self.lock:
                self.tail = (self.tail + chunk)[-4096:]
                for line in lines:
                    if m := WATCHED.search(line):
                        self.seen.append((now, m.group(1).decode(), int(m.group(2))))

    def wait_text(self, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if marker in self.tail:
                    return
            self.sock.sendall(b"\n")
            time.sleep(0.5)
        raise CommandFailed(f"the guest console never showed {marker!r}")

    def start_watcher(self) -> tuple[str, int]:
        self.wait_text(b"# ", 120)
        self.sock.sendall(WATCHER.encode())
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if self.seen:
                    return self.seen[0][1], self.seen[0][2]
            time.sleep(0.05)
        raise CommandFailed("the guest's watcher never reported")

    def seen_after(self, t0: float, want: Any, timeout: float = STEP_TIMEOUT) -> float:
        """When the first watcher line after *t0* satisfying *want* arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for when, cpus, mem in self.seen:
                    if when >= t0 and want(cpus, mem):
                        return when
            time.sleep(0.005)
        raise CommandFailed("the guest never showed the change")

    def close(self) -> None:
        self.sock.close()


class Dom0Guest:
    label = "dom0"

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "x"
        self.dir.mkdir()
        self.config = self.dir / "xend.sxp"
        self.config.write_text(private_xend_config(self.dir))
        self.env = dict(os.environ, XEND_CONFIG=str(self.config),
                        XM_SERVER=str(self.dir / "xend.sock"))
        self.started = False

    def xm(self, *args: str) -> float:
        secs, proc = run([str(BIN / "xm"), *args], env=self.env)
        if proc.returncode != 0:
            PROBLEMS.append(describe(proc))
            raise CommandFailed(describe(proc))
        return secs

    def boot(self) -> Console:
        _, proc = run([str(BIN / "xend"), "start"], env=self.env)
        self.started = True
        if proc.returncode != 0:
            raise CommandFailed(describe(proc))
        cfg = self.dir / "r.cfg"
        cfg.write_text(f'kernel = "{GUEST}/vmlinuz"\nramdisk = "{GUEST}/initrd.img"\n'
                       f'memory = {MEM}\nvcpus = 1\nmaxvcpus = 2\nname = "r1"\n'
                       'extra = "quiet"\n')
        self.xm("create", "-q", str(cfg))
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from dom0.client import XendClient

        info = XendClient(str(self.dir / "xend.sock")).call("domain.info", dom="r1")
        return Console(info["console"])

    def vcpu_set(self, n: int) -> float:
        return self.xm("vcpu-set", "r1", str(n))

    def mem_set(self, mib: int) -> float:
        return self.xm("mem-set", "r1", str(mib))

    def cleanup(self) -> None:
        if self.started:
            run([str(BIN / "xm"), "destroy", "r1"], env=self.env)
            run([str(BIN / "xend"), "stop"], env=self.env)


class VirshGuest:
    label = "virsh"

    def __init__(self, tmp: Path) -> None:
        # libvirt runs QEMU as an unprivileged user: world-readable images, and a
        # directory it may create the console socket in
        self.img = Path(tempfile.mkdtemp(prefix="d0b-res-", dir="/tmp"))
        self.img.chmod(0o777)
        for f in ("vmlinuz", "initrd.img"):
            shutil.copyfile(GUEST / f, self.img / f)
            (self.img / f).chmod(0o644)
        self.name = f"d0b{os.getpid()}-r1"
        self.live = False

    def virsh(self, *args: str) -> float:
        secs, proc = run([*VIRSH, *args])
        if proc.returncode != 0:
            raise CommandFailed(describe(proc))
        return secs

    def boot(self) -> Console:
        sock = self.img / "console.sock"
        xml = self.img / "r1.xml"
        xml.write_text(f"""<domain type='qemu'>
  <name>{self.name}</name>
  <memory unit='MiB'>{MEM}</memory>
  <currentMemory unit='MiB'>{MEM}</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{self.img}/vmlinuz</kernel>
    <initrd>{self.img}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='unix'><source mode='bind' path='{sock}'/><target port='0'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
""")
        self.virsh("create", str(xml))
        self.live = True
        return Console(str(sock))

    def vcpu_set(self, n: int) -> float:
        return self.virsh("setvcpus", self.name, str(n), "--live")

    def mem_set(self, mib: int) -> float:
        return self.virsh("setmem", self.name, f"{mib}M", "--live")

    def cleanup(self) -> None:
        if self.live:
            run([*VIRSH, "destroy", self.name], timeout=60)
        Path(f"/var/log/libvirt/qemu/{self.name}.log").unlink(missing_ok=True)
        shutil.rmtree(self.img, ignore_errors=True)


Figures = dict[str, dict[str, list[float]]]  # step -> "<tool>" / "<tool> cmd" -> seconds


def measure(tool: Any, figures: Figures) -> None:
    con = tool.boot()
    try:
        cpus, full = con.start_watcher()
        log(f"{tool.label}: guest up ({cpus} online, MemTotal {full} KiB)")
        low = full - (MEM - LOW) * 1024
        # one vCPU round: QEMU 7.2 under TCG cannot plug a vCPU again after an unplug
        steps = [("vcpu-set 2", lambda: tool.vcpu_set(2), lambda c, m: c == "0-1"),
                 ("vcpu-set 1", lambda: tool.vcpu_set(1), lambda c, m: c == "0")]
        steps += [(f"mem-set {LOW}", lambda: tool.mem_set(LOW), lambda c, m: m == low),
                  (f"mem-set {MEM}", lambda: tool.mem_set(MEM), lambda c, m: m == full)] * REPS
        for step, command, seen in steps:
            t0 = time.perf_counter()
            try:
                secs = command()
            except CommandFailed as exc:  # the guest may still show the change: look
                NOTES.append(f"{tool.label} {step} failed (the guest is still watched):\n{exc}")
                secs = time.perf_counter() - t0
            arrived = con.seen_after(t0, seen)
            row = figures.setdefault(step, {})
            row.setdefault(tool.label, []).append(arrived - t0)
            row.setdefault(tool.label + " cmd", []).append(secs)
    finally:
        con.close()


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {min(values) * 1000:.0f}"


def report(figures: Figures, have_virsh: bool) -> None:
    print("\nTime until the guest shows the change (median / min ms; 'cmd': the command "
          "alone)")
    head = f"{'step':<14} {'dom0':>13} {'dom0 cmd':>13}"
    if have_virsh:
        head += f" {'virsh':>13} {'virsh cmd':>13} {'dom0/virsh':>10}"
    print(head)
    for step, row in figures.items():
        line = f"{step:<14} {cell(row.get('dom0')):>13} {cell(row.get('dom0 cmd')):>13}"
        if have_virsh:
            ours, theirs = row.get("dom0"), row.get("virsh")
            ratio = (f"{statistics.median(ours) / statistics.median(theirs):.2f}"
                     if ours and theirs else "-")
            line += f" {cell(theirs):>13} {cell(row.get('virsh cmd')):>13} {ratio:>10}"
        print(line)


def main() -> int:
    missing = check_prerequisites()
    if missing:
        print("cannot run the benchmark: " + "; ".join(missing), file=sys.stderr)
        return 1
    interrupt_on_sigterm()
    print_host("dom0 vCPU and memory benchmark")
    print(f"guest: {GUEST}, {MEM} MiB, 1 of 2 vCPUs; the vCPU steps once, the memory steps "
          f"{REPS} times")
    tmp = Path(tempfile.mkdtemp(prefix="d0b-", dir="/tmp"))
    dom0 = Dom0Guest(tmp)
    libvirt = Libvirt(tmp)
    virsh: VirshGuest | None = None
    figures: Figures = {}
    try:
        try:
            measure(dom0, figures)
        except CommandFailed as exc:
            PROBLEMS.append(f"dom0: {exc}")
        finally:
            dom0.cleanup()
        if libvirt.ensure():
            virsh = VirshGuest(tmp)
            try:
                measure(virsh, figures)
            except CommandFailed as exc:
                NOTES.append(f"virsh: {exc}")
    except KeyboardInterrupt:
        NOTES.append("interrupted: the figures are partial")
    finally:
        if virsh:
            virsh.cleanup()
        libvirt.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(figures, virsh is not None)
    return print_epilogue(NOTES, PROBLEMS, START)


if __name__ == "__main__":
    sys.exit(main())
