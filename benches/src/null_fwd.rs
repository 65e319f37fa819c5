//! The null-port forward loop on one core: `rx_burst` from null0 →
//! `tx_burst` to null1, the loop DPDK's testpmd runs for
//! `--vdev net_null0 --vdev net_null1 --forward-mode=io`. Prints Mpps and
//! ns per packet; the pool lives on 2 MiB hugepages when available.
//!
//! `cargo bench -p xfwd-benches --bench null_fwd -- [--secs 2] [--burst 32] [--runs 3] [--macswap]`

use std::sync::Arc;
use std::time::{Duration, Instant};
use xfwd_benches::{arg, median, pin_to_cpu};
use xfwd_mempool::*;
use xfwd_pmd::{probe, PortConf};

fn main() {
    let secs: f64 = arg("--secs", 2.0);
    let burst: usize = arg("--burst", 32);
    let runs: usize = arg("--runs", 3);
    let macswap = std::env::args().any(|a| a == "--macswap");
    let cpu: usize = arg("--cpu", 1);
    let cfg = PoolConfig {
        name: "null_fwd".into(),
        n: 8192,
        cache_size: 256,
        ..Default::default()
    };
    let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true).expect("plan");
    let mem = if extmem::free_hugepages(PageSize::Size2M) as usize >= plan.pages {
        ExtMem::alloc(&ExtMemConfig::hugepages_2m(plan.bytes)).expect("hugepages")
    } else {
        eprintln!("note: not enough free 2M hugepages, benchmarking on heap memory");
        ExtMem::heap(plan.bytes, PageSize::Size2M).expect("heap")
    };
    let mem = Arc::new(mem);
    let reg = Registry::new();
    reg.register_mem(&mem).expect("register");
    let pool = MbufPool::create(&cfg, mem, &reg).expect("pool");
    let mut p0 = probe("null:").expect("null0");
    let mut p1 = probe("null:").expect("null1");
    p0.configure(&PortConf::simple(&pool)).expect("configure");
    p1.configure(&PortConf::simple(&pool)).expect("configure");
    let mut rates = Vec::new();
    for _ in 0..runs {
        let mut q0 = p0.start().expect("start");
        let mut q1 = p1.start().expect("start");
        let (mut rx, mut tx) = (q0.rx.remove(0), q1.tx.remove(0));
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                let _ = pin_to_cpu(cpu);
                let mut b = MbufBatch::new(burst);
                let (mut pkts, mut dropped) = (0u64, 0u64);
                let t0 = Instant::now();
                let end = t0 + Duration::from_secs_f64(secs);
                loop {
                    for _ in 0..1024 {
                        let n = rx.rx_burst(&mut b);
                        if macswap {
                            for m in b.as_mut_slice() {
                                let d = m.data_mut();
                                if d.len() >= 12 {
                                    let (dst, src) = d.split_at_mut(6);
                                    dst.swap_with_slice(&mut src[..6]);
                                }
                            }
                        }
                        let sent = tx.tx_burst(&mut b);
                        dropped += (n - sent) as u64;
                        b.clear();
                        pkts += sent as u64;
                    }
                    if Instant::now() >= end {
                        break;
                    }
                }
                (pkts, dropped, t0.elapsed().as_secs_f64())
            })
            .join()
            .expect("worker")
        });
        let (pkts, dropped, t) = r;
        let mpps = pkts as f64 / t / 1e6;
        println!(
            "xfwd_null_fwd mode={} burst={burst} pkts={pkts} dropped={dropped} secs={t:.2} mpps={mpps:.2} ns_per_pkt={:.2}",
            if macswap { "macswap" } else { "io" },
            1e3 / mpps
        );
        rates.push(mpps);
        drop((rx, tx, q0, q1));
        p0.stop().expect("stop");
        p1.stop().expect("stop");
    }
    println!("xfwd_null_fwd median_mpps={:.2}", median(&mut rates));
    pool.leak_check().expect("leak audit");
    println!("0 mbufs leaked");
}
