"""The config field table: what each field of a domain's config is, declared once.

Two tables, in the spirit of virt-manager's ``XMLProperty``:

* :data:`XM_VARIABLES` lists every variable ``xm create`` accepts (spec §2.3), in
  the spec's order (``--help_config`` prints them so), with its type and default.
* Each field of :class:`~dom0.model.config.DomainConfig` carries a :class:`Spec`
  in its dataclass metadata (``field(..., metadata=xm(...))``): the xm variable it
  comes from, its SXP key and place, its xend default and its check.  The field's
  Python type and default are the dataclass's own.

Config-file evaluation, ``xm create -n`` SXP, SXP in (``-F``), JSON and
validation are derived from these; a variable no field names lands in
``DomainConfig.other``.  Composite variables (ip/gateway/..., nfs_*, restart, cpu,
nics) are read by small named derivation functions, declared on the field they
feed.
"""

from __future__ import annotations

import enum
import re
import sys
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dom0.errors import ConfigError, OptionError
from dom0.model.cpus import parse_cpu_list
from dom0.model.devices import parse_disk, parse_vif
from dom0.model.sxp import Sxp

if TYPE_CHECKING:
    from dom0.model.config import DomainConfig
    from dom0.model.devices import DiskSpec, VifSpec

# ---- xm variables (spec §2.2-2.3) ----------------------------------------------------

# Variable types: S string, I int, B yes/no, L list (repeatable), N long
STR, INT, BOOL, LIST, LONG = "S", "I", "B", "L", "N"


@dataclass(frozen=True)
class Var:
    """One ``xm create`` variable: its name, type letter and xm's default."""

    name: str
    kind: str
    default: Any
    #: kept in ``other`` even at its default, and always printed at the top level of
    #: ``(vm ...)`` after the image (s3_integrity: spec §2.3 "always emitted top-level")
    always_sxp: bool = False

    def convert(self, value: Any, previous: Any = None) -> Any:
        """xm's set_int/set_bool/append_value/set_value (spec §2.2, error texts included)."""
        if self.kind in (INT, LONG):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise OptionError(f"Invalid value: {value}") from None
        if self.kind == BOOL:
            if isinstance(value, int):
                return int(bool(value))
            text = str(value).lower()
            if text in ("yes", "y", "1"):
                return 1
            if text in ("no", "n", "0"):
                return 0
            raise OptionError(f"Invalid value:{value}")
        if self.kind == LIST:
            if isinstance(value, list):
                return value
            return (previous or []) + [value]
        return value


