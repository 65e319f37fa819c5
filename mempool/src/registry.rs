//! The region registry: DPDK's `rte_extmem_register` analogue.
//!
//! A region is (va, len, page size, IOVA per page). Registration refuses
//! overlaps; `lookup(va)` answers the region and the IOVA in O(log n); a region
//! cannot be unregistered while a pool or a device mapping still uses it
//! (users hold a [`RegionUse`] guard).

use crate::error::RegistryError;
use crate::extmem::{ExtMem, PageSize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Id of a registered region (`region0`, `region1`, …).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u32);

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region{}", self.0)
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region{}", self.0)
    }
}

/// What a caller registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDesc {
    /// Start address (page aligned).
    pub va: usize,
    /// Length (whole pages).
    pub len: usize,
    /// Page size.
    pub page_size: PageSize,
    /// IOVA of each page.
    pub iovas: Vec<u64>,
}

impl RegionDesc {
    /// The description of a piece of external memory.
    pub fn of(mem: &ExtMem) -> RegionDesc {
        RegionDesc {
            va: mem.va(),
            len: mem.len(),
            page_size: mem.page_size(),
            iovas: mem.iovas().to_vec(),
        }
    }
}

/// A registered region as reported by [`Registry::lookup`] and [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Id.
    pub id: RegionId,
    /// Start address.
    pub va: usize,
    /// Length.
    pub len: usize,
    /// Page size.
    pub page_size: PageSize,
    /// IOVA per page (shared, not copied per lookup).
    pub iovas: Arc<[u64]>,
    /// Who uses it now.
    pub users: Vec<String>,
}

impl RegionInfo {
    /// IOVA of `va` (which must lie in the region).
    pub fn iova_of(&self, va: usize) -> Option<u64> {
        if va < self.va || va >= self.va + self.len {
            return None;
        }
        let off = va - self.va;
        let ps = self.page_size.bytes();
        Some(self.iovas[off / ps] + (off % ps) as u64)
    }
}

#[derive(Debug)]
struct Entry {
    id: RegionId,
    len: usize,
    page_size: PageSize,
    iovas: Arc<[u64]>,
    users: BTreeMap<u64, String>,
}

#[derive(Debug, Default)]
struct Inner {
    by_va: BTreeMap<usize, Entry>,
    next_id: u32,
    next_use: u64,
}

