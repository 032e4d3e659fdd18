"""dom0.backends.ramsample: sampling another process's RAM mapping through
/proc/<pid>/mem, tried on a real child process that holds a "guest RAM" mapping
(private, anonymous, read-write, between guard pages as QEMU's is) and changes
it on command."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from dom0.backends import ramsample
from dom0.backends.ramsample import PAGE, RamSampler, Sample, dirty_rate, find_guest_ram
from dom0.migration import source

SIZE = 24 * 1024 * 1024 + 3 * PAGE  # a size nothing else in the child has

CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
PAGE, SIZE = 4096, int(sys.argv[1])
copies = int(sys.argv[2])
bases = []
for _ in range(copies):
    # PROT_NONE guard pages around it, so that it is a mapping of its own
    raw = libc.mmap(None, SIZE + 2 * PAGE, 0, 0x02 | 0x20, -1, 0)  # MAP_PRIVATE|ANONYMOUS
    assert raw not in (None, ctypes.c_void_p(-1).value)
    assert libc.mprotect(ctypes.c_void_p(raw + PAGE), SIZE, 3) == 0  # PROT_READ|WRITE
    bases.append(raw + PAGE)
base = bases[0]
print(base, flush=True)
for line in sys.stdin:  # "fill FIRST COUNT BYTE": pages FIRST.. set to BYTE
    _, first, count, byte = line.split()
    first, count = int(first), int(count)
    ctypes.memset(base + first * PAGE, int(byte), count * PAGE)
    print("ok", flush=True)
"""


