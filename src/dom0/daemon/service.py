"""xend itself: the one place where the object graph is built and wired, and the
asyncio loop that runs it until SIGTERM.

``build()`` makes every object complete before anything serves: the store, the
accelerator choice, the domain manager, the relocation servers and the API server
exist together or not at all.  ``Xend.start()`` then brings them up in order
(network script, adoption, relocation, API, autostart) and ``stop()`` takes them
down in reverse."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dom0.api.server import ApiServer
from dom0.api.services import RelocationDefaults, Services
from dom0.backends import cgroups
from dom0.backends.machine import Machine
from dom0.backends.qemu.machine import QemuMachine
from dom0.backends.qemu.process import probe_kvm
from dom0.daemon import host
from dom0.daemon import options as options_mod
from dom0.daemon.metrics import MetricsServer
from dom0.daemon.options import XendOptions
from dom0.devices import hotplug
from dom0.domain.domain import Domain
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.manager import DomainManager
from dom0.domain.network import VifController
from dom0.domain.ownership import DiskOwnership, labelled_under_policy
from dom0.domain.security import DomainSecurity
from dom0.errors import DeviceError
from dom0.migration.auth import AuthError, Credentials, load_key, own_key
from dom0.migration.destination import RelocationServer
from dom0.migration.policy import StoragePolicy
from dom0.model.figures import DomainFigures, HostFigures
from dom0.security import ownership as ownership_rules
from dom0.security.acm import AccessControl
from dom0.store.db import Store
from dom0.store.layout import DomainPaths, Layout
from dom0.web.auth import load_or_make_token
from dom0.web.server import WebConsole

log = logging.getLogger(__name__)


class Host:
    """Host-side answers bound to this xend's QEMU binary and accelerator."""

    def __init__(self, qemu_binary: str, accel: str, scheduler: str = "credit",
                 free_kib: Callable[[], int] = host.free_memory_kib) -> None:
        self.qemu_binary = qemu_binary
        self.accel = accel
        self.scheduler = scheduler
        #: memory free for guests: the domain manager's account of every domain
        self.free_kib = free_kib
        self._version: str | None = None

    def dom0_info(self) -> dict[str, Any]:
        return host.dom0_info()

    def dom0_vcpus(self) -> list[dict[str, Any]]:
        return host.dom0_vcpus()

    def node_info(self) -> list[tuple[str, Any]]:
        rows = host.node_info(self.qemu_binary, self.accel, self.free_kib())
        # xen_scheduler is xend-config's (sched ...), as Xen's was its boot parameter's
        return [(k, self.scheduler if k == "xen_scheduler" else v) for k, v in rows]

    def figures(self) -> HostFigures:
        if self._version is None:  # asking QEMU costs a process: once per xend
            self._version = host.qemu_version(self.qemu_binary)
        return host.host_figures(self._version)

    def dom0_figures(self) -> DomainFigures:
        return host.dom0_figures()


