"""The domain layer's settings: one object, read live (a SIGHUP reload changes
it in place), and the only source of each value for the manager, the disk and
the vif controllers.  Paths are not settings: they all come from ``Layout``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class DomainSettings:
    #: a domain restarting sooner than this after its last restart is destroyed
    #: instead (xend-config's domain-minimum-restart-time)
    minimum_restart_time: float = 60.0
    #: how long a guest has to obey ``xm shutdown`` before it is stopped by force
    shutdown_timeout: float = 60.0
    #: how long a hot-plugged device may take to be seen by the guest (Xen: 100 s)
    device_timeout: float = 100.0
    #: the longest a save or restore stream may take
    save_timeout: float = 600.0
    #: where VNC servers listen, and their password, unless a config names its own
    vnc_listen: str = "127.0.0.1"
    vncpasswd: str | None = None
    #: the CPU scheduler whose parameters domains take (xend-config's ``sched``)
    scheduler: str = "credit"
    host_cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: MiB the host keeps for itself when ballooning (xend-config's dom0-min-mem)
    dom0_min_mem: int = 0
    #: xend-config's enable-dom0-ballooning, resolved (XendOptions.ballooning)
    dom0_ballooning: bool = False
    #: the longest ``xm mem-set`` waits for the guest to reach the target
    balloon_timeout: float = 30.0
    #: the TPM a domain's ``vtpm`` gets: 1.2 as Xen's vTPMs, or 2.0 (xend-config's
    #: ``vtpm-version``)
    vtpm_version: str = "1.2"
