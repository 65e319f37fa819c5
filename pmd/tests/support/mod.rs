//! Shared helpers for the pmd kernel tests: network namespaces with veth
//! pairs, hugepage areas, AF_PACKET sockets and test frames.
#![allow(dead_code)]

use xfwd_mempool::{MbufPool, PoolConfig};

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
