"""Talking to a guest's shell over its serial console socket, as a person at
``xm console`` would: type a command, read what it printed."""

from __future__ import annotations

import time
import uuid

from dom0.cli.console import connect


class GuestConsole:
    PROMPT = b"# "

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path = path
        self.sock = connect(path, retry_for=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> GuestConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{marker!r} not seen on {self.path}; got {self.buffer[-500:]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"console closed; got {self.buffer[-500:]!r}")
            self.buffer += chunk
        idx = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:idx], self.buffer[idx:]
        return out

    def wait_prompt(self, timeout: float = 60.0) -> None:
        """Until the shell answers (the guest may still be booting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.run("true", timeout=min(3.0, max(0.5, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                # a line typed while the guest was still starting its shell can arrive
                # cut, leaving ash inside an open quote (its "> " prompt), where every
                # later line is swallowed too: Ctrl-C drops the half-read line
                self.send("\x03")

    def run(self, command: str, timeout: float = 30.0) -> str:
        """Run *command* in the guest shell; return its output (stdout+stderr)."""
        tag = uuid.uuid4().hex[:8]
        begin, end = f"B{tag}", f"E{tag}"
        # markers are printed by the shell, so the typed echo never matches them
        line = f"echo {begin[:1]}''{begin[1:]}; {command} 2>&1; echo {end[:1]}''{end[1:]}\n"
        self.buffer = b""
        self.sock.sendall(line.encode())
        self.read_until(begin.encode() + b"\r\n", timeout)
        out = self.read_until(end.encode(), timeout)
        return out[: -len(end)].decode(errors="replace").replace("\r\n", "\n")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())
