# tests/vm/checks-link.sh - sourced by guest-init.sh (uses its $X, $C, $F, $G, check, jnum,
# start_wait, up): a NIC's link taken down mid-run by the host. The guest prints
# "HOSTCMD: set_link ID off|on"; run.sh's QMP helper (tests/vm/qmp-link.py) sends QEMU's
# `set_link` for that device (QEMU then clears the 82576's STATUS.LU / virtio-net's
# VIRTIO_NET_S_LINK_UP, as a pulled cable would).
#
#   link_igb_down_seen_and_tx_blocked   xfwd txonly on F and G (on_link_loss=continue), F's
#                                        link off: xfwd says so, F's JSON link_up false and its
#                                        tx_packets frozen (its queue hands the device nothing)
#   link_continue_other_port_forwards   ... while G's tx_packets keep growing; rc 0, no leak
#   link_virtio_down_exit               xfwd txonly on C (on_link_loss=exit), C's link off:
#                                        exit 1 with the reason, the final report, no leak
#   link_virtio_needs_reset_exit        xfwd txonly on C with debug_bad_desc=1 (one malformed TX
#                                        chain at start: QEMU's virtio_error() sets
#                                        DEVICE_NEEDS_RESET), on_link_loss=exit: exit 1 with the
#                                        reason and the DEVICE_NEEDS_RESET report, final link
#                                        "lost", no leak, exact unmap
#   link_virtio_needs_reset_continue    C (debug_bad_desc=1) and G (igb) txonly, on_link_loss=continue:
#                                        C lost, G's tx_packets keep growing; rc 0, no leak
XL="/xfwd --nb-mbufs 4096 --json --stats-period 1"
# lwait FILE PATTERN: up to 60 s.
lwait() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
}
# pdown FILE: the period lines in which port 0's link is down; ptx PORT: its tx_packets in each.
pdown() { grep '"type":"period"' "$1" | grep '"link_up":false,"port":0,'; }
ptx() { sed 's/.*"ports":\[//' | tr '{' '\n' | grep "\"port\":$1," | grep -o '"tx_packets":[0-9]*' | cut -d: -f2; }

echo "GUEST: link loss at $(up)s"
# The host cannot answer the guest: the guest waits (bounded) for the effect instead.
$XL --port vfio:$F --port vfio:$G --forward-mode txonly --tx-rate 5k --on-link-loss continue \
	-l 0 --duration 300 > /tmp/l1.json 2> /tmp/l1.log &
lpid=$!
start_wait /tmp/l1.log
sleep 3
echo "HOSTCMD: set_link d09 off"
lwait /tmp/l1.log 'link down'
sleep 4
kill -TERM $lpid 2>/dev/null; wait $lpid; lrc=$?
echo "HOSTCMD: set_link d09 on"
f=$(pdown /tmp/l1.json | ptx 0); g=$(pdown /tmp/l1.json | ptx 1)
f1=$(echo "$f" | sed -n 2p); f2=$(echo "$f" | tail -1)
g1=$(echo "$g" | sed -n 2p); g2=$(echo "$g" | tail -1)
nd=$(echo "$f" | grep -c .)
msg=$(grep -o 'port 0 (vfio:[^)]*): link down[^;]*; the other ports keep forwarding' /tmp/l1.log | head -1)
fl=$(grep '"type":"final"' /tmp/l1.json | grep -o '"link":"[a-z]*"' | head -1)
leak=$(grep '"type":"final"' /tmp/l1.json | grep -c '"leaked_mbufs":0')
if [ -n "$msg" ] && [ "$nd" -ge 3 ] && [ "${f1:-x}" = "${f2:-y}" ] && [ "$fl" = '"link":"down"' ]; then r=PASS; else
	r=FAIL; tail -5 /tmp/l1.log; fi
check link_igb_down_seen_and_tx_blocked $r "(xfwd: '${msg:-no link-down line}'; $nd periods with F down, F tx_packets ${f1:-?} -> ${f2:-?}; final $fl)"
if [ "$lrc" = 0 ] && [ "${g2:-0}" -gt "${g1:-0}" ] && [ "$leak" = 1 ]; then r=PASS; else r=FAIL; fi
check link_continue_other_port_forwards $r "(G tx_packets ${g1:-?} -> ${g2:-?} while F was down; rc $lrc; leaked_mbufs 0: $leak of 1)"

$XL --port vfio:$C --forward-mode txonly --tx-rate 5k --on-link-loss exit -l 0 --duration 300 \
	> /tmp/l2.json 2> /tmp/l2.log &
