//! The per-packet header edits of the forwarding modes (the rules, and
//! where they differ from DPDK's testpmd, are in `docs/forwarding.md`).
//!
//! Every edit sees a [`Frame`]: the first segment (writable: every header
//! a mode reads or writes must lie in it), the whole frame length, and the
//! segments after the first (read only: only checksums look at them), so
//! multi-segment frames are handled by every mode.

use super::{Reason, Verdict};
use crate::wire::checksum;
use crate::wire::icmp::{V4_ECHO_REPLY, V4_ECHO_REQUEST, V6_ECHO_REPLY, V6_ECHO_REQUEST};
use crate::wire::{arp, ArpPacket, EthernetFrame, IpProto, Ipv4Packet, Ipv6Packet, WireError};

/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (QinQ outer).
pub const TPID_8021AD: u16 = 0x88a8;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
/// TTL / hop limit of the replies icmpecho originates (RFC 1700's default).
pub const REPLY_TTL: u8 = 64;

/// A received frame: its first segment and the segments after it.
#[derive(Debug)]
pub struct Frame<'a, T> {
    /// The first segment's bytes (headers must lie here).
    pub head: &'a mut [u8],
    /// The frame length over every segment.
    pub len: usize,
    /// The segments after the first, in order.
    pub tail: T,
}

impl<'a> Frame<'a, std::iter::Empty<&'a [u8]>> {
    /// A single-segment frame.
    pub fn single(head: &'a mut [u8]) -> Self {
        let len = head.len();
        Frame {
            head,
            len,
            tail: std::iter::empty(),
        }
    }
}

impl<'a, T: Iterator<Item = &'a [u8]> + Clone> Frame<'a, T> {
    /// Folded one's-complement sum of frame bytes `from..to` (`from` even).
    fn sum(&self, from: usize, to: usize) -> u16 {
        let head: &[u8] = self.head;
        let tail = self.tail.clone().map(|seg| -> &[u8] { seg });
        checksum::sum_chain(head, tail, from, to)
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Where the L3 header starts and its EtherType, after the Ethernet header
/// and every 802.1Q/802.1ad tag that lies whole in `head` (≥ 14 bytes). A
/// tag cut by the end of the frame leaves its TPID as the EtherType.
#[inline]
pub fn walk_l2(head: &[u8]) -> (usize, u16) {
    let mut at = 12;
    let mut et = be16(head, at);
    while (et == TPID_8021Q || et == TPID_8021AD) && at + 6 <= head.len() {
        at += 4;
        et = be16(head, at);
    }
    (at + 2, et)
}

/// `mac`: source = `src` (the TX port), destination = `dst` (its peer).
#[inline]
pub fn mac(frame: &mut [u8], src: &[u8; 6], dst: &[u8; 6]) -> Verdict {
    match EthernetFrame::new_checked(frame) {
        Ok(mut f) => {
            f.set_src(src);
            f.set_dst(dst);
            Verdict::Forward
        }
        Err(_) => Verdict::Drop(Reason::Runt),
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
        Err(_) => Verdict::Drop(Reason::Runt),
    }
}

/// `5tswap`: swap MACs; walk VLAN/QinQ tags; for IPv4/IPv6 swap the
/// addresses; for UDP/TCP (IPv4: first fragment only) swap the ports.
/// Checksums stay valid (a swap does not change the sum). A layer that
/// cannot be parsed (cut tag, bad IP header, L4 ports outside the
/// datagram) is left as it is and the frame goes on with the layers before
/// it swapped ([`Verdict::Partial`]); only runts are dropped.
#[inline]
pub fn five_tuple_swap(frame: &mut [u8], len: usize) -> Verdict {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return Verdict::Drop(Reason::Runt);
    };
    eth.swap_addrs();
    let (l3, et) = walk_l2(frame);
    let (proto, l4, end) = match et {
        ETH_IPV4 => {
            let Ok(mut ip) = Ipv4Packet::new_header(&mut frame[l3..]) else {
                return Verdict::Partial;
            };
            ip.swap_addrs();
            if ip.frag_offset() != 0 {
                // A later fragment: no L4 header in it.
                return Verdict::Forward;
            }
            (ip.protocol(), l3 + ip.header_len(), l3 + ip.total_len())
        }
        ETH_IPV6 => {
            let Ok(mut ip) = Ipv6Packet::new_header(&mut frame[l3..]) else {
                return Verdict::Partial;
            };
            ip.swap_addrs();
            (ip.next_header(), l3 + 40, l3 + 40 + ip.payload_len())
        }
        TPID_8021Q | TPID_8021AD => return Verdict::Partial,
        _ => return Verdict::Forward,
    };
    if !matches!(proto, IpProto::Udp | IpProto::Tcp) {
        return Verdict::Forward;
    }
    // The ports: the L4 header's first 4 bytes, inside the datagram, the
    // frame and the first segment.
    if l4 + 4 > end.min(len).min(frame.len()) {
        return Verdict::Partial;
    }
    let (s, d) = frame[l4..l4 + 4].split_at_mut(2);
    s.swap_with_slice(d);
    Verdict::Forward
}

