"""The project's guest image: small guests boot, every example in examples/ and the
README boots as written, and the network test tools run inside the guest."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conftest import BIN, GUEST_DIR, REPO, Host
from guestconsole import GuestConsole
from test_network import bridged_host


def iperf3(con: GuestConsole, args: str) -> dict[str, Any]:
    """Run the iperf3 client in a guest; its JSON report (the whole output on failure)."""
    out = con.run(f"iperf3 {args} -J", timeout=60)
    try:
        report: dict[str, Any] = json.loads(out[out.index("{"):])
    except ValueError:
        raise AssertionError(f"iperf3 {args}: {out}") from None
    return report

# where the examples (and `make install-guest`) keep the image
IMAGE_DIR = Path("/var/lib/dom0/guest")


def mem_total_kib(meminfo: str) -> int:
    found = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    assert found, meminfo
    return int(found.group(1))


def test_a_32_mib_guest_boots_from_its_initrd_and_from_the_ext4_rootfs(host: Host) -> None:
    host.create("tiny", memory=32)
    root = host.dir / "root.img"
    subprocess.run(["cp", "--sparse=always", str(GUEST_DIR / "rootfs.ext4"), str(root)],
                   check=True)
    host.create("tinyroot", memory=32, disk=[f"file:{root},xvda,w"], root="/dev/xvda")
    for name, fstype in (("tiny", "rootfs"), ("tinyroot", "ext4")):
        with host.console(name) as con:
            total = mem_total_kib(con.run("cat /proc/meminfo"))
            assert 8 * 1024 < total <= 32 * 1024, total  # the kernel keeps ~17 MiB
            mounts = con.run("cat /proc/mounts").splitlines()
            assert any(ln.split()[1:3] == ["/", fstype] for ln in mounts), mounts
            # the kernel is ours: every driver built in, nothing to load
            assert con.run("uname -r").strip().endswith("-dom0")
            assert "No such file" in con.run("cat /proc/modules")


def install_images() -> None:
    """What `make install-guest` does: the examples name the image under IMAGE_DIR."""
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    for f in ("vmlinuz", "initrd.img", "rootfs.ext4"):
        src, dst = GUEST_DIR / f, IMAGE_DIR / f
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            shutil.copyfile(src, dst)


def xm_in_examples(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """`xm` run as the README does, with examples/ as the current directory (where a
    config file name is looked up first): the example files are used unchanged."""
    return subprocess.run([str(BIN / "xm"), *args], env=host.env, capture_output=True,
                          text=True, timeout=120, cwd=REPO / "examples")


def check_booted(host: Host, name: str, memory: int, vcpus: int) -> str:
    """The guest answers on its console with the memory and CPUs its config gave."""
    with host.console(name) as con:
        total = mem_total_kib(con.run("cat /proc/meminfo"))
        assert (memory - 24) * 1024 < total <= memory * 1024, (name, total)
        online = con.run("cat /sys/devices/system/cpu/online").strip()
        assert online == ("0" if vcpus == 1 else f"0-{vcpus - 1}"), (name, online)
        return con.run("hostname; cat /proc/cmdline")


def test_every_example_config_and_readme_command_boots_as_written(host: Host) -> None:
    install_images()
    # README: xm create xmexample1 / xm create xmexample2 vmid=1 (and the other configs)
    for args, name, memory, vcpus in ((["demo"], "demo", 128, 1),
                                      (["xmexample1"], "ExampleDomain", 128, 1),
                                      (["xmexample2", "vmid=1"], "VM1", 64, 1),
                                      (["xmexample2", "vmid=2"], "VM2", 96, 2)):
        r = xm_in_examples(host, "create", *args)
        assert r.returncode == 0, r.stderr
        assert f"Started domain {name}" in r.stdout
        seen = check_booted(host, name, memory, vcpus)
        if name.startswith("VM"):
            vmid = name[2:]
            assert seen.splitlines()[0] == f"vm{vmid}"  # hostname= via ip=
            assert f"VMID={vmid}" in seen
        host.xm("destroy", name)
    # the example's own check refuses vmid=0 (memory would be 32 MiB), as in Xen
    r = xm_in_examples(host, "create", "xmexample2", "vmid=0")
    assert (r.returncode, r.stderr.strip()) == (1, "Error: vmid -")
    # README: xm new xmexample1; xm start ExampleDomain ... xm shutdown -w ExampleDomain
    assert xm_in_examples(host, "new", "xmexample1").returncode == 0
    assert xm_in_examples(host, "start", "ExampleDomain").returncode == 0
    check_booted(host, "ExampleDomain", 128, 1)
    r = xm_in_examples(host, "shutdown", "-w", "ExampleDomain")  # the ACPI power button
    assert r.returncode == 0, r.stderr
    row = [ln for ln in host.xm("list").stdout.splitlines() if ln.startswith("ExampleDomain ")]
    assert row[0].split()[:3] == ["ExampleDomain", "128", "1"]  # halted: no ID, no state
    host.xm("delete", "ExampleDomain")


def test_tcp_and_udp_between_two_guests_with_iperf3_and_hping3(make_host) -> None:  # type: ignore[no-untyped-def]
    host = bridged_host(make_host)
    for n in (21, 22):  # the tools are on the root disk (the initrd is kept small)
        root = host.dir / f"root{n}.img"
        subprocess.run(["cp", "--sparse=always", str(GUEST_DIR / "rootfs.ext4"), str(root)],
                       check=True)
        host.create(f"n{n}", vif=["bridge=xenbr0"], ip=f"10.50.0.{n}", netmask="255.255.255.0",
                    disk=[f"file:{root},xvda,w"], root="/dev/xvda")
    with host.console("n22") as server, host.console("n21") as client:
        server.run("iperf3 -s -D --logfile /run/iperf3.log")
        server.run("i=0; until grep -q 'listening' /run/iperf3.log || [ $i -gt 100 ]; "
                   "do usleep 100000; i=$((i+1)); done")
        # TCP: the sender's and the receiver's byte counts, each seen in its own guest
        tcp = iperf3(client, "-c 10.50.0.22 -t 2")
        assert tcp["end"]["sum_received"]["bytes"] > 0, tcp["end"]
        assert "receiver" in server.run("cat /run/iperf3.log")
        # UDP: datagrams at a fixed rate, the loss reported back by the receiver
        udp = iperf3(client, "-c 10.50.0.22 -u -b 1M -t 2")
        summary = udp["end"]["sum"]
        assert summary["packets"] > 0 and summary["lost_packets"] < summary["packets"], summary
        log = server.run("cat /run/iperf3.log")
        assert re.search(r"\d+/\d+ \(\d", log), log  # the receiver's lost/total line
        # hping3: TCP SYNs answered by the listening iperf3, UDP probes by ICMP
        out = client.run("hping3 -S -p 5201 -c 3 10.50.0.22", timeout=60)
        assert re.search(r"3 packets transmitted, 3 packets received", out), out
        assert "flags=SA" in out, out
        out = client.run("hping3 --udp -p 7 -c 3 10.50.0.22", timeout=60)
        assert "ICMP Port Unreachable from ip=10.50.0.22" in out, out
        assert "3 packets transmitted" in out, out
        # and the server guest saw the client's UDP probes arrive (its own counters)
        udp_in = server.run("grep '^Udp:' /proc/net/snmp | tail -1").split()
        assert int(udp_in[1]) > 0 or int(udp_in[2]) > 0, udp_in  # InDatagrams/NoPorts
