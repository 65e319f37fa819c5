#!/bin/bash
# tests/vm/testpmd.sh INITRAMFS_DIR - add Debian's dpdk-testpmd (22.11) to the guest
# initramfs as a peer check: the binary, the PMDs it needs (bus_pci, mempool_ring,
# net_virtio) and the shared libraries they load (ldd closure). Installs the
# `dpdk` package on the host when missing (apt). Correctness only: TCG timings
# say nothing about speed.
set -euo pipefail
R=$1
HERE=$(cd "$(dirname "$0")" && pwd)
command -v dpdk-testpmd >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpdk >/dev/null
P=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* | head -1)
mkdir -p "$R/dpdk/pmds" "$R/lib64" "$R/lib/x86_64-linux-gnu"
cp "$(command -v dpdk-testpmd)" "$R/dpdk/dpdk-testpmd"
objs=("$(command -v dpdk-testpmd)")
for p in bus_pci mempool_ring net_virtio; do
	cp -L "$P/librte_$p.so" "$R/dpdk/pmds/"
	objs+=("$P/librte_$p.so")
done
for o in "${objs[@]}"; do
	ldd "$o" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'
done | sort -u | while read -r l; do
	case $l in /lib64/*) cp -L "$l" "$R/lib64/" ;; *) cp -L "$l" "$R/lib/x86_64-linux-gnu/" ;; esac
done
cp "$HERE/run-testpmd.sh" "$R/dpdk/run-testpmd.sh"
echo "testpmd peer added: $(du -sh "$R/dpdk" "$R/lib" | awk '{print $1}' | tr '\n' ' ')"
