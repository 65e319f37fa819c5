#!/bin/busybox sh
# /init of the VFIO test guest (built into the initramfs by tests/vm/run.sh).
#
# NICs (virtio-net modern, iommu_platform=on; Intel 82576 igb), four QEMU hubs, no host network:
#   hub0: A=00:03.0  C=00:04.0        hub1: B=00:05.0  D=00:06.0      (virtio-net)
#   hub2: E=00:07.0  F=00:09.0        hub3: G=00:0b.0  H=00:0d.0      (igb)
# Checks print "CHECK <name>: PASS|FAIL <detail>"; run.sh collects them.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp
up() { cut -d' ' -f1 /proc/uptime; }
check() { echo "CHECK $1: $2 $3"; }
echo "GUEST: init at $(up)s, kernel $(uname -r)"
# (vfio_virqfd is part of vfio.ko since Linux 6.2: load what the kernel package has.)
for m in irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do
	[ -f /modules/$m.ko ] || continue
	insmod /modules/$m.ko || echo "GUEST: insmod $m failed"
done
echo 256 > /proc/sys/vm/nr_hugepages
echo "GUEST: HugePages_Total=$(awk '/HugePages_Total/{print $2}' /proc/meminfo)"
A=0000:00:03.0 C=0000:00:04.0 B=0000:00:05.0 D=0000:00:06.0
E=0000:00:07.0 F=0000:00:09.0 G=0000:00:0b.0 H=0000:00:0d.0 EMAC=52:54:00:12:00:07
for b in $A $C $B $D $E $F $G $H; do
	d=/sys/bus/pci/devices/$b
	g=$(readlink $d/iommu_group); drv=$(readlink $d/driver)
	echo "GUEST: $b $(cat $d/vendor):$(cat $d/device) iommu_group=${g##*/} driver=${drv##*/}"
done
dmar_faults() { dmesg | grep -c 'DMAR: \[DMA' ; }

# GUEST_APPEND=xfwd.only=afxdp: only the AF_XDP zero-copy checks (for iterating on them).
grep -q 'xfwd.only=afxdp' /proc/cmdline && { . /checks-afxdp-zc.sh; echo "GUEST: done at $(up)s"; poweroff -f; }
# --- devbind: our host tool binds every NIC to vfio-pci -------------------
/xfwd-host devbind --bind vfio-pci $A $C $B $D $E $F $G $H > /tmp/bind.log 2>&1
rc=$?
bound=0
for b in $A $C $B $D $E $F $G $H; do
	drv=$(readlink /sys/bus/pci/devices/$b/driver)
	[ "${drv##*/}" = vfio-pci ] && bound=$((bound + 1))
done
nvfio=$(ls /dev/vfio | grep -c '^[0-9]')
[ $rc = 0 ] && [ $bound = 8 ] && [ "$nvfio" -ge 8 ] && r=PASS || { r=FAIL; cat /tmp/bind.log; }
check devbind_bind $r "(rc $rc, $bound/8 on vfio-pci, /dev/vfio: $(ls /dev/vfio | tr '\n' ' '))"
/xfwd-host devbind --status > /tmp/status.log 2>&1
n=$(grep -c "(igb driver, 82576)" /tmp/status.log)
[ "$n" = 4 ] && ! grep -q 'warning' /tmp/bind.log && r=PASS || { r=FAIL; cat /tmp/status.log; }
check devbind_knows_igb $r "($n of 4 igb NICs listed as driven by xfwd's igb driver, no bind warning)"

# xfwd.bench_only (run.sh's BENCH=only): the igb side-by-side alone, then power off.
grep -q xfwd.bench_only /proc/cmdline && { . /checks-bench.sh; echo "GUEST: done at $(up)s"; poweroff -f; }

# --- peer: DPDK testpmd on the same NICs (when the initramfs has it) -------
if [ -x /dpdk/dpdk-testpmd ]; then
	/bin/sh /dpdk/run-testpmd.sh $A $C
	# The same peer with DPDK's net_e1000_igb on two 82576 (testpmd -> xfwd, xfwd -> testpmd).
	/bin/sh /dpdk/run-testpmd.sh $E $F 52:54:00:12:00:07 igb
	# GUEST_APPEND=xfwd.peer_only: stop after the peer (for debugging it).
	grep -q 'xfwd.peer_only' /proc/cmdline && { echo "GUEST: peer only, done at $(up)s"; poweroff -f; }
fi

