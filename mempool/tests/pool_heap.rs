//! Pool logic on heap-backed regions: runs anywhere (and under Miri).

use std::sync::Arc;
use xfwd_mempool::*;

const M2: usize = 2 << 20;

fn heap_pool(n: u32, cache: u32) -> (MbufPool, Registry, RegionId) {
    let cfg = PoolConfig {
        name: format!("heap{n}"),
        n,
        cache_size: cache,
        ..Default::default()
    };
    let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true).unwrap();
    let mem = Arc::new(ExtMem::heap(plan.bytes, PageSize::Size2M).unwrap());
    let reg = Registry::new();
    let id = reg.register_mem(&mem).unwrap();
    (MbufPool::create(&cfg, mem, &reg).unwrap(), reg, id)
}

#[test]
fn alloc_free_and_leak_audit() {
    let (pool, reg, id) = heap_pool(1024, 64);
    let mut cache = pool.cache();
    let mut b = MbufBatch::new(32);
    cache.alloc_bulk(&mut b, 32).unwrap();
    assert_eq!(pool.stats().in_use, 32);
    assert!(pool
        .leak_check()
        .unwrap_err()
        .to_string()
        .contains("leaked 32 mbufs"));
    for m in b.iter() {
        assert_eq!(m.data_len(), 0);
        assert_eq!(m.headroom(), 128);
        assert_eq!(m.tailroom(), 2048);
        assert!(pool.owns(m));
    }
    cache.free_batch(&mut b);
    assert!(b.is_empty());
    let st = pool.stats();
    assert_eq!(st.available + st.in_caches, st.capacity);
    assert!(st.in_caches > 0);
    pool.leak_check().unwrap();
    // The region is in use by the pool.
    let e = reg.unregister(id).unwrap_err().to_string();
    assert!(e.contains("pool heap1024"), "{e}");
    drop(cache);
    assert_eq!(pool.available(), 1024);
    drop(pool);
    reg.unregister(id).unwrap();
}

#[test]
fn every_header_records_its_buffer_iova() {
    let (pool, reg, _) = heap_pool(2000, 0);
    let mut all = Vec::new();
    while let Some(m) = pool.alloc() {
        all.push(m);
    }
    assert_eq!(all.len(), 2000);
    for m in &all {
        let (_, iova) = reg.lookup(m.buf_addr() as usize).unwrap();
        assert_eq!(m.buf_iova(), iova);
        assert_eq!(m.data_iova(), iova + 128);
    }
    let mut idx: Vec<u32> = all.iter().map(|m| m.index()).collect();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(idx.len(), 2000);
    drop(all);
    pool.leak_check().unwrap();
}

#[test]
fn no_object_straddles_a_non_contiguous_page_boundary() {
    // Heap memory, registered with a per-page IOVA table where pages 0|1 and
    // 2|3 are NOT contiguous (descending, as seen on real hosts) and 1|2 is.
    let mem = Arc::new(ExtMem::heap(4 * M2, PageSize::Size2M).unwrap());
    let base = 0x40_0000_0000u64;
    let iovas = vec![
        base + 10 * M2 as u64,
        base + 4 * M2 as u64,
        base + 5 * M2 as u64,
        base,
    ];
    let reg = Registry::new();
    reg.register(RegionDesc {
        va: mem.va(),
        len: mem.len(),
        page_size: PageSize::Size2M,
        iovas: iovas.clone(),
    })
    .unwrap();
    let obj = 2304usize;
    let per_page = M2 / obj; // 910
                             // Pages 1 and 2 are contiguous: objects may cross there, so the region
                             // holds more than 4 × 910.
    let n = per_page + (2 * M2) / obj + per_page;
    assert_eq!(n, 3640);
    let cfg = PoolConfig {
        name: "straddle".into(),
        n: n as u32,
        cache_size: 0,
        ..Default::default()
    };
    let pool = MbufPool::create(&cfg, mem.clone(), &reg).unwrap();
    let mut all = Vec::new();
    while let Some(m) = pool.alloc() {
        all.push(m);
    }
    assert_eq!(all.len(), n);
    let mut crossed_contiguous = 0;
    for m in &all {
        let start = m.as_ptr().as_ptr() as usize - mem.va();
        let end = start + obj - 1;
        let (p0, p1) = (start / M2, end / M2);
        if p0 != p1 {
            assert_eq!(
                (p0, p1),
                (1, 2),
                "object at {start:#x} crosses a non-contiguous boundary"
            );
            crossed_contiguous += 1;
        }
        // The IOVA recorded is the real one for the buffer's page.
        let boff = m.buf_addr() as usize - mem.va();
        assert_eq!(m.buf_iova(), iovas[boff / M2] + (boff % M2) as u64);
    }
    assert_eq!(crossed_contiguous, 1);
    drop(all);
    // One more object does not fit.
    drop(pool);
    let cfg = PoolConfig {
        n: n as u32 + 1,
        ..cfg
    };
    let e = MbufPool::create(&cfg, mem, &reg).unwrap_err().to_string();
    assert!(e.contains(&format!("holds only {n} of {}", n + 1)), "{e}");
}

