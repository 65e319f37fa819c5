//! MrTable and MrCache against a simple model: random map/unmap/lookup
//! sequences, single-threaded and with lookups racing a mapping thread.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use xfwd_pmd::dma::{DmaError, DmaMapper, DmaRange, MapOrigin, MrTable};

const PAGE: u64 = 0x1000;
const BASE: u64 = 0x10_0000;

/// The model: non-overlapping ranges start → (len, iova, key).
#[derive(Debug, Clone, Default)]
struct Model {
    regions: BTreeMap<u64, (u64, u64, u32)>,
}

impl Model {
    fn find(&self, addr: u64) -> Option<(u64, u64, u64, u32)> {
        let (&s, &(l, iova, key)) = self.regions.range(..=addr).next_back()?;
        (addr < s + l).then_some((s, l, iova, key))
    }

    fn overlapping(&self, va: u64, len: u64) -> Option<(u64, u64, u64, u32)> {
        let (&s, &(l, iova, key)) = self.regions.range(..va + len).next_back()?;
        (s + l > va).then_some((s, l, iova, key))
    }

    /// Expected (key, offset, iova) for `addr`.
    fn lookup(&self, addr: u64) -> Option<(u32, u64, u64)> {
        self.find(addr)
            .map(|(s, _, iova, key)| (key, addr - s, iova + (addr - s)))
    }
}

#[derive(Debug, Clone)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        iova_page: u64,
    },
    UnmapNth(usize),
    UnmapAt {
        page: u64,
        pages: u64,
    },
    Lookup {
        page: u64,
        off: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..64u64, 1..6u64, 0..1024u64)
            .prop_map(|(page, pages, iova_page)| Op::Map { page, pages, iova_page }),
        2 => (0..16usize).prop_map(Op::UnmapNth),
        1 => (0..64u64, 1..6u64).prop_map(|(page, pages)| Op::UnmapAt { page, pages }),
        6 => (0..72u64, 0..PAGE).prop_map(|(page, off)| Op::Lookup { page, off }),
    ]
}

