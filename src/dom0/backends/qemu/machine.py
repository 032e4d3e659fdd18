"""One domain's QEMU: launch or adopt it, and the lifecycle verbs over QMP.

``QemuMachine`` implements the backend contract (``backends/machine.Machine``):
everything QEMU-specific the domain layer needs goes through it, so the domain
layer speaks only of domains and power states.  It is built from a resolved
``MachineSpec`` and reports in ``MachineEvents`` words, never in QMP's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from dom0.backends.machine import BlockStats, MachineEvents, MachineSpec
from dom0.backends.qemu import cpuslots, fdpass, process, tpm
from dom0.backends.qemu.argv import build_argv
from dom0.backends.qemu.events import guest_stop_reason
from dom0.backends.qemu.qmp import QMPSession
from dom0.backends.qemu.streams import MigrationStreams
from dom0.devices import usb as usb_mod
from dom0.devices import vbd as vbd_mod
from dom0.devices import vif as vif_mod
from dom0.devices.console import ConsoleRelay
from dom0.devices.vbd import Vbd
from dom0.devices.vif import Vif
from dom0.errors import BackendError
from dom0.model.usb import UsbDevice, UsbSlot
from dom0.store.layout import DomainPaths
from dom0.waiting import poll_until

if TYPE_CHECKING:
    from dom0.backends.machine import Machine

log = logging.getLogger(__name__)

#: xm trigger's names that are one QMP command each
QMP_TRIGGERS = {"nmi": "inject-nmi", "power": "system_powerdown", "s3resume": "system_wakeup"}

#: seconds after a reset during which a guest reset is not reported as a reboot
RESET_GRACE = 2.0


class QemuMachine(MigrationStreams):
    def __init__(self, paths: DomainPaths, binary: str, accel: str) -> None:
        self.paths = paths
        self.binary = binary
        self.accel = accel
        self.pid: int | None = None
        self.qmp: QMPSession | None = None
        self.vcpu_threads: list[int] = []
        self.balloon_now: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self._restore_action: asyncio.Task[None] | None = None
        self.console = ConsoleRelay(paths.serial_socket, paths.console_socket)
        #: device id -> future resolved by QEMU's DEVICE_DELETED (the guest let go)
        self._deleting: dict[str, asyncio.Future[None]] = {}
        self.vnc_location: str | None = None

    # ---- bringing it up -------------------------------------------------------

    async def launch(self, spec: MachineSpec, events: MachineEvents,
                     incoming: bool = False) -> None:
        """Start QEMU with the guest stopped (-S); the caller resumes it when ready.
        With *incoming* QEMU waits for a migration stream (migrate_in)."""
        os.makedirs(self.paths.run_dir, mode=0o700, exist_ok=True)
        argv = build_argv(spec, self.paths, binary=self.binary, accel=self.accel, paused=True,
                          incoming="defer" if incoming else None)
        try:
            if spec.tpm is not None:  # QEMU connects to it as it starts
                await tpm.start(tpm.paths_for(self.paths, spec.tpm.state_dir), spec.tpm.version)
            self.pid = await process.launch(argv, self.paths.pidfile, self.paths.qemu_log,
                                            env=_display_env(spec))
        except BaseException:
            await tpm.stop(tpm.paths_for(self.paths))
            raise
        cpuslots.Budget(max(spec.vcpus, spec.maxvcpus)).save(self._budget_path)
        try:
            await self.attach(events)
            await self._set_vnc_password(spec)
            # an incoming guest brings its balloon's state with it
            if spec.memory < spec.maxmem and not incoming:
                await self.set_balloon(spec.memory)
        except BaseException:
            await self.kill()
            raise

    def recognise(self, pid: int | None) -> bool:
        """Is the recorded pid (or the pidfile's) still our QEMU?  Used on re-adoption."""
        for candidate in (pid, process.read_pidfile(self.paths.pidfile)):
            if candidate and process.is_our_qemu(candidate, self.paths.qmp_socket):
                self.pid = candidate
                return True
        return False

    async def attach(self, events: MachineEvents) -> None:
        def on_qmp_event(event: str, data: dict[str, Any]) -> None:
            log.debug("%s: QMP event %s %s", self.paths.qmp_socket, event, data)
            if event == "DEVICE_DELETED":
                # by id, and by QOM path (a device without an id)
                for key in (data.get("device"), data.get("path")):
                    if key:
                        self.device_deleted(key)
            elif event == "BALLOON_CHANGE" and "actual" in data:
                self.balloon_now = int(data["actual"]) >> 20
            elif (reason := guest_stop_reason(event, data)) is not None:
                events.guest_stopped(reason)

        self.qmp = QMPSession(self.paths.qmp_socket, on_qmp_event)
        await self.qmp.connect()
        await self._reboot_means_stop()  # also undoes a grace period cut short by xend dying
        await self.refresh_vcpus()
        await self._find_vnc()
        with contextlib.suppress(BackendError):  # a machine without a balloon device
            await self.balloon_bytes()
        try:
            await self.console.start()
        except OSError as exc:  # the guest runs on without a console relay
            log.error("no console for %s: %s", self.paths.serial_socket, exc)
        self._watch = asyncio.create_task(self._watch_connection(events))

    async def _watch_connection(self, events: MachineEvents) -> None:
        """QMP closing without our asking means QEMU went away."""
        assert self.qmp is not None
        qmp = self.qmp
        await qmp.closed.wait()
        if self.qmp is qmp:  # detach() lets go of the session before closing it
            events.gone()

    async def refresh_vcpus(self) -> None:
        cpus = await self._exec("query-cpus-fast")
        self.vcpu_threads = [c["thread-id"] for c in sorted(cpus, key=lambda c: c["cpu-index"])]

    # ---- verbs -----------------------------------------------------------------

    async def _exec(self, command: str, timeout: float = 10.0, **args: Any) -> Any:
        if self.qmp is None:
            raise BackendError("no QMP session")
        return await self.qmp.execute(command, timeout=timeout, **args)

    async def _exec_args(self, command: str, args: dict[str, Any]) -> Any:
        """For arguments whose names are not identifiers (``node-name``)."""
        return await self._exec(command, **args)

    async def runstate(self) -> str:
        return str((await self._exec("query-status"))["status"])

    async def cont(self) -> None:
        await self._exec("cont")

    async def stop(self) -> None:
        await self._exec("stop")

    async def system_reset(self) -> None:
        await self._exec("system_reset")

    async def hard_reset(self) -> None:
        """Reset and run the guest, also from the stopped 'shutdown' runstate.

        Our -action turns every reset into a stop, so lift that for a grace period:
        after a reset SeaBIOS finds itself already initialised and resets the
        machine once more (within ~50 ms); that second reset must just happen."""
        await self._exec("set-action", reboot="reset")
        await self._exec("system_reset")
        await self._exec("cont")
        if self._restore_action:
            self._restore_action.cancel()
        self._restore_action = asyncio.create_task(self._reboot_means_stop(RESET_GRACE))

    async def _reboot_means_stop(self, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        try:
            await self._exec("set-action", reboot="shutdown", shutdown="pause", panic="pause")
        except BackendError as exc:
            log.warning("could not restore the reboot action: %s", exc)

    def still_running(self) -> bool:
        return bool(self.pid) and process.alive(self.pid or 0) and \
            process.is_our_qemu(self.pid or 0, self.paths.qmp_socket)

    async def powerdown(self) -> None:
        """The ACPI power button."""
        await self._exec("system_powerdown")

    async def trigger(self, name: str) -> None:
        """``nmi``: QEMU's inject-nmi (on x86 every vCPU gets it).  ``reset``: a machine
        reset in place, as hard_reset.  ``init``: QMP cannot INIT one vCPU; a machine
        reset, which INITs every vCPU and resets the devices, is the nearest.
        ``power``: the ACPI power button.  ``s3resume``: wake from ACPI S3."""
        if name in ("reset", "init"):
            await self.hard_reset()
        elif name in QMP_TRIGGERS:
            await self._exec(QMP_TRIGGERS[name])
        else:
            raise BackendError(f"Invalid trigger: {name}")

    async def send_keys(self, *keys: str) -> None:
        await self._exec("send-key", keys=[{"type": "qcode", "data": k} for k in keys])

    async def set_balloon(self, mib: int) -> None:
        await self._exec("balloon", value=mib * 1024 * 1024)

    async def dump_memory(self, path: str, timeout: float = 600.0) -> None:
        if not fdpass.unprivileged(self.pid):
            await self._exec("dump-guest-memory", timeout=timeout, paging=False,
                             protocol=f"file:{path}")
            return
        assert self.qmp is not None  # QEMU's user may not write there: xend opens it
        await fdpass.pass_file(self.qmp, path, "dump")
        await self._exec("dump-guest-memory", timeout=timeout, paging=False,
                         protocol="fd:dump")

    # ---- the screen ---------------------------------------------------------------

    async def _set_vnc_password(self, spec: MachineSpec) -> None:
        """QEMU started with ``password=on`` refuses every VNC client until this."""
        if spec.display is not None and spec.display.vnc and spec.display.vnc_password:
            await self._exec("set_password", protocol="vnc",
                             password=spec.display.vnc_password)

    async def _find_vnc(self) -> None:
        """Where QEMU's VNC server listens: with ``to=`` it took the first free port."""
        info = await self._exec("query-vnc")
        if info.get("enabled") and info.get("service"):
            host = str(info.get("host", "127.0.0.1"))
            host = f"[{host}]" if ":" in host else host
            self.vnc_location = f"{host}:{info['service']}"

    async def screendump(self, path: str) -> None:
        if not fdpass.unprivileged(self.pid):
            await self._exec("screendump", filename=path)
            return
        assert self.qmp is not None  # QEMU's user may not write there: xend opens it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fdset = await fdpass.add_fd(self.qmp, fd, "screendump")
        finally:
            os.close(fd)
        try:
            await self._exec("screendump", filename=f"/dev/fdset/{fdset}")
        finally:
            await fdpass.drop_fdsets(self.qmp, "screendump")

    # ---- block devices ----------------------------------------------------------

    def device_deleted(self, device_id: str) -> None:
        """Called for QMP DEVICE_DELETED."""
        fut = self._deleting.pop(device_id, None)
        if fut and not fut.done():
            fut.set_result(None)

    async def attach_disk(self, vbd: Vbd, timeout: float) -> None:
        """Hot-plug a disk; return once the guest's driver has taken it."""
        if vbd.emulated or vbd.cdrom:
            raise BackendError(f"Device {vbd.dev}: emulated IDE/SCSI disks cannot be hot-plugged")
        await self._blockdev_add(vbd)
        try:
            await self._exec_args("device_add", vbd_mod.device(vbd))
        except BackendError:
            await self._exec_args("blockdev-del", {"node-name": vbd.node})
            await self._drop_fdsets(vbd.node)
            raise
        await self._wait_driver_ok(vbd.device_id, timeout)

    async def _blockdev_add(self, vbd: Vbd) -> None:
        """Add a disk's block node; an unprivileged QEMU (-runas) gets a host path as a
        descriptor xend opened (backends/qemu/fdpass.py), tagged with the node's name."""
        description = vbd_mod.blockdev(vbd)
        if fdpass.handed_over(vbd) and fdpass.unprivileged(self.pid):
            assert self.qmp is not None
            description = await fdpass.image_description(self.qmp, vbd, description)
        try:
            await self._exec_args("blockdev-add", description)
        except BackendError:
            await self._drop_fdsets(vbd.node)
            raise

    async def _drop_fdsets(self, node: str) -> None:
        """Forget the descriptors handed over for block node *node* (the block layer
        keeps its own duplicate while the node lives)."""
        if self.qmp is not None and fdpass.unprivileged(self.pid):
            await fdpass.drop_fdsets(self.qmp, node)

    async def _wait_driver_ok(self, device_id: str, timeout: float) -> None:
        if not await poll_until(lambda: self.guest_uses(device_id), timeout, interval=0.05):
            path = f"/machine/peripheral/{device_id}/virtio-backend"
            raise BackendError(f"the guest did not take device {device_id} ({path})")

    async def guest_uses(self, device_id: str) -> bool:
        """Has the guest's virtio driver set DRIVER_OK on the device?"""
        path = f"/machine/peripheral/{device_id}/virtio-backend"
        try:
            status = await self._exec("x-query-virtio-status", path=path)
        except BackendError:
            return False
        return "DRIVER_OK" in str(status.get("status"))

    async def detach_disk(self, vbd: Vbd, timeout: float) -> bool:
        """Ask the guest to release the disk (ACPI eject); True once it did.  The
        block node is removed only after the device is gone."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deleting[vbd.device_id] = fut
        await self._exec("device_del", id=vbd.device_id)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._deleting.pop(vbd.device_id, None)
            return False
        if vbd.kind != "empty":
            await self._exec_args("blockdev-del", {"node-name": vbd.node})
            await self._drop_fdsets(vbd.node)
        return True

    async def attach_nic(self, vif: Vif, timeout: float) -> None:
        """Hot-plug a NIC on its (already made) tap; return once the guest has it."""
        description = vif_mod.netdev(vif)
        if fdpass.unprivileged(self.pid):  # it may not open a tap itself: xend does
            assert self.qmp is not None
            description = await fdpass.tap_description(self.qmp, vif.vifname,
                                                       vif.netdev_id, description)
        await self._exec_args("netdev_add", description)
        try:
            await self._exec_args("device_add", vif_mod.device(vif))
        except BackendError:
            await self._exec("netdev_del", id=vif.netdev_id)
            raise
        if not vif.emulated:
            await self._wait_driver_ok(vif.device_id, timeout)

    async def detach_nic(self, vif: Vif, timeout: float) -> bool:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deleting[vif.device_id] = fut
        await self._exec("device_del", id=vif.device_id)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._deleting.pop(vif.device_id, None)
            return False
        await self._exec("netdev_del", id=vif.netdev_id)
        return True

    # ---- USB ---------------------------------------------------------------------

    async def attach_usb(self, slot: UsbSlot) -> None:
        await self._exec_args("device_add", usb_mod.device(slot))

    async def detach_usb(self, dev: UsbDevice, timeout: float) -> bool:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deleting[dev.device_id] = fut
        await self._exec("device_del", id=dev.device_id)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._deleting.pop(dev.device_id, None)
            return False
        return True

    async def change_media(self, old: Vbd, new: Vbd) -> None:
        """Swap the medium of a CD-ROM drive (block-configure)."""
        await self._exec("blockdev-open-tray", id=old.device_id, force=True)
        if old.kind != "empty":
            await self._exec("blockdev-remove-medium", id=old.device_id)
            await self._exec_args("blockdev-del", {"node-name": old.node})
            await self._drop_fdsets(old.node)
        if new.kind != "empty":
            await self._blockdev_add(new)
            await self._exec_args("blockdev-insert-medium",
                                  {"id": new.device_id, "node-name": new.node})
        await self._exec("blockdev-close-tray", id=new.device_id)

    # ---- host-side figures -----------------------------------------------------

    def cpu_seconds(self) -> float:
        return process.cpu_seconds(self.pid) if self.pid else 0.0

    def vcpu_figures(self) -> list[tuple[float, int, str]]:
        """(cpu seconds, last host CPU, thread state) per vCPU."""
        out = []
        for tid in self.vcpu_threads:
            secs, cpu = process.thread_cpu(self.pid or 0, tid)
            out.append((secs, cpu, process.thread_state(self.pid or 0, tid)))
        return out

    def blocked(self) -> bool:
        """Xen's 'b': every vCPU thread is asleep (the guest is idle)."""
        if not self.vcpu_threads or not self.pid:
            return False
        return all(process.thread_state(self.pid, t) in ("S", "D") for t in self.vcpu_threads)

    # ---- xm top and the metrics exporter -------------------------------------------

    async def block_stats(self, timeout: float) -> list[BlockStats]:
        out = []
        for entry in await self._exec("query-blockstats", timeout=timeout):
            # -blockdev disks have no legacy drive name: the guest device names them
            qdev = str(entry.get("qdev") or "")
            device_id = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev
            if not device_id:
                continue
            st = entry.get("stats", {})
            out.append(BlockStats(
                device_id=device_id, rd_ops=int(st.get("rd_operations", 0)),
                wr_ops=int(st.get("wr_operations", 0)), rd_bytes=int(st.get("rd_bytes", 0)),
                wr_bytes=int(st.get("wr_bytes", 0)),
                failed_ops=int(st.get("failed_rd_operations", 0))
                + int(st.get("failed_wr_operations", 0))))
        return out

    async def balloon_bytes(self, timeout: float | None = None) -> int:
        try:
            reply = await (self._exec("query-balloon") if timeout is None
                           else self._exec("query-balloon", timeout=timeout))
            actual = int(reply["actual"])
        except (KeyError, TypeError, ValueError):
            raise BackendError("query-balloon: no balloon size in QEMU's reply") from None
        self.balloon_now = actual >> 20
        return actual

    # ---- vCPUs and memory (issue 10) --------------------------------------------

    @property
    def _budget_path(self) -> str:
        return os.path.join(self.paths.run_dir, "vcpus.json")

    async def set_vcpu_count(self, count: int, timeout: float) -> int:
        slots = await self._exec("query-hotpluggable-cpus")
        # a machine of an older xend has no record: all its slots, and no TCG plug
        budget = cpuslots.Budget.load(self._budget_path) or cpuslots.Budget(
            len(slots), self.accel != "tcg")
        add, remove = cpuslots.plan(slots, count, budget.max)
        if add and not budget.can_plug:
            raise BackendError(cpuslots.TCG_REPLUG)
        try:
            for vcpu, slot in add:
                await self._exec_args("device_add", cpuslots.plug_args(slot, vcpu))
            for path in remove:
                if self.accel == "tcg" and budget.can_plug:
                    budget.can_plug = False  # written before: xend may die in between
                    budget.save(self._budget_path)
                if not await self._cpu_removed(path, timeout):
                    break  # the guest keeps it (busy, or no ACPI hot-plug): stop here
        finally:
            await self.refresh_vcpus()
        return len(self.vcpu_threads)

    async def _cpu_removed(self, path: str, timeout: float) -> bool:
        """``device_del`` of a vCPU; True once QEMU's vCPU list no longer has it.
        (QEMU 7.2 sends DEVICE_DELETED only for the CPU's lapic, and empties the slot
        of query-hotpluggable-cpus before the vCPU is gone from query-cpus-fast.)"""
        await self._exec("device_del", id=path)

        async def gone() -> bool:
            cpus = await self._exec("query-cpus-fast")
            return all(c.get("qom-path") != path for c in cpus)

        return await poll_until(gone, timeout, interval=0.05)

    async def ram_mib(self) -> int:
        return await self.ram_bytes() >> 20

    # ---- tearing down ----------------------------------------------------------

    async def detach(self) -> None:
        """Close our QMP session; QEMU keeps running (xend stopping)."""
        qmp, self.qmp = self.qmp, None
        await self.console.stop()
        for task in (self._watch, self._restore_action):
            if task:
                task.cancel()
        if qmp:
            await qmp.close()

    async def kill(self) -> None:
        await self.detach()
        if self.pid and process.is_our_qemu(self.pid, self.paths.qmp_socket):
            await process.kill(self.pid)
        self.pid = None
        await tpm.stop(tpm.paths_for(self.paths))  # after QEMU, which may still talk to it
        shutil.rmtree(self.paths.run_dir, ignore_errors=True)

    def tpm_pid(self) -> int | None:
        return tpm.running(tpm.paths_for(self.paths))


if TYPE_CHECKING:
    # mypy holds QemuMachine to the backend contract
    _contract: type[Machine] = QemuMachine


def _display_env(spec: MachineSpec) -> dict[str, str] | None:
    """An SDL window opens on the X display (and with the authority) the config
    names, which xm took from the environment it ran in (Xen's display/xauthority)."""
    d = spec.display
    if d is None or not d.sdl:
        return None
    env = dict(os.environ)
    if d.x_display:
        env["DISPLAY"] = d.x_display
    if d.xauthority:
        env["XAUTHORITY"] = d.xauthority
    return env
