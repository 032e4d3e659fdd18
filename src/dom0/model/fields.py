"""The config field table: what each field of a domain's config is, declared once.

In the spirit of virt-manager's ``XMLProperty``, each field of
:class:`~dom0.model.config.DomainConfig` is one declaration there: its name,
Python type and default are the dataclass field's own, and its metadata
(``field(..., metadata=xm(...))``) holds a :class:`Spec`: the xm variable it comes
from (and the further variables a derivation reads), its SXP key and
:class:`Place`, xend's default and its check.  Fields are declared in the order
``xm create -n`` prints them.

This module holds the machinery: :data:`XM_VARIABLES`, every variable ``xm create``
accepts (spec §2.3, in the spec's order, as ``--help_config`` prints them, with
type letter and default); :class:`Spec`; :class:`Table`, which reads the columns
off the dataclass; and the SXP value codecs.  The behaviour named in the rows lives
in ``model/checks.py`` (validation) and ``model/preprocess.py`` (derivations from
composite variables).  Config-file evaluation, ``xm create -n`` SXP, SXP in
(``-F``), JSON and validation are all derived from the table; a variable no field
reads lands in ``DomainConfig.other``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dom0.errors import ConfigError, OptionError
from dom0.model.devices import DiskSpec, VfbSpec, VifSpec
from dom0.model.sxp import Sxp
from dom0.model.vtpm import VtpmSpec

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
            except (TypeError, ValueError, OverflowError):  # overflow: an infinite float
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
    #: not xm 3.4's: Xen 4's HVM firmware choice (``seabios``/``ovmf``), see model/hvm.py
    Var("bios", STR, ""),
    Var("bootloader", STR, None),
    Var("bootargs", STR, None),
    Var("bootentry", STR, None),
    Var("features", STR, ""),
    Var("memory", INT, 128),
    Var("maxmem", INT, None),
    Var("shadow_memory", INT, 0),
    Var("vcpus", INT, 1),
    #: not xm 3.4's: Xen 4.0 added it (xl kept it); vcpus then says how many are online
    Var("maxvcpus", INT, None),
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

#: the spec class of a device field's items
DeviceItem = type[DiskSpec] | type[VifSpec] | type[VfbSpec] | type[VtpmSpec]


class Place(enum.Enum):
    """Where a field sits in the ``(vm ...)`` form."""

    TOP = "top"  #: ``(key value)`` directly in ``(vm ...)``
    IMAGE_TAG = "image tag"  #: the builder: ``(image (<value> ...))``
    IMAGE = "image"  #: ``(key value)`` inside ``(image (linux ...))``
    IMAGE_REST = "image rest"  #: a dict of further image keys, spliced in
    #: a typed part of the image (model/hvm.HvmImage): its own to_sxp() gives its keys
    IMAGE_PART = "image part"
    DEVICE = "device"  #: a list of specs, each a ``(device (<kind> ...))``
    NONE = "none"  #: JSON only


class ConfigView(Protocol):
    """What a check may read of the whole config besides its own field.  (A
    protocol, not DomainConfig: config.py imports the checks, so they cannot
    import it back.)"""

    memory: int
    vcpus: int

    @property
    def max_memory(self) -> int: ...

    @property
    def max_vcpus(self) -> int: ...


#: a check gets the field's effective value and the whole config; it raises ConfigError
Check = Callable[[Any, ConfigView], None]
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
    item: DeviceItem | None = None


def xm(*, var: str | None = None, reads: tuple[str, ...] = (), derive: Derive | None = None,
       sxp: str | None = None, place: Place = Place.TOP, always: bool = False,
       xend_default: Any = None, check: Check | None = None,
       item: DeviceItem | None = None) -> dict[str, Spec]:
    """Dataclass field metadata holding the field's :class:`Spec` (typed keywords, so
    that mypy checks every row of the table)."""
    return {"xm": Spec(var, reads, derive, sxp, place, always, xend_default, check, item)}


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


# ---- the table, read off a config dataclass ----------------------------------------------


@dataclass(frozen=True)
class Column:
    """One config field as the table sees it: name, Python type, default and Spec."""

    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def key(self) -> str:
        """Its SXP key (the attribute name unless the Spec names another)."""
        return self.spec.sxp or self.name

    @property
    def optional(self) -> bool:
        return isinstance(self.type, types.UnionType) and type(None) in typing.get_args(self.type)

    @property
    def base(self) -> Any:
        """The type without ``| None``."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        return args[0] if self.optional and len(args) == 1 else self.type

    def variables(self) -> tuple[str, ...]:
        """The xm variables this field consumes."""
        return ((self.spec.var,) if self.spec.var else ()) + self.spec.reads

    def effective(self, cfg: object) -> Any:
        """Its value, or xend's default when the config leaves it unset."""
        value = getattr(cfg, self.name)
        return value if value is not None else self.spec.xend_default

    def from_variable(self, var: Var, value: Any) -> Any:
        """A plain field from its xm variable's value; None means unset."""
        if value is None:
            return None if self.optional else self.default
        if self.base is int:
            return var.convert(value)
        if self.base is str:
            return str(value or self.default)
        return value

    def decode(self, raw: Sxp | None) -> Any:
        """Its value from its SXP value; None when absent or unusable."""
        if raw is None:
            return None
        if self.base is int:
            return decode_int(self.key, raw)
        if self.base is str:
            return decode_str(self.key, raw)
        return decode_str_or_list(self.key, raw)


class Table:
    """The columns of a config dataclass, in declaration order, read once per class
    (so a subclass that adds a field gets a table with it)."""

    _read: dict[type, Table] = {}

    def __init__(self, columns: tuple[Column, ...]) -> None:
        self.columns = columns
        self._by_name = {c.name: c for c in columns}

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    def placed(self, place: Place) -> list[Column]:
        return [c for c in self.columns if c.spec.place is place]

    @classmethod
    def of(cls, config_class: type) -> Table:
        if config_class not in cls._read:
            hints = typing.get_type_hints(config_class)
            cls._read[config_class] = cls(tuple(
                Column(f.name, hints[f.name], _default(f), f.metadata["xm"])
                for f in dataclasses.fields(config_class)))
        return cls._read[config_class]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ""  # a required text field (the name): "" when a source lacks it
