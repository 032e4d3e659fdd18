"""dom0.daemon.service: build() wires the whole graph before anything serves; the
built xend serves the API on its socket; SIGHUP's reload re-tunes the manager from
the fresh file.  No guest is started (qemu-accel tcg: no probe)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from dom0.client import XendClient
from dom0.daemon import options, service
from dom0.domain.manager import DomainManager


def write_config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "xend-config.sxp"
    path.write_text(f"""
(logfile {tmp_path}/xend.log)
(xend-api-socket {tmp_path}/run/xend.sock)
(xend-pid-file {tmp_path}/xend.pid)
(xend-run-path {tmp_path}/run)
(xend-log-path {tmp_path}/log)
(xend-state-path {tmp_path}/state)
(xend-domains-path {tmp_path}/domains)
(xend-dump-path {tmp_path}/dump)
(qemu-accel tcg)
(device-timeout 12)
{extra}
""")
    return str(path)


def test_build_start_serve_reload_stop(tmp_path: Path) -> None:
    path = write_config(tmp_path)

    async def scenario() -> None:
        xend = await service.build(options.load(path))
        assert isinstance(xend.manager, DomainManager)
        assert xend.manager.settings.device_timeout == 12
        assert xend.host.accel == "tcg"
        assert xend.relocation == []
        assert xend.api is not None
        assert not os.path.exists(xend.options.xend_api_socket)  # built, not serving yet
        await xend.start()
        try:
            client = XendClient(xend.options.xend_api_socket, timeout=10)
            listed = await asyncio.to_thread(client.domain_list)
            assert [d["name"] for d in listed] == ["Domain-0"]
            rows = dict(await asyncio.to_thread(client.node_config))
            assert rows["device-timeout"] == 12
            # SIGHUP: the fresh file's policy reaches the manager, in one place
            write_config(tmp_path, "(domain-shutdown-timeout 5)\n(loglevel INFO)")
            level = logging.getLogger().level
            try:
                xend.reload()
            finally:
                logging.getLogger().setLevel(level)
            assert xend.manager.settings.shutdown_timeout == 5
            assert xend.options.loglevel == "INFO"
        finally:
            await xend.stop()
        assert not os.path.exists(xend.options.xend_api_socket)

    asyncio.run(scenario())


def test_relocation_servers_are_built_with_the_graph(tmp_path: Path) -> None:
    key = tmp_path / "relocation.key"
    key.write_text("k" * 32)
    key.chmod(0o600)  # relocation needs peer authentication (migration/auth.py)
    path = write_config(tmp_path, "(xend-relocation-server yes)\n(xend-relocation-port 0)\n"
                                  f"(xend-relocation-key-file {key})")

    async def scenario() -> None:
        xend = await service.build(options.load(path))
        try:
            assert [s.port for s in xend.relocation] == [0]
            assert xend.relocation[0].launcher is xend.manager.mover
        finally:
            xend.store.close()

    asyncio.run(scenario())


def test_no_api_when_disabled(tmp_path: Path) -> None:
    path = write_config(tmp_path, "(xend-unix-xmlrpc-server no)")

    async def scenario() -> None:
        xend = await service.build(options.load(path))
        xend.store.close()
        assert xend.api is None

    asyncio.run(scenario())
