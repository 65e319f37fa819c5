#!/bin/bash
# tests/vm/fetch.sh - fetch what the VFIO guest test needs, without touching the host:
# QEMU (installed with apt when that works, else unpacked with dpkg -x), Debian's guest
# kernel package (apt-get download + dpkg-deb, never installed), busybox-static.
#
# Output under $VM_CACHE (default: $CARGO_TARGET_DIR/vm or target/vm):
#   debs/ qroot/ (extracted QEMU when needed) kernel/vmlinux kernel/modules/*.ko
#   busybox  env (QEMU command prefix, kernel version used)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
C=${VM_CACHE:-${CARGO_TARGET_DIR:-$ROOT/target}/vm}
mkdir -p "$C/debs" "$C/kernel"
cd "$C"
log() { echo "fetch: $*"; }

[ -n "$(ls /var/lib/apt/lists/*Packages 2>/dev/null | head -1)" ] || apt-get update -qq

# Guest kernel: KPKG pins it; otherwise resolve what linux-image-amd64 depends on and record it.
KPKG=${KPKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$KPKG" ] || { echo "fetch: cannot resolve the guest kernel package (apt-get update?)"; exit 1; }
log "guest kernel package: $KPKG"

need=""
for p in "$KPKG" busybox-static; do ls debs/"${p}"_*.deb >/dev/null 2>&1 || need="$need $p"; done
[ -z "$need" ] || (cd debs && apt-get download $need)

# QEMU: a working system install, else `apt-get install`, else (e.g. when a newer
# qemu-utils blocks the install, as on the dev machines) unpack the debs with dpkg -x.
# QEMU_FROM_DEBS=1 forces the unpacked copy.
QEMU_SH="qemu-system-x86_64"
have_qemu() { [ "${QEMU_FROM_DEBS:-0}" != 1 ] && qemu-system-x86_64 -version >/dev/null 2>&1; }
if ! have_qemu; then
	if [ "${QEMU_FROM_DEBS:-0}" = 1 ] || ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends qemu-system-x86 >/dev/null 2>&1 || ! have_qemu; then
		log "using QEMU unpacked from its debs (apt-get install not possible or not wanted)"
		QP="qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu libcapstone4
		    libpmem1 librdmacm1 libslirp0 libvdeplug2 libndctl6 libdaxctl1 libexecs0"
		if [ ! -x qroot/usr/bin/qemu-system-x86_64 ]; then
			rm -rf qroot debs/q && mkdir -p qroot debs/q
			# shellcheck disable=SC2086
			(cd debs/q && apt-get download -qq $QP)
			for d in debs/q/*.deb; do dpkg -x "$d" qroot; done
		fi
		Q=$C/qroot
		QEMU_SH="env LD_LIBRARY_PATH=$Q/usr/lib/x86_64-linux-gnu QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu $Q/usr/bin/qemu-system-x86_64 -L $Q/usr/share/qemu -L $Q/usr/share/seabios -L $Q/usr/lib/ipxe/qemu"
	fi
fi
$QEMU_SH -version | head -1

K=kernel/root
if [ ! -f kernel/vmlinux ] || [ "$(cat kernel/package 2>/dev/null)" != "$KPKG" ]; then
	rm -rf "$K" && mkdir -p "$K"
	dpkg-deb --fsys-tarfile debs/"${KPKG}"_*.deb | tar -x -C "$K" --wildcards \
		'./boot/vmlinuz-*' '*/kernel/drivers/vfio/*' '*/kernel/virt/lib/irqbypass.ko'
	KVER=$(ls "$K"/lib/modules | head -1)
	# The uncompressed ELF vmlinux boots through PVH and skips the xz decompression (~6 s under TCG).
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$K/boot/vmlinuz-$KVER" | head -1 | cut -d: -f1 || true)
	if [ -n "$off" ] && tail -c +$((off + 1)) "$K/boot/vmlinuz-$KVER" | xz -dc --single-stream > kernel/vmlinux 2>/dev/null; then
		log "vmlinux extracted"
	else
		cp "$K/boot/vmlinuz-$KVER" kernel/vmlinux
	fi
	rm -rf kernel/modules && mkdir -p kernel/modules
	M=$K/lib/modules/$KVER/kernel
	for ko in virt/lib/irqbypass.ko drivers/vfio/vfio.ko drivers/vfio/vfio_iommu_type1.ko \
		drivers/vfio/vfio_virqfd.ko drivers/vfio/pci/vfio-pci-core.ko drivers/vfio/pci/vfio-pci.ko; do
		[ -f "$M/$ko" ] && cp "$M/$ko" kernel/modules/
	done
	echo "$KVER" > kernel/version
	echo "$KPKG" > kernel/package
	rm -rf "$K"
fi
if [ ! -x busybox ]; then
	rm -rf bb && mkdir bb && dpkg -x debs/busybox-static_*.deb bb && cp bb/bin/busybox busybox && rm -rf bb
fi
{
	echo "QEMU=\"$QEMU_SH\""
	echo "KPKG=$KPKG"
	echo "KVER=$(cat kernel/version)"
	echo "KDEB=$(ls debs/"${KPKG}"_*.deb | xargs -n1 basename)"
} > env
log "ready in $C: kernel $(cat kernel/version) ($(ls debs/"${KPKG}"_*.deb | xargs -n1 basename))"
