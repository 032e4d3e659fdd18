#!/usr/bin/env python3
"""``xm top -b -i 1`` beside ``xm list`` with 50 real domains (issue 10, item 9).

A private xend starts 50 QEMU guests of 32 MiB, paused (real QEMU processes with
QMP, so every ``xm top`` refresh really asks 50 machines for their balloon and block
statistics; paused, so they cost no CPU).  Then ``xm list`` and ``xm top -b -i 1``
run alternately, each timed from the outside (process start-up included), and the
figures are "median / min" in ms with the ratio top/list.  Everything is torn down
in ``finally``.  Run it alone (it holds 50 QEMUs)::

    python bench/bench_top.py      # or: make bench
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import kill_and_wait, pids_mentioning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
MANY = 50
MEM = 32  # MiB: the guest never runs (paused), so it need not boot
REPS = 15


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="d0-bench-top-"))
    config = tmp / "xend-config.sxp"
    config.write_text(f"""
(logfile {tmp}/xend.log)
(loglevel INFO)
(xend-api-socket {tmp}/xend.sock)
(xend-pid-file {tmp}/xend.pid)
(xend-run-path {tmp}/run)
(xend-log-path {tmp}/log)
(xend-state-path {tmp}/state)
(xend-domains-path {tmp}/domains)
(xend-dump-path {tmp}/dump)
(qemu-accel tcg)
""")
    env = dict(os.environ, XEND_CONFIG=str(config), XM_SERVER=str(tmp / "xend.sock"))

    def xm(*args: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "xm"), *args], env=env, capture_output=True,
                              text=True, timeout=300)
        secs = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"xm {' '.join(args)}: {proc.stderr.strip()}")
        return secs

    try:
        subprocess.run([str(BIN / "xend"), "start"], env=env, check=True, timeout=120)
        cfg = tmp / "small.cfg"
        cfg.write_text(f"kernel = {str(GUEST / 'vmlinuz')!r}\n"
                       f"ramdisk = {str(GUEST / 'initrd.img')!r}\nmemory = {MEM}\n")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: xm("create", "-q", "-p", str(cfg), f"name=t{i:02d}"),
                          range(MANY)))
        print(f"{MANY} paused {MEM} MiB QEMU domains created in "
              f"{time.perf_counter() - t0:.1f} s")
        times: dict[str, list[float]] = {"xm list": [], "xm top -b -i 1": []}
        xm("list")
        xm("top", "-b", "-i", "1")  # warm both (page cache, xend's QEMU version)
        for _ in range(REPS):
            times["xm list"].append(xm("list"))
            times["xm top -b -i 1"].append(xm("top", "-b", "-i", "1"))
        print(f"\n{'command':<18} {'median / min (ms)':>20}   ({MANY} domains, {REPS} runs)")
        for name, values in times.items():
            print(f"{name:<18} {statistics.median(values) * 1000:>11.1f} / "
                  f"{min(values) * 1000:.1f}")
        ratio = statistics.median(times["xm top -b -i 1"]) / statistics.median(times["xm list"])
        print(f"\nratio xm top -b -i 1 / xm list: {ratio:.2f}")
        # where the difference goes: the requests alone, without xm's process start
        sys.path.insert(0, str(REPO / "src"))
        from dom0.client import XendClient

        client = XendClient(str(tmp / "xend.sock"))
        rtt: dict[str, list[float]] = {"domain.list": [], "node.figures": []}
        for _ in range(REPS):
            for route in rtt:
                t0 = time.perf_counter()
                client.call(route)
                rtt[route].append(time.perf_counter() - t0)
        print("\nrequest alone      median / min (ms)")
        for route, values in rtt.items():
            print(f"{route:<18} {statistics.median(values) * 1000:>11.1f} / "
                  f"{min(values) * 1000:.1f}")
        return 0
    finally:
        subprocess.run([str(BIN / "xend"), "stop"], env=env, capture_output=True, timeout=120)
        for pid in pids_mentioning(str(tmp)):  # every QEMU it started, by its paths
            kill_and_wait(pid)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
