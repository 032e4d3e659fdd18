"""Live migration to this same xend (``xm migrate <dom> localhost``, issue 13) and
the destination's refusal carried back to the source, through the real relocation
server on a local TCP port and the domain layer over FakeMachine (no QEMU); and
the name/UUID rules that let exactly that case in (and a managed domain's save
file restored as that domain)."""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from test_lifecycle_policy import World, run

from dom0.backends.fake import FakeMachine
from dom0.domain.domain import Domain
from dom0.errors import BackendError, VmError
from dom0.migration.auth import Credentials
from dom0.migration.destination import RelocationServer
from dom0.migration.policy import StoragePolicy

KEY = Credentials(key=b"0123456789abcdef-localhost-test-key")
UUID = "11111111-2222-3333-4444-555555555555"
OTHER_UUID = "99999999-2222-3333-4444-555555555555"


async def serving(world: World, roots: str = "") -> tuple[RelocationServer, int]:
    """*world*'s relocation server on a free local port (by default no storage
    roots: only the files of a domain moving within this host get in)."""
    server = RelocationServer(world.manager.mover, "127.0.0.1", 0, "", credentials=KEY,
                              policy=StoragePolicy.from_option(roots))
    await server.start()
    assert server.server is not None
    return server, server.server.sockets[0].getsockname()[1]


async def migrated(world: World, name: str, port: int,
                   during: Any = None) -> dict[str, Any]:
    """``xm migrate --live <name> 127.0.0.1``: the job's final view."""
    world.manager.mover.relocation_credentials = KEY
    job_id = world.manager.migrate(name, "127.0.0.1", port, live=True)
    job = world.manager.mover.migrations[job_id]
    if during is not None:
        await during()
    while not job.done:
        await asyncio.sleep(0.01)
    await world.settle()
    return world.manager.migration_status(job_id)


def names(world: World) -> list[str]:
    return sorted(d.name for d in world.manager.table)


async def until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


