"""A domain's virtual block devices: resolving its ``disk`` entries (with the
manual's sharing protection) and hot-plugging them.  The manager calls these
with the domain's lock held and persists the changed configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dom0.devices import vbd as vbd_mod
from dom0.devices.vbd import Vbd
from dom0.domain.spec import hvm_disk
from dom0.errors import BackendError, DeviceError
from dom0.model.devices import DiskSpec

if TYPE_CHECKING:
    from dom0.domain.domain import Domain
    from dom0.domain.settings import DomainSettings

log = logging.getLogger(__name__)


class DiskController:
    def __init__(self, domains: Callable[[], Iterable[Domain]],
                 settings: DomainSettings) -> None:
        self.domains = domains
        self.settings = settings

    def resolve(self, dom: Domain, disks: list[DiskSpec]) -> list[Vbd]:
        vbds: list[Vbd] = []
        for spec in disks:
            vbd = vbd_mod.parse(spec)
            if any(v.devid == vbd.devid for v in vbds):
                raise DeviceError(f"Device {vbd.dev} is already connected.")
            self.check_sharing(dom, vbd)
            vbds.append(vbd)
        return vbds

    def check_sharing(self, dom: Domain, vbd: Vbd) -> None:
        """The manual's protection: storage written by one domain (or mounted
        read-write on the host) is not given to another; ``w!`` overrides, and
        read-only sharing is fine.  Identity is the inode or device number, so
        the same file reached through another path is caught too."""
        ident = vbd_mod.identity(vbd)
        if ident is None or vbd.mode == "w!":
            return
        for other in self.domains():
            if other is dom or not other.active:
                continue
            if other.migrating_out and other.uuid == dom.uuid:
                continue  # the same guest migrating to localhost: QEMU hands its disks over
            for spec in other.config.disks:
                try:
                    used = vbd_mod.parse(spec, check_exists=False)
                except DeviceError:
                    continue
                if vbd_mod.identity(used) == ident and (vbd.writable or used.writable):
                    raise DeviceError(vbd_mod.sharing_error(
                        vbd.target, vbd.writable, "guest", used.writable))
        host_rw = vbd_mod.host_mounts_writable(vbd)
        if host_rw is not None and (vbd.writable or host_rw):
            raise DeviceError(vbd_mod.sharing_error(vbd.target, vbd.writable, "host", host_rw))

    def find(self, dom: Domain, dev: str) -> tuple[int, Vbd]:
        wanted = vbd_mod.device_number(dev)
        for i, spec in enumerate(dom.config.disks):
            vbd = vbd_mod.parse(spec, check_exists=False)
            if vbd.devid == wanted:
                return i, vbd
        raise DeviceError(f"Device {dev} not connected")

    async def attach(self, dom: Domain, spec: DiskSpec) -> None:
        vbd = vbd_mod.parse(spec)
        if any(vbd_mod.parse(d, check_exists=False).devid == vbd.devid
               for d in dom.config.disks):
            raise DeviceError(f"Device {spec.dev} is already connected.")
        if dom.running:
            self.check_sharing(dom, vbd)
            try:
                await dom.running.machine.attach_disk(vbd, self.settings.device_timeout)
            except BackendError as exc:
                log.error("attaching %s to %s failed: %s", spec.dev, dom.name, exc)
                raise DeviceError(f"Device {vbd.devid} (vbd) could not be connected. "
                                  f"{exc}") from None
        dom.config.disks.append(spec)

    async def detach(self, dom: Domain, dev: str, force: bool) -> None:
        index, vbd = self.find(dom, dev)
        if dom.running:
            released = await dom.running.machine.detach_disk(
                vbd, 5.0 if force else self.settings.device_timeout)
            if not released and not force:
                raise DeviceError(f"Device {dev} (vbd) could not be disconnected: "
                                  "the guest did not release it.")
        del dom.config.disks[index]

    async def configure(self, dom: Domain, uname: str, dev: str, mode: str) -> None:
        """block-configure: a new medium in a CD-ROM drive."""
        index, old = self.find(dom, dev)
        spec = DiskSpec(uname, dev if ":" in dev else dom.config.disks[index].dev, mode)
        new = vbd_mod.parse(spec)
        if not old.cdrom:
            raise DeviceError(f"Device {dev} is not a CD-ROM: only media can be changed")
        if dom.running:
            await dom.running.machine.change_media(old, new)
        dom.config.disks[index] = spec

    async def rows(self, dom: Domain) -> list[dict[str, Any]]:
        out = []
        for spec in dom.config.disks:
            vbd = vbd_mod.parse(spec, check_exists=False)
            if dom.config.builder == "hvm":  # hda/sda are emulated there, ioemu: or not
                vbd = hvm_disk(vbd)
            connected = False
            if dom.running:
                connected = vbd.emulated or vbd.cdrom or \
                    await dom.running.machine.guest_uses(vbd.device_id)
            out.append({
                "idx": vbd.devid, "backend-id": 0, "handle": 0, "state": 4 if connected else 1,
                "event-ch": -1, "ring-ref": -1,
                "be-path": f"/local/domain/0/backend/vbd/{dom.domid}/{vbd.devid}",
                "uname": spec.uname, "dev": spec.dev, "mode": spec.mode,
                "virtual-device": vbd.dev,
            })
        return out