@dataclass
class Xend:
    """The wired daemon: every part exists and is complete (see ``build``)."""

    options: XendOptions
    store: Store
    hvlog: HypervisorLog
    manager: DomainManager
    host: Host
    #: the plain relocation server, then the TLS one, as xend-config.sxp enables them
    relocation: list[RelocationServer]
    api: ApiServer | None
    #: the web console (xend-http-server), when configured
    web: WebConsole | None = None
    #: the Prometheus exporter, when xend-metrics-server is on
    metrics: MetricsServer | None = None
    #: labelled domains' QEMU users and the disks they own (ACM below xend)
    ownership: DiskOwnership | None = None

    async def start(self) -> None:
        await self.network_script("start")
        await self.manager.adopt_all()
        if self.ownership is not None:  # what launches that ended left taken (a
            # recorded one not adopted this time keeps its QEMU, and its disks)
            self.ownership.sweep({rec["instance"] for rec in self.store.running_records()})
        if self.manager.security is not None:  # the policy loaded may differ from the last
            try:
                await asyncio.to_thread(self.manager.security.refresh_frame_filter)
            except DeviceError as exc:
                log.error("access control: %s", exc)
                self.hvlog.add(f"access control: {exc}")
        for server in self.relocation:
            await server.start()
            log.info("relocation server on %s:%d", server.address or "*", server.port)
        if self.api:
            await self.api.start()
        if self.web:
            await self.web.start()
            log.info("web console on %s", self.web.url)
        if self.metrics:
            await self.metrics.start()
            log.info("metrics on %s:%d", self.metrics.address or "*", self.metrics.port)
        await self.manager.autostart()

    async def stop(self) -> None:
        """SIGTERM: stop serving, apply on_xend_stop, let go of the rest."""
        if self.web:
            await self.web.stop()
        if self.metrics:
            await self.metrics.stop()
        if self.api:
            await self.api.stop()
        for server in self.relocation:
            await server.stop()
        await self.manager.on_xend_stop()
        await self.network_script("stop")
        self.store.close()

    async def network_script(self, op: str) -> None:
        """xend-config's network-script (``network-bridge netdev=eth1``) at start and
        stop.  A failing script is logged; xend serves on (domains may not need it)."""
        if not self.options.network_script:
            return
        try:
            await hotplug.run(self.options.xend_scripts_path, self.options.network_script, [op],
                              {"XEND_RUN_PATH": self.options.xend_run_path})
        except DeviceError as exc:
            log.error("network script: %s", exc)
            self.hvlog.add(f"network script failed: {exc}")

    def reload(self) -> None:
        """SIGHUP: re-read the configuration.  The log level and the domain policy's
        timeouts take effect at once; paths and servers need a restart."""
        try:
            fresh = options_mod.load(self.options.path)
        except options_mod.OptionsError as exc:
            log.error("reload failed: %s", exc)
            return
        self.options.take_reloaded(fresh)
        try:
            logging.getLogger().setLevel(self.options.loglevel.upper())
        except ValueError:
            log.error("invalid loglevel %s; level unchanged", self.options.loglevel)
        _retune(self.manager, self.options)
        log.info("configuration reloaded from %s", fresh.path)


async def build(options: XendOptions) -> Xend:
    """The whole object graph, each part complete when it exists."""
    layout = options.layout()
    layout.create_dirs()
    store = Store(layout.database)
    try:
        accel = await choose_accel(options, store)
    except BaseException:
        store.close()
        raise
    hvlog = HypervisorLog()
    hvlog.add(f"dom0 xend starting; guests run under QEMU with {accel}")
    log.info("accelerator: %s", accel)
    # ACM below xend: labelled domains' QEMUs run as users of their own (late-bound:
    # the manager and its policy are made below)
    ownership = DiskOwnership(
        store, ownership_rules.parse_range(options.xend_qemu_uid_range),
        lambda spec: labelled_under_policy(manager.security, manager.table.get(spec.uuid)))
    manager, relocation = _wire_domains(options, store, layout, hvlog, accel, ownership)
    machine_host = Host(options.qemu_binary, accel, options.sched, manager.free_memory_kib)
    security = DomainSecurity(
        AccessControl(options.xend_security_path),
        lambda: [(d.name, d.config) for d in manager.table if d.active],
        manager.running_vifs)
    manager.use_security(security)
    if security.acm.active is not None:
        hvlog.add(f"access control: policy {security.acm.active.name} loaded")
    services: Services[Domain] = Services(
        domains=manager, host=machine_host, config=options, messages=hvlog,
        logfile=options.logfile,
        relocation=RelocationDefaults(ssl=options.xend_relocation_ssl,
                                      port=options.xend_relocation_port,
                                      ssl_port=options.xend_relocation_ssl_port),
        security=security)
    api = ApiServer(services, options.xend_api_socket) \
        if options.xend_unix_xmlrpc_server else None
    web = None
    if options.xend_http_server:  # the token file is made (0600) on first use
        web = WebConsole(services, options.xend_address, options.xend_port,
                         load_or_make_token(options.web_token_file()))
    metrics = None
    if options.xend_metrics_server:
        metrics = MetricsServer(machine_host, manager, options.xend_metrics_address,
                                options.xend_metrics_port, options.xend_metrics_hosts_allow)
    return Xend(ownership=ownership,
                options=options, store=store, hvlog=hvlog, manager=manager, host=machine_host,
                relocation=relocation, api=api, web=web, metrics=metrics)