/// True for an IPv4 address a reply must not be sent from or to: 0.0.0.0,
/// multicast (224/4), reserved and limited broadcast (240/4).
fn v4_not_unicast(a: [u8; 4]) -> bool {
    a == [0; 4] || a[0] >= 224
}

/// `icmpecho`: answer ARP requests ("target is at `port_mac`") and ICMP /
/// ICMPv6 echo requests (addresses swapped, TTL/hop limit 64, checksums
/// recomputed), VLAN/QinQ tags kept; drop, counted by reason, requests that
/// must not be answered (bad checksums, fragments, IPv4 options, multicast or
/// broadcast source or destination, truncated); [`Verdict::Ignore`] the rest.
pub fn icmpecho<'a, T>(f: &mut Frame<'a, T>, port_mac: &[u8; 6]) -> Verdict
where
    T: Iterator<Item = &'a [u8]> + Clone,
{
    if f.head.len() < 14 {
        return Verdict::Drop(Reason::Runt);
    }
    let (l3, et) = walk_l2(f.head);
    match et {
        ETH_ARP => arp_reply(f.head, l3, port_mac),
        ETH_IPV4 => echo_v4(f, l3, port_mac),
        ETH_IPV6 => echo_v6(f, l3, port_mac),
        TPID_8021Q | TPID_8021AD => Verdict::Drop(Reason::Truncated),
        _ => Verdict::Ignore,
    }
}

fn arp_reply(head: &mut [u8], l3: usize, port_mac: &[u8; 6]) -> Verdict {
    let Some(body) = head.get_mut(l3..) else {
        return Verdict::Drop(Reason::Truncated);
    };
    let mut a = match ArpPacket::new_checked(body) {
        Ok(a) => a,
        Err(WireError::Truncated { .. }) => return Verdict::Drop(Reason::Truncated),
        Err(WireError::Malformed { .. }) => return Verdict::Ignore,
    };
    if a.operation() != arp::OP_REQUEST {
        return Verdict::Ignore;
    }
    let requester = a.sha();
    if requester[0] & 1 != 0 {
        return Verdict::Drop(Reason::SrcNotUnicast);
    }
    a.make_reply(port_mac);
    // RFC 826: the reply goes to the requester's hardware address.
    head[0..6].copy_from_slice(&requester);
    head[6..12].copy_from_slice(port_mac);
    Verdict::Forward
}

fn echo_v4<'a, T>(f: &mut Frame<'a, T>, l3: usize, port_mac: &[u8; 6]) -> Verdict
where
    T: Iterator<Item = &'a [u8]> + Clone,
{
    let ip = match Ipv4Packet::new_header(&f.head[l3..]) {
        Ok(ip) => ip,
        Err(e) => return refused(e),
    };
    if ip.protocol() != IpProto::Icmp {
        return Verdict::Ignore;
    }
    if ip.is_fragment() {
        return Verdict::Drop(Reason::Fragment);
    }
    let (hlen, total) = (ip.header_len(), ip.total_len());
    if total < hlen + 8 {
        return Verdict::Drop(Reason::BadIpHeader);
    }
    let l4 = l3 + hlen;
    if l4 + 8 > f.head.len() {
        return Verdict::Drop(Reason::Truncated);
    }
    if f.head[l4] != V4_ECHO_REQUEST || f.head[l4 + 1] != 0 {
        return Verdict::Ignore;
    }
    let end = l3 + total;
    if end > f.len {
        return Verdict::Drop(Reason::Truncated);
    }
    if !ip.checksum_ok() {
        return Verdict::Drop(Reason::BadIpChecksum);
    }
    if hlen != 20 {
        return Verdict::Drop(Reason::IpOptions);
    }
    let (src, dst) = (ip.src(), ip.dst());
    if v4_not_unicast(src) || f.head[6] & 1 != 0 {
        return Verdict::Drop(Reason::SrcNotUnicast);
    }
    if v4_not_unicast(dst) {
        return Verdict::Drop(Reason::DstNotUnicast);
    }
    if !echo_message(f, l4, end, 0, V4_ECHO_REPLY) {
        return Verdict::Drop(Reason::BadIcmpChecksum);
    }
    let h = &mut *f.head;
    let mut ip = Ipv4Packet::new_header(&mut h[l3..]).expect("checked above");
    ip.swap_addrs();
    ip.set_ttl(REPLY_TTL);
    ip.fill_checksum();
    reply_eth(h, port_mac);
    Verdict::Forward
}