/// Apply one mapping op to table and model and check they agree.
fn apply(table: &MrTable, model: &mut Model, issued: &mut HashSet<u32>, op: &Op) {
    match *op {
        Op::Map {
            page,
            pages,
            iova_page,
        } => {
            let (va, len, iova) = (BASE + page * PAGE, pages * PAGE, iova_page * PAGE);
            let res = table.dma_map(va, iova, len);
            match model.overlapping(va, len) {
                Some((s, l, i, key)) if (s, l, i) == (va, len, iova) => {
                    let info = res.expect("identical re-map succeeds");
                    assert_eq!(info.origin, MapOrigin::AlreadyMapped);
                    assert_eq!(info.key, Some(key));
                }
                Some((s, l, i, _)) => assert_eq!(
                    res.unwrap_err(),
                    DmaError::Conflict {
                        range: DmaRange::new(va, iova, len),
                        existing: DmaRange::new(s, i, l),
                        space: "virtual"
                    }
                ),
                None => {
                    let info = res.expect("new map succeeds");
                    let key = info.key.expect("a key");
                    assert!(issued.insert(key), "key {key:#x} was reused");
                    model.regions.insert(va, (len, iova, key));
                }
            }
        }
        Op::UnmapNth(n) => {
            if model.regions.is_empty() {
                return;
            }
            let (&va, &(len, iova, _)) = model
                .regions
                .iter()
                .nth(n % model.regions.len())
                .expect("nth");
            table
                .dma_unmap(va, iova, len)
                .expect("exact unmap succeeds");
            model.regions.remove(&va);
        }
        Op::UnmapAt { page, pages } => {
            let (va, len) = (BASE + page * PAGE, pages * PAGE);
            let hit = model.overlapping(va, len);
            let iova = hit.map_or(0, |h| h.2 + va.saturating_sub(h.0));
            let res = table.dma_unmap(va, iova, len);
            match hit {
                Some((s, l, i, _)) if (s, l, i) == (va, len, iova) => {
                    res.expect("exact");
                    model.regions.remove(&va);
                }
                Some(_) => assert!(matches!(res, Err(DmaError::PartialUnmap { .. })), "{res:?}"),
                None => assert!(matches!(res, Err(DmaError::NotMapped { .. })), "{res:?}"),
            }
        }
        Op::Lookup { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mr_table_and_cache_match_the_model(ops in prop::collection::vec(op(), 1..120)) {
        let table = Arc::new(MrTable::new());
        let mut cache = table.cache();
        let mut model = Model::default();
        let mut issued = HashSet::new();
        let mut removed_keys = HashSet::new();
        for op in &ops {
            let before: HashSet<u32> = model.regions.values().map(|v| v.2).collect();
            apply(&table, &mut model, &mut issued, op);
            let after: HashSet<u32> = model.regions.values().map(|v| v.2).collect();
            removed_keys.extend(before.difference(&after).copied());
            if let Op::Lookup { page, off } = *op {
                let addr = BASE + page * PAGE + off;
                let want = model.lookup(addr);
                let got = cache.lookup(addr).map(|l| (l.key, l.offset, l.iova));
                prop_assert_eq!(got, want, "cache lookup of {:#x}", addr);
                prop_assert_eq!(table.lookup(addr).map(|l| (l.key, l.offset, l.iova)), want);
                if let Some((key, _, _)) = got {
                    prop_assert!(!removed_keys.contains(&key), "key {:#x} returned after its unmap", key);
                }
                // A second lookup of the same address hits the MRU.
                let hits = cache.stats().hits;
                prop_assert_eq!(cache.lookup(addr).map(|l| l.key), want.map(|w| w.0));
                if want.is_some() {
                    prop_assert_eq!(cache.stats().hits, hits + 1);
                }
            }
            prop_assert_eq!(table.len(), model.regions.len());
        }
        let listed: Vec<(u64, u64, u64, Option<u32>)> = table
            .mappings()
            .iter()
            .map(|m| (m.range.va, m.range.len, m.range.iova, m.key))
            .collect();
        let want: Vec<(u64, u64, u64, Option<u32>)> = model
            .regions
            .iter()
            .map(|(&va, &(len, iova, key))| (va, len, iova, Some(key)))
            .collect();
        prop_assert_eq!(listed, want);
        let s = cache.stats();
        prop_assert_eq!(s.xstats()[0], ("mr_cache_hits", s.hits));
    }
}

/// What a reader saw: address, generation of the snapshot it used, answer.
type Seen = (u64, u64, Option<(u32, u64)>);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// One thread maps/unmaps while two others look up through their own
    /// caches. Every answer must be exactly the model's state at the
    /// generation the cache used, and that generation must be at least the
    /// one published before the lookup started: a key is never returned by a
    /// lookup that began after its unmap returned.
    #[test]
    fn lookups_racing_a_mapping_thread_are_consistent_with_some_generation(
        ops in prop::collection::vec(op(), 20..80),
        seeds in prop::collection::vec(0..72u64 * PAGE, 64),
    ) {
        let table = Arc::new(MrTable::new());
        let history: Arc<Mutex<HashMap<u64, Model>>> =
            Arc::new(Mutex::new(HashMap::from([(0, Model::default())])));
        let published = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));

        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (table, published, done) = (Arc::clone(&table), Arc::clone(&published), Arc::clone(&done));
                let seeds = seeds.clone();
                thread::spawn(move || {
                    let mut cache = table.cache();
                    let mut seen: Vec<Seen> = Vec::new();
                    let mut floors_ok = true;
                    let mut i = r;
                    // Bounded: stop when the writer is done (after at least one pass) or at 50k lookups.
                    while seen.len() < 50_000 && !(done.load(Ordering::Acquire) && seen.len() >= seeds.len()) {
                        let addr = BASE + seeds[i % seeds.len()];
                        i += 1;
                        let floor = published.load(Ordering::Acquire);
                        let got = cache.lookup(addr).map(|l| (l.key, l.offset));
                        floors_ok &= cache.generation() >= floor;
                        seen.push((addr, cache.generation(), got));
                    }
                    (seen, floors_ok, cache.stats())
                })
            })
            .collect();

        let mut model = Model::default();
        let mut issued = HashSet::new();
        for op in &ops {
            apply(&table, &mut model, &mut issued, op);
            let g = table.generation();
            history.lock().expect("history").entry(g).or_insert_with(|| model.clone());
            published.store(g, Ordering::Release);
        }
        done.store(true, Ordering::Release);

        let history = history.lock().expect("history");
        for h in readers {
            let (seen, floors_ok, stats) = h.join().expect("reader");
            prop_assert!(floors_ok, "a cache used a generation older than one already published");
            prop_assert_eq!(stats.hits + stats.misses, seen.len() as u64);
            for (addr, generation, got) in seen {
                let m = history.get(&generation).expect("every generation is recorded");
                let want = m.lookup(addr).map(|(k, off, _)| (k, off));
                prop_assert_eq!(got, want, "addr {:#x} at generation {}", addr, generation);
            }
        }
    }
}

#[test]
fn no_fixed_cap_on_regions_and_unmap_while_pinned_is_refused() {
    let table = Arc::new(MrTable::new());
    let n = 4096u64; // mlx5 once failed silently at 512
    for i in 0..n {
        let info = table
            .dma_map(BASE + i * 2 * PAGE, i * PAGE, PAGE)
            .expect("map");
        assert_eq!(info.key, Some(0x100 + i as u32));
    }
    assert_eq!(table.len(), n as usize);
    let mut cache = table.cache();
    for i in (0..n).rev() {
        let l = cache.lookup(BASE + i * 2 * PAGE + 7).expect("found");
        assert_eq!(
            (l.key, l.offset, l.iova),
            (0x100 + i as u32, 7, i * PAGE + 7)
        );
        assert!(
            cache.lookup(BASE + i * 2 * PAGE + PAGE).is_none(),
            "gap between regions"
        );
    }
    let s = cache.stats();
    assert_eq!(s.not_found, n);
    assert_eq!(
        s.table_lookups, 0,
        "no generation change since the cache was made"
    );

    let pin = table.pin(BASE, 0, PAGE).expect("pin");
    let e = table.dma_unmap(BASE, 0, PAGE).unwrap_err();
    assert!(e.to_string().contains("still pinned by 1 user"), "{e}");
    drop(pin);
    table.dma_unmap(BASE, 0, PAGE).expect("unmap");
    assert!(cache.lookup(BASE + 7).is_none(), "flushed after unmap");
    assert_eq!(cache.stats().table_lookups, 1);
    assert!(table.dma_map(0, 0, 0).is_err(), "zero length refused");
    assert!(
        table.dma_map(u64::MAX - PAGE, 0, 2 * PAGE).is_err(),
        "overflow refused"
    );
}
