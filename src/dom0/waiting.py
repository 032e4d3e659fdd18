"""Waiting with a budget: the one home of xend's deadline loops.

Every wait in xend has a timeout (a slow guest or QEMU must never hang an
operation).  Two shapes cover them: poll a check until it holds, or wake on an
event each time something changes and look again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


class Deadline:
    """A point in the event loop's clock ``timeout`` seconds from now."""

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.at = self._loop.time() + timeout

    @property
    def remaining(self) -> float:
        return max(0.0, self.at - self._loop.time())

    @property
    def expired(self) -> bool:
        return self._loop.time() >= self.at


async def poll_until(check: Callable[[], bool | Awaitable[bool]], timeout: float,
                     interval: float = 0.05) -> bool:
    """Call *check* (plain or async) every *interval* s until it is true; False when
    *timeout* s pass first.  The check always runs at least once."""
    deadline = Deadline(timeout)
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if deadline.expired:
            return False
        await asyncio.sleep(min(interval, max(deadline.remaining, 0.001)))


async def wait_changes(done: Callable[[], bool], changed: Callable[[], asyncio.Event],
                       timeout: float) -> bool:
    """Wait until *done()* holds, looking again each time the event *changed()*
    returns is set (the getter is called anew: owners replace a fired event).
    False when *timeout* s pass first."""
    deadline = Deadline(timeout)
    while not done():
        if deadline.expired:
            return False
        try:
            await asyncio.wait_for(changed().wait(), deadline.remaining)
        except TimeoutError:
            pass
    return True