# --- the driver through the pmd API (test binary) ------------------------
# pmd_test CHECK FILTER [VAR=VALUE...]: the pmd guest test binary's tests matching FILTER
# (their CHECK lines are printed), then CHECK for its exit code.
pmd_test() {
	name=$1 filter=$2; shift 2
	env "$@" RUST_LOG=info /vfio_vm --nocapture --test-threads=1 "$filter" > "/tmp/$name.log" 2>&1
	rc=$?
	grep -E '^CHECK|bad frame|flow |panicked|test result' "/tmp/$name.log"
	[ $rc = 0 ] && r=PASS || { r=FAIL; grep -v '^CHECK' "/tmp/$name.log" | tail -20; }
	check "$name" $r "(rc $rc)"
}
echo "GUEST: pmd driver test at $(up)s"
pmd_test driver_test guest_driver XFWD_VM_NICS="$A $C"

# JSON number from xfwd's final line: jnum FILE PORT KEY (the per-port "fwd" object is dropped).
jnum() {
	grep '"type":"final"' "$1" | sed 's/"fwd":{[^}]*}//g' | tr '{' '\n' | grep "\"port\":$2[,}]" |
		grep -o "\"$3\":[0-9]*" | head -1 | cut -d: -f2
}
# Number from the per-port "fwd" object: jfwd FILE PORT KEY.
jfwd() {
	# The per-reason "drops":{...} map would split the fwd object: drop it first.
	grep '"type":"final"' "$1" | sed 's/.*"ports":\[//; s/"drops":{[^}]*}//g' | tr '{' '\n' | grep "\"port\":$2[,}]" |
		cut -d'}' -f1 | grep -o "\"$3\":[0-9]*" | head -1 | cut -d: -f2
}
# Every "mapped R" has its "unmapped R", and no mapping has IOVA == VA.
maps_ok() {
	m=$(grep -o ': mapped va=[^ ]* iova=[^ ]* len=[^ ]*' "$1" | sed 's/^: mapped //' | sort)
	u=$(grep -o ': unmapped va=[^ ]* iova=[^ ]* len=[^ ]*' "$1" | sed 's/^: unmapped //' | sort)
	same=$(echo "$m" | awk '{split($1,v,"=");split($2,i,"="); if (v[2]==i[2]) print}')
	nm=$(echo "$m" | grep -c va=)
	[ "$nm" -gt 0 ] && [ "$m" = "$u" ] && [ -z "$same" ]
}
start_wait() { # wait until xfwd's log says the port started (bounded)
	i=0
	while ! grep -q 'started' "$1" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
}
export RUST_LOG=info,xfwd_pmd::dma=debug
X="/xfwd --nb-mbufs 4096 --json --stats-period 0"

