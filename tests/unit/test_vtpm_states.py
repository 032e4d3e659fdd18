"""Where a domain's vTPM keeps its state (domain/vtpm.py), driven through the domain
layer over FakeMachine: made on first launch and reused by the next, private; a
launch from a stream gets an empty directory of its own and the link follows it
once it runs; removed with an unmanaged domain's end and ``xm delete``, kept for a
managed one; the emulator reaches QEMU's command line; ``xm vtpm-list``'s table."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_lifecycle_policy import World, run

from dom0.backends.machine import MachineSpec, Tpm
from dom0.backends.qemu.argv import build_argv
from dom0.cli import format
from dom0.domain.domain import Domain
from dom0.errors import BackendError, VmError
from dom0.model.vtpm import VtpmSpec
from dom0.store.layout import Layout


def states(world: World, dom: Domain) -> list[str]:
    return sorted(p.name for p in Path(world.layout.domains_dir, dom.uuid).glob("vtpm.*"))


def link(world: World, dom: Domain) -> str:
    return os.readlink(world.layout.vtpm_link(dom.uuid))


def spec_tpm(world: World, dom: Domain) -> Tpm | None:
    spec = world.machine(dom).spec
    assert isinstance(spec, MachineSpec)
    return spec.tpm


@run
async def test_first_launch_makes_it_the_next_reuses_it(tmp_path: Path) -> None:
    world = World(tmp_path)
    dom = await world.manager.new(world.config("m", vtpms=[VtpmSpec(1)]))
    await world.manager.start_managed("m")
    tpm = spec_tpm(world, dom)
    assert tpm is not None and tpm.version == "1.2"
    (first,) = states(world, dom)
    assert link(world, dom) == first and tpm.state_dir.endswith(first)
    assert stat.S_IMODE(os.stat(tpm.state_dir).st_mode) == 0o700
    assert dom.running is not None and dom.running.tpm_state == tpm.state_dir
    await world.manager.destroy("m")  # a managed domain keeps it
    await world.manager.start_managed("m")
    assert states(world, dom) == [first] and spec_tpm(world, dom) == tpm
    # a later vtpm-version does not swap its TPM for an empty one of another kind
    world.settings.vtpm_version = "2.0"
    await world.manager.destroy("m")
    await world.manager.start_managed("m")
    assert spec_tpm(world, dom) == tpm and dom.config.vtpms == [VtpmSpec(1, 0, "1.2")]
    rows = await world.manager.vtpm_list("m")
    assert rows[0]["version"] == "1.2"
    await world.manager.destroy("m")
    await world.manager.new(world.config("m", uuid=dom.uuid, vtpms=[VtpmSpec(1)]))  # redefined
    assert dom.config.vtpms == [VtpmSpec(1, 0, "1.2")]
    await world.manager.delete("m")
    assert states(world, dom) == [] and not os.path.lexists(world.layout.vtpm_link(dom.uuid))


@run
async def test_a_domain_without_vtpm_has_no_tpm(tmp_path: Path) -> None:
    world = World(tmp_path)
    dom = await world.manager.create(world.config("plain"))
    assert spec_tpm(world, dom) is None and states(world, dom) == []
    assert await world.manager.vtpm_list("plain") == []


@run
async def test_an_unmanaged_domain_takes_its_state_with_it(tmp_path: Path) -> None:
    world = World(tmp_path, vtpm_version="2.0")
    dom = await world.manager.create(world.config("u", vtpms=[VtpmSpec(1)]))
    tpm = spec_tpm(world, dom)
    assert tpm is not None and tpm.version == "2.0" and len(states(world, dom)) == 1
    rows = await world.manager.vtpm_list("u")
    assert [(r["idx"], r["state"], r["pref_instance"], r["version"]) for r in rows] == [
        (0, 4, 1, "2.0")]
    await world.manager.destroy("u")
    assert states(world, dom) == [] and not os.path.lexists(world.layout.vtpm_link(dom.uuid))


@run
async def test_an_unknown_vtpm_version_is_refused_and_not_recorded(tmp_path: Path) -> None:
    world = World(tmp_path, vtpm_version="3.0")
    cfg = world.config("v", vtpms=[VtpmSpec(1)])
    with pytest.raises(VmError, match=r"vTPM version 3.0 is not supported \(xend-config"):
        await world.manager.create(cfg)
    assert cfg.vtpms == [VtpmSpec(1)] and world.manager.table.get(cfg.uuid) is None


@run
async def test_a_failed_create_leaves_no_state(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.machines.fail_launch = BackendError("no room")
    cfg = world.config("f", vtpms=[VtpmSpec(1)], uuid="11111111-2222-3333-4444-555555555555")
    with pytest.raises(BackendError, match="no room"):
        await world.manager.create(cfg)
    assert list(Path(world.layout.domains_dir, cfg.uuid).glob("vtpm*")) == []


@run
async def test_a_launch_from_a_stream_gets_its_own_empty_directory(tmp_path: Path) -> None:
    """As restore and an incoming migration launch: the link moves to the new
    directory once the launch runs, and the old one goes when nothing uses it; while
    a copy of the same guest still runs from it (migration to this host), it stays."""
    world = World(tmp_path)
    dom = await world.manager.create(world.config("s", vtpms=[VtpmSpec(1)]))
    (old,) = states(world, dom)
    Path(world.layout.vtpm_link(dom.uuid), "tpm-00.permall").write_text("state")
    life = world.manager.lifecycle
    tpm = life.vtpms.for_launch(dom, "feedface", incoming=True)
    assert tpm is not None and os.listdir(tpm.state_dir) == []
    assert link(world, dom) == old  # not yet: the launch does not run yet
    life.vtpms.launched(dom, tpm)
    assert link(world, dom) == "vtpm.feedface"
    assert states(world, dom) == sorted([old, "vtpm.feedface"])  # the running one uses it
    await world.manager.destroy("s")
    assert states(world, dom) == []


def test_the_emulator_is_on_qemus_command_line() -> None:
    layout = Layout("/s", "/d", "/r", "/l", "/x")
    spec = MachineSpec(name="t", uuid="u", memory=64, maxmem=64, vcpus=1, kernel="/k",
                       tpm=Tpm("1.2", "/d/u/vtpm.1"))
    argv = build_argv(spec, layout.domain("i1"))
    at = argv.index("-tpmdev")
    assert argv[at - 1] == "socket,id=chrtpm,path=/r/dom/i1/swtpm.sock"
    assert argv[at + 1:at + 4] == ["emulator,id=tpm0,chardev=chrtpm", "-device",
                                   "tpm-tis,tpmdev=tpm0"]
    assert "-tpmdev" not in build_argv(MachineSpec(name="t", uuid="u", memory=64, maxmem=64,
                                                   vcpus=1, kernel="/k"), layout.domain("i1"))


def test_vtpm_list_table() -> None:
    row: dict[str, Any] = {"idx": 0, "backend-id": 0, "handle": 0, "state": 4, "event-ch": -1,
                           "ring-ref": -1, "be-path": "/local/domain/0/backend/vtpm/3/0"}
    assert format.vtpm_list([row]).splitlines() == [
        "Idx  BE handle state evt-ch ring-ref BE-path",
        "0     0    0     4      -1     -1    /local/domain/0/backend/vtpm/3/0  "]
    assert format.vtpm_list([]) == ""
