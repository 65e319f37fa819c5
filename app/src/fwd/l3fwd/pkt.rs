//! Per-packet work of the router: parse L2 (up to two VLAN tags, kept
//! as they are), check the IPv4/IPv6 header, check TTL / hop limit, and
//! after the lookup decrement it (IPv4 checksum updated incrementally, RFC
//! 1624 eqn. 3) and rewrite the MACs. Plain functions over frame bytes;
//! every index is bounds-checked by the parse, nothing panics on garbage.

use super::em::{Key4, Key6};

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not IPv4/IPv6 (after at most two VLAN tags).
    NonIp,
    /// An IP header that fails the checks.
    BadHeader,
    /// TTL or hop limit ≤ 1.
    TtlExceeded,
    /// No route (LPM) or no flow (EM).
    NoRoute,
}

/// What the parse found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// IPv4 header at this offset.
    V4 {
        /// L3 offset.
        off: u16,
        /// Had a VLAN tag.
        vlan: bool,
    },
    /// IPv6 header at this offset.
    V6 {
        /// L3 offset.
        off: u16,
        /// Had a VLAN tag.
        vlan: bool,
    },
    /// Dropped.
    Drop(Drop),
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parse and check a frame (RFC 1812 5.2.2 checks for IPv4: length,
/// version, IHL, total length within the frame; the checksum when
/// `check_csum`).
#[inline]
pub fn parse(f: &[u8], check_csum: bool) -> Parsed {
    if f.len() < 14 {
        return Parsed::Drop(Drop::BadHeader);
    }
    let mut et = be16(f, 12);
    let mut off = 14usize;
    let mut tags = 0;
    while et == ETH_P_8021Q || et == ETH_P_8021AD {
        if tags == 2 || f.len() < off + 4 {
            return Parsed::Drop(Drop::NonIp);
        }
        et = be16(f, off + 2);
        off += 4;
        tags += 1;
    }
    let vlan = tags > 0;
    let l3 = &f[off..];
    match et {
        ETH_P_IP => {
            if l3.len() < 20 {
                return Parsed::Drop(Drop::BadHeader);
            }
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let total = usize::from(be16(l3, 2));
            if l3[0] >> 4 != 4 || ihl < 20 || ihl > l3.len() || total < ihl || total > l3.len() {
                return Parsed::Drop(Drop::BadHeader);
            }
            if check_csum && crate::wire::checksum::checksum(&l3[..ihl]) != 0 {
                return Parsed::Drop(Drop::BadHeader);
            }
            if l3[8] <= 1 {
                return Parsed::Drop(Drop::TtlExceeded);
            }
            Parsed::V4 {
                off: off as u16,
                vlan,
            }
        }
        ETH_P_IPV6 => {
            if l3.len() < 40 || l3[0] >> 4 != 6 || usize::from(be16(l3, 4)) + 40 > l3.len() {
                return Parsed::Drop(Drop::BadHeader);
            }
            if l3[7] <= 1 {
                return Parsed::Drop(Drop::TtlExceeded);
            }
            Parsed::V6 {
                off: off as u16,
                vlan,
            }
        }
        _ => Parsed::Drop(Drop::NonIp),
    }
}

/// The IPv4 destination (the header at `off` was checked by [`parse`]).
#[inline]
pub fn dst4(f: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([f[off + 16], f[off + 17], f[off + 18], f[off + 19]])
}

/// The IPv6 destination.
#[inline]
pub fn dst6(f: &[u8], off: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&f[off + 24..off + 40]);
    u128::from_be_bytes(a)
}

/// The ports of a TCP/UDP/SCTP header at `l4` when they are in the frame, else 0.
#[inline]
fn ports(f: &[u8], l4: usize, proto: u8) -> (u16, u16) {
    if matches!(proto, 6 | 17 | 132) && f.len() >= l4 + 4 {
        (be16(f, l4), be16(f, l4 + 2))
    } else {
        (0, 0)
    }
}

/// The IPv4 5-tuple (ports 0 unless TCP/UDP/SCTP).
#[inline]
pub fn key4(f: &[u8], off: usize) -> Key4 {
    let src = u32::from_be_bytes([f[off + 12], f[off + 13], f[off + 14], f[off + 15]]);
    let proto = f[off + 9];
    let ihl = usize::from(f[off] & 0x0f) * 4;
    let (sp, dp) = ports(f, off + ihl, proto);
    Key4::new(src, dst4(f, off), sp, dp, proto)
}

