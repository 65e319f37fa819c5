//! IPv4: the DIR-24-8 layout (24-bit first level, then one 8-bit group).

use super::{LpmError, Trie, EXT, VALID, VAL_MASK};

/// IPv4 LPM: 24-bit first level, then 8 bits (DIR-24-8).
#[derive(Debug, Clone)]
pub struct Lpm4(pub(super) Trie);

impl Lpm4 {
    /// An empty table with room for `max_groups` groups of 256 entries
    /// (each /25../32 rule under a new /24 takes one, 1 KiB).
    pub fn new(max_groups: u32) -> Lpm4 {
        Lpm4(Trie::new(32, 24, max_groups))
    }

    /// Add or replace `prefix/depth → nh`.
    ///
    /// # Errors
    /// [`LpmError`].
    pub fn add(&mut self, prefix: u32, depth: u8, nh: u32) -> Result<(), LpmError> {
        self.0.add(prefix.into(), depth, nh)
    }

    /// Delete `prefix/depth`; false when not held.
    pub fn delete(&mut self, prefix: u32, depth: u8) -> bool {
        self.0.delete(prefix.into(), depth)
    }

    /// Longest-prefix lookup: one read, two when the /24 has longer rules.
    #[inline]
    pub fn lookup(&self, a: u32) -> Option<u32> {
        let t = &self.0;
        let mut e = t.root[(a >> 8) as usize];
        if e & EXT != 0 {
            e = t.groups[((e & VAL_MASK) as usize) << 8 | (a & 0xff) as usize];
        }
        (e & VALID != 0).then_some(e & VAL_MASK)
    }

    /// Prefetch the first-level entry of `a`.
    #[inline]
    pub fn prefetch(&self, a: u32) {
        xfwd_mempool::prefetch(self.0.root.as_ptr().wrapping_add((a >> 8) as usize));
    }

    /// The trie.
    pub fn trie(&self) -> &Trie {
        &self.0
    }
}
