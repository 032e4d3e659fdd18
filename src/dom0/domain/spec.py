"""From a domain's configuration to what its machine is built from: the one place
where Xen's config meets the backend contract (backends/machine.MachineSpec)."""

from __future__ import annotations

from dom0.backends.machine import MachineSpec
from dom0.devices.vbd import Vbd
from dom0.devices.vif import Vif
from dom0.model.config import DomainConfig


def machine_spec(cfg: DomainConfig, disks: list[Vbd], nics: list[Vif]) -> MachineSpec:
    return MachineSpec(
        name=cfg.name, uuid=cfg.uuid, memory=cfg.memory, maxmem=cfg.max_memory,
        vcpus=cfg.online_vcpus, maxvcpus=cfg.max_vcpus, kernel=cfg.kernel, ramdisk=cfg.ramdisk,
        cmdline=cfg.kernel_cmdline(), disks=tuple(disks), nics=tuple(nics))
