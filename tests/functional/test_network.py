"""Virtual networks on real guests, each test host in its own network namespace."""

from __future__ import annotations

import re
import time

from conftest import Host, veth


def bridged_host(make_host) -> Host:  # type: ignore[no-untyped-def]
    host = make_host("(network-script 'network-bridge bridge=xenbr0')\n(vif-script vif-bridge)",
                     netns=True)
    host.ns_run("ip", "addr", "add", "10.50.0.1/24", "dev", "xenbr0")
    return host  # type: ignore[no-any-return]


def test_two_guests_on_one_bridge_ping_each_other(make_host) -> None:  # type: ignore[no-untyped-def]
    host = bridged_host(make_host)
    for n in (11, 12):
        host.create(f"g{n}", vif=["bridge=xenbr0"], ip=f"10.50.0.{n}", netmask="255.255.255.0")
    links = host.ns_run("ip", "-o", "link", "show", "master", "xenbr0").stdout
    ids = [host.info(f"g{n}")["domid"] for n in (11, 12)]
    for domid in ids:
        assert f"vif{domid}.0" in links  # Xen's host-side names
    with host.console("g11") as con:
        out = con.run("ping -c 3 -W 3 10.50.0.12")
        assert "3 packets received" in out, out
        mac = con.run("cat /sys/class/net/eth0/address").strip()
    assert mac.startswith("00:16:3e:")
    listed = host.xm("network-list", "g11").stdout.splitlines()
    assert listed[0] == "Idx BE     MAC Addr.     handle state evt-ch tx-/rx-ring-ref BE-path"
    assert mac in listed[1] and listed[1].split()[0] == "0"
    host.xm("destroy", "g11")
    assert f"vif{ids[0]}.0" not in host.ns_run("ip", "-o", "link").stdout


def test_network_attach_detach_and_ids_are_not_reused(make_host) -> None:  # type: ignore[no-untyped-def]
    host = bridged_host(make_host)
    host.create("na")
    with host.console("na") as con:
        assert "eth0" not in con.run("ls /sys/class/net")
        host.xm("network-attach", "na", "bridge=xenbr0", "mac=00:16:3e:01:02:03",
                "vifname=myvif")
        # returned: the guest has the NIC
        assert con.run("cat /sys/class/net/eth0/address").strip() == "00:16:3e:01:02:03"
        assert "master xenbr0" in host.ns_run("ip", "link", "show", "myvif").stdout
        r = host.xm("network-attach", "na", "colour=blue", check=False)
        assert r.returncode == 1 and "Error: Invalid argument: colour=blue" in r.stderr
        host.xm("network-detach", "na", "0")
        assert "eth0" not in con.run("ls /sys/class/net")
        assert host.ns_run("ip", "link", "show", "myvif", check=False).returncode != 0
        host.xm("network-attach", "na", "bridge=xenbr0")
        rows = host.xm("network-list", "na").stdout.splitlines()[1:]
        assert [r.split()[0] for r in rows] == ["1"]  # ID 0 is not handed out again


def test_nat_network_with_dhcp_reaches_a_server_in_another_namespace(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host("(network-script 'network-nat bridge=natbr0 addr=10.60.0.1/24')\n"
                     "(vif-script vif-nat)", netns=True)
    # a "server" in a namespace of its own, behind a veth pair
    server_ns = host.netns + "s"
    import subprocess

    subprocess.run(["ip", "netns", "add", server_ns], check=True)
    try:
        veth(host.netns, "up0", "10.70.0.1/24", server_ns, "up1", "10.70.0.2/24")
        server = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, "python3", "-c",
             "import socket\ns=socket.socket(); s.bind(('10.70.0.2', 8080)); s.listen()\n"
             "c, a = s.accept(); c.sendall(b'hello ' + a[0].encode() + b'\\n'); c.close()"],
            stdout=subprocess.PIPE)
        host.create("nat", vif=["bridge=natbr0"], dhcp="dhcp")
        with host.console("nat") as con:
            addr = host.wait_for(lambda: re.search(r"inet 10\.60\.0\.\d+/24",
                                                   con.run("ip -4 -o addr show eth0")),
                                 30, "a DHCP lease")
            assert addr
            assert "default via 10.60.0.1" in con.run("ip route")
            reply = con.run("nc 10.70.0.2 8080 </dev/null")
        # the server saw the host's address: the guest was masqueraded
        assert "hello 10.70.0.1" in reply, reply
        server.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", server_ns], capture_output=True)


