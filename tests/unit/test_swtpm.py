"""The per-domain swtpm for real (no guest): started with its state private, found
again by a later xend, refused when it is not ours, stopped, its state removed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dom0.backends.machine import MachineSpec, Tpm
from dom0.backends.qemu import process, tpm
from dom0.backends.qemu.machine import QemuMachine
from dom0.errors import BackendError
from dom0.store.layout import Layout

QEMU = "qemu-system-x86_64"


def paths(tmp_path: Path) -> tpm.TpmPaths:
    return tpm.TpmPaths(state_dir=str(tmp_path / "dom" / "tpm"),
                        ctrl_socket=str(tmp_path / "run" / "tpm.sock"),
                        pidfile=str(tmp_path / "run" / "swtpm.pid"),
                        log=str(tmp_path / "swtpm.log"))


@pytest.mark.parametrize("version", ["1.2", "2.0"])
def test_start_adopt_stop_and_remove(tmp_path: Path, version: str) -> None:
    p = paths(tmp_path)
    (tmp_path / "run").mkdir()
    pid = asyncio.run(tpm.start(p, version))
    try:
        assert tpm.running(p) == pid
        assert stat.S_IMODE(os.stat(p.state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(p.ctrl_socket).st_mode) == 0o600
        # a second start (xend restarted) finds the same process
        assert asyncio.run(tpm.start(p, version)) == pid
        # QEMU's end of it: initialise the TPM over the control socket, as QEMU does
        out = subprocess.run(["swtpm_ioctl", "--unix", p.ctrl_socket, "-i"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        # the files holding state are 0600 (swtpm's empty .lock is 0640, inside the
        # 0700 directory)
        state = [f for f in os.listdir(p.state_dir) if os.path.getsize(
            os.path.join(p.state_dir, f))]
        assert state and all(stat.S_IMODE(os.stat(os.path.join(p.state_dir, f)).st_mode)
                             == 0o600 for f in state)
    finally:
        asyncio.run(tpm.stop(p))
    assert tpm.running(p) is None and not os.path.exists(p.ctrl_socket)
    tpm.remove_state(p)
    assert not os.path.exists(p.state_dir)


def test_a_pidfile_naming_someone_else_is_not_adopted(tmp_path: Path) -> None:
    p = paths(tmp_path)
    (tmp_path / "run").mkdir()
    Path(p.pidfile).write_text(f"{os.getpid()}\n")  # this Python, not swtpm
    assert tpm.running(p) is None


def test_an_unknown_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="vTPM version 3.0 is not supported"):
        asyncio.run(tpm.start(paths(tmp_path), "3.0"))


def test_qemu_arguments() -> None:
    p = tpm.TpmPaths("/s", "/r/tpm.sock", "/r/p", "/l")
    assert tpm.qemu_args(p, "1.2")[-1] == "tpm-tis,tpmdev=tpm0"
    assert tpm.qemu_args(p, "2.0")[-1] == "tpm-crb,tpmdev=tpm0"
    assert "--tpm2" in tpm.argv(p, "2.0") and "--tpm2" not in tpm.argv(p, "1.2")


# ---- with QEMU: started before it, stopped after it ------------------------------------


class NoEvents:
    def guest_stopped(self, reason: str) -> None: ...

    def gone(self) -> None: ...


def machine_at(tmp_path: Path) -> tuple[QemuMachine, MachineSpec, tpm.TpmPaths]:
    layout = Layout(state_dir=str(tmp_path / "state"), domains_dir=str(tmp_path / "domains"),
                    run_dir=str(tmp_path / "run"), log_dir=str(tmp_path / "log"),
                    dump_dir=str(tmp_path / "dump"))
    layout.create_dirs()
    state = str(tmp_path / "domains" / "u" / "vtpm.1")
    kernel = Path(os.environ.get("DOM0_GUEST_DIR", "/nonexistent")) / "vmlinuz"
    spec = MachineSpec(name="t", uuid="6f1c2a3e-9d4b-4c1e-8f00-0123456789ab", memory=32,
                       maxmem=32, vcpus=1, kernel=str(kernel), tpm=Tpm("1.2", state))
    paths = layout.domain("inst")
    return QemuMachine(paths, QEMU, "tcg"), spec, tpm.paths_for(paths, state)


@pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} not installed")
def test_a_qemu_that_fails_to_start_takes_its_swtpm_down(tmp_path: Path) -> None:
    machine, spec, p = machine_at(tmp_path)
    spec = dataclasses.replace(spec, kernel=str(tmp_path / "no-such-kernel"))
    with pytest.raises(BackendError, match="QEMU failed to start"):
        asyncio.run(machine.launch(spec, NoEvents()))
    assert tpm.running(p) is None and machine.tpm_pid() is None
    assert os.path.isdir(p.state_dir)  # the TPM's state is the domain's: kept


@pytest.mark.skipif(shutil.which(QEMU) is None or not os.path.isfile(
    os.path.join(os.environ.get("DOM0_GUEST_DIR", "/nonexistent"), "vmlinuz")),
    reason="QEMU or the guest kernel is missing")
def test_qemu_runs_with_its_swtpm_and_kill_stops_both(tmp_path: Path) -> None:
    machine, spec, p = machine_at(tmp_path)

    async def go() -> None:
        await machine.launch(spec, NoEvents())  # the guest stays stopped (-S)
        try:
            pid = machine.tpm_pid()
            assert pid is not None and pid == tpm.running(p)
            assert machine.qmp is not None
            # QEMU's own view: a TPM on the emulator backend
            tpms = await machine.qmp.execute("query-tpm")
            assert [(t["model"], t["options"]["type"]) for t in tpms] == [
                ("tpm-tis", "emulator")]
        finally:
            await machine.kill()
        assert machine.tpm_pid() is None and not os.path.exists(p.ctrl_socket)
        assert not process.alive(pid)

    asyncio.run(go())
