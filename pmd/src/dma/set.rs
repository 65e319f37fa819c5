//! The bookkeeping every mapper shares: a set of mapped chunks with the
//! exact-match rules (identical re-map accepted, different overlap refused,
//! unmap names exactly a chunk, pinned chunks cannot be unmapped), and
//! [`SoftMapper`], the mapper of devices that need no translation.

use super::error::{DmaError, DmaRange};
use super::{DmaMapper, MapInfo, MapOrigin, MappingKind};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A hold on one mapping: while any pin is alive, `dma_unmap` of that mapping
/// fails with [`DmaError::Busy`]. A port takes one per mapping at start (or
/// per in-flight batch) and drops it at stop.
#[must_use = "the mapping is pinned only while this guard lives"]
pub struct MappingPin {
    pins: Arc<AtomicU32>,
    range: DmaRange,
}

impl MappingPin {
    /// The pinned mapping.
    pub fn range(&self) -> DmaRange {
        self.range
    }
}

impl Clone for MappingPin {
    fn clone(&self) -> MappingPin {
        self.pins.fetch_add(1, Ordering::AcqRel);
        MappingPin {
            pins: Arc::clone(&self.pins),
            range: self.range,
        }
    }
}

impl Drop for MappingPin {
    fn drop(&mut self) {
        self.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for MappingPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MappingPin({})", self.range)
    }
}

/// One recorded chunk.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) range: DmaRange,
    pub(crate) origin: MapOrigin,
    pub(crate) payload: T,
    pins: Arc<AtomicU32>,
}

impl<T> Entry<T> {
    pub(crate) fn pins(&self) -> u32 {
        self.pins.load(Ordering::Acquire)
    }
}

/// What [`MappingSet::admit`] decided about a map request.
#[derive(Debug)]
pub(crate) enum Admit<'a, T> {
    /// Nothing overlaps: map it.
    New,
    /// The identical chunk is already recorded.
    Identical(&'a Entry<T>),
}

/// Mapped chunks keyed by virtual address; chunks never overlap in VA.
#[derive(Debug)]
pub(crate) struct MappingSet<T> {
    by_va: BTreeMap<u64, Entry<T>>,
}

impl<T> Default for MappingSet<T> {
    fn default() -> Self {
        MappingSet {
            by_va: BTreeMap::new(),
        }
    }
}

