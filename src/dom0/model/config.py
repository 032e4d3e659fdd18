"""The typed configuration of a domain: the config field table, and its edges.

``DomainConfig`` is what xm builds from a config file, what travels (as JSON)
to xend, what the store keeps and what the QEMU backend turns into argv.  SXP is
produced only for ``xm create -n`` and ``xm list -l``, and read only for
``xm create -F``.

Each field is declared once, below, with its Spec (see model/fields.py): the xm
variable it comes from, its SXP key and place, xend's default and its check.  Every
edge (config-file variables, SXP out and in, JSON, validation) walks that table,
so a new field is one declaration plus its behaviour (a check in model/checks.py,
a derivation in model/preprocess.py when one variable is not enough).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dom0.errors import ConfigError as ConfigError  # re-exported
from dom0.model import sxp
from dom0.model.checks import NAME_RE as NAME_RE  # re-exported
from dom0.model.checks import RESTART_MODES as RESTART_MODES  # re-exported
from dom0.model.checks import XEND_START_ACTIONS as XEND_START_ACTIONS  # re-exported
from dom0.model.checks import XEND_STOP_ACTIONS as XEND_STOP_ACTIONS  # re-exported
from dom0.model.checks import (
    check_choice,
    check_cpu_cap,
    check_cpu_weight,
    check_cpus,
    check_event_mode,
    check_kernel,
    check_maxmem,
    check_maxvcpus,
    check_memory,
    check_name,
    check_uuid,
    check_vcpus,
)
from dom0.model.cpus import format_cpu_list as format_cpu_list  # re-exported
from dom0.model.cpus import parse_cpu_list as parse_cpu_list  # re-exported
from dom0.model.devices import DiskSpec as DiskSpec  # re-exported
from dom0.model.devices import VfbSpec as VfbSpec  # re-exported
from dom0.model.devices import VifSpec as VifSpec  # re-exported
from dom0.model.fields import VARS_BY_NAME, XM_VARIABLES, Place, Table, sxp_value, xm
from dom0.model.hvm import HVM_VARIABLES, HvmImage, check_hvm
from dom0.model.jsontypes import check_fields, json_name
from dom0.model.preprocess import (
    VFB_VARIABLES,
    cpus_with_cpu,
    disks_from_entries,
    event_action,
    extra_with_nfsroot,
    hvm_part,
    image_videoram,
    ip_from_network,
    kernel_or_loader,
    root_without_prefix,
    vfbs_from_entries,
    vifs_with_nics,
)
from dom0.model.sxp import Sxp
from dom0.model.usb import check_usbdevice, usb_variable, usbdevice_variable
from dom0.model.vtpm import VtpmSpec as VtpmSpec  # re-exported
from dom0.model.vtpm import vtpms_from_entries

#: a domain that restarts sooner than this after it started is not restarted again
MINIMUM_RESTART_TIME = 60.0

TOP, IMAGE, DEVICE = Place.TOP, Place.IMAGE, Place.DEVICE


@dataclass
class DomainConfig:
    """The config field table.  Fields are declared in the order ``xm create -n``
    prints them (spec §2.5): top-level keys, then the image's, then devices;
    validation checks them in the same order."""

    name: str = field(metadata=xm(var="name", sxp="name", always=True, check=check_name))
    memory: int = field(default=128, metadata=xm(
        var="memory", sxp="memory", always=True, check=check_memory))
    maxmem: int | None = field(default=None, metadata=xm(
        var="maxmem", sxp="maxmem", check=check_maxmem))
    #: None means "not given": xend's default applies, and -n omits it
    on_poweroff: str | None = field(default=None, metadata=xm(
        var="on_poweroff", reads=("restart",), derive=event_action("on_poweroff"),
        sxp="on_poweroff", xend_default="destroy", check=check_event_mode("shutdown")))
    on_reboot: str | None = field(default=None, metadata=xm(
        var="on_reboot", reads=("restart",), derive=event_action("on_reboot"),
        sxp="on_reboot", xend_default="restart", check=check_event_mode("reboot")))
    on_crash: str | None = field(default=None, metadata=xm(
        var="on_crash", reads=("restart",), derive=event_action("on_crash"),
        sxp="on_crash", xend_default="restart", check=check_event_mode("crash")))
    vcpus: int = field(default=1, metadata=xm(
        var="vcpus", sxp="vcpus", always=True, check=check_vcpus))
    maxvcpus: int | None = field(default=None, metadata=xm(
        var="maxvcpus", sxp="maxvcpus", check=check_maxvcpus))
    vcpu_avail: int | None = field(default=None, metadata=xm(var="vcpu_avail", sxp="vcpu_avail"))
    features: str = field(default="", metadata=xm(var="features", sxp="features"))
    on_xend_start: str = field(default="ignore", metadata=xm(
        var="on_xend_start", sxp="on_xend_start", always=True,
        check=check_choice("Invalid on_xend_start", XEND_START_ACTIONS)))
    on_xend_stop: str = field(default="ignore", metadata=xm(
        var="on_xend_stop", sxp="on_xend_stop", always=True,
        check=check_choice("Invalid on_xend_stop", XEND_STOP_ACTIONS)))
    uuid: str = field(default="", metadata=xm(var="uuid", sxp="uuid", check=check_uuid))
    #: one affinity string for all vCPUs, or one per vCPU
    cpus: str | list[str] | None = field(default=None, metadata=xm(
        var="cpus", reads=("cpu",), derive=cpus_with_cpu, sxp="cpus", check=check_cpus))
    cpu_cap: int | None = field(default=None, metadata=xm(
        var="cpu_cap", sxp="cpu_cap", check=check_cpu_cap))
    cpu_weight: int | None = field(default=None, metadata=xm(
        var="cpu_weight", sxp="cpu_weight", check=check_cpu_weight))
    #: SEDF parameters (ns, as Xen's interface had them), set by ``xm sched-sedf``;
    #: None = SEDF's default (domain/sched.py)
    sedf_period: int | None = field(default=None, metadata=xm(sxp="sedf_period"))
    sedf_slice: int | None = field(default=None, metadata=xm(sxp="sedf_slice"))
    sedf_latency: int | None = field(default=None, metadata=xm(sxp="sedf_latency"))
    sedf_extratime: int | None = field(default=None, metadata=xm(sxp="sedf_extratime"))
    sedf_weight: int | None = field(default=None, metadata=xm(sxp="sedf_weight"))
    bootloader: str = field(default="", metadata=xm(var="bootloader", sxp="bootloader"))
    builder: str = field(default="linux", metadata=xm(
        var="builder", place=Place.IMAGE_TAG,
        check=check_choice("unknown image type", ("linux", "hvm"))))
    #: a linux domain's kernel; an HVM domain's firmware (model/hvm.firmware)
    kernel: str = field(default="", metadata=xm(
        var="kernel", reads=("loader",), derive=kernel_or_loader, sxp="kernel", place=IMAGE,
        always=True, check=check_kernel))
    ramdisk: str = field(default="", metadata=xm(var="ramdisk", sxp="ramdisk", place=IMAGE))
    #: Xen's ``ip=`` kernel argument, already assembled from ip/gateway/... (spec §2.3)
    ip: str = field(default="", metadata=xm(
        var="ip", reads=("gateway", "netmask", "hostname", "interface", "dhcp", "nfs_server"),
        derive=ip_from_network, sxp="ip", place=IMAGE))
    root: str = field(default="", metadata=xm(
        var="root", derive=root_without_prefix, sxp="root", place=IMAGE))
    #: USB (model/usb.py): ``usb=1`` a controller; ``usbdevice`` one device or a list
    #: (implying the controller), hot-plugged ones (``xm usb-add``) included
    usb: int | None = field(default=None, metadata=xm(
        var="usb", derive=usb_variable, sxp="usb", place=IMAGE))
    usbdevice: str | list[str] | None = field(default=None, metadata=xm(
        var="usbdevice", derive=usbdevice_variable, sxp="usbdevice", place=IMAGE,
        check=check_usbdevice))
    #: device text -> controller port, of the devices a hot-plug placed (model/usb.py)
    usb_ports: dict[str, int] = field(default_factory=dict, metadata=xm(place=Place.NONE))
    #: image keys not interpreted yet (HVM platform keys, videoram, ...), in order
    image_extra: dict[str, Any] = field(default_factory=dict, metadata=xm(
        var="videoram", derive=image_videoram, place=Place.IMAGE_REST))
    #: builder='hvm': the HVM image variables (model/hvm.py); None for a linux domain
    hvm: HvmImage | None = field(default=None, metadata=xm(
        reads=HVM_VARIABLES, derive=hvm_part, place=Place.IMAGE_PART, check=check_hvm))
    extra: str = field(default="", metadata=xm(
        var="extra", reads=("nfs_server", "nfs_root"), derive=extra_with_nfsroot,
        sxp="args", place=IMAGE))
    disks: list[DiskSpec] = field(default_factory=list, metadata=xm(
        var="disk", derive=disks_from_entries, place=DEVICE, item=DiskSpec))
    vifs: list[VifSpec] = field(default_factory=list, metadata=xm(
        var="vif", reads=("nics",), derive=vifs_with_nics, place=DEVICE, item=VifSpec))
    #: the virtual TPM (``vtpm``, spec §3.4): none, or one (only the first entry counts),
    #: printed between the vifs and the vfbs as xm 3.4 did (spec §2.5)
    vtpms: list[VtpmSpec] = field(default_factory=list, metadata=xm(
        var="vtpm", derive=vtpms_from_entries, place=DEVICE, item=VtpmSpec))
    #: PV framebuffers (``vfb``, or the top-level ``vnc``/``sdl`` variables of a PV domain)
    vfbs: list[VfbSpec] = field(default_factory=list, metadata=xm(
        var="vfb", reads=VFB_VARIABLES, derive=vfbs_from_entries, place=DEVICE, item=VfbSpec))
    #: every other config variable, kept so that later features can read it
    other: dict[str, Any] = field(default_factory=dict, metadata=xm(place=Place.NONE))

    # ---- derived values -------------------------------------------------

    @property
    def max_memory(self) -> int:
        return self.maxmem if self.maxmem is not None else self.memory

    @property
    def max_vcpus(self) -> int:
        """The vCPUs the machine can ever have (QEMU's maxcpus): Xen 3.4's ``vcpus``,
        or Xen 4's ``maxvcpus`` when given."""
        return max(self.maxvcpus or 0, self.vcpus)

    @property
    def online_vcpus(self) -> int:
        """How many vCPUs are online at start: the bits of ``vcpu_avail`` (Xen 3.4's
        way), else ``vcpus``.  QEMU numbers present vCPUs from 0, so a mask with holes
        counts as its number of bits."""
        if self.vcpu_avail is not None:
            bits = bin(self.vcpu_avail & ((1 << self.max_vcpus) - 1)).count("1")
            return max(1, bits)
        return min(self.vcpus, self.max_vcpus)

    def kernel_cmdline(self) -> str:
        """``root=<root> ip=<ip> <extra>``; an argument already in extra is not repeated
        (compared word by word: ``nfsroot=`` is not ``root=``)."""
        words = self.extra.split()
        parts = []
        if self.root and not any(w.startswith("root=") for w in words):
            parts.append(self.root if self.root.startswith("root=") else "root=" + self.root)
        if self.ip and not any(w.startswith("ip=") for w in words):
            parts.append("ip=" + self.ip)
        if self.extra:
            parts.append(self.extra)
        return " ".join(parts)

    def action(self, key: str) -> str:
        """The effective on_poweroff/on_reboot/on_crash action."""
        value = getattr(self, key)
        return value if value is not None else Table.of(type(self))[key].spec.xend_default

    def vcpu_affinity(self, vcpu: int) -> str | None:
        if isinstance(self.cpus, list):
            return self.cpus[vcpu] if vcpu < len(self.cpus) else None
        return self.cpus

    # ---- validation (xend side, spec §2.4 and §9) -------------------------

    def validate(self) -> None:
        """Each field's check, in table order: the first failure is the error."""
        for col in Table.of(type(self)).columns:
            if col.spec.check is not None:
                col.spec.check(col.effective(self), self)

    # ---- config-file variables (xm's preprocess + make_config) -------------

    @classmethod
    def from_variables(cls, values: Mapping[str, Any]) -> DomainConfig:
        """The config from every xm variable's value (spec §2.3).  Each field takes
        its variable converted to its type, or what its derivation computes; every
        variable no field reads lands in ``other`` unless it is at its default."""
        cfg = cls(name="")
        consumed: set[str] = set()
        for col in Table.of(cls).columns:
            consumed.update(col.variables())
            if col.spec.derive is not None:
                setattr(cfg, col.name, col.spec.derive(values))
            elif col.spec.var is not None:
                var = VARS_BY_NAME[col.spec.var]
                setattr(cfg, col.name, col.from_variable(var, values.get(var.name)))
        cfg.other = {k: v for k, v in values.items() if k not in consumed and v is not None
                     and (k not in VARS_BY_NAME or v != VARS_BY_NAME[k].default)}
        for var in XM_VARIABLES:
            if var.always_sxp:
                cfg.other[var.name] = values.get(var.name, var.default)
        return cfg

    # ---- SXP edge -----------------------------------------------------------

    def to_sxp(self, tag: str = "vm") -> list[Sxp]:
        """The ``(vm ...)`` form in the order ``xm create -n`` printed it: the
        top-level fields, the image, the variables always printed, the devices."""
        out: list[Sxp] = [tag]
        out += self.sxp_fields(*(c.name for c in Table.of(type(self)).placed(TOP)))
        out.append(["image", self.image_sxp()])
        out += [[v.name, str(self.other.get(v.name, v.default))]
                for v in XM_VARIABLES if v.always_sxp]
        out += self.device_sxp()
        return out

    def sxp_fields(self, *names: str, effective: bool = False) -> list[Sxp]:
        """``(key value)`` of each named field that is set or always printed;
        *effective* prints an unset field's xend default instead (``xm list -l``)."""
        out: list[Sxp] = []
        for name in names:
            col = Table.of(type(self))[name]
            value = col.effective(self) if effective else getattr(self, name)
            if col.spec.always or (value is not None and value != ""):
                out.append([col.key, sxp_value(value)])
        return out

    def image_sxp(self) -> list[Sxp]:
        """``(<builder> (key value)...)``: the image fields, then the further image
        keys (``videoram``...), with ``args`` last."""
        image: list[Sxp] = []
        usb = ("usb", "usbdevice") if self.hvm is not None else ()
        for col in Table.of(type(self)).columns:
            value = getattr(self, col.name)
            if col.spec.place is Place.IMAGE_TAG:
                image.insert(0, value)
            elif col.spec.place is IMAGE and col.name not in usb:
                image += self.sxp_fields(col.name)
            elif col.spec.place is Place.IMAGE_REST:
                image += [[k, sxp_value(v)] for k, v in value.items()]
            elif col.spec.place is Place.IMAGE_PART and value is not None:
                # an HVM image has its USB keys in their place (spec §2.5), when set
                image += value.to_sxp(self.vcpus, self.sxp_fields(*usb))
        return image

    def device_sxp(self) -> list[Sxp]:
        """One ``(device (<kind> ...))`` per disk, then per vif, then per vfb; a PV
        framebuffer comes with its virtual keyboard, ``(device (vkbd))`` before it
        (spec §2.3 vfb row)."""
        out: list[Sxp] = []
        for col in Table.of(type(self)).placed(DEVICE):
            items = getattr(self, col.name)
            if col.name == "vfbs" and items:
                out.append(["device", ["vkbd"]])
            out += [["device", item.to_sxp()] for item in items]
        return out

    @classmethod
    def from_sxp(cls, form: Sxp) -> DomainConfig:
        """Read a ``(vm ...)`` or ``(domain ...)`` form (``xm create -F``)."""
        if not isinstance(form, list) or not form or form[0] not in ("vm", "domain"):
            raise ConfigError("SXP config must be a (vm ...) form")
        cfg = cls(name="")
        table = Table.of(cls)
        for col in table.placed(TOP):
            value = col.decode(sxp.child_value(form, col.key))
            if value is not None:
                setattr(cfg, col.name, value)
        image = sxp.child_value(form, "image")
        if isinstance(image, list) and image:
            _read_image(cfg, table, image)
        for dev in sxp.children(form, "device"):
            if len(dev) > 1 and isinstance(dev[1], list) and dev[1]:  # not (device ())
                _read_device(cfg, table, dev[1])
        return cfg

    # ---- JSON edge (API, store) -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainConfig:
        """The config from its JSON form (API, store, save files, migration): every
        value is checked against its field's declared type first, nested device
        specs too, so a wrong type is a ConfigError naming the field, not a
        TypeError later (or an integer ``cpus`` that boots)."""
        if not isinstance(data, dict):
            raise ConfigError(f"Invalid type for config: expected object, got {json_name(data)}")
        # the name is the one required field; a source lacking it has "" (as from_sxp)
        values = {"name": "", **data}
        check_fields(values, cls)
        for col in Table.of(cls).columns:
            if col.spec.item is not None:
                values[col.name] = [col.spec.item(**d) for d in values.get(col.name, [])]
            elif col.spec.place is Place.IMAGE_PART and isinstance(values.get(col.name), dict):
                values[col.name] = col.base(**values[col.name])
        return cls(**values)


def _read_image(cfg: DomainConfig, table: Table, image: list[Sxp]) -> None:
    """``(<builder> (key value)...)``: a key an image field reads (with a value of
    its type) goes there; any other, in order, into the image-rest field."""
    by_key = {c.key: c for c in table.placed(IMAGE)}
    (rest,) = table.placed(Place.IMAGE_REST)
    (tag,) = table.placed(Place.IMAGE_TAG)
    setattr(cfg, tag.name, str(image[0]))
    part: dict[str, str] = {}
    for child in image[1:]:
        if not isinstance(child, list) or not child:
            continue
        key = str(child[0])
        raw = child[1] if len(child) > 1 else ""
        col = by_key.get(key)
        value = col.decode(raw) if col is not None else None
        if col is not None and value is not None:
            setattr(cfg, col.name, value)
        elif cfg.builder == "hvm" and key in HvmImage.SXP_KEYS:
            if isinstance(raw, str):
                part[key] = raw
        else:
            getattr(cfg, rest.name)[key] = raw
    if cfg.builder == "hvm":
        cfg.hvm = HvmImage.from_sxp_keys(part)


def _read_device(cfg: DomainConfig, table: Table, device: list[Sxp]) -> None:
    """``(<kind> (key value)...)`` into the device field whose spec reads that kind;
    kinds no field reads (console...) are dropped."""
    opts = {str(c[0]): str(c[1]) for c in device[1:]
            if isinstance(c, list) and len(c) > 1 and isinstance(c[1], str)}
    for col in table.placed(DEVICE):
        if col.spec.item is not None and device[0] in col.spec.item.SXP_KINDS:
            getattr(cfg, col.name).append(col.spec.item.from_options(opts))


#: xend's actions when the config leaves on_poweroff/on_reboot/on_crash unset (spec §2.4)
DEFAULT_ACTIONS = {c.name: c.spec.xend_default for c in Table.of(DomainConfig).columns
                   if c.spec.xend_default is not None}
