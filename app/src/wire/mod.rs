//! Typed, bounds-checked views over frame bytes (smoltcp `wire` style).
//!
//! Each view wraps `T: AsRef<[u8]>`; `new_checked` verifies that every
//! field the view exposes lies inside the buffer, so getters and setters
//! (on `T: AsMut<[u8]>`) index without further checks and never panic.
//! Field offsets are named ranges. Nothing here allocates.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ip;
pub mod l4;

pub use arp::ArpPacket;
pub use ethernet::{EtherType, EthernetFrame};
pub use icmp::IcmpPacket;
pub use ip::{IpProto, Ipv4Packet, Ipv6Packet};
pub use l4::PortsHeader;

/// Why a view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than the length it claims).
    #[error("truncated {what}: {have} bytes, {need} needed")]
    Truncated {
        /// Which header.
        what: &'static str,
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A field holds a value the view cannot work with.
    #[error("malformed {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
}

pub(crate) fn need(what: &'static str, have: usize, need: usize) -> Result<(), WireError> {
    if have < need {
        Err(WireError::Truncated { what, have, need })
    } else {
        Ok(())
    }
}

/// Read a big-endian u16 at `at` (callers have checked bounds).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Write a big-endian u16 at `at` (callers have checked bounds).
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Swap two equally long, non-overlapping ranges of `b`.
#[inline]
pub(crate) fn swap_ranges(b: &mut [u8], a: std::ops::Range<usize>, c: std::ops::Range<usize>) {
    debug_assert!(a.len() == c.len() && a.end <= c.start);
    let (lo, hi) = b.split_at_mut(c.start);
    lo[a].swap_with_slice(&mut hi[..c.len()]);
}
