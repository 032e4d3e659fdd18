"""The HVM part of a domain's config: ``builder='hvm'``'s image variables (spec §2.3,
the rows marked HVM), typed, with their checks and their ``(image (hvm ...))`` keys.

An HVM domain boots firmware, not a kernel file: ``kernel``/``loader`` naming Xen's
hvmloader means "the firmware" (QEMU's SeaBIOS); one naming OVMF, or Xen 4's
``bios='ovmf'``, means UEFI.  Variables that only mattered to Xen's hypervisor or to
its qemu-dm (``device_model``, ``hap``, ``timer_mode``, ``vpt_align``,
``guest_os_type``, ``xen_platform_pci``, the PCI passthrough defaults) are accepted,
kept and printed, and change nothing here (README "HVM domains").
USB (``usb``/``usbdevice``) is not this module's: it lives with the USB feature.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dom0.errors import ConfigError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from dom0.model.sxp import Sxp

#: Xen's firmware path; naming it (or nothing) means QEMU's own BIOS (SeaBIOS)
HVMLOADER = "/usr/lib/xen/boot/hvmloader"
#: the UEFI firmware of Debian's ``ovmf`` package
OVMF_PATH = "/usr/share/ovmf/OVMF.fd"
BIOSES = ("seabios", "ovmf")
#: boot letters: a (and b) floppy, c first disk, d first CD-ROM, n network
BOOT_LETTERS = "abcdn"
#: soundhw names, as QEMU's old -soundhw knew them, to QEMU 7.2's devices
SOUND_DEVICES = {"sb16": "sb16", "es1370": "ES1370", "ac97": "AC97", "hda": "intel-hda",
                 "pcspk": "pcspk", "adlib": "adlib", "gus": "gus", "cs4231a": "cs4231a"}
#: what ``serial`` may say: the domain's console socket (``xm console``) in every case
SERIAL_CONSOLE = ("", "pty", "vc")

#: the top-level screen variables, read through model/preprocess.VFB_VARIABLES
SCREEN_KEYS = ("vnc", "vncdisplay", "vncunused", "vnclisten", "sdl", "display", "xauthority",
               "vncpasswd")


@dataclass
class HvmImage:
    """``(image (hvm ...))``'s own keys, in the order xm 3.4 printed them.  Fields are
    the variables' xm types (ints for the 0/1 ones) so that -n prints as xm did."""

    device_model: str = ""
    pae: int = 1
    boot: str = "c"
    fda: str = ""
    fdb: str = ""
    timer_mode: int = 1
    localtime: int = 0
    serial: str = ""
    stdvga: int = 0
    isa: int = 0
    nographic: int = 0
    soundhw: str = ""
    rtc_timeoffset: int = 0
    monitor: int = 0
    acpi: int = 1
    apic: int = 1
    keymap: str = ""
    hpet: int = 0
    guest_os_type: str = "default"
    hap: int = 1
    viridian: int = 0
    pci_msitranslate: int = 1
    vpt_align: int = 1
    pci_power_mgmt: int = 0
    xen_platform_pci: int = 1
    #: Xen 4's firmware choice (``seabios``/``ovmf``); "" = as kernel/loader says
    bios: str = ""
    #: the top-level vnc/sdl variables (an HVM domain's screen is not a vfb device)
    screen: dict[str, str] = field(default_factory=dict)

    #: the keys of ``(image (hvm ...))`` this part reads back (``xm create -F``)
    SXP_KEYS: ClassVar[frozenset[str]] = frozenset()

    def to_sxp(self, vcpus: int, usb: list[Sxp] | None = None) -> list[Sxp]:
        """The image keys after ``kernel``/``videoram``; vcpus sits after pae as in xm,
        and the USB keys (their own fields, model/usb.py) between apic and keymap."""
        out: list[Sxp] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "boot":
                out.append(["vcpus", str(vcpus)])
            if f.name == "keymap":
                out += usb or []
            if f.name == "rtc_timeoffset":  # xm printed the screen here, its password last
                out += [[k, self.screen[k]] for k in SCREEN_KEYS
                        if k in self.screen and k != "vncpasswd"]
            if f.name == "screen":
                if "vncpasswd" in value:
                    out.append(["vncpasswd", value["vncpasswd"]])
            elif f.name in ("device_model", "bios") and not value:
                continue  # xm filled device_model in from its install; we have none
            else:
                out.append([f.name, str(value)])
        return out

    @classmethod
    def from_sxp_keys(cls, keys: Mapping[str, str]) -> HvmImage:
        """The part from an ``(image (hvm ...))`` form's keys (``xm create -F``)."""
        hvm = cls()
        for f in dataclasses.fields(cls):
            if f.name in keys and f.name != "screen":
                setattr(hvm, f.name, _typed(f.name, keys[f.name], f.type))
        hvm.screen = {k: keys[k] for k in SCREEN_KEYS if k in keys}
        return hvm

    # ---- checks (xend side: a config may come as JSON, not from xm) ----------------

    def check(self) -> None:
        check_boot(self.boot)
        if self.bios and self.bios not in BIOSES:
            raise ConfigError(f"Invalid bios: {self.bios} (seabios or ovmf)")
        if self.serial not in SERIAL_CONSOLE:
            raise ConfigError(f"Invalid serial: {self.serial} (pty: the domain's console, "
                              "which xm console attaches to)")
        for name in self.sound_devices():
            if name not in SOUND_DEVICES:
                raise ConfigError(f"Invalid soundhw: {name} (one of "
                                  f"{', '.join(SOUND_DEVICES)}, or all)")
        if self.isa:
            raise ConfigError("isa=1 is not supported: an ISA-only machine has no PCI bus "
                              "for the disks, NICs and balloon")
        if self.keymap and not self.keymap.replace("-", "").isalpha():
            raise ConfigError(f"Invalid keymap: {self.keymap}")

    def sound_devices(self) -> list[str]:
        names = [s.strip() for s in self.soundhw.split(",") if s.strip()]
        return list(SOUND_DEVICES) if names == ["all"] else names


