//! IPv4 and IPv6 headers.

use super::checksum;
use super::{be16, need, put16, swap_ranges, WireError};
use std::ops::Range;

/// Upper-layer protocols we look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProto {
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 58.
    Icmpv6,
    /// Anything else.
    Other(u8),
}

impl From<u8> for IpProto {
    fn from(v: u8) -> Self {
        match v {
            1 => IpProto::Icmp,
            6 => IpProto::Tcp,
            17 => IpProto::Udp,
            58 => IpProto::Icmpv6,
            o => IpProto::Other(o),
        }
    }
}

mod v4 {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// A view of an IPv4 header and what follows it.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
    hlen: usize,
    total: usize,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap `buf`: version 4, IHL ≥ 5, the header and the total length it
    /// claims inside the buffer (trailing padding is allowed).
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let mut p = Self::new_header(buf)?;
        let total = p.total_len();
        if total < p.hlen {
            return Err(WireError::Malformed {
                what: "ipv4 total length",
            });
        }
        need("ipv4 packet", p.buf.as_ref().len(), total)?;
        p.total = total;
        Ok(p)
    }

    /// Wrap only the header: version 4, IHL ≥ 5 and the IHL·4 header bytes
    /// inside `buf`; the total length is not checked (the datagram may go
    /// on in later segments, or be cut short by a capture's snaplen): read
    /// it with [`Self::total_len`]. The payload views are empty.
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn new_header(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("ipv4 header", b.len(), 20)?;
        if b[v4::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed {
                what: "ipv4 version",
            });
        }
        let hlen = usize::from(b[v4::VER_IHL] & 0x0f) * 4;
        if hlen < 20 {
            return Err(WireError::Malformed { what: "ipv4 IHL" });
        }
        need("ipv4 options", b.len(), hlen)?;
        Ok(Ipv4Packet {
            buf,
            hlen,
            total: hlen,
        })
    }

    /// The total length field.
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), v4::TOTAL_LEN))
    }

    /// True for a fragment (more-fragments flag or a fragment offset).
    pub fn is_fragment(&self) -> bool {
        be16(self.buf.as_ref(), v4::FRAG) & 0x3fff != 0
    }

    /// The fragment offset (in 8-byte units; 0 for the first fragment).
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf.as_ref(), v4::FRAG) & 0x1fff
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        self.hlen
    }

    /// Upper-layer protocol.
    pub fn protocol(&self) -> IpProto {
        self.buf.as_ref()[v4::PROTO].into()
    }

    /// Source address.
    pub fn src(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buf.as_ref()[v4::SRC]);
        a
    }

    /// Destination address.
    pub fn dst(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buf.as_ref()[v4::DST]);
        a
    }

    /// TTL.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[v4::TTL]
    }

    /// True when the header checksum verifies.
    pub fn checksum_ok(&self) -> bool {
        checksum::checksum(&self.buf.as_ref()[..self.hlen]) == 0
    }

    /// The payload (up to the total length).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.hlen..self.total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Swap source and destination (the header checksum is unchanged: the
    /// one's-complement sum does not depend on the order of the words).
    pub fn swap_addrs(&mut self) {
        swap_ranges(self.buf.as_mut(), v4::SRC, v4::DST);
    }

    /// Set the source address (checksum not updated; call `fill_checksum`).
    pub fn set_src(&mut self, a: &[u8; 4]) {
        self.buf.as_mut()[v4::SRC].copy_from_slice(a);
    }

    /// Set the destination address (checksum not updated).
    pub fn set_dst(&mut self, a: &[u8; 4]) {
        self.buf.as_mut()[v4::DST].copy_from_slice(a);
    }

    /// Set the TTL (checksum not updated).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buf.as_mut()[v4::TTL] = ttl;
    }

    /// Recompute the header checksum.
    pub fn fill_checksum(&mut self) {
        let h = self.hlen;
        let b = self.buf.as_mut();
        put16(b, v4::CHECKSUM, 0);
        let c = checksum::checksum(&b[..h]);
        put16(b, v4::CHECKSUM, c);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.hlen, self.total);
        &mut self.buf.as_mut()[h..t]
    }
}

const V6_PAYLOAD_LEN: usize = 4;
const V6_NEXT: usize = 6;
const V6_HOP_LIMIT: usize = 7;
const V6_SRC: Range<usize> = 8..24;
const V6_DST: Range<usize> = 24..40;

/// A view of an IPv6 header (no extension headers are walked).
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
    total: usize,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap `buf`: version 6, the header and the payload length it claims
    /// inside the buffer.
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let mut p = Self::new_header(buf)?;
        let total = 40 + p.payload_len();
        need("ipv6 packet", p.buf.as_ref().len(), total)?;
        p.total = total;
        Ok(p)
    }

    /// Wrap only the fixed header: version 6 and 40 bytes inside `buf`
    /// (the payload length is not checked: read it with
    /// [`Self::payload_len`]). The payload views are empty.
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn new_header(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("ipv6 header", b.len(), 40)?;
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed {
                what: "ipv6 version",
            });
        }
        Ok(Ipv6Packet { buf, total: 40 })
    }

    /// The payload length field.
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), V6_PAYLOAD_LEN))
    }

    /// Next header.
    pub fn next_header(&self) -> IpProto {
        self.buf.as_ref()[V6_NEXT].into()
    }

    /// Source address.
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buf.as_ref()[V6_SRC]);
        a
    }

    /// Destination address.
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buf.as_ref()[V6_DST]);
        a
    }

    /// The payload (up to the payload length).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[40..self.total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Swap source and destination.
    pub fn swap_addrs(&mut self) {
        swap_ranges(self.buf.as_mut(), V6_SRC, V6_DST);
    }

    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buf.as_mut()[V6_HOP_LIMIT] = h;
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let t = self.total;
        &mut self.buf.as_mut()[40..t]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_rejects_lies_and_swaps() {
        let mut h = [0u8; 28];
        h[0] = 0x45;
        h[3] = 28;
        h[9] = 17;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let mut p = Ipv4Packet::new_checked(&mut h[..]).unwrap();
        p.fill_checksum();
        assert!(p.checksum_ok());
        p.swap_addrs();
        assert!(p.checksum_ok());
        assert_eq!(p.src(), [10, 0, 0, 2]);
        assert_eq!(p.protocol(), IpProto::Udp);
        h[3] = 200; // claims more than there is
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
        h[3] = 28;
        h[0] = 0x4f; // IHL 60 > 28
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
        h[0] = 0x44; // IHL 16 < 20
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
    }
}
