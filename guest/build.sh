#!/bin/bash
# Build the dom0 guest image: vmlinuz (Debian cloud kernel), initrd.img
# (busybox + modules + /init) and rootfs.ext4 (same userland, root=/dev/vda).
# Usage: guest/build.sh [OUTDIR]   (default: <repo>/build/guest)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../build/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=$OUT/.cache
ROOTFS_MB=${ROOTFS_MB:-64}

# Drivers loaded at boot (when built as modules; dependencies are added).
BOOT_MODULES="virtio_pci virtio_blk virtio_net virtio_console virtio_balloon
  virtio_scsi virtio_input virtio_rng sd_mod sr_mod ext4 jbd2 mbcache crc16
  crc32c_generic pvpanic pvpanic_mmio pvpanic_pci button evdev af_packet loop
  e1000 8139cp ne2k_pci"
# Loaded at boot in the background (the IDE probe mostly sleeps).
ASYNC_MODULES="ata_piix ata_generic"
# Shipped in the images but loaded on demand (kernel autoload via modprobe).
EXTRA_MODULES="nfs nfsv3 nfsv4 sunrpc lockd iso9660 isofs"

log() { echo "guest/build.sh: $*" >&2; }

# --- up to date? ------------------------------------------------------------
INPUTS="build.sh init rc inittab profile poweroff udhcpc.script"
uptodate=1
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
command -v depmod >/dev/null || need+=(kmod)
command -v gzip >/dev/null || need+=(gzip)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
apt_update_if_empty() {
	ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq
}
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_update_if_empty
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
BUSYBOX=/bin/busybox

# --- kernel package ---------------------------------------------------------
mkdir -p "$CACHE"
apt_update_if_empty
resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(resolve)
if [ -z "$pkg" ]; then apt-get update -qq; pkg=$(resolve); fi
[ -n "$pkg" ] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
deb=$(ls "$CACHE/${pkg}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
	log "downloading $pkg"
	tmpd=$(mktemp -d); chmod 777 "$tmpd"
	(cd "$tmpd" && apt-get download -q "$pkg" >&2) ||
		{ apt-get update -qq && (cd "$tmpd" && apt-get download -q "$pkg" >&2); }
	rm -f "$CACHE"/linux-image-*.deb
	mv "$tmpd"/*.deb "$CACHE/"
	rm -rf "$tmpd"
	deb=$(ls "$CACHE/${pkg}"_*.deb | head -1)
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
KX=$WORK/kernel
dpkg-deb -x "$deb" "$KX"
KVER=$(ls "$KX/lib/modules" | head -1)
log "kernel $KVER ($pkg, $(grep -o 'MODULE_COMPRESS_[A-Z]*=y' "$KX/boot/config-$KVER"))"
cp "$KX/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"

# --- module closure ---------------------------------------------------------
# The .deb ships no modules.dep (postinst runs depmod): generate it here.
depmod -b "$KX" "$KVER"
modinfo_of() { modprobe -d "$KX" -S "$KVER" --show-depends "$1" 2>/dev/null | tail -1 || true; }
closure() { # print module paths (relative to lib/modules/KVER) in load order
	local m
	for m in "$@"; do
		modprobe -d "$KX" -S "$KVER" --show-depends "$m" 2>/dev/null || true
	done | awk '$1 == "insmod" {print $2}' |
		sed "s|^$KX/lib/modules/$KVER/||" | awk '!seen[$0]++'
}
loadable() { # names among $@ that are modules (not built-in, not absent)
	local m
	for m in "$@"; do
		case "$(modinfo_of "$m")" in insmod*) echo "$m" ;; esac
	done
}
# shellcheck disable=SC2086
all_list=$(closure $BOOT_MODULES $ASYNC_MODULES $EXTRA_MODULES)
# shellcheck disable=SC2086
boot_names=$(loadable $BOOT_MODULES)
# shellcheck disable=SC2086
async_names=$(loadable $ASYNC_MODULES)
for m in $BOOT_MODULES $ASYNC_MODULES $EXTRA_MODULES; do
	case "$(modinfo_of "$m")" in
	builtin*) echo "$m: built-in" ;;
	insmod*) echo "$m: module" ;;
	*) echo "$m: not available" ;;
	esac
done > "$OUT/modules.txt"

# --- common userland tree ---------------------------------------------------
make_tree() { # make_tree DIR
	local d=$1 p
	mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,proc,sys,dev,tmp,run,root,newroot,mnt,var/log,etc/udhcpc,lib/modules}
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
	# modules: boot list + on-demand extras, with a busybox-usable modules.dep
	local md=$d/lib/modules/$KVER
	mkdir -p "$md"
	for p in $all_list; do # compressed modules are stored decompressed
		mkdir -p "$md/$(dirname "$p")"
		case "$p" in
		*.ko.xz) xz -dc "$KX/lib/modules/$KVER/$p" > "$md/${p%.xz}" ;;
		*.ko.zst) zstd -qdc "$KX/lib/modules/$KVER/$p" > "$md/${p%.zst}" ;;
		*.ko.gz) gzip -dc "$KX/lib/modules/$KVER/$p" > "$md/${p%.gz}" ;;
		*) cp "$KX/lib/modules/$KVER/$p" "$md/$p" ;;
		esac
	done
	cp "$KX/lib/modules/$KVER"/modules.{builtin,builtin.modinfo} "$md/"
	sed -E 's/\.ko\.(xz|zst|gz)$/.ko/' "$KX/lib/modules/$KVER/modules.order" > "$md/modules.order"
	depmod -b "$d" "$KVER"
	echo $boot_names > "$d/etc/modules.boot"
	echo $async_names > "$d/etc/modules.async"
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
rm -f "$OUT/rootfs.ext4.tmp"
mkfs.ext4 -q -F -L dom0-guest -d "$RF" -E root_owner=0:0 "$OUT/rootfs.ext4.tmp" "${ROOTFS_MB}M" >/dev/null

mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
mv "$OUT/rootfs.ext4.tmp" "$OUT/rootfs.ext4"
echo "$KVER" > "$OUT/kernel-version"
log "built $OUT: vmlinuz initrd.img rootfs.ext4 (kernel $KVER)"
