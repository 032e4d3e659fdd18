"""The nftables rule set that keeps domains without a common STE type apart."""

from __future__ import annotations

from dom0.net.framefilter import ruleset


def test_pairs_without_a_common_type_are_dropped_both_ways() -> None:
    text = ruleset({"vif1.0": frozenset({"blue", "common"}),
                    "vif2.0": frozenset({"red", "common"}),
                    "vif3.0": frozenset({"blue"}),
                    "vif4.0": frozenset({"red"})})
    rules = [ln.strip() for ln in text.splitlines() if "drop" in ln]
    assert rules == ['iifname "vif1.0" oifname { "vif4.0" } drop',
                     'iifname "vif2.0" oifname { "vif3.0" } drop',
                     'iifname "vif3.0" oifname { "vif2.0", "vif4.0" } drop',
                     'iifname "vif4.0" oifname { "vif1.0", "vif3.0" } drop']
    assert "policy accept" in text  # everything else (the uplink, the host) passes


def test_an_unlabelled_vif_under_a_policy_shares_nothing() -> None:
    text = ruleset({"a": frozenset(), "b": frozenset({"x"})})
    assert 'iifname "a" oifname { "b" } drop' in text
    assert 'iifname "b" oifname { "a" } drop' in text
