//! The multibit trie behind [`super::Lpm4`] and [`super::Lpm6`]: a first
//! level of `first` bits, then groups of 256 entries (8 bits each).

use super::{depth_of, entry, mask, LpmError, EXT, MAX_GROUPS, MAX_NEXT_HOP, VALID, VAL_MASK};
use std::collections::HashMap;

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
    pub(super) root: Vec<u32>,
    pub(super) groups: Vec<u32>,
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
