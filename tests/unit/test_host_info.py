"""``xm info`` (daemon/host.py, daemon/buildinfo.py): every key of spec §1.3, in its
order, each value in the shape Xen 3.4 printed (scripts parse them)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from dom0.cli import format
from dom0.daemon import buildinfo, host

#: spec §1.3's key order, with the shape of each value as Xen 3.4 printed it, e.g.
#: hw_caps  : bfebfbff:20100800:00000000:00000140:0008e3fd:00000000:00000001:00000000
#: xen_caps : xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64
#: cc_compiler: gcc version 4.1.2 20080704 (Red Hat 4.1.2-44)
SHAPES = {
    "host": r"\S+",
    "release": r"\S+",
    "version": r".+",
    "machine": r"x86_64|i[3-6]86",
    "nr_cpus": r"[1-9]\d*",
    "nr_nodes": r"[1-9]\d*",
    "cores_per_socket": r"[1-9]\d*",
    "threads_per_core": r"[1-9]\d*",
    "cpu_mhz": r"\d+",
    "hw_caps": r"[0-9a-f]{8}(:[0-9a-f]{8}){7}",
    "virt_caps": r"(hvm( hvm_directio)?)?",
    "total_memory": r"[1-9]\d*",
    "free_memory": r"\d+",
    "node_to_cpu": r"node\d+:(\d+(-\d+)?(,\d+(-\d+)?)*|no cpus)"
                   r"(\n {25}node\d+:(\d+(-\d+)?(,\d+(-\d+)?)*|no cpus))*",
    "node_to_memory": r"node\d+:\d+(\n {25}node\d+:\d+)*",
    "xen_major": r"\d+",
    "xen_minor": r"\d+",
    "xen_extra": r"(\.\d+)?",
    "xen_caps": r"(xen|hvm)-3\.0-x86_(64|32p?)( (xen|hvm)-3\.0-x86_(64|32p?))*",
    "xen_scheduler": r"credit|sedf",
    "xen_pagesize": r"4096|[1-9]\d*",
    "platform_params": r"virt_start=0x[0-9a-f]+",
    "xen_changeset": r"unavailable|\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4} [+-]\d{4} \S+",
    "cc_compiler": r"(gcc|clang) version \d+\.\d+(\.\d+)?.* ",
    "cc_compile_by": r"[\w.-]+",
    "cc_compile_domain": r"[\w.-]*",
    "cc_compile_date": r"\w{3} \w{3} \d\d \d\d:\d\d:\d\d \w+ \d{4}",
    "xend_config_format": r"4",
}


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, object]]:
    return host.node_info("qemu-system-x86_64", "tcg", host.free_memory_kib())


def test_every_key_in_spec_order(rows: list[tuple[str, object]]) -> None:
    assert [k for k, _ in rows] == list(SHAPES)


@pytest.mark.parametrize("key", list(SHAPES))
def test_each_value_has_xens_shape(rows: list[tuple[str, object]], key: str) -> None:
    value = dict(rows)[key]
    assert re.fullmatch(SHAPES[key], str(value)), f"{key}: {value!r}"


def test_figures_are_the_hosts(rows: list[tuple[str, object]]) -> None:
    info = dict(rows)
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    assert info["total_memory"] == total_kib // 1024
    per_socket = info["cores_per_socket"] * info["threads_per_core"]  # type: ignore[operator]
    assert info["nr_cpus"] % per_socket == 0  # type: ignore[operator]
    if Path("/sys/devices/system/node/node0/cpulist").exists():
        cpus = Path("/sys/devices/system/node/node0/cpulist").read_text().strip()
        assert str(info["node_to_cpu"]).startswith(f"node0:{cpus}")


def test_printed_as_xm_prints_it(rows: list[tuple[str, object]]) -> None:
    text = format.info([list(r) for r in rows])
    lines = text.splitlines()
    assert lines[0].startswith("host                   : ")
    assert "system" not in text
    assert lines[-1] == "xend_config_format     : 4"


def _node(root: Path, n: int, cpus: str, free_kib: int) -> None:
    d = root / f"node{n}"
    d.mkdir()
    (d / "cpulist").write_text(cpus + "\n")
    (d / "meminfo").write_text(f"Node {n} MemTotal: 9999 kB\nNode {n} MemFree:  {free_kib} kB\n")


def test_two_numa_nodes_continue_on_lines_indented_25(tmp_path: Path) -> None:
    _node(tmp_path, 0, "0-3,8", 2048 * 1024)
    _node(tmp_path, 1, "4-7", 1024 * 1024)
    (tmp_path / "possible").write_text("0-1\n")
    nodes = host.numa_nodes(str(tmp_path))
    assert nodes == [(0, [0, 1, 2, 3, 8], 2048), (1, [4, 5, 6, 7], 1024)]
    cpu = host.node_rows([f"node{n}:{host._ranges(c)}" for n, c, _ in nodes])
    assert cpu == "node0:0-3,8\n" + " " * 25 + "node1:4-7"
    assert re.fullmatch(SHAPES["node_to_cpu"], cpu)
    # xm prints the key in 23 columns then ": ", so the continuation lines up
    first, second = format.info([["node_to_cpu", cpu]]).splitlines()
    assert second.index("node1") == first.index("node0") == 25


def test_topology_from_sys(tmp_path: Path) -> None:
    for cpu, (core, siblings) in enumerate([(0, "0,2"), (1, "1,3"), (0, "0,2"), (1, "1,3")]):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
        (topo / "thread_siblings_list").write_text(siblings + "\n")
    assert host.topology(str(tmp_path)) == (2, 2)


def test_hw_caps_words_come_from_cpuid_leaves() -> None:
    """Xen's word order: 1.EDX, 0x80000001.EDX, -, -, 1.ECX, -, 0x80000001.ECX, 7.EBX."""
    regs = {0x1: (0, 0, 0x11111111, 0x22222222), 0x7: (0, 0x33333333, 0, 0),
            0x80000001: (0, 0, 0x44444444, 0x55555555)}
    assert host.hw_caps(regs.__getitem__) == \
        "22222222:55555555:00000000:00000000:11111111:00000000:44444444:33333333"
    assert host.hw_caps(None) == ":".join(["00000000"] * 8)


