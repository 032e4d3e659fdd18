"""vCPUs and memory of a running guest (issue 10 items 3, 4, 8), checked where the user
would look: the guest's /sys/devices/system/cpu/online and /proc/meminfo, the host's
/proc/<pid>/task/<tid>/status for the vCPU threads' affinity, and xm's own tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import Host


def online(con: Any) -> str:
    return con.run("cat /sys/devices/system/cpu/online").strip()


def memtotal_kib(con: Any) -> int:
    out = con.run("grep MemTotal /proc/meminfo")
    return int(re.search(r"MemTotal:\s+(\d+) kB", out).group(1))  # type: ignore[union-attr]


def vcpu_thread(pid: int, vcpu: int) -> Path | None:
    """The host task of QEMU's vCPU *vcpu* (its threads are named, debug-threads=on)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == f"CPU {vcpu}/TCG":
                return task
        except OSError:
            continue
    return None


def allowed(task: Path) -> str:
    status = (task / "status").read_text()
    return re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1)  # type: ignore[union-attr]


def vcpu_rows(host: Host, dom: str) -> list[list[str]]:
    return [ln.split() for ln in host.xm("vcpu-list", dom).stdout.splitlines()[1:]]


def list_row(host: Host, dom: str) -> list[str]:
    return next(ln.split() for ln in host.xm("list", dom).stdout.splitlines()
                if ln.startswith(dom + " "))


def xm_info(host: Host) -> dict[str, str]:
    rows = (ln.split(":", 1) for ln in host.xm("info").stdout.splitlines())
    return {k.strip(): v.strip() for k, v in rows}


def error(host: Host, *args: str) -> str:
    proc = host.xm(*args, check=False)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr.splitlines()[0]