#[test]
fn plan_matches_real_placement() {
    for (n, contiguous) in [
        (1u32, true),
        (910, false),
        (911, false),
        (8192, false),
        (8192, true),
    ] {
        let cfg = PoolConfig {
            name: "plan".into(),
            n,
            cache_size: 0,
            allow_straddle: contiguous,
            ..Default::default()
        };
        let plan = PoolPlan::compute(&cfg, PageSize::Size2M, contiguous).unwrap();
        let mem = Arc::new(ExtMem::heap(plan.bytes, PageSize::Size2M).unwrap());
        let reg = Registry::new();
        reg.register_mem(&mem).unwrap();
        let pool = MbufPool::create(&cfg, mem, &reg).unwrap();
        assert_eq!(pool.capacity(), n as usize);
        drop(pool);
        if plan.pages > 1 {
            // One page less is not enough: the plan is exact.
            let mem = Arc::new(ExtMem::heap(plan.bytes - M2, PageSize::Size2M).unwrap());
            let reg = Registry::new();
            reg.register_mem(&mem).unwrap();
            assert!(matches!(
                MbufPool::create(&cfg, mem, &reg),
                Err(PoolError::TooSmall { .. })
            ));
        }
    }
}

#[test]
fn unregistered_memory_is_refused() {
    let mem = Arc::new(ExtMem::heap(M2, PageSize::Size2M).unwrap());
    let e = MbufPool::create(
        &PoolConfig {
            n: 10,
            cache_size: 0,
            ..Default::default()
        },
        mem,
        &Registry::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("register the memory first"), "{e}");
}

#[test]
fn exhaustion_is_an_error_counted_in_stats() {
    let (pool, _reg, _) = heap_pool(100, 16);
    let mut cache = pool.cache();
    let mut b = MbufBatch::new(64);
    cache.alloc_bulk(&mut b, 64).unwrap();
    let mut b2 = MbufBatch::new(64);
    let e = cache.alloc_bulk(&mut b2, 64).unwrap_err();
    assert_eq!(e.wanted, 64);
    assert_eq!(e.available, 36);
    assert!(b2.is_empty(), "all or nothing");
    assert!(e.to_string().contains("exhausted"));
    assert_eq!(pool.stats().alloc_failures, 1);
    cache.alloc_bulk(&mut b2, 36).unwrap();
    assert!(cache.alloc().is_none());
    drop(b);
    drop(b2);
    drop(cache);
    pool.leak_check().unwrap();
}

