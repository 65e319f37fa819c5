//! The mbuf pool on a registered region, with per-lcore caches.
//!
//! Objects are carved from external memory that is registered in a
//! [`Registry`]: headers record each buffer's IOVA from the registered
//! per-page table, and no object straddles a page boundary unless the IOVAs
//! are contiguous across it. Free objects live in a shared MPMC [`Ring`];
//! each worker owns a [`PoolCache`] (DPDK's per-lcore cache: size, flush
//! threshold 1.5 × size) and touches the ring only to refill or flush in bulk.
//!
//! A pool whose last handle goes away while mbufs are still out is leaked on
//! purpose (and logged): the outstanding mbufs stay valid. The leak audit
//! ([`MbufPool::leak_check`]) is how tests prove that never happens.

use crate::batch::{MbufBatch, MAX_BURST};
use crate::error::{AllocError, LeakError, PoolError, RegistryError};
use crate::extmem::{ExtMem, PageSize};
use crate::mbuf::{Mbuf, MbufHeader, MBUF_HEADER_SIZE};
use crate::plan::{PoolConfig, PoolPlan};
use crate::registry::{RegionId, RegionUse, Registry};
use crate::ring::{Obj, Ring};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What every cache publishes for the stats (plain stores, once per call).
#[derive(Debug, Default)]
struct CacheSlot {
    len: AtomicUsize,
    alloc_failures: AtomicU64,
    live: AtomicBool,
}

/// State shared by the pool handles, the caches and (through the header's
/// back pointer) every mbuf.
#[derive(Debug)]
pub struct PoolShared {
    name: String,
    cfg: PoolConfig,
    ring: Ring,
    capacity: usize,
    obj_size: usize,
    first_obj: usize,
    last_obj: usize,
    region: RegionId,
    caches: Mutex<Vec<Arc<CacheSlot>>>,
    ring_alloc_failures: AtomicU64,
    // Drop order: the region use is released before the memory is unmapped.
    _use: RegionUse,
    mem: Arc<ExtMem>,
}

/// Pool statistics (exact when no worker is running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Pool name.
    pub name: String,
    /// Mbufs in the pool.
    pub capacity: usize,
    /// Free in the shared ring.
    pub available: usize,
    /// Free in per-lcore caches.
    pub in_caches: usize,
    /// Held by somebody (capacity − available − in caches).
    pub in_use: usize,
    /// Bulk allocations that failed (pool exhausted).
    pub alloc_failures: u64,
    /// Bytes per object.
    pub obj_size: usize,
    /// Data room per mbuf.
    pub data_room: u16,
    /// Headroom per mbuf.
    pub headroom: u16,
    /// Registered region the pool lives in.
    pub region: RegionId,
    /// Page size of that region.
    pub page_size: PageSize,
}

/// Owns the boxed [`PoolShared`] that every mbuf header points to. Its
/// `Drop` runs exactly once, when the last handle or cache is gone; if mbufs
/// are still out then, the box is leaked on purpose (and logged) so they stay
/// valid — freeing it would leave their back pointers dangling.
#[derive(Debug)]
struct PoolOwner(NonNull<PoolShared>);

// SAFETY: PoolOwner is a Box<PoolShared> in all but name; PoolShared is Send
// and Sync (rings of atomics, a Mutex, Arc'd memory).
#[allow(unsafe_code)]
unsafe impl Send for PoolOwner {}
// SAFETY: as above; only shared references are handed out.
#[allow(unsafe_code)]
unsafe impl Sync for PoolOwner {}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        // SAFETY: the box is alive until this drop, which runs once.
        #[allow(unsafe_code)]
        let s = unsafe { self.0.as_ref() };
        // Nobody can allocate any more; mbufs out can only come back.
        let out = s.capacity - s.ring.count() as usize;
        if out != 0 {
            log::error!(
                "pool `{}` dropped with {out} mbufs still out: leaking its memory so they stay valid",
                s.name
            );
            return;
        }
        // SAFETY: the pointer came from Box::into_raw in SharedRef::new and no
        // mbuf, handle or cache refers to it any more.
        #[allow(unsafe_code)]
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A counted reference to the pool's shared state.
#[derive(Debug, Clone)]
struct SharedRef(Arc<PoolOwner>);

