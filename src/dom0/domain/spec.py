"""From a domain's configuration to what its machine is built from: the one place
where Xen's config meets the backend contract (backends/machine.MachineSpec)."""

from __future__ import annotations

import dataclasses
import os

from dom0.backends.machine import Display, MachineSpec, Tpm
from dom0.backends.platform import Platform
from dom0.devices import usb as usb_mod
from dom0.devices.vbd import Vbd
from dom0.devices.vif import Vif
from dom0.domain.settings import DomainSettings
from dom0.errors import ConfigError
from dom0.model import hvm as hvm_mod
from dom0.model import usb
from dom0.model.config import DomainConfig, VfbSpec
from dom0.model.hvm import HvmImage


def machine_spec(cfg: DomainConfig, disks: list[Vbd], nics: list[Vif],
                 settings: DomainSettings | None = None, tpm: Tpm | None = None) -> MachineSpec:
    hvm = cfg.hvm or HvmImage() if cfg.builder == "hvm" else None
    if hvm is not None:
        disks = [hvm_disk(v) for v in disks]
    return MachineSpec(
        name=cfg.name, uuid=cfg.uuid, memory=cfg.memory, maxmem=cfg.max_memory,
        vcpus=cfg.online_vcpus, maxvcpus=cfg.max_vcpus, kernel=cfg.kernel, ramdisk=cfg.ramdisk,
        cmdline=cfg.kernel_cmdline(), disks=tuple(disks), nics=tuple(nics),
        display=display(cfg, settings or DomainSettings()), tpm=tpm,
        usb=usb_devices(cfg),
        platform=None if hvm is None else platform(cfg.kernel, hvm))


def usb_devices(cfg: DomainConfig) -> tuple[usb.UsbSlot, ...] | None:
    """The USB devices a machine starts with, each at its port (None: no controller);
    a host's device must be plugged in now, at every launch (create, restore,
    incoming migration)."""
    if not usb.has_controller(cfg.usb, cfg.usbdevice):
        return None
    slots = usb.assign_ports(usb.devices(cfg.usbdevice), cfg.usb_ports)
    for slot in slots:
        usb_mod.check_host(slot.device)
    return tuple(slots)


# ---- HVM (model/hvm.py) --------------------------------------------------------------


def platform(kernel: str, hvm: HvmImage) -> Platform:
    """The machine an HVM config describes.  Checked again here: a config may come
    from the API or the store, not through xm."""
    hvm.check()
    for image in (hvm.fda, hvm.fdb):
        if image and not os.path.isfile(image):
            raise ConfigError(f"Floppy image does not exist: {image}")
    return Platform(
        firmware=hvm_mod.firmware(kernel, hvm.bios), boot_order=hvm.boot,
        acpi=bool(hvm.acpi), apic=bool(hvm.apic), pae=bool(hvm.pae), hpet=bool(hvm.hpet),
        localtime=bool(hvm.localtime), rtc_offset=hvm.rtc_timeoffset,
        vga="none" if hvm.nographic else "std" if hvm.stdvga else "cirrus",
        keymap=hvm.keymap,
        sound=tuple(hvm_mod.SOUND_DEVICES[n] for n in hvm.sound_devices()),
        monitor=bool(hvm.monitor), viridian=bool(hvm.viridian), floppies=(hvm.fda, hvm.fdb))


def hvm_disk(vbd: Vbd) -> Vbd:
    """On an HVM machine ``hda``..``hdd`` are IDE and ``sda``.. SCSI disks with or
    without ``ioemu:`` (qemu-dm emulated every disk); ``xvda``.. stay virtio."""
    if vbd.dev.startswith(("hd", "sd")) and not vbd.emulated:
        return dataclasses.replace(vbd, emulated=True)
    return vbd


def display(cfg: DomainConfig, settings: DomainSettings) -> Display | None:
    """The first ``vfb``'s screen (Xen gave a PV domain one framebuffer), or an HVM
    domain's top-level vnc/sdl lines, with xend-config's ``vnc-listen`` and
    ``vncpasswd`` where the config names none."""
    if cfg.hvm is not None:
        opts = cfg.hvm.screen
        vfb = VfbSpec(opts)
        if cfg.hvm.nographic or not (vfb.vnc or vfb.sdl):
            return None
    elif not cfg.vfbs:
        return None
    else:
        vfb = cfg.vfbs[0]
        opts = vfb.options
    number = opts.get("vncdisplay", "0") or "0"
    if not number.isdigit():
        raise ConfigError(f"Invalid vncdisplay: {number}")
    return Display(
        vnc=vfb.vnc, vnc_listen=opts.get("vnclisten") or settings.vnc_listen,
        vnc_display=int(number), vnc_unused=vfb.flag("vncunused") if "vncunused" in opts
        else True, vnc_password=vnc_password(cfg, settings.vncpasswd),
        sdl=vfb.sdl, x_display=opts.get("display"), xauthority=opts.get("xauthority"))


def vnc_password(cfg: DomainConfig, default: str | None) -> str:
    """The domain's VNC password: its vfb's (or HVM screen's) ``vncpasswd``, else
    xend's default."""
    opts = cfg.hvm.screen if cfg.hvm is not None else cfg.vfbs[0].options if cfg.vfbs else {}
    if "vncpasswd" in opts:
        return opts["vncpasswd"]
    return default or ""
