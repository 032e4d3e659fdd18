"""The ``vtpm = ['instance=N,backend=DOM']`` grammar (spec §3.4): only ``instance`` and
``backend`` are accepted, only the first entry counts, and the device shows as
``(device (vtpm (pref_instance N) (backend DOM)))``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from dom0.errors import ConfigError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from dom0.model.sxp import Sxp


#: the TPM versions a vTPM can have: Xen's vTPMs were TPM 1.2; 2.0 by xend-config
VERSIONS = ("1.2", "2.0")


@dataclass(frozen=True)
class VtpmSpec:
    #: the preferred instance number (0: xend picks one)
    instance: int = 0
    backend: int = 0
    #: the TPM version ("1.2" or "2.0") the domain's TPM has: fixed at its first launch
    #: from xend-config's ``vtpm-version`` and kept with its config from then on (its
    #: state is of that version; it travels with it in save files and migrations);
    #: "" until then.  Not part of the SXP form (spec §2.5).
    version: str = ""

    #: the device kinds it reads back from SXP (``xm create -F``), as DiskSpec's
    SXP_KINDS: ClassVar[tuple[str, ...]] = ("vtpm",)

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> VtpmSpec:
        """From its SXP form's keys (``pref_instance``, ``backend``); a value that is
        no number is the grammar's error, as in a config file."""
        instance = opts.get("pref_instance", opts.get("instance", "0"))
        try:
            return cls(int(instance), int(opts.get("backend", "0")))
        except ValueError:
            raise ConfigError("Vm config error: could not parse instance number.") from None

    def to_sxp(self) -> Sxp:
        return ["vtpm", ["pref_instance", str(self.instance)], ["backend", str(self.backend)]]


def vtpms_from_entries(values: Mapping[str, Any]) -> list[VtpmSpec]:
    """The config's ``vtpm`` variable as the domain's vTPMs: none, or the first entry's
    (Xen gave a domain one vTPM)."""
    raw = values.get("vtpm")
    if raw is None or raw == "":
        return []
    # one value (vtpm = 'instance=1' in a file, or vtpm=... on the command line) is a
    # list of that one, as for disk and vif
    spec = parse_vtpm(list(raw) if isinstance(raw, (list, tuple)) else [raw])
    return [] if spec is None else [spec]


def parse_vtpm(entries: list[str]) -> VtpmSpec | None:
    if not entries:
        return None
    opts: dict[str, str] = {}
    for part in str(entries[0]).split(","):
        key, eq, value = part.strip().partition("=")
        if not eq or key not in ("instance", "backend"):
            raise ConfigError(f"Invalid vtpm specifier: {part.strip()}")
        opts[key] = value
    instance = opts.get("instance", "VTPMD")
    if instance == "VTPMD":  # "let the vTPM manager choose", as Xen wrote it
        number = 0
    else:
        try:
            number = int(instance)
        except ValueError:
            raise ConfigError("Vm config error: could not parse instance number.") from None
        if number == 0:
            raise ConfigError("VM config error: vTPM instance must not be 0.")
    try:
        backend = int(opts.get("backend", "0"))
    except ValueError:
        raise ConfigError(f"Invalid vtpm specifier: backend={opts['backend']}") from None
    if backend != 0:
        raise ConfigError("Only Domain-0 can be a vTPM backend")
    return VtpmSpec(number, backend)
