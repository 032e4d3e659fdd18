"""A domain's virtual TPM: one swtpm process per domain, QEMU's ``tpm-emulator`` at
the other end of its control socket (spec §3.4's ``vtpm``, issue 12).

swtpm keeps the TPM's state in a directory of the domain's own (0700, files 0600) and
runs as a daemon supervised like QEMU: its pidfile, checked against /proc before it is
adopted or killed, lets a restarted xend find it again.  The state travels with the
domain inside QEMU's migration stream (QEMU reads it from swtpm on save and migration
and writes it into the destination's fresh swtpm), so a restore or an incoming
migration only needs an empty swtpm waiting."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass

from dom0.backends.qemu import process
from dom0.errors import BackendError
from dom0.model.vtpm import VERSIONS as VERSIONS  # re-exported
from dom0.store.layout import DomainPaths
from dom0.waiting import poll_until

SWTPM = "swtpm"


@dataclass(frozen=True)
class TpmPaths:
    state_dir: str  # the TPM's persistent state (kept while the domain exists)
    ctrl_socket: str  # QEMU's chardev connects here
    pidfile: str
    log: str


def paths_for(paths: DomainPaths, state_dir: str = "") -> TpmPaths:
    """One launch's swtpm files: its socket and pidfile in the launch's run directory
    (so a re-started xend finds them from the instance alone, and the copy of a guest
    migrating in to this host has its own), its log beside QEMU's."""
    return TpmPaths(state_dir=state_dir,
                    ctrl_socket=os.path.join(paths.run_dir, "swtpm.sock"),
                    pidfile=os.path.join(paths.run_dir, "swtpm.pid"),
                    log=os.path.splitext(paths.qemu_log)[0] + ".swtpm.log")


def argv(paths: TpmPaths, version: str) -> list[str]:
    args = [SWTPM, "socket", "--tpmstate", f"dir={paths.state_dir},mode=0600",
            "--ctrl", f"type=unixio,path={paths.ctrl_socket},mode=0600",
            "--pid", f"file={paths.pidfile}", "--log", f"file={paths.log},level=1", "-d"]
    if version == "2.0":
        args.append("--tpm2")
    return args


def qemu_args(paths: TpmPaths, version: str) -> list[str]:
    """QEMU's half: the emulator backend on swtpm's socket and a TIS (1.2) or CRB (2.0,
    the interface TPM 2.0 guests expect) device."""
    device = "tpm-crb" if version == "2.0" else "tpm-tis"
    return ["-chardev", f"socket,id=chrtpm,path={paths.ctrl_socket}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", f"{device},tpmdev=tpm0"]


def is_our_swtpm(pid: int, paths: TpmPaths) -> bool:
    args = process.cmdline(pid)
    if not args or os.path.basename(args[0]) != SWTPM:
        return False
    return any(f"path={paths.ctrl_socket}," in a for a in args)


def running(paths: TpmPaths) -> int | None:
    """The pid of this domain's swtpm, if it runs (after an xend restart too)."""
    pid = process.read_pidfile(paths.pidfile)
    if pid is not None and process.alive(pid) and is_our_swtpm(pid, paths):
        return pid
    return None


async def start(paths: TpmPaths, version: str, timeout: float = 10.0) -> int:
    """Start (or find running) the domain's swtpm; return its pid once its control
    socket accepts QEMU."""
    if version not in VERSIONS:
        raise BackendError(f"vTPM version {version} is not supported (1.2 or 2.0)")
    pid = running(paths)
    if pid is not None:
        return pid
    if shutil.which(SWTPM) is None:
        raise BackendError("swtpm is not installed (apt-get install swtpm): cannot give "
                           "the domain its vTPM")
    os.makedirs(paths.state_dir, mode=0o700, exist_ok=True)
    os.chmod(paths.state_dir, 0o700)
    for stale in (paths.ctrl_socket, paths.pidfile):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    proc = await asyncio.create_subprocess_exec(
        *argv(paths, version), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        text = out.decode(errors="replace").strip()
        raise BackendError(f"swtpm failed to start: {text.splitlines()[-1] if text else ''}"
                           .rstrip(": "), exit_code=proc.returncode, output=text)
    up = await poll_until(
        lambda: os.path.exists(paths.ctrl_socket) and running(paths) is not None,
        timeout, interval=0.01)
    pid = running(paths)
    if not up or pid is None:
        raise BackendError(f"swtpm did not come up within {timeout:g} s")
    return pid


async def stop(paths: TpmPaths) -> None:
    pid = running(paths)
    if pid is not None:
        await process.kill(pid)
    for leftover in (paths.ctrl_socket, paths.pidfile):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass


def remove_state(paths: TpmPaths) -> None:
    """The domain is deleted: its TPM's secrets go with it."""
    shutil.rmtree(paths.state_dir, ignore_errors=True)
