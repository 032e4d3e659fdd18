"""`xm console` and `xm create -c` on a real terminal (a pty), as a person uses them."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from conftest import BIN, Host


class Terminal:
    """xm running on a pseudo-terminal."""

    def __init__(self, host: Host, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([str(BIN / "xm"), *args], env=host.env, cwd=host.dir,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; got {self.seen[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    raise AssertionError(f"terminal closed; got {self.seen[-400:]!r}") from None

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        os.close(self.master)
        return rc


def test_console_attach_detach_reattach(host: Host) -> None:
    host.create("con")
    host.console("con").close()  # booted
    for word in (b"first", b"second"):
        term = Terminal(host, "console", "con")
        time.sleep(0.3)
        term.type(b"echo hello-" + word + b"\r")
        term.expect(b"hello-" + word + b"\r\n")
        term.type(b"\x1d")  # Ctrl-]
        assert term.wait() == 0
    r = host.xm("console", "-q", "nosuch", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")


def test_create_c_shows_the_boot_from_the_start(host: Host) -> None:
    path = host.write_config("cc")
    term = Terminal(host, "create", "-c", str(path))
    term.expect(b"Started domain cc")
    term.expect(b"dom0-guest: boot complete", 90)
    term.expect(b"# ", 30)
    term.type(b"\x1d")
    assert term.wait() == 0
    assert host.info("cc")["state"] in ("r-----", "-b----")
