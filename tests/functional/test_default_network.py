"""The network a newcomer gets from the shipped configuration (issue 11 item 5): the
example xend-config.sxp's network-script makes xenbr0 behind NAT with DHCP, the demo
domain's `vif = ['']` joins it and takes an address, and `xend stop` takes it all away.
Each host runs in a network namespace of its own, so the machine's uplink is never
touched."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, Host


def shipped_network_script() -> str:
    """The uncommented (network-script ...) line of examples/xend-config.sxp."""
    text = (REPO / "examples" / "xend-config.sxp").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("(network-script ")]
    assert len(lines) == 1, lines
    return lines[0]


def demo_network_values() -> dict[str, object]:
    """The network variables of examples/demo, evaluated as xm evaluates a config."""
    values: dict[str, object] = {}
    exec(compile((REPO / "examples" / "demo").read_text(), "demo", "exec"), {}, values)
    return {k: values[k] for k in ("vif", "dhcp")}


def test_the_shipped_config_gives_a_guest_a_working_network(make_host) -> None:  # type: ignore[no-untyped-def]
    host: Host = make_host(shipped_network_script(), netns=True)
    assert "inet 10.0.0.1/24" in host.ns_run("ip", "-o", "addr", "show", "xenbr0").stdout
    host.create("dn", **demo_network_values())
    with host.console("dn") as con:
        found = host.wait_for(lambda: re.search(r"inet (10\.0\.0\.\d+)/24",
                                                con.run("ip -4 -o addr show eth0")),
                              30, "a DHCP lease on xenbr0")
        addr = found.group(1)
        assert "default via 10.0.0.1" in con.run("ip route")
        assert "1 packets received" in con.run("ping -c 1 -W 5 10.0.0.1")
    # the host reaches the guest at the leased address, too
    host.ns_run("ping", "-c", "1", "-W", "5", addr)
    assert "MASQUERADE" in host.ns_run("iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    pidfile = host.dir / "run" / "dnsmasq.xenbr0.pid"
    dnsmasq = int(pidfile.read_text())
    assert Path(f"/proc/{dnsmasq}").exists()

    host.xend("stop")
    assert host.ns_run("ip", "link", "show", "xenbr0", check=False).returncode != 0
    assert "MASQUERADE" not in host.ns_run("iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    assert not Path(f"/proc/{dnsmasq}").exists() or \
        b"dnsmasq" not in Path(f"/proc/{dnsmasq}/cmdline").read_bytes()


def test_a_network_already_in_use_is_left_alone(make_host) -> None:  # type: ignore[no-untyped-def]
    host: Host = make_host(shipped_network_script(), start=False, netns=True)
    # something of the host's own already lives on 10.0.0.0/24
    host.ns_run("ip", "link", "add", "lan0", "type", "bridge")
    host.ns_run("ip", "addr", "add", "10.0.0.7/24", "dev", "lan0")
    host.ns_run("ip", "link", "set", "lan0", "up")
    host.start()
    assert host.ns_run("ip", "link", "show", "xenbr0", check=False).returncode != 0
    assert "inet 10.0.0.7/24" in host.ns_run("ip", "-o", "addr", "show", "lan0").stdout
    assert "network 10.0.0.0/24 is already in use on lan0" in host.xm("dmesg").stdout
