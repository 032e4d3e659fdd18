"""The credit and SEDF schedulers on real guests, seen where a user would look: the
CPU time the guests' vCPU threads consumed (/proc/<pid>/task/<tid>/stat), the
cgroup those threads are in (/proc/<pid>/task/<tid>/cgroup) and its files, and
``xm sched-credit`` / ``xm sched-sedf``.

Two busy guests (a shell loop) share one host CPU (``cpus``); the assertions are
proportions of CPU time over a measuring window, loose enough for a shared machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import Host
from test_migration import two_hosts  # noqa: F401 (a fixture)

from dom0.backends.cgroups import detect

WINDOW = 8.0  # seconds of CPU time sampled per measurement
TICK = os.sysconf("SC_CLK_TCK")


def vcpu_threads(pid: int) -> list[int]:
    """QEMU names each vCPU thread ``CPU <n>/<accel>``."""
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        if comm.startswith("CPU "):
            tids.append(int(tid))
    return sorted(tids)


def cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def shares_of_a_cpu(pids: list[int]) -> list[float]:
    """Each guest's vCPU CPU time over WINDOW, as a fraction of one CPU."""
    def sample() -> list[float]:
        return [sum(cpu_seconds(p, t) for t in vcpu_threads(p)) for p in pids]

    before, t0 = sample(), time.monotonic()
    time.sleep(WINDOW)
    after, elapsed = sample(), time.monotonic() - t0
    return [(b - a) / elapsed for a, b in zip(before, after, strict=True)]


def cgroup_dir(pid: int, tid: int) -> Path:
    """The cpu controller's cgroup of one thread, as /proc shows it."""
    cg = detect()
    assert cg is not None, "this host has a cgroup cpu controller"
    for line in Path(f"/proc/{pid}/task/{tid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (cg.version == 1 and "cpu" in controllers.split(",")) or \
                (cg.version == 2 and controllers == ""):
            return Path(cg.mount + path)
    raise AssertionError(f"thread {tid} has no cpu cgroup")


def busy(host: Host, name: str) -> int:
    """Start a CPU-bound loop in the guest's shell; the guest's QEMU pid."""
    with host.console(name) as con:
        con.run("while :; do :; done >/dev/null 2>&1 &")
    return int(host.info(name)["pid"])


def credit_rows(host: Host) -> dict[str, tuple[int, int]]:
    out = host.xm("sched-credit").stdout.splitlines()
    assert out[0] == "Name                                ID Weight  Cap"
    return {line.split()[0]: (int(line.split()[-2]), int(line.split()[-1])) for line in out[1:]}


def test_credit_weight_and_cap_as_cpu_time(host: Host, tmp_path: Path) -> None:
    a = host.create("light", cpus="1", cpu_weight=256)
    b = host.create("heavy", cpus="1", cpu_weight=512)
    pa, pb = busy(host, "light"), busy(host, "heavy")

    # only the vCPU threads are in the domain's cgroup; QEMU's main thread is not
    (tid,) = vcpu_threads(pb)
    cg_b = cgroup_dir(pb, tid)
    assert cg_b.name == b["uuid"] and cg_b.parent.name == "dom0"
    assert cgroup_dir(pb, pb) != cg_b
    assert (cg_b / "cpu.shares").read_text().strip() == "2048"

    light, heavy = shares_of_a_cpu([pa, pb])
    assert 1.4 < heavy / light < 2.8, (light, heavy)

    host.xm("sched-credit", "-d", "heavy", "-c", "25")
    assert (cg_b / "cpu.cfs_quota_us").read_text().strip() == "25000"
    light, heavy = shares_of_a_cpu([pa, pb])
    assert heavy < 0.40 and light > heavy, (light, heavy)
    assert credit_rows(host)["heavy"] == (512, 25)

    # a restarted xend re-adopts the domain and puts its values back in force
    host.xend("stop")
    (cg_b / "cpu.shares").write_text("1024")
    (cg_b / "cpu.cfs_quota_us").write_text("-1")
    host.xend("start")
    assert (cg_b / "cpu.shares").read_text().strip() == "2048"
    assert (cg_b / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert credit_rows(host) == {"Domain-0": (256, 0), "light": (256, 0), "heavy": (512, 25)}

    # through a save file: a new QEMU, its vCPU thread in the same domain's cgroup
    saved = tmp_path / "heavy.save"
    host.xm("save", "heavy", str(saved))
    assert not cg_b.exists()  # gone with its domain
    host.xm("restore", str(saved))
    pb = int(host.info("heavy")["pid"])
    (tid,) = vcpu_threads(pb)
    assert cgroup_dir(pb, tid) == cg_b
    assert (cg_b / "cpu.shares").read_text().strip() == "2048"
    assert (cg_b / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert credit_rows(host)["heavy"] == (512, 25)

    cg_a = cgroup_dir(pa, vcpu_threads(pa)[0])
    assert cg_a.name == a["uuid"]
    host.xm("destroy", "light")
    assert not cg_a.exists()


def test_sedf_slice_per_period(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host("(sched sedf)")
    assert "xen_scheduler          : sedf" in host.xm("info").stdout.splitlines()
    refused = host.xm("sched-credit", check=False)
    assert (refused.returncode, refused.stderr) == \
        (1, "Error: Xen is running with the sedf scheduler\n")

    host.create("edf", cpus="1")
    pid = busy(host, "edf")
    host.xm("sched-sedf", "edf", "-p", "100", "-s", "10", "-e", "0", "-l", "5")
    row = host.xm("sched-sedf", "edf").stdout.splitlines()[1]
    assert row.split()[2:] == ["100.0", "10.0", "5.0", "0", "0"]
    (tid,) = vcpu_threads(pid)
    cg = cgroup_dir(pid, tid)
    assert (cg / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (cg / "cpu.cfs_quota_us").read_text().strip() == "10000"
    (share,) = shares_of_a_cpu([pid])
    assert share < 0.2, share


def test_weight_and_cap_migrate_with_the_domain(two_hosts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Both "hosts" share this machine's cgroups: the destination's QEMU joins the
    domain's cgroup, and the source's end does not take it away.  (Each xend runs in
    a network namespace, whose fresh /sys lacks the cgroup mounts.)"""
    a, b = two_hosts()
    a.create("mover", cpu_weight=768, cpu_cap=30)
    a.xm("migrate", "--live", "mover", "10.99.0.2", timeout=300)
    row = b.xm("sched-credit", "-d", "mover").stdout.splitlines()[1]
    assert row.split()[2:] == ["768", "30"]
    pid = int(b.info("mover")["pid"])
    (tid,) = vcpu_threads(pid)
    cg = cgroup_dir(pid, tid)
    assert (cg / "cpu.shares").read_text().strip() == "3072"
    assert (cg / "cpu.cfs_quota_us").read_text().strip() == "30000"
    assert [int(t) for t in (cg / "tasks").read_text().split()] == [tid]