# rxtx P RX TX [TXOPT...]: xfwd rxonly on RX, txonly on TX for 4 s (logs /tmp/P{rx,tx}.*);
# checks Pxfwd_txonly_rxonly (counts equal), Pxfwd_iova_ne_va_and_exact_unmap, Pxfwd_no_leak.
# Receivers get a long --duration and are ended by SIGTERM once the sender is done (a
# background job of a non-interactive shell ignores SIGINT; a busy TCG guest can take
# longer to start the sender than a short duration would allow).
rxtx() {
	p=$1 rp=$2 tp=$3; shift 3
	echo "GUEST: xfwd rxonly $rp / txonly $tp at $(up)s"
	$X --port vfio:$rp --forward-mode rxonly -l 1 --duration 300 > /tmp/${p}rx.json 2> /tmp/${p}rx.log &
	rxpid=$!
	start_wait /tmp/${p}rx.log
	$X --port vfio:$tp --forward-mode txonly "$@" -l 0 --duration 4 > /tmp/${p}tx.json 2> /tmp/${p}tx.log
	txrc=$?
	sleep 1
	kill -TERM $rxpid 2>/dev/null; wait $rxpid; rxrc=$?
	tx=$(jnum /tmp/${p}tx.json 0 tx_packets); rx=$(jnum /tmp/${p}rx.json 0 rx_packets)
	if [ $txrc = 0 ] && [ $rxrc = 0 ] && [ "${tx:-0}" -gt 0 ] && [ "${tx:-0}" = "${rx:-x}" ]; then r=PASS; else
		r=FAIL; tail -5 /tmp/${p}tx.log /tmp/${p}rx.log; fi
	check ${p}xfwd_txonly_rxonly $r "(txonly sent ${tx:-?}, rxonly received ${rx:-?}; rc $txrc/$rxrc; $(grep -o 'vfio [^:]*: [a-z]*[^,]*' /tmp/${p}rx.log | head -1))"
	maps_ok /tmp/${p}tx.log && maps_ok /tmp/${p}rx.log && r=PASS || r=FAIL
	check ${p}xfwd_iova_ne_va_and_exact_unmap $r "($(grep -c ': mapped va=' /tmp/${p}tx.log) mappings in the txonly run, $(grep -c ': unmapped va=' /tmp/${p}tx.log) unmapped)"
	grep -m3 -E 'gets IOVAs|: mapped va=|unmapped va=' /tmp/${p}tx.log
	l=$(grep '"type":"final"' /tmp/${p}tx.json /tmp/${p}rx.json | grep -c '"leaked_mbufs":0')
	[ "$l" = 2 ] && r=PASS || r=FAIL
	check ${p}xfwd_no_leak $r "(leaked_mbufs 0 in $l of 2 runs)"
}
# iofwd P SRC IN OUT SINK SINKOPT [SRCOPT...]: SRC txonly -> IN (io) -> OUT -> SINK rxonly;
# checks Pxfwd_io_forward (every frame accounted for: what OUT's TX ring did not take is
# counted as dropped, testpmd's fwd tx_dropped; everything OUT sent arrives) and Pxfwd_io_exact_unmap.
iofwd() {
	p=$1 sp=$2 ip=$3 op=$4 kp=$5 kopt=$6; shift 6
	echo "GUEST: xfwd io $ip<->$op at $(up)s"
	$X --port vfio:$kp$kopt --forward-mode rxonly -l 0 --duration 300 > /tmp/${p}sink.json 2> /tmp/${p}sink.log &
	kpid=$!
	start_wait /tmp/${p}sink.log
	$X --port vfio:$ip --port vfio:$op --forward-mode io --tx-retry 64 -l 1 --duration 300 > /tmp/${p}io.json 2> /tmp/${p}io.log &
	iopid=$!
	start_wait /tmp/${p}io.log
	$X --port vfio:$sp --forward-mode txonly "$@" -l 0 --duration 4 > /tmp/${p}src.json 2> /tmp/${p}src.log
	src=$?
	sleep 1
	kill -TERM $iopid 2>/dev/null; wait $iopid; iorc=$?
	sleep 1
	kill -TERM $kpid 2>/dev/null; wait $kpid; krc=$?
	stx=$(jnum /tmp/${p}src.json 0 tx_packets); irx=$(jnum /tmp/${p}io.json 0 rx_packets)
	otx=$(jnum /tmp/${p}io.json 1 tx_packets); krx=$(jnum /tmp/${p}sink.json 0 rx_packets)
	odrop=$(jfwd /tmp/${p}io.json 1 tx_dropped)
	if [ $src$iorc$krc = 000 ] && [ "${stx:-0}" -gt 0 ] && [ "$stx" = "$irx" ] && [ "${otx:-0}" -gt 0 ] &&
		[ "$irx" = "$((otx + ${odrop:-0}))" ] && [ "$otx" = "$krx" ]; then
		r=PASS; else r=FAIL; tail -5 /tmp/${p}io.log /tmp/${p}sink.log /tmp/${p}src.log; fi
	check ${p}xfwd_io_forward $r "(source sent ${stx:-?}, $ip received ${irx:-?}, $op forwarded ${otx:-?} + dropped at its full TX ring ${odrop:-?}, sink received ${krx:-?}; rc $src/$iorc/$krc)"
	maps_ok /tmp/${p}io.log && r=PASS || r=FAIL
	check ${p}xfwd_io_exact_unmap $r "($(grep -c ': mapped va=' /tmp/${p}io.log) mappings, $(grep -c ': unmapped va=' /tmp/${p}io.log) unmapped; shared container: second port 'already mapped' $(grep -c 'already mapped' /tmp/${p}io.log))"
}
# negdma P PORT: Pneg_unmapped_refused_before_dma (debug_skip_map=1: xfwd refuses to start, no
# DMAR fault) and Pneg_dmar_fault_detected (debug_skip_map=2: the device DMAs to an unmapped
# IOVA, the IOMMU blocks it, the guest kernel logs it).
negdma() {
	p=$1 np=$2
	f0=$(dmar_faults)
	XFWD_DEBUG_DEVARGS=1 $X --port vfio:$np,debug_skip_map=1 --forward-mode txonly -l 0 --duration 2 > /tmp/${p}n1.json 2> /tmp/${p}n1.log
	rc=$?
	f1=$(dmar_faults)
	if [ $rc != 0 ] && grep -q 'refusing to start' /tmp/${p}n1.log && [ "$f1" = "$f0" ]; then r=PASS; else r=FAIL; tail -5 /tmp/${p}n1.log; fi
	check ${p}neg_unmapped_refused_before_dma $r "(rc $rc; $(grep -o 'refusing to start[^;]*' /tmp/${p}n1.log | head -1); DMAR faults $f0 -> $f1)"
	XFWD_DEBUG_DEVARGS=1 $X --port vfio:$np,debug_skip_map=2 --forward-mode txonly -l 0 --duration 2 > /tmp/${p}n2.json 2> /tmp/${p}n2.log
	rc=$?
	sleep 1
	f2=$(dmar_faults)
	[ "$f2" -gt "$f1" ] && r=PASS || { r=FAIL; tail -5 /tmp/${p}n2.log; }
	check ${p}neg_dmar_fault_detected $r "(DMAR faults $f1 -> $f2: $(dmesg | grep 'DMAR: \[DMA' | tail -1 | cut -c16-110); xfwd rc $rc, $(grep -c DEVICE_NEEDS_RESET /tmp/${p}n2.log) device-error reports)"
	dmesg | grep -A1 'DMAR: \[DMA' | tail -2
}

