//! Shared helpers for the pmd kernel tests: network namespaces with veth
//! pairs, hugepage areas, AF_PACKET sockets and test frames.
#![allow(dead_code)]

use std::sync::Arc;
use xfwd_mempool::{ExtMem, ExtMemConfig, MbufPool, PageSize, PoolConfig, PoolPlan, Registry};
use xfwd_pmd::Port;

pub mod hugepages;
pub mod netns;
pub mod packet;
pub mod xdp;

/// A pool of `n` mbufs on the heap (default layout) with per-lcore caches
/// of `cache_size`.
pub fn heap_pool(name: &str, n: u32, cache_size: u32) -> MbufPool {
    let cfg = PoolConfig {
        name: name.into(),
        n,
        cache_size,
        ..Default::default()
    };
    MbufPool::on_heap(&cfg).unwrap()
}

/// A pool of `n` mbufs on 2 MiB hugepages of its own, registered (per-lcore
/// caches of 64).
pub fn huge_pool(name: &str, n: u32) -> MbufPool {
    let cfg = PoolConfig {
        name: name.into(),
        n,
        cache_size: 64,
        ..Default::default()
    };
    let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true).unwrap();
    let mem = Arc::new(ExtMem::alloc(&ExtMemConfig::hugepages_2m(plan.bytes)).unwrap());
    let reg = Registry::new();
    reg.register_mem(&mem).unwrap();
    MbufPool::create(&cfg, mem, &reg).unwrap()
}

/// Extended statistic `name` of port `p` (panics when it has none).
pub fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .1
}
