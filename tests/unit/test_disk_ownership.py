"""ACM below xend for disks (issue 12 item 4): the user ID range, the choice of a
launch's user, the records that give disks back, and the wrapper that applies them
around a (fake) machine, across a restart of xend."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from dom0.backends.fake import FakeMachines
from dom0.backends.machine import MachineSpec
from dom0.backends.qemu import fdpass
from dom0.devices import vbd as vbd_mod
from dom0.domain.ownership import DiskOwnership
from dom0.errors import ConfigError, SecurityError
from dom0.model.config import DiskSpec
from dom0.security import ownership as rules
from dom0.store.db import Store
from dom0.store.layout import Layout


def test_the_uid_range_is_first_to_last_or_none() -> None:
    assert rules.parse_range("300000-300999") == range(300000, 301000)
    assert rules.parse_range(" 5000 - 5000 ") == range(5000, 5001)
    assert rules.parse_range("") is None and rules.parse_range("none") is None
    for bad in ("300000", "a-b", "3000-2000", "0-999", "10-20000", "1000-4294967295"):
        with pytest.raises(ConfigError, match="xend-qemu-uid-range"):
            rules.parse_range(bad)


def test_a_launch_gets_the_lowest_id_no_domain_and_no_account_holds() -> None:
    ids = range(5000, 5004)
    assert rules.pick_uid(ids, [], lambda uid: False) == 5000
    assert rules.pick_uid(ids, [5000, 5002], lambda uid: False) == 5001
    assert rules.pick_uid(ids, [5000], lambda uid: uid == 5001) == 5002
    with pytest.raises(SecurityError, match="No free user ID"):
        rules.pick_uid(ids, [5000, 5001, 5002], lambda uid: uid == 5003)


def test_only_writable_host_paths_change_owner() -> None:
    assert rules.takes("file", True) and rules.takes("phy", True)
    assert rules.takes("tap:aio", True) and rules.takes("tap:qcow2", True)
    assert not rules.takes("file", False)  # shared read-only: kept as it is
    assert not rules.takes("nbd", True) and not rules.takes("iscsi", True)
    assert not rules.takes("empty", False)


def test_a_grant_record_round_trips() -> None:
    grant = rules.Grant("/srv/a.img", "abc", rules.Owner.of(0o100640, 0, 4), 300000)
    assert grant.before == rules.Owner(0, 4, 0o640)
    assert rules.Grant.from_record(grant.to_record()) == grant
    assert grant.still_given(300000) and not grant.still_given(300001)
    assert rules.Owner.from_xattr(rules.Owner(0, 4, 0o640).to_xattr()) == rules.Owner(0, 4, 0o640)
    assert rules.Owner.from_xattr(b"garbage") is None


def test_a_handed_over_image_is_read_from_its_descriptor_set() -> None:
    raw = {"node-name": "vbd1", "driver": "file", "filename": "/srv/a.img"}
    assert fdpass.with_fdset(raw, 3)["filename"] == "/dev/fdset/3"
    assert raw["filename"] == "/srv/a.img"  # not changed in place
    qcow = {"node-name": "vbd1", "driver": "qcow2",
            "file": {"node-name": "vbd1-file", "driver": "file", "filename": "/srv/a.qcow2"}}
    assert fdpass.with_fdset(qcow, 7)["file"]["filename"] == "/dev/fdset/7"
    sets = [{"fdset-id": 1, "fds": [{"fd": 30, "opaque": "vbd1"}]},
            {"fdset-id": 2, "fds": [{"fd": 31, "opaque": "vbd2"}]},
            {"fdset-id": 4, "fds": [{"fd": 32}]}]
    assert fdpass.fdsets_of(sets, "vbd2") == [2]
    assert not fdpass.unprivileged(None)
    assert fdpass.unprivileged(os.getpid()) == (os.geteuid() != 0)


def test_the_store_keeps_each_launchs_user_until_released(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "xend.db"))
    assert store.take_qemu_uid("a", lambda taken: 5000 + len(taken)) == 5000
    assert store.take_qemu_uid("b", lambda taken: 5000 + len(taken)) == 5001
    assert store.take_qemu_uid("a", lambda taken: 9999) == 5000  # held already
    store.close()
    store = Store(str(tmp_path / "xend.db"))  # xend restarted
    assert store.qemu_users() == {"a": 5000, "b": 5001}
    store.release_qemu_uid("a")
    assert store.qemu_uid("a") is None and store.qemu_users() == {"b": 5001}


def _spec(*disks: vbd_mod.Vbd) -> MachineSpec:
    return MachineSpec(name="d", uuid="u", memory=64, maxmem=64, vcpus=1, kernel="/k",
                       disks=tuple(disks))


def _owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_a_labelled_launch_runs_as_its_user_and_a_later_xend_gives_its_disks_back(
        tmp_path: Path) -> None:
    # the process's own ID stands for a QEMU user: chown to it needs no privilege
    me = os.getuid()
    rw, ro = tmp_path / "rw.img", tmp_path / "ro.img"
    for img in (rw, ro):
        img.write_bytes(b"\0" * 512)
        img.chmod(0o644)
    disks = [vbd_mod.parse(DiskSpec(f"file:{rw}", "xvda", "w")),
             vbd_mod.parse(DiskSpec(f"file:{ro}", "xvdb", "r"))]
    layout = Layout(*(str(tmp_path / d) for d in ("st", "dm", "run", "log", "dump")))
    db = str(tmp_path / "xend.db")
    fake = FakeMachines()

    async def scenario() -> None:
        ownership = DiskOwnership(Store(db), range(me, me + 1), lambda spec: True,
                                  account_exists=lambda uid: False)
        machine = ownership.wrap(fake(layout.domain("inst1")))
        await machine.launch(_spec(*disks), events=None)  # type: ignore[arg-type]
        assert fake.made[0].spec is not None and fake.made[0].spec.run_as == (me, me)
        assert _owner(rw)[2] == 0o600 and _owner(ro)[2] == 0o644  # read-only: shared
        assert ownership.store.disk_owners("inst1")[0]["mode"] == 0o644
        # a second xend (the first was killed) kills the machine: the disk comes back
        later = DiskOwnership(Store(db), range(me, me + 1), lambda spec: True)
        await later.wrap(fake(layout.domain("inst1"))).kill()
        assert _owner(rw)[2] == 0o644
        assert later.store.qemu_users() == {} and later.store.disk_owners() == []

    asyncio.run(scenario())


def test_an_unlabelled_launch_runs_as_before_and_leftovers_are_swept(tmp_path: Path) -> None:
    me = os.getuid()
    rw = tmp_path / "rw.img"
    rw.write_bytes(b"\0" * 512)
    rw.chmod(0o640)
    disk = vbd_mod.parse(DiskSpec(f"file:{rw}", "xvda", "w"))
    layout = Layout(*(str(tmp_path / d) for d in ("st", "dm", "run", "log", "dump")))
    fake = FakeMachines()

    async def scenario() -> None:
        ownership = DiskOwnership(Store(str(tmp_path / "xend.db")), range(me, me + 1),
                                  lambda spec: False, account_exists=lambda uid: False)
        await ownership.wrap(fake(layout.domain("plain"))).launch(
            _spec(disk), events=None)  # type: ignore[arg-type]
        assert fake.made[0].spec is not None and fake.made[0].spec.run_as is None
        assert _owner(rw)[2] == 0o640 and ownership.store.qemu_users() == {}
        # a launch whose machine is gone (its record left behind) is swept at start
        uid = ownership.user_for("gone")
        ownership.take("gone", uid, disk)
        assert _owner(rw)[2] == 0o600
        ownership.sweep(live={"plain"})
        assert _owner(rw)[2] == 0o640 and ownership.store.qemu_users() == {}

    asyncio.run(scenario())


def test_qemu_drops_to_the_launchs_user_and_a_tap_is_handed_over_by_descriptor(
        tmp_path: Path) -> None:
    from dom0.backends.qemu.argv import build_argv

    paths = Layout(*(str(tmp_path / d) for d in ("st", "dm", "run", "log", "dump"))).domain("i")
    argv = build_argv(_spec(), paths, paused=True)
    assert "-runas" not in argv  # as before: xend's user
    argv = build_argv(MachineSpec(name="d", uuid="u", memory=64, maxmem=64, vcpus=1,
                                  kernel="/k", run_as=(300001, 300001)), paths, paused=True)
    assert argv[argv.index("-runas") + 1] == "300001:300001"
    netdev = {"type": "tap", "id": "vif0", "ifname": "vif1.0", "script": "no",
              "downscript": "no"}
    assert fdpass.tap_by_fd(netdev, "vif0") == {"type": "tap", "id": "vif0", "fd": "vif0"}
