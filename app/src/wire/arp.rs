//! ARP for IPv4 over Ethernet (RFC 826).

use super::{be16, need, put16, WireError};
use std::ops::Range;

const HTYPE: usize = 0;
const PTYPE: usize = 2;
const HLEN: usize = 4;
const PLEN: usize = 5;
const OPER: usize = 6;
const SHA: Range<usize> = 8..14;
const SPA: Range<usize> = 14..18;
const THA: Range<usize> = 18..24;
const TPA: Range<usize> = 24..28;
/// Request.
pub const OP_REQUEST: u16 = 1;
/// Reply.
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap `buf`: 28 bytes, hardware type 1 (Ethernet), protocol 0x0800,
    /// address lengths 6 and 4.
    ///
    /// # Errors
    /// [`WireError`] naming what is wrong.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("arp packet", b.len(), 28)?;
        if be16(b, HTYPE) != 1 || be16(b, PTYPE) != 0x0800 || b[HLEN] != 6 || b[PLEN] != 4 {
            return Err(WireError::Malformed {
                what: "arp (not ethernet/ipv4)",
            });
        }
        Ok(ArpPacket { buf })
    }

    /// Operation.
    pub fn operation(&self) -> u16 {
        be16(self.buf.as_ref(), OPER)
    }

    /// Sender hardware address.
    pub fn sha(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[SHA]);
        m
    }

    /// Sender protocol address.
    pub fn spa(&self) -> [u8; 4] {
        let mut m = [0; 4];
        m.copy_from_slice(&self.buf.as_ref()[SPA]);
        m
    }

    /// Target protocol address.
    pub fn tpa(&self) -> [u8; 4] {
        let mut m = [0; 4];
        m.copy_from_slice(&self.buf.as_ref()[TPA]);
        m
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Turn a request into the reply "`tpa` is at `mac`", in place.
    pub fn make_reply(&mut self, mac: &[u8; 6]) {
        let (sha, spa, tpa) = (self.sha(), self.spa(), self.tpa());
        let b = self.buf.as_mut();
        put16(b, OPER, OP_REPLY);
        b[THA].copy_from_slice(&sha);
        b[TPA].copy_from_slice(&spa);
        b[SHA].copy_from_slice(mac);
        b[SPA].copy_from_slice(&tpa);
    }
}
