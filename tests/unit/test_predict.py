"""dom0.migration.predict: the pre-copy model behind ``xm migrate``'s prediction,
and the ETA that never runs backwards."""

from __future__ import annotations

import math
import random

import pytest

from dom0.migration.predict import (
    DEFAULT_DOWNTIME,
    DOWNTIME_LIMITS,
    MAX_ROUNDS,
    MonotonicEta,
    Prediction,
    StreamRates,
    choose_downtime_limit,
    predict,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
MB = 1_000_000


# ---- non-live: one paused pass -------------------------------------------------


@pytest.mark.parametrize("ram, bandwidth", [
    (512 * MiB, 100 * MB), (4 * GiB, 1_250 * MB), (1, 1.0), (0, 10 * MB),
])
def test_non_live_is_one_round_all_downtime(ram: int, bandwidth: float) -> None:
    p = predict(ram, 50 * MB, bandwidth, live=False)
    assert p.converges
    assert p.rounds == 1
    assert p.total_s == pytest.approx(ram / bandwidth)
    assert p.downtime_s == p.total_s


def test_non_live_ignores_dirty_rate() -> None:
    # the guest is paused: however fast it dirtied memory before, it is one pass
    a = predict(512 * MiB, 0, 100 * MB, live=False)
    b = predict(512 * MiB, 10 * 100 * MB, 100 * MB, live=False)
    assert a == b


# ---- live ----------------------------------------------------------------------


def test_live_idle_guest_converges_in_one_round_without_downtime() -> None:
    ram, bw = 512 * MiB, 100 * MB
    p = predict(ram, 0, bw)
    assert p.converges
    assert p.rounds == 1
    assert p.downtime_s == pytest.approx(0.0, abs=1e-12)
    assert p.total_s == pytest.approx(ram / bw)


def test_live_moderate_dirty_rate_needs_more_rounds_and_time() -> None:
    ram, bw = 2 * GiB, 100 * MB
    p = predict(ram, 30 * MB, bw)
    assert p.converges
    assert p.rounds > 1
    assert p.total_s > ram / bw
    assert 0 < p.downtime_s <= DEFAULT_DOWNTIME


def test_hand_computed_geometric_series() -> None:
    # M = 512 MiB, B = 100 MB/s, D = 10 MB/s (r = D/B = 0.1), limit 0.3 s.
    #   round 1 sends all RAM:  t1 = M/B          = 5.36870912 s
    #   dirtied meanwhile:      D*t1 / B = r*t1   = 0.536870912 s  > 0.3 -> round 2
    #   round 2:                t2 = 0.536870912 s
    #   dirtied meanwhile:      r*t2              = 0.0536870912 s <= 0.3 -> stop and copy
    # rounds = 2, downtime = r^2 * M/B, total = M/B * (1 + r + r^2)
    ram, bw, dirty = 512 * MiB, 100 * MB, 10 * MB
    p = predict(ram, dirty, bw, downtime_limit=0.3)
    assert p.converges
    assert p.rounds == 2
    assert p.downtime_s == pytest.approx(0.0536870912)
    assert p.total_s == pytest.approx(5.36870912 + 0.536870912 + 0.0536870912)
    assert p.total_s == pytest.approx(5.9592670032)
    assert p.describe() == "predicted: 6.0 s in total, 54 ms downtime (2 rounds)"


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.3, 0.5, 0.7, 0.8, 0.85])
def test_geometric_series_in_general(ratio: float) -> None:
    # with r = D/B the time left after round k is (M/B) * r^k: rounds is the least
    # k >= 1 with that under the limit; total is the partial geometric sum to k.
    ram, bw, limit = 1 * GiB, 100 * MB, 0.3
    first = ram / bw
    k = 1
    while first * ratio ** k > limit:
        k += 1
    assert k < MAX_ROUNDS  # the cases chosen all converge
    p = predict(ram, ratio * bw, bw, downtime_limit=limit)
    assert p.converges
    assert p.rounds == k
    assert p.downtime_s == pytest.approx(first * ratio ** k)
    assert p.total_s == pytest.approx(first * sum(ratio ** i for i in range(k + 1)))


