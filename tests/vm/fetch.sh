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

# QEMU: a working system install, else try apt-get install, else unpack the debs.
QEMU_SH="qemu-system-x86_64"
if ! qemu-system-x86_64 -version >/dev/null 2>&1; then
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		qemu-system-x86 >/dev/null 2>&1 || ! qemu-system-x86_64 -version >/dev/null 2>&1; then
		log "apt-get install qemu-system-x86 failed here: unpacking the debs instead"
		QP="qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu libcapstone4
		    libpmem1 librdmacm1 libslirp0 libvdeplug2 libndctl6 libdaxctl1 libfdt1 libibverbs1
		    libaio1 liburing2 libgfapi0 libglusterfs0 libgfrpc0 libgfxdr0 libiscsi7 librbd1
		    librados2 libnfs13 libssh-4 libusb-1.0-0 libusbredirparser1 libjpeg62-turbo
		    libpng16-16 libsnappy1v5 libspice-server1 libvirglrenderer1 libfuse3-3 libnuma1
		    libseccomp2 libpixman-1-0 libsdl2-2.0-0 libbpf1 liblzo2-2 libgnutls30 libexecs0
		    libepoxy0 libgbm1 libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1
		    libxenforeignmemory1 libxengnttab1 libxenstore4 libxentoolcore1 libxentoollog1
		    libxenhypfs1 libyajl2 libcacard0 libudev1 libglib2.0-0 libgmp10 libnettle8 libhogweed6"
			if [ ! -x qroot/usr/bin/qemu-system-x86_64 ]; then
			rm -rf qroot && mkdir -p qroot debs/q
			(cd debs/q && for p in $QP; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p" 2>/dev/null || log "(no $p)"; done)
			for d in debs/q/*.deb; do dpkg -x "$d" qroot; done
		fi
		Q=$C/qroot
		QEMU_SH="env LD_LIBRARY_PATH=$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu $Q/usr/bin/qemu-system-x86_64 -L $Q/usr/share/qemu -L $Q/usr/share/seabios -L $Q/usr/lib/ipxe/qemu"
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
