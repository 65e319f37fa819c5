//! Exact match on the 5-tuple (DPDK l3fwd `-E`): an open-addressing hash
//! table with linear probing, at most half full, deletion by backward shift
//! (no tombstones, so lookups stay short after churn). A slot holds its key
//! and value together (an IPv4 slot is 32 bytes, two per cache line), so a
//! lookup that hits its home slot reads one line, which the lcore
//! prefetches for the whole burst ([`Em::prefetch`]).

use std::fmt;

/// A key: plain data with a hash.
pub trait EmKey: Copy + Eq + Default + fmt::Debug {
    /// A 64-bit hash of the key.
    fn hash(&self) -> u64;
}

/// The IPv4 5-tuple, packed: src (32) dst (32) sport (16) dport (16) proto (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Key4(pub u128);

impl Key4 {
    /// Pack a tuple.
    pub fn new(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> Key4 {
        Key4(
            u128::from(src) << 72
                | u128::from(dst) << 40
                | u128::from(sport) << 24
                | u128::from(dport) << 8
                | u128::from(proto),
        )
    }
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    // 128-bit multiply folded (wyhash style): fast and well spread.
    let m = u128::from(a ^ 0x9e37_79b9_7f4a_7c15) * u128::from(b ^ 0xd6e8_feb8_6659_fd93);
    (m as u64) ^ ((m >> 64) as u64)
}

impl EmKey for Key4 {
    #[inline]
    fn hash(&self) -> u64 {
        mix(self.0 as u64, (self.0 >> 64) as u64)
    }
}

/// The IPv6 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Key6 {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Ports (src << 16 | dst) and protocol (<< 32).
    pub rest: u64,
}

impl Key6 {
    /// Pack a tuple.
    pub fn new(src: u128, dst: u128, sport: u16, dport: u16, proto: u8) -> Key6 {
        Key6 {
            src,
            dst,
            rest: u64::from(sport) << 16 | u64::from(dport) | u64::from(proto) << 32,
        }
    }
}

impl EmKey for Key6 {
    #[inline]
    fn hash(&self) -> u64 {
        let a = mix(self.src as u64, (self.src >> 64) as u64);
        let b = mix(self.dst as u64 ^ a, (self.dst >> 64) as u64);
        mix(b, self.rest)
    }
}

const EMPTY: u32 = u32::MAX;

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmError {
    /// The table holds as many keys as it was sized for.
    #[error("the exact-match table is full ({0} entries)")]
    Full(usize),
    /// `u32::MAX` is reserved.
    #[error("value {0} is reserved")]
    Value(u32),
}

/// A slot: key and value side by side (`val == EMPTY`: free).
#[derive(Debug, Clone, Copy)]
struct Slot<K> {
    key: K,
    val: u32,
}

/// The table.
#[derive(Clone)]
pub struct Em<K: EmKey> {
    slots: Vec<Slot<K>>,
    mask: usize,
    len: usize,
    cap: usize,
}

impl<K: EmKey> fmt::Debug for Em<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Em")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl<K: EmKey> Em<K> {
    /// A table for up to `cap` keys (2 × cap slots, rounded up to a power of 2).
    pub fn new(cap: usize) -> Em<K> {
        let slots = (cap.max(1) * 2).next_power_of_two();
        Em {
            slots: vec![
                Slot {
                    key: K::default(),
                    val: EMPTY
                };
                slots
            ],
            mask: slots - 1,
            len: 0,
            cap: cap.max(1),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn find(&self, k: &K, h: u64) -> (usize, bool) {
        let mut i = h as usize & self.mask;
        loop {
            let s = &self.slots[i];
            if s.val == EMPTY {
                return (i, false);
            }
            if s.key == *k {
                return (i, true);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Insert or replace.
    ///
    /// # Errors
    /// [`EmError`].
    pub fn insert(&mut self, k: K, v: u32) -> Result<(), EmError> {
        if v == EMPTY {
            return Err(EmError::Value(v));
        }
        let (i, found) = self.find(&k, k.hash());
        if !found {
            if self.len >= self.cap {
                return Err(EmError::Full(self.cap));
            }
            self.len += 1;
            self.slots[i].key = k;
        }
        self.slots[i].val = v;
        Ok(())
    }

    /// Remove; false when absent.
    pub fn remove(&mut self, k: &K) -> bool {
        let (mut i, found) = self.find(k, k.hash());
        if !found {
            return false;
        }
        self.len -= 1;
        // Backward shift: move later members of the probe run into the hole
        // when their home slot is not between the hole and them.
        let mut j = i;
        loop {
            self.slots[i].val = EMPTY;
            loop {
                j = (j + 1) & self.mask;
                if self.slots[j].val == EMPTY {
                    return true;
                }
                let home = self.slots[j].key.hash() as usize & self.mask;
                let between = if i <= j {
                    i < home && home <= j
                } else {
                    i < home || home <= j
                };
                if !between {
                    break;
                }
            }
            self.slots[i] = self.slots[j];
            i = j;
        }
    }

    /// Look a key up.
    #[inline]
    pub fn get(&self, k: &K) -> Option<u32> {
        self.get_hashed(k, k.hash())
    }

    /// Look a key up with its hash already computed.
    #[inline]
    pub fn get_hashed(&self, k: &K, h: u64) -> Option<u32> {
        let (i, found) = self.find(k, h);
        found.then(|| self.slots[i].val)
    }

    /// Prefetch the home slot of hash `h`.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        xfwd_mempool::prefetch(self.slots.as_ptr().wrapping_add(h as usize & self.mask));
    }

    /// Every (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (K, u32)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.val != EMPTY)
            .map(|s| (s.key, s.val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn matches_a_hashmap(ops in prop::collection::vec((any::<bool>(), 0u32..64, 0u32..1000), 1..400)) {
            // Few distinct keys in a small table: long probe runs, many shifts.
            let mut t: Em<Key4> = Em::new(48);
            let mut m: HashMap<Key4, u32> = HashMap::new();
            for (ins, k, v) in ops {
                let key = Key4::new(k, k.wrapping_mul(7), k as u16, 9, 17);
                if ins {
                    match t.insert(key, v) {
                        Ok(()) => { m.insert(key, v); }
                        Err(EmError::Full(_)) => prop_assert!(m.len() == 48 && !m.contains_key(&key)),
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    prop_assert_eq!(t.remove(&key), m.remove(&key).is_some());
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for k in 0u32..64 {
                let key = Key4::new(k, k.wrapping_mul(7), k as u16, 9, 17);
                prop_assert_eq!(t.get(&key), m.get(&key).copied());
            }
        }
    }

    #[test]
    fn ipv6_keys_and_reserved_value() {
        let mut t: Em<Key6> = Em::new(4);
        let k = Key6::new(1, 2, 3, 4, 6);
        t.insert(k, 1).unwrap();
        assert_eq!(t.get(&k), Some(1));
        assert_eq!(t.get(&Key6::new(1, 2, 3, 4, 17)), None);
        assert_eq!(t.insert(k, u32::MAX), Err(EmError::Value(u32::MAX)));
        assert!(t.remove(&k));
        assert!(t.is_empty());
    }
}
