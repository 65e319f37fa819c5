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

use std::collections::HashMap;

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

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Install this entry where the current one is shorter or equal.
    Add(u32),
    /// Replace the entries of this depth with this one (0 = invalid).
    Del(u8, u32),
}

#[derive(Debug, Clone, Copy)]
enum Tbl {
    Root,
    Group(u32),
}

/// A multibit trie over addresses of `width` bits (kept in the low bits of
/// a `u128`).
#[derive(Debug)]
pub struct Trie {
    width: u32,
    first: u32,
    root: Vec<u32>,
    groups: Vec<u32>,
    free: Vec<u32>,
    max_groups: u32,
    rules: Vec<HashMap<u128, u32>>,
    n_rules: usize,
}

/// A zeroed table, backed by transparent huge pages where the kernel
/// allows (the 64 MiB IPv4 first level is read at random: 4 KiB pages
/// would cost a TLB miss per lookup).
fn huge_zeroed(n: usize) -> Vec<u32> {
    let mut v = vec![0u32; n];
    xfwd_mempool::extmem::advise_huge(&mut v);
    v
}

/// A copy whose memory is advised for huge pages before it is written.
fn huge_copy(src: &[u32]) -> Vec<u32> {
    let mut v = huge_zeroed(src.len());
    v.copy_from_slice(src);
    v
}

impl Clone for Trie {
    fn clone(&self) -> Trie {
        Trie {
            width: self.width,
            first: self.first,
            root: huge_copy(&self.root),
            groups: huge_copy(&self.groups),
            free: self.free.clone(),
            max_groups: self.max_groups,
            rules: self.rules.clone(),
            n_rules: self.n_rules,
        }
    }
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

impl Trie {
    /// An empty trie; `first` bits in the first level, then 8 per level.
    pub fn new(width: u32, first: u32, max_groups: u32) -> Trie {
        debug_assert!((width - first).is_multiple_of(8) && first <= 24 && width <= 128);
        Trie {
            width,
            first,
            root: huge_zeroed(1 << first),
            groups: Vec::new(),
            free: Vec::new(),
            max_groups: max_groups.min(MAX_GROUPS),
            rules: vec![HashMap::new(); width as usize + 1],
            n_rules: 0,
        }
    }

    /// Rules held.
    pub fn len(&self) -> usize {
        self.n_rules
    }

    /// True when no rule is held.
    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    /// Groups in use.
    pub fn groups_used(&self) -> u32 {
        (self.groups.len() / 256) as u32 - self.free.len() as u32
    }

    /// Bytes of lookup tables.
    pub fn table_bytes(&self) -> usize {
        (self.root.len() + self.groups.len()) * 4
    }

    /// The next hop of an exact rule, if held.
    pub fn get(&self, prefix: u128, depth: u8) -> Option<u32> {
        self.rules
            .get(usize::from(depth))?
            .get(&mask(prefix, depth, self.width))
            .copied()
    }

    /// Every rule as (prefix, depth, next hop), unordered.
    pub fn rules(&self) -> impl Iterator<Item = (u128, u8, u32)> + '_ {
        self.rules
            .iter()
            .enumerate()
            .flat_map(|(d, m)| m.iter().map(move |(p, nh)| (*p, d as u8, *nh)))
    }

    #[inline]
    fn chunk(&self, a: u128, lo: u32, bits: u32) -> usize {
        ((a >> (self.width - lo - bits)) & ((1u128 << bits) - 1)) as usize
    }

    /// Longest-prefix lookup.
    #[inline]
    pub fn lookup(&self, a: u128) -> Option<u32> {
        let mut e = self.root[self.chunk(a, 0, self.first)];
        let mut lo = self.first;
        while e & EXT != 0 {
            let g = (e & VAL_MASK) as usize;
            e = self.groups[g * 256 + self.chunk(a, lo, 8)];
            lo += 8;
        }
        (e & VALID != 0).then_some(e & VAL_MASK)
    }

