"""QEMU command lines for domains: pure functions, tested against golden argv.

Choices that matter:
* ``-daemonize`` + ``-pidfile``: QEMU is re-parented to init and outlives xend;
  the launching process exits only once QEMU is initialised (our readiness signal)
  and with QEMU's own error text when it is not.
* ``-action reboot=shutdown,shutdown=pause,panic=pause``: a guest poweroff,
  reboot or crash stops the guest but keeps the process, so xend (even one
  restarted in between) decides what on_poweroff/on_reboot/on_crash mean.
* The serial console is a socket chardev with ``logfile=``: QEMU itself keeps the
  console log, so nothing is lost while xend is down.
* RAM is sized to maxmem; virtio-balloon brings the guest down to ``memory``.
* ``-smp vcpus,maxcpus=maxvcpus``: the slots above ``vcpus`` are for CPU hot-plug.

It is built from a ``MachineSpec`` (resolved devices, a finished command line),
never from a domain's configuration: Xen's syntax stops at the domain layer.
"""

from __future__ import annotations

from dom0.backends.machine import Display, MachineSpec, Tpm
from dom0.backends.platform import Platform
from dom0.backends.qemu import hvmargv
from dom0.backends.qemu import tpm as tpm_mod
from dom0.devices import usb as usb_mod
from dom0.devices import vbd as vbd_mod
from dom0.devices import vif as vif_mod
from dom0.store.layout import DomainPaths


def kernel_append(cmdline: str) -> str:
    """The guest command line, with the serial console added when none was named."""
    if "console=" not in cmdline:
        cmdline = f"console=ttyS0 {cmdline}".strip()
    return cmdline


def display_argv(display: Display | None, vga: str = "std") -> list[str]:
    """The guest's screen.  A standard VGA card: the kernel's VGA text console (and a
    framebuffer console, where the kernel has a driver for it) shows on it.  VNC is
    given a password over QMP after start (``password=on`` refuses every client
    until then), never on the command line, which any user can read in /proc."""
    if display is None:
        return ["-display", "none", "-vga", "none"]
    argv = ["-vga", vga, "-display", "sdl" if display.sdl else "none"]
    if display.vnc:
        host = display.vnc_listen
        host = f"[{host}]" if ":" in host else host
        opts = f"{host}:{display.vnc_display}"
        if display.vnc_unused:  # QEMU tries the next displays up to :99 (Xen's vncunused)
            opts += ",to=99"
        if display.vnc_password:
            opts += ",password=on"
        argv += ["-vnc", opts]
    return argv


def tpm_argv(tpm: Tpm | None, paths: DomainPaths) -> list[str]:
    """The vTPM: QEMU's emulator backend on the launch's swtpm socket."""
    if tpm is None:
        return []
    return tpm_mod.qemu_args(tpm_mod.paths_for(paths, tpm.state_dir), tpm.version)


def hvm_screen_argv(platform: Platform, display: Display | None) -> list[str]:
    """An HVM guest's screen: its graphics card (cirrus, or std for ``stdvga``) even
    with nobody watching, as on Xen; none at all for ``nographic``."""
    if platform.vga == "none":
        return ["-display", "none", "-vga", "none"]
    argv = display_argv(display or Display(), vga=platform.vga)
    return argv + (["-k", platform.keymap] if platform.keymap else [])


def build_argv(
    spec: MachineSpec,
    paths: DomainPaths,
    *,
    binary: str = "qemu-system-x86_64",
    accel: str = "tcg",
    paused: bool = False,
    incoming: str | None = None,
) -> list[str]:
    argv = [
        binary,
        "-name", f"guest={spec.name},debug-threads=on",
        "-uuid", spec.uuid,
        "-machine", hvmargv.machine_option(spec.platform),
        "-accel", accel,
        "-cpu", hvmargv.cpu_option("host" if accel == "kvm" else "qemu64", spec.platform),
        "-m", f"{spec.maxmem}M",
        "-smp", f"{spec.vcpus},maxcpus={max(spec.maxvcpus, spec.vcpus)}",
        "-nodefaults",
        "-no-user-config",
    ]
    if spec.platform is not None:  # HVM: firmware boots from the disks
        argv += [*hvm_screen_argv(spec.platform, spec.display),
                 *hvmargv.hvm_argv(spec.platform, paths)]
    else:
        argv += [*display_argv(spec.display), "-kernel", spec.kernel]
        if spec.ramdisk:
            argv += ["-initrd", spec.ramdisk]
        argv += ["-append", kernel_append(spec.cmdline)]
    argv += [
        "-chardev",
        f"socket,id=console0,path={paths.serial_socket},server=on,wait=off,"
        f"logfile={paths.console_log},logappend=on",
        "-serial", "chardev:console0",
        "-chardev", f"socket,id=qmp0,path={paths.qmp_socket},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
        "-device", "pvpanic",
        "-device", "virtio-balloon-pci,id=balloon0",
        "-action", "reboot=shutdown,shutdown=pause,panic=pause",
        *vbd_mod.argv(list(spec.disks)),
        *vif_mod.argv(list(spec.nics)),
        *tpm_argv(spec.tpm, paths),
        *usb_mod.argv(spec.usb),
        "-pidfile", paths.pidfile,
        "-daemonize",
    ]
    if spec.run_as is not None:  # after opening everything above, before the guest runs
        argv += ["-runas", f"{spec.run_as[0]}:{spec.run_as[1]}"]
    if paused or incoming:
        argv.append("-S")
    if incoming:
        argv += ["-incoming", incoming]
    return argv
