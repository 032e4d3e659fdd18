"""An HVM machine's platform, resolved: what ``MachineSpec.platform`` holds when the
guest boots firmware from its disks instead of a kernel file (Xen's HVM domains).
Nothing of Xen's syntax is left here: model/hvm.py read that, domain/spec.py
resolved it, backends/qemu/hvmargv.py turns it into QEMU arguments."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    #: the firmware image; "" = QEMU's own BIOS (SeaBIOS)
    firmware: str = ""
    #: boot devices in order: a floppy, c disk, d CD-ROM, n network
    boot_order: str = "c"
    acpi: bool = True
    apic: bool = True
    pae: bool = True
    hpet: bool = False
    #: the RTC starts in local time rather than UTC
    localtime: bool = False
    #: seconds the RTC is ahead of (host) time
    rtc_offset: int = 0
    #: the emulated graphics card: ``std``, ``cirrus``, or ``none`` (nographic)
    vga: str = "cirrus"
    #: the VNC server's keyboard layout ("" = QEMU's default)
    keymap: str = ""
    #: QEMU sound device models (none: no audio backend at all)
    sound: tuple[str, ...] = ()
    #: QEMU's human monitor on a socket of the domain's run directory
    monitor: bool = False
    #: Hyper-V enlightenments (Xen's viridian)
    viridian: bool = False
    #: floppy images by drive (A:, B:); "" = empty drive
    floppies: tuple[str, ...] = ()
