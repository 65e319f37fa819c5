//! mlx5-style memory regions: registering a range issues a key (lkey); the
//! datapath turns a buffer address into `(key, offset)` through a per-queue
//! cache.
//!
//! Three levels, as in mlx5 (`mlx5_mr_lookup_cache`):
//! 1. a per-queue cache of the [`MRU_SIZE`] most recently missed regions,
//!    scanned linearly (replaced round robin, as mlx5 does);
//! 2. the per-queue sorted array: an immutable snapshot of the global table,
//!    searched by bisection without any lock;
//! 3. the global table, read (under a read lock) only when its generation
//!    changed, which flushes levels 1 and 2.
//!
//! Every map/unmap publishes a new snapshot and then bumps the generation
//! (an `AtomicU64`). A lookup reads that counter once; a cache that sees a new
//! generation reloads. Hence a lookup that starts after `dma_unmap` returned
//! never yields the removed key (keys are never reused either). There is no
//! fixed cap on the number of regions.

use super::error::{DmaError, DmaRange};
use super::set::{lock, Admit, MappingSet};
use super::{DmaMapper, MapInfo, MapOrigin, MappingKind, MappingPin};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Entries of the per-queue MRU list.
pub const MRU_SIZE: usize = 8;

/// First key issued (0 stays invalid, as a null lkey would be).
const FIRST_KEY: u32 = 0x100;

/// One region in the table: `[start, end)` with its IOVA and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MrEntry {
    start: u64,
    end: u64,
    iova: u64,
    key: u32,
}

impl MrEntry {
    const EMPTY: MrEntry = MrEntry {
        start: 0,
        end: 0,
        iova: 0,
        key: 0,
    };

    #[inline]
    fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    #[inline]
    fn hit(&self, addr: u64) -> MrLookup {
        let offset = addr - self.start;
        MrLookup {
            key: self.key,
            offset,
            iova: self.iova + offset,
        }
    }
}

/// An immutable sorted copy of the table at one generation.
#[derive(Debug)]
struct Snapshot {
    generation: u64,
    /// Start addresses alone, for a cache-dense bisection.
    starts: Box<[u64]>,
    entries: Box<[MrEntry]>,
}

impl Snapshot {
    #[inline]
    fn find(&self, addr: u64) -> Option<&MrEntry> {
        let idx = self.starts.partition_point(|&s| s <= addr);
        idx.checked_sub(1)
            .map(|i| &self.entries[i])
            .filter(|e| e.contains(addr))
    }
}

/// The answer of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MrLookup {
    /// The region's key (lkey), what a descriptor carries.
    pub key: u32,
    /// Offset of the address inside the region.
    pub offset: u64,
    /// The IOVA of the address.
    pub iova: u64,
}

/// The global table of one device: shared by the port (map/unmap) and its
/// queues' [`MrCache`]s (lookups).
pub struct MrTable {
    writer: Mutex<Writer>,
    current: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
}

struct Writer {
    set: MappingSet<u32>,
    next_key: u32,
}

impl fmt::Debug for MrTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MrTable")
            .field("regions", &self.len())
            .field("generation", &self.generation())
            .finish()
    }
}

impl Default for MrTable {
    fn default() -> Self {
        MrTable::new()
    }
}

