//! Errors of per-device DMA mapping. Every message names the range involved
//! and, where there is one, what to do about it.

use std::fmt;
use thiserror::Error;

/// One DMA mapping: `len` bytes at virtual address `va`, seen by the device at `iova`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DmaRange {
    /// Process virtual address of the first byte.
    pub va: u64,
    /// Address the device uses for the first byte.
    pub iova: u64,
    /// Length in bytes.
    pub len: u64,
}

impl DmaRange {
    /// A range.
    pub const fn new(va: u64, iova: u64, len: u64) -> DmaRange {
        DmaRange { va, iova, len }
    }

    /// One past the last virtual address (saturating).
    pub const fn va_end(&self) -> u64 {
        self.va.saturating_add(self.len)
    }

    /// One past the last IOVA (saturating).
    pub const fn iova_end(&self) -> u64 {
        self.iova.saturating_add(self.len)
    }

    /// True when the virtual ranges of `self` and `other` share a byte.
    pub const fn overlaps_va(&self, other: &DmaRange) -> bool {
        self.va < other.va_end() && other.va < self.va_end()
    }

    /// True when the IOVA ranges of `self` and `other` share a byte.
    pub const fn overlaps_iova(&self, other: &DmaRange) -> bool {
        self.iova < other.iova_end() && other.iova < self.iova_end()
    }

    /// Check the range is non-empty and neither end overflows.
    ///
    /// # Errors
    /// [`DmaError::InvalidRange`] naming the problem.
    pub fn validate(&self) -> Result<(), DmaError> {
        let reason = if self.len == 0 {
            "length is zero"
        } else if self.va.checked_add(self.len).is_none() {
            "va + len overflows the address space"
        } else if self.iova.checked_add(self.len).is_none() {
            "iova + len overflows the IOVA space"
        } else {
            return Ok(());
        };
        Err(DmaError::InvalidRange {
            range: *self,
            reason: reason.to_string(),
        })
    }
}

impl fmt::Display for DmaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "va={:#x} iova={:#x} len={:#x} ({} bytes)",
            self.va, self.iova, self.len, self.len
        )
    }
}

