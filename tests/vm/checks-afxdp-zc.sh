# tests/vm/checks-afxdp-zc.sh - sourced by guest-init.sh: AF_XDP zero-copy on virtio-net
# driven by the guest KERNEL's virtio_net driver (not vfio). Four virtio-net NICs that
# devbind never binds: S 00:0e.0 + P1 00:0f.0 on hub4, P2 00:10.0 + K 00:11.0 on hub5.
# The pmd guest test runs af_xdp zero_copy=1 on P1 and P2 (io P1 -> P2), frames from an
# AF_PACKET socket on S to one on K. Prints CHECK lines (4 from the test + 1 for its rc).
echo "GUEST: AF_XDP zero-copy checks at $(cut -d' ' -f1 /proc/uptime)s"
# No IPv6 on the new interfaces: no router solicitation or DAD frame in the exact counts.
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
for m in failover net_failover virtio_net; do
	insmod /modules/$m.ko 2>/dev/null || echo "GUEST: insmod $m failed"
done
zc_if() { # interface name of the NIC with MAC $1
	for n in /sys/class/net/*; do [ "$(cat $n/address)" = "$1" ] && { echo "${n##*/}"; return; }; done
}
i=0
while [ -z "$(zc_if 52:54:00:12:00:11)" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
ZS=$(zc_if 52:54:00:12:00:0e) ZP1=$(zc_if 52:54:00:12:00:0f) ZP2=$(zc_if 52:54:00:12:00:10) ZK=$(zc_if 52:54:00:12:00:11)
for n in $ZS $ZP1 $ZP2 $ZK; do
	ip link set $n up
	echo "GUEST: $n $(cat /sys/class/net/$n/address) driver=$(basename "$(readlink /sys/class/net/$n/device/driver)") virtio features $(cat /sys/class/net/$n/device/features) queues rx=$(ls -d /sys/class/net/$n/queues/rx-* | wc -l)"
done
ip link set "$ZK" promisc on # K takes the frames P2 forwards with P1's destination MAC
env RUST_LOG=info XFWD_VM_AFXDP="$ZS $ZP1 $ZP2 $ZK" timeout 300 /vfio_vm --nocapture --test-threads=1 guest_afxdp \
	> /tmp/afxdp_zc.log 2>&1
rc=$?
grep -E '^CHECK|zero-copy|copy mode|panicked|test result' /tmp/afxdp_zc.log
[ $rc = 0 ] && r=PASS || { r=FAIL; grep -v '^CHECK' /tmp/afxdp_zc.log | tail -20; }
echo "CHECK afxdp_zc_test: $r (rc $rc)"
for n in $ZS $ZP1 $ZP2 $ZK; do # the kernel's own interface counters
	st=/sys/class/net/$n/statistics
	echo "GUEST: $n rx $(cat $st/rx_packets) (dropped $(cat $st/rx_dropped)) tx $(cat $st/tx_packets) (dropped $(cat $st/tx_dropped))"
done
dmesg | grep -iE 'virtio_net|xdp|xsk' | tail -5
