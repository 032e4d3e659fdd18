"""USB on a real guest, seen from inside (``/sys/bus/usb/devices``): the config's
tablet, a mouse plugged and unplugged with ``xm usb-add``/``usb-del``, the plugged
device still there after save and restore, and a host device this host lacks (it
has no USB at all) refused in one line while the guest runs on; hot-plugged
devices in a live migration's new QEMU."""

from __future__ import annotations

import time
from typing import Any

from conftest import Host
from guestconsole import GuestConsole

#: what QEMU's emulated devices call themselves (their ``product`` string)
TABLET, MOUSE, KEYBOARD = "QEMU USB Tablet", "QEMU USB Mouse", "QEMU USB Keyboard"


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def usb_products(con: GuestConsole) -> list[str]:
    """The guest's USB devices by product name, as its kernel enumerated them."""
    out = con.run("cat /sys/bus/usb/devices/*/product 2>/dev/null")
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def wait_products(con: GuestConsole, present: set[str], absent: set[str] = frozenset(),
                  timeout: float = 20.0) -> list[str]:
    """Until the guest's kernel has (or no longer has) the devices: USB enumeration runs
    in the guest after QEMU plugged the device."""
    deadline = time.monotonic() + timeout
    while True:
        products = usb_products(con)
        if present <= set(products) and not absent & set(products):
            return products
        if time.monotonic() > deadline:
            raise AssertionError(f"guest sees {products}; wanted {present}, not {absent}")
        time.sleep(0.3)


def test_tablet_hotplug_save_restore_and_a_missing_host_device(host: Host) -> None:
    host.create("usb1", usb=1, usbdevice="tablet")
    with host.console("usb1") as con:
        products = wait_products(con, {TABLET})
        assert MOUSE not in products
        # QEMU's tablet: vendor 0627, product 0001
        ids = con.run("cat /sys/bus/usb/devices/*/idVendor /sys/bus/usb/devices/*/idProduct"
                      " 2>/dev/null | tr '\\n' ' '")
        assert "0627" in ids.split() and "0001" in ids.split()

    with host.console("usb1") as con:
        t0 = time.monotonic()
        host.xm("usb-add", "usb1", "mouse")
        t1 = time.monotonic()
        wait_products(con, {TABLET, MOUSE})
        # a figure, not a threshold: xm's round trip, then the guest's enumeration
        print(f"\nusb-add mouse: xm returned in {t1 - t0:.2f} s, the guest listed it "
              f"{time.monotonic() - t1:.2f} s later")
    host.xm("usb-del", "usb1", "tablet")
    with host.console("usb1") as con:
        wait_products(con, {MOUSE}, absent={TABLET})
    long = host.xm("list", "-l", "usb1").stdout
    assert "(usb 1)" in long and "(usbdevice mouse)" in long

    # the errors, one line each (then xm's usage, as for every xend fault); the domain
    # runs on
    r = host.xm("usb-del", "usb1", "tablet", check=False)
    assert (r.returncode, first_line(r.stderr)) == (
        1, "Error: USB device tablet is not attached to domain usb1")
    r = host.xm("usb-add", "usb1", "host:1d6b:0002", check=False)
    assert r.returncode == 1 and first_line(r.stderr) in (
        "Error: USB device host:1d6b:0002 not found on this host",
        "Error: USB device host:1d6b:0002 not found: this host has no USB "
        "(/sys/bus/usb/devices is missing)"), r.stderr
    assert "Traceback" not in r.stderr
    r = host.xm("usb-add", "usb1", "host:1.2", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: USB device host:1.2 not found")
    r = host.xm("usb-add", "usb1", "joystick", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: Invalid USB device: 'joystick'")
    assert host.info("usb1")["state"] in ("r-----", "-b----")

    # the hot-plugged mouse is in the config the restored machine is built from
    image = host.dir / "usb1.save"
    host.xm("save", "usb1", str(image))
    host.xm("restore", str(image))
    with host.console("usb1") as con:
        assert con.run("echo restored").strip() == "restored"
        wait_products(con, {MOUSE}, absent={TABLET})
    host.xm("usb-add", "usb1", "tablet")  # and the restored controller takes more
    with host.console("usb1") as con:
        wait_products(con, {TABLET, MOUSE})


def test_usb_add_needs_a_controller_and_create_needs_the_host_device(host: Host) -> None:
    host.create("usb0")
    r = host.xm("usb-add", "usb0", "tablet", check=False)
    assert (r.returncode, first_line(r.stderr)) == (
        1, "Error: Domain usb0 has no USB controller: create it with usb=1")
    assert host.info("usb0")["state"] in ("r-----", "-b----")
    # a config naming a host device this host lacks does not start
    path = host.write_config("usbh", usbdevice=["tablet", "host:1.2"])
    r = host.xm("create", "-q", str(path), check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error: USB device host:1.2 not found")
    assert host.xm("domid", "usbh", check=False).returncode == 3


def test_hot_plugged_devices_follow_a_live_migration(make_host: Any) -> None:
    host = make_host("(xend-relocation-server yes)\n")
    host.create("usbm", usbdevice="tablet")
    host.xm("usb-add", "usbm", "keyboard")  # takes port 2
    host.xm("usb-del", "usbm", "tablet")  # port 1 is free again; the keyboard keeps 2
    with host.console("usbm") as con:
        wait_products(con, {KEYBOARD}, absent={TABLET})
    host.xm("migrate", "--live", "usbm", "localhost", timeout=300)
    with host.console("usbm") as con:  # the new QEMU has the keyboard where it was
        wait_products(con, {KEYBOARD}, absent={TABLET})
    host.xm("usb-add", "usbm", "mouse")
    with host.console("usbm") as con:
        wait_products(con, {KEYBOARD, MOUSE}, absent={TABLET})
