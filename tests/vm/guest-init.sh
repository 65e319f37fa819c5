#!/bin/busybox sh
# /init of the VFIO test guest (built into the initramfs by tests/vm/run.sh).
#
# NICs (virtio-net modern, iommu_platform=on), two QEMU hubs, no host network:
#   hub0: A=00:03.0  C=00:04.0        hub1: B=00:05.0  D=00:06.0
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
for m in irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do
	insmod /modules/$m.ko || echo "GUEST: insmod $m failed"
done
echo 256 > /proc/sys/vm/nr_hugepages
echo "GUEST: HugePages_Total=$(awk '/HugePages_Total/{print $2}' /proc/meminfo)"
A=0000:00:03.0 C=0000:00:04.0 B=0000:00:05.0 D=0000:00:06.0
for b in $A $C $B $D; do
	d=/sys/bus/pci/devices/$b
	g=$(readlink $d/iommu_group); drv=$(readlink $d/driver)
	echo "GUEST: $b $(cat $d/vendor):$(cat $d/device) iommu_group=${g##*/} driver=${drv##*/}"
done
dmar_faults() { dmesg | grep -c 'DMAR: \[DMA' ; }

# --- devbind: our host tool binds every NIC to vfio-pci -------------------
/xfwd-host devbind --bind vfio-pci $A $C $B $D > /tmp/bind.log 2>&1
rc=$?
bound=0
for b in $A $C $B $D; do
	drv=$(readlink /sys/bus/pci/devices/$b/driver)
	[ "${drv##*/}" = vfio-pci ] && bound=$((bound + 1))
done
nvfio=$(ls /dev/vfio | grep -c '^[0-9]')
[ $rc = 0 ] && [ $bound = 4 ] && [ "$nvfio" -ge 4 ] && r=PASS || { r=FAIL; cat /tmp/bind.log; }
check devbind_bind $r "(rc $rc, $bound/4 on vfio-pci, /dev/vfio: $(ls /dev/vfio | tr '\n' ' '))"

# --- peer: DPDK testpmd on the same NICs (when the initramfs has it) -------
if [ -x /dpdk/dpdk-testpmd ]; then
	/bin/sh /dpdk/run-testpmd.sh $A $C
	# GUEST_APPEND=xfwd.peer_only: stop after the peer (for debugging it).
	grep -q 'xfwd.peer_only' /proc/cmdline && { echo "GUEST: peer only, done at $(up)s"; poweroff -f; }
fi

# --- the driver through the pmd API (test binary) ------------------------
echo "GUEST: pmd driver test at $(up)s"
XFWD_VM_NICS="$A $C" RUST_LOG=info /vfio_vm --nocapture --test-threads=1 guest_driver > /tmp/drv.log 2>&1
rc=$?
grep -E '^CHECK|bad frame|panicked|test result' /tmp/drv.log
[ $rc = 0 ] && r=PASS || { r=FAIL; grep -v '^CHECK' /tmp/drv.log | tail -20; }
check driver_test $r "(rc $rc)"

# JSON number from xfwd's final line: jnum FILE PORT KEY (the per-port "fwd" object is dropped).
jnum() {
	grep '"type":"final"' "$1" | sed 's/"fwd":{[^}]*}//g' | tr '{' '\n' | grep "\"port\":$2[,}]" |
		grep -o "\"$3\":[0-9]*" | head -1 | cut -d: -f2
}
# Number from the per-port "fwd" object: jfwd FILE PORT KEY.
jfwd() {
	grep '"type":"final"' "$1" | sed 's/.*"ports":\[//' | tr '{' '\n' | grep "\"port\":$2[,}]" |
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
# Default descriptors (1024): the vfio port's 256-entry virtqueues clamp them.
X="/xfwd --nb-mbufs 4096 --json --stats-period 0"

# --- xfwd txonly on C, rxonly on A (same hub): counts must match ---------
echo "GUEST: xfwd rxonly $A / txonly $C at $(up)s"
# Receivers get a long --duration and are ended by SIGTERM once the sender is done (a
# background job of a non-interactive shell ignores SIGINT; a busy TCG guest can take
# longer to start the sender than a short duration would allow).
$X --port vfio:$A --forward-mode rxonly -l 1 --duration 300 > /tmp/rx.json 2> /tmp/rx.log &
rxpid=$!
start_wait /tmp/rx.log
$X --port vfio:$C --forward-mode txonly -l 0 --duration 4 > /tmp/tx.json 2> /tmp/tx.log
txrc=$?
sleep 1
kill -TERM $rxpid 2>/dev/null; wait $rxpid; rxrc=$?
tx=$(jnum /tmp/tx.json 0 tx_packets); rx=$(jnum /tmp/rx.json 0 rx_packets)
if [ $txrc = 0 ] && [ $rxrc = 0 ] && [ "${tx:-0}" -gt 0 ] && [ "${tx:-0}" = "${rx:-x}" ]; then r=PASS; else
	r=FAIL; tail -5 /tmp/tx.log /tmp/rx.log; fi
check xfwd_txonly_rxonly $r "(txonly sent ${tx:-?}, rxonly received ${rx:-?}; rc $txrc/$rxrc)"
grep -q "rxd 256 txd 256: the device's queues hold at most 256 / 256 (asked 1024 / 1024)" /tmp/tx.log && r=PASS || r=FAIL
check xfwd_default_descriptors_clamped $r "($(grep -o "rxd 256 txd 256: [^)]*)" /tmp/tx.log | head -1))"
maps_ok /tmp/tx.log && maps_ok /tmp/rx.log && r=PASS || r=FAIL
check xfwd_iova_ne_va_and_exact_unmap $r "($(grep -c ': mapped va=' /tmp/tx.log) mappings in the txonly run, $(grep -c ': unmapped va=' /tmp/tx.log) unmapped)"
grep -m3 -E 'gets IOVAs|: mapped va=|unmapped va=' /tmp/tx.log
l=$(grep '"type":"final"' /tmp/tx.json /tmp/rx.json | grep -c '"leaked_mbufs":0')
[ "$l" = 2 ] && r=PASS || r=FAIL
check xfwd_no_leak $r "(leaked_mbufs 0 in $l of 2 runs)"