impl MrTable {
    /// An empty table at generation 0.
    pub fn new() -> MrTable {
        MrTable {
            writer: Mutex::new(Writer {
                set: MappingSet::default(),
                next_key: FIRST_KEY,
            }),
            current: RwLock::new(Arc::new(Snapshot {
                generation: 0,
                starts: Box::new([]),
                entries: Box::new([]),
            })),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation (bumped by every successful map and unmap).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.snapshot().entries.len()
    }

    /// True when no region is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A per-queue cache over this table.
    pub fn cache(self: &Arc<Self>) -> MrCache {
        MrCache::new(Arc::clone(self))
    }

    /// Look up through the global table directly (takes the read lock; control path).
    pub fn lookup(&self, addr: u64) -> Option<MrLookup> {
        self.snapshot().find(addr).map(|e| e.hit(addr))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Publish the writer's set as the new snapshot, then bump the generation.
    fn publish(&self, w: &Writer) {
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let entries: Box<[MrEntry]> = w
            .set
            .iter()
            .map(|e| MrEntry {
                start: e.range.va,
                end: e.range.va_end(),
                iova: e.range.iova,
                key: e.payload,
            })
            .collect();
        let snap = Arc::new(Snapshot {
            generation,
            starts: entries.iter().map(|e| e.start).collect(),
            entries,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snap;
        // After the snapshot: a reader that sees `generation` finds a snapshot at least as new.
        self.generation.store(generation, Ordering::Release);
    }
}

impl DmaMapper for MrTable {
    fn kind(&self) -> MappingKind {
        MappingKind::MemoryRegion
    }

    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError> {
        let r = DmaRange::new(va, iova, len);
        let mut w = lock(&self.writer);
        if let Admit::Identical(e) = w.set.admit(r)? {
            return Ok(MapInfo::of(
                e,
                MappingKind::MemoryRegion,
                MapOrigin::AlreadyMapped,
                Some(e.payload),
            ));
        }
        let key = w.next_key;
        if key == u32::MAX {
            return Err(DmaError::KeysExhausted {
                range: r,
                issued: u64::from(u32::MAX - FIRST_KEY),
            });
        }
        w.next_key += 1;
        w.set.insert(r, MapOrigin::New, key);
        self.publish(&w);
        log::debug!("mr: registered {r} as key {key:#x}");
        Ok(MapInfo::new(
            r,
            MappingKind::MemoryRegion,
            MapOrigin::New,
            Some(key),
        ))
    }

    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError> {
        let mut w = lock(&self.writer);
        let e = w.set.remove(DmaRange::new(va, iova, len))?;
        self.publish(&w);
        log::debug!("mr: deregistered {} key {:#x}", e.range, e.payload);
        Ok(())
    }

    fn mappings(&self) -> Vec<MapInfo> {
        let w = lock(&self.writer);
        w.set
            .iter()
            .map(|e| MapInfo::of(e, MappingKind::MemoryRegion, e.origin, Some(e.payload)))
            .collect()
    }

    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError> {
        lock(&self.writer).set.pin(DmaRange::new(va, iova, len))
    }

    fn translate(&self, va: u64) -> Option<u64> {
        self.lookup(va).map(|l| l.iova)
    }
}

/// Plain per-queue counters of an [`MrCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MrCacheStats {
    /// Found in the MRU list.
    pub hits: u64,
    /// Not in the MRU list (then searched in the per-queue sorted array).
    pub misses: u64,
    /// Reloads from the global table (generation changed).
    pub table_lookups: u64,
    /// Addresses in no region at all.
    pub not_found: u64,
}

impl MrCacheStats {
    /// Named xstats, as a port reports them.
    pub fn xstats(&self) -> [(&'static str, u64); 4] {
        [
            ("mr_cache_hits", self.hits),
            ("mr_cache_misses", self.misses),
            ("mr_table_lookups", self.table_lookups),
            ("mr_not_found", self.not_found),
        ]
    }
}

/// A per-queue lookup cache. Owned by the thread that runs the queue (`Send`,
/// `&mut self` lookups, no lock per lookup).
pub struct MrCache {
    table: Arc<MrTable>,
    snap: Arc<Snapshot>,
    mru: [MrEntry; MRU_SIZE],
    /// Starts and sizes of the MRU entries, apart for a dense scan.
    mru_start: [u64; MRU_SIZE],
    mru_size: [u64; MRU_SIZE],
    mru_len: usize,
    /// Slot of the last hit.
    mru_last: usize,
    /// Next MRU slot to replace.
    mru_head: usize,
    stats: MrCacheStats,
}

impl fmt::Debug for MrCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MrCache")
            .field("generation", &self.snap.generation)
            .field("mru_len", &self.mru_len)
            .field("stats", &self.stats)
            .finish()
    }
}

impl MrCache {
    /// A cache over `table`, loaded with its current snapshot.
    pub fn new(table: Arc<MrTable>) -> MrCache {
        let snap = table.snapshot();
        MrCache {
            table,
            snap,
            mru: [MrEntry::EMPTY; MRU_SIZE],
            mru_start: [0; MRU_SIZE],
            mru_size: [0; MRU_SIZE],
            mru_len: 0,
            mru_last: 0,
            mru_head: 0,
            stats: MrCacheStats::default(),
        }
    }

    /// The generation of the snapshot the last lookup used.
    pub fn generation(&self) -> u64 {
        self.snap.generation
    }

    /// The counters.
    pub fn stats(&self) -> MrCacheStats {
        self.stats
    }

    /// Reload if the table changed; call once per burst, or let [`lookup`](Self::lookup) do it.
    #[inline]
    pub fn refresh(&mut self) {
        if self.table.generation.load(Ordering::Acquire) != self.snap.generation {
            self.reload();
        }
    }

    #[cold]
    fn reload(&mut self) {
        self.snap = self.table.snapshot();
        self.mru_size = [0; MRU_SIZE];
        self.mru_len = 0;
        self.mru_last = 0;
        self.mru_head = 0;
        self.stats.table_lookups += 1;
    }

    /// The key and offset of `addr`, or `None` when no region holds it.
    #[inline]
    pub fn lookup(&mut self, addr: u64) -> Option<MrLookup> {
        self.refresh();
        self.lookup_no_refresh(addr)
    }

    /// As [`lookup`](Self::lookup) without the generation check: for a burst
    /// after one [`refresh`](Self::refresh) (valid only while no unmap can race,
    /// e.g. the port is started and its mappings are pinned).
    #[inline]
    pub fn lookup_no_refresh(&mut self, addr: u64) -> Option<MrLookup> {
        // mlx5_mr_lookup_cache: the last hit first (a burst usually comes from
        // one region)...
        let last = self.mru_last;
        if addr.wrapping_sub(self.mru_start[last]) < self.mru_size[last] {
            self.stats.hits += 1;
            return Some(self.mru[last].hit(addr));
        }
        // ...then a linear scan of the small cache. One unsigned
        // compare per entry (`addr - start < size`; empty slots have size 0),
        // written without early exit so it compiles to straight-line code.
        let mut found = MRU_SIZE;
        for i in (0..MRU_SIZE).rev() {
            if addr.wrapping_sub(self.mru_start[i]) < self.mru_size[i] {
                found = i;
            }
        }
        if found < MRU_SIZE {
            self.stats.hits += 1;
            self.mru_last = found;
            return Some(self.mru[found].hit(addr));
        }
        self.miss(addr)
    }

    /// Level 2: bisection of the per-queue snapshot; the entry found replaces
    /// the oldest MRU slot (round robin, no shifting).
    #[inline(never)]
    fn miss(&mut self, addr: u64) -> Option<MrLookup> {
        self.stats.misses += 1;
        let Some(&e) = self.snap.find(addr) else {
            self.stats.not_found += 1;
            return None;
        };
        let slot = self.mru_head;
        self.mru[slot] = e;
        self.mru_start[slot] = e.start;
        self.mru_size[slot] = e.end - e.start;
        self.mru_last = slot;
        self.mru_head = (slot + 1) % MRU_SIZE;
        self.mru_len = (self.mru_len + 1).min(MRU_SIZE);
        Some(e.hit(addr))
    }
}
