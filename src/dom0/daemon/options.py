"""xend-config.sxp: the options of spec §4 plus dom0's own (every path, the
accelerator), read into one typed object."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from dom0.domain.network import NetworkOptions
from dom0.domain.settings import DomainSettings
from dom0.errors import ConfigError
from dom0.model import sxp
from dom0.security import ownership
from dom0.store.layout import Layout

DEFAULT_CONFIG = "/etc/xen/xend-config.sxp"
TRUE = ("yes", "y", "1", "on", "true", "t")
FALSE = ("no", "n", "0", "off", "false", "f")


DEFAULT_HOSTS_ALLOW = r"^localhost$ ^localhost\.localdomain$ ^127\.0\.0\.1$ ^::1$"
RELOCATION_AUTH = ("required", "none")


class OptionsError(ValueError):
    pass


def _opt(name: str, default: Any) -> Any:
    return field(default=default, metadata={"sxp": name})


@dataclass
class XendOptions:
    # spec §4
    logfile: str = _opt("logfile", "/var/log/xen/xend.log")
    loglevel: str = _opt("loglevel", "DEBUG")
    xend_http_server: bool = _opt("xend-http-server", False)
    xend_unix_server: bool = _opt("xend-unix-server", False)
    xend_tcp_xmlrpc_server: bool = _opt("xend-tcp-xmlrpc-server", False)
    xend_unix_xmlrpc_server: bool = _opt("xend-unix-xmlrpc-server", True)
    xend_relocation_server: bool = _opt("xend-relocation-server", False)
    xend_relocation_ssl_server: bool = _opt("xend-relocation-ssl-server", False)
    xend_relocation_port: int = _opt("xend-relocation-port", 8002)
    xend_relocation_ssl_port: int = _opt("xend-relocation-ssl-port", 8003)
    # as Xen 3.4 shipped its xend-config.sxp: the listener on, and open to, localhost only
    xend_relocation_address: str = _opt("xend-relocation-address", "localhost")
    xend_relocation_hosts_allow: str = _opt("xend-relocation-hosts-allow",
                                            DEFAULT_HOSTS_ALLOW)
    xend_relocation_ssl: bool = _opt("xend-relocation-ssl", False)
    xend_relocation_server_ssl_key_file: str | None = _opt(
        "xend-relocation-server-ssl-key-file", None)
    xend_relocation_server_ssl_cert_file: str | None = _opt(
        "xend-relocation-server-ssl-cert-file", None)
    # dom0's own relocation security (README "Security"): peers prove themselves with
    # the shared key or (SSL port) a certificate from the CA; "none" accepts any peer
    xend_relocation_auth: str = _opt("xend-relocation-auth", "required")
    xend_relocation_key_file: str | None = _opt("xend-relocation-key-file", None)
    xend_relocation_ca_file: str | None = _opt("xend-relocation-ca-file", None)
    #: what host paths an incoming domain may use (space-separated); none by default
    xend_relocation_storage_roots: str = _opt("xend-relocation-storage-roots", "")
    xend_port: int = _opt("xend-port", 8000)
    #: the web console listens on this host only unless told otherwise (Xen: '' = all)
    xend_address: str = _opt("xend-address", "localhost")
    xend_unix_path: str = _opt("xend-unix-path", "/var/lib/xend/xend-socket")
    xend_domains_path: str = _opt("xend-domains-path", "/var/lib/xend/domains")
    xend_state_path: str = _opt("xend-state-path", "/var/lib/xend/state")
    xend_storage_path: str = _opt("xend-storage-path", "/var/lib/xend/storage")
    xend_security_path: str = _opt("xend-security-path", "/var/lib/xend/security")
    network_script: str | None = _opt("network-script", None)
    vif_script: str = _opt("vif-script", "vif-bridge")
    dom0_min_mem: int = _opt("dom0-min-mem", 0)
    enable_dom0_ballooning: bool | None = _opt("enable-dom0-ballooning", None)
    dom0_cpus: int = _opt("dom0-cpus", 0)
    enable_dump: bool = _opt("enable-dump", False)
    console_limit: int = _opt("console-limit", 1024)
    vnc_listen: str = _opt("vnc-listen", "127.0.0.1")
    vncpasswd: str | None = _opt("vncpasswd", None)
    keymap: str | None = _opt("keymap", None)
    #: dom0's own: the TPM version of domains' vTPMs (1.2 as Xen's, or 2.0)
    vtpm_version: str = _opt("vtpm-version", "1.2")
    # dom0's own: where everything lives, so several xends can share a machine
    xend_api_socket: str = _opt("xend-api-socket", "/var/run/xend/xmlrpc.sock")
    xend_pid_file: str = _opt("xend-pid-file", "/var/run/xend.pid")
    xend_run_path: str = _opt("xend-run-path", "/var/run/xend")
    xend_log_path: str = _opt("xend-log-path", "/var/log/xen")
    xend_dump_path: str = _opt("xend-dump-path", "/var/xen/dump")
    xend_scripts_path: str = _opt("xend-scripts-path", "/etc/xen/scripts")
    qemu_binary: str = _opt("qemu-binary", "qemu-system-x86_64")
    qemu_accel: str = _opt("qemu-accel", "auto")
    domain_minimum_restart_time: float = _opt("domain-minimum-restart-time", 60.0)
    domain_shutdown_timeout: float = _opt("domain-shutdown-timeout", 60.0)
    #: how long a hot-plugged disk or vif may take to appear in (or leave) the guest
    device_timeout: float = _opt("device-timeout", 100.0)
    #: the CPU scheduler, named after Xen's boot parameter sched=credit|sedf
    sched: str = _opt("sched", "credit")
    # dom0's own: the Prometheus exporter (README "Monitoring"), off and local by default
    xend_metrics_server: bool = _opt("xend-metrics-server", False)
    xend_metrics_port: int = _opt("xend-metrics-port", 9101)
    xend_metrics_address: str = _opt("xend-metrics-address", "localhost")
    xend_metrics_hosts_allow: str = _opt("xend-metrics-hosts-allow", DEFAULT_HOSTS_ALLOW)
    # dom0's own (ACM below xend, README "Access control"): the user IDs labelled
    # domains' QEMUs run as, FIRST-LAST; "none": they run as root like the others
    xend_qemu_uid_range: str = _opt("xend-qemu-uid-range", ownership.DEFAULT_RANGE)

    #: messages about the file itself, logged once logging is up
    warnings: list[str] = field(default_factory=list, metadata={"sxp": None})
    path: str = field(default=DEFAULT_CONFIG, metadata={"sxp": None})

    def layout(self) -> Layout:
        return Layout(
            state_dir=self.xend_state_path,
            domains_dir=self.xend_domains_path,
            run_dir=self.xend_run_path,
            log_dir=self.xend_log_path,
            dump_dir=self.xend_dump_path,
        )

    #: what SIGHUP changes in a running xend; every other option needs a restart
    #: (paths, servers, the accelerator, and settings copied into long-lived objects)
    RELOADED = ("loglevel", "domain_minimum_restart_time", "domain_shutdown_timeout")

    def take_reloaded(self, fresh: XendOptions) -> None:
        for name in self.RELOADED:
            setattr(self, name, getattr(fresh, name))

    # ---- each consumer's slice: the settings it reads, from this one source ----------

    def domain_settings(self) -> DomainSettings:
        """The domain layer's settings (restart policy, watchdog, hot-plug wait); its
        paths come from ``layout()``."""
        return DomainSettings(minimum_restart_time=self.domain_minimum_restart_time,
                              shutdown_timeout=self.domain_shutdown_timeout,
                              device_timeout=self.device_timeout,
                              vnc_listen=self.vnc_listen, vncpasswd=self.vncpasswd,
                              scheduler=self.sched, dom0_min_mem=self.dom0_min_mem,
                              dom0_ballooning=self.ballooning(),
                              vtpm_version=self.vtpm_version)

    def web_token_file(self) -> str:
        """The web console's access token (0600), kept across restarts."""
        return os.path.join(self.xend_state_path, "web-token")

    def network_options(self) -> NetworkOptions:
        """What plugging vifs needs besides the domain settings: the hook scripts."""
        return NetworkOptions(scripts_dir=self.xend_scripts_path, vif_script=self.vif_script,
                              run_dir=self.xend_run_path)

    def ballooning(self) -> bool:
        if self.enable_dom0_ballooning is None:
            return self.dom0_min_mem != 0
        return self.enable_dom0_ballooning

    def items(self) -> list[tuple[str, Any]]:
        """(sxp name, value) of every option, for ``xm info -c``."""
        return [(f.metadata["sxp"], getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("sxp")]


_FIELDS = {f.metadata["sxp"]: f for f in dataclasses.fields(XendOptions) if f.metadata.get("sxp")}


def _convert(name: str, kind: Any, value: str) -> Any:
    kind = str(kind)
    if "bool" in kind:
        low = value.lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise OptionsError(f"invalid xend config {name}: expected bool: {value}")
    if "int" in kind:
        try:
            return int(value)
        except ValueError:
            raise OptionsError(f"invalid xend config {name}: expected int: {value}") from None
    if "float" in kind:
        try:
            return float(value)
        except ValueError:
            raise OptionsError(f"invalid xend config {name}: expected number: {value}") from None
    return value


def config_path() -> str:
    return os.environ.get("XEND_CONFIG") or DEFAULT_CONFIG


def load(path: str | None = None) -> XendOptions:
    """Read xend-config.sxp.  A missing file gives the defaults (and a logged
    error, as xend did); unknown options are logged, not fatal; a bad value is."""
    path = path or config_path()
    opts = XendOptions(path=path)
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        opts.warnings.append(f"Config file does not exist: {path}")
        return opts
    try:
        forms = sxp.parse(text)
    except sxp.SxpSyntaxError as exc:
        raise OptionsError(f"{path}: {exc}") from None
    for form in forms:
        if not isinstance(form, list) or not form or not isinstance(form[0], str):
            opts.warnings.append(f"ignoring malformed entry in {path}: {sxp.to_string(form)}")
            continue
        name = form[0]
        value = form[1] if len(form) > 1 else ""
        f = _FIELDS.get(name)
        if f is None:
            opts.warnings.append(f"unknown xend config option ignored: {name}")
            continue
        if isinstance(value, list):
            setattr(opts, f.name, sxp.to_string(value))
            continue
        setattr(opts, f.name, _convert(name, f.type, value))
    for pattern in opts.xend_relocation_hosts_allow.split():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise OptionsError(f"invalid xend config xend-relocation-hosts-allow: {pattern}: "
                               f"{exc}") from None
    if opts.xend_relocation_auth not in RELOCATION_AUTH:
        raise OptionsError(f"invalid xend config xend-relocation-auth: "
                           f"{opts.xend_relocation_auth} (expected required or none)")
    for root in opts.xend_relocation_storage_roots.split():
        if not os.path.isabs(root):
            raise OptionsError(f"invalid xend config xend-relocation-storage-roots: {root} "
                               "is not an absolute path")
    if opts.sched not in ("credit", "sedf"):
        raise OptionsError(f"invalid xend config sched: {opts.sched} (expected credit or sedf)")
    for pattern in opts.xend_metrics_hosts_allow.split():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise OptionsError(f"invalid xend config xend-metrics-hosts-allow: {pattern}: "
                               f"{exc}") from None
    try:
        ownership.parse_range(opts.xend_qemu_uid_range)
    except ConfigError as exc:
        raise OptionsError(f"invalid xend config: {exc}") from None
    if opts.qemu_accel not in ("auto", "kvm", "tcg"):
        raise OptionsError(f"invalid xend config qemu-accel: {opts.qemu_accel}")
    return opts
