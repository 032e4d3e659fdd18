"""USB in a domain's configuration: ``usb`` (a controller) and ``usbdevice`` (spec
§2.3), whose device syntax ``xm usb-add``/``usb-del`` also take (spec §1.2):

* ``tablet``, ``mouse``, ``keyboard``: emulated HID devices;
* ``host:<vendor>:<product>``: the host's device of that ID (hexadecimal, as
  ``lsusb`` prints them), wherever it is plugged;
* ``host:<bus>.<addr>``: the host's device at that bus and address (decimal, as
  ``lsusb`` prints them).

``usbdevice`` may be one device or, as later Xen accepted, a list.  The config keeps
each device's canonical text (``host:046d:c52b``, never ``host:46D:C52B``), so a
device is one string wherever it is compared, and hot-plugged devices join the same
list (so they travel with save files and migrations)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dom0.errors import ConfigError
from dom0.model.fields import VARS_BY_NAME

#: the emulated devices and what the guest sees of them
EMULATED = ("tablet", "mouse", "keyboard")
SYNTAX = "tablet, mouse, keyboard, host:<vendor>:<product> or host:<bus>.<addr>"

_BY_ID = re.compile(r"host:([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})")
_BY_PLACE = re.compile(r"host:([0-9]{1,3})\.([0-9]{1,3})")


@dataclass(frozen=True)
class UsbDevice:
    """One USB device of a domain: an emulated one (*kind*) or a host's (``host``,
    by vendor and product ID or by bus and address)."""

    kind: str
    vendor: int | None = None
    product: int | None = None
    bus: int | None = None
    addr: int | None = None

    def __str__(self) -> str:
        if self.kind != "host":
            return self.kind
        if self.vendor is not None:
            return f"host:{self.vendor:04x}:{self.product or 0:04x}"
        return f"host:{self.bus}.{self.addr}"

    @property
    def device_id(self) -> str:
        """Its device ID in the machine: one per device text, so a device is found
        again by what the user typed (``.`` and ``-`` keep the two host forms apart)."""
        return "usb-" + str(self).replace(":", "-")


#: the controller's ports devices may take (its USB 2 ports; each device its own)
MAX_PORTS = 8


@dataclass(frozen=True)
class UsbSlot:
    """A device and the controller port it is plugged into.  The port is part of the
    machine's identity: QEMU names a USB device's saved state by its port, so a
    restored or migrated machine must plug each device where the old one had it."""

    device: UsbDevice
    port: int


def assign_ports(devs: list[UsbDevice], known: dict[str, int]) -> list[UsbSlot]:
    """Each device at the port *known* gives it (``usb_ports``: where a hot-plug put
    it), the others at the lowest free ports, in order: a domain whose devices never
    moved has them at 1, 2, 3...; after a ``usb-del`` the others keep theirs."""
    taken = {known[str(d)] for d in devs if str(d) in known}
    free = (p for p in range(1, MAX_PORTS + 1) if p not in taken)
    slots = []
    for dev in devs:
        port = known.get(str(dev)) or next(free, None)
        if port is None:
            raise ConfigError(f"Too many USB devices: a domain has {MAX_PORTS} USB ports")
        slots.append(UsbSlot(dev, port))
    return slots


def free_port(slots: list[UsbSlot]) -> int | None:
    taken = {s.port for s in slots}
    return next((p for p in range(1, MAX_PORTS + 1) if p not in taken), None)


def parse_usbdevice(text: Any) -> UsbDevice:
    """One device in the syntax above; anything else is a one-line error."""
    word = str(text).strip()
    if word.lower() in EMULATED:
        return UsbDevice(word.lower())
    if m := _BY_ID.fullmatch(word):
        return UsbDevice("host", vendor=int(m.group(1), 16), product=int(m.group(2), 16))
    if m := _BY_PLACE.fullmatch(word):
        bus, addr = int(m.group(1)), int(m.group(2))
        if 1 <= bus <= 255 and 1 <= addr <= 127:  # USB's own limits (0 is no device)
            return UsbDevice("host", bus=bus, addr=addr)
    raise ConfigError(f"Invalid USB device: '{word}' (expected {SYNTAX})")


def devices(value: str | list[str] | None) -> list[UsbDevice]:
    """The devices a ``usbdevice`` value names (one, a list, or none)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    return [parse_usbdevice(v) for v in items]


def as_value(devs: list[UsbDevice]) -> str | list[str] | None:
    """The ``usbdevice`` value of *devs*: one device as its text (Xen 3.4's
    ``(usbdevice tablet)``), several as a list, none as unset."""
    texts = [str(d) for d in devs]
    if not texts:
        return None
    return texts[0] if len(texts) == 1 else texts


def has_controller(usb: int | None, usbdevice: str | list[str] | None) -> bool:
    """``usb=1``, or any ``usbdevice`` (a device implies its controller)."""
    return bool(usb) or bool(devices(usbdevice))


def usb_variable(values: Any) -> int | None:
    """The ``usb`` field: 1 when asked for, else unset (a PV image then prints no
    ``(usb 0)``; a ``usbdevice`` still implies the controller)."""
    value = values.get("usb")
    if value is None or value == "":
        return None
    return 1 if VARS_BY_NAME["usb"].convert(value) else None


def usbdevice_variable(values: Any) -> str | list[str] | None:
    """The ``usbdevice`` field from its xm variable: each device checked, in its
    canonical text; a device named twice is refused (one device, one ID)."""
    devs = devices(_entries(values.get("usbdevice")))
    check_distinct(devs)
    return as_value(devs)


def check_usbdevice(value: Any, cfg: object) -> None:
    """xend's check of a config that came as JSON or SXP."""
    if value is not None and not isinstance(value, (str, list)):
        raise ConfigError(f"Invalid usbdevice: {value!r}")
    check_distinct(devices(value))


def check_distinct(devs: list[UsbDevice]) -> None:
    seen: set[UsbDevice] = set()
    for dev in devs:
        if dev in seen:
            raise ConfigError(f"USB device {dev} is named twice")
        seen.add(dev)


def _entries(value: Any) -> str | list[str] | None:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None if value is None else str(value)
