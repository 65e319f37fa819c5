#!/bin/bash
# tests/vm/fetch.sh - fetch what the VFIO guest test needs, without touching the host:
# QEMU 10 and the guest kernel 6.12 from bookworm-backports (a private apt configuration;
# debs downloaded and unpacked with dpkg -x / dpkg-deb, never installed), busybox-static.
#
# Output under $VM_CACHE (default: $CARGO_TARGET_DIR/vm or target/vm):
#   bpo/ (backports apt lists) debs/ qroot10/ (QEMU 10) kernel/vmlinux kernel/modules/*.ko
#   busybox  env (QEMU command prefix, kernel version used)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
C=${VM_CACHE:-${CARGO_TARGET_DIR:-$ROOT/target}/vm}
mkdir -p "$C/debs" "$C/kernel"
cd "$C"
log() { echo "fetch: $*"; }

[ -n "$(ls /var/lib/apt/lists/*Packages 2>/dev/null | head -1)" ] || apt-get update -qq

# Debian bookworm-backports, for the guest only (QEMU 10 emulates the 82576, `-device igb`;
# kernel 6.12): a private apt configuration under $C/bpo, the host's sources stay untouched.
B=$C/bpo
mkdir -p "$B/lists/partial"
echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$B/sources.list"
BPO=(-o "Dir::Etc::sourcelist=$B/sources.list" -o Dir::Etc::sourceparts=/nonexistent -o "Dir::State::Lists=$B/lists")
[ -n "$(ls "$B"/lists/*Packages 2>/dev/null | head -1)" ] || apt-get "${BPO[@]}" update -qq ||
	{ echo "fetch: apt-get update of bookworm-backports failed"; exit 1; }

# Guest kernel: KPKG pins it; otherwise resolve what backports' linux-image-amd64 depends on and record it.
KPKG=${KPKG:-$(apt-cache "${BPO[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$KPKG" ] || { echo "fetch: cannot resolve the guest kernel package (apt-get update?)"; exit 1; }
log "guest kernel package: $KPKG (bookworm-backports)"

ls debs/"${KPKG}"_*.deb >/dev/null 2>&1 || (cd debs && apt-get "${BPO[@]}" download "$KPKG")
ls debs/busybox-static_*.deb >/dev/null 2>&1 || (cd debs && apt-get download busybox-static)

# QEMU 10 from backports, unpacked with dpkg -x (bookworm's own QEMU 7.2 has no igb, and the
# install is blocked on the dev machines); its libraries come from bookworm main.
QBPO="qemu-system-x86 qemu-system-common qemu-system-data"
QMAIN="seabios ipxe-qemu libcapstone4 libpmem1 librdmacm1 libslirp0 libvdeplug2 libndctl6 libdaxctl1
       libexecs0 libcacard0 libusb-1.0-0 libusbredirparser1 libbpf1 libfuse3-3 liburing2 libbrlapi0.8
       libasound2 libibverbs1"
Q=$C/qroot10
if [ ! -x "$Q/usr/bin/qemu-system-x86_64" ]; then
	rm -rf "$Q" debs/q10 && mkdir -p "$Q" debs/q10
	# shellcheck disable=SC2086
	(cd debs/q10 && apt-get "${BPO[@]}" download -qq $QBPO && apt-get download -qq $QMAIN)
	for d in debs/q10/*.deb; do dpkg -x "$d" "$Q"; done
fi
QEMU_SH="env LD_LIBRARY_PATH=$Q/usr/lib/x86_64-linux-gnu QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu $Q/usr/bin/qemu-system-x86_64 -L $Q/usr/share/qemu -L $Q/usr/share/seabios -L $Q/usr/lib/ipxe/qemu"
$QEMU_SH -version | head -1
$QEMU_SH -device igb,help >/dev/null 2>&1 || { echo "fetch: this QEMU has no -device igb"; exit 1; }

K=kernel/root
if [ ! -f kernel/vmlinux ] || [ "$(cat kernel/package 2>/dev/null)" != "$KPKG" ] || [ ! -f kernel/modules/virtio_net.ko ]; then
	rm -rf "$K" && mkdir -p "$K"
	dpkg-deb --fsys-tarfile debs/"${KPKG}"_*.deb | tar -x -C "$K" --wildcards \
		'./boot/vmlinuz-*' '*/kernel/drivers/vfio/*' '*/kernel/virt/lib/irqbypass.ko*' \
		'*/kernel/net/core/failover.ko*' '*/kernel/drivers/net/net_failover.ko*' '*/kernel/drivers/net/virtio_net.ko*'
	# 6.12's modules are xz-compressed; busybox insmod takes them plain.
	find "$K" -name '*.ko.xz' -exec xz -d {} +
	KVER=$(ls "$K"/lib/modules | head -1)
	# The uncompressed ELF vmlinux boots through PVH and skips the decompression (~6 s under
	# TCG): 6.1's bzImage holds an xz payload, 6.12's a zstd one (zstd exits 1 on the data
	# after the frame; the ELF magic says whether it worked).
	V=$K/boot/vmlinuz-$KVER
	elf() { [ "$(head -c4 kernel/vmlinux 2>/dev/null | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; }
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$V" | head -1 | cut -d: -f1 || true)
	[ -z "$off" ] || tail -c +$((off + 1)) "$V" | xz -dc --single-stream > kernel/vmlinux 2>/dev/null || true
	if ! elf && command -v zstd >/dev/null; then
		off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$V" | head -1 | cut -d: -f1 || true)
		[ -z "$off" ] || tail -c +$((off + 1)) "$V" | zstd -dcq > kernel/vmlinux 2>/dev/null || true
	fi
	if elf; then log "vmlinux extracted"; else cp "$V" kernel/vmlinux; log "booting the compressed bzImage"; fi
	rm -rf kernel/modules && mkdir -p kernel/modules
	M=$K/lib/modules/$KVER/kernel
	for ko in virt/lib/irqbypass.ko drivers/vfio/vfio.ko drivers/vfio/vfio_iommu_type1.ko \
		drivers/vfio/vfio_virqfd.ko drivers/vfio/pci/vfio-pci-core.ko drivers/vfio/pci/vfio-pci.ko \
		net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
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
