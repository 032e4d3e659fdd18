"""``xm usb-add``/``usb-del``: USB devices hot-plugged into a running domain.  The
manager calls these with the domain's lock held and persists the changed config:
a plugged device joins ``usbdevice``, so a save file, a migration and a restart
build the machine with it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dom0.devices import usb as usb_mod
from dom0.errors import BackendError, ConfigError, DeviceError
from dom0.model import usb

if TYPE_CHECKING:
    from dom0.domain.domain import Domain

log = logging.getLogger(__name__)

#: seconds QEMU may take to unplug a USB device (it needs nothing of the guest)
UNPLUG_TIMEOUT = 10.0


def parse(text: str) -> usb.UsbDevice:
    try:
        return usb.parse_usbdevice(text)
    except ConfigError as exc:
        raise DeviceError(str(exc)) from None


async def add(dom: Domain, text: str) -> None:
    dev = parse(text)
    cfg = dom.config
    present = usb.devices(cfg.usbdevice)
    if dev in present:
        raise DeviceError(f"USB device {dev} is already attached to domain {dom.name}")
    if not usb.has_controller(cfg.usb, cfg.usbdevice):
        # the controller is built with the machine: plugging one in later would take
        # PCI hot-plug of a controller that the guest's config never asked for
        raise DeviceError(f"Domain {dom.name} has no USB controller: create it with usb=1")
    usb_mod.check_host(dev)
    slots = usb.assign_ports(present, cfg.usb_ports)
    port = usb.free_port(slots)
    if port is None:
        raise DeviceError(f"USB device {dev} could not be attached: all {usb.MAX_PORTS} "
                          "USB ports are taken")
    slot = usb.UsbSlot(dev, port)
    assert dom.running is not None
    try:
        await dom.running.machine.attach_usb(slot)
    except BackendError as exc:
        log.error("attaching USB %s to %s failed: %s", dev, dom.name, exc)
        raise DeviceError(f"USB device {dev} could not be attached: {exc}") from None
    _remember(dom, [*slots, slot])


async def delete(dom: Domain, text: str) -> None:
    dev = parse(text)
    cfg = dom.config
    present = usb.devices(cfg.usbdevice)
    if dev not in present:
        raise DeviceError(f"USB device {dev} is not attached to domain {dom.name}")
    slots = usb.assign_ports(present, cfg.usb_ports)
    assert dom.running is not None
    try:
        gone = await dom.running.machine.detach_usb(dev, UNPLUG_TIMEOUT)
    except BackendError as exc:
        raise DeviceError(f"USB device {dev} could not be detached: {exc}") from None
    if not gone:
        raise DeviceError(f"USB device {dev} could not be detached: QEMU did not remove it")
    _remember(dom, [s for s in slots if s.device != dev])


def _remember(dom: Domain, slots: list[usb.UsbSlot]) -> None:
    """The devices and their ports into the config (what a restore or a migration
    builds the machine from).  The controller stays when its last device goes: the
    machine keeps it, and a restored machine must have the same devices."""
    dom.config.usb = 1
    dom.config.usbdevice = usb.as_value([s.device for s in slots])
    dom.config.usb_ports = {str(s.device): s.port for s in slots}