#: spec §2.3: every variable xm 3.4 declared, in its order
XM_VARIABLES: tuple[Var, ...] = (
    Var("name", STR, None),
    Var("uuid", STR, None),
    Var("builder", STR, "linux"),
    Var("kernel", STR, None),
    Var("ramdisk", STR, ""),
    Var("loader", STR, ""),
    Var("bootloader", STR, None),
    Var("bootargs", STR, None),
    Var("bootentry", STR, None),
    Var("features", STR, ""),
    Var("memory", INT, 128),
    Var("maxmem", INT, None),
    Var("shadow_memory", INT, 0),
    Var("vcpus", INT, 1),
    Var("vcpu_avail", LONG, None),
    Var("cpu", INT, None),
    Var("cpus", STR, None),
    Var("cpu_weight", INT, None),
    Var("cpu_cap", INT, None),
    Var("restart", STR, None),
    Var("on_poweroff", STR, None),
    Var("on_reboot", STR, None),
    Var("on_crash", STR, None),
    Var("on_xend_start", STR, "ignore"),
    Var("on_xend_stop", STR, "ignore"),
    Var("blkif", BOOL, 0),
    Var("netif", BOOL, 0),
    Var("tpmif", LIST, 0),
    Var("disk", LIST, []),
    Var("vif", LIST, []),
    Var("nics", INT, -1),
    Var("vtpm", LIST, []),
    Var("pci", LIST, []),
    Var("vscsi", LIST, []),
    Var("ioports", LIST, []),
    Var("irq", LIST, []),
    Var("vfb", LIST, []),
    Var("access_control", LIST, []),
    Var("root", STR, ""),
    Var("extra", STR, ""),
    Var("ip", STR, ""),
    Var("gateway", STR, ""),
    Var("netmask", STR, ""),
    Var("hostname", STR, ""),
    Var("interface", STR, "eth0"),
    Var("dhcp", STR, "off"),
    Var("nfs_server", STR, None),
    Var("nfs_root", STR, None),
    Var("device_model", STR, None),
    Var("fda", STR, ""),
    Var("fdb", STR, ""),
    Var("serial", STR, ""),
    Var("monitor", BOOL, 0),
    Var("localtime", BOOL, 0),
    Var("rtc_timeoffset", INT, 0),
    Var("keymap", STR, ""),
    Var("usb", BOOL, 0),
    Var("usbdevice", STR, ""),
    Var("guest_os_type", STR, "default"),
    Var("stdvga", BOOL, 0),
    Var("isa", BOOL, 0),
    Var("boot", STR, "c"),
    Var("nographic", BOOL, 0),
    Var("soundhw", STR, ""),
    Var("vnc", STR, None),
    Var("vncdisplay", STR, None),
    Var("vnclisten", STR, None),
    Var("vncunused", BOOL, 1),
    Var("vncpasswd", STR, None),
    Var("vncconsole", BOOL, None),
    Var("vncviewer", BOOL, None),
    Var("sdl", STR, None),
    Var("opengl", STR, None),
    Var("display", STR, None),
    Var("xauthority", STR, None),
    Var("videoram", INT, 4),
    Var("pae", INT, 1),
    Var("acpi", INT, 1),
    Var("apic", INT, 1),
    Var("hpet", INT, 0),
    Var("timer_mode", INT, 1),
    Var("vpt_align", INT, 1),
    Var("viridian", INT, 0),
    Var("hap", INT, 1),
    Var("pci_msitranslate", INT, 1),
    Var("pci_power_mgmt", INT, 0),
    Var("xen_platform_pci", INT, 1),
    Var("vhpt", INT, 0),
    Var("cpuid", LIST, []),
    Var("cpuid_check", LIST, []),
    Var("machine_address_size", INT, None),
    Var("suppress_spurious_page_faults", BOOL, None),
    Var("target", INT, 0),
    Var("s3_integrity", INT, 1, always_sxp=True),
)
VARS_BY_NAME: dict[str, Var] = {v.name: v for v in XM_VARIABLES}

# ---- field specs -----------------------------------------------------------------------


class Place(enum.Enum):
    """Where a field sits in the ``(vm ...)`` form."""

    TOP = "top"  #: ``(key value)`` directly in ``(vm ...)``
    IMAGE_TAG = "image tag"  #: the builder: ``(image (<value> ...))``
    IMAGE = "image"  #: ``(key value)`` inside ``(image (linux ...))``
    IMAGE_REST = "image rest"  #: a dict of further image keys, spliced in
    DEVICE = "device"  #: a list of specs, each a ``(device (<kind> ...))``
    NONE = "none"  #: JSON only


#: a check gets the field's effective value and the whole config; it raises ConfigError
Check = Callable[[Any, "DomainConfig"], None]
#: a derivation gets every xm variable's value and returns the field's value
Derive = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Spec:
    """What a DomainConfig field is besides its type and default."""

    #: the xm variable it comes from (None: no variable, e.g. ``other``)
    var: str | None = None
    #: further xm variables its derivation reads (consumed: they do not land in ``other``)
    reads: tuple[str, ...] = ()
    #: how to compute it from the xm variables when it is more than a conversion of ``var``
    derive: Derive | None = None
    sxp: str | None = None
    place: Place = Place.TOP
    #: printed even when unset (None or ""); otherwise omitted then
    always: bool = False
    #: what xend assumes when the config leaves it unset (None: nothing)
    xend_default: Any = None
    check: Check | None = None
    #: for Place.DEVICE: the spec class of each item (its SXP kinds, to_sxp, from_options)
    item: type[DiskSpec] | type[VifSpec] | None = None


def xm(**spec: Any) -> dict[str, Spec]:
    """Dataclass field metadata holding the field's :class:`Spec`."""
    return {"xm": Spec(**spec)}


# ---- checks (xend side, spec §2.4 and §9) -----------------------------------------------

RESTART_MODES = (
    "destroy",
    "restart",
    "preserve",
    "rename-restart",
    "coredump-destroy",
    "coredump-restart",
)
XEND_START_ACTIONS = ("ignore", "start")
XEND_STOP_ACTIONS = ("ignore", "shutdown", "suspend")
NAME_RE = re.compile(r"^[A-Za-z0-9_\-.:/+]+$")


