"""Frame filtering between domains on a shared bridge, below the toolstack (issue 12:
ACM enforced in the kernel too).  Each vif carries the set of STE types of its
domain's label; two vifs whose sets do not meet may not exchange frames, whichever
bridge port they sit on, flooded broadcasts included.

The whole rule set lives in one nftables table of the bridge family and is replaced
atomically (one ``nft -f`` transaction) whenever a vif comes or goes, so there is never
a moment with half the rules, and no stale rule survives a vif.  The table is removed
when no vif needs filtering."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from dom0.errors import DeviceError

TABLE = "dom0_acm"


def ruleset(vifs: Mapping[str, frozenset[str]]) -> str:
    """The nft script for these vifs (vif name -> its domain's STE types): a drop rule
    for each ordered pair of vifs without a common type."""
    names = sorted(vifs)
    lines = [f"table bridge {TABLE} {{", "  chain forward {",
             "    type filter hook forward priority 0; policy accept;"]
    for a in names:
        blocked = [b for b in names if b != a and not vifs[a] & vifs[b]]
        if blocked:
            ports = ", ".join(f'"{b}"' for b in blocked)
            lines.append(f'    iifname "{a}" oifname {{ {ports} }} drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _nft(script: str) -> None:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=30)
    except FileNotFoundError:
        raise DeviceError("nft is not installed (apt-get install nftables): cannot "
                          "enforce the security policy on the bridge") from None
    if proc.returncode != 0:
        raise DeviceError(f"nft failed: {proc.stderr.strip().splitlines()[-1:]}")


def apply(vifs: Mapping[str, frozenset[str]]) -> None:
    """Replace the table with the rules for *vifs*; no vifs: no table at all."""
    if shutil.which("nft") is None:
        if vifs:
            _nft("")  # says that nft is missing
        return  # without nft there is no table to remove
    exists = subprocess.run(["nft", "list", "table", "bridge", TABLE], capture_output=True,
                            timeout=30).returncode == 0
    script = f"delete table bridge {TABLE}\n" if exists else ""
    if vifs:
        script += ruleset(vifs)
    if script:
        _nft(script)
