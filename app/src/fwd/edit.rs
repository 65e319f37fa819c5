//! The per-packet header edits of the forwarding modes.

use super::Verdict;
use crate::wire::checksum;
use crate::wire::icmp::{V4_ECHO_REPLY, V4_ECHO_REQUEST, V6_ECHO_REPLY, V6_ECHO_REQUEST};
use crate::wire::{
    arp, ArpPacket, EtherType, EthernetFrame, IcmpPacket, IpProto, Ipv4Packet, Ipv6Packet,
    PortsHeader,
};

/// `mac`: source = `src` (the TX port), destination = `dst` (its peer).
#[inline]
pub fn mac(frame: &mut [u8], src: &[u8; 6], dst: &[u8; 6]) -> Verdict {
    match EthernetFrame::new_checked(frame) {
        Ok(mut f) => {
            f.set_src(src);
            f.set_dst(dst);
            Verdict::Forward
        }
        Err(_) => Verdict::Malformed,
    }
}

/// `macswap`: swap the Ethernet addresses.
#[inline]
pub fn macswap(frame: &mut [u8]) -> Verdict {
    match EthernetFrame::new_checked(frame) {
        Ok(mut f) => {
            f.swap_addrs();
            Verdict::Forward
        }
        Err(_) => Verdict::Malformed,
    }
}

/// `5tswap`: swap MACs; for IPv4/IPv6 swap the addresses; for UDP/TCP swap
/// the ports. Checksums stay valid (a swap does not change the sum). Frames
/// that are not IP are forwarded with their MACs swapped; IP frames whose
/// headers are truncated or lie about their length are malformed.
#[inline]
pub fn five_tuple_swap(frame: &mut [u8]) -> Verdict {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return Verdict::Malformed;
    };
    eth.swap_addrs();
    let ok = match eth.ethertype() {
        EtherType::Ipv4 => match Ipv4Packet::new_checked(eth.payload_mut()) {
            Ok(mut ip) => {
                ip.swap_addrs();
                let proto = ip.protocol();
                swap_l4(ip.payload_mut(), proto)
            }
            Err(_) => false,
        },
        EtherType::Ipv6 => match Ipv6Packet::new_checked(eth.payload_mut()) {
            Ok(mut ip) => {
                ip.swap_addrs();
                let proto = ip.next_header();
                swap_l4(ip.payload_mut(), proto)
            }
            Err(_) => false,
        },
        _ => true,
    };
    if ok {
        Verdict::Forward
    } else {
        Verdict::Malformed
    }
}

fn swap_l4(l4: &mut [u8], proto: IpProto) -> bool {
    match proto {
        IpProto::Udp | IpProto::Tcp => match PortsHeader::new_checked(l4, proto) {
            Ok(mut p) => {
                p.swap_ports();
                true
            }
            Err(_) => false,
        },
        _ => true,
    }
}

/// `icmpecho`: turn an ARP request into the reply "target is at `mac`", an
/// ICMP/ICMPv6 echo request into its echo reply (addresses swapped, checksum
/// recomputed). Everything else is [`Verdict::Ignore`].
pub fn icmpecho(frame: &mut [u8], port_mac: &[u8; 6]) -> Verdict {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return Verdict::Malformed;
    };
    match eth.ethertype() {
        EtherType::Arp => {
            let Ok(mut a) = ArpPacket::new_checked(eth.payload_mut()) else {
                return Verdict::Malformed;
            };
            if a.operation() != arp::OP_REQUEST {
                return Verdict::Ignore;
            }
            let requester = a.sha();
            a.make_reply(port_mac);
            eth.set_dst(&requester);
            eth.set_src(port_mac);
            Verdict::Forward
        }
        EtherType::Ipv4 => {
            let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
                return Verdict::Malformed;
            };
            if ip.protocol() != IpProto::Icmp {
                return Verdict::Ignore;
            }
            let Ok(mut icmp) = IcmpPacket::new_checked(ip.payload_mut()) else {
                return Verdict::Malformed;
            };
            if icmp.msg_type() != V4_ECHO_REQUEST {
                return Verdict::Ignore;
            }
            icmp.set_msg_type(V4_ECHO_REPLY);
            icmp.fill_checksum(0);
            ip.swap_addrs();
            ip.set_ttl(64);
            ip.fill_checksum();
            eth.swap_addrs();
            eth.set_src(port_mac);
            Verdict::Forward
        }
        EtherType::Ipv6 => {
            let Ok(mut ip) = Ipv6Packet::new_checked(eth.payload_mut()) else {
                return Verdict::Malformed;
            };
            if ip.next_header() != IpProto::Icmpv6 {
                return Verdict::Ignore;
            }
            ip.swap_addrs();
            let (src, dst) = (ip.src(), ip.dst());
            let Ok(icmp) = IcmpPacket::new_checked(ip.payload_mut()) else {
                return Verdict::Malformed;
            };
            if icmp.msg_type() != V6_ECHO_REQUEST {
                return Verdict::Ignore;
            }
            let len = ip.payload().len() as u32;
            let mut icmp = match IcmpPacket::new_checked(ip.payload_mut()) {
                Ok(i) => i,
                Err(_) => return Verdict::Malformed,
            };
            icmp.set_msg_type(V6_ECHO_REPLY);
            icmp.fill_checksum(checksum::pseudo_v6(&src, &dst, 58, len));
            eth.swap_addrs();
            eth.set_src(port_mac);
            Verdict::Forward
        }
        EtherType::Other(_) => Verdict::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        // Every length 0..=80 of every pattern, through every edit.
        for len in 0..=80usize {
            for seed in 0u8..=12 {
                let mut f: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
                    .collect();
                if len > 14 {
                    f[12] = [0x08, 0x86, 0x08][seed as usize % 3];
                    f[13] = [0x00, 0xdd, 0x06][seed as usize % 3];
                }
                if len > 14 {
                    f[14] = if seed % 2 == 0 { 0x45 } else { 0x60 };
                }
                let _ = macswap(&mut f.clone());
                let _ = five_tuple_swap(&mut f.clone());
                let _ = icmpecho(&mut f.clone(), &[2; 6]);
                let _ = mac(&mut f, &[1; 6], &[2; 6]);
            }
        }
        assert_eq!(macswap(&mut [0u8; 13]), Verdict::Malformed);
    }
}