class Child:
    def __init__(self, copies: int = 1) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(SIZE), str(copies)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.base = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def fill(self, first: int, count: int, byte: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"fill {first} {count} {byte}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child()
    yield c
    c.close()


PAGES = SIZE // PAGE


def test_finds_the_mapping_of_exactly_the_ram_size(child: Child) -> None:
    assert find_guest_ram(child.pid, SIZE) == child.base


def test_no_mapping_of_that_size_is_none(child: Child) -> None:
    assert find_guest_ram(child.pid, SIZE + PAGE) is None


def test_two_mappings_of_the_size_are_ambiguous() -> None:
    c = Child(copies=2)
    try:
        assert find_guest_ram(c.pid, SIZE) is None
    finally:
        c.close()


def test_a_process_that_is_gone_is_none() -> None:
    c = Child()
    c.close()
    assert find_guest_ram(c.pid, SIZE) is None


def test_untouched_ram_is_all_zero(child: Child) -> None:
    s = RamSampler(child.pid, child.base, SIZE, pages=1024, seed=1).take()
    assert len(s.sums) == 1024
    assert s.zeros == 1024
    assert s.nonzero_share == 0.0


def test_nonzero_share_follows_what_was_written(child: Child) -> None:
    child.fill(0, PAGES // 4, 0xAB)  # a quarter of it in use
    s = RamSampler(child.pid, child.base, SIZE, pages=2048, seed=2).take()
    assert s.nonzero_share == pytest.approx(0.25, abs=0.05)


def test_sampling_every_page_is_exact(child: Child) -> None:
    child.fill(10, 100, 1)
    s = RamSampler(child.pid, child.base, SIZE, pages=PAGES * 2, seed=3).take()
    assert len(s.sums) == PAGES  # never more pages than there are
    assert PAGES - s.zeros == 100


def test_dirty_rate_counts_the_pages_that_changed(child: Child) -> None:
    child.fill(0, PAGES, 7)
    sampler = RamSampler(child.pid, child.base, SIZE, pages=PAGES, seed=4)
    a = sampler.take()
    child.fill(0, PAGES // 2, 8)  # half the pages get a new content
    b = sampler.take()
    rate = dirty_rate(a, b, SIZE)
    assert rate * (b.at - a.at) == pytest.approx(SIZE / 2, rel=0.01)


def test_rewriting_the_same_content_is_not_dirt(child: Child) -> None:
    child.fill(0, PAGES, 9)
    sampler = RamSampler(child.pid, child.base, SIZE, pages=512, seed=5)
    a = sampler.take()
    child.fill(0, PAGES, 9)
    assert dirty_rate(a, sampler.take(), SIZE) == 0.0


def test_the_same_seed_samples_the_same_pages() -> None:
    one = RamSampler(1, 0, 1 << 30, pages=64, seed=6).addresses
    assert one == RamSampler(1, 0, 1 << 30, pages=64, seed=6).addresses
    assert one == sorted(one) and len(set(one)) == 64
    assert all(a % PAGE == 0 and 0 <= a < 1 << 30 for a in one)


@pytest.mark.parametrize("a, b", [
    (Sample(1.0, (1, 2), 0), Sample(1.0, (1, 3), 0)),  # no time passed
    (Sample(2.0, (1, 2), 0), Sample(1.0, (1, 3), 0)),  # backwards
    (Sample(1.0, (), 0), Sample(2.0, (), 0)),  # nothing sampled
    (Sample(1.0, (1, 2), 0), Sample(2.0, (1,), 0)),  # not the same pages
])
def test_dirty_rate_without_a_usable_pair_is_zero(a: Sample, b: Sample) -> None:
    assert dirty_rate(a, b, 1 << 30) == 0.0


def test_nothing_sampled_counts_as_all_in_use() -> None:
    # pessimistic: without a sample the prediction takes every page as non-zero
    assert Sample(0.0, (), 0).nonzero_share == 1.0
    assert ramsample.SAMPLE_PAGES > 0


# ---- working sets ---------------------------------------------------------------------

N = 10_000  # sampled pages in the synthetic samples
RAM = N * PAGE


def synthetic(at: float, changed: int, generation: int = 1) -> Sample:
    """Page i differs from the first sample when i < changed."""
    return Sample(at, tuple(generation if i < changed else 0 for i in range(N)), 0)


def model(t: float, rate: float, ws: float) -> int:
    return round(ws * (1 - math.exp(-rate * t / ws)) / PAGE)


@pytest.mark.parametrize("rate, ws", [(200e6, 8e6), (50e6, 20e6), (400e6, 30e6)])
def test_dirt_recovers_rate_and_working_set_of_a_levelling_curve(rate: float, ws: float) -> None:
    first = synthetic(0.0, 0, 0)
    mid, last = synthetic(0.08, model(0.08, rate, ws)), synthetic(0.25, model(0.25, rate, ws))
    got_rate, got_ws = ramsample.dirt(first, mid, last, RAM)
    assert got_ws is not None
    assert got_ws == pytest.approx(ws, rel=0.05)
    assert got_rate == pytest.approx(rate, rel=0.1)


def test_dirt_growing_linearly_has_no_working_set() -> None:
    first = synthetic(0.0, 0, 0)
    rate, ws = ramsample.dirt(first, synthetic(0.1, 1000), synthetic(0.25, 2500), RAM)
    assert ws is None
    assert rate == pytest.approx(2500 * PAGE / 0.25)


def test_dirt_already_levelled_off_is_its_working_set() -> None:
    first = synthetic(0.0, 0, 0)
    rate, ws = ramsample.dirt(first, synthetic(0.1, 2000), synthetic(0.25, 2000), RAM)
    assert ws == 2000 * PAGE
    assert rate == pytest.approx(2000 * PAGE / 0.1)


def test_dirt_of_an_idle_guest_is_zero() -> None:
    s = synthetic(0.0, 0, 0)
    assert ramsample.dirt(s, synthetic(0.1, 0, 0), synthetic(0.25, 0, 0), RAM) == (0.0, None)


def test_dirt_without_a_middle_sample_in_between_falls_back_to_two() -> None:
    first = synthetic(0.0, 0, 0)
    last = synthetic(0.25, 500)
    assert ramsample.dirt(first, synthetic(0.3, 100), last, RAM) == \
        (ramsample.dirty_rate(first, last, RAM), None)


# ---- the measuring before a migration (source._measure), on a real child ---------


class ChildMachine:
    """What _measure needs of a QemuMachine, over the child's "guest RAM"; QEMU's
    own dirty-rate sampler is the fallback, and says 42 MB/s."""

    def __init__(self, child: Child | None, pid: int = 0) -> None:
        self.child = child
        self.pid = child.pid if child else pid
        self.fallback_used = False

    async def ram_sampler(self) -> tuple[int, RamSampler | None]:
        base = self.child.base if self.child else 0
        return SIZE, RamSampler(self.pid, base, SIZE, pages=1024, seed=7)

    def cpu_seconds(self) -> float:
        return 0.0

    async def dirty_rate(self, seconds: int = 1) -> float:
        self.fallback_used = True
        return 42e6


def measure(machine: ChildMachine, during: Callable[[], None] = lambda: None,
            live: bool = True) -> source.Measurement:
    async def handshake() -> float:
        during()
        return 1e9

    return asyncio.run(source._measure(machine, live, handshake))


def test_a_quiet_guest_is_measured_from_two_samples(child: Child) -> None:
    child.fill(0, PAGES // 4, 3)
    m = measure(ChildMachine(child))
    assert m.dirty == 0.0 and m.working_set is None
    assert m.nonzero == pytest.approx(0.25, abs=0.06)
    assert m.link == 1e9 and m.ram == SIZE and not m.busy


def test_a_busy_guest_gets_a_third_sample(child: Child) -> None:
    # half the RAM rewritten while the link is probed: not quiet, so the third
    # sample (0.25 s after the first) shows it has levelled off
    machine = ChildMachine(child)
    t0 = time.monotonic()
    m = measure(machine, lambda: child.fill(0, PAGES // 2, 5))
    assert time.monotonic() - t0 >= source.SAMPLE_SPAN
    assert m.dirty > source.QUIET_RATE
    assert m.working_set == pytest.approx(SIZE / 2, rel=0.1)
    assert not machine.fallback_used


def test_without_the_guests_ram_qemus_sampler_stands_in() -> None:
    gone = Child()
    gone.close()  # /proc/<pid>/mem of a process that is gone: a real OSError
    machine = ChildMachine(None, pid=gone.pid)
    m = measure(machine)
    assert machine.fallback_used
    assert (m.dirty, m.nonzero, m.working_set) == (42e6, 1.0, None)


def test_a_paused_migration_ignores_the_dirt(child: Child) -> None:
    m = measure(ChildMachine(child), lambda: child.fill(0, PAGES // 2, 6), live=False)
    assert (m.dirty, m.working_set) == (0.0, None)
