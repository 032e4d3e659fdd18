"""The backend contract: what the domain layer and migration may ask of the thing
that runs a guest.  ``backends/qemu/machine.QemuMachine`` implements it for real;
``backends/fake.FakeMachine`` implements it in memory so the lifecycle policy can
be unit-tested without QEMU.

A machine is given resolved devices and a kernel command line (``MachineSpec``),
never a domain's configuration: Xen's syntax stops at the domain layer.  It
reports what happens to the guest in the domain layer's words (``MachineEvents``),
not in QMP's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dom0.backends import ramsample
    from dom0.backends.platform import Platform
    from dom0.devices.vbd import Vbd
    from dom0.devices.vif import Vif
    from dom0.model.usb import UsbDevice, UsbSlot
    from dom0.store.layout import DomainPaths


@dataclass(frozen=True)
class Display:
    """A guest's screen (Xen's vfb, or HVM's vnc/sdl lines), resolved: a standard VGA
    card, served over VNC and/or shown in an SDL window on an X display."""

    vnc: bool = False
    vnc_listen: str = "127.0.0.1"
    #: VNC display N is TCP port 5900+N
    vnc_display: int = 0
    #: take the first free display from ``vnc_display`` on (Xen's vncunused)
    vnc_unused: bool = True
    #: "" means no VNC authentication (Xen's vncpasswd='')
    vnc_password: str = ""
    sdl: bool = False
    x_display: str | None = None
    xauthority: str | None = None


@dataclass(frozen=True)
class Tpm:
    """A guest's virtual TPM, resolved (Xen's vtpm): an emulator of TPM *version*
    ("1.2" or "2.0") keeping its persistent state in the directory *state_dir* (an
    empty one for a launch that receives the state in a migration or save stream)."""

    version: str = "1.2"
    state_dir: str = ""


@dataclass(frozen=True)
class MachineSpec:
    """Everything a backend needs to boot one domain, already resolved."""

    name: str
    uuid: str
    #: MiB the guest is held at (the balloon's target)
    memory: int
    #: MiB of RAM the machine is built with (the ceiling ``mem-max`` may raise to)
    maxmem: int
    #: vCPUs present at start (0..vcpus-1)
    vcpus: int
    kernel: str
    ramdisk: str = ""
    #: the complete guest kernel command line (the backend may add its console)
    cmdline: str = ""
    disks: tuple[Vbd, ...] = field(default_factory=tuple)
    nics: tuple[Vif, ...] = field(default_factory=tuple)
    #: None: no screen at all (serial console only)
    display: Display | None = None
    #: vCPUs the machine can ever have (hot-plug slots); 0 means ``vcpus``
    maxvcpus: int = 0
    #: None: no TPM
    tpm: Tpm | None = None
    #: the USB devices at start, each at its port; None: no USB controller at all
    #: (``()``: an empty one)
    usb: tuple[UsbSlot, ...] | None = None
    #: an HVM machine (firmware boots from the disks; kernel/cmdline unused); None:
    #: the kernel is loaded directly (PV-style)
    platform: Platform | None = None
    #: (uid, gid) the machine drops to once it has opened its devices (ACM below xend:
    #: domain/ownership.py); None: it runs as xend's user
    run_as: tuple[int, int] | None = None


@dataclass(frozen=True)
class BlockStats:
    """QEMU's counters of one guest disk (``query-blockstats``), for ``xm top``."""

    #: the disk's device id (``Vbd.device_id``)
    device_id: str
    rd_ops: int = 0
    wr_ops: int = 0
    rd_bytes: int = 0
    wr_bytes: int = 0
    failed_ops: int = 0


class MachineEvents(Protocol):
    """What a machine tells its owner, unasked."""

    def guest_stopped(self, reason: str) -> None:
        """The guest stopped itself: ``poweroff``, ``reboot`` or ``crash``."""

    def gone(self) -> None:
        """The connection to the machine dropped without our asking (it may have died:
        ``still_running`` tells)."""