def test_hw_caps_of_this_cpu_say_it_has_an_fpu() -> None:
    read = host.cpuid_reader()
    if read is None:
        pytest.skip("no /dev/cpu/0/cpuid (the cpuid module is not loaded)")
    edx = int(host.hw_caps(read).split(":")[0], 16)
    read.close()  # type: ignore[attr-defined]
    assert edx & 1  # CPUID 1.EDX bit 0: x87 FPU, on every x86_64 CPU


def test_gcc_version_line_as_gcc_v_prints_it() -> None:
    assert buildinfo.gcc_version_line("GCC: (Debian 12.2.0-14) 12.2.0") == \
        "gcc version 12.2.0 (Debian 12.2.0-14) "
    assert buildinfo.gcc_version_line("Linker: LLD 14") is None


def test_changelog_gives_builder_domain_and_date(tmp_path: Path) -> None:
    log = tmp_path / "changelog.Debian.gz"
    with gzip.open(log, "wt") as f:
        f.write("qemu (1:7.2+dfsg-7+deb12u18) bookworm; urgency=medium\n\n  * fix\n\n"
                " -- Michael Tokarev <mjt@tls.msk.ru>  Tue, 16 Dec 2025 09:10:19 +0300\n\n"
                "qemu (1:7.2+dfsg-7) bookworm; urgency=medium\n")
    version, address, stamp = buildinfo.changelog_head(str(log))  # type: ignore[misc]
    assert (version, address) == ("1:7.2+dfsg-7+deb12u18", "mjt@tls.msk.ru")
    assert stamp == 1765865419.0  # 06:10:19 UTC


def test_elf_comment_of_a_binary_without_one_is_empty(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 10)
    assert buildinfo.elf_comment(str(junk)) == []
    assert buildinfo.elf_comment(str(tmp_path / "absent")) == []
