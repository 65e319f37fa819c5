#!/bin/sh
# In the guest: Debian's dpdk-testpmd as a peer on the same vfio-bound virtio-net NICs
# xfwd used (same QEMU hub): testpmd rxonly on A, testpmd txonly on C, like xfwd's
# txonly/rxonly check; prints a PEER line to read beside xfwd's CHECKs. Correctness only.
A=$1 C=$2 AMAC=${3:-52:54:00:12:00:03} # the MAC run.sh gives the NIC at 00:03.0
mkdir -p /mnt/huge /var/run && mount -t hugetlbfs nodev /mnt/huge
TP="/dpdk/dpdk-testpmd -n 1 -m 128 $(cat /dpdk/plugins) --no-telemetry --huge-dir /mnt/huge"
OPTS="--stats-period=0 --total-num-mbufs=2048 --txd=256 --rxd=256"
echo "GUEST: dpdk-testpmd rxonly on $A, txonly on $C at $(cut -d' ' -f1 /proc/uptime)s"
# shellcheck disable=SC2086
timeout -s INT 150 $TP -l 0-1 --file-prefix tprx -a $A -- --forward-mode=rxonly $OPTS > /tmp/tprx.log 2>&1 < /dev/null &
rxpid=$!
i=0
while ! grep -q 'Start automatic packet forwarding\|Press enter' /tmp/tprx.log && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
echo "GUEST: testpmd rxonly forwarding after $((i / 5)) s"
# shellcheck disable=SC2086
timeout -s INT 90 $TP -l 0-1 --file-prefix tptx -a $C --log-level=pmd.net.virtio.init:debug --log-level=pmd.net.virtio.driver:debug -- --forward-mode=txonly --eth-peer=0,$(cat /sys/bus/pci/devices/$A/../$A/net/*/address 2>/dev/null || echo 52:54:00:12:00:03) $OPTS > /tmp/tptx.log 2>&1 < /dev/null &
txpid=$!
# EAL start-up under TCG takes seconds: forward for 3 s once forwarding started.
i=0
while ! grep -q 'Start automatic packet forwarding\|Press enter' /tmp/tptx.log && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
echo "GUEST: testpmd txonly forwarding after $((i / 5)) s"
sleep 3
kill -INT $txpid 2>/dev/null
wait $txpid
txrc=$?
tx=$(grep -A2 'Accumulated forward' /tmp/tptx.log | awk '/TX-packets/{print $2}')
rx=$(grep -A1 'Accumulated forward' /tmp/tprx.log | awk '/RX-packets/{print $2}')
grep -E 'Probe PCI driver|rror' /tmp/tptx.log /tmp/tprx.log | grep -v pci_unmap | head -4
[ "${rx:-0}" -gt 1000 ] && [ "${rx:-0}" -le "${tx:-0}" ] && r=PASS || { r=FAIL; tail -n 40 /tmp/tptx.log; tail -n 15 /tmp/tprx.log; }
# Informational (not part of VM RESULT): the peer's own result beside xfwd's checks.
echo "PEER testpmd_txonly_rxonly: $r (dpdk-testpmd txonly sent ${tx:-?}, rxonly received ${rx:-?}; rc $txrc/$rxrc)"
# Interop: testpmd's txonly into xfwd's rxonly (which side of the pair above fails?).
/xfwd --nb-mbufs 4096 --json --stats-period 0 --port vfio:$A --forward-mode rxonly -l 1 --duration 40 > /tmp/xrx.json 2> /tmp/xrx.log &
xpid=$!
i=0
while ! grep -q 'started' /tmp/xrx.log && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
# shellcheck disable=SC2086
timeout -s INT 90 $TP -l 0-1 --file-prefix tptx2 -a $C -- --forward-mode=txonly --eth-peer=0,$AMAC $OPTS > /tmp/tptx2.log 2>&1 < /dev/null &
tpid=$!
i=0
while ! grep -q 'Start automatic packet forwarding\|Press enter' /tmp/tptx2.log && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
sleep 3
kill -INT $tpid 2>/dev/null; wait $tpid
sleep 1
kill -INT $xpid 2>/dev/null; wait $xpid
tx2=$(grep -A2 'Accumulated forward' /tmp/tptx2.log | awk '/TX-packets/{print $2}')
rx2=$(grep -o '"rx_packets":[0-9]*' /tmp/xrx.json | tail -1 | cut -d: -f2)
[ "${rx2:-0}" -gt 1000 ] && [ "${rx2:-0}" = "${tx2:-x}" ] && r=PASS || { r=FAIL; tail -n 5 /tmp/tptx2.log /tmp/xrx.log; }
echo "PEER testpmd_txonly_to_xfwd_rxonly: $r (dpdk-testpmd txonly sent ${tx2:-?}, xfwd rxonly received ${rx2:-?})"
