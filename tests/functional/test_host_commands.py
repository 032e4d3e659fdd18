"""xm trigger, debug-keys, shell and serve on real guests, checked where a user
would look: the guest's own /proc (NMI counter, uptime), its power-off, xm dmesg,
and xm's output through the shell and through `xm serve` as a stdio pipe."""

from __future__ import annotations

import subprocess

from conftest import BIN, Host


def _nmi_count(con) -> int:  # type: ignore[no-untyped-def]
    line = next(ln for ln in con.run("cat /proc/interrupts").splitlines()
                if ln.strip().startswith("NMI:"))
    return sum(int(w) for w in line.split()[1:] if w.isdigit())


def test_nmi_trigger_is_seen_by_the_guest(host: Host) -> None:
    host.create("nmi")
    with host.console("nmi") as con:
        before = _nmi_count(con)
        host.xm("trigger", "nmi", "nmi")
        host.wait_for(lambda: _nmi_count(con) > before, 30, "the guest to count the NMI")
        # the guest's kernel says it got an NMI it had no reason for, and runs on
        assert "NMI" in con.run("dmesg | tail -n 20")
        assert con.run("echo alive").strip() == "alive"


def test_reset_trigger_reboots_the_guest_in_place(host: Host) -> None:
    info = host.create("rst")
    with host.console("rst") as con:
        con.run("echo before-reset > /run/mark")
        con.run("sleep 3")  # so that a fresh boot's uptime is visibly smaller
        old_uptime = float(con.run("cut -d' ' -f1 /proc/uptime"))
        host.xm("trigger", "rst", "reset")

        def fresh_boot() -> bool:
            # QEMU resets just after answering, so the old shell may still answer once
            con.wait_prompt(90)
            try:
                return float(con.run("cut -d' ' -f1 /proc/uptime", timeout=5)) < old_uptime
            except (TimeoutError, ValueError):
                return False
        host.wait_for(fresh_boot, 120, "the guest to boot afresh")
        assert "No such file" in con.run("cat /run/mark")  # tmpfs is new: a real boot
    # Xen's trigger resets the machine; the domain, its ID and its QEMU stay
    after = host.info("rst")
    assert after["domid"] == info["domid"] and after["pid"] == info["pid"]


def test_power_trigger_powers_the_guest_off(host: Host) -> None:
    host.create("pwr", on_poweroff="destroy")
    with host.console("pwr") as con:
        con.run("true")
    host.xm("trigger", "pwr", "power")
    host.wait_for(lambda: host.xm("domid", "pwr", check=False).returncode == 3, 60,
                  "the guest to power off from its ACPI power button")


def test_s3resume_trigger_wakes_a_suspended_guest(host: Host) -> None:
    host.create("s3")
    with host.console("s3") as con:
        assert "mem" in con.run("cat /sys/power/state")
        # QEMU refuses to wake a guest that is not asleep: that tells when it sleeps
        r = host.xm("trigger", "s3", "s3resume", check=False)
        assert r.returncode == 1 and "guest is not in suspended state" in r.stderr
        con.run("(echo mem > /sys/power/state; echo woke > /run/woke) >/dev/null 2>&1 &")

        def woken_by_trigger() -> bool:
            return host.xm("trigger", "s3", "s3resume", check=False).returncode == 0
        host.wait_for(woken_by_trigger, 60, "the guest to sleep, then be woken")
        # nothing else wakes an S3 guest under QEMU (no RTC alarm is set)
        con.wait_prompt(30)  # the serial line may drop a byte across the sleep
        assert "woke" in con.run("cat /run/woke")
        log = con.run("dmesg")
        assert "PM: suspend entry (deep)" in log and "PM: suspend exit" in log


def test_trigger_errors_as_spec(host: Host) -> None:
    host.create("terr")
    r = host.xm("trigger", "terr", "bogus", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: Invalid trigger: bogus\n")
    r = host.xm("trigger", "terr", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: 'xm trigger' requires between 2 and 3 arguments.")
    r = host.xm("trigger", "terr", "nmi", "x", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: Invalid argument.")
    r = host.xm("trigger", "ghost", "nmi", check=False)
    assert r.returncode == 3 and r.stderr == "Error: Domain 'ghost' does not exist.\n"
    host.xm("new", str(host.write_config("halted")))
    r = host.xm("trigger", "halted", "nmi", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: Domain 'halted' is not started\n")


def test_debug_keys_dump_domains_into_dmesg(host: Host) -> None:
    info = host.create("dbg", vcpus=2)
    host.xm("debug-keys", "qv")
    text = host.xm("dmesg").stdout
    assert f"General information for domain {info['domid']} (dbg):" in text
    assert f"qemu pid={info['pid']} accel=tcg" in text
    threads = [ln for ln in text.splitlines() if "VCPU" in ln and "thread=" in ln]
    assert len(threads) == 2
    for line in threads:  # each vCPU thread really is a thread of the domain's QEMU
        tid = line.split("thread=")[1].split()[0]
        with open(f"/proc/{info['pid']}/task/{tid}/comm") as f:
            assert "CPU" in f.read()


def test_shell_runs_xm_commands_from_a_pipe(host: Host) -> None:
    host.create("sh1")
    r = host.xm("shell", input="list sh1\ndestroy ghost\ndomid sh1\nquit\n")
    assert r.stdout.startswith('The Xen Master. Type "help" for a list of functions.\nxm> ')
    assert "sh1 " in r.stdout and str(host.info("sh1")["domid"]) in r.stdout.split("xm> ")[3]
    assert "Error: Domain 'ghost' does not exist." in r.stderr


def test_xm_list_through_xm_serve(host: Host) -> None:
    """`ssh host xm serve` without ssh: any stdio pipe carries xm's requests."""
    host.create("srv")
    local = host.xm("list").stdout
    # the serving side finds xend by its own XM_SERVER; the client has none at all
    client_env = {k: v for k, v in host.env.items() if k != "XM_SERVER"}
    client_env["DOM0_XEND_COMMAND"] = f"env XM_SERVER={host.socket} {BIN / 'xm'} serve"
    remote = subprocess.run([str(BIN / "xm"), "list"], env=client_env, capture_output=True,
                            text=True, timeout=60)
    assert remote.returncode == 0, remote.stderr
    # the same table (Domain-0's CPU time may have moved a tenth on)
    assert [ln.split()[:3] for ln in remote.stdout.splitlines()] == \
        [ln.split()[:3] for ln in local.splitlines()]
    assert any(ln.startswith("srv ") for ln in remote.stdout.splitlines())
    r = subprocess.run([str(BIN / "xm"), "domid", "nosuch"], env=client_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and r.stderr == "Error: Domain 'nosuch' does not exist.\n"
