#!/bin/bash
# Build the dom0 guest image: vmlinuz (our own kernel, guest/kernel.sh: every
# driver built in), initrd.img (busybox + /init) and rootfs.ext4 (the same
# userland plus the network test tools, root=/dev/vda).
# Usage: guest/build.sh [OUTDIR]   (default: <repo>/build/guest)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../build/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOTFS_MB=${ROOTFS_MB:-64}
# Network test tools (Debian packages), copied with their shared-library closure.
NET_TOOLS="/usr/bin/iperf3 /usr/sbin/hping3"
NET_PACKAGES="iperf3 hping3"

log() { echo "guest/build.sh: $*" >&2; }

# --- up to date? ------------------------------------------------------------
INPUTS="build.sh kernel.sh kernel.config init rc inittab profile poweroff udhcpc.script
  disknames ipconfig-xen"
uptodate=1
[ "$(cat "$OUT/kernel-key" 2>/dev/null)" = "$("$HERE/kernel.sh" key)" ] || uptodate=0
for f in vmlinuz initrd.img rootfs.ext4; do
	for i in $INPUTS; do
		[ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$HERE/$i" ] || uptodate=0
	done
done
if [ $uptodate = 1 ]; then
	log "up to date in $OUT"
	exit 0
fi

# --- host tools -------------------------------------------------------------
need=()
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
	need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v xz >/dev/null || need+=(xz-utils)
command -v gzip >/dev/null || need+=(gzip)
for p in $NET_PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
BUSYBOX=/bin/busybox

# --- kernel -----------------------------------------------------------------
KERNEL=$("$HERE/kernel.sh")
KEY=$("$HERE/kernel.sh" key)
KVER=$(cat "$(dirname "$KERNEL")/release")
cp "$KERNEL" "$OUT/vmlinuz.tmp"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- network tools: binaries + shared-library closure (ldd) -------------------
NT=$WORK/nettools
mkdir -p "$NT"
chmod 755 "$NT"
for b in $NET_TOOLS; do
	install -D -m 755 "$b" "$NT$b"
	for lib in $(ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		[ -e "$NT$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$NT$lib"
	done
done
mkdir -p "$NT/etc"
printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' > "$NT/etc/ld.so.conf"
ldconfig -r "$NT"
# Only the rootfs carries them: ~14 MiB unpacked (5 MiB compressed) in the initrd
# would not leave a 32 MiB guest room to boot.

# --- common userland tree ---------------------------------------------------
make_tree() { # make_tree DIR
	local d=$1 p
	mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,proc,sys,dev,tmp,run,root,newroot,mnt,var/log,etc/udhcpc}
	chmod 1777 "$d/tmp"
	cp "$BUSYBOX" "$d/bin/busybox"
	for p in $("$BUSYBOX" --list-full); do
		[ -e "$d/$p" ] || ln -s /bin/busybox "$d/$p"
	done
	install -m 755 "$HERE/init" "$d/init"
	install -m 755 "$HERE/rc" "$d/etc/rc"
	install -m 644 "$HERE/inittab" "$d/etc/inittab"
	install -m 644 "$HERE/profile" "$d/etc/profile"
	install -m 755 "$HERE/udhcpc.script" "$d/etc/udhcpc/default.script"
	install -m 755 "$HERE/disknames" "$d/sbin/disknames"
	install -m 755 "$HERE/ipconfig-xen" "$d/sbin/ipconfig-xen"
	for p in poweroff reboot halt; do
		rm -f "$d/sbin/$p" "$d/bin/$p"
		install -m 755 "$HERE/poweroff" "$d/sbin/$p"
	done
	ln -s /sbin/poweroff "$d/etc/acpi/PWRF/00000080"
	ln -s /run "$d/var/run"
	ln -s /proc/mounts "$d/etc/mtab"
	ln -s /run/resolv.conf "$d/etc/resolv.conf"
	printf 'root:x:0:0:root:/root:/bin/sh\n' > "$d/etc/passwd"
	printf 'root:x:0:\ntty:x:5:\n' > "$d/etc/group"
	printf '127.0.0.1\tlocalhost\n' > "$d/etc/hosts"
	: > "$d/etc/fstab"
}

# --- initrd -----------------------------------------------------------------
IR=$WORK/initrd
make_tree "$IR"
mknod -m 600 "$IR/dev/console" c 5 1
mknod -m 666 "$IR/dev/null" c 1 3
(cd "$IR" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) > "$OUT/initrd.img.tmp"

# --- rootfs -----------------------------------------------------------------
RF=$WORK/rootfs
make_tree "$RF"
cp -a "$NT/." "$RF/"
rm -f "$OUT/rootfs.ext4.tmp"
mkfs.ext4 -q -F -L dom0-guest -d "$RF" -E root_owner=0:0 "$OUT/rootfs.ext4.tmp" "${ROOTFS_MB}M" >/dev/null

mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
mv "$OUT/rootfs.ext4.tmp" "$OUT/rootfs.ext4"
echo "$KVER" > "$OUT/kernel-version"
echo "$KEY" > "$OUT/kernel-key"
log "built $OUT: vmlinuz initrd.img rootfs.ext4 (kernel $KVER)"