impl SharedRef {
    fn new(s: PoolShared) -> SharedRef {
        let p = NonNull::from(Box::leak(Box::new(s)));
        SharedRef(Arc::new(PoolOwner(p)))
    }

    /// The address every mbuf header of this pool records.
    #[inline]
    fn ptr(&self) -> *const PoolShared {
        self.0 .0.as_ptr()
    }
}

impl std::ops::Deref for SharedRef {
    type Target = PoolShared;
    #[inline]
    fn deref(&self) -> &PoolShared {
        // SAFETY: the box lives at least as long as any PoolOwner reference.
        #[allow(unsafe_code)]
        unsafe {
            self.0 .0.as_ref()
        }
    }
}

/// Handle to an mbuf pool (clones share the pool; control plane).
#[derive(Debug, Clone)]
pub struct MbufPool {
    shared: SharedRef,
}

impl MbufPool {
    /// Carve `cfg.n` mbufs from `mem`, which must be registered in `registry`
    /// (its IOVAs come from the registered table).
    ///
    /// # Errors
    /// [`PoolError::Config`], [`PoolError::Registry`] when `mem` is not
    /// registered, [`PoolError::TooSmall`] when it cannot hold `n` objects.
    pub fn create(
        cfg: &PoolConfig,
        mem: Arc<ExtMem>,
        registry: &Registry,
    ) -> Result<MbufPool, PoolError> {
        cfg.validate()?;
        let (region, _) = registry
            .lookup(mem.va())
            .ok_or(RegistryError::NotRegistered(mem.va()))?;
        if region.va != mem.va() || region.len < mem.len() {
            return Err(RegistryError::Invalid(format!(
                "registered {} [{:#x}, +{:#x}) does not cover the memory [{:#x}, +{:#x})",
                region.id,
                region.va,
                region.len,
                mem.va(),
                mem.len()
            ))
            .into());
        }
        let ps = region.page_size.bytes();
        let obj = cfg.obj_size();
        let contiguous_after = |p: usize| {
            cfg.allow_straddle
                && p + 1 < region.iovas.len()
                && region.iovas[p] + ps as u64 == region.iovas[p + 1]
        };
        // Place objects: an object crossing a boundary where IOVAs are not
        // contiguous moves to the start of the next page.
        let mut offsets = Vec::with_capacity(cfg.n as usize);
        let mut off = 0usize;
        while offsets.len() < cfg.n as usize && off + obj <= mem.len() {
            let (first, last) = (off / ps, (off + obj - 1) / ps);
            if let Some(p) = (first..last).find(|&p| !contiguous_after(p)) {
                off = (p + 1) * ps;
                continue;
            }
            offsets.push(off);
            off += obj;
        }
        if offsets.len() < cfg.n as usize {
            let plan = PoolPlan::compute(cfg, region.page_size, false)?;
            return Err(PoolError::TooSmall {
                have: mem.len(),
                placed: offsets.len(),
                wanted: cfg.n,
                obj_size: obj,
                page_size: region.page_size,
                need_bytes: plan.bytes,
            });
        }
        let use_ = registry.acquire(region.id, format!("pool {}", cfg.name))?;
        let shared = SharedRef::new(PoolShared {
            name: cfg.name.clone(),
            cfg: cfg.clone(),
            ring: Ring::new(cfg.n),
            capacity: cfg.n as usize,
            obj_size: obj,
            first_obj: mem.va() + offsets[0],
            last_obj: mem.va() + offsets[offsets.len() - 1],
            region: region.id,
            caches: Mutex::new(Vec::new()),
            ring_alloc_failures: AtomicU64::new(0),
            _use: use_,
            mem: mem.clone(),
        });
        let pool_ptr: *const PoolShared = shared.ptr();
        let mut addrs = Vec::with_capacity(offsets.len());
        for (i, &o) in offsets.iter().enumerate() {
            // Pointers derived from the memory's own pointer keep its provenance.
            let hdr: Obj = mem.as_ptr().wrapping_add(o).cast();
            let buf = mem.as_ptr().wrapping_add(o + MBUF_HEADER_SIZE);
            let buf_iova = region
                .iova_of(buf as usize)
                .expect("object inside the region");
            let mut h = MbufHeader {
                buf_addr: buf,
                buf_iova,
                next: std::ptr::null_mut(),
                pool: pool_ptr,
                ol_flags: 0,
                timestamp: 0,
                pkt_len: 0,
                rss_hash: 0,
                packet_type: 0,
                index: i as u32,
                data_off: cfg.headroom,
                data_len: 0,
                buf_len: cfg.headroom + cfg.data_room,
                port: u16::MAX,
                nb_segs: 1,
                headroom: cfg.headroom,
                pad: [0; crate::mbuf::HEADER_PAD],
            };
            h.reset();
            #[allow(unsafe_code)]
            // SAFETY: hdr..hdr+obj lies inside mem (placed above), is 64-byte
            // aligned (page start + multiples of obj_size, itself a multiple of
            // 64) and nobody else uses this memory yet.
            unsafe {
                hdr.write(h);
            }
            addrs.push(hdr);
        }
        assert!(shared.ring.enqueue_bulk(&addrs), "ring sized for n objects");
        log::info!(
            "pool `{}`: {} mbufs of {} B ({} data room, {} headroom) in {} ({} pages of {}), cache {}",
            cfg.name,
            cfg.n,
            obj,
            cfg.data_room,
            cfg.headroom,
            region.id,
            region.iovas.len(),
            region.page_size,
            cfg.cache_size
        );
        Ok(MbufPool { shared })
    }

