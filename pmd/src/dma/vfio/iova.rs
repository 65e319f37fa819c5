//! Our own IOVA allocator for a VFIO container: first fit inside the ranges
//! the IOMMU reports as usable (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`),
//! aligned to at least the IOMMU's smallest page, never handing out IOVA 0.

use std::collections::BTreeMap;
use std::fmt;

/// A usable IOVA range, `start..=last` (inclusive, as the kernel reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA.
    pub last: u64,
}

impl IovaRange {
    /// `start..=last`.
    pub const fn new(start: u64, last: u64) -> IovaRange {
        IovaRange { start, last }
    }

    /// True when `[iova, iova + len)` lies inside.
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        len > 0
            && iova >= self.start
            && u128::from(iova) + u128::from(len) - 1 <= u128::from(self.last)
    }
}

impl fmt::Display for IovaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..={:#x}", self.start, self.last)
    }
}

/// Format ranges for error messages.
pub(crate) fn fmt_ranges(ranges: &[IovaRange]) -> String {
    let v: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    v.join(", ")
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReserveError {
    /// Not inside one usable range.
    Outside,
    /// Overlaps this allocation `(start, len)` without lying inside it.
    Overlap(u64, u64),
}

/// Allocations keyed by start IOVA.
#[derive(Debug, Clone)]
pub(crate) struct IovaAllocator {
    windows: Vec<IovaRange>,
    used: BTreeMap<u64, u64>,
}

fn align_up(v: u128, align: u64) -> u128 {
    let a = u128::from(align.max(1));
    v.div_ceil(a) * a
}

impl IovaAllocator {
    pub(crate) fn new(mut windows: Vec<IovaRange>) -> IovaAllocator {
        windows.sort_by_key(|w| w.start);
        IovaAllocator {
            windows,
            used: BTreeMap::new(),
        }
    }

    pub(crate) fn windows(&self) -> &[IovaRange] {
        &self.windows
    }

    pub(crate) fn set_windows(&mut self, mut windows: Vec<IovaRange>) {
        windows.sort_by_key(|w| w.start);
        self.windows = windows;
    }

    pub(crate) fn allocated(&self) -> u64 {
        self.used.values().sum()
    }

    /// True when `[iova, iova + len)` lies inside one usable range.
    pub(crate) fn in_windows(&self, iova: u64, len: u64) -> bool {
        self.windows.iter().any(|w| w.contains(iova, len))
    }

    /// Allocations that are no longer inside the usable ranges.
    pub(crate) fn outside(&self) -> Vec<(u64, u64)> {
        self.used
            .iter()
            .filter(|(&s, &l)| !self.in_windows(s, l))
            .map(|(&s, &l)| (s, l))
            .collect()
    }

    /// Free gaps `(start, last)` of window `w`, in order.
    fn gaps(&self, w: &IovaRange) -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        let mut cur = u128::from(w.start);
        let last = u128::from(w.last);
        for (&s, &l) in &self.used {
            let (s, end) = (u128::from(s), u128::from(s) + u128::from(l));
            if end <= cur {
                continue;
            }
            if s > last {
                break;
            }
            if s > cur {
                out.push((cur, s - 1));
            }
            cur = cur.max(end);
        }
        if cur <= last {
            out.push((cur, last));
        }
        out
    }

    /// First fit of `len` bytes aligned to `align` (a power of two); never IOVA 0.
    /// `Err(largest aligned free block)` when nothing fits.
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Result<u64, u64> {
        let mut largest = 0u128;
        for w in &self.windows {
            for (start, last) in self.gaps(w) {
                let a = align_up(start.max(1), align);
                if a > last {
                    continue;
                }
                let room = last - a + 1;
                if room >= u128::from(len) {
                    let iova = a as u64;
                    self.used.insert(iova, len);
                    return Ok(iova);
                }
                largest = largest.max(room);
            }
        }
        Err(u64::try_from(largest).unwrap_or(u64::MAX))
    }

    /// Reserve a caller-chosen block. `Ok(false)` when it already lies inside one allocation.
    pub(crate) fn reserve(&mut self, iova: u64, len: u64) -> Result<bool, ReserveError> {
        let end = u128::from(iova) + u128::from(len);
        let prev = match u64::try_from(end) {
            Ok(e) => self.used.range(..e).next_back(),
            Err(_) => self.used.iter().next_back(),
        };
        if let Some((&s, &l)) = prev {
            let s_end = u128::from(s) + u128::from(l);
            if s <= iova && end <= s_end {
                return Ok(false);
            }
            if s_end > u128::from(iova) {
                return Err(ReserveError::Overlap(s, l));
            }
        }
        if !self.in_windows(iova, len) {
            return Err(ReserveError::Outside);
        }
        self.used.insert(iova, len);
        Ok(true)
    }

    /// Free exactly one allocation; false when `(iova, len)` is not one.
    pub(crate) fn free(&mut self, iova: u64, len: u64) -> bool {
        if self.used.get(&iova) == Some(&len) {
            self.used.remove(&iova);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_skips_zero_and_used_blocks_and_respects_alignment() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(0, 0xff_ffff)]);
        assert_eq!(a.alloc(0x1000, 0x1000), Ok(0x1000));
        assert_eq!(a.alloc(0x20_0000, 0x20_0000), Ok(0x20_0000));
        assert_eq!(a.alloc(0x1000, 0x1000), Ok(0x2000));
        assert!(a.free(0x2000, 0x1000));
        assert!(!a.free(0x2000, 0x1000));
        assert_eq!(a.reserve(0x20_0000, 0x1000), Ok(false));
        assert_eq!(
            a.reserve(0x1f_f000, 0x2000),
            Err(ReserveError::Overlap(0x20_0000, 0x20_0000))
        );
        assert_eq!(a.reserve(0x100_0000, 0x1000), Err(ReserveError::Outside));
        // 16 MiB window: 0x400000.. is free, 0xc00000 bytes; 0x1000.. one page used.
        assert_eq!(a.alloc(0x100_0000, 0x1000), Err(0xc0_0000));
    }

    #[test]
    fn window_at_top_of_address_space_does_not_overflow() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(u64::MAX - 0xfff, u64::MAX)]);
        assert_eq!(a.alloc(0x1000, 0x1000), Ok(u64::MAX - 0xfff));
        assert_eq!(a.alloc(0x1000, 0x1000), Err(0));
    }
}
