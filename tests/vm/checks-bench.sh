# tests/vm/checks-bench.sh - sourced by guest-init.sh when the kernel command line has
# xfwd.bench (run.sh's BENCH=1): xfwd vs DPDK testpmd (net_e1000_igb), txonly on the same
# emulated 82576 (F), one forwarding lcore each on vCPU 1, 64-byte frames to E's MAC.
# Under TCG the "device" is QEMU's igb model running on the same host CPUs, called from the
# vCPU on each tail write: the figures are the per-packet cost of driver + emulated device
# as the guest sees it, NOT line rate, and compare the two drivers only.
# Prints "BENCH igb_txonly xfwd|testpmd: X Mpps Y ns/pkt" (ns/pkt = 1e9 / pps of one busy lcore).
[ -x /dpdk/dpdk-testpmd ] || { echo "BENCH: no testpmd in the initramfs (TESTPMD=0)"; return 0 2>/dev/null; }
BS=${BENCH_SECS:-6}
echo "GUEST: bench on $F at $(up)s (${BS} s each, xfwd first, then testpmd)"
mkdir -p /mnt/huge /var/run # (EAL needs /var/run/dpdk; the initramfs has no /var)
grep -q ' /mnt/huge ' /proc/mounts || mount -t hugetlbfs nodev /mnt/huge
# xfwd: the mean of the period rates after the first two seconds.
/xfwd --nb-mbufs 4096 --json --port vfio:$F --forward-mode txonly --eth-peer 0,$EMAC -l 1 --duration $((BS + 2)) --stats-period 1 \
	> /tmp/bx.json 2> /tmp/bx.log
xpps=$(grep '"type":"period"' /tmp/bx.json | sed 's/.*"total":{//' | grep -o '"tx_pps":[0-9]*' | cut -d: -f2 |
	tail -n +3 | awk '{s += $1; n++} END {if (n) printf "%d", s / n}')
xns=$(grep '"type":"final"' /tmp/bx.json | grep -o '"ns_per_pkt":[0-9.]*' | head -1 | cut -d: -f2)
echo "BENCH igb_txonly xfwd: $(echo "${xpps:-0}" | awk '{printf "%.3f Mpps %.0f ns/pkt", $1 / 1e6, $1 ? 1e9 / $1 : 0}') (xfwd's own busy ns/pkt ${xns:-?})"
# testpmd: its own Tx-pps over BS seconds of forwarding (`show port stats` twice).
TPB="/dpdk/dpdk-testpmd -n 1 -m 128 $(cat /dpdk/plugins) --no-telemetry --huge-dir /mnt/huge"
: > /tmp/bt.log
# shellcheck disable=SC2086
{
	i=0
	while ! grep -q 'testpmd> ' /tmp/bt.log && [ $i -lt 1500 ]; do sleep 0.2; i=$((i + 1)); done
	echo start; sleep 2; echo "show port stats 0"; sleep "$BS"; echo "show port stats 0"; echo stop; sleep 2; echo quit
} | timeout -s INT 400 $TPB -l 0-1 --file-prefix bench -a $F -- -i --forward-mode=txonly --eth-peer=0,$EMAC \
	--total-num-mbufs=4096 --txd=512 --rxd=256 > /tmp/bt.log 2>&1
tpps=$(awk '/Tx-pps:/{print $2}' /tmp/bt.log | tail -1)
[ "${tpps:-0}" -gt 0 ] 2>/dev/null || grep -E 'pps|TX-packets|Link|Port 0|rror|Start' /tmp/bt.log | tail -20
echo "BENCH igb_txonly testpmd: $(echo "${tpps:-0}" | awk '{printf "%.3f Mpps %.0f ns/pkt", $1 / 1e6, $1 ? 1e9 / $1 : 0}')"
rm -rf /var/run/dpdk/bench