/// The IPv6 5-tuple (next header of the fixed header; ports 0 unless
/// TCP/UDP/SCTP directly follow it).
#[inline]
pub fn key6(f: &[u8], off: usize) -> Key6 {
    let mut s = [0u8; 16];
    s.copy_from_slice(&f[off + 8..off + 24]);
    let proto = f[off + 6];
    let (sp, dp) = ports(f, off + 40, proto);
    Key6::new(u128::from_be_bytes(s), dst6(f, off), sp, dp, proto)
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word changed from `m` to `m2`.
#[inline]
pub fn csum_update(hc: u16, m: u16, m2: u16) -> u16 {
    let mut s = u32::from(!hc) + u32::from(!m) + u32::from(m2);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Decrement the IPv4 TTL (known > 1) and update the checksum.
#[inline]
pub fn ttl_dec4(f: &mut [u8], off: usize) {
    let m = be16(f, off + 8);
    let m2 = m - 0x0100;
    let hc = be16(f, off + 10);
    f[off + 8..off + 10].copy_from_slice(&m2.to_be_bytes());
    f[off + 10..off + 12].copy_from_slice(&csum_update(hc, m, m2).to_be_bytes());
}

/// Decrement the IPv6 hop limit (known > 1).
#[inline]
pub fn hop_dec6(f: &mut [u8], off: usize) {
    f[off + 7] -= 1;
}

/// Rewrite the MACs.
#[inline]
pub fn set_macs(f: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    f[0..6].copy_from_slice(dst);
    f[6..12].copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::checksum;
    use proptest::prelude::*;

    fn v4(ttl: u8, extra: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        let mut ip = vec![
            0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, ttl, 17, 0, 0, 10, 0, 0, 1, 198, 51, 100, 7,
        ];
        ip.extend_from_slice(&[0, 9, 0, 53, 0, 8, 0, 0]);
        let c = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend_from_slice(extra);
        f
    }

    proptest! {
        #[test]
        fn incremental_checksum_equals_a_full_one(hdr in prop::array::uniform20(any::<u8>()), ttl in 2u8..=255) {
            let mut h = hdr;
            h[0] = 0x45;
            h[8] = ttl;
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let mut f = vec![0u8; 14];
            f.extend_from_slice(&h);
            ttl_dec4(&mut f, 14);
            prop_assert_eq!(f[14 + 8], ttl - 1);
            prop_assert_eq!(checksum(&f[14..34]), 0, "header verifies");
        }

        #[test]
        fn garbage_never_panics(f in prop::collection::vec(any::<u8>(), 0..96), et in 0usize..5) {
            let mut f = f;
            if f.len() >= 14 {
                let t = [ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD, 0x0806][et];
                f[12..14].copy_from_slice(&t.to_be_bytes());
            }
            match parse(&f, true) {
                Parsed::V4 { off, .. } => { let o = off as usize; let _ = key4(&f, o); ttl_dec4(&mut f, o); }
                Parsed::V6 { off, .. } => { let o = off as usize; let _ = key6(&f, o); hop_dec6(&mut f, o); }
                Parsed::Drop(_) => {}
            }
        }
    }

    #[test]
    fn checks_and_drop_reasons() {
        let ok = v4(64, &[]);
        assert_eq!(
            parse(&ok, true),
            Parsed::V4 {
                off: 14,
                vlan: false
            }
        );
        assert_eq!(dst4(&ok, 14), 0xc633_6407);
        assert_eq!(parse(&v4(1, &[]), false), Parsed::Drop(Drop::TtlExceeded));
        assert_eq!(parse(&v4(0, &[]), false), Parsed::Drop(Drop::TtlExceeded));
        let mut bad = ok.clone();
        bad[14 + 11] ^= 1;
        assert_eq!(parse(&bad, true), Parsed::Drop(Drop::BadHeader));
        assert_eq!(
            parse(&bad, false),
            Parsed::V4 {
                off: 14,
                vlan: false
            }
        );
        let mut ver = ok.clone();
        ver[14] = 0x55;
        assert_eq!(parse(&ver, false), Parsed::Drop(Drop::BadHeader));
        let mut ihl = ok.clone();
        ihl[14] = 0x44;
        assert_eq!(parse(&ihl, false), Parsed::Drop(Drop::BadHeader));
        let mut tot = ok.clone();
        tot[14 + 3] = 29; // one byte longer than the frame
        assert_eq!(parse(&tot, false), Parsed::Drop(Drop::BadHeader));
        assert_eq!(parse(&ok[..30], false), Parsed::Drop(Drop::BadHeader));
        let mut arp = ok.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp, false), Parsed::Drop(Drop::NonIp));
        // One 802.1Q tag: the IP header 4 bytes further, the tag kept.
        let mut tagged = ok[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&ok[12..]);
        assert_eq!(
            parse(&tagged, true),
            Parsed::V4 {
                off: 18,
                vlan: true
            }
        );
        // Three tags: not handled, counted as non-IP.
        let mut q3 = ok[..12].to_vec();
        for _ in 0..3 {
            q3.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        q3.extend_from_slice(&ok[12..]);
        assert_eq!(parse(&q3, false), Parsed::Drop(Drop::NonIp));
        let k = key4(&ok, 14);
        assert_eq!(k, Key4::new(0x0a00_0001, 0xc633_6407, 9, 53, 17));
    }
}
