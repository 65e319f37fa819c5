//! MR lookup speed: how many buffer addresses per second a queue turns into
//! `(key, offset)` through its `MrCache`.
//!
//! Cases:
//! - `cache-hit`: 4 regions (all cached), bursts of 32 addresses from one region;
//! - `cache-hit-rand`: the same 4 regions in random order (the last-hit check mispredicts);
//! - `cache-miss`: addresses cycling over 64 regions (MRU of 8 always misses,
//!   answered by bisection of the per-queue sorted array);
//! - `regions=N`: random addresses spread over N regions (1, 16, 1024);
//! - `table-direct`: `MrTable::lookup` (read lock + bisection) for comparison.
//!
//! Run: `cargo bench -p xfwd-benches --bench mr_lookup` (plain binary, prints one line per case).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use xfwd_pmd::dma::{DmaMapper, MrTable};

const REGION: u64 = 2 << 20;
const BASE: u64 = 0x7f00_0000_0000;
const LOOKUPS: u64 = 20_000_000;

fn table(regions: u64) -> Arc<MrTable> {
    let t = Arc::new(MrTable::new());
    for i in 0..regions {
        // Regions with gaps between them, as separate hugepage mappings would be.
        t.dma_map(BASE + i * 2 * REGION, 0x1_0000_0000 + i * REGION, REGION)
            .expect("map");
    }
    t
}

/// xorshift64: deterministic addresses without a dependency.
fn addrs(regions: u64, n: usize, pick: impl Fn(u64, u64) -> u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n as u64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = pick(i, x) % regions;
            BASE + r * 2 * REGION + (x >> 20) % REGION
        })
        .collect()
}

fn run(name: &str, t: &Arc<MrTable>, addrs: &[u64]) {
    let mut cache = t.cache();
    // Warm up (and check every address resolves).
    for &a in addrs {
        assert!(cache.lookup(a).is_some(), "{a:#x} not found");
    }
    let before = cache.stats();
    let start = Instant::now();
    let mut sum = 0u64;
    let mut i = 0usize;
    for _ in 0..LOOKUPS {
        let a = addrs[i];
        i += 1;
        if i == addrs.len() {
            i = 0;
        }
        if let Some(l) = cache.lookup(black_box(a)) {
            sum = sum.wrapping_add(u64::from(l.key) ^ l.offset);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(sum);
    let s = cache.stats();
    let hits = s.hits - before.hits;
    let misses = s.misses - before.misses;
    println!(
        "mr_lookup {name:<14} regions={:<5} {:>8.1} Mlookups/s  {:>5.2} ns/lookup  mru_hit={:>5.1}%",
        t.len(),
        LOOKUPS as f64 / secs / 1e6,
        secs * 1e9 / LOOKUPS as f64,
        100.0 * hits as f64 / (hits + misses).max(1) as f64
    );
}

fn run_direct(t: &Arc<MrTable>, addrs: &[u64]) {
    let n = LOOKUPS / 4;
    let start = Instant::now();
    let mut sum = 0u64;
    for k in 0..n as usize {
        if let Some(l) = t.lookup(black_box(addrs[k % addrs.len()])) {
            sum = sum.wrapping_add(u64::from(l.key));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(sum);
    println!(
        "mr_lookup {:<14} regions={:<5} {:>8.1} Mlookups/s  {:>5.2} ns/lookup  (read lock + bisection)",
        "table-direct",
        t.len(),
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64
    );
}

fn main() {
    // Hits: 4 regions, all in the cache; bursts of 32 buffers from one region
    // (the usual shape: a burst comes from one pool), then fully random.
    let t = table(4);
    run("cache-hit", &t, &addrs(4, 4096, |i, _| i / 32));
    run("cache-hit-rand", &t, &addrs(4, 4096, |_, x| x));

    // Misses: round-robin over 64 regions defeats an 8-entry MRU.
    let t = table(64);
    run("cache-miss", &t, &addrs(64, 4096, |i, _| i));

    for n in [1u64, 16, 1024] {
        let t = table(n);
        let a = addrs(n, 4096, |_, x| x >> 32);
        run(&format!("regions={n}"), &t, &a);
        if n == 1024 {
            run_direct(&t, &a);
        }
    }
}