# xfwd.only=igb-link (run.sh's VM_ONLY=igb-link): the igb filter, link-loss (and bench) checks only.
case " $(cat /proc/cmdline) " in *" xfwd.only=igb-link "*) . /checks-igb.sh; . /checks-link.sh; grep -q xfwd.bench /proc/cmdline && . /checks-bench.sh; echo "GUEST: done at $(up)s"; poweroff -f ;; esac

# --- virtio-net: C -> A, C -> A (io) -> B -> D, negative DMA on C -----------
rxtx "" $A $C --tx-rate 20k
# Default descriptors (1024): the virtio port's 256-entry virtqueues clamp them.
grep -q "rxd 256 txd 256: the device's queues hold at most 256 / 256 (asked 1024 / 1024)" /tmp/tx.log && r=PASS || r=FAIL
check xfwd_default_descriptors_clamped $r "($(grep -o "rxd 256 txd 256: [^)]*)" /tmp/tx.log | head -1))"
iofwd "" $C $A $B $D "" --tx-rate 20k
negdma "" $C

# === Intel 82576 (igb) ======================================================
# --- the igb driver through the pmd API: byte-exact frames, exact unmap, RSS vs Toeplitz
echo "GUEST: igb pmd driver tests at $(up)s"
pmd_test igb_driver_test guest_driver XFWD_VM_TAG=igb_driver XFWD_VM_NICS="$E $F"
pmd_test igb_rss_test guest_igb_rss XFWD_VM_RSS_NICS="$E $F"

# --- xfwd on the 82576: F -> E, F -> E (io) -> G -> H, negative DMA on F ---
# The 82576 filters by destination MAC (E's), and QEMU's igb does not back-pressure a
# sender (its hub queues, then drops, what a busy receiver cannot take): a bounded rate.
# io keeps E's MAC as destination: H takes everything (promisc=1, a filter under test).
rxtx igb_ $E $F --eth-peer 0,$EMAC --tx-rate 10k
iofwd igb_ $F $E $G $H ,promisc=1 --eth-peer 0,$EMAC --tx-rate 10k
negdma igb_ $F
. /checks-igb.sh # the receive filters on the real model

. /checks-link.sh # link loss mid-run (the host's QMP set_link); BENCH=1: the igb side-by-side
grep -q xfwd.bench /proc/cmdline && . /checks-bench.sh

# --- AF_XDP zero-copy on virtio-net left on the guest kernel's driver ---
. /checks-afxdp-zc.sh

# --- devbind: unbind ------------------------------------------------------
/xfwd-host devbind --unbind $D > /tmp/unbind.log 2>&1
rc=$?
[ $rc = 0 ] && [ ! -e /sys/bus/pci/devices/$D/driver ] && r=PASS || { r=FAIL; cat /tmp/unbind.log; }
check devbind_unbind $r "(rc $rc, $D driver: $(basename "$(readlink /sys/bus/pci/devices/$D/driver)" 2>/dev/null))"

echo "GUEST: done at $(up)s"
poweroff -f