def test_more_dirtying_never_predicts_faster() -> None:
    ram, bw = 1 * GiB, 100 * MB
    previous = predict(ram, 0, bw)
    for dirty in range(1 * MB, 86 * MB, 1 * MB):
        p = predict(ram, dirty, bw)
        assert p.converges
        assert p.total_s >= previous.total_s
        assert p.rounds >= previous.rounds
        previous = p


def test_larger_downtime_limit_means_fewer_rounds() -> None:
    ram, bw, dirty = 1 * GiB, 100 * MB, 50 * MB
    tight = predict(ram, dirty, bw, downtime_limit=0.05)
    loose = predict(ram, dirty, bw, downtime_limit=2.0)
    assert tight.converges and loose.converges
    assert loose.rounds < tight.rounds
    assert tight.downtime_s <= 0.05
    assert loose.downtime_s <= 2.0


@pytest.mark.parametrize("factor", [0.95, 0.99, 1.0, 1.5, 10.0])
def test_dirtying_as_fast_as_the_link_does_not_converge(factor: float) -> None:
    bw = 100 * MB
    p = predict(512 * MiB, factor * bw, bw)
    assert not p.converges
    assert math.isinf(p.total_s)
    assert math.isinf(p.downtime_s)


def test_just_below_the_threshold_still_converges_given_enough_rounds() -> None:
    # r = 0.9: 5.37 s * 0.9^k <= 0.3 needs k = 28 rounds, within MAX_ROUNDS (30)
    p = predict(512 * MiB, 90 * MB, 100 * MB)
    assert p.converges
    assert p.rounds == 28


def test_too_many_rounds_does_not_converge() -> None:
    # r = 0.94 is under the 0.95 cut-off, but 5.37 s * 0.94^k needs k ~ 47 > 30 rounds
    p = predict(512 * MiB, 94 * MB, 100 * MB)
    assert not p.converges
    assert p.rounds == MAX_ROUNDS


@pytest.mark.parametrize("bandwidth", [0, 0.0, -1.0])
@pytest.mark.parametrize("live", [True, False])
def test_no_bandwidth_does_not_converge(bandwidth: float, live: bool) -> None:
    p = predict(512 * MiB, 0, bandwidth, live=live)
    assert not p.converges
    assert math.isinf(p.total_s)
    assert p.rounds == 0


def test_prediction_is_a_frozen_value() -> None:
    p = predict(512 * MiB, 0, 100 * MB)
    with pytest.raises(AttributeError):
        p.rounds = 3  # type: ignore[misc]


# ---- describe() ----------------------------------------------------------------


def test_describe_converging() -> None:
    assert Prediction(True, 12.345, 0.0421, 3).describe() == (
        "predicted: 12.3 s in total, 42 ms downtime (3 rounds)")


def test_describe_idle_guest() -> None:
    text = predict(512 * MiB, 0, 100 * MB).describe()
    assert text == "predicted: 5.4 s in total, 0 ms downtime (1 rounds)"


def test_describe_non_live() -> None:
    text = predict(512 * MiB, 0, 100 * MB, live=False).describe()
    assert text == "predicted: 5.4 s in total, 5369 ms downtime (1 rounds)"


def test_describe_not_converging() -> None:
    expected = ("predicted: will not converge (the guest dirties memory faster than the "
                "link carries it); escalating: throttle, larger downtime, post-copy")
    assert predict(512 * MiB, 100 * MB, 100 * MB).describe() == expected
    assert predict(512 * MiB, 0, 0).describe() == expected


# ---- MonotonicEta --------------------------------------------------------------


def test_eta_first_update_is_the_estimate() -> None:
    assert MonotonicEta().update(42.0) == pytest.approx(42.0)


