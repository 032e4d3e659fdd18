"""Evaluating Xen domain config files the way ``xm create`` did (spec §2.1-2.3).

A config file is a Python script.  Command-line ``VAR=VALUE`` words either set a
known variable (and win over the file) or become script variables visible to the
file (``vmid=1``).  After running the script, its str/list/int/float locals fill
in every variable not given on the command line.  The result is a typed
:class:`~dom0.model.config.DomainConfig`.
"""

from __future__ import annotations

import os
import os.path
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dom0.errors import ConfigFileError, OptionError
from dom0.model.config import DomainConfig
from dom0.model.devices import VIF_KEYS, DiskSpec, VifSpec

# Variable types: S string, I int, B yes/no, L list (repeatable), N long
_S, _I, _B, _L, _N = "S", "I", "B", "L", "N"

#: spec §2.3: every variable xm 3.4 declared, with its type and default
VARIABLES: dict[str, tuple[str, Any]] = {
    "name": (_S, None), "uuid": (_S, None), "builder": (_S, "linux"), "kernel": (_S, None),
    "ramdisk": (_S, ""), "loader": (_S, ""), "bootloader": (_S, None), "bootargs": (_S, None),
    "bootentry": (_S, None), "features": (_S, ""), "memory": (_I, 128), "maxmem": (_I, None),
    "shadow_memory": (_I, 0), "vcpus": (_I, 1), "vcpu_avail": (_N, None), "cpu": (_I, None),
    "cpus": (_S, None), "cpu_weight": (_I, None), "cpu_cap": (_I, None), "restart": (_S, None),
    "on_poweroff": (_S, None), "on_reboot": (_S, None), "on_crash": (_S, None),
    "on_xend_start": (_S, "ignore"), "on_xend_stop": (_S, "ignore"), "blkif": (_B, 0),
    "netif": (_B, 0), "tpmif": (_L, 0), "disk": (_L, []), "vif": (_L, []), "nics": (_I, -1),
    "vtpm": (_L, []), "pci": (_L, []), "vscsi": (_L, []), "ioports": (_L, []), "irq": (_L, []),
    "vfb": (_L, []), "access_control": (_L, []), "root": (_S, ""), "extra": (_S, ""),
    "ip": (_S, ""), "gateway": (_S, ""), "netmask": (_S, ""), "hostname": (_S, ""),
    "interface": (_S, "eth0"), "dhcp": (_S, "off"), "nfs_server": (_S, None),
    "nfs_root": (_S, None), "device_model": (_S, None), "fda": (_S, ""), "fdb": (_S, ""),
    "serial": (_S, ""), "monitor": (_B, 0), "localtime": (_B, 0), "rtc_timeoffset": (_I, 0),
    "keymap": (_S, ""), "usb": (_B, 0), "usbdevice": (_S, ""), "guest_os_type": (_S, "default"),
    "stdvga": (_B, 0), "isa": (_B, 0), "boot": (_S, "c"), "nographic": (_B, 0),
    "soundhw": (_S, ""), "vnc": (_S, None), "vncdisplay": (_S, None), "vnclisten": (_S, None),
    "vncunused": (_B, 1), "vncpasswd": (_S, None), "vncconsole": (_B, None),
    "vncviewer": (_B, None), "sdl": (_S, None), "opengl": (_S, None), "display": (_S, None),
    "xauthority": (_S, None), "videoram": (_I, 4), "pae": (_I, 1), "acpi": (_I, 1),
    "apic": (_I, 1), "hpet": (_I, 0), "timer_mode": (_I, 1), "vpt_align": (_I, 1),
    "viridian": (_I, 0), "hap": (_I, 1), "pci_msitranslate": (_I, 1), "pci_power_mgmt": (_I, 0),
    "xen_platform_pci": (_I, 1), "vhpt": (_I, 0), "cpuid": (_L, []), "cpuid_check": (_L, []),
    "machine_address_size": (_I, None), "suppress_spurious_page_faults": (_B, None),
    "target": (_I, 0), "s3_integrity": (_I, 1),
}


@dataclass
class CreateOptions:
    """What ``xm create``/``xm new`` were told on their command line."""

    quiet: bool = False
    dryrun: bool = False
    paused: bool = False
    console: bool = False
    path: str = ".:/etc/xen"
    defconfig: str | None = None
    sxp_config: str | None = None
    help: bool = False
    help_config: bool = False
    #: variables given as VAR=VALUE that name a known variable
    given: dict[str, Any] = field(default_factory=dict)
    #: VAR=VALUE words that do not: script variables for the file
    script_vars: dict[str, str] = field(default_factory=dict)


