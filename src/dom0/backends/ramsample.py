"""Looking at a guest's RAM from outside, before a live migration.

Two figures decide how long pre-copy takes: how much of the RAM is not zero
(QEMU sends a zero page as a few header bytes, so only the rest costs link time)
and how fast the guest changes it.  QEMU's own dirty-rate sampler
(``calc-dirty-rate``) needs at least one second and says nothing about zero
pages, so xend does the same kind of sampling itself, in a few tens of
milliseconds: it reads a fixed random set of pages of the guest's RAM mapping in
the QEMU process through ``/proc/<pid>/mem`` (xend is root and owns the
process), keeps only a checksum per page, and reads them again later.  The share
of pages that changed, times the RAM, over the interval, is the dirty rate --
the rate of distinct pages dirtied, which is what a pre-copy round must resend.

A guest that keeps rewriting the same memory dirties quickly at first and then
no more than that memory, its working set.  With a third sample in between,
``dirt`` tells the two apart by fitting c(t) = W (1 - exp(-r t / W)): the share
changed after t, for a starting rate r and a working set W.
"""

from __future__ import annotations

import math
import os
import random
import time
import zlib
from dataclasses import dataclass

PAGE = 4096
SAMPLE_PAGES = 8192  # ~30 ms to read here; 1/16 of a 512 MiB guest
_ZERO = bytes(PAGE)


def find_guest_ram(pid: int, ram_bytes: int) -> int | None:
    """Where the guest's RAM lives in QEMU's address space: the one private,
    anonymous, read-write mapping of exactly its size (None when there is not
    exactly one, e.g. another mapping of the same size)."""
    found = []
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) != 5 or fields[1] != "rw-p" or fields[4] != "0":
                    continue  # file-backed, shared or with a name ([heap], [stack])
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if end - start == ram_bytes:
                    found.append(start)
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the reading finished
    sums: tuple[int, ...]  # one checksum per sampled page
    zeros: int  # how many of the sampled pages were all zero

    @property
    def nonzero_share(self) -> float:
        return 1.0 - self.zeros / len(self.sums) if self.sums else 1.0


class RamSampler:
    """Reads the same *pages* random pages of a mapping each time (blocking: run it
    in a worker thread)."""

    def __init__(self, pid: int, address: int, size: int, pages: int = SAMPLE_PAGES,
                 seed: int | None = None) -> None:
        self.pid = pid
        count = size // PAGE
        chosen = random.Random(seed).sample(range(count), min(pages, count))
        self.addresses = [address + n * PAGE for n in sorted(chosen)]

    def take(self) -> Sample:
        sums, zeros = [], 0
        fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY)
        try:
            for addr in self.addresses:
                data = os.pread(fd, PAGE, addr)
                if data == _ZERO:
                    zeros += 1
                sums.append(zlib.crc32(data))
        finally:
            os.close(fd)
        return Sample(time.monotonic(), tuple(sums), zeros)


def changed_bytes(first: Sample, second: Sample, ram_bytes: int) -> float:
    """The RAM (bytes) that changed between two samples of the same pages."""
    if not first.sums or len(first.sums) != len(second.sums):
        return 0.0
    changed = sum(a != b for a, b in zip(first.sums, second.sums, strict=True))
    return changed / len(first.sums) * ram_bytes


def dirt(first: Sample, mid: Sample, last: Sample,
         ram_bytes: int) -> tuple[float, float | None]:
    """(starting dirty rate in bytes/s, working set in bytes or None when the
    dirtying showed no sign of levelling off) from three samples of the same pages."""
    t1, t2 = mid.at - first.at, last.at - first.at
    if t1 <= 0 or t2 <= t1:
        return dirty_rate(first, last, ram_bytes), None
    c1, c2 = changed_bytes(first, mid, ram_bytes), changed_bytes(first, last, ram_bytes)
    if c2 <= 0:
        return 0.0, None
    if c1 <= 0 or c2 >= 0.9 * c1 * t2 / t1:  # still growing with time: no limit seen
        return c2 / t2, None
    if c2 <= c1:  # levelled off before the first interval ended
        return c1 / t1, max(c1, c2)
    # c2/c1 = (1 - e^(-x t2)) / (1 - e^(-x t1)) falls from t2/t1 (x -> 0) to 1: bisect x = r/W
    ratio, lo, hi = c2 / c1, 1e-6, 1e6
    for _ in range(100):
        x = math.sqrt(lo * hi)
        if (1 - math.exp(-x * t2)) / (1 - math.exp(-x * t1)) > ratio:
            lo = x
        else:
            hi = x
    working_set = c1 / (1 - math.exp(-x * t1))
    return x * working_set, working_set


def dirty_rate(first: Sample, second: Sample, ram_bytes: int) -> float:
    """Bytes/s of distinct pages changed between two samples of the same pages."""
    span = second.at - first.at
    return changed_bytes(first, second, ram_bytes) / span if span > 0 else 0.0