/// The table of registered regions. Cloning gives another handle to the
/// same table (control plane only: it takes a lock).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the table consistent (every
        // mutation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a region.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] for an unaligned or inconsistent description,
    /// [`RegistryError::Overlap`] when it overlaps a registered region.
    pub fn register(&self, desc: RegionDesc) -> Result<RegionId, RegistryError> {
        let ps = desc.page_size.bytes();
        if desc.len == 0 || !desc.len.is_multiple_of(ps) || !desc.va.is_multiple_of(ps) {
            return Err(RegistryError::Invalid(format!(
                "va {:#x} and len {:#x} must be non-zero multiples of the page size {}",
                desc.va, desc.len, desc.page_size
            )));
        }
        if desc.iovas.len() != desc.len / ps {
            return Err(RegistryError::Invalid(format!(
                "{} IOVAs given for {} pages",
                desc.iovas.len(),
                desc.len / ps
            )));
        }
        if desc.va.checked_add(desc.len).is_none() {
            return Err(RegistryError::Invalid("va + len overflows".into()));
        }
        let mut g = self.lock();
        let end = desc.va + desc.len;
        // The only candidates: the last region starting before `end`.
        if let Some((&va, e)) = g.by_va.range(..end).next_back() {
            if va + e.len > desc.va {
                return Err(RegistryError::Overlap {
                    va: desc.va,
                    len: desc.len,
                    existing: e.id,
                    existing_va: va,
                    existing_len: e.len,
                });
            }
        }
        let id = RegionId(g.next_id);
        g.next_id += 1;
        g.by_va.insert(
            desc.va,
            Entry {
                id,
                len: desc.len,
                page_size: desc.page_size,
                iovas: desc.iovas.into(),
                users: BTreeMap::new(),
            },
        );
        log::info!(
            "registered {id}: va {:#x} len {:#x} pages of {}",
            desc.va,
            desc.len,
            desc.page_size
        );
        Ok(id)
    }

    /// Register a piece of external memory.
    ///
    /// # Errors
    /// As [`Registry::register`].
    pub fn register_mem(&self, mem: &ExtMem) -> Result<RegionId, RegistryError> {
        self.register(RegionDesc::of(mem))
    }

    /// Unregister; refused while the region has users.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`], [`RegistryError::InUse`] naming the users.
    pub fn unregister(&self, id: RegionId) -> Result<(), RegistryError> {
        let mut g = self.lock();
        let va = g.find(id)?;
        let e = &g.by_va[&va];
        if !e.users.is_empty() {
            return Err(RegistryError::InUse {
                id,
                users: e.users.values().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        g.by_va.remove(&va);
        log::info!("unregistered {id}");
        Ok(())
    }

    /// The region covering `va` and the IOVA of `va`, in O(log n).
    pub fn lookup(&self, va: usize) -> Option<(RegionInfo, u64)> {
        let g = self.lock();
        let (&start, e) = g.by_va.range(..=va).next_back()?;
        if va >= start + e.len {
            return None;
        }
        let info = e.info(start);
        let iova = info.iova_of(va)?;
        Some((info, iova))
    }

    /// One region by id.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`].
    pub fn get(&self, id: RegionId) -> Result<RegionInfo, RegistryError> {
        let g = self.lock();
        let va = g.find(id)?;
        Ok(g.by_va[&va].info(va))
    }

    /// All regions, by address.
    pub fn list(&self) -> Vec<RegionInfo> {
        let g = self.lock();
        g.by_va.iter().map(|(&va, e)| e.info(va)).collect()
    }

    /// Mark `id` as used by `user` (a pool, a device mapping) until the guard
    /// drops.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`].
    pub fn acquire(
        &self,
        id: RegionId,
        user: impl Into<String>,
    ) -> Result<RegionUse, RegistryError> {
        let mut g = self.lock();
        let va = g.find(id)?;
        let token = g.next_use;
        g.next_use += 1;
        g.by_va
            .get_mut(&va)
            .expect("found above")
            .users
            .insert(token, user.into());
        Ok(RegionUse {
            registry: self.clone(),
            id,
            token,
        })
    }
}

impl Inner {
    fn find(&self, id: RegionId) -> Result<usize, RegistryError> {
        self.by_va
            .iter()
            .find(|(_, e)| e.id == id)
            .map(|(&va, _)| va)
            .ok_or(RegistryError::Unknown(id))
    }
}

impl Entry {
    fn info(&self, va: usize) -> RegionInfo {
        RegionInfo {
            id: self.id,
            va,
            len: self.len,
            page_size: self.page_size,
            iovas: self.iovas.clone(),
            users: self.users.values().cloned().collect(),
        }
    }
}

/// A use of a registered region; the region cannot be unregistered while
/// any use is alive.
#[derive(Debug)]
pub struct RegionUse {
    registry: Registry,
    id: RegionId,
    token: u64,
}

impl RegionUse {
    /// The region used.
    pub fn id(&self) -> RegionId {
        self.id
    }

    /// The registry it belongs to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Drop for RegionUse {
    fn drop(&mut self) {
        let mut g = self.registry.lock();
        if let Ok(va) = g.find(self.id) {
            if let Some(e) = g.by_va.get_mut(&va) {
                e.users.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(va: usize, pages: usize) -> RegionDesc {
        let ps = PageSize::Size2M.bytes();
        RegionDesc {
            va,
            len: pages * ps,
            page_size: PageSize::Size2M,
            iovas: (0..pages)
                .map(|i| 0x1_0000_0000 + (pages - i) as u64 * ps as u64)
                .collect(),
        }
    }

    const M2: usize = 2 << 20;

    #[test]
    fn overlap_refused_both_sides() {
        let r = Registry::new();
        let a = r.register(desc(10 * M2, 4)).unwrap();
        for (va, pages) in [(9 * M2, 2), (13 * M2, 1), (8 * M2, 10), (11 * M2, 1)] {
            let e = r.register(desc(va, pages)).unwrap_err();
            assert!(
                matches!(e, RegistryError::Overlap { existing, .. } if existing == a),
                "{e}"
            );
        }
        // Adjacent on both sides is fine.
        r.register(desc(14 * M2, 1)).unwrap();
        r.register(desc(8 * M2, 2)).unwrap();
        assert_eq!(r.list().len(), 3);
    }

    #[test]
    fn lookup_gives_per_page_iova() {
        let r = Registry::new();
        let d = desc(10 * M2, 4);
        let id = r.register(d.clone()).unwrap();
        assert!(r.lookup(10 * M2 - 1).is_none());
        assert!(r.lookup(14 * M2).is_none());
        let (info, iova) = r.lookup(12 * M2 + 100).unwrap();
        assert_eq!(info.id, id);
        assert_eq!(iova, d.iovas[2] + 100);
    }

    #[test]
    fn unregister_refused_while_used() {
        let r = Registry::new();
        let id = r.register(desc(10 * M2, 1)).unwrap();
        let u1 = r.acquire(id, "pool mbuf_pool_0").unwrap();
        let u2 = r.acquire(id, "port0 dma mapping").unwrap();
        let e = r.unregister(id).unwrap_err().to_string();
        assert!(
            e.contains("pool mbuf_pool_0") && e.contains("port0 dma mapping"),
            "{e}"
        );
        drop(u1);
        let e = r.unregister(id).unwrap_err().to_string();
        assert!(!e.contains("pool") && e.contains("port0"), "{e}");
        drop(u2);
        r.unregister(id).unwrap();
        assert!(matches!(r.unregister(id), Err(RegistryError::Unknown(_))));
    }

    #[test]
    fn invalid_descriptions_refused() {
        let r = Registry::new();
        let mut d = desc(10 * M2, 2);
        d.iovas.pop();
        assert!(r
            .register(d)
            .unwrap_err()
            .to_string()
            .contains("1 IOVAs given for 2 pages"));
        let mut d = desc(10 * M2, 2);
        d.va += 4096;
        assert!(matches!(r.register(d), Err(RegistryError::Invalid(_))));
    }
}
