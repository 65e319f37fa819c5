//! A fixed-capacity burst of mbufs: no heap per burst.
//!
//! Stores header pointers in a `[*mut MbufHeader; MAX_BURST]` (an `Mbuf` is a
//! transparent header pointer) so a pool cache moves a burst in and out with
//! one vector copy. The first `len` entries are owned
//! mbufs; dropping the batch returns them to their pools.

use crate::mbuf::{Mbuf, MbufHeader};
use std::fmt;
use std::ptr::NonNull;

/// Most mbufs in one batch (DPDK's `MAX_PKT_BURST` of 512).
pub const MAX_BURST: usize = 512;

/// A burst of owned mbufs.
pub struct MbufBatch {
    len: usize,
    limit: usize,
    /// Non-zero: every mbuf held is a single segment of the pool with this
    /// id, untouched through `&mut` since a cache allocated it, so a cache
    /// of that pool can free the batch without reading any header.
    clean_pool: usize,
    addrs: [*mut MbufHeader; MAX_BURST],
}

impl fmt::Debug for MbufBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MbufBatch")
            .field("len", &self.len)
            .field("limit", &self.limit)
            .finish()
    }
}

impl Default for MbufBatch {
    fn default() -> Self {
        MbufBatch::new(MAX_BURST)
    }
}

// SAFETY: the batch owns its mbufs uniquely, as `Vec<Mbuf>` would, and Mbuf
// is Send.
#[allow(unsafe_code)]
unsafe impl Send for MbufBatch {}

#[allow(unsafe_code)]
impl MbufBatch {
    /// An empty batch holding at most `limit` mbufs (clamped to
    /// 1..=[`MAX_BURST`]): the burst size.
    pub fn new(limit: usize) -> MbufBatch {
        MbufBatch {
            len: 0,
            limit: limit.clamp(1, MAX_BURST),
            clean_pool: 0,
            addrs: [std::ptr::null_mut(); MAX_BURST],
        }
    }

