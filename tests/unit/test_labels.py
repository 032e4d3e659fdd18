"""The ACM label grammar xm and xend share (model/labels.py)."""

from __future__ import annotations

import pytest

from dom0.errors import SecurityError
from dom0.model.labels import Label, parse_access_control, parse_label


def test_access_control_entries() -> None:
    assert parse_access_control([]) is None
    lab = parse_access_control(["policy=dom0.example,label=blue"])
    assert lab == Label("dom0.example", "blue")
    assert str(lab) == "ACM:dom0.example:blue"
    assert lab.access_control() == "policy=dom0.example,label=blue"
    assert parse_access_control([" label=red, policy=p"]) == Label("p", "red")
    with pytest.raises(SecurityError, match="Multiple access_control definitions!"):
        parse_access_control(["policy=a,label=b", "policy=a,label=c"])
    for bad in ("policy=a", "label=b", "policy=a,label=", "policy=a,label=b,x=y", "junk"):
        with pytest.raises(SecurityError, match="Invalid access_control entry"):
            parse_access_control([bad])


def test_label_forms() -> None:
    assert parse_label("ACM:p:l") == Label("p", "l")
    assert parse_label("p:l") == Label("p", "l")
    assert parse_label("l", default_policy="p") == Label("p", "l")
    for bad in ("l", "ACM:l", "a:b:c", "ACM:p:l:x"):
        with pytest.raises(SecurityError, match="Invalid label"):
            parse_label(bad)
