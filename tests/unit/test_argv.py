"""dom0.backends.qemu.argv: the QEMU command line of a domain.

The basic case is a golden test against ``tests/unit/golden/argv_basic.json``.
After an intended change to the command line, regenerate it with::

    DOM0_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/unit/test_argv.py

and review the diff of the JSON file before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dom0.backends.machine import MachineSpec
from dom0.backends.qemu.argv import build_argv, kernel_append
from dom0.devices import vbd as vbd_mod
from dom0.devices import vif as vif_mod
from dom0.domain.spec import machine_spec
from dom0.model.config import DomainConfig
from dom0.model.devices import DiskSpec, VifSpec
from dom0.store.layout import DomainPaths, Layout

GOLDEN = Path(__file__).parent / "golden" / "argv_basic.json"


def config(**changes: object) -> MachineSpec:
    """The machine of a domain configured as in the golden file, with *changes* made
    to the domain's configuration (the backend sees only what the domain layer
    resolves from it)."""
    return machine_spec(domain_config(**changes), [], [])


def domain_config(**changes: object) -> DomainConfig:
    cfg = DomainConfig(
        name="guest1", uuid="6f1c2a3e-9d4b-4c1e-8f00-0123456789ab", memory=128, vcpus=2,
        kernel="/var/lib/dom0/guest/vmlinuz", ramdisk="/var/lib/dom0/guest/initrd.img",
        root="/dev/vda1", extra="quiet",
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def paths() -> DomainPaths:
    layout = Layout(state_dir="/var/lib/xend/state", domains_dir="/var/lib/xend/domains",
                    run_dir="/var/run/xend", log_dir="/var/log/xen", dump_dir="/var/xen/dump")
    return layout.domain("inst-1")


def option(argv: list[str], flag: str) -> str:
    """The word after the only occurrence of *flag*."""
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


def test_build_argv_golden() -> None:
    argv = build_argv(config(), paths())
    if os.environ.get("DOM0_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(argv, indent=2) + "\n")
    assert argv == json.loads(GOLDEN.read_text())


def test_golden_file_is_sane() -> None:
    """Guards against a golden file regenerated from a broken build."""
    golden = json.loads(GOLDEN.read_text())
    assert golden[0] == "qemu-system-x86_64"
    assert option(golden, "-m") == "128M"
    assert option(golden, "-append") == "console=ttyS0 root=/dev/vda1 quiet"
    assert option(golden, "-pidfile") == "/var/run/xend/dom/inst-1/qemu.pid"
    assert "-S" not in golden and "-daemonize" in golden


def test_layout_paths() -> None:
    p = paths()
    assert p.qmp_socket == "/var/run/xend/dom/inst-1/qmp.sock"
    assert p.console_socket == "/var/run/xend/dom/inst-1/console.sock"
    assert p.serial_socket == "/var/run/xend/dom/inst-1/serial.sock"
    assert p.console_log == "/var/log/xen/console/inst-1.log"
    assert p.qemu_log == "/var/log/xen/qemu/inst-1.log"


def test_sockets_and_console_log() -> None:
    argv = build_argv(config(), paths())
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert chardevs == [
        "socket,id=console0,path=/var/run/xend/dom/inst-1/serial.sock,server=on,wait=off,"
        "logfile=/var/log/xen/console/inst-1.log,logappend=on",
        "socket,id=qmp0,path=/var/run/xend/dom/inst-1/qmp.sock,server=on,wait=off",
    ]
    assert option(argv, "-serial") == "chardev:console0"
    assert option(argv, "-mon") == "chardev=qmp0,mode=control"


def test_paused_adds_dash_s() -> None:
    assert "-S" not in build_argv(config(), paths())
    argv = build_argv(config(), paths(), paused=True)
    assert argv.count("-S") == 1
    assert "-incoming" not in argv
    assert argv[:-1] == build_argv(config(), paths())
    assert argv[-1] == "-S"


def test_incoming_implies_stopped() -> None:
    argv = build_argv(config(), paths(), incoming="unix:/tmp/mig.sock")
    assert argv.count("-S") == 1
    assert argv[-2:] == ["-incoming", "unix:/tmp/mig.sock"]
    assert build_argv(config(), paths(), paused=True, incoming="defer").count("-S") == 1


def test_ram_sized_to_maxmem() -> None:
    assert option(build_argv(config(memory=128, maxmem=512), paths()), "-m") == "512M"
    assert option(build_argv(config(memory=128, maxmem=None), paths()), "-m") == "128M"


def test_vcpus_and_identity() -> None:
    argv = build_argv(config(vcpus=3), paths())
    assert option(argv, "-smp") == "3,maxcpus=3"
    assert option(argv, "-name") == "guest=guest1,debug-threads=on"
    assert option(argv, "-uuid") == "6f1c2a3e-9d4b-4c1e-8f00-0123456789ab"
    assert option(argv, "-kernel") == "/var/lib/dom0/guest/vmlinuz"


@pytest.mark.parametrize("accel, cpu", [("kvm", "host"), ("tcg", "qemu64")])
def test_accel_and_cpu_model(accel: str, cpu: str) -> None:
    argv = build_argv(config(), paths(), accel=accel, binary="/opt/qemu")
    assert argv[0] == "/opt/qemu"
    assert option(argv, "-accel") == accel
    assert option(argv, "-cpu") == cpu


def test_no_ramdisk_no_initrd() -> None:
    assert "-initrd" not in build_argv(config(ramdisk=""), paths())
    assert option(build_argv(config(), paths()), "-initrd") == "/var/lib/dom0/guest/initrd.img"


def test_guest_stops_instead_of_exiting() -> None:
    argv = build_argv(config(), paths())
    assert option(argv, "-action") == "reboot=shutdown,shutdown=pause,panic=pause"
    assert "-no-shutdown" not in argv


# ---- kernel_append ----------------------------------------------------------------


def test_kernel_append_adds_serial_console() -> None:
    assert kernel_append(config(root="", extra="quiet").cmdline) == "console=ttyS0 quiet"
    assert kernel_append(config(root="/dev/vda1", ip="dhcp", extra="").cmdline) == \
        "console=ttyS0 root=/dev/vda1 ip=dhcp"


def test_kernel_append_empty_cmdline() -> None:
    assert kernel_append(config(root="", extra="").cmdline) == "console=ttyS0"


@pytest.mark.parametrize("extra", ["console=hvc0", "quiet console=ttyS1,115200"])
def test_kernel_append_keeps_given_console(extra: str) -> None:
    assert kernel_append(config(root="", extra=extra).cmdline) == extra
    assert option(build_argv(config(root="", extra=extra), paths()), "-append") == extra


# ---- devices come resolved in the spec ----------------------------------------------


def test_spec_devices_in_order_before_the_pidfile() -> None:
    disk = vbd_mod.parse(DiskSpec("file:/srv/guest1.img", "xvda", "w"), check_exists=False)
    nic = vif_mod.resolve(VifSpec({"mac": "00:16:3e:00:00:01", "bridge": "xenbr0"}), 0, 1)
    argv = build_argv(machine_spec(domain_config(), [disk], [nic]), paths())
    devices = vbd_mod.argv([disk]) + vif_mod.argv([nic])
    at = argv.index("-pidfile") - len(devices)
    assert argv[at:at + len(devices)] == devices
    # and nothing else changes
    assert argv[:at] + argv[at + len(devices):] == build_argv(config(), paths())


@pytest.mark.parametrize("changes, accel, smp", [
    ({"vcpus": 1, "maxvcpus": 4}, "kvm", "1,maxcpus=4"),
    ({"vcpus": 4, "vcpu_avail": 0b11}, "kvm", "2,maxcpus=4"),  # Xen 3.4's way
    ({"vcpus": 1, "maxvcpus": 2}, "tcg", "1,maxcpus=2"),
    ({"vcpus": 2, "maxvcpus": 2}, "tcg", "2,maxcpus=2"),
])
def test_vcpu_hotplug_slots(changes: dict[str, int], accel: str, smp: str) -> None:
    assert option(build_argv(config(**changes), paths(), accel=accel), "-smp") == smp
