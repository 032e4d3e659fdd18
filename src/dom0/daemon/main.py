"""The ``xend`` command: start|stop|restart|status|reload (spec §5.1)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from dom0.daemon import options as options_mod
from dom0.daemon.options import XendOptions

USAGE = "usage: xend {start|stop|reload|restart|status}"
STOP_TIMEOUT = 120.0


def running_pid(opts: XendOptions) -> int | None:
    """The pid in the pidfile, if it is a live xend (checked in /proc)."""
    try:
        with open(opts.xend_pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (OSError, ValueError):
        return None
    return pid if b"xend" in cmd else None


#: what xend creates is never world-readable: guests' memory (save files, core
#: dumps), their consoles and configs.  QEMU inherits it (its console logs).
UMASK = 0o027


def open_log(path: str, mode: int = 0o640) -> int:
    """A log file descriptor for appending, created with *mode*; a log an older xend
    left wider is narrowed to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, mode)
    if os.fstat(fd).st_mode & 0o777 & ~mode:
        os.fchmod(fd, mode)
    return fd


def setup_logging(opts: XendOptions) -> None:
    os.makedirs(os.path.dirname(opts.logfile) or ".", exist_ok=True)
    os.close(open_log(opts.logfile))  # FileHandler then opens it as it is
    handler = logging.FileHandler(opts.logfile)
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s %(process)d] %(levelname)s (%(name)s) %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(opts.loglevel.upper())
    except ValueError:
        root.setLevel(logging.DEBUG)
        opts.warnings.append(f"invalid loglevel {opts.loglevel}; using DEBUG")
    for message in opts.warnings:
        logging.getLogger("xend").error(message)


def _serve(opts: XendOptions, ready_fd: int | None) -> int:
    """Run xend in this process until SIGTERM."""
    from dom0.daemon import service

    setup_logging(opts)

    def ready() -> None:
        fd = os.open(opts.xend_pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o640)
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        if ready_fd is not None:
            os.write(ready_fd, b"ok\n")
            os.close(ready_fd)

    try:
        asyncio.run(service.run(opts, ready))
    except Exception as exc:
        logging.getLogger("xend").exception("xend failed")
        if ready_fd is not None:
            try:
                os.write(ready_fd, f"Xend failed to start: {exc}\n".encode())
            except OSError:
                pass
        return 1
    finally:
        if running_pid(opts) == os.getpid():
            os.unlink(opts.xend_pid_file)
    return 0


def start(opts: XendOptions) -> int:
    if running_pid(opts):
        return 0
    os.umask(UMASK)
    for path in (opts.xend_pid_file, opts.logfile):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.environ.get("XEND_DEBUG"):
        return _serve(opts, None)
    rfd, wfd = os.pipe()
    if os.fork():  # the caller: wait until xend is serving, or has failed
        os.close(wfd)
        with os.fdopen(rfd) as pipe:
            answer = pipe.read()
        if answer.startswith("ok"):
            _announce_web_console(opts)
            return 0
        print(answer.strip() or "Xend failed to start; see " + opts.logfile, file=sys.stderr)
        return 1
    os.close(rfd)
    os.setsid()
    if os.fork():
        os._exit(0)
    debug_log = os.path.join(os.path.dirname(opts.logfile) or ".", "xend-debug.log")
    out = open_log(debug_log, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.write(out, f"Xend started at {time.asctime()}.\n".encode())
    os.chdir("/")
    os._exit(_serve(opts, wfd))


def _announce_web_console(opts: XendOptions) -> None:
    """Where the web console is and its token (only root reads the token file, and only
    root runs ``xend start``); the token goes into the login form, never a URL."""
    if not opts.xend_http_server:
        return
    try:
        with open(opts.web_token_file()) as f:
            token = f.read().strip()
    except OSError:
        return
    host = opts.xend_address or "localhost"
    print(f"Web console: http://{host}:{opts.xend_port}/  access token: {token}")


def stop(opts: XendOptions) -> int:
    pid = running_pid(opts)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}") or running_pid(opts) != pid:
            return 0
        time.sleep(0.02)
    print(f"xend (pid {pid}) did not stop within {STOP_TIMEOUT:g} s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if os.geteuid() != 0:
        print("*** Xend must be run as root.", file=sys.stderr)
        return 1
    if not args:
        print(USAGE)
        return 1
    command = args[0]
    if command not in ("start", "stop", "restart", "status", "reload"):
        print(f"not an option: {command}", file=sys.stderr)
        return 1
    try:
        opts = options_mod.load()
    except options_mod.OptionsError as exc:
        print(f"xend: {exc}", file=sys.stderr)
        return 1
    if command == "status":
        return 0 if running_pid(opts) else 3
    if command == "start":
        return start(opts)
    if command == "stop":
        return stop(opts)
    if command == "restart":
        rc = stop(opts)
        return rc if rc else start(opts)
    pid = running_pid(opts)  # reload
    if pid is None:
        return 3
    os.kill(pid, signal.SIGHUP)
    return 0


if __name__ == "__main__":
    sys.exit(main())
