"""Save/restore and managed suspend/resume on real guests."""

from __future__ import annotations

import os
import stat
import subprocess
import time

from conftest import BIN, Host


def test_save_and_restore_keep_the_guests_memory(host: Host) -> None:
    first = host.create("sv", memory=128)
    with host.console("sv") as con:
        con.run("echo kept-in-ram > /run/mark")
    image = host.dir / "sv.save"
    host.xm("save", "sv", str(image))
    assert host.xm("domid", "sv", check=False).returncode == 3  # saved and gone
    host.xm("restore", str(image))
    again = host.info("sv")
    assert again["uuid"] == first["uuid"] and again["domid"] != first["domid"]
    with host.console("sv") as con:
        assert con.run("cat /run/mark").strip() == "kept-in-ram"
        assert con.run("echo still-alive").strip() == "still-alive"


def test_checkpoint_leaves_the_domain_running_and_names_stay_unique(host: Host) -> None:
    host.create("ck")
    with host.console("ck") as con:
        con.run("echo at-checkpoint > /run/mark")
    image = host.dir / "ck.save"
    host.xm("save", "-c", "ck", str(image))
    domid = host.info("ck")["domid"]
    with host.console("ck") as con:
        assert con.run("cat /run/mark").strip() == "at-checkpoint"
        con.run("echo after-checkpoint > /run/mark")
    r = host.xm("restore", str(image), check=False)
    assert r.returncode == 1
    assert f"Error: Domain 'ck' already exists with ID '{domid}'" in r.stderr
    host.xm("destroy", "ck")
    host.xm("restore", "-p", str(image))
    assert host.info("ck")["state"] == "--p---"
    host.xm("unpause", "ck")
    with host.console("ck") as con:
        assert con.run("cat /run/mark").strip() == "at-checkpoint"


def test_damaged_or_foreign_save_files_are_refused_before_anything_starts(host: Host) -> None:
    host.create("dm")
    host.console("dm").close()
    image = host.dir / "dm.save"
    host.xm("save", "dm", str(image))
    data = image.read_bytes()
    corrupt = host.dir / "corrupt.save"
    corrupt.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF])
                        + data[len(data) // 2 + 1:])
    truncated = host.dir / "truncated.save"
    truncated.write_bytes(data[: len(data) - 1000])
    foreign = host.dir / "foreign.save"
    foreign.write_bytes(b"LinuxGuestRecord" + b"\0" * 100)
    for path, text in ((corrupt, "is corrupted (checksum mismatch)"),
                       (truncated, "truncated"),
                       (foreign, "not a valid guest state file: found b'LinuxGue'")):
        r = host.xm("restore", str(path), check=False)
        assert r.returncode == 1 and text in r.stderr, r.stderr
    names = [d["name"] for d in host.client().call("domain.list")]
    assert names == ["Domain-0"]
    r = host.xm("save", "dm", str(host.dir / "x.save"), check=False)
    assert r.returncode == 3  # dm is gone already
    host.xm("restore", str(image))  # the intact file still works
    host.console("dm").close()


def test_managed_suspend_resume_and_on_xend_stop_suspend(host: Host) -> None:
    host.xm("new", str(host.write_config("ms", on_xend_stop="suspend",
                                         on_xend_start="start")))
    host.xm("start", "ms")
    with host.console("ms") as con:
        con.run("echo suspended-state > /run/mark")
    host.xm("suspend", "ms")
    assert host.info("ms")["domid"] is None
    r = host.xm("resume", "nosuch", check=False)
    assert r.returncode == 3
    host.xm("resume", "ms")
    with host.console("ms") as con:
        assert con.run("cat /run/mark").strip() == "suspended-state"
        con.run("echo across-xend-restart > /run/mark")
    r = host.xm("resume", "ms", check=False)
    assert "Error: Cannot resume domain that is not suspended." in r.stderr
    host.xend("stop")  # on_xend_stop=suspend
    host.xend("start")  # on_xend_start=start resumes it
    with host.console("ms") as con:
        assert con.run("cat /run/mark").strip() == "across-xend-restart"
    transient = host.create("tr")
    r = host.xm("suspend", "tr", check=False)
    assert "Error: Domain is not managed by Xend lifecycle support." in r.stderr
    assert transient["domid"] == host.info("tr")["domid"]


def test_xendomains_start_stop_save_and_restore(host: Host) -> None:
    import os
    import subprocess

    auto = host.dir / "auto"
    auto.mkdir()
    save = host.dir / "save"
    for name in ("a1", "a2"):
        (auto / name).write_text(host.write_config(name).read_text())
    sysconfig = host.dir / "xendomains"
    sysconfig.write_text(f'XENDOMAINS_AUTO={auto}\nXENDOMAINS_SAVE="{save}"\n'
                         f"XENDOMAINS_CREATE_USLEEP=0\nXENDOMAINS_LOCKFILE={host.dir}/lock\n")
    env = dict(host.env, XENDOMAINS_CONFIG=str(sysconfig))

    def xendomains(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "xendomains"), cmd], env=env, capture_output=True,
                              text=True, timeout=300, cwd=host.dir)

    assert xendomains("status").returncode == 3
    r = xendomains("start")
    assert r.returncode == 0 and "Starting auto Xen domains: a1 a2 [done]" in r.stdout
    assert xendomains("start").stdout.strip() == "xendomains already running (lockfile exists)"
    st = xendomains("status")
    assert (st.returncode, st.stdout.strip()) == (0, "Checking for xendomains: a1 a2")
    with host.console("a1") as con:
        con.run("echo across-host-reboot > /run/mark")
    r = xendomains("stop")
    assert " a1(save) a2(save) [done]" in r.stdout, r.stdout
    assert sorted(os.listdir(save)) == ["a1", "a2"]
    assert [d["name"] for d in host.client().call("domain.list")] == ["Domain-0"]
    r = xendomains("start")  # restores the saved two, skips their auto configs
    assert "Restoring Xen domains: a1 a2 [done]" in r.stdout
    assert "a1(skip) a2(skip)" in r.stdout
    assert os.listdir(save) == []
    with host.console("a1") as con:
        assert con.run("cat /run/mark").strip() == "across-host-reboot"


