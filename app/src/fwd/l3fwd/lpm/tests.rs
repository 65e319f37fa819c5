//! The tries against a linear model (property tests) and the DIR-24-8
//! table's edge cases.

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