@run
async def test_localhost_migration_keeps_name_uuid_and_managed_with_a_new_id(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.manager.new(world.config("guest", uuid=UUID))
    before = await world.manager.start_managed("guest")
    world.machines.hold_launch = asyncio.Event()
    old_id, old_machine = before.domid, world.machine(before)
    server, port = await serving(world)

    async def during() -> None:
        # the incoming copy's QEMU is held as it starts: both are listed, the
        # outgoing one as migrating-<name> (as in Xen)
        await until(lambda: len(names(world)) == 2)
        assert names(world) == ["guest", "migrating-guest"]
        assert world.manager.lookup("migrating-guest").domid == old_id
        assert world.manager.lookup("guest").domid != old_id
        assert world.managed_rows() == {"guest": "halted"}  # never the transient name
        assert world.machines.hold_launch is not None
        world.machines.hold_launch.set()

    try:
        view = await migrated(world, "guest", port, during)
    finally:
        await server.stop()
    assert view["error"] is None and view["phase"] == "done"
    [dom] = list(world.manager.table)
    assert (dom.name, dom.uuid, dom.managed) == ("guest", UUID, True)
    assert dom is not before and dom.domid != old_id and dom.domid == view["new_domid"]
    assert world.machine(dom).state == "running" and not old_machine.still_running()
    assert [r["domid"] for r in world.records()] == [dom.domid]
    assert world.managed_rows() == {"guest": "halted"}
    # and it is still the managed domain: it can be shut down and started again
    await world.manager.destroy("guest")
    assert names(world) == ["guest"] and world.manager.lookup("guest").domid is None


@run
async def test_an_unmanaged_domain_migrated_to_localhost_is_listed_once(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    before = await world.manager.create(world.config("guest", uuid=UUID))
    old_id = before.domid
    server, port = await serving(world)
    try:
        view = await migrated(world, "guest", port)
    finally:
        await server.stop()
    assert view["error"] is None
    [dom] = list(world.manager.table)
    assert (dom.name, dom.uuid, dom.managed) == ("guest", UUID, False)
    assert dom.domid != old_id
    assert world.managed_rows() == {}


@run
async def test_a_failed_localhost_migration_gives_the_source_its_name_back(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    before = await world.manager.create(world.config("guest", uuid=UUID))
    server, port = await serving(world)
    world.machines.fail_launch = BackendError("qemu-system-x86_64: cannot set up guest memory")
    try:
        view = await migrated(world, "guest", port)
    finally:
        await server.stop()
    assert view["error"] == "qemu-system-x86_64: cannot set up guest memory"
    [dom] = list(world.manager.table)
    assert dom is before and dom.name == "guest" and world.machine(dom).state == "running"
    assert world.manager.lookup(UUID) is dom
    assert [r["domid"] for r in world.records()] == [dom.domid]


# ---- the destination's reason, whatever it is, reaches the source ------------------------


@pytest.mark.parametrize("refusal", ["name", "uuid"])
@run
async def test_a_refusal_before_the_probe_reaches_xm(tmp_path: Path, refusal: str) -> None:
    """The destination refuses at once while the source sends its 32 MiB probe:
    before issue 13 the destination's close reset the connection, and the source
    saw only ``[Errno 104] Connection reset by peer``."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = World(tmp_path / "a"), World(tmp_path / "b")
    source = await a.manager.create(a.config("guest", uuid=UUID))
    if refusal == "name":
        held = await b.manager.create(b.config("guest", uuid=OTHER_UUID))
        expected = f"Domain 'guest' already exists with ID '{held.domid}'"
    else:
        await b.manager.create(b.config("other", uuid=UUID))
        expected = f"Domain with UUID '{UUID}' already exists as 'other'"
    server, port = await serving(b, roots=str(tmp_path))
    try:
        view = await migrated(a, "guest", port)
    finally:
        await server.stop()
    assert view["error"] == expected
    assert a.manager.lookup("guest") is source and a.machine(source).state == "running"


@run
async def test_a_storage_refusal_reaches_xm(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = World(tmp_path / "a"), World(tmp_path / "b")
    await a.manager.create(a.config("guest", uuid=UUID))
    server, port = await serving(b)
    try:
        view = await migrated(a, "guest", port)
    finally:
        await server.stop()
    assert view["error"].startswith(f"incoming domain: kernel: {a.kernel} is outside this "
                                    "host's relocation storage roots")


@run
async def test_an_unauthenticated_source_is_refused_with_the_reason(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.manager.create(world.config("guest", uuid=UUID))
    server, port = await serving(world)
    world.manager.mover.relocation_credentials = Credentials(key=b"not-the-key-at-all-0123")
    try:
        job_id = world.manager.migrate("guest", "127.0.0.1", port, live=True)
        job = world.manager.mover.migrations[job_id]
        await until(lambda: job.done)
    finally:
        await server.stop()
    assert job.error == "authentication failed: wrong relocation key"
    assert names(world) == ["guest"]


# ---- who may carry a name or UUID already held ------------------------------------------


def departing(world: World, dom: Domain) -> None:
    world.manager.table.depart(dom)


@run
async def test_only_an_incoming_migration_may_take_a_departing_uuid(tmp_path: Path) -> None:
    world = World(tmp_path)
    dom = await world.manager.create(world.config("guest", uuid=UUID))
    life, table = world.manager.lifecycle, world.manager.table
    with pytest.raises(VmError, match="already exists"):  # not while it stays
        life.check(world.config("guest", uuid=UUID), migrating_in=True)
    departing(world, dom)
    assert dom.name == "migrating-guest"
    life.check(world.config("guest", uuid=UUID), migrating_in=True)
    with pytest.raises(VmError, match=f"Domain with UUID '{UUID}' already exists as "
                                      "'migrating-guest'"):
        life.check(world.config("guest", uuid=UUID))  # a create or restore: as today
    with pytest.raises(VmError, match="already exists"):
        life.check(world.config("migrating-guest", uuid=OTHER_UUID), migrating_in=True)
    await world.manager.create(world.config("other", uuid=OTHER_UUID))
    with pytest.raises(VmError, match="Domain 'other' already exists"):
        life.check(world.config("other", uuid=UUID), migrating_in=True)
    table.settle(dom)
    assert dom.name == "guest" and table.lookup(UUID) is dom


# ---- a managed domain's save file ----------------------------------------------------------


@run
async def test_a_managed_domains_save_file_restores_as_that_domain(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.manager.new(world.config("guest", uuid=UUID))
    dom = await world.manager.start_managed("guest")
    path = str(tmp_path / "guest.save")
    await world.manager.save("guest", path, checkpoint=False)
    assert dom.domid is None and world.managed_rows() == {"guest": "halted"}
    restored = await world.manager.restore(path, paused=False)
    assert restored is dom and dom.managed and dom.domid is not None
    machine = world.machine(dom)
    assert isinstance(machine, FakeMachine) and "migrate_in" in machine.calls
    assert names(world) == ["guest"]
    with pytest.raises(VmError, match="Domain 'guest' already exists with ID"):
        await world.manager.restore(path, paused=False)


@run
async def test_another_uuid_under_a_managed_name_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.manager.create(world.config("guest", uuid=OTHER_UUID))
    path = str(tmp_path / "guest.save")
    await world.manager.save("guest", path, checkpoint=False)
    await world.manager.new(world.config("guest", uuid=str(uuidlib.uuid4())))
    with pytest.raises(VmError, match="^VM name 'guest' already exists$"):
        await world.manager.restore(path, paused=False)
    assert world.manager.lookup("guest").domid is None


# ---- xend killed between the end of the stream and the source's teardown ------------------


async def never() -> None:
    """Where xend 'dies': the step never completes (the test then detaches all)."""
    await asyncio.Event().wait()


@run
async def test_a_copy_that_arrived_while_xend_died_is_listed_once_after_restart(
        tmp_path: Path) -> None:
    """The incoming copy was committed, the old QEMU (QEMU's ``postmigrate``) not yet
    torn down: the next xend keeps the copy and removes the stale source."""
    first = World(tmp_path)
    before = await first.manager.create(first.config("guest", uuid=UUID))
    old_id, old_machine = before.domid, first.machine(before)
    torn_down = asyncio.Event()

    async def dies_here(dom: Domain) -> None:
        torn_down.set()
        await never()

    first.manager.lifecycle.teardown = dies_here  # type: ignore[method-assign]
    server, port = await serving(first)
    first.manager.mover.relocation_credentials = KEY
    first.manager.migrate("guest", "127.0.0.1", port, live=True)
    await asyncio.wait_for(torn_down.wait(), 2.0)
    await server.stop()
    assert old_machine.state == "postmigrate" and len(first.records()) == 2
    await first.manager.detach_all()

    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    [dom] = list(second.manager.table)
    assert (dom.name, dom.uuid) == ("guest", UUID) and dom.domid != old_id
    assert second.machine(dom).state == "running" and not old_machine.still_running()
    assert [r["domid"] for r in second.records()] == [dom.domid]
    assert any("its old copy was removed" in line for line in second.hvlog.text().splitlines())


@run
async def test_a_source_whose_copy_never_committed_is_kept_paused(tmp_path: Path) -> None:
    """The stream ended (``postmigrate``) but the incoming copy was still starting
    when xend died: the copy is rolled back, and the source, which may run
    elsewhere, is neither resumed nor dropped: kept paused for the user."""
    first = World(tmp_path)
    before = await first.manager.create(first.config("guest", uuid=UUID))
    old_id, old_machine = before.domid, first.machine(before)
    first.machines.hold_launch = asyncio.Event()
    server, port = await serving(first)
    first.manager.mover.relocation_credentials = KEY
    first.manager.migrate("guest", "127.0.0.1", port, live=True)
    await until(lambda: len(first.records()) == 2)
    old_machine.state = "postmigrate"  # QEMU finished sending
    await first.manager.detach_all()
    await server.stop()

    second = World(tmp_path, machines=first.machines)
    await second.manager.adopt_all()
    [dom] = list(second.manager.table)
    assert (dom.name, dom.domid) == ("guest", old_id) and dom.info()["state"] == "--p---"
    assert {m.pid for m in first.machines.running} == {old_machine.pid}
    assert [r["domid"] for r in second.records()] == [old_id]
    assert any("kept paused" in line for line in second.hvlog.text().splitlines())
    await second.manager.unpause("guest")
    assert second.machine(dom).state == "running"
