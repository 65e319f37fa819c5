//! A memif ring in shared memory, on [`crate::sys::Shared`]: the 128-byte
//! header (cookie, flags, head, tail) and `1 << log2` 16-byte descriptors.
//!
//! Ownership moves through `head` and `tail` (16-bit, atomic on both
//! sides): the producer writes descriptors, then stores its index with
//! `Release`; the consumer loads it with `Acquire` before reading them (the
//! rules of [`crate::sys::shared`]). The `flags` word is the receiver's:
//! [`RING_FLAG_MASK_INT`] set means "I poll, do not kick my eventfd".

use super::proto::{DESC_SIZE, RING_FLAG_MASK_INT, RING_HDR};
use crate::sys::Shared;
use std::sync::atomic::{fence, Ordering};

const COOKIE_OFF: usize = 0;
const FLAGS_OFF: usize = 4;
const HEAD_OFF: usize = 6;
const TAIL_OFF: usize = 64;

/// A memif descriptor (16 bytes in the C layout, native byte order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// [`super::proto::DESC_FLAG_NEXT`].
    pub flags: u16,
    /// Region of the buffer.
    pub region: u16,
    /// Bytes (buffer room when offered, packet bytes when filled).
    pub length: u32,
    /// Offset of the buffer in its region.
    pub offset: u32,
    /// Unused here.
    pub metadata: u32,
}

impl Desc {
    #[inline(always)]
    fn from_bytes(b: [u8; 16]) -> Desc {
        Desc {
            flags: u16::from_ne_bytes([b[0], b[1]]),
            region: u16::from_ne_bytes([b[2], b[3]]),
            length: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            offset: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            metadata: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    #[inline(always)]
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&self.flags.to_ne_bytes());
        b[2..4].copy_from_slice(&self.region.to_ne_bytes());
        b[4..8].copy_from_slice(&self.length.to_ne_bytes());
        b[8..12].copy_from_slice(&self.offset.to_ne_bytes());
        b[12..16].copy_from_slice(&self.metadata.to_ne_bytes());
        b
    }
}

/// Accessor of one ring (a window exactly over its header and descriptors).
#[derive(Debug, Clone)]
pub struct Ring {
    mem: Shared,
    mask: u16,
}

impl Ring {
    /// The ring of `1 << log2` descriptors at `off` of `region`, if it fits
    /// and is 8-byte aligned.
    pub fn at(region: &Shared, off: u32, log2: u8) -> Option<Ring> {
        if log2 > 15 || !off.is_multiple_of(8) || !region.addr().is_multiple_of(8) {
            return None;
        }
        let mem = region.sub(off as usize, RING_HDR + DESC_SIZE * (1usize << log2))?;
        Some(Ring {
            mem,
            mask: ((1u32 << log2) - 1) as u16,
        })
    }

    /// Address of the header (for offsets in our own region).
    pub fn addr(&self) -> usize {
        self.mem.addr()
    }

    /// Slots − 1.
    #[inline]
    pub fn mask(&self) -> u16 {
        self.mask
    }

    /// Slots.
    #[inline]
    pub fn size(&self) -> u32 {
        u32::from(self.mask) + 1
    }

    /// The cookie.
    pub fn cookie(&self) -> u32 {
        self.mem.read::<u32>(COOKIE_OFF)
    }

    /// Write the cookie.
    pub fn set_cookie(&self, c: u32) {
        self.mem.write::<u32>(COOKIE_OFF, c);
    }

    /// Head index.
    #[inline(always)]
    pub fn head(&self, o: Ordering) -> u16 {
        self.mem.load_u16(HEAD_OFF, o)
    }

    /// Store the head index.
    #[inline(always)]
    pub fn set_head(&self, v: u16, o: Ordering) {
        self.mem.store_u16(HEAD_OFF, v, o);
    }

    /// Tail index.
    #[inline(always)]
    pub fn tail(&self, o: Ordering) -> u16 {
        self.mem.load_u16(TAIL_OFF, o)
    }

    /// Store the tail index.
    #[inline(always)]
    pub fn set_tail(&self, v: u16, o: Ordering) {
        self.mem.store_u16(TAIL_OFF, v, o);
    }

