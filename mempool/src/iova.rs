//! IOVA modes and physical address lookup (`rte_mem_virt2iova`).
//!
//! `/proc/self/pagemap` holds one 64-bit entry per 4 KiB virtual page: bit 63
//! "present", bits 0–54 the PFN. Without CAP_SYS_ADMIN the kernel reports PFN 0
//! even for present pages, which must be an error, not IOVA 0. Consecutive
//! hugepages are often not physically contiguous (and sometimes descending),
//! so the table holds one IOVA per page and nothing assumes contiguity.

use crate::error::ExtMemError;
use std::os::unix::fs::FileExt;

/// How IOVAs of external memory are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovaMode {
    /// IOVA = virtual address (IOMMU-backed devices, AF_XDP, software ports).
    Va,
    /// IOVA = physical address from `/proc/self/pagemap` (root only).
    Pa,
    /// IOVAs chosen by the application from this base (VFIO IOVA allocator).
    Assigned(u64),
}

impl IovaMode {
    /// Parse `va` or `pa`.
    pub fn parse(s: &str) -> Option<IovaMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "va" => Some(IovaMode::Va),
            "pa" => Some(IovaMode::Pa),
            _ => None,
        }
    }
}

const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;
const SMALL_PAGE: usize = 4096;

/// Physical address of every `page`-sized page in `va..va+len`, reading
/// pagemap through one open file.
///
/// # Errors
/// [`ExtMemError::NotPresent`] for an unpopulated page, [`ExtMemError::NoPhysAddr`]
/// when PFNs read 0 (no CAP_SYS_ADMIN), and I/O errors.
pub fn physical_addresses(va: usize, len: usize, page: usize) -> Result<Vec<u64>, ExtMemError> {
    let f = std::fs::File::open("/proc/self/pagemap").map_err(|source| ExtMemError::Sys {
        call: "open",
        what: "/proc/self/pagemap".into(),
        source,
    })?;
    (0..len / page)
        .map(|i| {
            let v = va + i * page;
            let mut buf = [0u8; 8];
            f.read_exact_at(&mut buf, (v / SMALL_PAGE * 8) as u64)
                .map_err(|source| ExtMemError::Sys {
                    call: "pread",
                    what: format!("/proc/self/pagemap entry of {v:#x}"),
                    source,
                })?;
            decode(u64::from_ne_bytes(buf), v)
        })
        .collect()
}

/// Decode one pagemap entry for virtual address `va`.
///
/// # Errors
/// Not present, or PFN 0.
pub fn decode(entry: u64, va: usize) -> Result<u64, ExtMemError> {
    if entry & PAGEMAP_PRESENT == 0 {
        return Err(ExtMemError::NotPresent { va });
    }
    let pfn = entry & PAGEMAP_PFN_MASK;
    if pfn == 0 {
        return Err(ExtMemError::NoPhysAddr { va });
    }
    Ok(pfn * SMALL_PAGE as u64 + (va % SMALL_PAGE) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_present_and_pfn() {
        assert!(matches!(
            decode(0, 0x1000),
            Err(ExtMemError::NotPresent { .. })
        ));
        let e = decode(PAGEMAP_PRESENT, 0x1000).unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
        assert_eq!(
            decode(PAGEMAP_PRESENT | 0x1234, 0x2010).unwrap(),
            0x1234 * 4096 + 0x10
        );
    }
}