def test_eta_counts_down_with_the_estimate() -> None:
    eta = MonotonicEta()
    assert eta.update(10.0) == pytest.approx(10.0)
    assert eta.update(7.0) == pytest.approx(7.0)
    assert eta.update(6.0) == pytest.approx(6.0)


def test_eta_holds_when_the_estimate_jumps_up() -> None:
    # not counting down to zero on its own: the migration may still be far off
    eta = MonotonicEta()
    assert eta.update(10.0) == pytest.approx(10.0)
    assert eta.update(100.0) == pytest.approx(10.0)
    assert eta.update(50.0) == pytest.approx(10.0)
    assert eta.update(4.0) == pytest.approx(4.0)


def test_eta_follows_a_lower_estimate() -> None:
    eta = MonotonicEta()
    eta.update(10.0)
    assert eta.update(2.0) == pytest.approx(2.0)
    # ... and does not go back up afterwards
    assert eta.update(9.0) == pytest.approx(2.0)


def test_eta_never_negative() -> None:
    eta = MonotonicEta()
    assert eta.update(1.0) == pytest.approx(1.0)
    assert eta.update(1000.0) == pytest.approx(1.0)
    assert eta.update(-3.0) == 0.0  # a nonsensical estimate
    assert MonotonicEta().update(-5.0) == 0.0


def test_eta_never_increases_randomised() -> None:
    rng = random.Random(20240601)
    for _ in range(50):
        eta = MonotonicEta()
        last = eta.update(rng.uniform(0, 300))
        for _ in range(100):
            estimate = rng.choice([rng.uniform(0, 300), rng.uniform(-10, 10), 1e9])
            remaining = eta.update(estimate)
            assert 0.0 <= remaining <= last + 1e-9
            assert remaining <= max(0.0, estimate) + 1e-9  # a lower estimate is followed
            last = remaining


# ---- zero pages ------------------------------------------------------------------


def test_zero_pages_cost_only_their_scan() -> None:
    ram, bw = 512 * MiB, 100 * MB
    p = predict(ram, 0, bw, nonzero_share=0.25, zero_rate=4e9)
    assert p.total_s == pytest.approx(ram * 0.25 / bw + ram * 0.75 / 4e9)
    assert p.total_s < predict(ram, 0, bw).total_s


def test_all_zero_ram_is_the_scan_alone() -> None:
    assert predict(GiB, 0, 10 * MB, nonzero_share=0.0, zero_rate=2e9).total_s == \
        pytest.approx(GiB / 2e9)


@pytest.mark.parametrize("share, clamped", [(-0.5, 0.0), (1.7, 1.0)])
def test_nonzero_share_is_clamped(share: float, clamped: float) -> None:
    assert predict(GiB, 0, 10 * MB, nonzero_share=share) == \
        predict(GiB, 0, 10 * MB, nonzero_share=clamped)


def test_paused_migration_also_skips_zero_pages() -> None:
    p = predict(GiB, 5 * MB, 100 * MB, live=False, nonzero_share=0.5, zero_rate=1e9)
    assert p.total_s == p.downtime_s == pytest.approx(GiB * 0.5 / (100 * MB) + GiB * 0.5 / 1e9)


def test_a_shorter_first_round_leaves_less_dirt() -> None:
    # less to send at first: less dirtied meanwhile, so never more rounds
    ram, bw, dirty = 4 * GiB, 200 * MB, 150 * MB
    full, light = predict(ram, dirty, bw), predict(ram, dirty, bw, nonzero_share=0.1)
    assert light.converges and full.converges
    assert light.rounds <= full.rounds
    assert light.total_s < full.total_s


# ---- working sets ----------------------------------------------------------------


def test_a_working_set_caps_what_a_round_leaves() -> None:
    # 1 GB/s dirtying over a 1 s first round would leave 1 GB; a guest that only
    # rewrites 64 MiB leaves 64 MiB
    ram, bw, dirty = 2 * GiB, 2 * GiB, 1e9
    capped = predict(ram, dirty, bw, working_set=64 * MiB)
    assert capped.converges
    assert capped.downtime_s == pytest.approx(64 * MiB / bw)
    assert capped.total_s == pytest.approx(ram / bw + 64 * MiB / bw)
    assert predict(ram, dirty, bw).total_s > capped.total_s


