"""migration/policy.py: what an incoming domain may make this host open, on real
files and symlinks in a temporary directory; and that the relocation server
applies it before the launcher's check and the probe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_relocation_proto import REQUEST, TIMEOUT, _Launcher

from dom0.migration import auth
from dom0.migration.auth import Credentials
from dom0.migration.destination import RelocationServer
from dom0.migration.policy import PolicyError, StoragePolicy
from dom0.migration.wire import MigrationError, receive, send


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (the storage root) with an image; outside/ with a secret; symlinks."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "disk.img").write_bytes(b"\0" * 512)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s3cret\n")
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "outside" / "secret")
    (tmp_path / "root" / "subdir-escape").symlink_to(tmp_path / "outside")
    (tmp_path / "rootlink").symlink_to(tmp_path / "root")
    return tmp_path


def disk(uname: str) -> dict[str, Any]:
    return {"uname": uname, "dev": "xvda", "mode": "w", "backend": None}


def policy(tree: Path) -> StoragePolicy:
    return StoragePolicy.from_option(str(tree / "root"))


@pytest.mark.parametrize("uname", [
    "file:{t}/root/disk.img", "tap:aio:{t}/root/disk.img", "tap:qcow2:{t}/root/sub/new.qcow2",
    "file:{t}/root/sub/../disk.img", "file:{t}/rootlink/disk.img",
    "nbd:10.0.0.1:10809", "iscsi://192.0.2.1/iqn.2001-04.com.example:disk/0",
])
def test_disks_under_the_roots_or_on_the_network_are_let_in(tree: Path, uname: str) -> None:
    policy(tree).check({"name": "ok", "disks": [disk(uname.format(t=tree))]})


@pytest.mark.parametrize("uname", [
    "file:/etc/shadow", "tap:aio:/etc/shadow", "phy:/dev/sda", "phy:sda",
    "file:{t}/root/../outside/secret",  # .. out of the root
    "file:{t}/root/escape",  # a symlink inside the root to a file outside
    "file:{t}/root/subdir-escape/secret",  # a symlinked directory
    "file:{t}/rootX/disk.img",  # a sibling whose name starts like the root
    "file:relative/disk.img",
])
def test_disks_outside_the_roots_are_refused(tree: Path, uname: str) -> None:
    with pytest.raises(PolicyError, match="outside this host's relocation storage roots|"
                                          "not an absolute path"):
        policy(tree).check({"name": "bad", "disks": [disk(uname.format(t=tree))]})


def test_the_refusal_names_the_disk_and_where_it_resolves(tree: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        policy(tree).check({"disks": [disk(f"file:{tree}/root/escape")]})
    said = str(refused.value)
    assert f"{tree}/root/escape (resolves to {tree}/outside/secret)" in said
    assert f"xend-relocation-storage-roots: {tree}/root" in said


def test_no_roots_no_host_path(tree: Path) -> None:
    empty = StoragePolicy.from_option("")
    with pytest.raises(PolicyError, match="none configured"):
        empty.check({"disks": [disk(f"file:{tree}/root/disk.img")]})
    empty.check({"name": "diskless", "disks": [], "vifs": []})
    empty.check({"disks": [disk("nbd:10.0.0.1:10809")]})


def test_a_device_listed_as_a_root(tmp_path: Path) -> None:
    listed = StoragePolicy.from_option("/dev/null /dev/mapper")
    listed.check({"disks": [disk("phy:/dev/null")]})
    listed.check({"disks": [disk("phy:/dev/mapper/vg-guest")]})
    with pytest.raises(PolicyError):
        listed.check({"disks": [disk("phy:/dev/zero")]})


@pytest.mark.parametrize("key", ["kernel", "ramdisk", "bootloader"])
def test_kernel_ramdisk_and_bootloader_are_host_paths_too(tree: Path, key: str) -> None:
    policy(tree).check({key: str(tree / "root" / "disk.img")})
    with pytest.raises(PolicyError, match=f"{key}: /etc/shadow is outside"):
        policy(tree).check({key: "/etc/shadow"})
    with pytest.raises(PolicyError, match="must be a string"):
        policy(tree).check({key: 5})


@pytest.mark.parametrize("config, why", [
    ({"disks": "file:/etc/shadow"}, "disks must be a list"),
    ({"disks": [["file:/x", "xvda", "w"]]}, "malformed disk entry"),
    ({"disks": [{"uname": 3, "dev": "xvda", "mode": "w"}]}, "malformed disk entry"),
    ({"disks": [disk("bogus:/etc/shadow")]}, 'Block device type "bogus" is invalid'),
    ({"disks": [disk("file:/x\0y")]}, "not a valid path"),
    ({"vifs": {"bridge": "br0"}}, "vifs must be a list"),
    ({"vifs": [{"options": "bridge=br0"}]}, "a vif without options"),
])
def test_malformed_entries_are_refused_with_a_reason(tree: Path, config: dict[str, Any],
                                                     why: str) -> None:
    with pytest.raises(PolicyError, match=why.replace("(", r"\(")):
        policy(tree).check(config)


def bridges(tmp_path: Path, *names: str) -> StoragePolicy:
    net = tmp_path / "net"
    for name in names:
        (net / name / "bridge").mkdir(parents=True)
    (net / "eth0").mkdir(parents=True)  # an interface that is no bridge
    return StoragePolicy((), str(net))


def vif(**options: str) -> dict[str, Any]:
    return {"vifs": [{"options": options, "devid": 0}]}


def test_only_bridges_that_exist_here(tmp_path: Path) -> None:
    here = bridges(tmp_path, "xenbr0")
    here.check(vif(bridge="xenbr0"))
    here.check(vif(mac="00:16:3e:00:00:01"))  # no bridge named: the script's default
    for name, why in (("br9", "bridge br9 does not exist"), ("eth0", "does not exist"),
                      ("../../etc", "invalid bridge name"), ("", "invalid bridge name"),
                      ("b" * 16, "invalid bridge name")):
        with pytest.raises(PolicyError, match=why):
            here.check(vif(bridge=name))


def test_a_vif_script_is_a_bare_name(tmp_path: Path) -> None:
    here = bridges(tmp_path)
    here.check(vif(script="vif-bridge"))
    here.check(vif(script="vif-bridge bridge=xenbr0"))
    for script in ("/bin/sh", "../../bin/sh", "./evil", ""):
        with pytest.raises(PolicyError, match="bare name"):
            here.check(vif(script=script))


def test_relative_roots_are_refused() -> None:
    with pytest.raises(ValueError, match="not an absolute path"):
        StoragePolicy.from_option("srv/images")


# ---- the server applies it first: the /etc/shadow forgery ---------------------------------


KEY = b"k" * 32


def test_the_etc_shadow_forgery_is_refused_before_anything_starts(tree: Path) -> None:
    """An authenticated peer still cannot name a host file outside the roots: the
    refusal comes before the launcher's check and before the probe."""
    launcher = _Launcher()
    forged = {**REQUEST, "config": {"name": "forged", "kernel": "", "disks": [
        disk("file:/etc/shadow")]}}

    async def main() -> str:
        server = RelocationServer(launcher, "127.0.0.1", 0, "",
                                  credentials=Credentials(key=KEY), policy=policy(tree))
        await server.start()
        assert server.server is not None
        port = server.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            greeting = await receive(reader)
            await auth.prove_to_destination(reader, writer, Credentials(key=KEY), greeting,
                                            tls_verified=False)
            await send(writer, forged)  # and no probe bytes: the refusal comes first
            with pytest.raises(MigrationError) as refused:
                await asyncio.wait_for(receive(reader), TIMEOUT)
            return str(refused.value)
        finally:
            writer.close()
            await server.stop()

    said = asyncio.run(main())
    assert "disk file:/etc/shadow: /etc/shadow is outside this host's relocation" in said
    assert launcher.checked == [] and launcher.launched == []
