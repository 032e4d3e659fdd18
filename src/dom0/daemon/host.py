"""The host seen as Xen's domain 0 and as the "physical machine" of ``xm info``."""

from __future__ import annotations

import functools
import os
import platform
import re
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from dom0.daemon import buildinfo
from dom0.model.figures import DomainFigures, HostFigures

XEND_CONFIG_FORMAT = 4
NODE_ROOT = "/sys/devices/system/node"
CPU_ROOT = "/sys/devices/system/cpu"


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
    """``7.2.22`` of ``QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)``."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
        first = out.stdout.split("\n")[0].replace("QEMU emulator version ", "")
        return first.split()[0] if first.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _ranges(cpus: list[int]) -> str:
    """``0-3,5``: Xen's node_to_cpu notation (``no cpus`` when empty)."""
    if not cpus:
        return "no cpus"
    parts = []
    start = prev = cpus[0]
    for c in cpus[1:] + [-2]:
        if c != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = c
        prev = c
    return ",".join(parts)


def _cpu_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def numa_nodes(root: str = NODE_ROOT) -> list[tuple[int, list[int], int]]:
    """(node, its CPUs, its free memory in MiB) for each NUMA node of the host;
    one node holding everything where the kernel shows none."""
    nodes = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if not (name.startswith("node") and name[4:].isdigit()):
            continue
        free = re.search(r"MemFree:\s+(\d+) kB", _read(f"{root}/{name}/meminfo"))
        nodes.append((int(name[4:]), _cpu_list(_read(f"{root}/{name}/cpulist")),
                      int(free.group(1)) // 1024 if free else 0))
    if not nodes:
        nodes = [(0, list(range(os.cpu_count() or 1)), _meminfo()["MemFree"] // 1024)]
    return sorted(nodes)


def node_rows(entries: list[str]) -> str:
    """Xen's multi-line value: further nodes on lines indented 25 spaces."""
    return ("\n" + " " * 25).join(entries)


def topology(root: str = CPU_ROOT) -> tuple[int, int]:
    """(cores per socket, threads per core) from /sys/devices/system/cpu/*/topology."""
    sockets: dict[str, set[str]] = {}
    threads = 1
    for name in os.listdir(root) if os.path.isdir(root) else []:
        topo = f"{root}/{name}/topology"
        if not (name.startswith("cpu") and name[3:].isdigit() and os.path.isdir(topo)):
            continue
        package = _read(f"{topo}/physical_package_id").strip()
        sockets.setdefault(package, set()).add(_read(f"{topo}/core_id").strip())
        siblings = _read(f"{topo}/thread_siblings_list")
        if siblings.strip():
            threads = max(threads, len(_cpu_list(siblings)))
    if not sockets:
        return os.cpu_count() or 1, 1
    return max(len(cores) for cores in sockets.values()), threads


#: (CPUID leaf, register) of Xen's eight x86_capability words, in Xen's order:
#: 1.EDX, 0x80000001.EDX, Transmeta, Linux-defined, 1.ECX, VIA/Centaur,
#: 0x80000001.ECX, 7.0.EBX; None = a word CPUID does not hold (printed as 0)
CAP_WORDS: list[tuple[int, int] | None] = [
    (0x1, 3), (0x80000001, 3), None, None, (0x1, 2), None, (0x80000001, 2), (0x7, 1)]


def cpuid_reader(device: str = "/dev/cpu/0/cpuid") -> Callable[[int], tuple[int, ...]] | None:
    """Reads (eax, ebx, ecx, edx) of a CPUID leaf (subleaf 0) through the kernel's
    cpuid device (offset = leaf); None where the device is missing."""
    try:
        fd = os.open(device, os.O_RDONLY)
    except OSError:
        return None

    def read(leaf: int) -> tuple[int, ...]:
        regs = os.pread(fd, 16, leaf)
        return struct.unpack("<4I", regs) if len(regs) == 16 else (0, 0, 0, 0)
    read.close = lambda: os.close(fd)  # type: ignore[attr-defined]
    return read


def hw_caps(read: Callable[[int], tuple[int, ...]] | None) -> str:
    """Xen's ``hw_caps``: eight 32-bit words of CPU feature bits, read from the CPU
    itself (all zeros where CPUID cannot be read)."""
    words = []
    for word in CAP_WORDS:
        value = 0
        if word is not None and read is not None:
            try:
                value = read(word[0])[word[1]]
            except OSError:
                value = 0
        words.append(f"{value:08x}")
    return ":".join(words)


def _host_hw_caps() -> str:
    read = cpuid_reader()
    try:
        return hw_caps(read)
    finally:
        if read is not None:
            read.close()  # type: ignore[attr-defined]


def virt_caps() -> str:
    """QEMU runs full-virtualised (HVM) guests under either accelerator; direct I/O
    (PCI passthrough, Xen's ``hvm_directio``) needs an IOMMU."""
    groups = "/sys/kernel/iommu_groups"
    has_iommu = os.path.isdir(groups) and bool(os.listdir(groups))
    return "hvm hvm_directio" if has_iommu else "hvm"


def xen_caps(machine: str) -> str:
    """The guest kinds qemu-system-x86_64 boots: PV-style direct kernel boot of 64-bit
    and 32-bit PAE kernels, and HVM machines of every x86 flavour."""
    if machine in ("x86_64", "amd64"):
        return ("xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p "
                "hvm-3.0-x86_64")
    return "xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p"


def virt_start() -> int:
    """Where the kernel's half of the address space starts (guests' and the host's):
    2^64 - 2^(virtual bits - 1), 0xffff800000000000 with 48-bit addresses, the
    value Xen printed as its own reserved start on x86_64."""
    m = re.search(r"address sizes\s*:.*?(\d+) bits virtual", _read("/proc/cpuinfo"))
    bits = int(m.group(1)) if m else 48
    return (1 << 64) - (1 << (bits - 1))


@functools.lru_cache(maxsize=4)
def _static(qemu_binary: str) -> tuple[str, buildinfo.BuildInfo]:
    """What does not change while xend runs (a QEMU process and a dpkg query)."""
    return _qemu_version(qemu_binary), buildinfo.collect(qemu_binary)


def node_info(qemu_binary: str, accel: str, free_for_guests_kib: int) -> list[tuple[str, Any]]:
    """``xm info`` rows, in the 3.4 key order (``system`` is never shown)."""
    uname = platform.uname()
    mem = _meminfo()
    ncpu = os.cpu_count() or 1
    qver, build = _static(qemu_binary)
    major, _, rest = qver.partition(".")
    minor, _, extra = rest.partition(".")
    nodes = numa_nodes()
    cores, threads = topology()
    return [
        ("host", uname.node),
        ("release", uname.release),
        ("version", uname.version),
        ("machine", uname.machine),
        ("nr_cpus", ncpu),
        ("nr_nodes", len(nodes)),
        ("cores_per_socket", cores),
        ("threads_per_core", threads),
        ("cpu_mhz", _cpu_mhz()),
        ("hw_caps", _host_hw_caps()),
        ("virt_caps", virt_caps()),
        ("total_memory", mem["MemTotal"] // 1024),
        ("free_memory", free_for_guests_kib // 1024),
        ("node_to_cpu", node_rows([f"node{n}:{_ranges(cpus)}" for n, cpus, _ in nodes])),
        ("node_to_memory", node_rows([f"node{n}:{free}" for n, _, free in nodes])),
        ("xen_major", major),
        ("xen_minor", minor),
        ("xen_extra", "." + extra if extra else ""),
        ("xen_caps", xen_caps(uname.machine)),
        ("xen_scheduler", "credit"),  # the default; service.Host puts xend-config's (sched)
        ("xen_pagesize", os.sysconf("SC_PAGE_SIZE")),
        ("platform_params", f"virt_start={virt_start():#x}"),
        ("xen_changeset", build.changeset),
        ("cc_compiler", build.compiler),
        ("cc_compile_by", build.compile_by),
        ("cc_compile_domain", build.compile_domain),
        ("cc_compile_date", build.compile_date),
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
