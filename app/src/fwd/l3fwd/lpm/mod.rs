//! Longest-prefix match: a multibit trie in the DIR-24-8 style of DPDK's
//! `rte_lpm` (and `rte_lpm6`, whose first level is 24 bits; ours is 16 for
//! IPv6, 256 KiB instead of 64 MiB, since IPv6 tables are much smaller).
//!
//! The first level indexes the top `first` bits of the address; an entry
//! either holds a next hop (with the depth of the rule that set it) or
//! points to a group of 256 entries that resolves the next 8 bits, and so
//! on. IPv4: 24 + 8 (one or two memory reads per lookup). IPv6: 16 + 14 × 8.
//!
//! Add and delete follow `rte_lpm`: adding a rule of depth `d` overwrites
//! the entries of its range whose depth is at most `d` (longer rules inside
//! it stay); deleting it rewrites the entries it set (depth exactly `d`)
//! with the longest rule that covers it, found in the rule set. A group
//! whose entries all come from rules no longer than the group's own start
//! is folded back into its parent entry and reused.
//!
//! [`trie`] holds the generic multibit trie (add, delete, folding);
//! [`ipv4`] the DIR-24-8 table with its two-read lookup; [`ipv6`] the
//! 16 + 8 × 14 table.

pub mod ipv4;
pub mod ipv6;
#[cfg(test)]
mod tests;
pub mod trie;

pub use ipv4::Lpm4;
pub use ipv6::Lpm6;
pub use trie::Trie;

const VALID: u32 = 1 << 31;
const EXT: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 22;
const VAL_MASK: u32 = (1 << DEPTH_SHIFT) - 1;

/// The largest next-hop id an entry can hold.
pub const MAX_NEXT_HOP: u32 = VAL_MASK;
/// The most 256-entry groups a table can hold (by the entry encoding).
pub const MAX_GROUPS: u32 = VAL_MASK + 1;

/// Why a rule was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// Depth beyond the address width.
    #[error("prefix length {depth} is longer than {width} bits")]
    Depth {
        /// Asked.
        depth: u8,
        /// Address bits.
        width: u32,
    },
    /// Next hop id too large for the encoding.
    #[error("next hop {0} is above {MAX_NEXT_HOP}")]
    NextHop(u32),
    /// The table's group limit is reached.
    #[error("the table is full: {0} groups of 256 entries in use")]
    Full(u32),
}

#[inline]
fn entry(nh: u32, depth: u8) -> u32 {
    VALID | (u32::from(depth) << DEPTH_SHIFT) | nh
}

#[inline]
fn depth_of(e: u32) -> u8 {
    ((e >> DEPTH_SHIFT) & 0xff) as u8
}

/// Mask `a` (of `width` bits) to its first `depth` bits.
#[inline]
pub fn mask(a: u128, depth: u8, width: u32) -> u128 {
    if depth == 0 {
        0
    } else {
        let keep = (!0u128) << (width - u32::from(depth));
        let all = if width == 128 {
            !0u128
        } else {
            (1u128 << width) - 1
        };
        a & keep & all
    }
}