    /// A pool on heap memory (IOVA = VA) with its own registry: for unit
    /// tests, Miri and examples that need no hugepages. Never a silent
    /// fallback: production paths allocate [`ExtMem`] explicitly.
    ///
    /// # Errors
    /// As [`MbufPool::create`], and heap allocation failure.
    pub fn on_heap(cfg: &PoolConfig) -> Result<MbufPool, PoolError> {
        let plan = PoolPlan::compute(cfg, PageSize::Size2M, true)?;
        let mem = ExtMem::heap(plan.bytes, PageSize::Size2M).map_err(|e| PoolError::Config {
            field: "heap memory",
            value: plan.bytes.to_string(),
            accepted: e.to_string(),
        })?;
        let registry = Registry::new();
        registry.register_mem(&mem)?;
        MbufPool::create(cfg, Arc::new(mem), &registry)
    }

    /// A per-lcore cache: a worker thread owns it and allocates/frees through
    /// it without touching the shared ring on most calls.
    pub fn cache(&self) -> PoolCache {
        let size = self.shared.cfg.cache_size as usize;
        let flush_thresh = size * 3 / 2;
        let slot = Arc::new(CacheSlot::default());
        slot.live.store(true, Ordering::Relaxed);
        let mut caches = self.shared.caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|c| c.live.load(Ordering::Relaxed));
        caches.push(slot.clone());
        PoolCache {
            shared: self.shared.clone(),
            objs: vec![std::ptr::null_mut(); flush_thresh + MAX_BURST].into_boxed_slice(),
            len: 0,
            size,
            flush_thresh,
            slot,
            pool_id: self.shared.ptr() as usize,
        }
    }

    /// Allocate one mbuf straight from the shared ring (control path).
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut a: [Obj; 1] = [std::ptr::null_mut()];
        if !self.shared.ring.dequeue_bulk(&mut a) {
            self.shared
                .ring_alloc_failures
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // SAFETY: the ring holds only header addresses of this pool's free objects.
        #[allow(unsafe_code)]
        let mut m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(a[0])) };
        m.reset();
        Some(m)
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Mbufs in the pool.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.cfg
    }

    /// Bytes per object.
    pub fn obj_size(&self) -> usize {
        self.shared.obj_size
    }

    /// The memory it lives in.
    pub fn mem(&self) -> &Arc<ExtMem> {
        &self.shared.mem
    }

    /// The registry the pool's region is registered in (drivers that
    /// register memory of their own next to the pool's, e.g. memif regions).
    pub fn registry(&self) -> &Registry {
        self.shared._use.registry()
    }

    /// The registered region it lives in.
    pub fn region(&self) -> RegionId {
        self.shared.region
    }

    /// Identity of this pool (compare with [`Mbuf`]s' pool via
    /// [`MbufPool::owns`]).
    pub fn id(&self) -> usize {
        self.shared.ptr() as usize
    }

    /// True when `m` came from this pool.
    pub fn owns(&self, m: &Mbuf) -> bool {
        std::ptr::eq(m.pool_ptr(), self.shared.ptr())
    }

    /// True when `addr` lies inside this pool's objects.
    pub fn contains_addr(&self, addr: usize) -> bool {
        addr >= self.shared.first_obj && addr < self.shared.last_obj + self.shared.obj_size
    }

    /// Free in the shared ring.
    pub fn available(&self) -> usize {
        self.shared.ring.count() as usize
    }

    /// Statistics.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        let caches = s.caches.lock().unwrap_or_else(|p| p.into_inner());
        let live = caches.iter().filter(|c| c.live.load(Ordering::Relaxed));
        let (mut in_caches, mut fails) = (0usize, s.ring_alloc_failures.load(Ordering::Relaxed));
        for c in live {
            in_caches += c.len.load(Ordering::Relaxed);
            fails += c.alloc_failures.load(Ordering::Relaxed);
        }
        let available = s.ring.count() as usize;
        PoolStats {
            name: s.name.clone(),
            capacity: s.capacity,
            available,
            in_caches,
            in_use: s.capacity.saturating_sub(available + in_caches),
            alloc_failures: fails,
            obj_size: s.obj_size,
            data_room: s.cfg.data_room,
            headroom: s.cfg.headroom,
            region: s.region,
            page_size: s.mem.page_size(),
        }
    }

    /// The leak audit: once every mbuf handle is dropped,
    /// available + in caches == capacity.
    ///
    /// # Errors
    /// [`LeakError`] with the counts.
    pub fn leak_check(&self) -> Result<(), LeakError> {
        let st = self.stats();
        if st.in_use == 0 {
            Ok(())
        } else {
            Err(LeakError {
                pool: st.name,
                capacity: st.capacity,
                available: st.available,
                in_caches: st.in_caches,
                in_use: st.in_use,
            })
        }
    }
}

