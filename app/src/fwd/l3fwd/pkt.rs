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
///
/// The common case is tried first with one length check that covers every
/// byte it reads: an untagged IPv4 header without options, TTL > 1, no
/// checksum to verify. Everything else (IPv6, VLAN tags, options, the
/// checksum check, every drop) takes [`parse_general`].
#[inline(always)]
pub fn parse(f: &[u8], check_csum: bool) -> Parsed {
    if f.len() >= 34 && !check_csum && f[12] == 0x08 && f[13] == 0x00 && f[14] == 0x45 {
        let total = usize::from(be16(f, 16));
        if total >= 20 && total <= f.len() - 14 && f[22] > 1 {
            return Parsed::V4 {
                off: 14,
                vlan: false,
            };
        }
    }
    parse_general(f, check_csum)
}

/// [`parse`] for every frame: VLAN tags, IPv6, options, the checksum
/// check and the drop reasons.
#[inline(never)]
pub fn parse_general(f: &[u8], check_csum: bool) -> Parsed {
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
    f.get(off + 16..off + 20)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
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
    match f.get(l4..l4 + 4).and_then(|p| <&[u8; 4]>::try_from(p).ok()) {
        Some(p) if matches!(proto, 6 | 17 | 132) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

/// The IPv4 5-tuple (ports 0 unless TCP/UDP/SCTP); the header at `off`
/// was checked by [`parse`] (one bounds check covers the fixed header).
#[inline]
pub fn key4(f: &[u8], off: usize) -> Key4 {
    let Some(h) = f
        .get(off..off + 20)
        .and_then(|h| <&[u8; 20]>::try_from(h).ok())
    else {
        return Key4::default();
    };
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let proto = h[9];
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let (sp, dp) = ports(f, off + ihl, proto);
    Key4::new(src, dst, sp, dp, proto)
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

/// Decrement the IPv4 TTL (known > 1) and update the checksum: RFC 1624
/// eqn. 3 with the changed word `m` = TTL << 8 | protocol and `m' = m -
/// 0x100`, where `~m + m'` is the constant 0xfeff, so `HC' = ~(~HC +
/// 0xfeff)` with one end-around carry (the sum is at most 0x1fefe, whose
/// fold cannot carry again).
#[inline]
pub fn ttl_dec4(f: &mut [u8], off: usize) {
    let Some(h) = f.get_mut(off + 8..off + 12) else {
        return;
    };
    h[0] -= 1;
    let hc = u16::from_be_bytes([h[2], h[3]]);
    let s = u32::from(!hc) + 0xfeff;
    let s = (s & 0xffff) + (s >> 16);
    h[2..4].copy_from_slice(&(!(s as u16)).to_be_bytes());
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

/// Rewrite both MACs from one 12-byte (destination, source) block.
#[inline]
pub fn set_macs12(f: &mut [u8], macs: &[u8; 12]) {
    if let Some(d) = f.get_mut(..12) {
        d.copy_from_slice(macs);
    }
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
            let m = u16::from_be_bytes([h[8], h[9]]);
            let want = csum_update(c, m, m - 0x100);
            ttl_dec4(&mut f, 14);
            prop_assert_eq!(f[14 + 8], ttl - 1);
            prop_assert_eq!(u16::from_be_bytes([f[24], f[25]]), want, "RFC 1624 eqn. 3");
            prop_assert_eq!(checksum(&f[14..34]), 0, "header verifies");
        }

        #[test]
        fn the_fast_parse_agrees_with_the_general_one(
            f in prop::collection::vec(any::<u8>(), 0..80),
            ver_ihl in prop::sample::select(vec![0x45u8, 0x46, 0x44, 0x55, 0x65]),
            ttl in 0u8..4,
            total in 0u16..80,
            csum in any::<bool>(),
        ) {
            let mut f = f;
            if f.len() >= 34 {
                f[12] = 0x08;
                f[13] = 0x00;
                f[14] = ver_ihl;
                f[16..18].copy_from_slice(&total.to_be_bytes());
                f[22] = ttl;
            }
            prop_assert_eq!(parse(&f, csum), parse_general(&f, csum));
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