    /// Add (or replace) a rule.
    ///
    /// # Errors
    /// [`LpmError`]; the trie is unchanged then.
    pub fn add(&mut self, prefix: u128, depth: u8, nh: u32) -> Result<(), LpmError> {
        if u32::from(depth) > self.width {
            return Err(LpmError::Depth {
                depth,
                width: self.width,
            });
        }
        if nh > MAX_NEXT_HOP {
            return Err(LpmError::NextHop(nh));
        }
        let p = mask(prefix, depth, self.width);
        // A full table fails before any entry is written (groups are
        // allocated on the way down; the ones made for this rule fold back).
        self.write(
            Tbl::Root,
            0,
            self.first,
            p,
            depth,
            Op::Add(entry(nh, depth)),
        )?;
        if self.rules[usize::from(depth)].insert(p, nh).is_none() {
            self.n_rules += 1;
        }
        Ok(())
    }

    /// Delete a rule; false when it was not held.
    pub fn delete(&mut self, prefix: u128, depth: u8) -> bool {
        if u32::from(depth) > self.width {
            return false;
        }
        let p = mask(prefix, depth, self.width);
        if self.rules[usize::from(depth)].remove(&p).is_none() {
            return false;
        }
        self.n_rules -= 1;
        let repl = self.parent(p, depth);
        // Deleting never allocates.
        let _ = self.write(Tbl::Root, 0, self.first, p, depth, Op::Del(depth, repl));
        true
    }

    /// The entry of the longest rule strictly shorter than `depth` covering `p`.
    fn parent(&self, p: u128, depth: u8) -> u32 {
        (0..depth)
            .rev()
            .find_map(|d| {
                self.rules[usize::from(d)]
                    .get(&mask(p, d, self.width))
                    .map(|nh| entry(*nh, d))
            })
            .unwrap_or(0)
    }

    #[inline]
    fn slot(&mut self, t: Tbl, i: usize) -> &mut u32 {
        match t {
            Tbl::Root => &mut self.root[i],
            Tbl::Group(g) => &mut self.groups[g as usize * 256 + i],
        }
    }

    fn alloc_group(&mut self, fill: u32) -> Result<u32, LpmError> {
        let g = match self.free.pop() {
            Some(g) => g,
            None => {
                let n = (self.groups.len() / 256) as u32;
                if n >= self.max_groups {
                    return Err(LpmError::Full(n));
                }
                self.groups.resize(self.groups.len() + 256, 0);
                n
            }
        };
        let b = g as usize * 256;
        self.groups[b..b + 256].fill(fill);
        Ok(g)
    }

    /// Apply `op` to the rule `p/depth` in table `t`, which resolves bits
    /// `lo .. lo + bits` of the address.
    fn write(
        &mut self,
        t: Tbl,
        lo: u32,
        bits: u32,
        p: u128,
        depth: u8,
        op: Op,
    ) -> Result<(), LpmError> {
        let hi = lo + bits;
        let d = u32::from(depth);
        if d <= hi {
            // The rule covers a range of this table.
            let base = self.chunk(p, lo, bits);
            let n = 1usize << (hi - d.max(lo));
            for i in base..base + n {
                self.apply(t, i, hi, op)?;
            }
            return Ok(());
        }
        // Longer than this level: descend into (or create) the group.
        let i = self.chunk(p, lo, bits);
        let e = *self.slot(t, i);
        let g = if e & EXT != 0 {
            e & VAL_MASK
        } else {
            match op {
                Op::Del(..) => return Ok(()),
                Op::Add(_) => {
                    let g = self.alloc_group(e)?;
                    *self.slot(t, i) = EXT | g;
                    g
                }
            }
        };
        let r = self.write(Tbl::Group(g), hi, 8, p, depth, op);
        self.try_fold(t, i, g, hi);
        r
    }

    /// Apply `op` to entry `i` of `t` (whose groups start at bit `next`).
    fn apply(&mut self, t: Tbl, i: usize, next: u32, op: Op) -> Result<(), LpmError> {
        let e = *self.slot(t, i);
        if e & EXT != 0 {
            let g = e & VAL_MASK;
            for j in 0..256 {
                self.apply(Tbl::Group(g), j, next + 8, op)?;
            }
            self.try_fold(t, i, g, next);
            return Ok(());
        }
        let s = self.slot(t, i);
        match op {
            Op::Add(new) => {
                if e & VALID == 0 || depth_of(e) <= depth_of(new) {
                    *s = new;
                }
            }
            Op::Del(d, repl) => {
                if e & VALID != 0 && depth_of(e) == d {
                    *s = repl;
                }
            }
        }
        Ok(())
    }

