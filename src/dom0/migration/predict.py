"""Predicting a live migration, and an ETA that never runs backwards.

Pre-copy sends all RAM once, then, round after round, what the guest dirtied
meanwhile; it stops the guest when what is left fits in the downtime limit.
With RAM M, bandwidth B and dirty rate D, round i sends D * t(i-1) bytes
(never more than M), taking t(i) = that / B.  It converges only when D < B.
"""

from __future__ import annotations

from dataclasses import dataclass

#: QEMU's default downtime limit (s)
DEFAULT_DOWNTIME = 0.3
MAX_ROUNDS = 30


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
            downtime_limit: float = DEFAULT_DOWNTIME, live: bool = True) -> Prediction:
    if bandwidth <= 0:
        return Prediction(False, float("inf"), float("inf"), 0)
    if not live:  # paused: one pass, and the whole pass is downtime
        t = ram_bytes / bandwidth
        return Prediction(True, t, t, 1)
    total = first = ram_bytes / bandwidth
    pending = min(ram_bytes, dirty_bytes_per_s * first)
    rounds = 1
    while pending / bandwidth > downtime_limit:
        if rounds >= MAX_ROUNDS or dirty_bytes_per_s >= 0.95 * bandwidth:
            return Prediction(False, float("inf"), float("inf"), rounds)
        t = pending / bandwidth
        total += t
        pending = min(ram_bytes, dirty_bytes_per_s * t)
        rounds += 1
    downtime = pending / bandwidth
    return Prediction(True, total + downtime, downtime, rounds)


class MonotonicEta:
    """An ETA for a progress bar: the displayed remaining time never grows, so the
    finish never appears to move away; when a fresh estimate is lower, it follows."""

    def __init__(self) -> None:
        self._deadline: float | None = None

    def update(self, now: float, estimate_remaining: float) -> float:
        candidate = now + max(0.0, estimate_remaining)
        if self._deadline is None or candidate < self._deadline:
            self._deadline = candidate
        return max(0.0, self._deadline - now)
