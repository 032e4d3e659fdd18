"""xend itself: start/stop/status, domains outliving it, managed domains,
concurrency, and the errors a user sees."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import time

from conftest import BIN, Host


def test_xend_status_start_stop(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host(start=False)
    assert host.xend("status", check=False).returncode == 3
    r = host.xm("list", check=False)
    assert r.returncode == 1
    assert "Error: Unable to connect to xend: " in r.stderr and "Is xend running?" in r.stderr
    host.xend("start")
    assert host.xend("status", check=False).returncode == 0
    host.xend("start")  # already running: still success
    assert host.xend("status", check=False).returncode == 0
    assert host.xend("bogus", check=False).returncode == 1
    host.xend("stop")
    assert host.xend("status", check=False).returncode == 3


def test_kill9_xend_loses_no_domain(host: Host) -> None:
    names = ["k1", "k2", "k3"]
    before = {n: host.create(n) for n in names}
    for n in names:
        with host.console(n) as con:
            con.run(f"echo {n}-was-here > /run/mark")
    host.kill9()
    assert host.xm("list", check=False).returncode == 1
    time.sleep(1)
    host.xend("start")
    after = {d["name"]: d for d in host.client().call("domain.list")}
    for n in names:
        assert after[n]["domid"] == before[n]["domid"]
        assert after[n]["uuid"] == before[n]["uuid"]
        assert after[n]["state"] in ("r-----", "-b----")
        assert after[n]["uptime"] >= 1.0  # uptime kept counting: start time preserved
        assert after[n]["start_time"] == before[n]["start_time"]
        with host.console(n) as con:
            assert con.run("cat /run/mark").strip() == f"{n}-was-here"
    # and the adopted domains are fully controllable
    host.xm("destroy", "k2")
    assert host.xm("domid", "k2", check=False).returncode == 3
    next_id = host.create("k4")["domid"]
    assert next_id > max(d["domid"] for d in before.values())


def test_kill9_xend_inside_a_create_rolls_it_back(make_host) -> None:  # type: ignore[no-untyped-def]
    """xend killed while its QEMU has started but the create has not finished: the
    next xend rolls the create back (QEMU killed, record dropped), and a retry works."""
    host = make_host(start=False)
    qemu = shutil.which("qemu-system-x86_64")
    wrapper = host.dir / "qemu-slow"
    # QEMU daemonizes (paused, its pidfile written), then the launch lingers here
    wrapper.write_text(f'#!/bin/sh\n{qemu} "$@"; rc=$?\n'
                       f'[ -e {host.dir}/go ] || sleep 30\nexit $rc\n')
    wrapper.chmod(0o755)
    host.config.write_text(host.config.read_text() + f"(qemu-binary {wrapper})\n")
    host.start()
    path = host.write_config("half")
    xm = subprocess.Popen([str(BIN / "xm"), "create", "-q", str(path)], env=host.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pidfiles = host.wait_for(lambda: list((host.dir / "run" / "dom").glob("*/qemu.pid")),
                             60, "QEMU started inside the create")
    qemu_pid = int(host.wait_for(lambda: pidfiles[0].read_text().strip(), 10, "pidfile"))
    host.kill9()
    xm.communicate(timeout=30)
    assert xm.returncode != 0
    (host.dir / "go").touch()  # the wrapper may end now: the next launch is quick
    host.xend("start")
    assert host.xm("domid", "half", check=False).returncode == 3
    host.wait_for(lambda: not os.path.exists(f"/proc/{qemu_pid}"), 10, "its QEMU killed")
    assert "rolled back" in host.xm("dmesg").stdout
    host.xm("create", "-q", str(path))  # not "already exists"
    with host.console("half") as con:
        assert con.run("echo whole").strip() == "whole"


def test_xend_stop_start_keeps_domains_and_applies_on_xend_stop(host: Host) -> None:
    host.create("stay")
    host.create("leave", on_xend_stop="shutdown")
    for n in ("stay", "leave"):
        host.console(n).close()
    host.xend("stop")
    host.xend("start")
    names = [d["name"] for d in host.client().call("domain.list")]
    assert "stay" in names and "leave" not in names
    with host.console("stay") as con:
        assert con.run("echo ok").strip() == "ok"


def test_managed_domains_new_start_delete_autostart(host: Host) -> None:
    path = host.write_config("m1")
    host.xm("new", str(path))
    row = [ln for ln in host.xm("list").stdout.splitlines() if ln.startswith("m1 ")][0]
    assert row.split() == ["m1", "96", "1", "0.0"]  # no ID, no state while halted
    host.xm("start", "m1")
    with host.console("m1") as con:
        assert con.run("echo managed").strip() == "managed"
    r = host.xm("delete", "m1", check=False)
    assert r.returncode == 1 and "Error: Domain is not halted." in r.stderr
    host.xm("destroy", "m1")
    assert host.info("m1")["domid"] is None  # still known, halted
    host.xm("delete", "m1")
    assert host.xm("domid", "m1", check=False).returncode == 3
    # on_xend_start=start: started when xend starts
    host.xm("new", str(host.write_config("auto1", on_xend_start="start")))
    host.xend("stop")
    host.xend("start")
    assert host.info("auto1")["domid"] is not None
    host.console("auto1").close()


def test_twenty_concurrent_creates_get_distinct_ids(host: Host) -> None:
    paths = [host.write_config(f"c{i:02d}", memory=32) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda p: host.xm("create", "-p", str(p), check=False), paths))
    for r in results:
        assert r.returncode == 0, r.stderr
    ids = [int(r.stdout.strip().rsplit("id=", 1)[1].rstrip(")")) for r in results]
    assert len(set(ids)) == 20
    listed = {d["name"]: d["domid"] for d in host.client().call("domain.list")}
    for i, domid in enumerate(ids):
        assert listed[f"c{i:02d}"] == domid
    for i in range(20):
        host.xm("destroy", f"c{i:02d}")


def test_errors_users_see(host: Host) -> None:
    r = host.xm("destroy", "nosuch", check=False)
    assert (r.returncode, r.stderr.strip()) == (3, "Error: Domain 'nosuch' does not exist.")
    r = host.xm("destroy", "0", check=False)
    assert r.returncode == 1 and "Error: Cannot destroy privileged domain 0" in r.stderr
    r = host.xm("pause", "Domain-0", check=False)
    assert "Error: Cannot pause privileged domain Domain-0" in r.stderr
    r = host.xm("shutdown", "0", check=False)
    assert "Error: Domain 0 cannot be shutdown" in r.stderr
    r = host.xm("create", str(host.write_config("nk", kernel="/nonexistent/vmlinuz")),
                check=False)
    assert r.returncode == 1 and "Error: Kernel image does not exist: /nonexistent/vmlinuz" \
        in r.stderr
    host.create("dup")
    r = host.xm("create", str(host.write_config("dup2", name="dup")), check=False)
    dup_id = host.info("dup")["domid"]
    assert f"Error: Domain 'dup' already exists with ID '{dup_id}'" in r.stderr
    bad = host.dir / "bad.cfg"
    bad.write_text("memory = = 3\n")
    r = host.xm("create", str(bad), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith(f"Errors were found at line 1 while processing {bad}:")
    r = host.xm("create", "no-such-config", check=False)
    assert "Error: Unable to open config file: no-such-config" in r.stderr
    r = host.xm("create", str(host.write_config("oc", on_crash="explode")), check=False)
    assert "Error: Invalid event handling mode: crash" in r.stderr
    assert "Traceback" not in r.stderr
    # xend is still fine after all of that
    assert host.xend("status", check=False).returncode == 0


def test_reserved_names_are_refused(host: Host) -> None:
    r = host.xm("create", str(host.write_config("d0", name="Domain-0")), check=False)
    assert r.returncode == 1
    assert "Error: Domain 'Domain-0' already exists with ID '0'" in r.stderr
    r = host.xm("new", str(host.write_config("num", name="42")), check=False)
    assert r.returncode == 1 and "Error: Invalid VM Name: a name of digits only" in r.stderr
    names = [ln.split()[0] for ln in host.xm("list").stdout.splitlines()[1:]]
    assert names == ["Domain-0"]


def test_qemu_killed_behind_our_back_is_noticed(host: Host) -> None:
    info = host.create("victim", on_crash="destroy")
    os.kill(info["pid"], 9)
    host.wait_for(lambda: host.xm("domid", "victim", check=False).returncode == 3, 20,
                  "xend to notice the dead QEMU")
    assert "exited unexpectedly" in host.xm("dmesg").stdout


def _meminfo_kib(key: str) -> int:
    with open("/proc/meminfo") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(key + ":"))


def test_info_and_config_listing(host: Host) -> None:
    out = host.xm("info").stdout.splitlines()
    keys = [ln.split(":")[0].strip() for ln in out]
    assert keys[:4] == ["host", "release", "version", "machine"]
    assert "system" not in keys and keys[-1] == "xend_config_format"
    assert any(ln.startswith("nr_cpus                : ") for ln in out)
    info = dict((ln[:23].strip(), ln[25:]) for ln in out if ln[23:25] == ": ")
    # Xen's shapes, which scripts parse (spec §1.3)
    # `gcc -v`'s last line; the vendor's part only where the binary records it
    assert re.fullmatch(r"gcc version \d+\.\d+\.\d+( \(.*\))? ", info["cc_compiler"])
    assert re.fullmatch(r"[0-9a-f]{8}(:[0-9a-f]{8}){7}", info["hw_caps"])
    assert info["hw_caps"] != ":".join(["00000000"] * 8)
    assert re.fullmatch(r"node0:\d+(-\d+)?", info["node_to_cpu"])
    assert info["xen_caps"].startswith("xen-3.0-x86_64 ")
    assert re.fullmatch(r"virt_start=0x[0-9a-f]+", info["platform_params"])
    assert int(info["total_memory"]) * 1024 <= _meminfo_kib("MemTotal") < \
        (int(info["total_memory"]) + 1) * 1024
    cfg = host.xm("info", "-c").stdout
    assert f"{'qemu-accel':<38}: tcg" in cfg
    assert "xend ready" in host.xm("log").stdout


def test_accel_auto_probe_boots_a_guest(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host(start=False)
    host.config.write_text(host.config.read_text().replace("(qemu-accel tcg)",
                                                           "(qemu-accel auto)"))
    host.xend("start")
    # the accelerator chosen is in xend's message ring (xm info's xen_caps now lists
    # the guest kinds, as Xen's did)
    dmesg = host.xm("dmesg").stdout
    assert "guests run under QEMU with kvm" in dmesg or "guests run under QEMU with tcg" in dmesg
    host.create("probe")
    with host.console("probe") as con:
        assert con.run("echo booted").strip() == "booted"


def test_kvm_probe_payload_runs_and_takes_interrupts() -> None:
    """The probe's boot sector, run under TCG, must reach its interrupt handler."""
    import subprocess
    import tempfile

    from dom0.backends.qemu.process import probe_boot_sector

    with tempfile.NamedTemporaryFile(suffix=".img") as img:
        img.write(probe_boot_sector())
        img.flush()
        r = subprocess.run(["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg",
                            "-display", "none", "-nodefaults", "-m", "16", "-device",
                            "isa-debug-exit,iobase=0xf4,iosize=0x04", "-drive",
                            f"file={img.name},format=raw,if=floppy", "-boot", "a"],
                           timeout=60)
    assert r.returncode == (0x41 << 1) | 1