    /// Mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The burst size.
    #[inline]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Change the burst size (clamped; never below the current length).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(self.len.max(1), MAX_BURST);
    }

    /// Free slots before the burst size is reached.
    #[inline]
    pub fn room(&self) -> usize {
        self.limit - self.len
    }

    /// True when `len == limit`.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.limit
    }

    /// The mbufs.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is repr(transparent) over NonNull<MbufHeader>, which
        // has the layout of *mut MbufHeader; the first len entries are
        // non-null header pointers owned by the batch.
        unsafe { std::slice::from_raw_parts(self.addrs.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The mbufs, mutable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        self.clean_pool = 0;
        // SAFETY: as in as_slice(), with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.addrs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Iterate.
    pub fn iter(&self) -> std::slice::Iter<'_, Mbuf> {
        self.as_slice().iter()
    }

    /// Iterate mutably.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Mbuf> {
        self.as_mut_slice().iter_mut()
    }

    /// Add one; gives it back when the batch is full.
    ///
    /// # Errors
    /// The mbuf itself when there is no room.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == self.limit {
            return Err(m);
        }
        self.clean_pool = 0;
        self.addrs[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Remove the last one.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: entry len was owned by the batch and is no longer counted.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.addrs[self.len])) })
    }

    /// Take every mbuf out, front to back.
    pub fn drain(&mut self) -> Drain<'_> {
        let n = self.len;
        self.len = 0;
        Drain {
            addrs: &self.addrs[..n],
            pos: 0,
        }
    }

    /// Remove the first `k` mbufs (what a driver sent), shifting the rest to
    /// the front, and hand each to `f`.
    pub fn consume_front(&mut self, k: usize, mut f: impl FnMut(Mbuf)) {
        let k = k.min(self.len);
        let n = self.len;
        // The batch owns nothing while f runs: if f panics, the remaining
        // mbufs leak (counted by the leak audit) instead of being freed twice.
        self.len = 0;
        for i in 0..k {
            let a = self.addrs[i];
            // SAFETY: entry i was owned by the batch and is handed out once.
            f(unsafe { Mbuf::from_raw(NonNull::new_unchecked(a)) });
        }
        self.addrs.copy_within(k..n, 0);
        self.len = n - k;
    }

    /// The addresses of the mbufs held (for [`crate::MbufRing`] to copy;
    /// ownership moves only with a following [`MbufBatch::forget_front`]).
    #[inline]
    pub(crate) fn owned_addrs(&self) -> &[*mut MbufHeader] {
        &self.addrs[..self.len]
    }

    /// Forget the first `k` mbufs (their ownership was moved elsewhere as
    /// addresses, e.g. into an [`crate::MbufRing`]), shifting the rest to
    /// the front.
    ///
    /// # Safety
    /// The caller must have taken ownership of the first `k` mbufs (to turn
    /// their addresses back into mbufs later with `Mbuf::from_raw`).
    #[inline]
    pub(crate) unsafe fn forget_front(&mut self, k: usize) {
        if k >= self.len {
            // The common case, a whole burst sent: no shift (no memmove call).
            self.len = 0;
            return;
        }
        self.addrs.copy_within(k..self.len, 0);
        self.len -= k;
    }

    /// Keep the mbufs for which `keep` is true, in order; the others are
    /// dropped back to their pools.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) {
        self.clean_pool = 0;
        let n = self.len;
        self.len = 0;
        for i in 0..n {
            let a = self.addrs[i];
            // SAFETY: entry i was owned by the batch; it is either re-counted
            // (kept) or dropped, exactly once.
            let mut m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(a)) };
            if keep(&mut m) {
                self.addrs[self.len] = m.into_raw().as_ptr();
                self.len += 1;
            }
        }
    }

    /// Move all of `other` to the end of this batch, as much as fits; returns
    /// how many moved (the rest stays in `other`).
    pub fn append_from(&mut self, other: &mut MbufBatch) -> usize {
        let k = other.len.min(self.room());
        if k > 0 && (self.len > 0 && self.clean_pool != other.clean_pool || other.clean_pool == 0) {
            self.clean_pool = 0;
        } else if k > 0 {
            self.clean_pool = other.clean_pool;
        }
        self.addrs[self.len..self.len + k].copy_from_slice(&other.addrs[..k]);
        self.len += k;
        other.addrs.copy_within(k..other.len, 0);
        other.len -= k;
        k
    }

    /// Drop every mbuf back to its pool (through the rings; workers use
    /// `PoolCache::free_batch`).
    pub fn clear(&mut self) {
        for m in self.drain() {
            drop(m);
        }
    }

    /// The header-pointer array past the length, for a cache or an
    /// [`crate::MbufRing`] to fill.
    ///
    /// # Safety
    /// Entries written here become owned by the batch only through
    /// [`MbufBatch::set_len`]; they must be header addresses the caller owns.
    #[inline]
    pub(crate) unsafe fn spare_addrs(&mut self) -> &mut [*mut MbufHeader] {
        self.clean_pool = 0;
        let (len, limit) = (self.len, self.limit);
        &mut self.addrs[len..limit]
    }

    /// Append `n` addresses just written past the length by a cache of pool
    /// `pool`, keeping the batch clean when it was empty or clean for the
    /// same pool.
    ///
    /// # Safety
    /// As [`MbufBatch::set_len`]: the `n` entries after the length must be
    /// owned, single-segment mbufs of pool `pool`, untouched since freed.
    #[inline]
    pub(crate) unsafe fn extend_from_pool(&mut self, n: usize, pool: usize) {
        // The common case (a batch of this cache's pool, e.g. emptied by
        // `free_batch`, which leaves the flag as it was) is one compare.
        if self.clean_pool != pool {
            self.clean_pool = if self.len == 0 { pool } else { 0 };
        }
        self.len += n;
    }

    /// The pool id when the batch is clean (see the field), else 0.
    #[inline]
    pub(crate) fn clean_pool(&self) -> usize {
        self.clean_pool
    }

    /// The `n` address slots past the length, without clearing the clean
    /// flag or checking bounds (a pool cache filling them; pair with
    /// `extend_from_pool`).
    ///
    /// # Safety
    /// `n` must be at most [`MbufBatch::room`].
    #[inline]
    pub(crate) unsafe fn spare_n_for_pool(&mut self, n: usize) -> &mut [*mut MbufHeader] {
        debug_assert!(n <= self.room());
        // SAFETY: len + n ≤ limit ≤ MAX_BURST (the caller's contract): the
        // slots lie inside the array, borrowed exclusively through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.addrs.as_mut_ptr().add(self.len), n) }
    }

    /// The whole address array (entries past `len` are stale numbers).
    #[inline]
    pub(crate) fn raw_addrs(&self) -> &[*mut MbufHeader; MAX_BURST] {
        &self.addrs
    }

    /// Set the length.
    ///
    /// # Safety
    /// Entries `0..len` must be owned header addresses (growing) and entries
    /// dropped from the count must have been taken over by the caller
    /// (shrinking).
    #[inline]
    pub(crate) unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.limit);
        if len > self.len {
            self.clean_pool = 0;
        }
        self.len = len;
    }
}

impl Drop for MbufBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Iterator returned by [`MbufBatch::drain`]; mbufs not consumed are dropped
/// back to their pools.
#[derive(Debug)]
pub struct Drain<'a> {
    addrs: &'a [*mut MbufHeader],
    pos: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        let a = *self.addrs.get(self.pos)?;
        self.pos += 1;
        // SAFETY: the batch gave up these entries (len = 0) to this iterator,
        // which hands each out once.
        #[allow(unsafe_code)]
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(a)) })
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