lpid=$!
start_wait /tmp/l2.log
sleep 3
echo "HOSTCMD: set_link d4 off"
i=0
while kill -0 $lpid 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
kill -TERM $lpid 2>/dev/null; wait $lpid; lrc=$?
echo "HOSTCMD: set_link d4 on"
msg=$(grep -o 'port 0 (vfio:[^)]*): link down; on_link_loss = "exit": stopping' /tmp/l2.log | head -1)
leak=$(grep '"type":"final"' /tmp/l2.json | grep -c '"leaked_mbufs":0')
if [ "$lrc" = 1 ] && [ -n "$msg" ] && [ "$leak" = 1 ]; then r=PASS; else r=FAIL; tail -5 /tmp/l2.log; fi
check link_virtio_down_exit $r "(rc $lrc; xfwd: '${msg:-no link-down line}'; $(grep -o 'on_link_loss = "exit" stopped the run' /tmp/l2.log | head -1); leaked_mbufs 0: $leak of 1)"

# DEVICE_NEEDS_RESET: no host command, QEMU breaks the device on the malformed chain itself.
# nrlost FILE: C's final link word; nrmap FILE: "mapped/unmapped" mapping lines of the run.
nrlost() { grep '"type":"final"' "$1" | sed 's/.*"ports":\[//' | tr '{' '\n' | grep "\"port\":0," | grep -o '"link":"[a-z]*"' | head -1; }
nrmap() { echo "$(grep -c ': mapped va=' "$1")/$(grep -c ': unmapped va=' "$1")"; }
XFWD_DEBUG_DEVARGS=1 $XL --port vfio:$C,debug_bad_desc=1 --forward-mode txonly --tx-rate 5k \
	--on-link-loss exit -l 0 --duration 300 > /tmp/l3.json 2> /tmp/l3.log &
lpid=$!
i=0
while kill -0 $lpid 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
kill -TERM $lpid 2>/dev/null; wait $lpid; lrc=$?
msg=$(grep -o 'port 0 (vfio:[^)]*): link lost[^;]*; on_link_loss = "exit": stopping' /tmp/l3.log | head -1)
nr=$(grep -c 'DEVICE_NEEDS_RESET' /tmp/l3.log)
fl=$(nrlost /tmp/l3.json)
leak=$(grep '"type":"final"' /tmp/l3.json | grep -c '"leaked_mbufs":0')
mu=$(nrmap /tmp/l3.log)
if [ "$lrc" = 1 ] && [ -n "$msg" ] && [ "$nr" -ge 1 ] && [ "$fl" = '"link":"lost"' ] && [ "$leak" = 1 ] &&
	[ "${mu%/*}" = "${mu#*/}" ] && [ "${mu%/*}" -gt 0 ]; then r=PASS; else r=FAIL; tail -8 /tmp/l3.log; fi
check link_virtio_needs_reset_exit $r "(rc $lrc; xfwd: '${msg:-no link-lost line}'; $nr DEVICE_NEEDS_RESET reports; final $fl; leaked_mbufs 0: $leak of 1; mapped/unmapped $mu)"

XFWD_DEBUG_DEVARGS=1 $XL --port vfio:$C,debug_bad_desc=1 --port vfio:$G --forward-mode txonly \
	--tx-rate 5k --on-link-loss continue -l 0 --duration 6 > /tmp/l4.json 2> /tmp/l4.log
lrc=$?
g=$(pdown /tmp/l4.json | ptx 1)
g1=$(echo "$g" | sed -n 1p); g2=$(echo "$g" | tail -1)
nd=$(echo "$g" | grep -c .)
msg=$(grep -o 'port 0 (vfio:[^)]*): link lost[^;]*; the other ports keep forwarding' /tmp/l4.log | head -1)
fl=$(nrlost /tmp/l4.json)
leak=$(grep '"type":"final"' /tmp/l4.json | grep -c '"leaked_mbufs":0')
mu=$(nrmap /tmp/l4.log)
if [ "$lrc" = 0 ] && [ -n "$msg" ] && [ "$nd" -ge 2 ] && [ "${g2:-0}" -gt "${g1:-0}" ] && [ "$fl" = '"link":"lost"' ] &&
	[ "$leak" = 1 ] && [ "${mu%/*}" = "${mu#*/}" ]; then r=PASS; else r=FAIL; tail -8 /tmp/l4.log; fi
check link_virtio_needs_reset_continue $r "(rc $lrc; xfwd: '${msg:-no link-lost line}'; G tx_packets ${g1:-?} -> ${g2:-?} over $nd periods with C lost; final C $fl; leaked_mbufs 0: $leak of 1; mapped/unmapped $mu)"
