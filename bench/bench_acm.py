#!/usr/bin/env python3
"""The cost of access control (sHype/ACM, issue 12 item 7): ``xm create`` and
``xm list --label`` with a policy enforced, beside the same without a policy, in one run.

Two private xends run side by side.  "policy" has the example policy
(examples/acm) active; its 50 domains are labelled ``blue`` and each has a writable
1 MiB disk image labelled ``blue_disk``, so every create pays for everything
enforcement does: the policy's checks in xend (the label, the Chinese Wall against
the running domains, the disk's STE type), a QEMU user of its own allocated and
recorded, the image chowned 0600 and recorded, QEMU started with ``-runas``.
"none" has no policy: the same domains and images, unlabelled, run as root as
always.  Creates alternate between the two (which goes first alternates too), so
both see the same machine load; each is timed from the outside (xm's start-up
included).  The domains are paused 32 MiB QEMUs (``xm create -p``: real processes,
no CPU).  At 50 domains each, ``xm list --label`` alternates between the two.
Figures are median / min in ms and the ratio policy/none of the medians.
Everything (domains, both xends, images) is torn down in ``finally``; destroying
the policy's domains gives the images back their owner, which is checked.

    python bench/bench_acm.py      # as root, alone: it holds 100 QEMUs (~3 minutes)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import kill_and_wait, pids_mentioning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
POLICY_XML = REPO / "examples" / "acm" / "dom0" / "example-security_policy.xml"
POLICY = "dom0.example"
MANY = 50
MEM = 32  # MiB: the guests never run (paused), so they need not boot
REPS = 15


class Xend:
    """One private xend, its directory and its xm."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"d0-bench-acm-{name}-"))
        self.dir.chmod(0o711)  # QEMU users pass through to their images
        config = self.dir / "xend-config.sxp"
        config.write_text("".join(f"({k} {v})\n" for k, v in {
            "logfile": self.dir / "xend.log", "loglevel": "INFO",
            "xend-api-socket": self.dir / "xend.sock", "xend-pid-file": self.dir / "xend.pid",
            "xend-run-path": self.dir / "run", "xend-log-path": self.dir / "log",
            "xend-state-path": self.dir / "state", "xend-domains-path": self.dir / "domains",
            "xend-security-path": self.dir / "security", "xend-dump-path": self.dir / "dump",
            "qemu-accel": "tcg"}.items()))
        self.env = dict(os.environ, XEND_CONFIG=str(config), XM_SERVER=str(self.dir / "xend.sock"))

    def xm(self, *args: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "xm"), *args], env=self.env, capture_output=True,
                              text=True, timeout=300, cwd=self.dir)
        secs = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: xm {' '.join(args)}: {proc.stderr.strip()}")
        return secs

    def start(self) -> None:
        subprocess.run([str(BIN / "xend"), "start"], env=self.env, check=True, timeout=120)

    def config(self, i: int, labelled: bool) -> tuple[Path, Path]:
        """Domain *i*'s config file and its disk image (1 MiB, sparse, 0644)."""
        img = self.dir / f"d{i:02d}.img"
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        img.chmod(0o644)
        cfg = self.dir / f"d{i:02d}.cfg"
        lines = [f"name = 'd{i:02d}'", f"kernel = {str(GUEST / 'vmlinuz')!r}",
                 f"ramdisk = {str(GUEST / 'initrd.img')!r}", f"memory = {MEM}",
                 f"disk = ['file:{img},xvdb,w']"]
        if labelled:
            lines.append(f"access_control = ['policy={POLICY},label=blue']")
        cfg.write_text("\n".join(lines) + "\n")
        return cfg, img

    def teardown(self) -> None:
        subprocess.run([str(BIN / "xend"), "stop"], env=self.env, capture_output=True,
                       timeout=120)
        for pid in pids_mentioning(str(self.dir)):  # every QEMU it started, by its paths
            kill_and_wait(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def figures(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:>9.1f} / {min(values) * 1000:.1f}"


def row(what: str, policy: list[float], none: list[float]) -> None:
    ratio = statistics.median(policy) / statistics.median(none)
    print(f"{what:<22} {figures(policy):>20} {figures(none):>20} {ratio:>8.2f}")


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (QEMU users, chown)", file=sys.stderr)
        return 2
    policy, none = Xend("policy"), Xend("none")
    try:
        for x in (policy, none):
            x.start()
        (policy.dir / "dom0").mkdir()
        shutil.copy(POLICY_XML, policy.dir / "dom0" / POLICY_XML.name)
        policy.xm("setpolicy", "ACM", POLICY)
        configs = {x.name: [x.config(i, labelled=x is policy) for i in range(MANY)]
                   for x in (policy, none)}
        for _, img in configs["policy"]:
            policy.xm("addlabel", "blue_disk", "res", f"file:{img}")

        creates: dict[str, list[float]] = {"policy": [], "none": []}
        t0 = time.perf_counter()
        for i in range(MANY):
            pair = (policy, none) if i % 2 == 0 else (none, policy)
            for x in pair:
                creates[x.name].append(x.xm("create", "-q", "-p", str(configs[x.name][i][0])))
        print(f"{MANY} + {MANY} paused {MEM} MiB domains created in "
              f"{time.perf_counter() - t0:.1f} s")
        owned = sum(1 for _, img in configs["policy"] if img.stat().st_uid != 0)
        print(f"policy: {owned}/{MANY} images owned by their QEMU's user")

        lists: dict[str, list[float]] = {"policy": [], "none": []}
        policy.xm("list", "--label")
        none.xm("list", "--label")  # warm both
        for r in range(REPS):
            pair = (policy, none) if r % 2 == 0 else (none, policy)
            for x in pair:
                lists[x.name].append(x.xm("list", "--label"))

        print(f"\n{'command':<22} {'policy median / min':>20} {'none median / min':>20} "
              f"{'ratio':>8}   (ms; creates: {MANY} each, lists: {REPS} runs at {MANY} "
              "domains)")
        row("xm create -p", creates["policy"], creates["none"])
        row("xm list --label", lists["policy"], lists["none"])

        for i in range(MANY):  # destroy gives the images back
            policy.xm("destroy", f"d{i:02d}")
        back = sum(1 for _, img in configs["policy"]
                   if img.stat().st_uid == 0 and img.stat().st_mode & 0o777 == 0o644)
        print(f"\nafter destroy: {back}/{MANY} images back to root, 0644")
        return 0
    finally:
        for x in (policy, none):
            x.teardown()


if __name__ == "__main__":
    sys.exit(main())
