#!/bin/bash
# The dom0 guest kernel: Debian's kernel source (linux-source-6.1) configured by
# guest/kernel.config over `make allnoconfig` (everything built in, no modules).
# Built once per input set and cached outside the checkout:
#   $DOM0_KERNEL_CACHE/<key>/bzImage   (default /var/cache/dom0/kernel)
# where <key> hashes the source package version, kernel.config and this script.
# Usage: guest/kernel.sh key    print the key (installs nothing)
#        guest/kernel.sh        build if needed; print the bzImage path on stdout
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${DOM0_KERNEL_CACHE:-/var/cache/dom0/kernel}
SRCPKG=linux-source-6.1
TARBALL=/usr/src/$SRCPKG.tar.xz
JOBS=${DOM0_KERNEL_JOBS:-2}
# what building it needs beyond the source (no modules: no kmod, no signing)
BUILD_DEPS="$SRCPKG make gcc libc6-dev flex bison bc libelf-dev libssl-dev xz-utils"

log() { echo "guest/kernel.sh: $*" >&2; }

source_version() { dpkg-query -W -f='${Version}' "$SRCPKG" 2>/dev/null || echo none; }

key() {
	{ echo "$SRCPKG $(source_version)"; cat "$HERE/kernel.config" "$HERE/kernel.sh"; } |
		sha256sum | cut -c1-16
}

if [ "${1:-}" = key ]; then key; exit 0; fi

k=$(key)
if [ -s "$CACHE_ROOT/$k/bzImage" ]; then
	echo "$CACHE_ROOT/$k/bzImage"
	exit 0
fi

# --- build dependencies -------------------------------------------------------
need=()
for p in $BUILD_DEPS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
		{ apt-get update -qq &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; }
	k=$(key) # the source version may have been "none"
fi

mkdir -p "$CACHE_ROOT"
# one build at a time per cache (two `make guest` runs share the source tree)
exec 9>"$CACHE_ROOT/.lock"
flock 9
if [ -s "$CACHE_ROOT/$k/bzImage" ]; then # built by the holder we waited for
	echo "$CACHE_ROOT/$k/bzImage"
	exit 0
fi

# --- source tree: extracted once per source version, reused (make is incremental) ---
ver=$(source_version)
TREE=$CACHE_ROOT/build/$SRCPKG
if [ "$(cat "$CACHE_ROOT/build/version" 2>/dev/null)" != "$ver" ] || [ ! -f "$TREE/Makefile" ]; then
	log "extracting $SRCPKG $ver"
	rm -rf "$CACHE_ROOT/build"
	mkdir -p "$CACHE_ROOT/build"
	tar -C "$CACHE_ROOT/build" -xJf "$TARBALL"
	echo "$ver" > "$CACHE_ROOT/build/version"
fi

# --- configuration: allnoconfig + our fragment, checked symbol by symbol ---------
make -C "$TREE" -s allnoconfig KCONFIG_ALLCONFIG="$HERE/kernel.config" >&2
bad=0
while IFS='=' read -r sym want; do
	got=$(grep -E "^$sym=" "$TREE/.config" | cut -d= -f2- || true)
	if [ "$got" != "$want" ]; then
		log "kernel.config: $sym=$want did not take (got '${got:-unset}': a dependency is missing)"
		bad=1
	fi
done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$HERE/kernel.config")
[ $bad = 0 ] || exit 1

# --- build ----------------------------------------------------------------------
log "building linux $ver ($JOBS jobs, niced; the log is $CACHE_ROOT/build/make.log)"
start=$(date +%s)
if ! nice -n 19 make -C "$TREE" -j"$JOBS" bzImage > "$CACHE_ROOT/build/make.log" 2>&1; then
	tail -30 "$CACHE_ROOT/build/make.log" >&2
	log "kernel build failed"
	exit 1
fi
log "kernel built in $(( $(date +%s) - start )) s"
mkdir -p "$CACHE_ROOT/$k.tmp"
cp "$TREE/arch/x86/boot/bzImage" "$CACHE_ROOT/$k.tmp/bzImage"
cp "$TREE/.config" "$CACHE_ROOT/$k.tmp/config"
echo "$(make -C "$TREE" -s kernelrelease)" > "$CACHE_ROOT/$k.tmp/release"
rm -rf "$CACHE_ROOT/$k"
mv "$CACHE_ROOT/$k.tmp" "$CACHE_ROOT/$k"
echo "$CACHE_ROOT/$k/bzImage"