/// Return a chain of segments to their pools' rings (the `Drop` path).
pub(crate) fn free_chain(first: NonNull<MbufHeader>) {
    let mut p = first.as_ptr();
    while !p.is_null() {
        #[allow(unsafe_code)]
        // SAFETY: p is a header owned by the chain being freed; its pool is
        // alive (pools with mbufs out are never freed).
        unsafe {
            let next = (*p).next;
            (*p).next = std::ptr::null_mut();
            (*p).nb_segs = 1;
            let ok = (*(*p).pool).ring.enqueue_bulk(&[p]);
            debug_assert!(ok, "pool ring overflow: an mbuf was freed twice");
            p = next;
        }
    }
}

/// `dst[i] = src[n - 1 - i]`: reversed (the hottest object first, as DPDK
/// does). A single object is tested for first (one compare: the bulk-1
/// caller pays nothing else); bulks of 2 to 4 are straight stores: the
/// general loop is vector code whose set-up (overlap checks, remainder)
/// costs more than such a copy. Larger bulks stay an inline vector loop
/// instead of a libc `memcpy` call. Callers pass slices of equal length.
#[inline(always)]
fn copy_rev(dst: &mut [Obj], src: &[Obj]) {
    let n = src.len();
    let dst = &mut dst[..n];
    if n == 1 {
        dst[0] = src[0];
        return;
    }
    if n > 4 {
        for (d, &s) in dst.iter_mut().zip(src.iter().rev()) {
            *d = s;
        }
        return;
    }
    match n {
        2 => {
            dst[0] = src[1];
            dst[1] = src[0];
        }
        3 => {
            dst[0] = src[2];
            dst[1] = src[1];
            dst[2] = src[0];
        }
        4 => {
            dst[0] = src[3];
            dst[1] = src[2];
            dst[2] = src[1];
            dst[3] = src[0];
        }
        _ => {}
    }
}

/// The error of a bulk that does not fit the batch (out of line: the fast
/// path is one compare).
#[cold]
#[inline(never)]
fn no_room(wanted: usize, room: usize) -> AllocError {
    AllocError {
        wanted,
        available: room,
    }
}

/// A per-lcore cache of free mbufs, owned by one worker thread (`Send`, not
/// shared). Dropping it flushes everything back to the shared ring.
#[derive(Debug)]
pub struct PoolCache {
    shared: SharedRef,
    objs: Box<[Obj]>,
    len: usize,
    size: usize,
    flush_thresh: usize,
    slot: Arc<CacheSlot>,
    /// `shared.ptr()` as a number (one load on the fast paths, not two).
    pool_id: usize,
}

