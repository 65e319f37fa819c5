//! Per-lcore caches: DPDK's model, one cache per (thread, pool).
//!
//! A worker thread is an lcore. Every queue it polls allocates and frees
//! through the same cache of a pool, so an mbuf freed by a TX queue is the
//! next one an RX queue allocates on that core (hot in cache), instead of
//! travelling through the shared ring. The caches are created on first use,
//! counted in the pool's stats, and flushed when the thread exits (or on
//! [`flush_lcore_caches`]).

use crate::pool::{MbufPool, PoolCache};
use std::cell::RefCell;

thread_local! {
    static CACHES: RefCell<Vec<PoolCache>> = const { RefCell::new(Vec::new()) };
}

impl MbufPool {
    /// Run `f` with the calling thread's cache of this pool, created on
    /// first use.
    ///
    /// # Panics
    /// When `f` itself calls `with_lcore_cache` (the cache is borrowed).
    #[inline]
    pub fn with_lcore_cache<R>(&self, f: impl FnOnce(&mut PoolCache) -> R) -> R {
        CACHES.with(|c| {
            let mut v = c.borrow_mut();
            let id = self.id();
            let i = match v.iter().position(|pc| pc.pool_id() == id) {
                Some(i) => i,
                None => {
                    v.push(self.cache());
                    v.len() - 1
                }
            };
            f(&mut v[i])
        })
    }
}

/// Return everything the calling thread's lcore caches hold to their pools
/// and drop the caches (a thread that polled ports and lives on).
pub fn flush_lcore_caches() {
    // Take the caches out before dropping them: a cache's drop must not run
    // while the thread-local is borrowed.
    let v = CACHES.with(|c| std::mem::take(&mut *c.borrow_mut()));
    drop(v);
}

#[cfg(test)]
mod tests {
    use crate::*;
    use std::sync::Arc;

    #[test]
    fn lcore_cache_is_per_thread_and_counted() {
        let cfg = PoolConfig {
            name: "lc".into(),
            n: 256,
            cache_size: 64,
            ..Default::default()
        };
        let mem = Arc::new(ExtMem::heap(2 << 20, PageSize::Size2M).unwrap());
        let reg = Registry::new();
        reg.register_mem(&mem).unwrap();
        let pool = MbufPool::create(&cfg, mem, &reg).unwrap();
        let mut b = MbufBatch::new(32);
        pool.with_lcore_cache(|c| c.alloc_bulk(&mut b, 16)).unwrap();
        let first = b.as_slice()[0].index();
        pool.with_lcore_cache(|c| c.free_batch(&mut b));
        // LIFO: the last freed is the next allocated on this thread.
        let m = pool.with_lcore_cache(|c| c.alloc()).unwrap();
        assert_eq!(m.index(), first);
        assert!(b.is_empty());
        drop(m);
        assert!(pool.stats().in_caches > 0);
        pool.leak_check().unwrap();
        // A plain join waits for the thread's TLS destructors (a scoped join
        // does not: workers call flush_lcore_caches() before returning).
        let p2 = pool.clone();
        std::thread::spawn(move || {
            let mut b = MbufBatch::new(32);
            p2.with_lcore_cache(|c| c.alloc_bulk(&mut b, 8)).unwrap();
            p2.with_lcore_cache(|c| c.free_batch(&mut b));
        })
        .join()
        .unwrap();
        // The other thread's cache was flushed when it exited; flush ours.
        flush_lcore_caches();
        assert_eq!(pool.available(), 256);
    }
}
