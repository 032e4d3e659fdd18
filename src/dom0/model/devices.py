"""Device specs as a domain's configuration holds them (``disk`` and ``vif``
entries, spec §3.1-3.2), and the keys each grammar accepts.  Resolving them into
host devices and QEMU arguments is devices/'s work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dom0.errors import OptionError
from dom0.model.sxp import Sxp

#: every key a ``vif = [...]`` entry may carry (spec §3.2)
VIF_KEYS = ("type", "mac", "bridge", "ip", "script", "backend", "vifname", "rate", "model",
            "accel", "policy", "label")
#: what ``xm network-attach`` accepts (spec §3.2); config files may also say policy=, label=
ATTACH_KEYS = ("type", "mac", "bridge", "ip", "script", "backend", "vifname", "rate", "model",
               "accel")


@dataclass
class DiskSpec:
    """One ``disk = [...]`` entry: ``uname,dev,mode[,backend]`` (spec §3.1)."""

    uname: str
    dev: str
    mode: str = "r"
    backend: str | None = None

    #: the ``(device (<kind> ...))`` kinds read back as a disk (``xm create -F``)
    SXP_KINDS: ClassVar[tuple[str, ...]] = ("vbd", "tap")

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> DiskSpec:
        return cls(opts.get("uname", ""), opts.get("dev", ""), opts.get("mode", "r"),
                   opts.get("backend"))

    def to_sxp(self) -> Sxp:
        form: list[Sxp] = ["vbd", ["uname", self.uname], ["dev", self.dev], ["mode", self.mode]]
        if self.backend is not None:
            form.append(["backend", self.backend])
        return form


@dataclass
class VifSpec:
    """One ``vif = [...]`` entry as its ``key=value`` options (spec §3.2)."""

    options: dict[str, str] = field(default_factory=dict)
    #: the device ID xend gave it (never reused in the domain's life)
    devid: int | None = None

    SXP_KINDS: ClassVar[tuple[str, ...]] = ("vif",)

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> VifSpec:
        return cls(dict(opts))

    def to_sxp(self) -> Sxp:
        form: list[Sxp] = ["vif"]
        form += [[k, self.options[k]] for k in sorted(self.options)]
        return form


#: every key a ``vfb = [...]`` entry may carry (spec §2.3 vfb row, §3.5)
VFB_KEYS = ("type", "vnc", "sdl", "vncunused", "vncdisplay", "vnclisten", "display",
            "xauthority", "vncpasswd", "opengl", "keymap")


@dataclass
class VfbSpec:
    """One ``vfb = [...]`` entry (a PV framebuffer): its ``key=value`` options in the
    order given, the legacy ``type=vnc|sdl`` already turned into ``vnc=1``/``sdl=1``."""

    options: dict[str, str] = field(default_factory=dict)

    SXP_KINDS: ClassVar[tuple[str, ...]] = ("vfb",)

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> VfbSpec:
        return cls(dict(opts))

    def to_sxp(self) -> Sxp:
        form: list[Sxp] = ["vfb"]
        form += [[k, v] for k, v in self.options.items()]
        return form

    def flag(self, key: str) -> bool:
        return self.options.get(key, "0") not in ("0", "", "no", "n")

    @property
    def vnc(self) -> bool:
        return self.flag("vnc")

    @property
    def sdl(self) -> bool:
        return self.flag("sdl")


def parse_vfb(entry: Any) -> VfbSpec:
    """``key=value,...`` (spec §3.5); a key outside the grammar is Xen's error."""
    options: dict[str, str] = {}
    for item in str(entry).split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = (s.strip() for s in item.partition("="))
        if key not in VFB_KEYS:
            raise OptionError(f"configuration option {key} unknown to vfbs")
        if key == "type":  # Xen 3.0's spelling: type=vnc means vnc=1
            if value not in ("vnc", "sdl"):
                raise OptionError(f"Invalid vfb type: {value}")
            options[value] = "1"
            continue
        options[key] = value
    return VfbSpec(options)


def parse_disk(entry: Any) -> DiskSpec:
    """``uname,dev,mode[,backend]`` (spec §3.1)."""
    if isinstance(entry, (list, tuple)):
        parts = [str(p) for p in entry]
    else:
        parts = [p.strip() for p in str(entry).split(",")]
    if len(parts) < 3 or len(parts) > 4:
        raise OptionError(f"Invalid disk specifier: {entry}")
    return DiskSpec(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None)


def parse_vif(entry: str) -> VifSpec:
    """``key=value,...`` (spec §3.2); an empty entry means all defaults."""
    options: dict[str, str] = {}
    for item in str(entry).split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise OptionError(f"Invalid vif specifier: {entry}")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in VIF_KEYS:
            raise OptionError(f"Invalid vif option: {key}")
        options[key] = value
    return VifSpec(options)
