"""``xm console``: a transparent terminal on the guest's serial console.

xm talks straight to the domain's console socket (root only, like the API);
``Ctrl-]`` detaches, and a later ``xm console`` re-attaches.  QEMU keeps the
console log itself, so output while nobody is attached is not lost.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import time
import tty
from typing import Any

ESCAPE = 0x1D  # Ctrl-]


def connect(path: str, retry_for: float = 0.0) -> socket.socket:
    deadline = time.monotonic() + retry_for
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def attach(path: str, retry_for: float = 0.0) -> int:
    sock = connect(path, retry_for)
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    try:
        return _pump(sock, stdin, stdout, interactive=saved is not None)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()


def _pump(sock: socket.socket, stdin: int, stdout: int, interactive: bool) -> int:
    watch: list[Any] = [sock, stdin]
    while True:
        ready, _, _ = select.select(watch, [], [])
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return 0  # the domain went away
            os.write(stdout, data)
        if stdin in ready:
            data = os.read(stdin, 4096)
            if not data:
                watch = [sock]  # stdin closed: keep showing output until the guest ends
                if not interactive:
                    return 0
                continue
            if ESCAPE in data:
                head = data[:data.index(ESCAPE)]
                if head:
                    sock.sendall(head)
                return 0
            sock.sendall(data)
