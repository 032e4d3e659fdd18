"""USB: the ``usb``/``usbdevice`` grammar (model/usb.py), its SXP, QEMU's arguments for
it (devices/usb.py: command line and QMP), the host probe, and ``xm usb-add``/
``usb-del`` in the domain layer on FakeMachine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_argv import config, paths
from test_lifecycle_policy import World, run

from dom0.backends.qemu.argv import build_argv
from dom0.cli.configfile import build_config
from dom0.devices import usb as usb_mod
from dom0.errors import ConfigError, DeviceError, OptionError, VmError
from dom0.model import sxp
from dom0.model.config import DomainConfig
from dom0.model.devices import VfbSpec
from dom0.model.usb import UsbDevice, UsbSlot, assign_ports, parse_usbdevice

# ---- the grammar -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "device", "canonical"), [
    ("tablet", UsbDevice("tablet"), "tablet"),
    ("Mouse", UsbDevice("mouse"), "mouse"),
    ("keyboard", UsbDevice("keyboard"), "keyboard"),
    ("host:046D:c52b", UsbDevice("host", vendor=0x046D, product=0xC52B), "host:046d:c52b"),
    ("host:1d6b:2", UsbDevice("host", vendor=0x1D6B, product=2), "host:1d6b:0002"),
    ("host:3.12", UsbDevice("host", bus=3, addr=12), "host:3.12"),
])
def test_usbdevice_grammar(text: str, device: UsbDevice, canonical: str) -> None:
    assert parse_usbdevice(text) == device
    assert str(device) == canonical


@pytest.mark.parametrize("text", ["", "disk", "host:", "host:046d", "host:12345:1",
                                  "host:0.1", "host:1.0", "host:1.128", "host:1.2.3",
                                  "host:zz:01", "tablet,mouse"])
def test_bad_usbdevice_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_usbdevice(text)
    assert str(err.value) == (f"Invalid USB device: '{text}' (expected tablet, mouse, keyboard, "
                              "host:<vendor>:<product> or host:<bus>.<addr>)")


def test_the_two_host_forms_get_different_device_ids() -> None:
    by_id = parse_usbdevice("host:1000:1000")
    by_place = parse_usbdevice("host:100.100")
    assert by_id.device_id == "usb-host-1000-1000"
    assert by_place.device_id == "usb-host-100.100"
    assert parse_usbdevice("tablet").device_id == "usb-tablet"


# ---- config variables and SXP ------------------------------------------------------


def test_usb_variables_print_in_the_image() -> None:
    cfg = build_config({"name": "u", "kernel": "/k", "usb": 1, "usbdevice": "Tablet"})
    assert (cfg.usb, cfg.usbdevice) == (1, "tablet")
    image = cfg.image_sxp()
    assert ["usb", "1"] in image and ["usbdevice", "tablet"] in image
    assert image[-1][0] == "args" or all(c[0] != "args" for c in image[1:])


def test_usbdevice_list_and_round_trips() -> None:
    cfg = build_config({"name": "u", "kernel": "/k",
                        "usbdevice": ["tablet", "host:46d:C52B", "host:1.4"]})
    assert cfg.usb is None and cfg.usbdevice == ["tablet", "host:046d:c52b", "host:1.4"]
    assert ["usbdevice", ["tablet", "host:046d:c52b", "host:1.4"]] in cfg.image_sxp()
    back = DomainConfig.from_sxp(sxp.parse_one(sxp.pretty(cfg.to_sxp())))  # xm create -F
    assert (back.usb, back.usbdevice) == (cfg.usb, cfg.usbdevice)
    one = DomainConfig.from_sxp(DomainConfig(name="o", kernel="/k", usb=1,
                                             usbdevice="mouse").to_sxp())
    assert (one.usb, one.usbdevice) == (1, "mouse")
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_no_usb_prints_nothing() -> None:
    cfg = build_config({"name": "u", "kernel": "/k", "usb": 0, "usbdevice": ""})
    assert (cfg.usb, cfg.usbdevice) == (None, None)
    assert not [c for c in cfg.image_sxp()[1:] if c[0] in ("usb", "usbdevice")]


def test_bad_usb_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="Invalid USB device: 'joystick'"):
        build_config({"name": "u", "kernel": "/k", "usbdevice": "joystick"})
    with pytest.raises(ConfigError, match="USB device tablet is named twice"):
        build_config({"name": "u", "kernel": "/k", "usbdevice": ["tablet", "TABLET"]})
    with pytest.raises(OptionError, match="Invalid value:maybe"):
        build_config({"name": "u", "kernel": "/k", "usb": "maybe"})
    with pytest.raises(ConfigError, match="Invalid USB device"):  # xend's own check
        DomainConfig.from_dict({"name": "u", "kernel": "/k", "usbdevice": ["host:x"]}).validate()


def test_a_vfb_comes_with_its_virtual_keyboard() -> None:
    cfg = DomainConfig(name="v", kernel="/k", vfbs=[VfbSpec({"vnc": "1", "vncdisplay": "3"})])
    devices = cfg.device_sxp()
    assert devices == [["device", ["vkbd"]],
                       ["device", ["vfb", ["vnc", "1"], ["vncdisplay", "3"]]]]
    # and reads back as the one vfb it is
    assert DomainConfig.from_sxp(cfg.to_sxp()).vfbs == cfg.vfbs
    assert ["device", ["vkbd"]] not in DomainConfig(name="n", kernel="/k").device_sxp()


# ---- QEMU's arguments ----------------------------------------------------------------


def test_argv_has_no_usb_unless_asked() -> None:
    assert not [a for a in build_argv(config(), paths()) if "usb" in a or "xhci" in a]


def test_usbdevice_implies_the_controller() -> None:
    assert config(usbdevice="tablet").usb == (UsbSlot(UsbDevice("tablet"), 1),)
    assert config(usb=1).usb == () and config().usb is None


def test_usb_1_gives_an_empty_xhci_controller() -> None:
    argv = build_argv(config(usb=1), paths())
    i = argv.index("qemu-xhci,id=usb,p2=8,p3=8")
    assert argv[i - 1] == "-device"
    assert not [a for a in argv if a.startswith("usb-")]


def test_usbdevice_implies_the_controller_and_plugs_each_device() -> None:
    # the spec as the domain layer resolves it (which also probes the host: see below)
    devs = [parse_usbdevice(d) for d in ("tablet", "keyboard", "host:046d:c52b", "host:2.7")]
    slots = tuple(assign_ports(devs, {"keyboard": 3}))
    argv = build_argv(dataclasses.replace(config(), usb=slots), paths())
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    usb = devices[devices.index("qemu-xhci,id=usb,p2=8,p3=8"):]
    assert usb == [
        "qemu-xhci,id=usb,p2=8,p3=8",
        "usb-tablet,id=usb-tablet,bus=usb.0,port=1",
        "usb-kbd,id=usb-keyboard,bus=usb.0,port=3",
        "usb-host,id=usb-host-046d-c52b,bus=usb.0,port=2,vendorid=0x046d,productid=0xc52b",
        "usb-host,id=usb-host-2.7,bus=usb.0,port=4,hostbus=2,hostaddr=7",
    ]


def test_ports_are_kept_and_bounded() -> None:
    devs = [parse_usbdevice(d) for d in ("tablet", "mouse")]
    assert assign_ports(devs, {}) == [UsbSlot(devs[0], 1), UsbSlot(devs[1], 2)]
    assert assign_ports(devs, {"mouse": 1}) == [UsbSlot(devs[0], 2), UsbSlot(devs[1], 1)]
    many = [parse_usbdevice(f"host:1.{n}") for n in range(1, 10)]
    with pytest.raises(ConfigError, match="^Too many USB devices: a domain has 8 USB ports$"):
        assign_ports(many, {})


def test_qmp_device_add_arguments() -> None:
    assert usb_mod.device(UsbSlot(parse_usbdevice("mouse"), 2)) == {
        "driver": "usb-mouse", "id": "usb-mouse", "bus": "usb.0", "port": "2"}
    assert usb_mod.device(UsbSlot(parse_usbdevice("host:046d:c52b"), 1)) == {
        "driver": "usb-host", "id": "usb-host-046d-c52b", "bus": "usb.0", "port": "1",
        "vendorid": 0x046D, "productid": 0xC52B}
    assert usb_mod.device(UsbSlot(parse_usbdevice("host:1.4"), 8)) == {
        "driver": "usb-host", "id": "usb-host-1.4", "bus": "usb.0", "port": "8",
        "hostbus": 1, "hostaddr": 4}


# ---- the host's devices ----------------------------------------------------------------


def fake_sysfs(root: Path) -> str:
    """A /sys/bus/usb/devices as Linux lays it out: devices and their interfaces."""
    dev = root / "1-4"
    dev.mkdir(parents=True)
    for name, value in (("idVendor", "046d"), ("idProduct", "c52b"), ("busnum", "1"),
                        ("devnum", "5")):
        (dev / name).write_text(value + "\n")
    (root / "1-4:1.0").mkdir()  # an interface: no IDs of its own
    return str(root)


def test_host_device_found_by_id_or_place(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path / "devices")
    usb_mod.check_host(parse_usbdevice("host:046d:c52b"), sysfs)
    usb_mod.check_host(parse_usbdevice("host:1.5"), sysfs)
    usb_mod.check_host(parse_usbdevice("tablet"), "/nonexistent")  # emulated: no probe
    with pytest.raises(DeviceError, match=r"^USB device host:046d:c52c not found on this host$"):
        usb_mod.check_host(parse_usbdevice("host:046d:c52c"), sysfs)
    with pytest.raises(DeviceError, match=r"^USB device host:1.4 not found on this host$"):
        usb_mod.check_host(parse_usbdevice("host:1.4"), sysfs)


def test_a_host_without_usb_says_so(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"^USB device host:1.4 not found: this host has no "
                                          r"USB \(.*/none is missing\)$"):
        usb_mod.check_host(parse_usbdevice("host:1.4"), str(tmp_path / "none"))


# ---- usb-add / usb-del in the domain layer ---------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@run
async def test_usb_add_and_del_plug_and_keep_the_config(world: World) -> None:
    dom = await world.manager.create(world.config(usbdevice="tablet"))
    machine = world.machine(dom)
    tablet, mouse, kbd = UsbDevice("tablet"), UsbDevice("mouse"), UsbDevice("keyboard")
    assert machine.usb == [UsbSlot(tablet, 1)]
    await world.manager.usb_add("guest", "Mouse")
    assert machine.usb == [UsbSlot(tablet, 1), UsbSlot(mouse, 2)]
    assert dom.config.usbdevice == ["tablet", "mouse"] and dom.config.usb == 1
    await world.manager.usb_del("guest", "tablet")
    assert dom.config.usb_ports == {"mouse": 2}  # it keeps its port: see the restore below
    await world.manager.usb_add("guest", "keyboard")  # the lowest free port
    assert machine.usb == [UsbSlot(mouse, 2), UsbSlot(kbd, 1)]
    # what the store keeps (and a save file, a migration) builds the same machine
    stored = DomainConfig.from_dict(world.records()[0]["config"])
    assert (stored.usb, stored.usbdevice) == (1, ["mouse", "keyboard"])
    await world.manager.save("guest", str(world.tmp / "g.save"), False)
    dom = await world.manager.restore(str(world.tmp / "g.save"), False)
    assert world.machine(dom).usb == [UsbSlot(mouse, 2), UsbSlot(kbd, 1)]
    await world.manager.usb_del("guest", "mouse")
    await world.manager.usb_del("guest", "keyboard")
    assert world.machine(dom).usb == [] and dom.config.usbdevice is None
    assert dom.config.usb == 1  # the controller stays: a restore builds the same machine


@run
async def test_usb_errors(world: World) -> None:
    await world.manager.create(world.config(usb=1))
    await world.manager.usb_add("guest", "tablet")
    with pytest.raises(DeviceError, match=r"^USB device tablet is already attached to domain "
                                          r"guest$"):
        await world.manager.usb_add("guest", "tablet")
    with pytest.raises(DeviceError, match=r"^USB device mouse is not attached to domain guest$"):
        await world.manager.usb_del("guest", "mouse")
    with pytest.raises(DeviceError, match=r"^Invalid USB device: 'joystick'"):
        await world.manager.usb_add("guest", "joystick")
    await world.manager.create(world.config(name="plain"))
    with pytest.raises(DeviceError, match=r"^Domain plain has no USB controller: create it "
                                          r"with usb=1$"):
        await world.manager.usb_add("plain", "tablet")
    await world.manager.new(world.config(name="idle", usb=1))
    with pytest.raises(VmError, match=r"^Domain 'idle' is not started$"):
        await world.manager.usb_add("idle", "tablet")
    with pytest.raises(VmError, match="privileged domain 0"):
        await world.manager.usb_add("0", "tablet")
