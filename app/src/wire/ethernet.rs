//! Ethernet II frames.

use super::{be16, need, put16, WireError};
use std::ops::Range;

const DST: Range<usize> = 0..6;
const SRC: Range<usize> = 6..12;
const ETHERTYPE: usize = 12;
/// Ethernet header length.
pub const HEADER_LEN: usize = 14;

/// EtherTypes we look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x86dd.
    Ipv6,
    /// 0x0806.
    Arp,
    /// Anything else.
    Other(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x0806 => EtherType::Arp,
            o => EtherType::Other(o),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Arp => 0x0806,
            EtherType::Other(o) => o,
        }
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap `buf` after checking it holds a whole header.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when shorter than 14 bytes.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        need("ethernet header", buf.as_ref().len(), HEADER_LEN)?;
        Ok(EthernetFrame { buf })
    }

    /// Destination MAC.
    pub fn dst(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[DST]);
        m
    }

    /// Source MAC.
    pub fn src(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[SRC]);
        m
    }

    /// EtherType.
    pub fn ethertype(&self) -> EtherType {
        be16(self.buf.as_ref(), ETHERTYPE).into()
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination MAC.
    pub fn set_dst(&mut self, m: &[u8; 6]) {
        self.buf.as_mut()[DST].copy_from_slice(m);
    }

    /// Set the source MAC.
    pub fn set_src(&mut self, m: &[u8; 6]) {
        self.buf.as_mut()[SRC].copy_from_slice(m);
    }

    /// Set the EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buf.as_mut(), ETHERTYPE, t.into());
    }

    /// Swap source and destination MACs in place.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let b = &mut self.buf.as_mut()[..SRC.end];
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&b[DST]);
        b.copy_within(SRC, DST.start);
        b[SRC].copy_from_slice(&dst);
    }

    /// The bytes after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_are_refused_and_swaps_work() {
        assert!(EthernetFrame::new_checked(&[0u8; 13][..]).is_err());
        let mut b = [0u8; 14];
        b[..6].fill(1);
        b[6..12].fill(2);
        b[12] = 0x08;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        f.swap_addrs();
        assert_eq!((f.dst(), f.src()), ([2; 6], [1; 6]));
    }
}