HvmImage.SXP_KEYS = frozenset(
    [f.name for f in dataclasses.fields(HvmImage)] + list(SCREEN_KEYS) + ["vcpus"])


def check_hvm(value: HvmImage | None, cfg: object) -> None:
    """The config table's check of the HVM part (model/config.py)."""
    if value is not None:
        value.check()


def check_boot(order: str) -> None:
    """Letters of a, b, c, d, n, each once (Xen's ``boot``, QEMU's ``-boot order``)."""
    if not order or any(c not in BOOT_LETTERS for c in order) or len(set(order)) != len(order):
        raise ConfigError(f"Invalid boot order: {order} (letters a: floppy, c: disk, "
                          "d: CD-ROM, n: network, each at most once)")


def firmware(kernel: str, bios: str) -> str:
    """The firmware an HVM domain boots: "" for QEMU's SeaBIOS, else a file path.
    hvmloader (or no kernel) is SeaBIOS; ``bios='ovmf'`` or a loader whose name says
    OVMF is UEFI; any other file is itself the firmware image."""
    if bios == "seabios":
        return ""
    if bios == "ovmf" or (kernel and "ovmf" in os.path.basename(kernel).lower()):
        path = kernel if kernel and os.path.isfile(kernel) else OVMF_PATH
        if not os.path.isfile(path):
            raise ConfigError(f"UEFI firmware {path} not found: install the Debian "
                              "package ovmf")
        return path
    if not kernel or os.path.basename(kernel) == "hvmloader":
        return ""
    if not os.path.isfile(kernel):
        raise ConfigError(f"Firmware (loader) {kernel} does not exist: name "
                          f"{HVMLOADER} for the standard BIOS")
    return kernel


# ---- from xm's variables (model/preprocess.py names this on the config field) ---------

#: the xm variables the HVM part reads (all but ``screen``, which VFB_VARIABLES reads)
HVM_VARIABLES = tuple(f.name for f in dataclasses.fields(HvmImage) if f.name != "screen")
#: PV image variables that mean nothing to an HVM domain (no kernel is loaded)
PV_ONLY = ("ramdisk", "root", "extra", "ip", "bootloader")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(HvmImage) if f.name != "screen"}


def from_variables(values: Mapping[str, Any], screen: dict[str, str]) -> HvmImage | None:
    """The HVM part of a ``builder='hvm'`` config, None for any other builder.  A
    variable that means nothing for the builder is reported on xm's stderr, never
    silently dropped (a PV variable of an HVM domain stays in the config, unused)."""
    given = {k: values[k] for k in HVM_VARIABLES if values.get(k) is not None}
    if values.get("builder") != "hvm":
        for name in given:
            if str(given[name]) != str(_DEFAULTS[name]):
                warn(f"{name} is read for HVM domains only (builder='hvm'): ignored here")
        return None
    for name in PV_ONLY:
        if values.get(name) not in (None, ""):
            warn(f"{name} means nothing to an HVM domain (it boots firmware, not a kernel): "
                 "ignored")
    hvm = HvmImage(screen=screen)
    for f in dataclasses.fields(HvmImage):
        if f.name in given:
            setattr(hvm, f.name, _typed(f.name, given[f.name], f.type))
    return hvm


def warn(text: str) -> None:
    print(f"Warning: {text}", file=sys.stderr)


def _typed(name: str, value: Any, tp: Any) -> Any:
    if tp in (int, "int"):
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"Invalid value for {name}: {value}") from None
    return str(value)
