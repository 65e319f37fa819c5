//! The per-lcore cache loop of DPDK's `mempool_perf_autotest` for a fixed
//! number of iterations, for instruction counting under callgrind (the
//! instruction-count gate, `benches/tests/icount_gate.rs`): get `keep`
//! objects in bulks of `bulk` through one cache, put them back, repeat.
//! Only [`measured_loop`] is counted (`--toggle-collect`); it prints the
//! objects it moved so the gate can divide.
//!
//! `icount_pool [--bulk 32] [--keep 32] [--cache 256] [--iters 20000] [--slow 0]`
//!
//! `--slow K` adds K dependent additions per object: a deliberately slowed
//! loop, to show the gate fails (never used for figures).

use xfwd_mempool::{MbufBatch, MbufPool, PoolCache, PoolConfig};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => {
                eprintln!("icount_pool: {name} wants a whole number");
                std::process::exit(2);
            }
        },
    }
}

/// The counted loop: `iters` rounds of get `keep` / put `keep`.
#[inline(never)]
fn measured_loop(
    cache: &mut PoolCache,
    keep: &mut [MbufBatch],
    bulk: usize,
    iters: usize,
    slow: usize,
) -> u64 {
    let mut objs = 0u64;
    let mut x = 0u64;
    for _ in 0..iters {
        for b in keep.iter_mut() {
            if cache.alloc_bulk_raw(b, bulk).is_err() {
                eprintln!("icount_pool: the pool ran dry (it is sized for the loop)");
                std::process::exit(1);
            }
        }
        for b in keep.iter_mut() {
            for _ in 0..slow * b.len() {
                x = std::hint::black_box(x).wrapping_add(1);
            }
            objs += b.len() as u64;
            cache.free_batch(b);
        }
    }
    std::hint::black_box(x);
    objs
}

fn main() {
    let bulk = arg("--bulk", 32);
    let keep = arg("--keep", 32);
    let cache_size = arg("--cache", 256);
    let iters = arg("--iters", 20_000);
    let slow = arg("--slow", 0);
    if bulk == 0 || !keep.is_multiple_of(bulk) || bulk > xfwd_mempool::MAX_BURST {
        eprintln!("icount_pool: --keep must be a multiple of --bulk (1..=512)");
        std::process::exit(2);
    }
    let cfg = PoolConfig {
        name: "icount".into(),
        n: (2 * (keep + 2 * cache_size) + 1024) as u32,
        cache_size: cache_size as u32,
        ..Default::default()
    };
    let pool = match MbufPool::on_heap(&cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("icount_pool: {e}");
            std::process::exit(1);
        }
    };
    let mut cache = pool.cache();
    let mut batches: Vec<MbufBatch> = (0..keep / bulk).map(|_| MbufBatch::new(bulk)).collect();
    // One uncounted round first: the cache reaches its steady state.
    measured_loop_warm(&mut cache, &mut batches, bulk);
    let objs = measured_loop(&mut cache, &mut batches, bulk, iters, slow);
    println!("objects={objs}");
    drop(cache);
    if let Err(e) = pool.leak_check() {
        eprintln!("icount_pool: {e}");
        std::process::exit(1);
    }
}

/// The same loop, not counted (a different symbol).
#[inline(never)]
fn measured_loop_warm(cache: &mut PoolCache, keep: &mut [MbufBatch], bulk: usize) {
    for b in keep.iter_mut() {
        let _ = cache.alloc_bulk_raw(b, bulk);
    }
    for b in keep.iter_mut() {
        cache.free_batch(b);
    }
}
