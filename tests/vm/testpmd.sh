#!/bin/bash
# tests/vm/testpmd.sh INITRAMFS_DIR - add Debian's dpdk-testpmd (22.11) to the guest
# initramfs as a peer check: the binary, the PMDs it needs (bus_pci, mempool_ring,
# net_virtio, net_e1000 for the 82576) and the shared libraries they load (ldd closure). Installs the
# `dpdk` package on the host when missing (apt). Correctness only: TCG timings
# say nothing about speed.
set -euo pipefail
R=$1
HERE=$(cd "$(dirname "$0")" && pwd)
command -v dpdk-testpmd >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpdk >/dev/null
P=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* | head -1)
mkdir -p "$R/dpdk"
cp "$(command -v dpdk-testpmd)" "$R/dpdk/dpdk-testpmd"
# Libraries keep their absolute paths: testpmd already links some PMDs (bus_pci)
# from the pmds directory, and loading a second copy with -d aborts EAL.
objs=("$(command -v dpdk-testpmd)")
: > "$R/dpdk/plugins"
for p in mempool_ring net_virtio net_e1000; do
	objs+=("$P/librte_$p.so.23")
	echo "-d $P/librte_$p.so.23" >> "$R/dpdk/plugins"
done
# glibc dlopens libgcc_s for pthread_cancel at exit.
objs+=("$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/{l = $NF} END {print l}')")
for o in "${objs[@]}"; do
	echo "$o"
	ldd "$o" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'
done | sort -u | grep -v dpdk-testpmd | while read -r l; do
	mkdir -p "$R$(dirname "$l")"
	cp -L "$l" "$R$l"
done
cp "$HERE/run-testpmd.sh" "$R/dpdk/run-testpmd.sh"
echo "testpmd peer added ($(find "$R" -name 'lib*.so*' | wc -l) libraries)"
