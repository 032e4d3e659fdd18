"""How fields are computed from composite xm variables (xm's ``preprocess``, spec
§2.3): ip/gateway/netmask/hostname/interface/dhcp, nfs_*, the deprecated
``restart``, ``cpu`` and ``nics``, and the device entries.  Each is named on the
field it feeds (model/config.py), with the variables it reads; it gets every
variable's value and returns the field's."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from dom0.errors import OptionError
from dom0.model import hvm
from dom0.model.devices import DiskSpec, VfbSpec, VifSpec, parse_disk, parse_vfb, parse_vif
from dom0.model.fields import VARS_BY_NAME, Derive

_RESTART = {"onreboot": ("destroy", "restart", "destroy"),
            "always": ("restart", "restart", "restart"),
            "never": ("never", "never", "never")}
_EVENTS = ("on_poweroff", "on_reboot", "on_crash")
#: more NICs than a guest's PCI bus has slots for is no config
MAX_NICS = 32


def event_action(key: str) -> Derive:
    """on_poweroff/on_reboot/on_crash: the variable itself, else the deprecated
    ``restart`` mapped onto the three events."""
    def derive(values: Mapping[str, Any]) -> str | None:
        restart = values.get("restart")
        action: str | None = None
        if restart:
            if not isinstance(restart, str) or restart not in _RESTART:
                raise OptionError(f"Invalid value for restart: {restart}")
            action = _RESTART[restart][_EVENTS.index(key)]
        if values.get(key):
            action = str(values[key])
        return action
    return derive


def cpus_with_cpu(values: Mapping[str, Any]) -> str | list[str] | None:
    """``cpus``; the deprecated ``cpu`` (CPU for VCPU0) is prepended."""
    cpus = values.get("cpus")
    cpu = values.get("cpu")
    if isinstance(cpus, list):
        return [str(c) for c in cpus]
    if cpu is not None:
        return f"{cpu},{cpus}" if cpus else str(cpu)
    return None if cpus is None else str(cpus)


def root_without_prefix(values: Mapping[str, Any]) -> str:
    root = str(values.get("root") or "")
    return root[len("root="):] if root.startswith("root=") else root


def ip_from_network(values: Mapping[str, Any]) -> str:
    """ip/gateway/netmask/hostname/interface/dhcp (and nfs_server) -> Xen's ``ip=``:
    ``IP:NFS_SERVER-or-127.0.255.255:GW:MASK:HOSTNAME:IFACE:DHCP``."""
    ip = str(values.get("ip") or "")
    dhcp = str(values.get("dhcp") or "off")
    if not ip and dhcp == "off":
        return ""
    server = values.get("nfs_server") or "127.0.255.255"
    return ":".join([ip, str(server), str(values.get("gateway") or ""),
                     str(values.get("netmask") or ""), str(values.get("hostname") or ""),
                     str(values.get("interface") or "eth0"), dhcp])


def extra_with_nfsroot(values: Mapping[str, Any]) -> str:
    """``extra``, with ``nfsroot=<server>:<root>`` prepended when nfs_root is set."""
    extra = str(values.get("extra") or "")
    nfs_server = values.get("nfs_server")
    nfs_root = values.get("nfs_root")
    if nfs_root and not nfs_server:
        raise OptionError("Must set nfs root and nfs server")
    if nfs_root:
        nfs = f"nfsroot={nfs_server}:{nfs_root}"
        return f"{nfs} {extra}" if extra else nfs
    return extra


def image_videoram(values: Mapping[str, Any]) -> dict[str, Any]:
    """``videoram`` is emitted for PV images too (spec §2.3)."""
    return {"videoram": values.get("videoram", 4)}


def entries(value: Any) -> list[Any]:
    """A list variable's entries; a config file that set it to one value (``disk =
    'phy:sda,xvda,w'``) meant a list of that one, as the command line's ``disk=``."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def disks_from_entries(values: Mapping[str, Any]) -> list[DiskSpec]:
    return [parse_disk(d) for d in entries(values.get("disk"))]


def vifs_with_nics(values: Mapping[str, Any]) -> list[VifSpec]:
    """``vif`` entries; the deprecated ``nics`` pads them with empty entries."""
    vifs = entries(values.get("vif"))
    nics = values.get("nics")
    nics = -1 if nics is None else VARS_BY_NAME["nics"].convert(nics)
    if nics > MAX_NICS:  # not a list of a billion empty entries
        raise OptionError(f"Invalid value for nics: {nics} (at most {MAX_NICS})")
    if nics > 0:
        print("The nics option is deprecated.  Please use an empty vif entry instead:\n\n"
              "  vif = [ '' ]\n", file=sys.stderr)
        vifs += [""] * max(0, nics - len(vifs))
    return [parse_vif(v) for v in vifs]


#: the top-level variables that describe a PV domain's screen when it has no ``vfb``
VFB_VARIABLES = ("vnc", "sdl", "vncunused", "vncdisplay", "vnclisten", "vncpasswd", "display",
                 "xauthority")


def screen_options(values: Mapping[str, Any]) -> dict[str, str]:
    """The top-level screen variables that were given (a PV domain's vfb without a
    ``vfb`` line, or an HVM domain's screen)."""
    return {k: str(values[k]) for k in VFB_VARIABLES if values.get(k) not in (None, "")
            or (k == "vncpasswd" and values.get(k) == "")}  # '' is "no password", not unset


def vfbs_from_entries(values: Mapping[str, Any]) -> list[VfbSpec]:
    """``vfb`` entries (spec §3.5).  A PV domain without one that says ``vnc=1`` or
    ``sdl=1`` at the top level gets one from those variables, so that the manual's
    HVM-style lines also give a kernel guest a screen.  As xm did, an SDL screen
    carries the X display and authority xm was run with."""
    vfbs = [parse_vfb(v) for v in entries(values.get("vfb"))]
    top = screen_options(values)
    if not vfbs and values.get("builder") != "hvm" and (
            top.get("vnc", "0") not in ("0", "no") or top.get("sdl", "0") not in ("0", "no")):
        vfbs = [VfbSpec({k: ("1" if k in ("vnc", "sdl") and v in ("yes", "y") else v)
                         for k, v in top.items()})]
    for vfb in vfbs:
        if vfb.sdl and "display" not in vfb.options and os.environ.get("DISPLAY"):
            vfb.options["display"] = os.environ["DISPLAY"]
        if vfb.sdl and "xauthority" not in vfb.options:
            vfb.options["xauthority"] = os.environ.get(
                "XAUTHORITY", os.path.expanduser("~/.Xauthority"))
    return vfbs


# ---- HVM (model/hvm.py) ------------------------------------------------------------


def kernel_or_loader(values: Mapping[str, Any]) -> str:
    """``kernel``; for an HVM domain the firmware: ``loader`` (3.4's name for it),
    else ``kernel``, else Xen's hvmloader (which means "the standard BIOS" here)."""
    kernel = str(values.get("kernel") or "")
    loader = str(values.get("loader") or "")
    if values.get("builder") == "hvm":
        return loader or kernel or hvm.HVMLOADER
    if loader:
        hvm.warn("loader is read for HVM domains only (builder='hvm'): ignored here")
    return kernel


def hvm_part(values: Mapping[str, Any]) -> hvm.HvmImage | None:
    """The HVM image variables, with the screen from the same top-level variables a
    PV domain's vfb reads (VFB_VARIABLES)."""
    return hvm.from_variables(values, screen_options(values))
