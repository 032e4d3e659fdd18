"""The typed configuration of a domain, and its SXP/JSON edges.

``DomainConfig`` is what xm builds from a config file, what travels (as JSON)
to xend, what the store keeps and what the QEMU backend turns into argv.  SXP is
produced only for ``xm create -n`` and ``xm list -l``, and read only for
``xm create -F``.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from dom0.errors import ConfigError
from dom0.model import sxp
from dom0.model.cpus import format_cpu_list as format_cpu_list  # re-exported
from dom0.model.cpus import parse_cpu_list
from dom0.model.devices import DiskSpec as DiskSpec  # re-exported
from dom0.model.devices import VifSpec as VifSpec  # re-exported
from dom0.model.sxp import Sxp

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
#: a domain that restarts sooner than this after it started is not restarted again
MINIMUM_RESTART_TIME = 60.0


@dataclass
class DomainConfig:
    name: str
    uuid: str = ""
    memory: int = 128
    maxmem: int | None = None
    vcpus: int = 1
    vcpu_avail: int | None = None
    #: one affinity string for all vCPUs, or one per vCPU
    cpus: str | list[str] | None = None
    cpu_weight: int | None = None
    cpu_cap: int | None = None
    #: None means "not given": xend's defaults (DEFAULT_ACTIONS) apply, and -n omits it
    on_poweroff: str | None = None
    on_reboot: str | None = None
    on_crash: str | None = None
    on_xend_start: str = "ignore"
    on_xend_stop: str = "ignore"
    builder: str = "linux"
    kernel: str = ""
    ramdisk: str = ""
    root: str = ""
    extra: str = ""
    #: Xen's ``ip=`` kernel argument, already assembled from ip/gateway/... (spec §2.3)
    ip: str = ""
    features: str = ""
    bootloader: str = ""
    disks: list[DiskSpec] = field(default_factory=list)
    vifs: list[VifSpec] = field(default_factory=list)
    #: image keys not interpreted yet (HVM platform keys, videoram, ...), in order
    image_extra: dict[str, Any] = field(default_factory=dict)
    #: every other config variable, kept so that later features can read it
    other: dict[str, Any] = field(default_factory=dict)

    # ---- derived values -------------------------------------------------

    @property
    def max_memory(self) -> int:
        return self.maxmem if self.maxmem is not None else self.memory

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
        return value if value is not None else DEFAULT_ACTIONS[key]

    def vcpu_affinity(self, vcpu: int) -> str | None:
        if isinstance(self.cpus, list):
            return self.cpus[vcpu] if vcpu < len(self.cpus) else None
        return self.cpus

    # ---- validation (xend side, spec §2.4 and §9) -------------------------

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("Missing VM Name")
        if not NAME_RE.match(self.name):
            raise ConfigError("Invalid VM Name")
        for event, mode in (
            ("shutdown", self.action("on_poweroff")),
            ("reboot", self.action("on_reboot")),
            ("crash", self.action("on_crash")),
        ):
            if mode not in RESTART_MODES:
                raise ConfigError(f"Invalid event handling mode: {event}")
        if self.on_xend_start not in XEND_START_ACTIONS:
            raise ConfigError(f"Invalid on_xend_start: {self.on_xend_start}")
        if self.on_xend_stop not in XEND_STOP_ACTIONS:
            raise ConfigError(f"Invalid on_xend_stop: {self.on_xend_stop}")
        if self.memory <= 0 or self.max_memory <= 0:
            raise ConfigError("memory_dynamic_max must be greater than zero")
        if self.memory > self.max_memory:
            raise ConfigError("memory_dynamic_max must be less than or equal to memory_static_max")
        if self.vcpus <= 0:
            raise ConfigError("Zero or less VCPUs is invalid")
        if isinstance(self.cpus, list) and len(self.cpus) != self.vcpus:
            raise ConfigError("vcpus and the item number of cpus are not same")
        if self.cpus is not None:
            for spec in self.cpus if isinstance(self.cpus, list) else [self.cpus]:
                parse_cpu_list(spec)
        if self.cpu_weight is not None and not 1 <= self.cpu_weight <= 65535:
            raise ConfigError(
                "Cpu weight out of range, valid values are within range from 1 to 65535"
            )
        if self.cpu_cap is not None and not 0 <= self.cpu_cap <= 100 * self.vcpus:
            raise ConfigError(
                "Cpu cap out of range, valid range is from 0 to "
                f"{100 * self.vcpus} for specified number of vcpus"
            )
        if self.builder not in ("linux",):
            raise ConfigError(f"unknown image type: {self.builder}")
        if not self.kernel:
            raise ConfigError("kernel must be set for a linux domain")
        if self.uuid:
            try:
                uuidlib.UUID(self.uuid)
            except ValueError:
                raise ConfigError(f"Invalid UUID: {self.uuid}") from None

    # ---- SXP edge -----------------------------------------------------------

    def to_sxp(self, tag: str = "vm") -> list[Sxp]:
        """The ``(vm ...)`` form in the order ``xm create -n`` printed it."""
        out: list[Sxp] = [tag, ["name", self.name], ["memory", str(self.memory)]]
        if self.maxmem is not None:
            out.append(["maxmem", str(self.maxmem)])
        for key in ("on_poweroff", "on_reboot", "on_crash"):
            value = getattr(self, key)
            if value is not None:
                out.append([key, value])
        out.append(["vcpus", str(self.vcpus)])
        if self.vcpu_avail is not None:
            out.append(["vcpu_avail", str(self.vcpu_avail)])
        if self.features:
            out.append(["features", self.features])
        out.append(["on_xend_start", self.on_xend_start])
        out.append(["on_xend_stop", self.on_xend_stop])
        if self.uuid:
            out.append(["uuid", self.uuid])
        if self.cpus is not None:
            cpus: Sxp = list(self.cpus) if isinstance(self.cpus, list) else self.cpus
            out.append(["cpus", cpus])
        if self.cpu_cap is not None:
            out.append(["cpu_cap", str(self.cpu_cap)])
        if self.cpu_weight is not None:
            out.append(["cpu_weight", str(self.cpu_weight)])
        if self.bootloader:
            out.append(["bootloader", self.bootloader])
        out.append(["image", self.image_sxp()])
        out.append(["s3_integrity", str(self.other.get("s3_integrity", 1))])
        for disk in self.disks:
            out.append(["device", disk.to_sxp()])
        for vif in self.vifs:
            out.append(["device", vif.to_sxp()])
        return out

    def image_sxp(self) -> list[Sxp]:
        image: list[Sxp] = [self.builder, ["kernel", self.kernel]]
        if self.ramdisk:
            image.append(["ramdisk", self.ramdisk])
        if self.ip:
            image.append(["ip", self.ip])
        if self.root:
            image.append(["root", self.root])
        for key, value in self.image_extra.items():
            image.append([key, _to_sxp_value(value)])
        if self.extra:
            image.append(["args", self.extra])
        return image

    @classmethod
    def from_sxp(cls, form: Sxp) -> DomainConfig:
        """Read a ``(vm ...)`` or ``(domain ...)`` form (``xm create -F``)."""
        if not isinstance(form, list) or not form or form[0] not in ("vm", "domain"):
            raise ConfigError("SXP config must be a (vm ...) form")

        def get(key: str) -> str | None:
            value = sxp.child_value(form, key)
            return value if isinstance(value, str) else None

        def get_int(key: str) -> int | None:
            value = get(key)
            if value is None:
                return None
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"Invalid value for {key}: {value}") from None

        cfg = cls(name=get("name") or "")
        for key in ("uuid", "on_poweroff", "on_reboot", "on_crash", "on_xend_start",
                    "on_xend_stop", "features", "bootloader"):
            if get(key) is not None:
                setattr(cfg, key, get(key))
        for key in ("memory", "maxmem", "vcpus", "vcpu_avail", "cpu_weight", "cpu_cap"):
            if get_int(key) is not None:
                setattr(cfg, key, get_int(key))
        cpus = sxp.child_value(form, "cpus")
        if isinstance(cpus, list):
            cfg.cpus = [str(c) for c in cpus]
        elif cpus is not None:
            cfg.cpus = cpus
        image = sxp.child_value(form, "image")
        if isinstance(image, list) and image:
            cfg.builder = str(image[0])
            for child in image[1:]:
                if not isinstance(child, list) or not child:
                    continue
                key = str(child[0])
                value = child[1] if len(child) > 1 else ""
                if key in ("kernel", "ramdisk", "root", "ip") and isinstance(value, str):
                    setattr(cfg, key, value)
                elif key == "args" and isinstance(value, str):
                    cfg.extra = value
                else:
                    cfg.image_extra[key] = value
        for dev in sxp.children(form, "device"):
            if len(dev) < 2 or not isinstance(dev[1], list):
                continue
            kind = dev[1][0]
            opts = {str(c[0]): str(c[1]) for c in dev[1][1:]
                    if isinstance(c, list) and len(c) > 1 and isinstance(c[1], str)}
            if kind in ("vbd", "tap"):
                cfg.disks.append(DiskSpec(opts.get("uname", ""), opts.get("dev", ""),
                                          opts.get("mode", "r"), opts.get("backend")))
            elif kind == "vif":
                cfg.vifs.append(VifSpec(opts))
        return cfg

    # ---- JSON edge (API, store) -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"Unknown configuration keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["disks"] = [DiskSpec(**d) for d in data.get("disks", [])]
        values["vifs"] = [VifSpec(**v) for v in data.get("vifs", [])]
        if "name" not in values:
            values["name"] = ""
        return cls(**values)


DEFAULT_ACTIONS = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "restart"}


def _to_sxp_value(value: Any) -> Sxp:
    if isinstance(value, list):
        return [_to_sxp_value(v) for v in value]
    return str(value)
