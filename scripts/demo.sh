#!/bin/bash
# make demo: start xend (system paths), boot the example guest, show `xm list`
# and the first lines of its console.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
mkdir -p /etc/xen
[ -f /etc/xen/xend-config.sxp ] || cp examples/xend-config.sxp /etc/xen/xend-config.sxp
for f in xmexample1 xmexample2; do [ -f /etc/xen/$f ] || cp examples/$f /etc/xen/$f; done
ln -sf "$BIN/xm" /usr/local/sbin/xm
ln -sf "$BIN/xend" /usr/local/sbin/xend

"$BIN/xend" start
if "$BIN/xm" domid demo >/dev/null 2>&1; then
	"$BIN/xm" destroy demo
fi
"$BIN/xm" create examples/demo
# the console log is QEMU's own; wait for the guest's shell prompt in it
log=$("$BIN/xm" list -l demo | sed -n 's/.*(log \(.*\))$/\1/p' | tr -d "'")
for _ in $(seq 1 300); do
	grep -q '# ' "$log" 2>/dev/null && break
	sleep 0.1
done
echo
"$BIN/xm" list
# the guest's NIC takes an address from the NAT network's DHCP server (xend-config.sxp's
# network-script); show it, and that the guest answers the host on it
mac=$("$BIN/xm" network-list demo | awk 'NR == 2 {print $3}')
run=$(sed -n "s/^(xend-run-path \(.*\))$/\1/p" /etc/xen/xend-config.sxp | tr -d "'")
leases=${run:-/var/run/xend}/dnsmasq.xenbr0.leases
ip=
if [ -n "$mac" ]; then
	for _ in $(seq 1 300); do
		ip=$(awk -v m="$mac" '$2 == m {print $3}' "$leases" 2>/dev/null)
		[ -n "$ip" ] && break
		sleep 0.1
	done
fi
echo
if [ -n "$ip" ]; then
	echo "demo's network: $ip (MAC $mac) by DHCP on xenbr0, NAT through the host"
	ping -c 1 -W 5 "$ip" >/dev/null && echo "the host reaches demo at $ip" ||
		echo "demo does not answer ping at $ip"
else
	echo "demo has no DHCP lease on xenbr0 yet (see xm dmesg and the network-script in /etc/xen/xend-config.sxp)"
fi
echo
echo "--- first lines of the console of 'demo' ($log) ---"
head -n 20 "$log" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[a-zA-Z]//g'
echo "---"
echo "Attach with: xm console demo   (Ctrl-] detaches)"
if grep -q '^(xend-http-server yes)' /etc/xen/xend-config.sxp; then
	port=$(sed -n 's/^(xend-port \([0-9]*\))$/\1/p' /etc/xen/xend-config.sxp)
	state=$(sed -n 's/^(xend-state-path \(.*\))$/\1/p' /etc/xen/xend-config.sxp)
	echo "Web console: http://localhost:${port:-8000}/   access token:" \
		"$(cat "${state:-/var/lib/xend/state}/web-token")"
fi