# --- io forwarding: C txonly -> A (io) -> B -> D rxonly -----------------
echo "GUEST: xfwd io $A<->$B at $(up)s"
$X --port vfio:$D --forward-mode rxonly -l 0 --duration 300 > /tmp/d.json 2> /tmp/d.log &
dpid=$!
start_wait /tmp/d.log
$X --port vfio:$A --port vfio:$B --forward-mode io --tx-retry 64 -l 1 --duration 300 > /tmp/io.json 2> /tmp/io.log &
iopid=$!
start_wait /tmp/io.log
$X --port vfio:$C --forward-mode txonly -l 0 --duration 4 > /tmp/c.json 2> /tmp/c.log
crc=$?
sleep 1
kill -TERM $iopid 2>/dev/null; wait $iopid; iorc=$?
sleep 1
kill -TERM $dpid 2>/dev/null; wait $dpid; drc=$?
ctx=$(jnum /tmp/c.json 0 tx_packets); arx=$(jnum /tmp/io.json 0 rx_packets)
btx=$(jnum /tmp/io.json 1 tx_packets); drx=$(jnum /tmp/d.json 0 rx_packets)
bdrop=$(jfwd /tmp/io.json 1 tx_dropped)
# Every frame is accounted for: what B's TX ring did not take is counted as dropped (testpmd's
# fwd tx_dropped), everything B sent arrives at D.
if [ $crc$iorc$drc = 000 ] && [ "${ctx:-0}" -gt 0 ] && [ "$ctx" = "$arx" ] && [ "${btx:-0}" -gt 0 ] &&
	[ "$arx" = "$((btx + ${bdrop:-0}))" ] && [ "$btx" = "$drx" ]; then
	r=PASS; else r=FAIL; tail -5 /tmp/io.log /tmp/d.log /tmp/c.log; fi
check xfwd_io_forward $r "(C sent ${ctx:-?}, A received ${arx:-?}, B forwarded ${btx:-?} + dropped at B's full TX ring ${bdrop:-?}, D received ${drx:-?}; rc $crc/$iorc/$drc)"
maps_ok /tmp/io.log && r=PASS || r=FAIL
check xfwd_io_exact_unmap $r "($(grep -c ': mapped va=' /tmp/io.log) mappings, $(grep -c ': unmapped va=' /tmp/io.log) unmapped; shared container: second port 'already mapped' $(grep -c 'already mapped' /tmp/io.log))"

# --- negative: an unmapped pool must be refused before any DMA ------------
f0=$(dmar_faults)
XFWD_DEBUG_DEVARGS=1 $X --port vfio:$C,debug_skip_map=1 --forward-mode txonly -l 0 --duration 2 > /tmp/n1.json 2> /tmp/n1.log
rc=$?
f1=$(dmar_faults)
if [ $rc != 0 ] && grep -q 'refusing to start' /tmp/n1.log && [ "$f1" = "$f0" ]; then r=PASS; else r=FAIL; tail -5 /tmp/n1.log; fi
check neg_unmapped_refused_before_dma $r "(rc $rc; $(grep -o 'refusing to start[^;]*' /tmp/n1.log | head -1); DMAR faults $f0 -> $f1)"

# --- negative: let it reach the device: the IOMMU blocks it, the kernel logs it
XFWD_DEBUG_DEVARGS=1 $X --port vfio:$C,debug_skip_map=2 --forward-mode txonly -l 0 --duration 2 > /tmp/n2.json 2> /tmp/n2.log
rc=$?
sleep 1
f2=$(dmar_faults)
[ "$f2" -gt "$f1" ] && r=PASS || { r=FAIL; tail -5 /tmp/n2.log; }
check neg_dmar_fault_detected $r "(DMAR faults $f1 -> $f2: $(dmesg | grep 'DMAR: \[DMA' | tail -1 | cut -c16-110); xfwd rc $rc, $(grep -c DEVICE_NEEDS_RESET /tmp/n2.log) device-error reports)"
dmesg | grep -A1 'DMAR: \[DMA' | tail -2

# --- devbind: unbind ------------------------------------------------------
/xfwd-host devbind --unbind $D > /tmp/unbind.log 2>&1
rc=$?
[ $rc = 0 ] && [ ! -e /sys/bus/pci/devices/$D/driver ] && r=PASS || { r=FAIL; cat /tmp/unbind.log; }
check devbind_unbind $r "(rc $rc, $D driver: $(basename "$(readlink /sys/bus/pci/devices/$D/driver)" 2>/dev/null))"

echo "GUEST: done at $(up)s"
poweroff -f
