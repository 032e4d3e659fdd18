"""Device specs as a domain's configuration holds them (``disk`` and ``vif``
entries, spec §3.1-3.2), and the keys each grammar accepts.  Resolving them into
host devices and QEMU arguments is devices/'s work."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def to_sxp(self) -> Sxp:
        form: list[Sxp] = ["vif"]
        form += [[k, self.options[k]] for k in sorted(self.options)]
        return form