#[test]
fn mbuf_data_operations_are_checked() {
    let (pool, _reg, _) = heap_pool(16, 0);
    let mut m = pool.alloc().unwrap();
    m.append(100).unwrap().fill(7);
    assert_eq!((m.data_len(), m.pkt_len(), m.tailroom()), (100, 100, 1948));
    assert_eq!(
        m.append(1949).unwrap_err(),
        MbufError::NoTailroom {
            want: 1949,
            have: 1948
        }
    );
    m.prepend(14).unwrap().copy_from_slice(&[1; 14]);
    assert_eq!((m.headroom(), m.data_len()), (114, 114));
    assert_eq!(
        m.prepend(115).unwrap_err(),
        MbufError::NoHeadroom {
            want: 115,
            have: 114
        }
    );
    assert_eq!(
        &m.data()[..15],
        &[1; 14].iter().chain(&[7]).copied().collect::<Vec<_>>()[..]
    );
    m.adj(14).unwrap();
    assert_eq!(
        m.adj(101).unwrap_err(),
        MbufError::TooShort {
            want: 101,
            have: 100
        }
    );
    m.trim(50).unwrap();
    assert_eq!((m.data_len(), m.pkt_len()), (50, 50));
    assert_eq!(
        m.trim(51).unwrap_err(),
        MbufError::TooShort { want: 51, have: 50 }
    );
    m.set_port(3);
    m.set_rss_hash(0xabcd);
    assert_eq!((m.port(), m.rss_hash()), (3, 0xabcd));
    assert_ne!(m.ol_flags(), 0);
    m.set_data(b"hello").unwrap();
    assert_eq!(m.data(), b"hello");
    // Segment chains.
    let mut s2 = pool.alloc().unwrap();
    s2.set_data(b" world").unwrap();
    let mut s3 = pool.alloc().unwrap();
    s3.set_data(b"!").unwrap();
    m.chain(s2).unwrap();
    m.chain(s3).unwrap();
    assert_eq!((m.nb_segs(), m.pkt_len(), m.data_len()), (3, 12, 5));
    let mut v = Vec::new();
    m.copy_to_vec(&mut v);
    assert_eq!(v, b"hello world!");
    m.append(2).unwrap().copy_from_slice(b"!!");
    m.trim(1).unwrap();
    m.copy_to_vec(&mut v);
    assert_eq!(v, b"hello world!!");
    assert_eq!(pool.stats().in_use, 3);
    // Freeing a chain through a cache returns every segment.
    let mut cache = pool.cache();
    cache.free(m);
    drop(cache);
    pool.leak_check().unwrap();
}

#[test]
fn batch_operations_keep_ownership_exact() {
    let (pool, _reg, _) = heap_pool(256, 32);
    let mut cache = pool.cache();
    let mut b = MbufBatch::new(32);
    cache.alloc_bulk(&mut b, 20).unwrap();
    for (i, m) in b.iter_mut().enumerate() {
        m.set_data(&[i as u8; 60]).unwrap();
    }
    b.retain(|m| m.data()[0] % 2 == 0);
    assert_eq!(b.len(), 10);
    let mut got = Vec::new();
    b.consume_front(3, |m| got.push(m));
    assert_eq!(
        got.iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
        [0, 2, 4]
    );
    assert_eq!(b.as_slice()[0].data()[0], 6);
    let mut other = MbufBatch::new(32);
    cache.alloc_bulk(&mut other, 30).unwrap();
    let moved = b.append_from(&mut other);
    assert_eq!((moved, b.len(), other.len()), (25, 32, 5));
    assert!(b.is_full());
    let extra = cache.alloc().unwrap();
    let back = b.push(extra).unwrap_err();
    drop(back);
    drop(got);
    drop(other);
    cache.free_batch(&mut b);
    drop(cache);
    pool.leak_check().unwrap();
}

#[test]
fn foreign_mbufs_freed_through_a_cache_go_home() {
    let (p1, _r1, _) = heap_pool(64, 16);
    let (p2, _r2, _) = heap_pool(65, 16);
    let mut c1 = p1.cache();
    let mut c2 = p2.cache();
    let mut b = MbufBatch::new(32);
    c1.alloc_bulk(&mut b, 8).unwrap();
    c2.alloc_bulk(&mut b, 8).unwrap();
    c1.free_batch(&mut b);
    drop((c1, c2));
    p1.leak_check().unwrap();
    p2.leak_check().unwrap();
}

#[test]
fn dropping_the_pool_with_mbufs_out_keeps_them_valid() {
    if cfg!(miri) {
        // The pool leaks its memory on purpose here; Miri's leak checker
        // would report exactly that. The dangling-pointer check it exists for
        // is covered natively and was verified under Miri with leaks ignored.
        return;
    }
    let (pool, _reg, _) = heap_pool(16, 0);
    let mut m = pool.alloc().unwrap();
    drop(pool);
    // The pool leaked itself on purpose; the mbuf is still usable.
    m.set_data(b"still here").unwrap();
    assert_eq!(m.data(), b"still here");
    drop(m);
}

