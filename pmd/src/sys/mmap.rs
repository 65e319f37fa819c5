//! [`Mapping`]: the one owner of an `mmap` in the drivers, on `memmap2`.
//!
//! Socket rings (AF_PACKET, AF_XDP) and device BARs (vfio-pci) are shared
//! mappings of a file descriptor at an offset: `memmap2::MmapOptions` with
//! `len`, `offset`, `populate` and `map_raw`, which needs no `unsafe` because
//! an `MmapRaw` hands out only addresses. Anonymous memory (test stand-ins
//! for the kernel's rings) is `map_anon`. The mapping is unmapped when the
//! `Mapping` drops; every [`super::Shared`] window into it holds it alive.
//!
//! Where memmap2 does not fit: the external memory of `xfwd-mempool`
//! (`ExtMem`) maps *anonymous shared* hugepages (`MAP_SHARED | MAP_ANONYMOUS
//! | MAP_HUGETLB`), which memmap2's `map_anon` cannot express (it is always
//! `MAP_PRIVATE`); its hugetlbfs and memfd backings do use memmap2.

use std::io;
use std::os::fd::AsRawFd;

/// One live mapping (unmapped on drop).
#[derive(Debug)]
pub struct Mapping {
    raw: memmap2::MmapRaw,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED[|MAP_POPULATE], fd, offset)`.
    ///
    /// # Errors
    /// The `mmap` error (the kernel validates fd, offset and length).
    pub fn shared(
        fd: &impl AsRawFd,
        offset: u64,
        len: usize,
        populate: bool,
    ) -> io::Result<Mapping> {
        let mut o = memmap2::MmapOptions::new();
        o.len(len).offset(offset);
        if populate {
            o.populate();
        }
        Ok(Mapping {
            raw: o.map_raw(fd.as_raw_fd())?,
        })
    }

    /// Private anonymous zeroed memory of `len` bytes.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn anon(len: usize) -> io::Result<Mapping> {
        let m = memmap2::MmapOptions::new().len(len).map_anon()?;
        Ok(Mapping { raw: m.into() })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True for an empty mapping.
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_and_file_mappings_have_their_length() {
        let a = Mapping::anon(8192).unwrap();
        assert_eq!(a.len(), 8192);
        let f = tempfile::tempfile().unwrap();
        f.set_len(3 * 4096).unwrap();
        let m = Mapping::shared(&f, 4096, 4096, true).unwrap();
        assert_eq!(m.len(), 4096);
        assert!(!m.is_empty());
        assert_eq!(m.as_ptr() as usize % 4096, 0);
    }
}