def test_block_attach_to_a_suspended_domain_survives_an_xend_restart(host: Host) -> None:
    """Regression: block-attach on a suspended managed domain once rewrote its stored
    state as halted, so after an xend restart `xm resume` was refused and the
    checkpoint was orphaned."""
    import subprocess

    img = host.dir / "late.img"
    content = host.dir / "late.d"
    content.mkdir()
    (content / "hello").write_text("attached-while-suspended")
    subprocess.run(["truncate", "-s", "24M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(content), str(img)], check=True)
    host.xm("new", str(host.write_config("sb")))
    host.xm("start", "sb")
    with host.console("sb") as con:
        con.run("echo before-suspend > /run/mark")
    host.xm("suspend", "sb")
    host.xm("block-attach", "sb", f"file:{img}", "xvdb", "w")
    assert host.info("sb")["power_state"] == "suspended"
    host.xend("stop")
    host.xend("start")
    assert host.info("sb")["power_state"] == "suspended"
    host.xm("resume", "sb")
    with host.console("sb") as con:
        assert con.run("cat /run/mark").strip() == "before-suspend"
        con.run("i=0; while [ ! -b /dev/xvdb ] && [ $i -lt 100 ]; do usleep 100000; "
                "i=$((i+1)); done")
        assert con.run("mount -o ro /dev/xvdb /mnt && cat /mnt/hello && umount /mnt").strip() \
            == "attached-while-suspended"
    assert not list((host.dir).rglob("checkpoint.chk"))


def test_nothing_xend_writes_is_readable_by_other_users(host: Host) -> None:
    """Save files, checkpoints, core dumps and the database hold guests' memory and
    configs: 0600.  Logs are 0640 at most.  Nothing xend or its QEMUs create is open
    to other users."""
    host.create("pv")
    host.xm("new", str(host.write_config("pm")))
    host.xm("start", "pm")
    for name in ("pv", "pm"):
        host.console(name).close()
    host.xm("save", "-c", "pv", str(host.dir / "pv.save"))
    host.xm("dump-core", "pv", str(host.dir / "pv.core"))
    host.xm("suspend", "pm")
    written_by_the_test = {host.config, *host.dir.glob("*.cfg")}
    seen = set()
    for root, dirs, files in os.walk(host.dir):
        for entry in [*dirs, *files]:
            path = os.path.join(root, entry)
            if path in map(str, written_by_the_test):
                continue
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            seen.add(entry)
            assert not mode & 0o007, f"{path} is {mode:o}"
            if entry.endswith((".save", ".chk", ".core")) or entry.startswith("xend.db"):
                assert not mode & 0o077, f"{path} is {mode:o}"
            if entry.endswith(".log"):
                assert not mode & 0o137, f"{path} is {mode:o}"
    assert {"pv.save", "pv.core", "checkpoint.chk", "xend.db", "xend.log"} <= seen


def test_kill9_xend_during_save_leaves_no_partial_and_the_guest_runs(host: Host) -> None:
    host.create("ks", memory=512)
    with host.console("ks") as con:  # memory that does not compress: a slow save
        con.run("dd if=/dev/urandom of=/run/fill bs=1M count=200 2>/dev/null; echo done",
                timeout=300)
    image = host.dir / "ks.save"
    xm = subprocess.Popen([str(BIN / "xm"), "save", "ks", str(image)], env=host.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # killed as soon as the save writes (the small guest kernel saves 200 MiB in well
    # under a second: a pause here let the save finish first, once in a full run)
    deadline = time.monotonic() + 60
    while not (found := list(host.dir.glob("ks.save.partial-*"))):
        assert time.monotonic() < deadline, "the save did not start writing"
        time.sleep(0.005)
    partial = found[0]
    host.kill9()
    xm.communicate(timeout=30)
    assert partial.exists() and not image.exists()  # the save really was cut
    host.xend("start")
    assert not partial.exists() and not image.exists()
    assert "cut short" in host.xm("dmesg").stdout
    assert host.info("ks")["state"] in ("r-----", "-b----")
    with host.console("ks") as con:
        assert con.run("echo still-here").strip() == "still-here"


def test_a_save_to_a_full_disk_says_why(host: Host) -> None:
    host.create("full")
    host.console("full").close()
    small = host.dir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(small)], check=True)
    try:
        image = small / "full.save"
        r = host.xm("save", "full", str(image), check=False)
        assert r.returncode == 1
        assert f"No space left on device writing {image}" in r.stderr, r.stderr
        assert list(small.iterdir()) == []  # no partial left
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert host.info("full")["state"] in ("r-----", "-b----")
    with host.console("full") as con:
        assert con.run("echo alive").strip() == "alive"
