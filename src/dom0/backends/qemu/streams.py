"""A QEMU's state streams: save and restore through a file, and live migration
(started, followed, escalated, received), for ``QemuMachine`` (machine.py), whose QMP
verbs they use.  An unprivileged QEMU (ACM's per-domain users) gets every socket as a
descriptor (fdpass.py): it cannot reach xend's run directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dom0.backends import ramsample
from dom0.backends.qemu import fdpass
from dom0.errors import BackendError
from dom0.waiting import poll_until

if TYPE_CHECKING:
    from dom0.backends.qemu.qmp import QMPSession
    from dom0.store.layout import DomainPaths


class MigrationStreams:
    if TYPE_CHECKING:  # what QemuMachine provides
        paths: DomainPaths
        pid: int | None
        qmp: QMPSession | None

        async def _exec(self, command: str, timeout: float = 10.0, **args: Any) -> Any: ...
        async def _exec_args(self, command: str, args: dict[str, Any]) -> Any: ...
        async def stop(self) -> None: ...
        async def balloon_bytes(self, timeout: float | None = None) -> int: ...

    # ---- migration streams (save/restore) ---------------------------------------

    @property
    def _migration_socket(self) -> str:
        return os.path.join(self.paths.run_dir, "migrate.sock")

    async def migrate_out(self, sink: Callable[[bytes], None], timeout: float) -> None:
        """Stream the guest's state into *sink*: QEMU migrates to a socket of ours,
        at full speed (its bandwidth cap lifted)."""
        path = self._migration_socket
        finished = asyncio.Event()

        async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(1 << 20):
                    sink(chunk)
            finally:
                writer.close()
                finished.set()

        if fdpass.unprivileged(self.pid):
            # QEMU's user cannot reach a socket in xend's run directory: it gets one
            # end of a socket pair instead
            await self._migrate_out_by_fd(receive, timeout)
            await asyncio.wait_for(finished.wait(), timeout)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = await asyncio.start_unix_server(receive, path)
        try:
            await self._exec_args("migrate-set-parameters", {"max-bandwidth": 1 << 40})
            await self._exec("migrate", uri=f"unix:{path}")
            await self._wait_migration(timeout)
            await asyncio.wait_for(finished.wait(), timeout)
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _migrate_out_by_fd(self, receive: Callable[[asyncio.StreamReader,
                                                           asyncio.StreamWriter], Any],
                                 timeout: float) -> None:
        assert self.qmp is not None
        reader, writer = await asyncio.open_unix_connection(
            sock=await fdpass.socket_pair(self.qmp, "save"))
        task = asyncio.ensure_future(receive(reader, writer))
        try:
            await self._exec_args("migrate-set-parameters", {"max-bandwidth": 1 << 40})
            await self._exec("migrate", uri="fd:save")
            await self._wait_migration(timeout)
        except BaseException:
            task.cancel()
            writer.close()
            raise

    async def migrate_in(self, image_path: str, offset: int, timeout: float) -> None:
        """Load a saved stream into a QEMU started with ``incoming=True``: QEMU reads
        the file itself, from *offset* (no copy through xend: restores twice as
        fast).  The stream ends with QEMU's own end marker, so what follows it in
        the file (our trailer) is never taken for state."""
        assert self.qmp is not None
        fd = os.open(image_path, os.O_RDONLY)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            await self.qmp.execute_with_fd("getfd", fd, fdname="restore")
        finally:
            os.close(fd)
        await self._exec("migrate-incoming", uri="fd:restore")
        await self._wait_migration(timeout)
        await self._incoming_balloon()

    async def _wait_migration(self, timeout: float) -> None:
        async def completed() -> bool:
            info = await self._exec("query-migrate")
            status = info.get("status")
            if status in ("failed", "cancelled"):
                raise BackendError(f"migration {status}: {info.get('error-desc', '')}".strip())
            return bool(status == "completed")

        if not await poll_until(completed, timeout, interval=0.01):
            with contextlib.suppress(BackendError):
                await self._exec("migrate_cancel")
            raise BackendError(f"migration did not finish within {timeout:g} s")

    # ---- live migration over a socket we hand to QEMU ---------------------------------

    async def dirty_rate(self, seconds: int = 1) -> float:
        """The guest's page-dirtying rate in bytes/s (QEMU's sampling)."""
        await self._exec_args("calc-dirty-rate", {"calc-time": seconds})
        measured: list[float] = []

        async def done() -> bool:
            info = await self._exec("query-dirty-rate")
            if info.get("status") == "measured":
                measured.append(float(info.get("dirty-rate", 0)) * 1024 * 1024)
            return bool(measured)

        # QEMU measures for *seconds*; unmeasured after that and some slack means none
        await poll_until(done, seconds + 5, interval=0.1)
        return measured[0] if measured else 0.0

    async def ram_bytes(self) -> int:
        info = await self._exec("query-memory-size-summary")
        return int(info.get("base-memory", 0))

    async def ram_sampler(self) -> tuple[int, ramsample.RamSampler | None]:
        """The guest's RAM size, and a sampler of its pages (None when its mapping
        in QEMU cannot be told apart: then only QEMU's slower sampler is left)."""
        ram = await self.ram_bytes()
        address = ramsample.find_guest_ram(self.pid, ram) if self.pid else None
        if address is None:
            return ram, None
        return ram, ramsample.RamSampler(self.pid or 0, address, ram)

    async def _migration_capabilities(self, postcopy: bool) -> None:
        """Post-copy needs QEMU's return path: both ways on the same connection."""
        await self._exec("migrate-set-capabilities", capabilities=[
            {"capability": "auto-converge", "state": True},
            {"capability": "postcopy-ram", "state": postcopy}])

    async def start_migration(self, uri: str, live: bool, fd: int | None = None,
                              postcopy: bool = False, downtime_limit: float = 0.3) -> None:
        """Start sending the guest (not waiting): to *uri*, or to a connected socket
        *fd* handed to QEMU.  *postcopy* keeps post-copy available as a last resort
        (it costs a return path and so some downtime: only when predicted needed)."""
        assert self.qmp is not None
        await self._migration_capabilities(postcopy=postcopy and fd is not None)
        await self._exec_args("migrate-set-parameters",
                              {"max-bandwidth": 1 << 40,
                               "downtime-limit": round(downtime_limit * 1000)})
        if not live:
            await self.stop()
        if fd is None and uri.startswith("unix:") and fdpass.unprivileged(self.pid):
            # QEMU's user may not reach xend's socket: xend connects, QEMU gets the end
            await fdpass.connect_for(self.qmp, uri[len("unix:"):], "migrate")
            uri = "fd:migrate"
        if fd is not None:
            await self.qmp.execute_with_fd("getfd", fd, fdname="migrate")
            uri = "fd:migrate"
        await self._exec("migrate", uri=uri)

    async def receive_incoming(self, uri: str, fd: int | None = None,
                               postcopy: bool = False) -> None:
        """Start receiving a guest (QEMU started incoming): on *uri*, or from a
        connected socket *fd* handed to QEMU."""
        assert self.qmp is not None
        await self._migration_capabilities(postcopy=postcopy and fd is not None)
        if fd is None and uri.startswith("unix:") and fdpass.unprivileged(self.pid):
            await self._relay_incoming(uri[len("unix:"):])
            return
        if fd is not None:
            await self.qmp.execute_with_fd("getfd", fd, fdname="migrate")
            uri = "fd:migrate"
        await self._exec("migrate-incoming", uri=uri)

    async def _relay_incoming(self, path: str) -> None:
        """``migrate-incoming unix:<path>`` for a QEMU whose user may not listen in
        xend's run directory: xend listens there and pours into QEMU's descriptor."""
        assert self.qmp is not None
        server, to_qemu = await fdpass.relay_into(self.qmp, path, "migrate")
        try:
            await self._exec("migrate-incoming", uri="fd:migrate")
        except BaseException:
            server.close()
            to_qemu.close()
            raise

    @property
    def migration_socket(self) -> str:
        return self._migration_socket

    async def migration_info(self) -> dict[str, Any]:
        return dict(await self._exec("query-migrate"))

    async def set_downtime_limit(self, seconds: float) -> None:
        await self._exec_args("migrate-set-parameters",
                              {"downtime-limit": round(seconds * 1000)})

    async def escalate_migration(self, step: int) -> str:
        """The fixed policy for a migration that does not converge."""
        if step == 1:
            await self._exec_args("migrate-set-parameters", {"cpu-throttle-initial": 50,
                                                             "cpu-throttle-increment": 20})
            return "throttling the guest (auto-converge)"
        if step == 2:
            await self.set_downtime_limit(2.0)
            return "raising the downtime limit to 2 s"
        if step == 3:
            caps = await self._exec("query-migrate-capabilities")
            if any(c["capability"] == "postcopy-ram" and c["state"] for c in caps):
                await self._exec("migrate-start-postcopy")
                return "switching to post-copy"
            return "post-copy was not prepared for this migration"
        await self._exec("migrate_cancel")
        return "aborting"

    async def wait_incoming(self, timeout: float) -> None:
        await self._wait_migration(timeout)
        await self._incoming_balloon()

    async def _incoming_balloon(self) -> None:
        """The balloon came with the guest's state: read what it holds now."""
        with contextlib.suppress(BackendError):
            await self.balloon_bytes()