def parse_create_args(argv: list[str]) -> CreateOptions:
    opts = CreateOptions()
    from dom0.cli.main import CREATE_OPTIONS
    from dom0.cli.opts import parse, spec

    pairs, rest = parse(argv, *spec(CREATE_OPTIONS))
    for opt, value in pairs:
        if opt in ("-h", "--help"):
            opts.help = True
        elif opt == "--help_config":
            opts.help_config = True
        elif opt in ("-q", "--quiet"):
            opts.quiet = True
        elif opt == "--path":
            opts.path = value
        elif opt in ("-f", "--defconfig"):
            opts.defconfig = value
        elif opt in ("-F", "--config"):
            opts.sxp_config = value
        elif opt in ("-n", "--dryrun"):
            opts.dryrun = True
        elif opt in ("-p", "--paused"):
            opts.paused = True
        elif opt in ("-c", "--console_autoconnect"):
            opts.console = True
        elif opt in ("-x", "--xmldryrun", "-s", "--skipdtd"):
            raise OptionError("XML configuration is only supported by the Xen-API server")
    for word in rest:
        if "=" in word:
            name, value = word.split("=", 1)
            if name in VARIABLES:
                _set_given(opts.given, name, value)
            else:
                opts.script_vars[name] = value
        elif opts.defconfig is None:
            opts.defconfig = word  # a bare word is the config file
        else:
            raise OptionError(f"Invalid argument: {word}")
    return opts


def _set_given(given: dict[str, Any], name: str, value: str) -> None:
    kind = VARIABLES[name][0]
    given[name] = _convert(name, kind, value, given.get(name))


def _convert(name: str, kind: str, value: Any, previous: Any = None) -> Any:
    if kind == _I or kind == _N:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise OptionError(f"Invalid value: {value}") from None
    if kind == _B:
        if isinstance(value, int):
            return int(bool(value))
        text = str(value).lower()
        if text in ("yes", "y", "1"):
            return 1
        if text in ("no", "n", "0"):
            return 0
        raise OptionError(f"Invalid value:{value}")
    if kind == _L:
        if isinstance(value, list):
            return value
        return (previous or []) + [value]
    return value


# ---- locating and evaluating the file ---------------------------------------


def find_config(name: str, path: str) -> str:
    """Spec §2.2: try ``name`` as given, then ``<dir>/name`` for each dir of the path."""
    if os.path.isabs(name):
        if os.path.isfile(name):
            return name
    else:
        for directory in [""] + path.split(":"):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate):
                return candidate
    raise OptionError(f"Unable to open config file: {name}")


class Vars:
    """``xm_vars`` inside config files: declared, checked script variables."""

    def __init__(self, env: dict[str, Any]) -> None:
        self._env = env
        self._checks: list[tuple[str, Callable[[str, Any], Any] | None]] = []

    def var(self, name: str, use: str = "", check: Callable[[str, Any], Any] | None = None) -> None:
        self._checks.append((name, check))
        self._env.setdefault(name, None)

    def check(self) -> None:
        for name, check in self._checks:
            if check is None:
                continue
            try:
                value = check(name, self._env.get(name))
            except Exception as exc:  # the file's own check: any failure is the user's error
                raise ConfigFileError(f"Error: {name} - {exc}") from None
            self._env[name] = value


def evaluate_file(filename: str, script_vars: dict[str, str]) -> dict[str, Any]:
    """Run the config script; return its resulting variables (locals of simple types)."""
    try:
        with open(filename) as f:
            source = f.read()
    except OSError as exc:
        raise OptionError(f"Unable to open config file: {filename}: {exc.strerror}") from None
    if source.lstrip().startswith("<"):
        raise OptionError("XML configuration is only supported by the Xen-API server")
    env: dict[str, Any] = {"sys": sys, "os": os, "xm_file": filename, "xm_help": False}
    env.update(script_vars)
    env["xm_vars"] = Vars(env)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ConfigFileError(
            f"Errors were found at line {exc.lineno} while processing {filename}:\n\t{exc.msg}"
        ) from None
    try:
        exec(code, env)
    except ConfigFileError:
        raise
    except Exception as exc:  # arbitrary user code: report it as xm did
        raise ConfigFileError(f"Error: {exc}") from None
    return {k: v for k, v in env.items()
            if not k.startswith("__") and isinstance(v, (str, list, int, float))
            and not isinstance(v, bool) and k not in ("xm_file", "xm_help")}


def resolve_variables(opts: CreateOptions) -> tuple[str | None, dict[str, Any]]:
    """Evaluate the config file (if any) and merge: command line > file > defaults."""
    values: dict[str, Any] = {}
    filename = None
    if opts.defconfig:
        filename = find_config(opts.defconfig, opts.path)
        file_vars = evaluate_file(filename, opts.script_vars)
        for name, value in file_vars.items():
            if name in VARIABLES and name not in opts.given:
                values[name] = value
    values.update(opts.given)
    for name, (_, default) in VARIABLES.items():
        values.setdefault(name, default)
    if not values.get("name") and filename:
        values["name"] = os.path.basename(filename)
    return filename, values


