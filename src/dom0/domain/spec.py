"""From a domain's configuration to what its machine is built from: the one place
where Xen's config meets the backend contract (backends/machine.MachineSpec)."""

from __future__ import annotations

from dom0.backends.machine import Display, MachineSpec, Tpm
from dom0.devices import usb as usb_mod
from dom0.devices.vbd import Vbd
from dom0.devices.vif import Vif
from dom0.domain.settings import DomainSettings
from dom0.errors import ConfigError
from dom0.model import usb
from dom0.model.config import DomainConfig


def machine_spec(cfg: DomainConfig, disks: list[Vbd], nics: list[Vif],
                 settings: DomainSettings | None = None, tpm: Tpm | None = None) -> MachineSpec:
    return MachineSpec(
        name=cfg.name, uuid=cfg.uuid, memory=cfg.memory, maxmem=cfg.max_memory,
        vcpus=cfg.online_vcpus, maxvcpus=cfg.max_vcpus, kernel=cfg.kernel, ramdisk=cfg.ramdisk,
        cmdline=cfg.kernel_cmdline(), disks=tuple(disks), nics=tuple(nics),
        display=display(cfg, settings or DomainSettings()), tpm=tpm,
        usb=usb_devices(cfg))


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


def display(cfg: DomainConfig, settings: DomainSettings) -> Display | None:
    """The first ``vfb``'s screen (Xen gave a PV domain one framebuffer), with
    xend-config's ``vnc-listen`` and ``vncpasswd`` where the config names none."""
    if not cfg.vfbs:
        return None
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
    """The domain's VNC password: its vfb's ``vncpasswd``, else xend's default."""
    if cfg.vfbs and "vncpasswd" in cfg.vfbs[0].options:
        return cfg.vfbs[0].options["vncpasswd"]
    return default or ""