def test_a_working_set_larger_than_the_limit_allows_never_converges() -> None:
    # rewritten faster than sent: each round leaves the whole working set again
    p = predict(GiB, 500 * MB, 100 * MB, downtime_limit=0.3, working_set=64 * MiB)
    assert not p.converges


# ---- the downtime limit xend asks for ------------------------------------------------


def test_an_idle_guest_gets_the_smallest_limit() -> None:
    assert choose_downtime_limit(512 * MiB, 0, 1e9, nonzero_share=0.2) == DOWNTIME_LIMITS[0]


def test_a_limit_the_guest_only_just_meets_is_passed_over() -> None:
    # 64 MiB working set at 400 MB/s: a 168 ms stop; 300 ms is the only limit with
    # room to spare... and it is no more than double either: QEMU's default
    ram, bw = 512 * MiB, 400e6
    limit = choose_downtime_limit(ram, 900e6, bw, nonzero_share=0.7, working_set=64 * MiB)
    assert limit == DEFAULT_DOWNTIME
    # with 16 MiB (a 42 ms stop) 100 ms has room
    assert choose_downtime_limit(ram, 900e6, bw, nonzero_share=0.7,
                                 working_set=16 * MiB) == 0.1


def test_a_guest_that_never_converges_keeps_qemus_default() -> None:
    assert choose_downtime_limit(GiB, 10 * 100 * MB, 100 * MB) == DEFAULT_DOWNTIME


@pytest.mark.parametrize("dirty", [0.0, 5 * MB, 20 * MB, 60 * MB])
def test_the_chosen_limit_is_met_with_room_by_the_model(dirty: float) -> None:
    ram, bw = GiB, 100 * MB
    limit = choose_downtime_limit(ram, dirty, bw)
    assert limit in DOWNTIME_LIMITS
    p = predict(ram, dirty, bw, limit)
    assert p.converges
    if limit < DEFAULT_DOWNTIME:
        assert p.downtime_s <= limit / 2
        assert p.total_s <= 1.25 * predict(ram, dirty, bw).total_s


# ---- what QEMU reaches ------------------------------------------------------------


def test_stream_rate_is_the_link_or_qemus_own_pace_whichever_is_lower() -> None:
    rates = StreamRates(idle=1e9, busy=3e8)
    assert rates.effective(10e6, busy=False) == 10e6  # a slow link holds it back
    assert rates.effective(5e9, busy=False) == 1e9
    assert rates.effective(5e9, busy=True) == 3e8


def test_stream_rate_learns_from_a_migration_qemu_held_back() -> None:
    rates = StreamRates(idle=1e9, busy=3e8)
    rates.learn(busy=True, achieved=5e8, link=2e9)  # QEMU-bound: move a quarter of the way
    assert rates.rates[True] == pytest.approx(3.5e8)
    rates.learn(busy=True, achieved=1e8, link=2e9)  # and down again
    assert rates.rates[True] == pytest.approx(2.875e8)
    assert rates.rates[False] == 1e9  # the other kind is left alone


def test_stream_rate_a_link_bound_migration_only_raises_it() -> None:
    rates = StreamRates(idle=1e9, busy=3e8)
    rates.learn(busy=False, achieved=9.5e6, link=10e6)  # the link held it back
    assert rates.rates[False] == 1e9  # says nothing against QEMU's pace
    rates.learn(busy=True, achieved=0.9e9, link=1e9)  # QEMU did at least this: it rises,
    assert rates.rates[True] == pytest.approx(4.5e8)  # but one run is not the whole story
    rates.learn(busy=True, achieved=0.0, link=1e9)  # nothing measured
    assert rates.rates[True] == pytest.approx(4.5e8)