// SAFETY: the cache exclusively owns the objects whose header pointers it
// holds (as a Vec<Mbuf> would); the pool it refers to is shared through an
// Arc of Sync state. It is moved into a worker thread, never shared.
#[allow(unsafe_code)]
unsafe impl Send for PoolCache {}

impl PoolCache {
    /// Mbufs held now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Configured size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Flush threshold (1.5 × size).
    pub fn flush_threshold(&self) -> usize {
        self.flush_thresh
    }

    /// Identity of the pool this cache belongs to (see [`MbufPool::id`]).
    #[inline]
    pub fn pool_id(&self) -> usize {
        self.pool_id
    }

    /// The pool's name.
    pub fn pool_name(&self) -> &str {
        &self.shared.name
    }

    #[inline]
    fn publish(&self) {
        self.slot.len.store(self.len, Ordering::Relaxed);
    }

    #[cold]
    fn fail(&self, wanted: usize) -> AllocError {
        self.slot.alloc_failures.fetch_add(1, Ordering::Relaxed);
        AllocError {
            wanted,
            available: self.len + self.shared.ring.count() as usize,
        }
    }

    /// Take `out.len()` object addresses, all or nothing.
    #[inline(always)]
    fn get(&mut self, out: &mut [Obj]) -> Result<(), AllocError> {
        let n = out.len();
        if n > self.len {
            return self.get_slow(out);
        }
        let start = self.len - n;
        // SAFETY: start + n == self.len, and the cache never holds more than
        // its array (flush threshold + MAX_BURST slots; a refill stops at
        // 2 × size ≤ 1.5 × size + MAX_BURST since size ≤ CACHE_MAX_SIZE):
        // no bounds check on the fast path.
        #[allow(unsafe_code)]
        let src = unsafe { self.objs.get_unchecked(start..self.len) };
        copy_rev(out, src);
        self.len = start;
        self.publish();
        Ok(())
    }

    /// Refill from the ring (or serve a large request straight from it).
    #[cold]
    #[inline(never)]
    fn get_slow(&mut self, out: &mut [Obj]) -> Result<(), AllocError> {
        let n = out.len();
        if n > self.size {
            return if self.shared.ring.dequeue_bulk(out) {
                Ok(())
            } else {
                Err(self.fail(n))
            };
        }
        let want = self.size + n - self.len;
        let len = self.len;
        if !self
            .shared
            .ring
            .dequeue_bulk(&mut self.objs[len..len + want])
        {
            // Not enough for a full refill: serve just this request.
            let r = self.shared.ring.dequeue_bulk(out);
            self.publish();
            return if r { Ok(()) } else { Err(self.fail(n)) };
        }
        self.len += want;
        self.get(out)
    }

    /// Give back object addresses.
    #[inline(always)]
    fn put(&mut self, objs: &[Obj]) {
        let n = objs.len();
        // (A bulk above MAX_BURST has len + n ≥ the threshold, or is served
        // here within the array all the same.)
        if self.len + n >= self.flush_thresh {
            return self.put_slow(objs);
        }
        // SAFETY: len + n < flush_thresh ≤ objs.len(): in bounds, so no
        // bounds check on the fast path.
        #[allow(unsafe_code)]
        let dst = unsafe { self.objs.get_unchecked_mut(self.len..self.len + n) };
        copy_rev(dst, objs);
        self.len += n;
        self.publish();
    }

    /// Put and flush the excess above the cache size to the ring.
    #[cold]
    #[inline(never)]
    fn put_slow(&mut self, objs: &[Obj]) {
        let n = objs.len();
        if n > MAX_BURST || self.size == 0 {
            let ok = self.shared.ring.enqueue_bulk(objs);
            debug_assert!(ok, "pool ring overflow: an mbuf was freed twice");
            return;
        }
        self.objs[self.len..self.len + n].copy_from_slice(objs);
        self.len += n;
        if self.len >= self.flush_thresh {
            let ok = self
                .shared
                .ring
                .enqueue_bulk(&self.objs[self.size..self.len]);
            debug_assert!(ok, "pool ring overflow: an mbuf was freed twice");
            self.len = self.size;
        }
        self.publish();
    }

