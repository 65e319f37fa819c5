//! A test double of the kernel's VFIO type1v2 container (drivers/vfio/vfio_iommu_type1.c):
//! it keeps the IOVA→VA mappings and answers with the kernel's errnos, so the
//! policy above it can be tested where `/dev/vfio` does not exist.
//!
//! | request | kernel answer reproduced |
//! |---|---|
//! | any DMA ioctl before a group is attached | `ENOTTY` (no IOMMU driver set) |
//! | zero length, overflow, va/iova/len not multiples of the smallest page | `EINVAL` |
//! | IOVA outside the usable ranges | `EINVAL` (`vfio_iommu_iova_dma_valid`) |
//! | IOVA overlapping any existing mapping, even identical | `EEXIST` |
//! | more mappings than `dma_entry_limit` | `ENOSPC` |
//! | va outside the memory the test declared valid | `EFAULT` |
//! | pinned bytes above RLIMIT_MEMLOCK | `ENOMEM` |
//! | unmap starting or ending inside a mapping | `EINVAL` (type1v2 never splits) |
//! | unmap of a range holding no mapping | success, 0 bytes unmapped |

use super::{IommuInfo, IovaRange, MemlockLimit, VfioBackend};
use crate::dma::error::DmaError;
use crate::dma::set::lock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
struct FakeState {
    groups: Vec<PathBuf>,
    ranges: Vec<IovaRange>,
    pgsizes: u64,
    dma_entry_limit: u32,
    memlock: MemlockLimit,
    valid_va: Option<Vec<(u64, u64)>>,
    /// iova → (va, len)
    maps: BTreeMap<u64, (u64, u64)>,
    locked: u64,
    map_calls: u64,
    unmap_calls: u64,
}

/// The fake container. Configure with the `with_*` builders before use.
#[derive(Debug)]
pub struct FakeType1 {
    st: Mutex<FakeState>,
}

impl Default for FakeType1 {
    fn default() -> Self {
        FakeType1::new()
    }
}

impl FakeType1 {
    /// An x86-like IOMMU: usable IOVAs 0..=0xfedfffff and 0xfef00000..=2^48-1
    /// (the MSI window excluded), 4K|2M|1G pages, 65535 mappings, no memlock limit.
    pub fn new() -> FakeType1 {
        FakeType1 {
            st: Mutex::new(FakeState {
                groups: Vec::new(),
                ranges: vec![
                    IovaRange::new(0, 0xfedf_ffff),
                    IovaRange::new(0xfef0_0000, (1 << 48) - 1),
                ],
                pgsizes: 0x4020_1000,
                dma_entry_limit: 65535,
                memlock: MemlockLimit::Unlimited,
                valid_va: None,
                maps: BTreeMap::new(),
                locked: 0,
                map_calls: 0,
                unmap_calls: 0,
            }),
        }
    }

    /// Replace the usable IOVA ranges.
    pub fn with_ranges(self, ranges: Vec<IovaRange>) -> FakeType1 {
        lock(&self.st).ranges = ranges;
        self
    }

    /// Replace the page-size bitmap.
    pub fn with_pgsizes(self, pgsizes: u64) -> FakeType1 {
        lock(&self.st).pgsizes = pgsizes;
        self
    }

    /// Set the `dma_entry_limit` module parameter.
    pub fn with_dma_entry_limit(self, limit: u32) -> FakeType1 {
        lock(&self.st).dma_entry_limit = limit;
        self
    }

    /// Set RLIMIT_MEMLOCK.
    pub fn with_memlock(self, limit: MemlockLimit) -> FakeType1 {
        lock(&self.st).memlock = limit;
        self
    }

    /// Declare the only virtual ranges `(va, len)` that are mapped memory (others give EFAULT).
    pub fn with_valid_va(self, ranges: Vec<(u64, u64)>) -> FakeType1 {
        lock(&self.st).valid_va = Some(ranges);
        self
    }

    /// The kernel's mappings as `(va, iova, len)`, in IOVA order.
    pub fn kernel_mappings(&self) -> Vec<(u64, u64, u64)> {
        lock(&self.st)
            .maps
            .iter()
            .map(|(&iova, &(va, len))| (va, iova, len))
            .collect()
    }

    /// `(map ioctls, unmap ioctls)` issued so far.
    pub fn calls(&self) -> (u64, u64) {
        let st = lock(&self.st);
        (st.map_calls, st.unmap_calls)
    }

    /// Bytes pinned.
    pub fn locked_bytes(&self) -> u64 {
        lock(&self.st).locked
    }

