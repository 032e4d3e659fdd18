"""xend itself: the one place where the object graph is built and wired, and the
asyncio loop that runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from dom0.api.server import ApiServer
from dom0.backends.machine import Machine
from dom0.backends.qemu.machine import QemuMachine
from dom0.backends.qemu.process import probe_kvm
from dom0.daemon import host
from dom0.daemon.options import XendOptions
from dom0.devices import hotplug
from dom0.domain.hvlog import HypervisorLog
from dom0.domain.manager import DomainManager
from dom0.domain.network import NetworkOptions, VifController
from dom0.domain.settings import DomainSettings
from dom0.errors import DeviceError
from dom0.store.db import Store
from dom0.store.layout import DomainPaths

log = logging.getLogger(__name__)


class Host:
    """Host-side answers bound to this xend's options."""

    def __init__(self, options: XendOptions, accel: str) -> None:
        self.options = options
        self.accel = accel

    def dom0_info(self) -> dict[str, Any]:
        return host.dom0_info()

    def dom0_vcpus(self) -> list[dict[str, Any]]:
        return host.dom0_vcpus()

    def node_info(self) -> list[tuple[str, Any]]:
        return host.node_info(self.options.qemu_binary, self.accel, host.free_memory_kib())


class Xend:
    def __init__(self, options: XendOptions) -> None:
        self.options = options
        self.layout = options.layout()
        self.hvlog = HypervisorLog()
        self.store: Store | None = None
        self.manager: DomainManager = None  # type: ignore[assignment]
        self.host: Host = None  # type: ignore[assignment]
        self.api: ApiServer | None = None
        self.relocation: Any = None
        self.ssl_relocation: Any = None
        self.stopping = asyncio.Event()
        self.reload_requested: Callable[[], None] | None = None

    async def choose_accel(self) -> str:
        """KVM only when a probe guest really runs under it.  The answer is cached in
        the database per (kernel, QEMU binary) since a probe can take seconds."""
        wanted = self.options.qemu_accel
        if wanted != "auto":
            return wanted
        assert self.store is not None
        binary = self.options.qemu_binary
        try:
            import shutil

            path = shutil.which(binary) or binary
            key = f"{os.uname().release}:{path}:{os.stat(path).st_mtime_ns}"
        except OSError:
            key = f"{os.uname().release}:{binary}"
        cached = self.store.get_meta("accel_probe")
        if cached and cached.rsplit("=", 1)[0] == key:
            return cached.rsplit("=", 1)[1]
        accel = "kvm" if await probe_kvm(binary) else "tcg"
        self.store.set_meta("accel_probe", f"{key}={accel}")
        return accel

    async def start(self) -> None:
        self.layout.create_dirs()
        self.store = Store(self.layout.database)
        accel = await self.choose_accel()
        self.hvlog.add(f"dom0 xend starting; guests run under QEMU with {accel}")
        log.info("accelerator: %s", accel)
        self.host = Host(self.options, accel)

        def machines(paths: DomainPaths) -> Machine:
            return QemuMachine(paths, self.options.qemu_binary, accel)  # type: ignore[return-value]

        settings = DomainSettings(minimum_restart_time=self.options.domain_minimum_restart_time,
                                  shutdown_timeout=self.options.domain_shutdown_timeout)
        vifs = VifController(NetworkOptions(scripts_dir=self.options.xend_scripts_path,
                                            vif_script=self.options.vif_script,
                                            run_dir=self.options.xend_run_path), settings)
        self.manager = DomainManager(self.store, self.layout, machines, settings, self.hvlog,
                                     vifs)
        await self.network_script("start")
        await self.manager.adopt_all()
        if self.options.xend_relocation_server:
            from dom0.migration.destination import RelocationServer

            self.relocation = RelocationServer(
                self.manager.mover, self.options.xend_relocation_address,
                self.options.xend_relocation_port, self.options.xend_relocation_hosts_allow)
            await self.relocation.start()
            log.info("relocation server on %s:%d", self.options.xend_relocation_address or "*",
                     self.options.xend_relocation_port)
        if self.options.xend_relocation_ssl_server:
            await self._start_ssl_relocation()
        if self.options.xend_unix_xmlrpc_server:
            self.api = ApiServer(self, self.options.xend_api_socket)
            await self.api.start()
        await self.manager.autostart()

    async def _start_ssl_relocation(self) -> None:
        import ssl

        from dom0.migration.destination import RelocationServer

        key = self.options.xend_relocation_server_ssl_key_file
        cert = self.options.xend_relocation_server_ssl_cert_file
        if not key or not cert:
            log.error("ssl_key_file or ssl_cert_file for ssl relocation server is missing.")
            return
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.ssl_relocation = RelocationServer(
            self.manager.mover, self.options.xend_relocation_address,
            self.options.xend_relocation_ssl_port, self.options.xend_relocation_hosts_allow,
            ssl_context=context)
        await self.ssl_relocation.start()

    async def stop(self) -> None:
        """SIGTERM: stop serving, apply on_xend_stop, let go of the rest."""
        if self.api:
            await self.api.stop()
        for server in (self.relocation, self.ssl_relocation):
            if server:
                await server.stop()
        if self.manager:
            await self.manager.on_xend_stop()
        await self.network_script("stop")
        if self.store:
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

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        await self.start()
        log.info("xend ready on %s", self.options.xend_api_socket)
        if ready:
            ready()
        await self.stopping.wait()
        log.info("xend stopping")
        await self.stop()

    def _reload(self) -> None:
        """SIGHUP: re-read the configuration (logging level; paths need a restart)."""
        from dom0.daemon import options as opts_mod

        try:
            fresh = opts_mod.load(self.options.path)
        except opts_mod.OptionsError as exc:
            log.error("reload failed: %s", exc)
            return
        logging.getLogger().setLevel(fresh.loglevel.upper())
        self.options.loglevel = fresh.loglevel
        self.options.domain_minimum_restart_time = fresh.domain_minimum_restart_time
        self.options.domain_shutdown_timeout = fresh.domain_shutdown_timeout
        self.manager.settings.minimum_restart_time = fresh.domain_minimum_restart_time
        self.manager.settings.shutdown_timeout = fresh.domain_shutdown_timeout
        log.info("configuration reloaded from %s", fresh.path)