# ---- from variables to the typed config (xm's preprocess + make_config) --------


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def build_config(values: dict[str, Any]) -> DomainConfig:
    def integer(name: str) -> int | None:
        v = values.get(name)
        return None if v is None else _convert(name, _I, v)

    cfg = DomainConfig(name=str(values.get("name") or ""))
    cfg.uuid = str(values.get("uuid") or "")
    cfg.memory = integer("memory") or 0
    cfg.maxmem = integer("maxmem")
    cfg.vcpus = integer("vcpus") or 0
    cfg.vcpu_avail = integer("vcpu_avail")
    cfg.cpu_weight = integer("cpu_weight")
    cfg.cpu_cap = integer("cpu_cap")
    cfg.cpus = _cpus(values)
    cfg.builder = str(values.get("builder") or "linux")
    cfg.kernel = str(values.get("kernel") or "")
    cfg.ramdisk = str(values.get("ramdisk") or "")
    root = str(values.get("root") or "")
    cfg.root = root[len("root="):] if root.startswith("root=") else root
    cfg.extra = str(values.get("extra") or "")
    cfg.features = str(values.get("features") or "")
    cfg.bootloader = str(values.get("bootloader") or "")
    _apply_restart(cfg, values)
    cfg.on_xend_start = str(values.get("on_xend_start") or "ignore")
    cfg.on_xend_stop = str(values.get("on_xend_stop") or "ignore")
    _apply_network_boot(cfg, values)
    cfg.image_extra["videoram"] = values.get("videoram", 4)
    cfg.disks = [parse_disk(d) for d in values.get("disk") or []]
    vifs = list(values.get("vif") or [])
    nics = integer("nics") or -1
    if nics > 0:
        print("The nics option is deprecated.  Please use an empty vif entry instead:\n\n"
              "  vif = [ '' ]\n", file=sys.stderr)
        vifs += [""] * max(0, nics - len(vifs))
    cfg.vifs = [parse_vif(v) for v in vifs]
    consumed = {"name", "uuid", "memory", "maxmem", "vcpus", "vcpu_avail", "cpu_weight",
                "cpu_cap", "cpus", "cpu", "builder", "kernel", "ramdisk", "root", "extra",
                "features", "bootloader", "restart", "on_poweroff", "on_reboot", "on_crash",
                "on_xend_start", "on_xend_stop", "ip", "gateway", "netmask", "hostname",
                "interface", "dhcp", "nfs_server", "nfs_root", "videoram", "disk", "vif", "nics"}
    cfg.other = {k: v for k, v in values.items()
                 if k not in consumed and v is not None and v != VARIABLES.get(k, (None, None))[1]}
    cfg.other["s3_integrity"] = values.get("s3_integrity", 1)
    return cfg


def _cpus(values: dict[str, Any]) -> str | list[str] | None:
    cpus = values.get("cpus")
    cpu = values.get("cpu")
    if isinstance(cpus, list):
        return [str(c) for c in cpus]
    if cpu is not None:  # deprecated: CPU for VCPU0, prepended
        return f"{cpu},{cpus}" if cpus else str(cpu)
    return _str_or_none(cpus)


def _apply_restart(cfg: DomainConfig, values: dict[str, Any]) -> None:
    restart = values.get("restart")
    if restart:  # deprecated 'restart' maps onto the three events
        mapping = {"onreboot": ("destroy", "restart", "destroy"),
                   "always": ("restart", "restart", "restart"),
                   "never": ("never", "never", "never")}
        if restart not in mapping:
            raise OptionError(f"Invalid value for restart: {restart}")
        cfg.on_poweroff, cfg.on_reboot, cfg.on_crash = mapping[restart]
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if values.get(key):
            setattr(cfg, key, str(values[key]))


def _apply_network_boot(cfg: DomainConfig, values: dict[str, Any]) -> None:
    """ip/gateway/netmask/hostname/interface/dhcp -> Xen's ``ip=``; nfs_* -> ``nfsroot=``."""
    ip = str(values.get("ip") or "")
    dhcp = str(values.get("dhcp") or "off")
    nfs_server = values.get("nfs_server")
    nfs_root = values.get("nfs_root")
    if ip or dhcp != "off":
        server = nfs_server or "127.0.255.255"
        cfg.ip = ":".join([ip, str(server), str(values.get("gateway") or ""),
                           str(values.get("netmask") or ""), str(values.get("hostname") or ""),
                           str(values.get("interface") or "eth0"), dhcp])
    if nfs_root and not nfs_server:
        raise OptionError("Must set nfs root and nfs server")
    if nfs_root:
        nfs = f"nfsroot={nfs_server}:{nfs_root}"
        cfg.extra = f"{nfs} {cfg.extra}" if cfg.extra else nfs


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


def config_from_args(opts: CreateOptions) -> tuple[str | None, DomainConfig]:
    """Everything ``xm create`` does before it talks to xend."""
    if opts.sxp_config:
        from dom0.model import sxp
        from dom0.model.config import ConfigError

        try:
            with open(opts.sxp_config) as f:
                form = sxp.parse_one(f.read())
            return opts.sxp_config, DomainConfig.from_sxp(form)
        except OSError:
            raise OptionError(f"Unable to open config file: {opts.sxp_config}") from None
        except (sxp.SxpSyntaxError, ConfigError) as exc:
            raise OptionError(f"{opts.sxp_config}: {exc}") from None
    filename, values = resolve_variables(opts if opts.defconfig else _with_default(opts))
    return filename, build_config(values)


def _with_default(opts: CreateOptions) -> CreateOptions:
    opts.defconfig = "xmdefconfig"
    return opts
