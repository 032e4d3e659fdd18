"""A guest's USB: its controller and devices as QEMU arguments (command line and
QMP ``device_add``), and the host's devices, probed before one is passed through.

The controller is QEMU's ``qemu-xhci``, not the USB 1.1 UHCI Xen's qemu-dm gave:
one xHCI serves devices of every speed (low, full, high, super), so a host's USB 2
or 3 device passes through without a companion EHCI, and unlike UHCI it does not
make QEMU walk a frame list every millisecond, which costs the host CPU under TCG.
Every guest kernel since 2.6.31 drives it.

A host device QEMU cannot find does not fail QEMU (``usb-host`` waits for it to be
plugged); xend looks first, so a missing device is a one-line error instead of a
device that never comes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dom0.errors import DeviceError
from dom0.model.usb import MAX_PORTS, UsbDevice, UsbSlot

CONTROLLER = "qemu-xhci"
CONTROLLER_ID = "usb"
#: the controller's bus, where every device goes
BUS = f"{CONTROLLER_ID}.0"
#: where Linux lists the host's USB devices
SYSFS = "/sys/bus/usb/devices"

_DRIVERS = {"tablet": "usb-tablet", "mouse": "usb-mouse", "keyboard": "usb-kbd",
            "host": "usb-host"}


def device(slot: UsbSlot) -> dict[str, Any]:
    """``device_add``'s arguments for a device at its port (QMP takes the IDs as numbers)."""
    dev = slot.device
    args: dict[str, Any] = {"driver": _DRIVERS[dev.kind], "id": dev.device_id, "bus": BUS,
                            "port": str(slot.port)}
    if dev.vendor is not None:
        args.update(vendorid=dev.vendor, productid=dev.product)
    elif dev.bus is not None:
        args.update(hostbus=dev.bus, hostaddr=dev.addr)
    return args


def argv(slots: Sequence[UsbSlot] | None) -> list[str]:
    """The controller and its devices at start; None: no controller at all.  Its
    USB 2 ports are 1..MAX_PORTS (xHCI numbers the USB 3 ones after them)."""
    if slots is None:
        return []
    out = ["-device", f"{CONTROLLER},id={CONTROLLER_ID},p2={MAX_PORTS},p3={MAX_PORTS}"]
    for slot in slots:
        args = device(slot)
        opts = [args.pop("driver")]
        for key, value in args.items():
            hexa = key in ("vendorid", "productid")
            opts.append(f"{key}={value:#06x}" if hexa else f"{key}={value}")
        out += ["-device", ",".join(opts)]
    return out


def check_host(dev: UsbDevice, sysfs: str = SYSFS) -> None:
    """A host device must be plugged in now; emulated ones always are."""
    if dev.kind != "host":
        return
    if not os.path.isdir(sysfs):
        raise DeviceError(f"USB device {dev} not found: this host has no USB ({sysfs} "
                          "is missing)")
    for name in os.listdir(sysfs):
        if _matches(os.path.join(sysfs, name), dev):
            return
    raise DeviceError(f"USB device {dev} not found on this host")


def _matches(path: str, dev: UsbDevice) -> bool:
    def number(attr: str, base: int) -> int | None:
        try:
            with open(os.path.join(path, attr)) as f:
                return int(f.read().strip(), base)
        except (OSError, ValueError):
            return None  # an interface, not a device: it has no such attribute

    if dev.vendor is not None:
        return number("idVendor", 16) == dev.vendor and number("idProduct", 16) == dev.product
    return number("busnum", 10) == dev.bus and number("devnum", 10) == dev.addr
