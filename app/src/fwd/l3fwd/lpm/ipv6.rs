//! IPv6: a 16-bit first level, then 8 bits per level.

use super::{LpmError, Trie};

/// IPv6 LPM: 16-bit first level, then 8 bits per level.
#[derive(Debug, Clone)]
pub struct Lpm6(pub(super) Trie);

impl Lpm6 {
    /// An empty table with room for `max_groups` groups.
    pub fn new(max_groups: u32) -> Lpm6 {
        Lpm6(Trie::new(128, 16, max_groups))
    }

    /// Add or replace `prefix/depth → nh`.
    ///
    /// # Errors
    /// [`LpmError`].
    pub fn add(&mut self, prefix: u128, depth: u8, nh: u32) -> Result<(), LpmError> {
        self.0.add(prefix, depth, nh)
    }

    /// Delete `prefix/depth`; false when not held.
    pub fn delete(&mut self, prefix: u128, depth: u8) -> bool {
        self.0.delete(prefix, depth)
    }

    /// Longest-prefix lookup.
    #[inline]
    pub fn lookup(&self, a: u128) -> Option<u32> {
        self.0.lookup(a)
    }

    /// The trie.
    pub fn trie(&self) -> &Trie {
        &self.0
    }
}
