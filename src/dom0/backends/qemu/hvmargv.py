"""The QEMU arguments of an HVM machine (``MachineSpec.platform``): firmware and boot
order instead of ``-kernel``, the chipset's options, the RTC, the graphics card,
sound, floppies, Hyper-V flags and a human monitor.  Pure functions, like argv.py.

QEMU 7.2 spellings: ``-machine pc,acpi=off,hpet=off``; ``-audiodev none`` (the guest
gets its sound card, the host plays nothing: xend has no sound server to give it);
Hyper-V enlightenments as ``hv-*`` CPU flags, which TCG accepts (relaxed timing,
the virtual APIC page and spinlock hints help a Windows guest under TCG as under KVM).
"""

from __future__ import annotations

import datetime

from dom0.backends.platform import Platform
from dom0.store.layout import DomainPaths

_HYPERV = "hv-relaxed,hv-vapic,hv-spinlocks=0x1fff,hv-time"


def machine_option(platform: Platform | None) -> str:
    """``-machine``'s value."""
    if platform is None:
        return "pc"
    opts = ["pc"]
    if not platform.acpi:
        opts.append("acpi=off")
    if not platform.hpet:
        opts.append("hpet=off")
    return ",".join(opts)


def cpu_option(model: str, platform: Platform | None) -> str:
    """``-cpu``'s value: the model, less APIC/PAE when asked, plus Hyper-V flags."""
    if platform is None:
        return model
    flags = [model]
    if not platform.apic:
        flags.append("-apic")
    if not platform.pae:
        flags.append("-pae")
    if platform.viridian:
        flags.append(_HYPERV)
    return ",".join(flags)


def rtc_base(platform: Platform, now: datetime.datetime | None = None) -> str:
    """``-rtc base=``: utc/localtime, or the moment the offset puts the clock at."""
    base = "localtime" if platform.localtime else "utc"
    if not platform.rtc_offset:
        return base
    if now is None:
        now = datetime.datetime.now() if platform.localtime else \
            datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    start = now + datetime.timedelta(seconds=platform.rtc_offset)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def hvm_argv(platform: Platform, paths: DomainPaths,
             now: datetime.datetime | None = None) -> list[str]:
    """What replaces ``-kernel``/``-initrd``/``-append`` for HVM (the screen is
    argv.screen_argv's)."""
    argv: list[str] = []
    if platform.firmware:
        argv += ["-bios", platform.firmware]
    argv += ["-boot", f"order={platform.boot_order}"]
    argv += ["-rtc", f"base={rtc_base(platform, now)}"]
    if platform.sound:
        argv += ["-audiodev", "none,id=snd0"]
    for model in platform.sound:
        if model == "pcspk":  # built into the board: it is told its audio backend
            argv += ["-machine", "pcspk-audiodev=snd0"]
        elif model == "intel-hda":  # the controller, and a codec that plays
            argv += ["-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0"]
        else:
            argv += ["-device", f"{model},audiodev=snd0"]
    for index, image in enumerate(platform.floppies):
        if image:
            argv += ["-drive", f"if=floppy,index={index},format=raw,file={image}"]
    if platform.monitor:
        argv += ["-chardev", f"socket,id=hmp0,path={monitor_socket(paths)},server=on,wait=off",
                 "-mon", "chardev=hmp0,mode=readline"]
    return argv


def monitor_socket(paths: DomainPaths) -> str:
    """Where ``monitor=1`` puts QEMU's human monitor (Xen showed it on the VNC screen)."""
    return f"{paths.run_dir}/monitor.sock"
