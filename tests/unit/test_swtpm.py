"""The per-domain swtpm for real (no guest): started with its state private, found
again by a later xend, refused when it is not ours, stopped, its state removed."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import pytest

from dom0.backends.qemu import tpm
from dom0.errors import BackendError


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