#[test]
fn two_threads_stress_millions_of_ops_zero_leaks() {
    let (pool, _reg, _) = heap_pool(4096, 256);
    let xfer = Arc::new(std::sync::Mutex::new(Vec::<Mbuf>::new()));
    let ops: u64 = if cfg!(miri) { 2_000 } else { 2_000_000 };
    let hs: Vec<_> = (0..2u64)
        .map(|t| {
            let mut cache = pool.cache();
            let xfer = xfer.clone();
            std::thread::spawn(move || {
                let mut b = MbufBatch::new(64);
                let mut done = 0u64;
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                while done < ops {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let n = 1 + (seed % 64) as usize;
                    if cache.alloc_bulk(&mut b, n).is_ok() {
                        b.as_mut_slice()[0].set_data(&t.to_le_bytes()).unwrap();
                        done += n as u64;
                    }
                    match seed % 5 {
                        // Hand some to the other thread (foreign frees).
                        0 => {
                            if let Some(m) = b.pop() {
                                xfer.lock().unwrap().push(m);
                            }
                            cache.free_batch(&mut b);
                        }
                        1 => {
                            let mut g = xfer.lock().unwrap();
                            while let Some(m) = g.pop() {
                                if let Err(m) = b.push(m) {
                                    g.push(m);
                                    break;
                                }
                            }
                            drop(g);
                            cache.free_batch(&mut b);
                        }
                        2 => b.clear(),
                        _ => cache.free_batch(&mut b),
                    }
                }
                done
            })
        })
        .collect();
    let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total >= 2 * ops);
    xfer.lock().unwrap().clear();
    let st = pool.stats();
    assert_eq!(st.available + st.in_caches, st.capacity, "{st:?}");
    pool.leak_check().unwrap();
}

#[test]
fn clean_batch_fast_path_never_skips_a_chain_or_a_foreign_mbuf() {
    let (pool, _reg, _) = heap_pool(256, 32);
    let (other, _r2, _) = heap_pool(64, 0);
    let mut cache = pool.cache();
    let mut b = MbufBatch::new(32);
    cache.alloc_bulk_raw(&mut b, 8).unwrap();
    // Chain a second segment through &mut access: the batch is no longer clean.
    let seg = cache.alloc().unwrap();
    b.as_mut_slice()[0].chain(seg).unwrap();
    cache.free_batch(&mut b);
    // A foreign mbuf pushed into a clean batch.
    cache.alloc_bulk(&mut b, 4).unwrap();
    b.push(other.alloc().unwrap()).unwrap();
    cache.free_batch(&mut b);
    // Moving batches around keeps ownership exact.
    let mut c = MbufBatch::new(32);
    cache.alloc_bulk_raw(&mut b, 4).unwrap();
    let mut foreign = MbufBatch::new(4);
    foreign.push(other.alloc().unwrap()).unwrap();
    c.append_from(&mut b);
    c.append_from(&mut foreign);
    cache.free_batch(&mut c);
    drop(cache);
    pool.leak_check().unwrap();
    other.leak_check().unwrap();
}

#[test]
fn small_bulks_round_trip_in_order_and_a_full_batch_refuses_more() {
    let (pool, _r, _) = heap_pool(256, 64);
    let mut cache = pool.cache();
    // Each copy shape of the cache (1, 2–4, and the loop above 4): freed
    // objects come back in the same order for the same bulk.
    for n in 1..=6 {
        let mut b = MbufBatch::new(n);
        cache.alloc_bulk_raw(&mut b, n).unwrap();
        let first: Vec<usize> = b.iter().map(|m| m.as_ptr().as_ptr() as usize).collect();
        cache.free_batch(&mut b);
        assert!(b.is_empty());
        cache.alloc_bulk_raw(&mut b, n).unwrap();
        let again: Vec<usize> = b.iter().map(|m| m.as_ptr().as_ptr() as usize).collect();
        assert_eq!(first, again, "bulk {n}");
        cache.free_batch(&mut b);
    }
    // The room check guards the batch's array: no write past its limit.
    let mut b = MbufBatch::new(4);
    cache.alloc_bulk_raw(&mut b, 3).unwrap();
    let e = cache.alloc_bulk_raw(&mut b, 2).unwrap_err();
    assert_eq!((e.wanted, e.available, b.len()), (2, 1, 3));
    cache.alloc_bulk_raw(&mut b, 1).unwrap();
    assert!(b.is_full());
    assert!(cache.alloc_bulk(&mut b, 1).is_err());
    cache.alloc_bulk_raw(&mut b, 0).unwrap();
    let mut big = MbufBatch::new(xfwd_mempool::MAX_BURST);
    cache.alloc_bulk_raw(&mut big, 100).unwrap();
    cache.free_batch(&mut big);
    cache.free_batch(&mut b);
    drop(cache);
    pool.leak_check().unwrap();
}
