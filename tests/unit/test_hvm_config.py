"""HVM domains: the config's HVM part (model/hvm.py) from xm variables, its
``(image (hvm ...))`` form both ways and its JSON, its checks and warnings, and the
QEMU command line of an HVM machine (backends/qemu/hvmargv.py)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from dom0.backends.machine import MachineSpec
from dom0.backends.platform import Platform
from dom0.backends.qemu.argv import build_argv
from dom0.backends.qemu.hvmargv import hvm_argv, rtc_base
from dom0.devices import vbd as vbd_mod
from dom0.domain.settings import DomainSettings
from dom0.domain.spec import machine_spec
from dom0.errors import ConfigError
from dom0.model import sxp
from dom0.model.config import DomainConfig
from dom0.model.hvm import OVMF_PATH, HvmImage, firmware
from dom0.store.layout import DomainPaths, Layout

HVMLOADER = "/usr/lib/xen/boot/hvmloader"


def cfg(**values: object) -> DomainConfig:
    return DomainConfig.from_variables({"name": "h", "builder": "hvm", "memory": 96,
                                        "vncunused": 1, **values})


def paths() -> DomainPaths:
    layout = Layout(state_dir="/s", domains_dir="/d", run_dir="/r", log_dir="/l",
                    dump_dir="/x")
    return layout.domain("inst-1")


def spec(c: DomainConfig, disks: list[str] = ()) -> MachineSpec:  # type: ignore[assignment]
    c.uuid = "6f1c2a3e-9d4b-4c1e-8f00-0123456789ab"
    vbds = [vbd_mod.parse(vbd_mod.DiskSpec(*d.split(",")), check_exists=False) for d in disks]
    return machine_spec(c, vbds, [], DomainSettings())


def option(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


# ---- config ---------------------------------------------------------------------------


def test_create_n_prints_the_hvm_image_as_xm_did() -> None:
    c = cfg(kernel=HVMLOADER, serial="pty", vnc=1, boot="dc", vncpasswd="")
    image = sxp.child_value(c.to_sxp(), "image")
    assert image[0] == "hvm"
    keys = [k[0] for k in image[1:]]
    # spec §2.5's xmexample.hvm, less the keys of features not built (pci, cpuid, opengl)
    # and of USB (model/usb.py) when unset: usb and usbdevice have their place when set
    assert keys == [
        "kernel", "videoram", "pae", "vcpus", "boot", "fda", "fdb", "timer_mode", "localtime",
        "serial", "stdvga", "isa", "nographic", "soundhw", "vnc", "vncunused",
        "rtc_timeoffset", "monitor", "acpi", "apic", "keymap", "hpet",
        "guest_os_type", "hap",
        "viridian", "pci_msitranslate", "vpt_align", "pci_power_mgmt", "xen_platform_pci",
        "vncpasswd"]
    assert ["kernel", HVMLOADER] in image and ["boot", "dc"] in image
    assert ["serial", "pty"] in image and ["vnc", "1"] in image and ["fda", ""] in image
    assert "(fda )" in sxp.pretty(c.to_sxp())
    with_usb = cfg(kernel=HVMLOADER, usb=1, usbdevice="tablet")
    image = sxp.child_value(with_usb.to_sxp(), "image")
    assert image[image.index(["apic", "1"]) + 1:][:3] == [
        ["usb", "1"], ["usbdevice", "tablet"], ["keymap", ""]]
    back = DomainConfig.from_sxp(with_usb.to_sxp())  # read back as it was (xm create -F)
    assert (back.usb, back.usbdevice, back.hvm) == (1, "tablet", with_usb.hvm)


def test_loader_or_no_kernel_names_the_firmware_and_no_kernel_is_demanded() -> None:
    assert cfg().kernel == HVMLOADER
    assert cfg(loader="/usr/share/ovmf/OVMF.fd", kernel="/k").kernel == "/usr/share/ovmf/OVMF.fd"
    cfg().validate()  # a linux domain would say "kernel must be set"
    with pytest.raises(ConfigError, match="kernel must be set for a linux domain"):
        DomainConfig.from_variables({"name": "p"}).validate()


def test_hvm_config_round_trips_through_sxp_and_json() -> None:
    c = cfg(boot="cd", acpi=0, stdvga=1, soundhw="sb16,es1370", vnc=1, vncdisplay="3",
            rtc_timeoffset=3600, localtime=1, keymap="de", viridian=1)
    back = DomainConfig.from_sxp(sxp.parse_one(sxp.to_string(c.to_sxp())))
    assert back.builder == "hvm" and back.hvm == c.hvm and back.kernel == c.kernel
    assert DomainConfig.from_dict(c.to_dict()) == c
    assert isinstance(DomainConfig.from_dict(c.to_dict()).hvm, HvmImage)


def test_json_of_a_wrong_type_in_the_hvm_part_is_named() -> None:
    data = cfg().to_dict()
    data["hvm"]["acpi"] = "yes"
    with pytest.raises(ConfigError, match=r"^Invalid type for hvm\.acpi: expected integer"):
        DomainConfig.from_dict(data)
    data["hvm"] = {"colour": 1}
    with pytest.raises(ConfigError, match=r"^Unknown configuration keys: hvm\.colour$"):
        DomainConfig.from_dict(data)


@pytest.mark.parametrize(("values", "error"), [
    ({"boot": "x"}, "Invalid boot order: x"),
    ({"boot": "cc"}, "Invalid boot order: cc"),
    ({"boot": ""}, "Invalid boot order: "),
    ({"soundhw": "sb16,kazoo"}, "Invalid soundhw: kazoo"),
    ({"serial": "/dev/ttyS9"}, "Invalid serial: /dev/ttyS9"),
    ({"bios": "coreboot"}, "Invalid bios: coreboot"),
    ({"isa": 1}, "isa=1 is not supported"),
    ({"keymap": "de;rm"}, "Invalid keymap: de;rm"),
])
def test_bad_hvm_values_are_config_errors(values: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**values).validate()
    assert str(info.value).startswith(error)


@pytest.mark.parametrize("order", ["c", "d", "dc", "cd", "a", "n", "cdn", "acdn"])
def test_boot_orders_are_accepted(order: str) -> None:
    cfg(boot=order).validate()


def test_meaningless_variables_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    c = cfg(root="/dev/sda1", extra="quiet")
    assert capsys.readouterr().err.splitlines() == [
        "Warning: root means nothing to an HVM domain (it boots firmware, not a kernel): "
        "ignored",
        "Warning: extra means nothing to an HVM domain (it boots firmware, not a kernel): "
        "ignored"]
    assert c.hvm is not None
    DomainConfig.from_variables({"name": "p", "kernel": "/k", "loader": "/x", "acpi": 0})
    assert capsys.readouterr().err.splitlines() == [
        "Warning: loader is read for HVM domains only (builder='hvm'): ignored here",
        "Warning: acpi is read for HVM domains only (builder='hvm'): ignored here"]


def test_an_unknown_variable_in_a_config_file_is_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dom0.cli.configfile import parse_create_args, resolve_variables

    path = tmp_path / "h.cfg"
    path.write_text("builder = 'hvm'\nbot = 'd'\n_private = 1\n")
    _, values = resolve_variables(parse_create_args([str(path)]))
    assert "bot" not in values
    assert capsys.readouterr().err == (
        "Warning: bot is not a config variable (xm create --help_config lists them): "
        "ignored\n")


def test_firmware_from_kernel_loader_and_bios(tmp_path: Path) -> None:
    assert firmware(HVMLOADER, "") == ""
    assert firmware("", "") == ""
    assert firmware(HVMLOADER, "seabios") == ""
    own = tmp_path / "my-bios.bin"
    own.write_bytes(b"\0")
    assert firmware(str(own), "") == str(own)
    with pytest.raises(ConfigError, match="Firmware \\(loader\\) /no/such does not exist"):
        firmware("/no/such", "")
    if os.path.isfile(OVMF_PATH):
        assert firmware(HVMLOADER, "ovmf") == OVMF_PATH
        assert firmware("/usr/lib/xen/boot/ovmf.bin", "") == OVMF_PATH
    else:
        with pytest.raises(ConfigError, match="install the Debian package ovmf"):
            firmware(HVMLOADER, "ovmf")


# ---- machine and argv ---------------------------------------------------------------


def test_hvm_argv_golden_pieces() -> None:
    c = cfg(boot="dc", serial="pty", vnc=1, vncdisplay="2", vncunused=0, keymap="de",
            soundhw="sb16,hda", acpi=0, hpet=1, apic=0, pae=0, viridian=1, stdvga=1,
            monitor=1)
    argv = build_argv(spec(c, ["file:/d.img,hda,w", ",hdc:cdrom,r", "file:/x.img,xvdb,w"]),
                      paths())
    assert "-kernel" not in argv and "-append" not in argv and "-initrd" not in argv
    assert option(argv, "-machine") == "pc,acpi=off"
    assert option(argv, "-cpu") == "qemu64,-apic,-pae,hv-relaxed,hv-vapic," \
        "hv-spinlocks=0x1fff,hv-time"
    assert option(argv, "-boot") == "order=dc"
    assert option(argv, "-rtc") == "base=utc"
    assert option(argv, "-vga") == "std"
    assert option(argv, "-vnc") == "127.0.0.1:2"
    assert option(argv, "-k") == "de"
    assert option(argv, "-audiodev") == "none,id=snd0"
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert "sb16,audiodev=snd0" in devices
    assert "intel-hda" in devices and "hda-duplex,audiodev=snd0" in devices
    # hda without ioemu: is IDE on an HVM machine; xvdb stays virtio
    assert "ide-hd,id=vbd-dev768,drive=vbd768,bus=ide.0,unit=0,serial=hda" in devices
    assert "ide-cd,id=vbd-dev5632,bus=ide.1,unit=0,serial=hdc" in devices
    assert any(d.startswith("virtio-blk-pci,id=vbd-dev51728") for d in devices)
    assert "chardev=hmp0,mode=readline" in argv
    # the serial console is the same socket as a PV domain's: xm console works
    assert option(argv, "-serial") == "chardev:console0"


def test_hvm_defaults_cirrus_seabios_no_screen() -> None:
    argv = build_argv(spec(cfg()), paths())
    assert option(argv, "-machine") == "pc,hpet=off"
    assert option(argv, "-cpu") == "qemu64"
    assert option(argv, "-vga") == "cirrus" and option(argv, "-display") == "none"
    assert "-bios" not in argv and "-vnc" not in argv and "-audiodev" not in argv
    assert option(argv, "-boot") == "order=c"


def test_nographic_has_no_card_and_ovmf_is_the_bios() -> None:
    p = Platform(firmware="/usr/share/ovmf/OVMF.fd", vga="none")
    m = MachineSpec(name="h", uuid="u", memory=96, maxmem=96, vcpus=1, kernel="",
                    platform=p)
    argv = build_argv(m, paths())
    assert option(argv, "-vga") == "none" and option(argv, "-display") == "none"
    assert option(argv, "-bios") == "/usr/share/ovmf/OVMF.fd"


def test_floppies_and_rtc_offset() -> None:
    p = Platform(floppies=("/f.img", ""), rtc_offset=3600, localtime=True)
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    argv = hvm_argv(p, paths(), now)
    assert option(argv, "-drive") == "if=floppy,index=0,format=raw,file=/f.img"
    assert option(argv, "-rtc") == "base=2026-01-02T04:04:05"
    assert rtc_base(Platform(localtime=True)) == "localtime"


def test_a_missing_floppy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^Floppy image does not exist: /no/fd.img$"):
        spec(cfg(fda="/no/fd.img"))


def test_pv_argv_is_unchanged_by_the_platform() -> None:
    c = DomainConfig(name="p", uuid="u", kernel="/k")
    argv = build_argv(machine_spec(c, [], []), paths())
    assert option(argv, "-machine") == "pc" and option(argv, "-kernel") == "/k"
    assert "-boot" not in argv and "-rtc" not in argv


def test_list_long_of_an_hvm_domain_shows_its_vnc_and_hides_the_password() -> None:
    from dom0.cli import format as fmt

    c = cfg(vnc=1, vncpasswd="secret")
    info = {"name": "h", "uuid": "u", "domid": 3, "vcpus": 1, "memory": 96,
            "config": c.to_dict(), "vnc": "127.0.0.1:5902"}
    forms = fmt.domain_sxp(info)
    assert ["device", ["vfb", ["vnc", "1"], ["location", "127.0.0.1:5902"]]] in forms
    assert "secret" not in fmt.list_long([info])
    assert sxp.child_value(forms, "image")[0] == "hvm"


def test_hvm_screen_is_the_display_with_xend_defaults() -> None:
    from dom0.domain.spec import display

    settings = DomainSettings(vnc_listen="127.0.0.2", vncpasswd="xendpw")
    d = display(cfg(vnc=1, vncdisplay="4"), settings)
    assert d is not None and d.vnc and d.vnc_display == 4 and d.vnc_listen == "127.0.0.2"
    assert d.vnc_password == "xendpw"
    # vncpasswd='' is "no password" (README), not "unset"
    none = display(cfg(vnc=1, vncpasswd=""), settings)
    assert none is not None and none.vnc_password == ""
    assert display(cfg(vnc=1, nographic=1), settings) is None
    assert display(cfg(), settings) is None
    assert cfg(vnc=1).vfbs == []  # no PV framebuffer device: the screen is the VGA card