    /// The flags word.
    #[inline(always)]
    pub fn flags(&self) -> u16 {
        self.mem.load_u16(FLAGS_OFF, Ordering::Relaxed)
    }

    /// Store the flags word.
    pub fn set_flags(&self, v: u16) {
        self.mem.store_u16(FLAGS_OFF, v, Ordering::Release);
    }

    /// The receiver wants a kick (its interrupt is unmasked). A producer
    /// calls it after publishing its index.
    #[inline(always)]
    pub fn wants_kick(&self) -> bool {
        self.flags() & RING_FLAG_MASK_INT == 0
    }

    /// Receiver: mask (polling) or unmask (about to block) the interrupt.
    /// Unmasking is followed by a full fence, so the caller's next look at
    /// the producer's index cannot be ordered before it: a packet published
    /// before it is seen then; one published after it finds the flag clear
    /// and kicks (an xfwd producer fences between its index store and its
    /// flag load; a producer that does not may rarely miss the kick, which
    /// the waiter's timeout bounds).
    pub fn set_interrupt(&self, on: bool) {
        self.set_flags(if on { 0 } else { RING_FLAG_MASK_INT });
        if on {
            fence(Ordering::SeqCst);
        }
    }

    #[inline(always)]
    fn desc_off(&self, slot: u16) -> usize {
        RING_HDR + DESC_SIZE * usize::from(slot & self.mask)
    }

    /// A copy of descriptor `slot` (masked).
    #[inline(always)]
    pub fn desc(&self, slot: u16) -> Desc {
        Desc::from_bytes(self.mem.read::<[u8; 16]>(self.desc_off(slot)))
    }

    /// Write descriptor `slot` (masked).
    #[inline(always)]
    pub fn set_desc(&self, slot: u16, d: Desc) {
        self.mem
            .write::<[u8; 16]>(self.desc_off(slot), d.to_bytes());
    }

    /// Write the flags and length of descriptor `slot`, leaving the buffer
    /// the peer gave (server TX).
    #[inline(always)]
    pub fn set_desc_flags_len(&self, slot: u16, flags: u16, len: u32) {
        let o = self.desc_off(slot);
        self.mem.write::<u16>(o, flags);
        self.mem.write::<u32>(o + 4, len);
    }

    /// Write only the length of descriptor `slot` (RX refill).
    #[inline(always)]
    pub fn set_desc_len(&self, slot: u16, len: u32) {
        self.mem.write::<u32>(self.desc_off(slot) + 4, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Mapping;

    #[test]
    fn ring_accessors_stay_in_bounds() {
        let len = RING_HDR + 16 * DESC_SIZE;
        let shm = Shared::from_mapping(Mapping::anon(4096).unwrap());
        let reg = shm.sub(0, len + 8).unwrap();
        assert!(Ring::at(&reg, 0, 5).is_none(), "32 slots do not fit");
        assert!(Ring::at(&reg, 4, 4).is_none(), "misaligned");
        let r = Ring::at(&reg, 8, 4).unwrap();
        r.set_cookie(super::super::proto::COOKIE);
        r.set_head(3, Ordering::Relaxed);
        r.set_tail(2, Ordering::Relaxed);
        let d = Desc {
            flags: 1,
            region: 2,
            length: 3,
            offset: 4,
            metadata: 5,
        };
        r.set_desc(17, d); // masked to slot 1
        assert_eq!(r.desc(1), d);
        r.set_desc_len(1, 99);
        r.set_desc_flags_len(2, 1, 7);
        assert_eq!(r.desc(1).length, 99);
        assert_eq!((r.desc(2).flags, r.desc(2).length), (1, 7));
        // The C layout: head at 6, tail at 64, descriptors at 128.
        assert_eq!(shm.read16(8 + 6), 3);
        assert_eq!(shm.read16(8 + 64), 2);
        assert_eq!(shm.read32(8 + 128 + 16 + 4), 99);
        assert!(r.wants_kick());
        r.set_interrupt(false);
        assert!(!r.wants_kick());
        assert_eq!(r.cookie(), super::super::proto::COOKIE);
    }
}
