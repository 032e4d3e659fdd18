"""Properties of SXP, both ways (issue 9 item 12): what we print reads back as the
same value, and reading any text either gives forms or raises SxpSyntaxError.  SXP
arrives from outside as ``xm create -F`` files and xend-config.sxp."""

from __future__ import annotations

from typing import Any

from fuzzing import budget, target
from hypothesis import given
from hypothesis import strategies as st

from dom0.errors import XendError
from dom0.model import sxp
from dom0.model.config import DomainConfig

ATOMS = st.text(min_size=1, max_size=12) | st.sampled_from(
    ["vm", "name", "image", "linux", "device", "vbd", "vif", "uname", "memory", "64",
     "0-3,^1", "it's", "a\\b", "a\nb", "#x", "(", ")", "'", '"', " "])
#: trees of atoms; nesting bounded (printing is recursive; parsing is not)
TREES: Any = st.recursive(ATOMS, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


def without_empty_atoms(value: Any) -> Any:
    """An empty atom prints as nothing (as Xen's did), so it does not read back."""
    if isinstance(value, list):
        return [without_empty_atoms(v) for v in value if v != ""]
    return value


@budget(300)
@given(TREES)
def test_printed_sxp_reads_back(value: Any) -> None:
    with target("sxp print->parse"):
        assert sxp.parse_one(sxp.to_string(value)) == without_empty_atoms(value)
        assert sxp.parse(sxp.pretty(value)) == [without_empty_atoms(value)]


def test_empty_atom_is_the_documented_exception() -> None:
    assert sxp.parse_one(sxp.to_string(["fda", ""])) == ["fda"]


SXP_ALPHABET = st.sampled_from(list("()'\"\\# \n\tab1:-") + ["(vm", "(image", "(device"])


@budget(500)
@given(st.text() | st.lists(SXP_ALPHABET, max_size=60).map("".join)
       | st.integers(0, 2000).map(lambda n: "(a " * n + ")" * n))
def test_parse_raises_only_its_own_error(text: str) -> None:
    with target("sxp parse"):
        try:
            forms = sxp.parse(text)
        except sxp.SxpSyntaxError:
            return
        assert isinstance(forms, list)
        sxp.pretty(forms)  # whatever was read can be printed (no recursion limit met)


@budget(300)
@given(st.lists(SXP_ALPHABET, max_size=80).map("".join) | TREES.map(
    lambda t: sxp.to_string(["vm", t])))
def test_config_from_any_sxp_is_a_config_or_a_config_error(text: str) -> None:
    """``xm create -F``: any text is a DomainConfig or an error xm reports."""
    with target("sxp config (create -F)"):
        try:
            cfg = DomainConfig.from_sxp(sxp.parse_one(text))
        except (sxp.SxpSyntaxError, XendError):
            return
        cfg.to_sxp()
        try:
            cfg.validate()
        except XendError:
            pass
