"""Starting, recognising and stopping QEMU processes, and probing the accelerator."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import time
from typing import BinaryIO

from dom0.errors import BackendError
from dom0.waiting import poll_until

log = logging.getLogger(__name__)


async def launch(argv: list[str], pidfile: str, qemu_log: str, timeout: float = 30.0,
                 env: dict[str, str] | None = None) -> int:
    """Run a ``-daemonize`` QEMU; return the daemon's pid once it is initialised.

    On failure the BackendError carries QEMU's exit status and its own message,
    which is also appended to the domain's QEMU log."""
    with _log(qemu_log) as logf:
        logf.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BackendError(f"QEMU did not start within {timeout:g} s", argv=argv) from None
    text = out.decode(errors="replace").strip()
    if text:
        with _log(qemu_log) as logf:
            logf.write(text.encode() + b"\n")
    if proc.returncode != 0:
        msg = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
        raise BackendError(f"QEMU failed to start: {msg}", exit_code=proc.returncode, output=text)
    pid = read_pidfile(pidfile)
    if pid is None:
        raise BackendError("QEMU started but wrote no pidfile", pidfile=pidfile)
    return pid


def _log(path: str) -> BinaryIO:
    """The domain's QEMU log, for appending: created 0640 (it quotes the guest's
    command line and QEMU's errors; not for every user)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    return os.fdopen(fd, "ab")


def read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_our_qemu(pid: int, qmp_socket: str) -> bool:
    """Is *pid* the QEMU whose QMP socket is *qmp_socket*?  Checked against /proc,
    so a recycled pid belonging to anything else is never adopted or killed.  The
    socket path holds the launch's unique instance id."""
    args = cmdline(pid)
    if not args or "qemu" not in os.path.basename(args[0]):
        return False
    return any(f"path={qmp_socket}," in a for a in args)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def kill(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL and wait until the process is gone (it is not our child: poll /proc)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    await poll_until(lambda: not alive(pid), timeout, interval=0.005)


def cpu_seconds(pid: int) -> float:
    """utime+stime of the whole QEMU process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_state(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def thread_cpu(pid: int, tid: int) -> tuple[float, int]:
    """(seconds of CPU, last CPU it ran on) of one thread."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[36])
    except (OSError, IndexError, ValueError):
        return 0.0, -1


def probe_boot_sector() -> bytes:
    """A boot sector that proves the vCPU runs *and* takes interrupts: it points
    the timer vector (IVT entry 8) at a handler, enables interrupts and halts; the
    handler writes 0x41 to the isa-debug-exit port, ending QEMU with status 0x83."""
    handler = 0x7C00 + 21
    code = bytes([
        0xFA,                                     # cli
        0x31, 0xC0,                               # xor ax, ax
        0x8E, 0xD8,                               # mov ds, ax
        0xC7, 0x06, 0x20, 0x00, handler & 0xFF, handler >> 8,  # mov [0x20], handler
        0xC7, 0x06, 0x22, 0x00, 0x00, 0x00,       # mov word [0x22], 0
        0xFB,                                     # sti
        0xF4,                                     # hlt
        0xEB, 0xFD,                               # jmp hlt
        0xB0, 0x41, 0xE6, 0xF4, 0xF4,             # handler: mov al,0x41; out 0xf4,al; hlt
    ])
    return code + b"\0" * (510 - len(code)) + b"\x55\xaa"


async def probe_kvm(binary: str, timeout: float = 4.0) -> bool:
    """Can KVM really run a guest here?  Opening /dev/kvm is not enough (on some
    hosts it opens but guests hang), so boot a few instructions that write a byte
    to the ISA debug-exit port, and see whether QEMU exits with that code."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot = probe_boot_sector()
    with tempfile.NamedTemporaryFile(suffix=".img") as img:
        img.write(boot)
        img.flush()
        # the same machine, accelerator and CPU model a guest would get (argv.py)
        argv = [binary, "-machine", "pc", "-accel", "kvm", "-cpu", "host",
                "-display", "none", "-nodefaults", "-no-user-config",
                "-m", "16", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-drive", f"file={img.name},format=raw,if=floppy", "-boot", "a"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return False
        try:
            code_ = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.info("KVM probe guest hung; using TCG")
            return False
    # isa-debug-exit: exit status is (value << 1) | 1
    return code_ == (0x41 << 1) | 1