    /// Fold group `g` (starting at bit `start`, the entry `i` of `t` points
    /// to it) back into that entry when every entry comes from one rule no
    /// longer than `start` (or none).
    fn try_fold(&mut self, t: Tbl, i: usize, g: u32, start: u32) {
        let b = g as usize * 256;
        let first = self.groups[b];
        if first & EXT != 0 || (first & VALID != 0 && u32::from(depth_of(first)) > start) {
            return;
        }
        if self.groups[b..b + 256].iter().all(|&e| e == first) {
            *self.slot(t, i) = first;
            self.free.push(g);
        }
    }
}

/// IPv4 LPM: 24-bit first level, then 8 bits (DIR-24-8).
#[derive(Debug, Clone)]
pub struct Lpm4(Trie);

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

/// IPv6 LPM: 16-bit first level, then 8 bits per level.
#[derive(Debug, Clone)]
pub struct Lpm6(Trie);

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model: a list of rules, searched linearly for the longest match.
    #[derive(Default)]
    struct Naive(Vec<(u128, u8, u32)>);

    impl Naive {
        fn add(&mut self, p: u128, d: u8, nh: u32, w: u32) {
            let p = mask(p, d, w);
            self.0.retain(|r| (r.0, r.1) != (p, d));
            self.0.push((p, d, nh));
        }
        fn del(&mut self, p: u128, d: u8, w: u32) -> bool {
            let p = mask(p, d, w);
            let n = self.0.len();
            self.0.retain(|r| (r.0, r.1) != (p, d));
            n != self.0.len()
        }
        fn lookup(&self, a: u128, w: u32) -> Option<u32> {
            self.0
                .iter()
                .filter(|r| mask(a, r.1, w) == r.0)
                .max_by_key(|r| r.1)
                .map(|r| r.2)
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Add(u128, u8, u32),
        Del(usize),
    }

    /// Prefixes clustered under a few roots (so they overlap and nest),
    /// lengths biased to the level boundaries and the extremes.
    fn steps(w: u32, min: u8) -> impl Strategy<Value = Vec<Step>> {
        let depth = prop_oneof![
            Just(min),
            Just(w as u8),
            Just(w as u8 - 1),
            min..=w as u8,
            (w as u8 - 16)..=(w as u8),
            Just(if w == 32 { 24 } else { 16 }),
            Just(if w == 32 { 25 } else { 24 }),
        ];
        let root = prop_oneof![
            Just(0u128),
            Just(0x0a00_0000u128 << (w - 32)),
            any::<u128>()
        ];
        let step = prop_oneof![
            4 => (root, any::<u128>(), depth, 0u32..8).prop_map(move |(r, noise, d, nh)| {
                // Mostly near the root: share the top bits, vary the tail.
                let tail_bits = w / 4;
                let keep = mask(r, (w - tail_bits) as u8, w);
                let a = keep | (noise & ((1u128 << tail_bits) - 1));
                Step::Add(a, d, nh)
            }),
            1 => any::<usize>().prop_map(Step::Del),
        ];
        prop::collection::vec(step, 1..60)
    }

    fn probes(naive: &Naive, w: u32, extra: &[u128]) -> Vec<u128> {
        // Every rule's first and last address and their neighbours.
        let mut v: Vec<u128> = extra.to_vec();
        let all = if w == 128 { !0u128 } else { (1u128 << w) - 1 };
        for &(p, d, _) in &naive.0 {
            let span = all.checked_shr(u32::from(d)).unwrap_or(0) & all;
            let last = p | span;
            v.extend([p, last, p.wrapping_sub(1) & all, last.wrapping_add(1) & all]);
        }
        v
    }

    /// Replay `steps` on a trie (`first` bits in its first level) and on
    /// the model, then compare lookups at every rule's edges and at `extra`.
    fn run(w: u32, first: u32, steps: Vec<Step>, extra: Vec<u128>) {
        let mut t = Trie::new(w, first, 1 << 16);
        let mut m = Naive::default();
        for s in steps {
            match s {
                Step::Add(p, d, nh) => {
                    let p = p & if w == 128 { !0 } else { (1u128 << w) - 1 };
                    t.add(p, d, nh).unwrap();
                    m.add(p, d, nh, w);
                }
                Step::Del(i) if !m.0.is_empty() => {
                    let (p, d, _) = m.0[i % m.0.len()];
                    assert!(t.delete(p, d));
                    assert!(m.del(p, d, w));
                    assert!(!t.delete(p, d), "deleted twice");
                }
                Step::Del(_) => {}
            }
            assert_eq!(t.len(), m.0.len());
        }
        let probes = probes(&m, w, &extra);
        for &a in &probes {
            assert_eq!(t.lookup(a), m.lookup(a, w), "address {a:#x}");
        }
        if (w, first) == (32, 24) {
            // The specialised DIR-24-8 lookup reads the same tables.
            let l = Lpm4(t);
            for &a in &probes {
                assert_eq!(l.lookup(a as u32), m.lookup(a, w), "address {a:#x}");
            }
            t = l.0;
        }
        // Delete everything: the table is empty again and every group is free.
        for (p, d, _) in m.0.clone() {
            assert!(t.delete(p, d));
        }
        assert_eq!(t.groups_used(), 0, "groups not folded back");
        for a in extra {
            assert_eq!(t.lookup(a), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]
        // The algorithm with a 16-bit first level (fast in debug builds)...
        #[test]
        fn ipv4_matches_naive(s in steps(32, 0), extra in prop::collection::vec(0u128..(1 << 32), 32)) {
            run(32, 16, s, extra);
        }

        #[test]
        fn ipv6_matches_naive(s in steps(128, 0), extra in prop::collection::vec(any::<u128>(), 32)) {
            run(128, 16, s, extra);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        // ... and the real DIR-24-8 layout, prefixes of /8 and longer (a /0
        // rewrites 16 M entries: slow in a debug build; the unit test below
        // has one).
        #[test]
        fn dir24_8_matches_naive(s in steps(32, 8), extra in prop::collection::vec(0u128..(1 << 32), 32)) {
            run(32, 24, s, extra);
        }
    }

    #[test]
    fn default_route_host_routes_and_nesting() {
        let mut t = Lpm4::new(64);
        assert_eq!(t.lookup(0x0a00_0001), None);
        t.add(0, 0, 9).unwrap();
        t.add(0x0a00_0000, 8, 1).unwrap();
        t.add(0x0a01_0200, 24, 2).unwrap();
        t.add(0x0a01_0203, 32, 3).unwrap();
        t.add(0x0a01_0280, 25, 4).unwrap();
        assert_eq!(t.lookup(0x0b00_0000), Some(9));
        assert_eq!(t.lookup(0x0a00_0001), Some(1));
        assert_eq!(t.lookup(0x0a01_0201), Some(2));
        assert_eq!(t.lookup(0x0a01_0203), Some(3));
        assert_eq!(t.lookup(0x0a01_02ff), Some(4));
        assert!(t.delete(0x0a01_0200, 24));
        assert_eq!(t.lookup(0x0a01_0201), Some(1));
        assert_eq!(t.lookup(0x0a01_0203), Some(3));
        assert_eq!(t.lookup(0x0a01_02ff), Some(4));
        assert!(t.delete(0, 0));
        assert_eq!(t.lookup(0x0b00_0000), None);
        assert!(!t.delete(0, 0));
        assert_eq!(
            t.0.add(0, 33, 1),
            Err(LpmError::Depth {
                depth: 33,
                width: 32
            })
        );
        assert_eq!(
            t.add(0, 8, MAX_NEXT_HOP + 1),
            Err(LpmError::NextHop(MAX_NEXT_HOP + 1))
        );
        let mut v6 = Lpm6::new(64);
        v6.add(0x2001_0db8u128 << 96, 32, 1).unwrap();
        v6.add(1, 128, 2).unwrap();
        v6.add(0, 0, 3).unwrap();
        assert_eq!(v6.lookup((0x2001_0db8u128 << 96) | 5), Some(1));
        assert_eq!(v6.lookup(1), Some(2));
        assert_eq!(v6.lookup(2), Some(3));
    }

    #[test]
    fn a_full_table_refuses_and_keeps_the_old_answers() {
        let mut t = Lpm4::new(2);
        t.add(0x0a00_0000, 8, 1).unwrap();
        t.add(0x0a00_0001, 32, 2).unwrap();
        t.add(0x0a00_0101, 32, 3).unwrap();
        assert_eq!(t.add(0x0a00_0201, 32, 4), Err(LpmError::Full(2)));
        assert_eq!(t.lookup(0x0a00_0201), Some(1));
        assert_eq!(t.lookup(0x0a00_0101), Some(3));
        assert_eq!(t.trie().len(), 3);
    }
}
