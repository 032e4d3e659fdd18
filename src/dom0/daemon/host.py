"""The host seen as Xen's domain 0 and as the "physical machine" of ``xm info``."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

from dom0 import __version__
from dom0.model.figures import DomainFigures, HostFigures

XEND_CONFIG_FORMAT = 4


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])  # KiB
    return out


def _host_cpu_seconds() -> float:
    """CPU time the host spent outside guests' QEMU is not separable cheaply; like
    Xen's dom0 figure we report the host's busy time (user+nice+system)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def uptime_seconds() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def dom0_info() -> dict[str, Any]:
    mem = _meminfo()
    ncpu = os.cpu_count() or 1
    return {
        "name": "Domain-0",
        "uuid": "00000000-0000-0000-0000-000000000000",
        "domid": 0,
        "memory": mem["MemTotal"] // 1024,
        "maxmem": mem["MemTotal"] // 1024,
        "vcpus": ncpu,
        "online_vcpus": ncpu,
        "state": "r-----",
        "power_state": "running",
        "status": 2,
        "cpu_time": _host_cpu_seconds(),
        "start_time": time.time() - uptime_seconds(),
        "uptime": uptime_seconds(),
        "managed": False,
        "console": None,
        "config": None,
    }


def dom0_vcpus() -> list[dict[str, Any]]:
    ncpu = os.cpu_count() or 1
    out = []
    with open("/proc/stat") as f:
        lines = [ln.split() for ln in f if ln.startswith("cpu") and ln[3:4].isdigit()]
    for fields in lines:
        n = int(fields[0][3:])
        busy = sum(int(x) for x in fields[1:4]) / os.sysconf("SC_CLK_TCK")
        out.append({"number": n, "cpu": n, "state": "r--", "cpu_time": busy,
                    "affinity": list(range(ncpu))})
    return out


def _cpu_mhz() -> int:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]))
    except OSError:
        pass
    return 0


def _qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
        return out.stdout.split("\n")[0].replace("QEMU emulator version ", "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def node_info(qemu_binary: str, accel: str, free_for_guests_kib: int) -> list[tuple[str, Any]]:
    """``xm info`` rows, in the 3.4 key order (``system`` is never shown)."""
    uname = platform.uname()
    mem = _meminfo()
    ncpu = os.cpu_count() or 1
    qver = _qemu_version(qemu_binary)
    major, _, rest = qver.partition(".")
    minor, _, extra = rest.partition(".")
    with open("/proc/cpuinfo") as f:
        flags = next((ln.split(":")[1].split() for ln in f if ln.startswith("flags")), [])
    virt = [c for c in ("vmx", "svm") if c in flags]
    return [
        ("host", uname.node),
        ("release", uname.release),
        ("version", uname.version),
        ("machine", uname.machine),
        ("nr_cpus", ncpu),
        ("nr_nodes", 1),
        ("cores_per_socket", ncpu),
        ("threads_per_core", 1),
        ("cpu_mhz", _cpu_mhz()),
        ("hw_caps", " ".join(flags[:8])),
        ("virt_caps", " ".join(virt) or None),
        ("total_memory", mem["MemTotal"] // 1024),
        ("free_memory", free_for_guests_kib // 1024),
        ("node_to_cpu", f"node0:0-{ncpu - 1}" if ncpu > 1 else "node0:0"),
        ("node_to_memory", f"node0:{mem['MemAvailable'] // 1024}"),
        ("xen_major", major),
        ("xen_minor", minor),
        ("xen_extra", "." + extra if extra else ""),
        ("xen_caps", f"qemu-{accel}-x86_64"),
        ("xen_scheduler", "credit"),  # the default; service.Host puts xend-config's (sched)
        ("xen_pagesize", os.sysconf("SC_PAGE_SIZE")),
        ("platform_params", f"accel={accel}"),
        ("xen_changeset", f"dom0 {__version__}"),
        ("cc_compiler", platform.python_compiler()),
        ("cc_compile_by", "dom0"),
        ("cc_compile_domain", "dom0"),
        ("cc_compile_date", ""),
        ("xend_config_format", XEND_CONFIG_FORMAT),
    ]


def free_memory_kib() -> int:
    return _meminfo()["MemAvailable"]


# ---- xm top and the metrics exporter ---------------------------------------------


def qemu_version(binary: str) -> str:
    """The QEMU version alone (``7.2.19``): what xentop's title calls Xen's version."""
    return (_qemu_version(binary).split() or ["unknown"])[0]


def host_figures(version: str) -> HostFigures:
    """xentop's header: host memory (free is what guests may still get) and CPUs."""
    mem = _meminfo()
    return HostFigures(hostname=platform.node(), version=version,
                       mem_total_kib=mem["MemTotal"], mem_free_kib=free_memory_kib(),
                       cpus=os.cpu_count() or 1, cpu_mhz=_cpu_mhz())


def dom0_figures() -> DomainFigures:
    """Domain-0's row: the host itself, as ``xm list`` shows it."""
    info = dom0_info()
    return DomainFigures(name="Domain-0", uuid=info["uuid"], domid=0, state=info["state"],
                         cpu_seconds=info["cpu_time"], memory_kib=info["memory"] * 1024,
                         maxmem_kib=None, vcpus=info["vcpus"],
                         vcpu_seconds=tuple(v["cpu_time"] for v in dom0_vcpus()))