    /// Allocate one mbuf.
    #[inline]
    pub fn alloc(&mut self) -> Option<Mbuf> {
        let mut a: [Obj; 1] = [std::ptr::null_mut()];
        self.get(&mut a).ok()?;
        // SAFETY: get() hands out header addresses of this pool's free objects.
        #[allow(unsafe_code)]
        let mut m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(a[0])) };
        m.reset();
        Some(m)
    }

    /// Append `n` freshly reset mbufs to `batch`, all or nothing.
    ///
    /// # Errors
    /// [`AllocError`] when the pool cannot serve `n` (counted in stats), or
    /// when `batch` has no room for `n`.
    #[inline]
    pub fn alloc_bulk(&mut self, batch: &mut MbufBatch, n: usize) -> Result<(), AllocError> {
        let start = batch.len();
        let clean = batch.is_empty() || batch.clean_pool() == self.shared.ptr() as usize;
        self.alloc_bulk_raw(batch, n)?;
        // The headers of objects another lcore freed are cold here: start
        // every load before the first reset waits on one.
        for m in &batch.as_slice()[start..] {
            m.prefetch_header();
        }
        for m in &mut batch.as_mut_slice()[start..] {
            m.reset();
        }
        if clean {
            // SAFETY: reset() leaves each a single segment of this pool: the
            // batch is as clean as before (set_len(len) to 0 and back).
            #[allow(unsafe_code)]
            unsafe {
                let len = batch.len();
                batch.set_len(0);
                batch.extend_from_pool(len, self.shared.ptr() as usize);
            }
        }
        Ok(())
    }

    /// As [`PoolCache::alloc_bulk`] without resetting the headers: lengths,
    /// offsets and flags hold whatever the last user left (always within
    /// bounds; chains are always broken on free). For drivers that set every
    /// field themselves.
    ///
    /// # Errors
    /// As [`PoolCache::alloc_bulk`].
    #[inline(always)]
    pub fn alloc_bulk_raw(&mut self, batch: &mut MbufBatch, n: usize) -> Result<(), AllocError> {
        let room = batch.room();
        if n > room {
            return Err(no_room(n, room));
        }
        // SAFETY: n ≤ room, checked just above.
        #[allow(unsafe_code)]
        let spare = unsafe { batch.spare_n_for_pool(n) };
        self.get(spare)?;
        // SAFETY: get() filled exactly these n slots with owned,
        // single-segment objects of this pool (chains are broken on free).
        #[allow(unsafe_code)]
        unsafe {
            batch.extend_from_pool(n, self.pool_id)
        };
        Ok(())
    }

    /// Free one mbuf through the cache.
    #[inline]
    pub fn free(&mut self, m: Mbuf) {
        if m.is_chained() || !std::ptr::eq(m.pool_ptr(), self.shared.ptr()) {
            drop(m);
            return;
        }
        let a = m.into_raw().as_ptr();
        self.put(&[a]);
    }

    /// Free every mbuf of `batch` (leaving it empty): single-segment mbufs of
    /// this pool go to the cache in bulk, others to their own pools.
    #[inline(always)]
    pub fn free_batch(&mut self, batch: &mut MbufBatch) {
        let mine = self.shared.ptr();
        // A clean batch of this pool frees without reading any header.
        let simple = batch.clean_pool() == self.pool_id
            || batch
                .as_slice()
                .iter()
                .all(|m| !m.is_chained() && std::ptr::eq(m.pool_ptr(), mine));
        if simple {
            let n = batch.len();
            // SAFETY: every mbuf is a single segment of this pool; the batch
            // forgets them (len 0) as the cache takes them over.
            #[allow(unsafe_code)]
            unsafe {
                batch.set_len(0);
            }
            // SAFETY: n was the batch's length, ≤ its limit ≤ MAX_BURST.
            #[allow(unsafe_code)]
            let objs = unsafe { batch.raw_addrs().get_unchecked(..n) };
            self.put(objs);
        } else {
            for m in batch.drain() {
                self.free(m);
            }
        }
    }

    /// Return everything held to the shared ring.
    pub fn flush(&mut self) {
        if self.len > 0 {
            let ok = self.shared.ring.enqueue_bulk(&self.objs[..self.len]);
            debug_assert!(ok, "pool ring overflow");
            self.len = 0;
        }
        self.publish();
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        self.flush();
        self.slot.live.store(false, Ordering::Relaxed);
    }
}
