"""A domain's virtual network interfaces: from its ``vif`` entries to taps on
bridges (net/), the vif scripts (devices/hotplug) and QEMU NICs (the machine).

Device IDs are handed out by the domain and never reused in its life; a MAC
generated for a vif is written back into its entry, so it survives restarts."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dom0.devices import hotplug
from dom0.devices import vif as vif_mod
from dom0.devices.vif import Vif
from dom0.errors import BackendError, DeviceError
from dom0.model.devices import VifSpec
from dom0.net import links

if TYPE_CHECKING:
    from dom0.domain.domain import Domain
    from dom0.domain.security import DomainSecurity
    from dom0.domain.settings import DomainSettings

log = logging.getLogger(__name__)


async def _netlink(fn: Any, *args: Any) -> Any:
    """pyroute2's synchronous API runs an event loop of its own, so it cannot run
    inside xend's: each netlink exchange (short) happens on a worker thread."""
    return await asyncio.to_thread(fn, *args)


def _vif_domid(dom: Domain) -> int:
    return (dom.running.vif_domid or 0) if dom.running else 0


@dataclass
class NetworkOptions:
    scripts_dir: str = "/etc/xen/scripts"
    vif_script: str = "vif-bridge"
    run_dir: str = "/var/run/xend"


class VifController:
    def __init__(self, options: NetworkOptions, settings: DomainSettings) -> None:
        self.options = options
        self.settings = settings  # the device timeout: one source for disks and vifs
        #: the access control policy, consulted before a tap joins a bridge
        self.security: DomainSecurity | None = None

    # ---- resolving ----------------------------------------------------------

    def prepare(self, dom: Domain, domid: int) -> list[Vif]:
        """Give every vif entry its device ID and MAC (kept in the config)."""
        vifs = []
        for spec in dom.config.vifs:
            if spec.devid is None:
                spec.devid = dom.next_vif_devid
                dom.next_vif_devid += 1
            if not spec.options.get("mac"):
                spec.options["mac"] = vif_mod.random_mac()
            vifs.append(vif_mod.resolve(spec, spec.devid, domid))
        return vifs

    def current(self, dom: Domain) -> list[Vif]:
        """The vifs of a running domain, as they were plugged."""
        return [vif_mod.resolve(s, s.devid or 0, _vif_domid(dom)) for s in dom.config.vifs]

    # ---- host side ----------------------------------------------------------

    def _env(self, dom: Domain, vif: Vif) -> dict[str, str]:
        return {"vif": vif.vifname, "mac": vif.mac, "ip": vif.ip or "",
                "bridge": vif.bridge or "", "domid": str(dom.domid), "devid": str(vif.devid),
                "XENBUS_PATH": f"backend/vif/{dom.domid}/{vif.devid}",
                "XEND_RUN_PATH": self.options.run_dir}

    async def plug_host(self, dom: Domain, vif: Vif) -> None:
        """The tap, on its bridge, rate-limited, then the vif script's policy."""
        bridge = vif.bridge
        if bridge is None and not vif.script:
            found = await _netlink(links.bridges)
            bridge = found[0] if found else None
        if bridge is not None and not await _netlink(links.is_bridge, bridge):
            raise DeviceError(f"Device {vif.devid} (vif) could not be connected. "
                              f"Bridge {bridge} does not exist.")
        if self.security is not None:
            self.security.admit_vif(dom.config, bridge or "")
            # the rules name the tap before it exists: no frame slips through
            await asyncio.to_thread(self.security.refresh_frame_filter,
                                    {vif.vifname: dom.config})
        await _netlink(links.create_tap, vif.vifname, bridge)
        try:
            if vif.rate:
                await _netlink(links.limit_rate, vif.vifname, vif.rate)
            script = vif.script or self.options.vif_script
            await hotplug.run(self.options.scripts_dir, script, ["online"], self._env(dom, vif))
        except BaseException:
            await _netlink(links.delete, vif.vifname)
            raise

    async def unplug_host(self, dom: Domain, vif: Vif) -> None:
        script = vif.script or self.options.vif_script
        try:
            await hotplug.run(self.options.scripts_dir, script, ["offline"],
                              self._env(dom, vif))
        except DeviceError as exc:
            log.warning("%s", exc)
        await _netlink(links.delete, vif.vifname)
        if self.security is not None:
            try:
                await asyncio.to_thread(self.security.refresh_frame_filter, None, vif.vifname)
            except DeviceError as exc:  # the tap is gone: a stale rule matches nothing
                log.warning("%s", exc)

    async def plug_all(self, dom: Domain, vifs: list[Vif]) -> None:
        done: list[Vif] = []
        try:
            for vif in vifs:
                await self.plug_host(dom, vif)
                done.append(vif)
        except BaseException:
            for vif in done:
                await self.unplug_host(dom, vif)
            raise

    async def unplug_all(self, dom: Domain) -> None:
        for vif in self.current(dom):
            await self.unplug_host(dom, vif)

    # ---- hotplug --------------------------------------------------------------

    async def attach(self, dom: Domain, options: dict[str, str]) -> int:
        spec = VifSpec(dict(options))
        spec.devid = dom.next_vif_devid
        dom.next_vif_devid += 1
        if not spec.options.get("mac"):
            spec.options["mac"] = vif_mod.random_mac()
        await self.plug(dom, spec)
        return spec.devid

    async def plug(self, dom: Domain, spec: VifSpec) -> None:
        """Hot-plug the entry *spec* (its device ID given) into a running domain and
        add it to the config; into a domain that is not running, only the latter.
        Its tap is named like those plugged at launch (a restart in place keeps
        them), so unplugging finds it."""
        vif = vif_mod.resolve(spec, spec.devid or 0, _vif_domid(dom))
        if dom.running:
            await self.plug_host(dom, vif)
            try:
                await dom.running.machine.attach_nic(vif, self.settings.device_timeout)
            except BackendError as exc:
                await self.unplug_host(dom, vif)
                raise DeviceError(f"Device {vif.devid} (vif) could not be connected. "
                                  f"{exc}") from None
        dom.config.vifs.append(spec)

    async def detach(self, dom: Domain, devid: int, force: bool) -> None:
        index = next((i for i, s in enumerate(dom.config.vifs) if s.devid == devid), None)
        if index is None:
            raise DeviceError(f"Device {devid} not connected")
        spec = dom.config.vifs[index]
        if dom.running:
            vif = vif_mod.resolve(spec, devid, _vif_domid(dom))
            released = await dom.running.machine.detach_nic(
                vif, 5.0 if force else self.settings.device_timeout)
            if not released and not force:
                raise DeviceError(f"Device {devid} (vif) could not be disconnected: "
                                  "the guest did not release it.")
            await self.unplug_host(dom, vif)
        del dom.config.vifs[index]

    async def rows(self, dom: Domain) -> list[dict[str, Any]]:
        out = []
        for spec in dom.config.vifs:
            vif = vif_mod.resolve(spec, spec.devid or 0, _vif_domid(dom))
            connected = False
            if dom.running:
                connected = vif.emulated or await dom.running.machine.guest_uses(vif.device_id)
            out.append({
                "idx": vif.devid, "backend-id": 0, "mac": vif.mac, "handle": vif.devid,
                "state": 4 if connected else 1, "event-ch": -1, "tx-ring-ref": -1,
                "rx-ring-ref": -1,
                "be-path": f"/local/domain/0/backend/vif/{dom.domid}/{vif.devid}",
                "vifname": vif.vifname, "bridge": vif.bridge or "", "model": vif.model,
            })
        return out
