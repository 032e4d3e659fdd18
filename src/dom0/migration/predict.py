"""Predicting a live migration, and an ETA that never runs backwards.

Pre-copy sends all RAM once, then, round after round, what the guest dirtied
meanwhile; it stops the guest when what is left fits in the downtime limit.
With RAM M, bandwidth B and dirty rate D, round i sends D * t(i-1) bytes
(never more than M), taking t(i) = that / B.  It converges only when D < B.

The first round is cheaper than M / B: QEMU sends a zero page as a header of a
few bytes, so only the non-zero share of the RAM costs link time; the zero pages
cost QEMU's scan of them (ZERO_RATE).  Pages dirtied later are taken as non-zero.
A guest that keeps rewriting the same memory dirties at most its working set W
per round, however long the round.

B is what QEMU will reach, not just what the link carries: on a fast link QEMU's
own work per page bounds it, and more so when the guest keeps a CPU busy
(StreamRates learns that bound from the migrations this xend has done).
"""

from __future__ import annotations

from dataclasses import dataclass

#: QEMU's default downtime limit (s)
DEFAULT_DOWNTIME = 0.3
MAX_ROUNDS = 30
#: bytes/s at which QEMU's migration thread gets through zero pages (find them in
#: the dirty bitmap, check them, send a header); measured here with TCG, 2 cores
ZERO_RATE = 10e9
#: the downtime limits xend tries, smallest first (QEMU's default is the last)
DOWNTIME_LIMITS = (0.02, 0.05, 0.1, DEFAULT_DOWNTIME)


@dataclass(frozen=True)
class Prediction:
    converges: bool
    total_s: float  # until the guest runs on the destination
    downtime_s: float
    rounds: int

    def describe(self) -> str:
        if not self.converges:
            return ("predicted: will not converge (the guest dirties memory faster than the "
                    "link carries it); escalating: throttle, larger downtime, post-copy")
        return (f"predicted: {self.total_s:.1f} s in total, {self.downtime_s * 1000:.0f} ms "
                f"downtime ({self.rounds} rounds)")


def predict(ram_bytes: int, dirty_bytes_per_s: float, bandwidth: float,
            downtime_limit: float = DEFAULT_DOWNTIME, live: bool = True,
            nonzero_share: float = 1.0, zero_rate: float = ZERO_RATE,
            working_set: float | None = None) -> Prediction:
    if bandwidth <= 0:
        return Prediction(False, float("inf"), float("inf"), 0)
    nonzero_share = min(max(nonzero_share, 0.0), 1.0)
    first = (ram_bytes * nonzero_share / bandwidth
             + ram_bytes * (1.0 - nonzero_share) / zero_rate)
    if not live:  # paused: one pass, and the whole pass is downtime
        return Prediction(True, first, first, 1)
    cap = ram_bytes if working_set is None else min(ram_bytes, working_set)
    total = first
    pending = min(cap, dirty_bytes_per_s * first)
    rounds = 1
    while pending / bandwidth > downtime_limit:
        t = pending / bandwidth
        if rounds >= MAX_ROUNDS or min(cap, dirty_bytes_per_s * t) >= 0.95 * pending:
            return Prediction(False, float("inf"), float("inf"), rounds)
        total += t
        pending = min(cap, dirty_bytes_per_s * t)
        rounds += 1
    downtime = pending / bandwidth
    return Prediction(True, total + downtime, downtime, rounds)


def choose_downtime_limit(ram_bytes: int, dirty_bytes_per_s: float, bandwidth: float,
                          nonzero_share: float = 1.0,
                          working_set: float | None = None) -> float:
    """The smallest of DOWNTIME_LIMITS that the guest is predicted to meet with room
    to spare (a predicted stop of at most half of it) and without making the
    migration more than a quarter longer than with QEMU's default.  QEMU stops
    the guest as soon as what is left fits in the limit, so a smaller limit means
    a shorter stop whenever the guest allows it; a limit the guest only just
    meets on paper costs extra rounds when the guess was a little off."""
    def model(limit: float) -> Prediction:
        return predict(ram_bytes, dirty_bytes_per_s, bandwidth, limit,
                       nonzero_share=nonzero_share, working_set=working_set)

    base = model(DEFAULT_DOWNTIME)
    for limit in DOWNTIME_LIMITS:
        p = model(limit)
        if p.converges and p.downtime_s <= limit / 2 and \
                (not base.converges or p.total_s <= 1.25 * base.total_s):
            return limit
    return DEFAULT_DOWNTIME


class StreamRates:
    """How fast QEMU streams a guest's pages from this host when the link is not
    what holds it back, for an idle guest and for one that keeps its CPU busy
    (its vCPU then competes with QEMU's migration thread).  Starts from figures
    measured on the development machine (TCG, 2 cores, both hosts on it) and
    follows what each migration achieves; forgotten when xend restarts."""

    LINK_BOUND = 0.8  # achieved/link above this: the link held it back, not QEMU
    #: how far one migration moves the figure: QEMU's pace for the same guest varies
    #: by half from run to run here, so one fast run must not set it
    WEIGHT = 0.25

    def __init__(self, idle: float = 1.3e9, busy: float = 0.4e9) -> None:
        self.rates = {False: idle, True: busy}

    def effective(self, link: float, busy: bool) -> float:
        return min(link, self.rates[busy])

    def learn(self, busy: bool, achieved: float, link: float) -> None:
        if achieved <= 0:
            return
        blend = self.rates[busy] * (1 - self.WEIGHT) + achieved * self.WEIGHT
        if achieved < self.LINK_BOUND * link:
            self.rates[busy] = blend
        else:  # the link may have held it back: QEMU can do at least this, maybe more
            self.rates[busy] = max(self.rates[busy], blend)


class MonotonicEta:
    """An ETA for a progress bar that never runs backwards: the displayed remaining
    time never grows.  A lower estimate is followed; a higher one (the guest
    dirtied more, the link slowed) holds the display where it is, so that it does
    not run down to zero while the migration still has a long way to go."""

    def __init__(self) -> None:
        self._shown: float | None = None

    def update(self, estimate_remaining: float) -> float:
        estimate = max(0.0, estimate_remaining)
        if self._shown is None or estimate < self._shown:
            self._shown = estimate
        return self._shown