def _wire_domains(options: XendOptions, store: Store, layout: Layout, hvlog: HypervisorLog,
                  accel: str, ownership: DiskOwnership,
                  ) -> tuple[DomainManager, list[RelocationServer]]:
    """The domain manager and the relocation servers that hand it incoming guests.
    (The one place naming their constructors: they change with domain/ and migration/.)"""

    def machines(paths: DomainPaths) -> Machine:
        return ownership.wrap(QemuMachine(paths, options.qemu_binary, accel))

    settings = options.domain_settings()
    cpu = cgroups.detect()
    if cpu is None:
        hvlog.add("no cgroup CPU controller: domains' CPU weight and cap are not enforced")
    else:
        log.info("CPU weight and cap through cgroup v%d at %s", cpu.version, cpu.root)
    manager = DomainManager(store, layout, machines, settings, hvlog,
                            VifController(options.network_options(), settings), cpu)
    credentials = _relocation_credentials(options)
    manager.mover.relocation_credentials = credentials
    policy = StoragePolicy.from_option(options.xend_relocation_storage_roots)
    servers = []
    for enabled, port, tls in ((options.xend_relocation_server,
                                options.xend_relocation_port, False),
                               (options.xend_relocation_ssl_server,
                                options.xend_relocation_ssl_port, True)):
        if not enabled:
            continue
        # a listener that cannot tell its peers apart would trust anyone: not started
        refusal = credentials.listener_refusal(tls)
        context = _relocation_tls(credentials) if tls and not refusal else None
        if tls and context is None and not refusal:
            refusal = "relocation server on the SSL port not started (see above)"
        if refusal:
            log.error("%s", refusal)
            hvlog.add(refusal)
            continue
        servers.append(RelocationServer(
            manager.mover, options.xend_relocation_address, port,
            options.xend_relocation_hosts_allow, ssl_context=context, credentials=credentials,
            policy=policy))
    return manager, servers


def _retune(manager: DomainManager, options: XendOptions) -> None:
    """SIGHUP's one hand-over of fresh settings to the domain manager."""
    fresh = options.domain_settings()
    manager.settings.minimum_restart_time = fresh.minimum_restart_time
    manager.settings.shutdown_timeout = fresh.shutdown_timeout


def _relocation_credentials(options: XendOptions) -> Credentials:
    """This host's relocation credentials from xend-config (README "Security").  An
    unusable key file is logged and left out: the listeners then refuse to start
    (unless relocation is explicitly unauthenticated)."""
    key, own = None, None
    unauthenticated = options.xend_relocation_auth == "none"
    try:
        if options.xend_relocation_key_file:
            key = load_key(options.xend_relocation_key_file)
        elif not options.xend_relocation_ca_file and not unauthenticated and \
                (options.xend_relocation_server or options.xend_relocation_ssl_server):
            # nothing configured: xend's own key, which only this xend holds, so the
            # listener starts and authenticates this host's migrations to itself
            key, own = own_key(options.xend_state_path)
    except AuthError as exc:
        log.error("%s", exc)
    return Credentials(key=key, ca_file=options.xend_relocation_ca_file,
                       cert_file=options.xend_relocation_server_ssl_cert_file,
                       key_file=options.xend_relocation_server_ssl_key_file,
                       allow_unauthenticated=unauthenticated, own_key_file=own)


def _relocation_tls(credentials: Credentials) -> ssl.SSLContext | None:
    try:
        return credentials.server_tls()
    except (AuthError, OSError, ssl.SSLError) as exc:
        log.error("%s", exc)
        return None


async def choose_accel(options: XendOptions, store: Store) -> str:
    """KVM only when a probe guest really runs under it.  The answer is cached in
    the database per (kernel, QEMU binary) since a probe can take seconds."""
    wanted = options.qemu_accel
    if wanted != "auto":
        return wanted
    binary = options.qemu_binary
    try:
        path = shutil.which(binary) or binary
        key = f"{os.uname().release}:{path}:{os.stat(path).st_mtime_ns}"
    except OSError:
        key = f"{os.uname().release}:{binary}"
    cached = store.get_meta("accel_probe")
    if cached and cached.rsplit("=", 1)[0] == key:
        return cached.rsplit("=", 1)[1]
    accel = "kvm" if await probe_kvm(binary) else "tcg"
    store.set_meta("accel_probe", f"{key}={accel}")
    return accel


async def run(options: XendOptions, ready: Callable[[], None] | None = None) -> None:
    """Build, start, serve until SIGTERM/SIGINT, stop.  SIGHUP reloads.  The
    signals are caught from the first moment: a SIGTERM during the accelerator probe
    or adoption stops xend cleanly once it is up."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    built: list[Xend] = []

    def reload() -> None:
        for x in built:  # none before the graph exists: nothing to re-tune yet
            x.reload()

    loop.add_signal_handler(signal.SIGHUP, reload)
    xend = await build(options)
    built.append(xend)
    await xend.start()
    log.info("xend ready on %s", options.xend_api_socket)
    if ready:
        ready()
    await stopping.wait()
    log.info("xend stopping")
    await xend.stop()