/// Why a DMA map or unmap was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DmaError {
    /// The range itself is unusable (empty, overflowing, misaligned).
    #[error("invalid DMA range {range}: {reason}")]
    InvalidRange {
        /// The request.
        range: DmaRange,
        /// What is wrong with it.
        reason: String,
    },
    /// The request overlaps a different existing mapping ("already mapped", but not identically).
    #[error(
        "cannot map {range}: {space} range is already mapped differently as {existing}; \
         an existing mapping is accepted only when va, iova and len are identical \
         (unmap the old mapping first)"
    )]
    Conflict {
        /// The request.
        range: DmaRange,
        /// The mapping already there.
        existing: DmaRange,
        /// `"virtual"` or `"IOVA"`: which address space overlaps.
        space: &'static str,
    },
    /// Unmap of a range that is not mapped at all.
    #[error(
        "cannot unmap {range}: not mapped{hint}; unmap must name exactly a chunk that was mapped"
    )]
    NotMapped {
        /// The request.
        range: DmaRange,
        /// Extra context (e.g. the mappings that exist), starting with "; " or empty.
        hint: String,
    },
    /// Unmap that covers only part of a mapping, or several mappings at once.
    #[error(
        "refusing partial unmap {range}: it does not match the mapped chunk {mapped}; \
         unmap exactly the chunk that was mapped (VFIO type1 cannot split a mapping)"
    )]
    PartialUnmap {
        /// The request.
        range: DmaRange,
        /// The mapping it touches.
        mapped: DmaRange,
    },
    /// Unmap while a started port may still DMA into the memory.
    #[error(
        "refusing to unmap {range}: still pinned by {pins} user(s) (a started port or in-flight \
         mbufs may DMA into it); stop the port and return its mbufs before dma_unmap"
    )]
    Busy {
        /// The mapping.
        range: DmaRange,
        /// How many pins are held.
        pins: u32,
    },
    /// VFIO: no IOMMU group in the container yet, so the kernel cannot take mappings.
    #[error(
        "cannot map {range}: the VFIO container has no IOMMU group attached yet, so it has no \
         IOMMU backend to map into (VFIO_SET_IOMMU happens when the first group is attached); \
         probe a vfio-pci port (attach its group) before dma_map"
    )]
    NoGroupAttached {
        /// The request.
        range: DmaRange,
    },
    /// VFIO: the IOVA range lies outside every range the IOMMU reported as usable.
    #[error(
        "cannot map {range}: IOVA {iova:#x}..{iova_end:#x} is outside the IOMMU's usable IOVA \
         ranges [{ranges}]; allocate IOVAs with the VFIO IOVA allocator (alloc_iova) after the \
         first group is attached"
    )]
    IovaOutOfRange {
        /// The request.
        range: DmaRange,
        /// First IOVA.
        iova: u64,
        /// One past the last IOVA.
        iova_end: u64,
        /// Usable ranges, formatted.
        ranges: String,
    },
    /// VFIO: the IOVA allocator has no free block large enough.
    #[error(
        "IOVA space exhausted: no free block of {len:#x} bytes aligned to {align:#x} in \
         [{ranges}] ({allocated:#x} bytes already allocated, largest free block {largest_free:#x}); \
         free unused IOVAs or map fewer/smaller regions"
    )]
    IovaExhausted {
        /// Requested length.
        len: u64,
        /// Requested alignment.
        align: u64,
        /// Usable ranges, formatted.
        ranges: String,
        /// Bytes currently allocated.
        allocated: u64,
        /// Largest free block (after alignment of its start).
        largest_free: u64,
    },
    /// VFIO: pinning the memory would exceed RLIMIT_MEMLOCK.
    #[error(
        "cannot map {range}: locking it for DMA needs {needed} bytes ({mapped} already mapped + \
         {len} new) but RLIMIT_MEMLOCK is {limit} bytes; raise it with `ulimit -l unlimited` (or \
         `ulimit -l {needed_kib}` KiB) in the shell, `LimitMEMLOCK=infinity` in the systemd unit, \
         a `memlock` line in /etc/security/limits.conf, or run with CAP_IPC_LOCK",
        len = range.len
    )]
    Memlock {
        /// The request.
        range: DmaRange,
        /// Bytes already mapped in the container.
        mapped: u64,
        /// Bytes needed in total.
        needed: u64,
        /// `needed` in KiB, rounded up (the unit of `ulimit -l`).
        needed_kib: u64,
        /// The soft limit in bytes.
        limit: u64,
    },
    /// VFIO: the container's DMA mapping count limit is reached.
    #[error(
        "cannot map {range}: the IOMMU allows {limit} DMA mappings per container and {used} are \
         in use; map fewer, larger chunks or raise the vfio_iommu_type1 `dma_entry_limit` \
         module parameter"
    )]
    MappingLimit {
        /// The request.
        range: DmaRange,
        /// Mappings in use.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The memory-region key space (u32) is used up; keys are never reused.
    #[error(
        "cannot map {range}: all {issued} memory-region keys were issued; keys are never reused"
    )]
    KeysExhausted {
        /// The request.
        range: DmaRange,
        /// Keys issued so far.
        issued: u64,
    },
    /// A kernel call failed.
    #[error("{op} {range} failed: {} (errno {errno}){hint}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The operation (e.g. `VFIO_IOMMU_MAP_DMA`).
        op: &'static str,
        /// The request.
        range: DmaRange,
        /// The errno.
        errno: i32,
        /// What it probably means, starting with "; " or empty.
        hint: String,
    },
    /// A VFIO setup step (container, group, info) failed.
    #[error("VFIO {what}: {detail}")]
    Vfio {
        /// The step.
        what: String,
        /// The cause.
        detail: String,
    },
}
