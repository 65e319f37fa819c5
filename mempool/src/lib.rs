//! External memory for xfwd: hugepages the application allocates itself
//! ([`extmem`]), a registry of regions with their IOVAs ([`registry`], the
//! `rte_extmem_register` analogue) and an mbuf pool carved from a registered
//! region ([`pool`], [`mbuf`], [`batch`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use xfwd_mempool::*;
//! let cfg = PoolConfig { n: 4096, ..Default::default() };
//! let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true)?;
//! let mem = Arc::new(ExtMem::alloc(&ExtMemConfig::hugepages_2m(plan.bytes))?);
//! let registry = Registry::new();
//! let region = registry.register_mem(&mem)?;
//! let pool = MbufPool::create(&cfg, mem, &registry)?;
//! let mut cache = pool.cache(); // moved into a worker thread
//! let mut burst = MbufBatch::new(32);
//! cache.alloc_bulk(&mut burst, 32)?;
//! cache.free_batch(&mut burst);
//! drop(cache);
//! pool.leak_check()?;
//! drop(pool);
//! registry.unregister(region)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod batch;
pub mod caps;
pub mod error;
pub mod extmem;
pub mod hugefile;
pub mod inflight;
pub mod iova;
pub mod lcore;
pub mod mbuf;
pub mod mbuf_ring;
pub mod plan;
pub mod pool;
pub mod registry;
pub mod ring;

pub use batch::{MbufBatch, MAX_BURST};
pub use error::{AllocError, ExtMemError, LeakError, MbufError, PoolError, RegistryError};
pub use extmem::{Backing, ExtMem, ExtMemConfig, PageSize};
pub use inflight::InFlight;
pub use iova::IovaMode;
pub use lcore::flush_lcore_caches;
pub use mbuf::{prefetch, Mbuf, MbufHeader, MBUF_HEADER_SIZE};
pub use mbuf_ring::{MbufRing, RingConsumer, RingProducer};
pub use plan::{PoolConfig, PoolPlan, CACHE_MAX_SIZE};
pub use pool::{MbufPool, PoolCache, PoolStats};
pub use registry::{RegionDesc, RegionId, RegionInfo, RegionUse, Registry};
