#!/bin/bash
# HVM images of the dom0 guest, from the kernel and initrd guest/build.sh made:
#   disk.img   a BIOS-bootable disk (MBR, one FAT partition, SYSLINUX)
#   guest.iso  a bootable CD (ISOLINUX) that also carries disk.img and an installer
#              (install/install.sh <disk>: copies the disk image onto an empty disk)
# Both boot the same guest; /proc/cmdline says which medium it came from
# (dom0.boot=disk|cdrom).  Built without mounting anything (mtools, xorriso).
# Usage: guest/build-hvm.sh [OUTDIR]   (default: <repo>/build/guest)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../build/guest}
OUT=$(cd "$OUT" && pwd)
DISK_MB=${DISK_MB:-24}
log() { echo "guest/build-hvm.sh: $*" >&2; }

for f in vmlinuz initrd.img; do
	[ -s "$OUT/$f" ] || { log "$OUT/$f missing: run guest/build.sh first"; exit 1; }
done
uptodate=1
for f in disk.img guest.iso; do
	for i in "$OUT/vmlinuz" "$OUT/initrd.img" "$HERE/build-hvm.sh"; do
		[ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$i" ] || uptodate=0
	done
done
if [ $uptodate = 1 ]; then
	log "up to date in $OUT"
	exit 0
fi

need=()
command -v syslinux >/dev/null || need+=(syslinux)
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
[ -f /usr/lib/ISOLINUX/isolinux.bin ] || need+=(isolinux)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v xorriso >/dev/null || need+=(xorriso)
command -v sfdisk >/dev/null || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# the boot menu: no prompt, the serial line too (xm console works for HVM guests)
bootcfg() { # bootcfg MEDIUM
	cat <<-CFG
	SERIAL 0 115200
	DEFAULT dom0
	PROMPT 0
	TIMEOUT 0
	LABEL dom0
	  KERNEL /vmlinuz
	  INITRD /initrd.img
	  APPEND console=tty0 console=ttyS0 quiet dom0.boot=$1
	CFG
}

# --- disk.img: MBR + FAT partition at 1 MiB, SYSLINUX in it ------------------------
disk=$WORK/disk.img part=$WORK/part.img
truncate -s "${DISK_MB}M" "$disk"
printf 'label: dos\nstart=2048, type=c, bootable\n' | sfdisk -q "$disk"
truncate -s $(( DISK_MB * 1024 * 1024 - 2048 * 512 )) "$part"
mkfs.vfat -n DOM0GUEST "$part" >/dev/null
bootcfg disk > "$WORK/syslinux.cfg"
mcopy -i "$part" "$OUT/vmlinuz" "$OUT/initrd.img" "$WORK/syslinux.cfg" ::/
syslinux --install "$part"
dd if="$part" of="$disk" bs=512 seek=2048 conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none

# --- guest.iso: ISOLINUX, the same guest, and the disk image to install ---------------
iso=$WORK/iso
mkdir -p "$iso/isolinux" "$iso/install"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
bootcfg cdrom > "$iso/isolinux/isolinux.cfg"
cp "$OUT/vmlinuz" "$OUT/initrd.img" "$iso/"
cp "$disk" "$iso/install/disk.img"
cat > "$iso/install/install.sh" <<'INSTALL'
#!/bin/sh
# Install the dom0 guest onto an empty disk: install.sh /dev/sda
set -e
[ -b "${1:-}" ] || { echo "usage: install.sh <disk>" >&2; exit 1; }
dd if="$(dirname "$0")/disk.img" of="$1" bs=1M conv=fsync 2>/dev/null
sync
echo "dom0 guest installed on $1"
INSTALL
xorriso -as mkisofs -quiet -o "$WORK/guest.iso" -V DOM0GUEST -J -R \
	-b isolinux/isolinux.bin -c isolinux/boot.cat \
	-no-emul-boot -boot-load-size 4 -boot-info-table "$iso" 2>/dev/null

mv "$disk" "$OUT/disk.img"
mv "$WORK/guest.iso" "$OUT/guest.iso"
log "built $OUT: disk.img ($(du -h "$OUT/disk.img" | cut -f1)) guest.iso ($(du -h "$OUT/guest.iso" | cut -f1))"