class Machine(Protocol):
    """One guest's machine.  Every method that talks to the machine may raise
    ``dom0.errors.BackendError``."""

    pid: int | None
    accel: str
    paths: DomainPaths
    #: host thread IDs of the vCPUs, in vCPU order (empty when not running)
    vcpu_threads: list[int]
    #: where its VNC server listens, ``host:port`` (None: no VNC)
    vnc_location: str | None
    #: MiB the guest held when last heard of (QEMU's BALLOON_CHANGE), None if unknown
    balloon_now: int | None

    # ---- bringing it up and letting go -------------------------------------------
    async def launch(self, spec: MachineSpec, events: MachineEvents,
                     incoming: bool = False) -> None:
        """Start it with the guest stopped; ``cont`` runs it.  With *incoming* it waits
        for a saved or migrating state (``migrate_in``/``receive_incoming``)."""
    def recognise(self, pid: int | None) -> bool:
        """Is the recorded pid still this machine (re-adoption after an xend restart)?"""
    async def attach(self, events: MachineEvents) -> None:
        """Connect to an already running machine (re-adoption)."""
    async def detach(self) -> None:
        """Let go of it; it runs on (xend stopping)."""
    async def kill(self) -> None:
        """Stop it for good and remove its runtime files."""
    def still_running(self) -> bool: ...
    def tpm_pid(self) -> int | None:
        """The pid of its TPM emulator while that runs (None: no TPM, or it died)."""

    # ---- the guest -----------------------------------------------------------------
    async def runstate(self) -> str:
        """``running``, ``paused``, ``shutdown``, ``guest-panicked``, ... (QEMU's words)."""
    async def cont(self) -> None: ...
    async def stop(self) -> None: ...
    async def hard_reset(self) -> None:
        """Reset and run the guest, also from a stopped guest."""
    async def powerdown(self) -> None:
        """The ACPI power button."""
    async def send_keys(self, *keys: str) -> None: ...
    async def trigger(self, name: str) -> None:
        """Xen's ``xm trigger``: ``nmi``, ``reset``, ``init``, ``s3resume`` or ``power``."""
    async def set_balloon(self, mib: int) -> None: ...
    async def dump_memory(self, path: str, timeout: float = 600.0) -> None: ...
    async def screendump(self, path: str) -> None:
        """The guest's screen as a PPM file."""

    # ---- devices ---------------------------------------------------------------------
    async def attach_disk(self, vbd: Vbd, timeout: float) -> None: ...
    async def detach_disk(self, vbd: Vbd, timeout: float) -> bool: ...
    async def change_media(self, old: Vbd, new: Vbd) -> None: ...
    async def attach_nic(self, vif: Vif, timeout: float) -> None: ...
    async def detach_nic(self, vif: Vif, timeout: float) -> bool: ...
    async def guest_uses(self, device_id: str) -> bool: ...
    async def attach_usb(self, slot: UsbSlot) -> None:
        """Plug a device into the machine's USB controller at its port (``xm usb-add``)."""
    async def detach_usb(self, dev: UsbDevice, timeout: float) -> bool:
        """Unplug it; True once it is gone (USB needs no guest cooperation)."""

    # ---- state streams: save/restore and migration ------------------------------------
    async def migrate_out(self, sink: Callable[[bytes], None], timeout: float) -> None: ...
    async def migrate_in(self, image_path: str, offset: int, timeout: float) -> None: ...
    @property
    def migration_socket(self) -> str: ...
    async def start_migration(self, uri: str, live: bool, fd: int | None = None,
                              postcopy: bool = False, downtime_limit: float = 0.3) -> None: ...
    async def receive_incoming(self, uri: str, fd: int | None = None,
                               postcopy: bool = False) -> None: ...
    async def wait_incoming(self, timeout: float) -> None: ...
    async def migration_info(self) -> dict[str, Any]: ...
    async def set_downtime_limit(self, seconds: float) -> None: ...
    async def escalate_migration(self, step: int) -> str: ...
    async def dirty_rate(self, seconds: int = 1) -> float: ...
    async def ram_sampler(self) -> tuple[int, ramsample.RamSampler | None]: ...

    # ---- vCPUs and memory (issue 10: vcpu-set, mem-set) ---------------------------------
    async def refresh_vcpus(self) -> None:
        """Re-read ``vcpu_threads`` from the machine.  Called after every vCPU hot-plug
        and unplug: that list is the one place pinning, cgroups and vcpu-list find
        the vCPU threads."""
    async def set_vcpu_count(self, count: int, timeout: float) -> int:
        """Hot-plug vCPUs (lowest free slot first) or unplug them (highest first; the
        guest's ACPI ejects each) until *count* are present; returns how many are,
        which is fewer than asked for when the guest did not let go within *timeout*."""
    async def ram_mib(self) -> int:
        """MiB of RAM the machine was built with (what the balloon can give back)."""

    # ---- host-side figures ------------------------------------------------------------
    def cpu_seconds(self) -> float: ...
    def vcpu_figures(self) -> list[tuple[float, int, str]]:
        """(CPU seconds, last host CPU, thread state) per vCPU."""
    def blocked(self) -> bool:
        """Xen's 'b': every vCPU is idle."""

    # ---- xm top and the metrics exporter -------------------------------------------------
    async def block_stats(self, timeout: float) -> list[BlockStats]:
        """Counters of every guest disk."""
    async def balloon_bytes(self, timeout: float | None = None) -> int:
        """Bytes of RAM the guest holds now (the balloon's actual size); also updates
        ``balloon_now``.  BackendError when there is no balloon or no answer."""


#: builds the machine for one launch, from its runtime paths
MachineFactory = Callable[["DomainPaths"], Machine]
