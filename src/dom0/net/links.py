"""Bridges and tap devices over netlink (pyroute2), in xend's own network namespace.

xend does the plumbing (create the tap a vif uses, give it to its bridge, limit
its rate, delete it); the user-replaceable vif/network scripts carry the policy
(forwarding, NAT, anti-spoofing)."""

from __future__ import annotations

import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dom0.errors import DeviceError

log = logging.getLogger(__name__)


def _index(ip: IPRoute, name: str) -> int | None:
    found = ip.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str) -> bool:
    with IPRoute() as ip:
        return _index(ip, name) is not None


def is_bridge(name: str) -> bool:
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None:
            return False
        link = ip.get_links(idx)[0]
        info = link.get_attr("IFLA_LINKINFO")
        return bool(info) and info.get_attr("IFLA_INFO_KIND") == "bridge"


def bridges() -> list[str]:
    """Bridges in this namespace, in the kernel's order (the first is the default)."""
    out = []
    with IPRoute() as ip:
        for link in ip.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            if info and info.get_attr("IFLA_INFO_KIND") == "bridge":
                out.append(link.get_attr("IFLA_IFNAME"))
    return out


def create_tap(name: str, bridge: str | None) -> None:
    """A persistent tap for QEMU to open by name, up, and enslaved to *bridge*."""
    with IPRoute() as ip:
        try:
            if _index(ip, name) is not None:
                ip.link("del", index=_index(ip, name))  # a leftover of a dead domain
            # owned by root: else any user may attach to a persistent tap, and a QEMU
            # run as a domain's own user (ACM, domain/ownership.py) could take
            # another domain's vif; xend hands a later tap to such a QEMU as a descriptor
            ip.link("add", ifname=name, kind="tuntap", mode="tap", uid=0)
            idx = _index(ip, name)
            if bridge:
                br = _index(ip, bridge)
                if br is None:
                    raise DeviceError(f"bridge {bridge} does not exist")
                ip.link("set", index=idx, master=br)
            ip.link("set", index=idx, state="up")
        except NetlinkError as exc:
            raise DeviceError(f"cannot create {name}: {exc}") from None


def delete(name: str) -> None:
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is not None:
            try:
                ip.link("del", index=idx)
            except NetlinkError as exc:
                log.warning("cannot delete %s: %s", name, exc)


def limit_rate(name: str, bytes_per_second: int) -> None:
    """Limit what flows through the vif into the guest: a token bucket on the tap's
    egress.  (Xen's netback limited what the guest sends; policing a tap's ingress
    needs a tc classifier, which kernels without cls_u32/act_police lack, so the
    limit is applied on the path we can shape everywhere.)"""
    burst = max(bytes_per_second // 10, 16 * 1024)
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None:
            raise DeviceError(f"{name} does not exist")
        try:
            ip.tc("add", "tbf", idx, rate=bytes_per_second, burst=burst, latency=50000)
        except NetlinkError as exc:
            raise DeviceError(f"cannot limit the rate of {name}: {exc}") from None
