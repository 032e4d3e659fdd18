"""The bridge-level frame filter in a real kernel: three "guests" (network namespaces
on veth pairs, named like vifs) on one bridge; the filter keeps apart exactly the
pairs without a common STE type, and goes away completely when emptied.  (The same
filter under real guests, driven by xend's policy, is in the ACM tests.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from conftest import REPO

TYPES = {"vif1.0": {"blue", "common"}, "vif2.0": {"red", "common"}, "vif3.0": {"red"}}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def bridge() -> Iterator[str]:
    host = "ff" + uuid.uuid4().hex[:8]
    guests = [f"{host}g{i}" for i in (1, 2, 3)]
    for ns in (host, *guests):
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", host, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", host, "ip", "link", "set", "br0", "up")
        for i, ns in enumerate(guests, 1):
            sh("ip", "link", "add", f"vif{i}.0", "netns", host, "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh("ip", "netns", "exec", host, "ip", "link", "set", f"vif{i}.0", "master", "br0",
               "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.81.0.{i}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        yield host
    finally:
        for ns in (host, *guests):
            sh("ip", "netns", "del", ns, check=False)


def apply(host: str, vifs: dict[str, set[str]]) -> None:
    code = ("import sys; from dom0.net.framefilter import apply; "
            f"apply({{k: frozenset(v) for k, v in {vifs!r}.items()}})")
    subprocess.run(["ip", "netns", "exec", host, sys.executable, "-c", code], check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO / "src")), timeout=60)


def pings(host: str, src: int, dst: int) -> bool:
    return sh("ip", "netns", "exec", f"{host}g{src}", "ping", "-c", "1", "-W", "1",
              f"10.81.0.{dst}", check=False).returncode == 0


def test_only_pairs_sharing_a_type_exchange_frames(bridge: str) -> None:
    assert pings(bridge, 1, 3) and pings(bridge, 2, 3)  # no filter yet
    apply(bridge, TYPES)
    assert pings(bridge, 1, 2)  # blue+common / red+common share "common"
    assert pings(bridge, 2, 3)  # both red
    assert not pings(bridge, 1, 3) and not pings(bridge, 3, 1)  # blue+common / red
    # vif3 leaves: its rules go with it
    apply(bridge, {k: v for k, v in TYPES.items() if k != "vif3.0"})
    assert pings(bridge, 1, 3)
    apply(bridge, {})
    assert sh("ip", "netns", "exec", bridge, "nft", "list", "table", "bridge", "dom0_acm",
              check=False).returncode != 0
