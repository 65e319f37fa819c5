//! [`InFlight`]: mbufs handed to a device or the kernel as raw descriptors
//! (buffer addresses on a ring) and taken back when the address returns.
//!
//! A driver that posts a buffer to hardware must give up the `Mbuf` handle
//! while the device owns it, and later turn the address the device returns
//! back into the handle. Outside this crate an `Mbuf` never becomes an
//! address and back (no `unsafe` in drivers); here the handle is parked
//! (not forgotten) in a slot indexed by the mbuf's index, and an address
//! coming back is accepted only when it names exactly a parked mbuf, so a
//! stray or duplicated address from the device can never create a second
//! owner.

use crate::mbuf::{Mbuf, MbufHeader};
use crate::pool::MbufPool;
use std::fmt;

/// Parked mbufs of one queue, by mbuf index.
pub struct InFlight {
    slots: Box<[Option<Mbuf>]>,
    count: usize,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InFlight({} of {})", self.count, self.slots.len())
    }
}

impl InFlight {
    /// Room for every mbuf of a pool of `capacity`.
    pub fn new(capacity: usize) -> InFlight {
        InFlight {
            slots: (0..capacity).map(|_| None).collect(),
            count: 0,
        }
    }

    /// Mbufs parked now.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is parked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Park `m` (the device now owns its buffer); returns its header address,
    /// from which the driver derives the descriptor address.
    ///
    /// # Panics
    /// When `m`'s index is beyond the capacity (an mbuf of a bigger pool).
    #[inline]
    pub fn park(&mut self, m: Mbuf) -> usize {
        let i = m.index() as usize;
        let addr = m.as_ptr().as_ptr() as usize;
        let old = self.slots[i].replace(m);
        debug_assert!(old.is_none(), "mbuf {i} parked twice");
        if old.is_none() {
            self.count += 1;
        }
        addr
    }

    /// Take back the parked mbuf whose header is at `hdr` (an address the
    /// device returned, mapped back to its header), if there is one. `pool`
    /// is the pool the parked mbufs come from.
    #[inline]
    pub fn take(&mut self, pool: &MbufPool, hdr: usize) -> Option<Mbuf> {
        let i = header_index(pool, hdr)? as usize;
        let slot = self.slots.get_mut(i)?;
        if slot.as_ref()?.as_ptr().as_ptr() as usize != hdr {
            return None;
        }
        self.count -= 1;
        slot.take()
    }

    /// Take back every parked mbuf (the device is gone or stopped).
    pub fn drain_into(&mut self, out: &mut Vec<Mbuf>) {
        out.extend(self.slots.iter_mut().filter_map(Option::take));
        self.count = 0;
    }
}

/// The index recorded in the header at `hdr`, when `hdr` is a header-aligned
/// address inside `pool`'s objects.
#[inline]
fn header_index(pool: &MbufPool, hdr: usize) -> Option<u32> {
    let end = hdr.checked_add(std::mem::size_of::<MbufHeader>())?;
    if !hdr.is_multiple_of(std::mem::align_of::<MbufHeader>())
        || !pool.contains_addr(hdr)
        || !pool.contains_addr(end - 1)
    {
        return None;
    }
    let p = (hdr + std::mem::offset_of!(MbufHeader, index)) as *const u32;
    // SAFETY: `hdr..end` lies inside the pool's memory, which stays mapped
    // and initialised while `pool` lives; the read is an aligned u32 (the
    // header is 64-byte aligned and `index` a u32 field). The bytes are
    // either a header the pool wrote at creation (read-only after it for
    // the index) or packet data; either way any value is a valid u32, and
    // the caller trusts it only when it names a parked mbuf at `hdr`.
    #[allow(unsafe_code)]
    let index = unsafe { p.read_volatile() };
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PoolConfig;

    #[test]
    fn only_parked_addresses_come_back_once() {
        let pool = MbufPool::on_heap(&PoolConfig {
            n: 8,
            cache_size: 0,
            ..PoolConfig::default()
        })
        .unwrap();
        let mut f = InFlight::new(pool.capacity());
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        let ha = f.park(a);
        let hb = f.park(b);
        assert_eq!(f.len(), 2);
        assert!(f.take(&pool, ha + 64).is_none(), "not a parked header");
        assert!(f.take(&pool, ha + 1).is_none(), "misaligned");
        assert!(f.take(&pool, 64).is_none(), "outside the pool");
        let a = f.take(&pool, ha).expect("parked");
        assert!(f.take(&pool, ha).is_none(), "taken once");
        drop(a);
        let mut out = Vec::new();
        f.drain_into(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr().as_ptr() as usize, hb);
        assert!(f.is_empty());
        drop(out);
        pool.leak_check().unwrap();
    }
}