def test_rate_limited_vif_measures_within_20_percent(make_host) -> None:  # type: ignore[no-untyped-def]
    host = bridged_host(make_host)
    rate = 1_000_000  # bytes/s: rate=8Mb/s
    host.create("rl", vif=["bridge=xenbr0,rate=8Mb/s"], ip="10.50.0.21", netmask="255.255.255.0")
    size = 4_000_000
    with host.console("rl") as con:
        con.run("(nc -l -p 5001 | wc -c > /run/got; echo DONE''-RECV > /dev/ttyS0) &")
        time.sleep(1)
        start = time.monotonic()
        host.ns_run("python3", "-c",
                    "import socket; s=socket.create_connection(('10.50.0.21', 5001)); "
                    f"s.sendall(bytes({size})); s.close()", timeout=120)
        con.read_until(b"DONE-RECV\r\n", 120)
        elapsed = time.monotonic() - start
        assert con.run("cat /run/got").strip() == str(size)
    measured = size / elapsed
    print(f"rate-limited vif: {measured / 1e6:.2f} MB/s for a limit of {rate / 1e6:.2f} MB/s")
    assert 0.8 * rate <= measured <= 1.2 * rate


def test_network_bridge_moves_a_host_nic_and_restores_it(make_host) -> None:  # type: ignore[no-untyped-def]
    """network-bridge netdev=: the NIC goes under the bridge with its address, guests
    reach the NIC's network at layer 2, and xend stop puts everything back."""
    import subprocess

    host = make_host("(network-script 'network-bridge bridge=xenbr0 netdev=eth9')",
                     start=False, netns=True)
    peer_ns = host.netns + "p"
    subprocess.run(["ip", "netns", "add", peer_ns], check=True)
    try:
        veth(host.netns, "eth9", "10.95.0.1/24", peer_ns, "eth0", "10.95.0.2/24")
        host.xend("start")
        assert "master xenbr0" in host.ns_run("ip", "link", "show", "eth9").stdout
        assert "10.95.0.1/24" in host.ns_run("ip", "addr", "show", "xenbr0").stdout
        host.create("br", vif=[""], ip="10.95.0.11", netmask="255.255.255.0")
        with host.console("br") as con:
            out = con.run("ping -c 2 -W 3 10.95.0.2")
            assert "2 packets received" in out, out
        host.xm("destroy", "br")
        host.xend("stop")
        assert "master" not in host.ns_run("ip", "link", "show", "eth9").stdout
        assert "10.95.0.1/24" in host.ns_run("ip", "addr", "show", "eth9").stdout
        assert host.ns_run("ip", "link", "show", "xenbr0", check=False).returncode != 0
    finally:
        subprocess.run(["ip", "netns", "del", peer_ns], capture_output=True)


def test_routed_vif_reaches_the_host(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host("(network-script 'network-route netdev=rt0')\n(vif-script vif-route)",
                     start=False, netns=True)
    # the host's "uplink": a veth pair inside the namespace (no dummy driver here)
    host.ns_run("ip", "link", "add", "rt0", "type", "veth", "peer", "name", "rt1")
    host.ns_run("ip", "addr", "add", "10.90.0.1/24", "dev", "rt0")
    host.ns_run("ip", "link", "set", "rt0", "up")
    host.ns_run("ip", "link", "set", "rt1", "up")
    host.xend("start")
    info = host.create("rt", vif=["ip=10.90.0.11"], ip="10.90.0.11", netmask="255.255.255.0",
                       gateway="10.90.0.1")
    routes = host.ns_run("ip", "route", "show", "10.90.0.11").stdout
    assert f"dev vif{info['domid']}.0" in routes
    with host.console("rt") as con:
        out = con.run("ping -c 2 -W 3 10.90.0.1")
        assert "2 packets received" in out, out
