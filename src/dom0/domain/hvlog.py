"""xend's own message ring, shown by ``xm dmesg``: the counterpart of the Xen
hypervisor's console ring (domains created, restarted, destroyed, the accelerator
chosen)."""

from __future__ import annotations

import collections
import time


class HypervisorLog:
    def __init__(self, limit: int = 1000) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=limit)

    def add(self, message: str) -> None:
        self._lines.append(f"(XEN) [{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}")

    def text(self) -> str:
        return "".join(line + "\n" for line in self._lines)

    def clear(self) -> None:
        self._lines.clear()