fn echo_v6<'a, T>(f: &mut Frame<'a, T>, l3: usize, port_mac: &[u8; 6]) -> Verdict
where
    T: Iterator<Item = &'a [u8]> + Clone,
{
    let ip = match Ipv6Packet::new_header(&f.head[l3..]) {
        Ok(ip) => ip,
        Err(e) => return refused(e),
    };
    if ip.next_header() != IpProto::Icmpv6 {
        return Verdict::Ignore;
    }
    let plen = ip.payload_len();
    let l4 = l3 + 40;
    if plen < 8 {
        return Verdict::Drop(Reason::BadIpHeader);
    }
    if l4 + 8 > f.head.len() {
        return Verdict::Drop(Reason::Truncated);
    }
    if f.head[l4] != V6_ECHO_REQUEST || f.head[l4 + 1] != 0 {
        return Verdict::Ignore;
    }
    let end = l4 + plen;
    if end > f.len {
        return Verdict::Drop(Reason::Truncated);
    }
    let (src, dst) = (ip.src(), ip.dst());
    if src[0] == 0xff || src == [0; 16] || f.head[6] & 1 != 0 {
        return Verdict::Drop(Reason::SrcNotUnicast);
    }
    if dst[0] == 0xff {
        return Verdict::Drop(Reason::DstNotUnicast);
    }
    let pseudo = checksum::pseudo_v6(&src, &dst, 58, plen as u32);
    if !echo_message(f, l4, end, pseudo, V6_ECHO_REPLY) {
        return Verdict::Drop(Reason::BadIcmpChecksum);
    }
    let h = &mut *f.head;
    let mut ip = Ipv6Packet::new_header(&mut h[l3..]).expect("checked above");
    ip.swap_addrs();
    ip.set_hop_limit(REPLY_TTL);
    reply_eth(h, port_mac);
    Verdict::Forward
}

/// The drop reason for a header view's refusal.
fn refused(e: WireError) -> Verdict {
    match e {
        WireError::Truncated { .. } => Verdict::Drop(Reason::Truncated),
        WireError::Malformed { .. } => Verdict::Drop(Reason::BadIpHeader),
    }
}

/// Verify the echo request message at `l4..end` (its checksum summed from
/// `pseudo`, over every segment) and turn it into `reply_type` with the
/// checksum recomputed over the whole message (0xffff, never 0x0000, for
/// an all-zero one). False, nothing written, when the checksum is wrong.
fn echo_message<'a, T>(
    f: &mut Frame<'a, T>,
    l4: usize,
    end: usize,
    pseudo: u32,
    reply_type: u8,
) -> bool
where
    T: Iterator<Item = &'a [u8]> + Clone,
{
    // Sum of the message after its type/code and checksum words.
    let rest = u32::from(f.sum(l4 + 4, end)) + pseudo;
    let req = u32::from(be16(f.head, l4)) + u32::from(be16(f.head, l4 + 2));
    if checksum::fold(rest + req) != 0xffff {
        return false;
    }
    let h = &mut *f.head;
    h[l4] = reply_type;
    let c = checksum::finish(rest + u32::from(be16(h, l4)));
    h[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    true
}

/// A reply goes back to the requester's MAC, from the port's own.
fn reply_eth(h: &mut [u8], port_mac: &[u8; 6]) {
    h.copy_within(6..12, 0);
    h[6..12].copy_from_slice(port_mac);
}

#[cfg(test)]
mod tests;