def check_name(value: str, cfg: DomainConfig) -> None:
    if not value:
        raise ConfigError("Missing VM Name")
    if not NAME_RE.match(value):
        raise ConfigError("Invalid VM Name")


def check_event_mode(event: str) -> Check:
    """on_poweroff/on_reboot/on_crash: one of RESTART_MODES, named by its event."""
    def check(value: str, cfg: DomainConfig) -> None:
        if value not in RESTART_MODES:
            raise ConfigError(f"Invalid event handling mode: {event}")
    return check


def check_choice(label: str, choices: tuple[str, ...]) -> Check:
    def check(value: str, cfg: DomainConfig) -> None:
        if value not in choices:
            raise ConfigError(f"{label}: {value}")
    return check


def check_memory(value: int, cfg: DomainConfig) -> None:
    if value <= 0 or cfg.max_memory <= 0:
        raise ConfigError("memory_dynamic_max must be greater than zero")


def check_maxmem(value: int | None, cfg: DomainConfig) -> None:
    if cfg.memory > cfg.max_memory:
        raise ConfigError("memory_dynamic_max must be less than or equal to memory_static_max")


def check_vcpus(value: int, cfg: DomainConfig) -> None:
    if value <= 0:
        raise ConfigError("Zero or less VCPUs is invalid")


def check_cpus(value: str | list[str] | None, cfg: DomainConfig) -> None:
    if value is None:
        return
    if isinstance(value, list) and len(value) != cfg.vcpus:
        raise ConfigError("vcpus and the item number of cpus are not same")
    for spec in value if isinstance(value, list) else [value]:
        parse_cpu_list(spec)


def check_cpu_weight(value: int | None, cfg: DomainConfig) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ConfigError("Cpu weight out of range, valid values are within range from 1 to 65535")


def check_cpu_cap(value: int | None, cfg: DomainConfig) -> None:
    if value is not None and not 0 <= value <= 100 * cfg.vcpus:
        raise ConfigError(
            "Cpu cap out of range, valid range is from 0 to "
            f"{100 * cfg.vcpus} for specified number of vcpus"
        )


def check_kernel(value: str, cfg: DomainConfig) -> None:
    if not value:
        raise ConfigError("kernel must be set for a linux domain")


def check_uuid(value: str, cfg: DomainConfig) -> None:
    if value:
        try:
            uuidlib.UUID(value)
        except ValueError:
            raise ConfigError(f"Invalid UUID: {value}") from None


# ---- derivations from composite xm variables (xm's preprocess) ----------------------------

_RESTART = {"onreboot": ("destroy", "restart", "destroy"),
            "always": ("restart", "restart", "restart"),
            "never": ("never", "never", "never")}
_EVENTS = ("on_poweroff", "on_reboot", "on_crash")


def event_action(key: str) -> Derive:
    """on_poweroff/on_reboot/on_crash: the variable itself, else the deprecated
    ``restart`` mapped onto the three events."""
    def derive(values: Mapping[str, Any]) -> str | None:
        restart = values.get("restart")
        action: str | None = None
        if restart:
            if restart not in _RESTART:
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


def disks_from_entries(values: Mapping[str, Any]) -> list[DiskSpec]:
    return [parse_disk(d) for d in values.get("disk") or []]


def vifs_with_nics(values: Mapping[str, Any]) -> list[VifSpec]:
    """``vif`` entries; the deprecated ``nics`` pads them with empty entries."""
    vifs = list(values.get("vif") or [])
    nics = values.get("nics")
    nics = -1 if nics is None else VARS_BY_NAME["nics"].convert(nics)
    if nics > 0:
        print("The nics option is deprecated.  Please use an empty vif entry instead:\n\n"
              "  vif = [ '' ]\n", file=sys.stderr)
        vifs += [""] * max(0, nics - len(vifs))
    return [parse_vif(v) for v in vifs]


# ---- SXP value codecs ------------------------------------------------------------------


def sxp_value(value: Any) -> Sxp:
    """A config value as SXP: lists stay lists, everything else is its text."""
    if isinstance(value, list):
        return [sxp_value(v) for v in value]
    return str(value)


def decode_str(key: str, raw: Sxp) -> str | None:
    return raw if isinstance(raw, str) else None


def decode_int(key: str, raw: Sxp) -> int | None:
    if not isinstance(raw, str):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"Invalid value for {key}: {raw}") from None


def decode_str_or_list(key: str, raw: Sxp) -> str | list[str] | None:
    if isinstance(raw, list):
        return [str(c) for c in raw]
    return raw
