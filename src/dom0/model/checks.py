"""The checks of config fields, xend side (spec §2.4 and §9), with the spec's
error texts.  Each is named on the field it checks (model/config.py); a check gets
the field's effective value and the whole config, and raises ConfigError."""

from __future__ import annotations

import re
import uuid as uuidlib

from dom0.errors import ConfigError
from dom0.model.cpus import parse_cpu_list
from dom0.model.fields import Check, ConfigView

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


#: the host's own name in ``xm list``: no guest may take it
DOM0_NAME = "Domain-0"


def check_name(value: str, cfg: ConfigView | None = None) -> None:
    """Every name that enters (create, new, rename, restore, incoming migration)
    passes here.  ``Domain-0`` is the host's, as in Xen, where it is always domain 0.
    A name of digits only is refused: ``<Domain>`` arguments are read as an ID
    first, so such a domain could be reached only by UUID (Xen looked names up first
    instead, and then ``xm destroy 5`` could hit a domain *named* 5)."""
    if not value:
        raise ConfigError("Missing VM Name")
    if not NAME_RE.match(value):
        raise ConfigError("Invalid VM Name")
    if value == DOM0_NAME:
        raise ConfigError(f"Domain '{DOM0_NAME}' already exists with ID '0'")
    if value.isdigit():
        raise ConfigError(f"Invalid VM Name: a name of digits only ({value}) would be "
                          "taken for a domain ID")


def check_event_mode(event: str) -> Check:
    """on_poweroff/on_reboot/on_crash: one of RESTART_MODES, named by its event."""
    def check(value: str, cfg: ConfigView) -> None:
        if value not in RESTART_MODES:
            raise ConfigError(f"Invalid event handling mode: {event}")
    return check


def check_choice(label: str, choices: tuple[str, ...]) -> Check:
    def check(value: str, cfg: ConfigView) -> None:
        if value not in choices:
            raise ConfigError(f"{label}: {value}")
    return check


#: the least memory a guest may be given (KB, as Xen's message counts it): what
#: the project's own guest boots in (issue 13), and Xen's lower limit too (xm-test's
#: 15_create_smallmem expects this text below it).  One constant: mem-set, when it
#: exists, checks against the same.
MINIMUM_MEMORY_KB = 32 * 1024


def check_memory_floor(mib: int) -> None:
    """*mib* MiB is enough for a guest (create, new, start, restore; mem-set too)."""
    if mib * 1024 < MINIMUM_MEMORY_KB:
        raise ConfigError(f"Domain memory must be at least {MINIMUM_MEMORY_KB} KB")


def check_memory(value: int, cfg: ConfigView) -> None:
    if value <= 0 or cfg.max_memory <= 0:
        raise ConfigError("memory_dynamic_max must be greater than zero")
    check_memory_floor(value)


def check_maxmem(value: int | None, cfg: ConfigView) -> None:
    if cfg.memory > cfg.max_memory:
        raise ConfigError("memory_dynamic_max must be less than or equal to memory_static_max")


def check_vcpus(value: int, cfg: ConfigView) -> None:
    if value <= 0:
        raise ConfigError("Zero or less VCPUs is invalid")


def check_maxvcpus(value: int | None, cfg: ConfigView) -> None:
    if value is not None and value < cfg.vcpus:
        raise ConfigError("maxvcpus must not be less than vcpus")


def check_cpus(value: str | list[str] | None, cfg: ConfigView) -> None:
    if value is None:
        return
    # one per vCPU: of those online at start (Xen 3.4), or of all of them (a list
    # vcpu-pin wrote for a domain with maxvcpus)
    if isinstance(value, list) and len(value) not in (cfg.vcpus, cfg.max_vcpus):
        raise ConfigError("vcpus and the item number of cpus are not same")
    for spec in value if isinstance(value, list) else [value]:
        parse_cpu_list(spec)


def check_cpu_weight(value: int | None, cfg: ConfigView) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ConfigError("Cpu weight out of range, valid values are within range from 1 to 65535")


def check_cpu_cap(value: int | None, cfg: ConfigView) -> None:
    if value is not None and not 0 <= value <= 100 * cfg.vcpus:
        raise ConfigError(
            "Cpu cap out of range, valid range is from 0 to "
            f"{100 * cfg.vcpus} for specified number of vcpus"
        )


def check_kernel(value: str, cfg: ConfigView) -> None:
    if getattr(cfg, "builder", "linux") == "hvm":
        return  # an HVM domain boots firmware: kernel/loader only names it (model/hvm.py)
    if not value:
        raise ConfigError("kernel must be set for a linux domain")


def check_uuid(value: str, cfg: ConfigView) -> None:
    if value:
        try:
            uuidlib.UUID(value)
        except ValueError:
            raise ConfigError(f"Invalid UUID: {value}") from None
