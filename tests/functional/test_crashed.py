"""A guest that dies at once stays visible as crashed (issue 13 item 2), seen where a
user debugging it looks: `xm list`, `xm list -l`, its console log, `xm dmesg`; and
the memory floor at create.

The dying guest is the project's own with ``rdinit=`` naming no file: the kernel
then has no init and no root device, and panics at once; ``panic=1`` makes it
reset a second later (with the pvpanic driver a module, loaded by the guest's
/init, QEMU learns of a panic this early only by the reset; a kernel with pvpanic
built in reports the crash itself, so both are accepted).  xend restarts it, it
dies again within domain-minimum-restart-time, and the loop guard gives up."""

from __future__ import annotations

import os
import re

import snapshot
from conftest import Host
from test_faults import BRIDGED
from test_lifecycle import IN_BACKGROUND

#: the kernel panics before any userland runs
DIES_AT_ONCE = "quiet cryptomgr.notests rdinit=/no/such/init panic=1"


def row(host: Host, name: str, *args: str) -> list[str] | None:
    """*name*'s row of `xm list [args]`, split, or None."""
    for line in host.xm("list", *args).stdout.splitlines()[1:]:
        if line.split()[0] == name:
            return line.split()
    return None


def wait_crashed(host: Host, name: str) -> list[str]:
    return host.wait_for(lambda: (r := row(host, name)) and r[4] == "----c-" and r, 90,
                         f"{name} to be listed as crashed")


def kept_log(long: str) -> str:
    """The console log path `xm list -l` gives."""
    match = re.search(r"\(log\s+(\S+?)\s*\)", long)
    assert match, long
    return match.group(1)


def qemu_pids(host: Host) -> list[int]:
    """QEMU processes this host started (their argv names its directory)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"qemu-system" in cmd and str(host.dir).encode() in cmd:
            pids.append(int(pid))
    return pids


def test_a_guest_dying_at_once_stays_listed_as_crashed(host: Host) -> None:
    host.create("dies", extra=DIES_AT_ONCE)
    crashed = wait_crashed(host, "dies")
    domid = crashed[1]
    assert row(host, "dies", "--state=crashed") == crashed
    assert row(host, "dies", "--state=running") is None
    long = host.xm("list", "-l", "dies").stdout
    assert "(state ----c-)" in long and re.search(r"\(shutdown_reason (reboot|crash)\)", long)
    assert re.search(r"\(crash_reason\s+'restarting too fast: (reboot|crash) ", long), long
    assert "restarting too fast" in host.xm("dmesg").stdout
    # the console log is kept and says what the user needs: the guest's own panic
    log = kept_log(long)
    assert "Kernel panic" in open(log, errors="replace").read()
    # the guest is dead: no QEMU, nothing to attach to
    assert qemu_pids(host) == []
    r = host.xm("console", "dies", check=False)
    assert (r.returncode, r.stderr.splitlines()[0]) == (1, "Error: Domain 'dies' is not started")
    # it still holds its name, as in Xen
    r = host.xm("create", str(host.write_config("again", name="dies")), check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == f"Error: Domain 'dies' already exists with ID '{domid}'"
    # ... across an xend restart too
    host.xend("stop")
    host.xend("start")
    assert row(host, "dies") == crashed
    assert kept_log(host.xm("list", "-l", "dies").stdout) == log
    # destroy removes it and its kept log
    host.xm("destroy", "dies")
    assert row(host, "dies") is None and not os.path.exists(log)
    assert host.xm("list", "dies", check=False).returncode == 3


def test_the_crashed_domain_holds_no_taps(make_host) -> None:  # type: ignore[no-untyped-def]
    """Its vifs' taps go with its QEMU; its record stays, consistent with the rest."""
    host = make_host(BRIDGED, netns=True)
    info = host.create("dnet", "-p", extra=DIES_AT_ONCE, vif=["bridge=xenbr0"])
    assert snapshot.take(host).taps() == {f"vif{info['domid']}.0"}  # paused: not dead yet
    host.xm("unpause", "dnet")
    wait_crashed(host, "dnet")
    snap = snapshot.take(host)
    assert snap.taps() == set() and snap.qemus == {}
    assert [r.state for r in snap.running.values()] == ["crashed"]
    assert snapshot.half_there(snap) == []
    host.xm("destroy", "dnet")
    snap = snapshot.take(host)
    assert snapshot.fully_gone(snap, "dnet") and snap.taps() == set()


def test_a_managed_domain_dying_at_once_is_halted_again_when_destroyed(host: Host) -> None:
    host.xm("new", str(host.write_config("mdies", extra=DIES_AT_ONCE)))
    host.xm("start", "mdies")
    wait_crashed(host, "mdies")
    assert "Kernel panic" in open(kept_log(host.xm("list", "-l", "mdies").stdout),
                                  errors="replace").read()
    host.xm("destroy", "mdies")
    halted = row(host, "mdies")
    assert halted is not None and halted[1:] == ["96", "1", "0.0"]  # no ID, no state
    assert row(host, "mdies", "--state=halted") == halted
    assert qemu_pids(host) == []


def test_on_crash_preserve_keeps_the_panicked_guest_crashed(host: Host) -> None:
    host.create("pres", on_crash="preserve")
    with host.console("pres") as con:  # a panic the pvpanic driver reports
        con.run(IN_BACKGROUND.format("echo c > /proc/sysrq-trigger"))
    wait_crashed(host, "pres")
    assert "(shutdown_reason crash)" in host.xm("list", "-l", "pres").stdout
    long = host.xm("list", "-l", "pres").stdout
    assert re.search(r"\(crash_reason\s+'the guest crashed; on_crash=preserve keeps it'", long)
    # preserve keeps the guest's memory: its QEMU stays, and a core can be taken
    assert len(qemu_pids(host)) == 1
    core = host.dir / "pres.core"
    host.xm("dump-core", "pres", str(core))
    assert core.stat().st_size > 32 << 20
    log = kept_log(long)
    host.xm("destroy", "pres")
    host.wait_for(lambda: qemu_pids(host) == [], 10, "its QEMU to be gone")
    assert row(host, "pres") is None and not os.path.exists(log)


def test_memory_below_the_floor_is_refused(host: Host) -> None:
    for command in ("create", "new"):
        r = host.xm(command, str(host.write_config("tiny", memory=16)), check=False)
        assert r.returncode == 1, r
        assert r.stderr.splitlines()[0] == "Error: Domain memory must be at least 32768 KB"
        assert "Traceback" not in r.stderr
    assert row(host, "tiny") is None and qemu_pids(host) == []
    assert host.xend("status", check=False).returncode == 0
