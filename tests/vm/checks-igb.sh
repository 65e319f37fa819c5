# tests/vm/checks-igb.sh - sourced by guest-init.sh (uses its $X, $E, $F, check, jnum,
# start_wait, up): the 82576's receive filters on QEMU's real igb model, not the register
# double of the unit tests. F sends a bounded stream to one destination MAC; E, on the same
# hub, runs xfwd rxonly with the filter devargs; its count says whether the MAC's filter
# (RAL/RAH, the multicast table, RCTL.UPE/MPE) let them through.
#
#   igb_filter_unicast_other_dropped      to 02:00:00:00:00:99, E without promisc: 0 received
#   igb_filter_unicast_promisc_received   the same with promisc=1: every frame
#   igb_filter_unicast_uc_list_received   the same with uc=02:00:00:00:00:99: every frame
#   igb_filter_multicast_listed_received  to 01:00:5e:00:00:05 with mc=01:00:5e:00:00:05: every frame
#   igb_filter_multicast_other_dropped    the same with mc=01:00:5e:00:00:06 (another table bit): 0
#   igb_filter_allmulti_received          the same with allmulti=1 and no mc list: every frame

# filt NAME DST RXOPT all|none: F txonly to DST (bounded rate, 2 s), E rxonly with RXOPT.
filt() {
	n=$1 dst=$2 opt=$3 want=$4
	$X --port vfio:$E$opt --forward-mode rxonly -l 1 --duration 300 > /tmp/f_$n.rx.json 2> /tmp/f_$n.rx.log &
	fpid=$!
	start_wait /tmp/f_$n.rx.log
	$X --port vfio:$F --forward-mode txonly --eth-peer 0,$dst --tx-rate 5k -l 0 --duration 2 > /tmp/f_$n.tx.json 2> /tmp/f_$n.tx.log
	ftrc=$?
	sleep 1
	kill -TERM $fpid 2>/dev/null; wait $fpid; frrc=$?
	tx=$(jnum /tmp/f_$n.tx.json 0 tx_packets); rx=$(jnum /tmp/f_$n.rx.json 0 rx_packets)
	leak=$(grep '"type":"final"' /tmp/f_$n.tx.json /tmp/f_$n.rx.json | grep -c '"leaked_mbufs":0')
	if [ "$want" = all ]; then exp=${tx:-x}; else exp=0; fi
	if [ $ftrc$frrc = 00 ] && [ "${tx:-0}" -gt 100 ] && [ "${rx:-x}" = "$exp" ] && [ "$leak" = 2 ]; then r=PASS; else
		r=FAIL; tail -5 /tmp/f_$n.tx.log /tmp/f_$n.rx.log; fi
	check igb_filter_$n $r "(F sent ${tx:-?} to $dst, E${opt:- (no filter devargs)} received ${rx:-?}, want $want; rc $ftrc/$frrc, leaked 0 in $leak of 2)"
}
echo "GUEST: igb receive filters at $(up)s"
filt unicast_other_dropped 02:00:00:00:00:99 "" none
filt unicast_promisc_received 02:00:00:00:00:99 ,promisc=1 all
filt unicast_uc_list_received 02:00:00:00:00:99 ,uc=02:00:00:00:00:99 all
filt multicast_listed_received 01:00:5e:00:00:05 ,mc=01:00:5e:00:00:05 all
filt multicast_other_dropped 01:00:5e:00:00:05 ,mc=01:00:5e:00:00:06 none
filt allmulti_received 01:00:5e:00:00:05 ,allmulti=1 all
