#!/bin/sh
# In the guest: Debian's dpdk-testpmd on two of the same vfio-bound virtio-net NICs
# (same QEMU hub), io forwarding started with --tx-first; prints a CHECK line.
A=$1 C=$2
mkdir -p /mnt/huge /var/run && mount -t hugetlbfs nodev /mnt/huge
echo "GUEST: dpdk-testpmd io --tx-first on $A $C at $(cut -d' ' -f1 /proc/uptime)s"
# shellcheck disable=SC2046
timeout -s INT 40 /dpdk/dpdk-testpmd -l 0-1 -n 1 -m 256 $(cat /dpdk/plugins) \
	--no-telemetry --huge-dir /mnt/huge -a $A -a $C -- --forward-mode=io --tx-first --stats-period=0 \
	--total-num-mbufs=4096 --txd=256 --rxd=256 > /tmp/testpmd.log 2>&1 < /dev/null &
pid=$!
sleep 15
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
grep -E 'VIRTIO|virtio|Port [0-9]|rror' /tmp/testpmd.log | grep -v pci_unmap | head -8
grep -A3 'Accumulated forward statistics' /tmp/testpmd.log
rx=$(grep -A1 'Accumulated forward' /tmp/testpmd.log | awk '/RX-packets/{print $2}')
[ "${rx:-0}" -gt 100 ] && r=PASS || r=FAIL
tail -4 /tmp/testpmd.log
echo "CHECK testpmd_peer_io: $r (dpdk-testpmd forwarded ${rx:-0} packets between the same NICs; rc $rc)"
