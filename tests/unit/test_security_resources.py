"""The resource label file (spec §8.3): canonical names, Xen's file shape read as data,
atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dom0.errors import SecurityError
from dom0.security import resources
from dom0.security.resources import ResourceLabel, ResourceLabels


def test_canonical_names(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"")
    assert resources.canonical("phy:hda6") == "phy:/dev/hda6"
    assert resources.canonical("phy:/dev/sdb") == "phy:/dev/sdb"
    assert resources.canonical(f"file:{img}") == f"file:{img}"
    assert resources.canonical(f"tap:aio:{img}") == f"tap:aio:{img}"
    assert resources.canonical("vlan:12") == "vlan:12"
    for bad, message in [("hda6", "Resource spec 'hda6' contains no ':' delimiter"),
                         (f"tap:{img}", "contains no tap subtype"),
                         ("file:relative.img", "Invalid resource."),
                         (f"file:{tmp_path}/absent.img", "Invalid resource."),
                         ("vlan:0", "VLAN ID 0 out of range."),
                         ("vlan:4096", "VLAN ID 4096 out of range."),
                         ("vlan:x", "Invalid resource.")]:
        with pytest.raises(SecurityError, match=message):
            resources.canonical(bad)


def test_xens_file_reads_and_3_0_pairs_read_as_acm() -> None:
    text = ("# written by xm\nresources = {\n"
            "    'phy:/dev/hda6': ('ACM', 'example.chwall_ste.client_v1', 'res_disk'),\n"
            "    'vlan:7': ('old.policy', 'net7'),\n}\n")
    labels = resources.parse(text)
    assert labels == {"phy:/dev/hda6": ResourceLabel("example.chwall_ste.client_v1",
                                                     "res_disk"),
                      "vlan:7": ResourceLabel("old.policy", "net7")}
    assert str(labels["vlan:7"]) == "ACM:old.policy:net7"


@pytest.mark.parametrize("text", [
    "import os; os.system('touch /tmp/pwned')\nresources = {}",  # never executed
    "resources = {'a': __import__('os')}",
    "resources = [1, 2]",
    "resources = {'a': ('ACM',)}",
    "resources = {1: ('ACM', 'p', 'l')}",
    "resources = {",
])
def test_anything_but_data_is_refused_or_ignored(text: str, tmp_path: Path) -> None:
    try:
        labels = resources.parse(text)
    except SecurityError as exc:
        assert "is not a resources = {...} dictionary" in str(exc)
    else:
        assert labels == {}
    assert not Path("/tmp/pwned").exists()


def test_add_remove_and_the_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "security" / "policies" / "resource_labels"
    table = ResourceLabels(path)
    table.add("phy:/dev/sdb", ResourceLabel("dom0.example", "blue_disk"))
    table.add("vlan:5", ResourceLabel("dom0.example", "shared_net"))
    with pytest.raises(SecurityError, match="'vlan:5' is already labeled with 'shared_net'."):
        table.add("vlan:5", ResourceLabel("dom0.example", "red_disk"))
    assert ResourceLabels(path).items() == table.items()
    table.remove("vlan:5")
    with pytest.raises(SecurityError, match="Resource not labeled"):
        table.remove("vlan:5")
    assert [r for r, _ in ResourceLabels(path).items()] == ["phy:/dev/sdb"]
    assert [p.name for p in path.parent.iterdir()] == ["resource_labels"]  # no temporaries


def test_a_failed_write_leaves_the_old_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "resource_labels"
    table = ResourceLabels(path)
    table.add("vlan:1", ResourceLabel("p", "a"))
    before = path.read_text()

    def fail(fd: int) -> None:  # a full disk at the worst moment (cannot be caused for real)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        table.add("vlan:2", ResourceLabel("p", "b"))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["resource_labels"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20),
                       st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=5))
def test_render_then_parse_is_the_identity(pairs: dict[str, tuple[str, str]]) -> None:
    labels = {k: ResourceLabel(p, lab) for k, (p, lab) in pairs.items()}
    assert resources.parse(resources.render(labels)) == labels
