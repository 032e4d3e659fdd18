"""Virtual network interfaces: Xen's ``vif = [...]`` grammar (spec §3.2) resolved
into a host tap device and the NIC QEMU gives the guest."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from dom0.errors import DeviceError
from dom0.model.devices import ATTACH_KEYS as ATTACH_KEYS  # re-exported
from dom0.model.devices import VifSpec

#: digits bounded: a rate past 10^18 is no rate (and a 5,000-digit one broke int())
_RATE = re.compile(r"^([0-9]{1,18})([GMK]?)([Bb])/s(@([0-9]{1,18})([mu]?)s)?$")
#: Linux's IFNAMSIZ less the NUL: the longest name a tap can have
MAX_IFNAME = 15
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
#: QEMU NIC models for ``type=ioemu`` without a ``model=`` (Xen's qemu-dm default)
DEFAULT_EMULATED_MODEL = "rtl8139"


@dataclass(frozen=True)
class Vif:
    devid: int
    mac: str
    bridge: str | None
    vifname: str
    model: str
    emulated: bool
    script: str | None
    ip: str | None
    rate: int | None  # bytes per second

    @property
    def netdev_id(self) -> str:
        return f"vif{self.devid}"

    @property
    def device_id(self) -> str:
        return f"vif-dev{self.devid}"


def random_mac(rng: random.Random | None = None) -> str:
    """``00:16:3e`` (XenSource's OUI) and three random bytes, the first <= 0x7f."""
    r = rng or random.SystemRandom()
    return "00:16:3e:%02x:%02x:%02x" % (r.randint(0, 0x7F), r.randint(0, 0xFF),
                                        r.randint(0, 0xFF))


def parse_rate(text: str) -> int | None:
    """``10Mb/s`` / ``1MB/s@20ms`` -> bytes per second; a bad rate means unlimited."""
    m = _RATE.fullmatch(text)
    if not m:
        return None
    amount = int(m.group(1)) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[m.group(2)]
    return amount // 8 if m.group(3) == "b" else amount


def resolve(spec: VifSpec, devid: int, domid: int) -> Vif:
    opts = spec.options
    mac = opts.get("mac") or ""
    if not mac or not _MAC.fullmatch(mac):
        raise DeviceError("MAC address not specified or generated.")
    if opts.get("backend") not in (None, "", "0"):
        raise DeviceError("Only Domain-0 can be a network backend")
    emulated = opts.get("type") == "ioemu"
    model = opts.get("model") or (DEFAULT_EMULATED_MODEL if emulated else "virtio-net-pci")
    rate = parse_rate(opts["rate"]) if opts.get("rate") else None
    vifname = opts.get("vifname") or f"vif{domid}.{devid}"
    _check_ifname(vifname)
    return Vif(devid=devid, mac=mac.lower(), bridge=opts.get("bridge") or None,
               vifname=vifname, model=model,
               emulated=emulated, script=opts.get("script") or None, ip=opts.get("ip") or None,
               rate=rate)


def _check_ifname(name: str) -> None:
    """What the kernel accepts as an interface name, refused here with a cause rather
    than as a netlink error when the tap is made."""
    if len(name.encode()) > MAX_IFNAME:
        shown = name if len(name) <= 32 else f"{name[:32]}... ({len(name)} characters)"
        raise DeviceError(f"Invalid vifname {shown}: an interface name has at most "
                          f"{MAX_IFNAME} bytes")
    if name in (".", "..") or any(c in name for c in "/:" + " \t\n\r\v\f\0"):
        raise DeviceError(f"Invalid vifname {name!r}: no '/', ':' or blanks, not '.' or '..'")


def netdev(vif: Vif) -> dict[str, Any]:
    return {"type": "tap", "id": vif.netdev_id, "ifname": vif.vifname, "script": "no",
            "downscript": "no"}


def device(vif: Vif) -> dict[str, Any]:
    model = {"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139",
             "ne2k_pci": "ne2k_pci"}.get(vif.model, vif.model)
    return {"driver": model, "id": vif.device_id, "netdev": vif.netdev_id, "mac": vif.mac}


def argv(vifs: list[Vif]) -> list[str]:
    out: list[str] = []
    for vif in vifs:
        nd = netdev(vif)
        out += ["-netdev", ",".join([nd.pop("type")] + [f"{k}={v}" for k, v in nd.items()])]
        dev = device(vif)
        out += ["-device", ",".join([dev.pop("driver")] + [f"{k}={v}" for k, v in dev.items()])]
    return out
