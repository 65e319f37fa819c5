#!/bin/sh
# In the guest: Debian's dpdk-testpmd as a peer on the same vfio-bound virtio-net NICs
# xfwd uses (A and C share a QEMU hub). Three PEER lines, read beside xfwd's CHECKs
# (correctness only; TCG timings mean nothing):
#   testpmd_txonly_rxonly            testpmd txonly on C → testpmd rxonly on A
#   testpmd_txonly_to_xfwd_rxonly    testpmd txonly on C → xfwd rxonly on A
#   xfwd_txonly_to_testpmd_rxonly    xfwd txonly on C → testpmd rxonly on A
# Each passes when the receiver counted exactly what the sender's device took. Every
# sender is bounded by count (QEMU 10's hub no longer back-pressures a full-speed
# txonly: 13.9 M frames in one check): testpmd sends exactly N bursts of 256
# (`start tx_first N` in io mode, nothing arrives on its port), xfwd a bounded rate
# for 3 s; the sender then stops and lets its TX ring drain before its port stops
# (testpmd's interactive `stop`, then `quit`).
#
# `run-testpmd.sh E F 52:54:00:12:00:07 igb`: the same on two 82576 with DPDK's net_e1000_igb,
# only the two checks against xfwd (named igb_...).
A=$1 C=$2 AMAC=${3:-52:54:00:12:00:03} # the MAC run.sh gives the NIC at 00:03.0
TAG=${4:+$4_}
mkdir -p /mnt/huge /var/run
grep -q ' /mnt/huge ' /proc/mounts || mount -t hugetlbfs nodev /mnt/huge
TP="/dpdk/dpdk-testpmd -n 1 -m 128 $(cat /dpdk/plugins) --no-telemetry --huge-dir /mnt/huge"
# The receivers run with --stats-period, which keeps a non-interactive testpmd forwarding
# until SIGINT: without it,
# it waits for "enter" on stdin and, stdin being /dev/null, stops at once (which left
# the receiving NIC driverless and QEMU's hub holding the sender's first frame).
OPTS="--total-num-mbufs=2048 --txd=256 --rxd=256"

# wait_for FILE PATTERN: up to 300 s (EAL start-up under TCG takes seconds, minutes on a
# loaded host; the waits only last as long as the start-up does).
wait_for() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 1500 ]; do sleep 0.2; i=$((i + 1)); done
}
# rx_start PREFIX: testpmd rxonly on A in the background until rx_stop.
rx_start() {
	# shellcheck disable=SC2086
	timeout -s INT 400 $TP -l 0-1 --file-prefix "$1" -a $A -- --forward-mode=rxonly --stats-period=1 $OPTS > "/tmp/$1.log" 2>&1 < /dev/null &
	rxpid=$!
	wait_for "/tmp/$1.log" 'Start automatic packet forwarding'
	sleep 1
}
# rx_stop PREFIX: SIGINT (it prints its totals); sets rx to the frames it received.
rx_stop() {
	kill -INT $rxpid 2>/dev/null
	wait $rxpid
	rx=$(grep -A1 'Accumulated forward' "/tmp/$1.log" | awk '/RX-packets/{print $2}')
}
# tx_bursts PREFIX N: testpmd io on C sends exactly N bursts of 256 (`start tx_first N`)
# and forwards nothing else (nothing arrives on C): a count-bounded sender, as neither
# QEMU 10's hub (virtio-net) nor its 82576 model back-pressures a full-speed txonly.
# Sets tx to the frames the sender's device took (its port's TX-packets), txx to its
# `show port xstats` tx_good_packets.
tx_bursts() {
	: > "/tmp/$1.log"
	# shellcheck disable=SC2086
	{ wait_for "/tmp/$1.log" 'testpmd> '; echo "start tx_first $2"; sleep 3; echo stop; sleep 2; echo "show port xstats 0"; sleep 1; echo quit; } |
		timeout -s INT 400 $TP -l 0-1 --file-prefix "$1" -a $C -- -i --forward-mode=io --burst=256 --eth-peer=0,$AMAC $OPTS --txd=512 > "/tmp/$1.log" 2>&1
	tx=$(grep -A2 'Accumulated forward' "/tmp/$1.log" | awk '/TX-packets/{print $2}' | head -1)
	txx=$(awk '$1 == "tx_good_packets:" {print $2}' "/tmp/$1.log" | tail -1)
}
verdict() { [ "${1:-0}" -gt 200 ] && [ "$1" = "$2" ] && r=PASS || r=FAIL; }

echo "GUEST: dpdk-testpmd peer on $A (rx) and $C (tx) at $(cut -d' ' -f1 /proc/uptime)s"
if [ -z "$TAG" ]; then
	rx_start tprx
	tx_bursts tptx 5
	rx_stop tprx
	grep -hE 'Probe PCI driver' /tmp/tptx.log /tmp/tprx.log | head -2
	verdict "$rx" "$tx"
	[ $r = PASS ] || tail -n 20 /tmp/tptx.log /tmp/tprx.log
	echo "PEER testpmd_txonly_rxonly: $r (dpdk-testpmd took ${tx:-?} of 5 bursts of 256 offered, xstats tx_good_packets ${txx:-?}; rxonly received ${rx:-?})"
fi

# A long --duration, ended by SIGTERM once testpmd is done (EAL start-up under TCG can
# take most of a minute; a background job of a non-interactive shell ignores SIGINT).
/xfwd --nb-mbufs 4096 --json --stats-period 0 --port vfio:$A --forward-mode rxonly -l 1 --duration 300 > /tmp/xrx.json 2> /tmp/xrx.log &
xpid=$!
# xfwd prints its DMA mappings once the port is started, right before its lcores poll.
wait_for /tmp/xrx.log '^  dma '
sleep 1
tx_bursts ${TAG}tptx2 5
sleep 3
kill -TERM $xpid 2>/dev/null
wait $xpid
rx=$(grep -o '"rx_packets":[0-9]*' /tmp/xrx.json | tail -1 | cut -d: -f2)
verdict "$rx" "$tx"
[ $r = PASS ] || tail -n 5 /tmp/${TAG}tptx2.log /tmp/xrx.log
grep -hE 'Probe PCI driver' "/tmp/${TAG}tptx2.log" | head -1
echo "PEER ${TAG}testpmd_txonly_to_xfwd_rxonly: $r (dpdk-testpmd took ${tx:-?} of 5 bursts of 256 offered, xstats tx_good_packets ${txx:-?}; xfwd rxonly received ${rx:-?})"

rx_start ${TAG}tprx3
# xfwd bounds its rate (no back-pressure on either device, see tx_bursts).
/xfwd --nb-mbufs 4096 --json --stats-period 0 --port vfio:$C --forward-mode txonly --eth-peer 0,$AMAC --tx-rate 10k -l 1 --duration 3 > /tmp/xtx.json 2> /tmp/xtx.log
xrc=$?
sleep 3
rx_stop ${TAG}tprx3
tx=$(grep -o '"tx_packets":[0-9]*' /tmp/xtx.json | tail -1 | cut -d: -f2)
verdict "$rx" "$tx"
[ $r = PASS ] || tail -n 5 /tmp/${TAG}tprx3.log /tmp/xtx.log
echo "PEER ${TAG}xfwd_txonly_to_testpmd_rxonly: $r (xfwd txonly sent ${tx:-?}, dpdk-testpmd rxonly received ${rx:-?}; xfwd rc $xrc)"