def test_a_domain_that_does_not_fit_in_free_memory_is_refused(host: Host) -> None:
    info = xm_info(host)
    total, free = int(info["total_memory"]), int(info["free_memory"])
    assert 0 < free < total
    too_big = free + 512
    path = host.write_config("big", memory=too_big)
    proc = host.xm("create", "-q", str(path), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    match = re.match(r"Error: Not enough free memory and enable-dom0-ballooning is False, so I "
                     r"cannot release any more\.  I need (\d+) KiB but only have (\d+)\.$",
                     proc.stderr.splitlines()[0])
    assert match, proc.stderr
    assert int(match.group(1)) == too_big * 1024
    assert "big" not in host.xm("list").stdout


def test_with_dom0_min_mem_the_refusal_names_it(make_host: Any) -> None:
    host = make_host("(dom0-min-mem 196)\n(enable-dom0-ballooning yes)")
    path = host.write_config("big", memory=int(xm_info(host)["total_memory"]))
    assert re.match(r"Error: I need \d+ KiB, but dom0_min_mem is 200704 and shrinking to "
                    r"200704 KiB would leave only \d+ KiB free\.$",
                    error(host, "create", "-q", str(path)))


def test_vcpu_set_and_pin_seen_in_the_guest_and_on_the_host(host: Host) -> None:
    info = host.create("vs", vcpus=1, maxvcpus=2)
    pid = info["pid"]
    with host.console("vs") as con:
        assert online(con) == "0"
        # vCPU 1 is not plugged in: Xen's offline vCPU
        rows = vcpu_rows(host, "vs")
        assert [r[2:5] for r in rows] == [["0", rows[0][3], rows[0][4]], ["1", "-", "--p"]]
        assert list_row(host, "vs")[3] == "1"

        # pinning an online vCPU pins its thread; an offline one's pin waits in the config
        host.xm("vcpu-pin", "vs", "0", "1")
        host.xm("vcpu-pin", "vs", "1", "0")
        task0 = vcpu_thread(pid, 0)
        assert task0 is not None and allowed(task0) == "1"
        assert vcpu_thread(pid, 1) is None

        host.xm("vcpu-set", "vs", "2")
        host.wait_for(lambda: online(con) == "0-1", 60, "vCPU 1 online in the guest")
        assert con.run("grep -c ^processor /proc/cpuinfo").strip() == "2"
        task1 = vcpu_thread(pid, 1)
        assert task1 is not None and allowed(task1) == "0"
        rows = vcpu_rows(host, "vs")
        assert [(r[2], r[-1]) for r in rows] == [("0", "1"), ("1", "0")]
        assert all(r[3] in ("0", "1") and r[4] in ("r--", "-b-") for r in rows)
        assert list_row(host, "vs")[3] == "2"

        host.xm("vcpu-set", "vs", "1")  # returns once QEMU has let go of the vCPU
        assert vcpu_thread(pid, 1) is None
        host.wait_for(lambda: online(con) == "0", 60, "vCPU 1 gone from the guest")
        assert vcpu_rows(host, "vs")[1][2:5] == ["1", "-", "--p"]

        # QEMU 7.2 under TCG dies when a vCPU is plugged after an unplug: refused, and
        # the guest runs on
        assert error(host, "vcpu-set", "vs", "2") == (
            "Error: QEMU (TCG) cannot plug a vCPU into a machine it has unplugged one from "
            "(QEMU 7.2 would abort); restart the domain to have more vCPUs")
        assert online(con) == "0" and host.info("vs")["state"] in ("r-----", "-b----")

        # Xen's refusals, and the guest unchanged by them
        assert error(host, "vcpu-set", "vs", "3") == \
            "Error: Cannot set vcpus greater than max vcpus on running domain"
        assert error(host, "vcpu-set", "vs", "0") == "Error: Zero or less VCPUs is invalid"
        assert error(host, "vcpu-set", "vs", "x") == "Error: Invalid argument."
        assert error(host, "vcpu-pin", "vs", "5", "0") == \
            "Error: Cannot pin vcpu: 5 to cpu: [0] - (22, 'Invalid argument')"
        assert error(host, "vcpu-pin", "vs", "0", "0,7") == \
            "Error: Cannot pin vcpu: 0 to cpu: [0, 7] - (22, 'Invalid argument')"
        assert online(con) == "0" and allowed(task0) == "1"

        # "all" and the ^ syntax
        host.xm("vcpu-pin", "vs", "all", "0-1,^0")
        assert allowed(task0) == "1"
        host.xm("vcpu-pin", "vs", "0", "all")
        assert allowed(task0) == "0-1" and vcpu_rows(host, "vs")[0][-2:] == ["any", "cpu"]

    # the settings are in the domain's config (they survive restarts and moves)
    cfg = host.info("vs")["config"]
    assert cfg["vcpu_avail"] == 1 and cfg["cpus"] == ["all", "0-1,^0"]


def test_mem_set_and_mem_max_seen_in_the_guest(host: Host) -> None:
    host.create("ms", memory=128, maxmem=160)
    with host.console("ms") as con:
        host.wait_for(lambda: list_row(host, "ms")[2] == "128", 30, "the balloon at 128 MiB")
        at_128 = memtotal_kib(con)

        host.xm("mem-set", "ms", "96")  # returns once the guest holds 96 MiB
        assert memtotal_kib(con) == at_128 - 32 * 1024
        assert list_row(host, "ms")[2] == "96"

        host.xm("mem-set", "ms", "160m")
        assert memtotal_kib(con) == at_128 + 32 * 1024
        host.xm("mem-set", "ms", "131072k")
        assert memtotal_kib(con) == at_128

        # the ceiling: not above what QEMU has, not below the target
        assert error(host, "mem-set", "ms", "161") == \
            "Error: memory_dynamic_max must be less than or equal to memory_static_max"
        assert error(host, "mem-max", "ms", "1g").startswith(
            "Error: Cannot raise the memory maximum of domain ms above the 160 MiB")
        assert error(host, "mem-max", "ms", "100") == \
            "Error: memory_dynamic_max must be less than or equal to memory_static_max"
        host.xm("mem-max", "ms", "140")
        assert error(host, "mem-set", "ms", "150") == \
            "Error: memory_dynamic_max must be less than or equal to memory_static_max"
        host.xm("mem-set", "ms", "140")
        assert memtotal_kib(con) == at_128 + 12 * 1024
        # xm's memory argument: an unknown unit is ignored, with a word
        assert "ignoring unknown unit" in host.xm("mem-set", "ms", "140q").stdout

    info = host.info("ms")
    assert (info["memory"], info["maxmem"]) == (140, 140)
    assert (info["config"]["memory"], info["config"]["maxmem"]) == (140, 140)


def test_vcpus_and_memory_survive_save_and_restore(host: Host) -> None:
    host.create("sr", vcpus=1, maxvcpus=2, memory=128, maxmem=160)
    with host.console("sr") as con:
        host.xm("vcpu-set", "sr", "2")
        host.wait_for(lambda: online(con) == "0-1", 60, "vCPU 1 online")
        host.xm("vcpu-pin", "sr", "1", "0")
        host.xm("mem-set", "sr", "100")
        before = memtotal_kib(con)
    host.xm("save", "sr", str(host.dir / "sr.save"))
    host.xm("restore", str(host.dir / "sr.save"))
    pid = host.info("sr")["pid"]
    with host.console("sr") as con:
        assert online(con) == "0-1" and memtotal_kib(con) == before
    task1 = vcpu_thread(pid, 1)
    assert task1 is not None and allowed(task1) == "0"
    assert list_row(host, "sr")[2:4] == ["100", "2"]
