//! Mempool alloc+free throughput, the same loop as DPDK's
//! `mempool_perf_autotest`: each core repeatedly gets `n_keep` objects in
//! bulks of `n_get` and puts them back in bulks of `n_put`; the rate is
//! objects got and put per second, summed over cores.
//!
//! `cargo bench -p xfwd-benches --bench mempool -- [--secs 1] [--quick]`
//! prints one line per case, in the format of DPDK's test, plus a
//! `mbuf-level` case that also resets each mbuf header (rte_pktmbuf_alloc).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use xfwd_benches::{arg, pin_to_cpu};
use xfwd_mempool::*;

const N_OBJS_LOOP: usize = 65536;

fn make_pool(cache: u32) -> MbufPool {
    // Object size 2048 B of data like DPDK's test elements; pool big enough
    // for two cores' caches plus what they keep.
    let cfg = PoolConfig {
        name: format!("bench_c{cache}"),
        n: 2 * (128 + 2 * CACHE_MAX_SIZE) + 1024,
        data_room: 2048 - 128,
        headroom: 0,
        cache_size: cache,
        allow_straddle: true,
    };
    let hp = extmem::free_hugepages(PageSize::Size2M) > 64;
    let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true).expect("plan");
    let mem = if hp {
        ExtMem::alloc(&ExtMemConfig::hugepages_2m(plan.bytes)).expect("hugepages")
    } else {
        eprintln!("note: no free 2M hugepages, benchmarking on heap memory");
        ExtMem::heap(plan.bytes, PageSize::Size2M).expect("heap")
    };
    let mem = Arc::new(mem);
    let reg = Registry::new();
    reg.register_mem(&mem).expect("register");
    MbufPool::create(&cfg, mem, &reg).expect("pool")
}

fn run_case(
    pool: &MbufPool,
    cores: usize,
    n_bulk: usize,
    n_keep: usize,
    secs: f64,
    reset: bool,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(cores + 1));
    let hs: Vec<_> = (0..cores)
        .map(|c| {
            let mut cache = pool.cache();
            let (stop, start) = (stop.clone(), start.clone());
            std::thread::spawn(move || {
                let _ = pin_to_cpu(c);
                let mut keep: Vec<MbufBatch> = (0..n_keep / n_bulk)
                    .map(|_| MbufBatch::new(n_bulk))
                    .collect();
                start.wait();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..N_OBJS_LOOP / n_keep {
                        for b in keep.iter_mut() {
                            let r = if reset {
                                cache.alloc_bulk(b, n_bulk)
                            } else {
                                cache.alloc_bulk_raw(b, n_bulk)
                            };
                            r.expect("pool sized for the test");
                        }
                        for b in keep.iter_mut() {
                            cache.free_batch(b);
                        }
                    }
                    count += N_OBJS_LOOP as u64;
                }
                count
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = hs.into_iter().map(|h| h.join().expect("worker")).sum();
    total as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = arg("--secs", 1.0);
    let quick = std::env::args().any(|a| a == "--quick");
    // One case: --case cache,cores,bulk,keep (used by mempool_vs_dpdk.sh).
    let one: String = arg("--case", String::new());
    if !one.is_empty() {
        let v: Vec<usize> = one.split(',').filter_map(|x| x.parse().ok()).collect();
        let [cache, cores, b, k] = v[..] else {
            eprintln!("--case wants cache,cores,bulk,keep");
            std::process::exit(2);
        };
        let pool = make_pool(cache as u32);
        let rate = run_case(&pool, cores, b, k, secs, false);
        println!(
            "xfwd_mempool_bench level=raw cache={cache} cores={cores} n_get_bulk={b} n_put_bulk={b} n_keep={k} rate_persec={rate:.0}"
        );
        pool.leak_check().expect("benchmark leaked mbufs");
        return;
    }
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let caches: &[u32] = if quick { &[256] } else { &[0, 256, 512] };
    let bulks: &[usize] = if quick { &[32] } else { &[1, 4, 32] };
    let keeps: &[usize] = if quick { &[32] } else { &[32, 128] };
    for &cache in caches {
        let pool = make_pool(cache);
        for cores in 1..=ncpu.min(2) {
            for &b in bulks {
                for &k in keeps {
                    let rate = run_case(&pool, cores, b, k, secs, false);
                    println!(
                        "xfwd_mempool_bench level=raw cache={cache} cores={cores} n_get_bulk={b} n_put_bulk={b} n_keep={k} rate_persec={rate:.0}"
                    );
                }
            }
        }
        // The mbuf level (headers reset on alloc, like rte_pktmbuf_alloc_bulk).
        let rate = run_case(&pool, 1, 32, 32, secs, true);
        println!(
            "xfwd_mempool_bench level=mbuf cache={cache} cores=1 n_get_bulk=32 n_put_bulk=32 n_keep=32 rate_persec={rate:.0}"
        );
        pool.leak_check().expect("benchmark leaked mbufs");
    }
}