impl<T> MappingSet<T> {
    /// The chunk whose VA range overlaps `[va, va + len)`, if any (at most one
    /// can be the last one starting below the end).
    fn overlapping(&self, r: &DmaRange) -> Option<&Entry<T>> {
        self.by_va
            .range(..r.va_end())
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| e.range.overlaps_va(r))
    }

    /// Decide about a map request.
    ///
    /// # Errors
    /// [`DmaError::InvalidRange`] for an empty/overflowing range,
    /// [`DmaError::Conflict`] when it overlaps a different chunk.
    pub(crate) fn admit(&self, r: DmaRange) -> Result<Admit<'_, T>, DmaError> {
        r.validate()?;
        match self.overlapping(&r) {
            None => Ok(Admit::New),
            Some(e) if e.range == r => Ok(Admit::Identical(e)),
            Some(e) => Err(DmaError::Conflict {
                range: r,
                existing: e.range,
                space: "virtual",
            }),
        }
    }

    /// Record a chunk that [`admit`](Self::admit) accepted as new.
    pub(crate) fn insert(&mut self, r: DmaRange, origin: MapOrigin, payload: T) {
        self.by_va.insert(
            r.va,
            Entry {
                range: r,
                origin,
                payload,
                pins: Arc::new(AtomicU32::new(0)),
            },
        );
    }

    /// The exact chunk `r`, checked for removal: present, identical, unpinned.
    ///
    /// # Errors
    /// [`DmaError::NotMapped`], [`DmaError::PartialUnmap`] or [`DmaError::Busy`].
    pub(crate) fn check_removal(&self, r: DmaRange) -> Result<&Entry<T>, DmaError> {
        let e = match self.overlapping(&r) {
            Some(e) => e,
            None => {
                return Err(DmaError::NotMapped {
                    range: r,
                    hint: self.hint(),
                })
            }
        };
        if e.range != r {
            return Err(DmaError::PartialUnmap {
                range: r,
                mapped: e.range,
            });
        }
        match e.pins() {
            0 => Ok(e),
            pins => Err(DmaError::Busy { range: r, pins }),
        }
    }

    /// Remove the chunk `r` after the same checks as [`check_removal`](Self::check_removal).
    ///
    /// # Errors
    /// As [`check_removal`](Self::check_removal).
    pub(crate) fn remove(&mut self, r: DmaRange) -> Result<Entry<T>, DmaError> {
        self.check_removal(r)?;
        self.by_va.remove(&r.va).ok_or(DmaError::NotMapped {
            range: r,
            hint: String::new(),
        })
    }

    /// Pin the exact chunk `r`.
    ///
    /// # Errors
    /// [`DmaError::NotMapped`] / [`DmaError::PartialUnmap`] when `r` is not exactly a chunk.
    pub(crate) fn pin(&self, r: DmaRange) -> Result<MappingPin, DmaError> {
        let e = match self.overlapping(&r) {
            Some(e) if e.range == r => e,
            Some(e) => {
                return Err(DmaError::PartialUnmap {
                    range: r,
                    mapped: e.range,
                })
            }
            None => {
                return Err(DmaError::NotMapped {
                    range: r,
                    hint: self.hint(),
                })
            }
        };
        e.pins.fetch_add(1, Ordering::AcqRel);
        Ok(MappingPin {
            pins: Arc::clone(&e.pins),
            range: r,
        })
    }

    /// IOVA of `va` if it lies in a chunk.
    pub(crate) fn translate(&self, va: u64) -> Option<u64> {
        let r = DmaRange::new(va, 0, 1);
        self.overlapping(&r)
            .map(|e| e.range.iova + (va - e.range.va))
    }

    /// All chunks in VA order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry<T>> {
        self.by_va.values()
    }

    fn hint(&self) -> String {
        if self.by_va.is_empty() {
            return "; nothing is mapped".to_string();
        }
        let shown: Vec<String> = self
            .by_va
            .values()
            .take(4)
            .map(|e| e.range.to_string())
            .collect();
        let more = self.by_va.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("; mapped: [{}]{more}", shown.join(", "))
    }
}

/// Lock a mutex, ignoring poisoning (the sets stay consistent: every update is a
/// single insert/remove after all checks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mapper of a device that addresses memory without translation (software
/// ports, AF_PACKET) or whose translation lives elsewhere: it records mappings
/// with the same rules as the others, so `/dma` stats, exact unmap and the busy
/// check behave alike on every port.
#[derive(Debug)]
pub struct SoftMapper {
    kind: MappingKind,
    set: Mutex<MappingSet<()>>,
}

impl SoftMapper {
    /// A mapper reporting `kind` (usually [`MappingKind::None`]).
    pub fn new(kind: MappingKind) -> SoftMapper {
        SoftMapper {
            kind,
            set: Mutex::new(MappingSet::default()),
        }
    }
}

impl DmaMapper for SoftMapper {
    fn kind(&self) -> MappingKind {
        self.kind
    }

    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError> {
        let r = DmaRange::new(va, iova, len);
        let mut set = lock(&self.set);
        match set.admit(r)? {
            Admit::Identical(e) => Ok(MapInfo::of(e, self.kind, MapOrigin::AlreadyMapped, None)),
            Admit::New => {
                set.insert(r, MapOrigin::New, ());
                Ok(MapInfo::new(r, self.kind, MapOrigin::New, None))
            }
        }
    }

    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError> {
        lock(&self.set)
            .remove(DmaRange::new(va, iova, len))
            .map(drop)
    }

    fn mappings(&self) -> Vec<MapInfo> {
        let set = lock(&self.set);
        set.iter()
            .map(|e| MapInfo::of(e, self.kind, e.origin, None))
            .collect()
    }

    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError> {
        lock(&self.set).pin(DmaRange::new(va, iova, len))
    }

    fn translate(&self, va: u64) -> Option<u64> {
        lock(&self.set).translate(va)
    }
}