    /// Map directly, as another user of the same container fd would (bypassing the mapper).
    ///
    /// # Errors
    /// The errno the kernel would return.
    pub fn map_behind_the_back(&self, va: u64, iova: u64, len: u64) -> Result<(), i32> {
        self.map_dma(va, iova, len)
    }
}

fn min_page(pgsizes: u64) -> u64 {
    1 << pgsizes.trailing_zeros().min(63)
}

impl VfioBackend for FakeType1 {
    fn attach(&self, sysfs: &Path) -> Result<u32, DmaError> {
        let mut st = lock(&self.st);
        if sysfs.as_os_str().is_empty() {
            return Err(DmaError::Vfio {
                what: "attach group".to_string(),
                detail: "empty sysfs path".to_string(),
            });
        }
        let id = match st.groups.iter().position(|g| g == sysfs) {
            Some(i) => i,
            None => {
                st.groups.push(sysfs.to_path_buf());
                st.groups.len() - 1
            }
        };
        Ok(id as u32)
    }

    fn iommu_info(&self) -> Result<IommuInfo, DmaError> {
        let st = lock(&self.st);
        if st.groups.is_empty() {
            return Err(DmaError::Vfio {
                what: "VFIO_IOMMU_GET_INFO".to_string(),
                detail: std::io::Error::from_raw_os_error(libc::ENOTTY).to_string(),
            });
        }
        Ok(IommuInfo {
            ranges: st.ranges.clone(),
            pgsizes: st.pgsizes,
            dma_avail: Some(st.dma_entry_limit.saturating_sub(st.maps.len() as u32)),
        })
    }

    fn map_dma(&self, va: u64, iova: u64, len: u64) -> Result<(), i32> {
        let mut st = lock(&self.st);
        st.map_calls += 1;
        if st.groups.is_empty() {
            return Err(libc::ENOTTY);
        }
        let page = min_page(st.pgsizes);
        let aligned =
            va.is_multiple_of(page) && iova.is_multiple_of(page) && len.is_multiple_of(page);
        let overflow = va.checked_add(len).is_none() || iova.checked_add(len).is_none();
        if len == 0 || !aligned || overflow {
            return Err(libc::EINVAL);
        }
        if !st.ranges.iter().any(|r| r.contains(iova, len)) {
            return Err(libc::EINVAL);
        }
        let end = iova + len;
        if let Some((&s, &(_, l))) = st.maps.range(..end).next_back() {
            if s + l > iova {
                return Err(libc::EEXIST);
            }
        }
        if st.maps.len() >= st.dma_entry_limit as usize {
            return Err(libc::ENOSPC);
        }
        if let Some(valid) = &st.valid_va {
            if !valid.iter().any(|&(v, l)| {
                va >= v && u128::from(va) + u128::from(len) <= u128::from(v) + u128::from(l)
            }) {
                return Err(libc::EFAULT);
            }
        }
        if let MemlockLimit::Bytes(limit) = st.memlock {
            if st.locked + len > limit {
                return Err(libc::ENOMEM);
            }
        }
        st.maps.insert(iova, (va, len));
        st.locked += len;
        Ok(())
    }

    fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64, i32> {
        let mut st = lock(&self.st);
        st.unmap_calls += 1;
        if st.groups.is_empty() {
            return Err(libc::ENOTTY);
        }
        let page = min_page(st.pgsizes);
        if len == 0
            || !iova.is_multiple_of(page)
            || !len.is_multiple_of(page)
            || iova.checked_add(len).is_none()
        {
            return Err(libc::EINVAL);
        }
        let end = iova + len;
        // type1v2: the first byte must not fall inside a mapping that starts before it...
        if let Some((&s, &(_, l))) = st.maps.range(..iova).next_back() {
            if s + l > iova {
                return Err(libc::EINVAL);
            }
        }
        // ...and the last byte must not fall inside a mapping that extends past it.
        if let Some((&s, &(_, l))) = st.maps.range(..end).next_back() {
            if s + l > end {
                return Err(libc::EINVAL);
            }
        }
        let inside: Vec<u64> = st.maps.range(iova..end).map(|(&s, _)| s).collect();
        let mut unmapped = 0;
        for s in inside {
            if let Some((_, l)) = st.maps.remove(&s) {
                unmapped += l;
            }
        }
        st.locked -= unmapped;
        Ok(unmapped)
    }

    fn memlock_limit(&self) -> MemlockLimit {
        lock(&self.st).memlock
    }
}
