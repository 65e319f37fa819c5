//! External memory: hugepages the application allocates itself.
//!
//! This is what testpmd's `create_extmem` does before `rte_extmem_register`:
//! map N bytes of 2 MiB or 1 GiB pages (4 KiB only when explicitly allowed),
//! populate them up front, and build the per-page IOVA table the registry and
//! the mbuf pool need. Three hugepage backings exist because they serve
//! different users: anonymous `MAP_HUGETLB`, a file on a hugetlbfs mount
//! (unlinked as soon as it is open, see [`crate::hugefile`]) and
//! `memfd_create(MFD_HUGETLB)` whose fd another process can map later
//! (memif, vfio-user). A heap backing exists for unit tests and Miri.
//!
//! The file backings are mapped with `memmap2` (shared, populated); the
//! anonymous one calls `mmap` itself because it must be `MAP_SHARED |
//! MAP_ANONYMOUS | MAP_HUGETLB`, which memmap2's `map_anon` (always
//! `MAP_PRIVATE`) cannot express.
//!
//! `MAP_NORESERVE` is never used: with it `mmap` succeeds without pages and
//! the first touch kills the process with SIGBUS.

use crate::error::ExtMemError;
use crate::hugefile;
use crate::iova::{self, IovaMode};
use std::alloc::Layout;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Page size of external memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB: only when the caller allows it.
    Size4K,
    /// 2 MiB hugepages (the default).
    Size2M,
    /// 1 GiB hugepages.
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            PageSize::Size4K => 4 << 10,
            PageSize::Size2M => 2 << 20,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// Size in KiB (the unit of the sysfs hugepage directories).
    pub const fn kb(self) -> u64 {
        (self.bytes() >> 10) as u64
    }

    /// log2 of the size, the `MAP_HUGE_*`/`MFD_HUGE_*` encoding.
    const fn shift(self) -> i32 {
        self.bytes().trailing_zeros() as i32
    }

    /// True for 2 MiB and 1 GiB.
    pub const fn is_huge(self) -> bool {
        !matches!(self, PageSize::Size4K)
    }

    /// Parse `4K`, `2M`, `1G` (also `2MB`, `2048k`, `1GB`, case-insensitive).
    pub fn parse(s: &str) -> Option<PageSize> {
        match s.trim().to_ascii_lowercase().as_str() {
            "4k" | "4kb" | "4096" | "4kib" => Some(PageSize::Size4K),
            "2m" | "2mb" | "2mib" | "2048k" | "2048kb" => Some(PageSize::Size2M),
            "1g" | "1gb" | "1gib" | "1048576k" | "1048576kb" => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// The page size for a byte count, if it is one of ours.
    pub fn from_bytes(b: usize) -> Option<PageSize> {
        [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G]
            .into_iter()
            .find(|p| p.bytes() == b)
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        })
    }
}

/// Where the memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous shared `mmap` with `MAP_HUGETLB` (plain anonymous for 4 KiB).
    Anonymous,
    /// A file on a hugetlbfs mount; `None` picks the mount for the page size
    /// from `/proc/mounts`. The file is unlinked as soon as it is open; its
    /// fd stays open so the memory can be shared.
    Hugetlbfs(Option<PathBuf>),
    /// `memfd_create(MFD_HUGETLB)`; the fd is kept so another process can map it.
    Memfd,
    /// Heap memory aligned to the page size, IOVA = VA: unit tests and Miri.
    Heap,
}

impl Backing {
    /// Short name as used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Backing::Anonymous => "anon",
            Backing::Hugetlbfs(_) => "hugetlbfs",
            Backing::Memfd => "memfd",
            Backing::Heap => "heap",
        }
    }
}

/// What to allocate.
#[derive(Debug, Clone)]
pub struct ExtMemConfig {
    /// Bytes wanted; rounded up to whole pages.
    pub len: usize,
    /// Page size.
    pub page_size: PageSize,
    /// Backing.
    pub backing: Backing,
    /// How IOVAs are derived.
    pub iova_mode: IovaMode,
    /// Accept 4 KiB pages (logged as a warning).
    pub allow_4k: bool,
}

impl ExtMemConfig {
    /// 2 MiB anonymous hugepages in VA mode.
    pub fn hugepages_2m(len: usize) -> Self {
        ExtMemConfig {
            len,
            page_size: PageSize::Size2M,
            backing: Backing::Anonymous,
            iova_mode: IovaMode::Va,
            allow_4k: false,
        }
    }
}

enum Mapping {
    /// Anonymous shared hugepages (`libc::mmap`: memmap2's `map_anon` is
    /// always `MAP_PRIVATE`), unmapped in `Drop`.
    Mmap,
    /// A hugetlbfs or memfd file mapped with memmap2 (held only to be
    /// unmapped when it drops).
    File(#[allow(dead_code)] memmap2::MmapRaw),
    Heap(Layout),
}

/// N bytes of external memory with a per-page IOVA table.
///
/// Dropping it unmaps the memory; the pool and the registry keep it alive
/// through an `Arc` while they use it.
pub struct ExtMem {
    va: NonNull<u8>,
    len: usize,
    page_size: PageSize,
    backing: Backing,
    iova_mode: IovaMode,
    iovas: Vec<u64>,
    fd: Option<OwnedFd>,
    mapping: Mapping,
}

// SAFETY: ExtMem exclusively owns its mapping; the raw pointer is only an
// address of memory that lives until drop. Concurrent access to the bytes is
// coordinated by the users (the pool hands out unique mbufs).
#[allow(unsafe_code)]
unsafe impl Send for ExtMem {}
// SAFETY: &ExtMem exposes only the address, the length and the IOVA table,
// all immutable after construction.
#[allow(unsafe_code)]
unsafe impl Sync for ExtMem {}

impl fmt::Debug for ExtMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtMem")
            .field("va", &format_args!("{:#x}", self.va()))
            .field("len", &self.len)
            .field("pages", &self.iovas.len())
            .field("page_size", &self.page_size)
            .field("backing", &self.backing.name())
            .field("iova_mode", &self.iova_mode)
            .finish()
    }
}

static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

impl ExtMem {
    /// Allocate, populate and (for 4 KiB pages) lock external memory and build
    /// its IOVA table.
    ///
    /// # Errors
    /// [`ExtMemError::NotEnoughHugepages`] names the page size, the pages
    /// needed and free and the command that reserves more;
    /// [`ExtMemError::FourKNotAllowed`], [`ExtMemError::NoHugetlbfsMount`],
    /// [`ExtMemError::NoPhysAddr`] (PA mode without CAP_SYS_ADMIN) and
    /// system-call failures otherwise.
    pub fn alloc(cfg: &ExtMemConfig) -> Result<ExtMem, ExtMemError> {
        if cfg.len == 0 {
            return Err(ExtMemError::ZeroLength);
        }
        let ps = cfg.page_size;
        if ps == PageSize::Size4K && !cfg.allow_4k && cfg.backing != Backing::Heap {
            return Err(ExtMemError::FourKNotAllowed);
        }
        let len = cfg.len.div_ceil(ps.bytes()) * ps.bytes();
        let pages = (len / ps.bytes()) as u64;
        if ps.is_huge() && cfg.backing != Backing::Heap {
            check_free_hugepages(ps, pages)?;
        }
        let (va, fd, mapping) = match &cfg.backing {
            Backing::Heap => {
                let layout =
                    Layout::from_size_align(len, ps.bytes()).map_err(|e| ExtMemError::Sys {
                        call: "Layout",
                        what: format!("{len} bytes aligned {ps}"),
                        source: std::io::Error::other(e),
                    })?;
                (sys::heap_alloc(layout)?, None, Mapping::Heap(layout))
            }
            Backing::Anonymous => (sys::mmap_anon(len, ps)?, None, Mapping::Mmap),
            Backing::Memfd => {
                let fd = sys::memfd(ps)?;
                let (va, map) = map_file(&fd, len, ps)?;
                (va, Some(fd), map)
            }
            Backing::Hugetlbfs(dir) => {
                let dir = match dir {
                    Some(d) => d.clone(),
                    None => hugetlbfs_mount(ps).ok_or(ExtMemError::NoHugetlbfsMount(ps))?,
                };
                // Files a killed xfwd left behind hold hugepages: free them.
                if let Err(e) = hugefile::sweep_stale(&dir) {
                    log::warn!("cannot look for stale xfwd files in {}: {e}", dir.display());
                }
                let path = dir.join(hugefile::file_name(
                    std::process::id(),
                    FILE_SEQ.fetch_add(1, Ordering::Relaxed),
                ));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|source| ExtMemError::HugetlbfsFile {
                        path: path.clone(),
                        source,
                    })?;
                // Unlinked before the pages are allocated: the open fd keeps
                // the file, and a kill while mmap populates it leaves nothing
                // in the mount.
                let _ = std::fs::remove_file(&path);
                let fd = OwnedFd::from(file);
                // The fd stays open so another process can map the memory
                // (memif regions, zero-copy).
                let (va, map) = map_file(&fd, len, ps)?;
                (va, Some(fd), map)
            }
        };
        let mut mem = ExtMem {
            va,
            len,
            page_size: ps,
            backing: cfg.backing.clone(),
            iova_mode: cfg.iova_mode,
            iovas: Vec::new(),
            fd,
            mapping,
        };
        if ps == PageSize::Size4K {
            log::warn!(
                "external memory uses 4 KiB pages ({len} bytes, allowed explicitly): \
                 expect TLB misses and more DMA mappings than with hugepages"
            );
        }
        mem.populate()?;
        mem.iovas = match cfg.iova_mode {
            IovaMode::Pa if cfg.backing != Backing::Heap => {
                iova::physical_addresses(mem.va(), len, ps.bytes())?
            }
            _ => (0..pages as usize)
                .map(|i| (mem.va() + i * ps.bytes()) as u64)
                .collect(),
        };
        if cfg.backing == Backing::Heap {
            mem.iova_mode = IovaMode::Va;
        }
        log::info!(
            "external memory: {} pages of {} ({} bytes) backing {} at {:#x}, IOVA mode {:?}",
            pages,
            ps,
            len,
            cfg.backing.name(),
            mem.va(),
            mem.iova_mode
        );
        Ok(mem)
    }

    /// Heap-backed memory (IOVA = VA) for unit tests and Miri.
    ///
    /// # Errors
    /// Allocation failure.
    pub fn heap(len: usize, page_size: PageSize) -> Result<ExtMem, ExtMemError> {
        ExtMem::alloc(&ExtMemConfig {
            len,
            page_size,
            backing: Backing::Heap,
            iova_mode: IovaMode::Va,
            allow_4k: true,
        })
    }

    /// Write one byte per page (plus `MAP_POPULATE` for mmaps) so every page
    /// is backed before use, and lock 4 KiB memory.
    fn populate(&mut self) -> Result<(), ExtMemError> {
        let ps = self.page_size.bytes();
        for off in (0..self.len).step_by(ps) {
            // SAFETY: off < len and the mapping is readable and writable for
            // len bytes; nobody else has the address yet.
            #[allow(unsafe_code)]
            unsafe {
                self.va.as_ptr().add(off).write_volatile(0);
            }
        }
        if matches!(self.mapping, Mapping::Mmap) && !self.page_size.is_huge() {
            // Hugetlb pages are never swapped; 4 KiB pages must be locked.
            sys::mlock(self.va, self.len)?;
        }
        Ok(())
    }

    /// Start address.
    pub fn va(&self) -> usize {
        self.va.as_ptr() as usize
    }

    /// Start pointer.
    pub fn as_ptr(&self) -> *mut u8 {
        self.va.as_ptr()
    }

    /// Length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty (a zero length is refused), provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Page size.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// The backing.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// IOVA mode the table was built with.
    pub fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }

    /// IOVA of each page, in order.
    pub fn iovas(&self) -> &[u64] {
        &self.iovas
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.iovas.len()
    }

    /// The file (memfd or unlinked hugetlbfs file) behind the memory, for
    /// sharing with another process; `None` for anonymous and heap memory.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// True when `va..va+len` lies inside this memory.
    pub fn contains(&self, va: usize, len: usize) -> bool {
        va >= self.va() && va.saturating_add(len) <= self.va() + self.len
    }

    /// Replace the IOVA table with `base + i * page_size`: IOVAs chosen by the
    /// application (VFIO: from our own IOVA allocator) before registration.
    ///
    /// # Errors
    /// `base` not aligned to the page size.
    pub fn assign_iovas(&mut self, base: u64) -> Result<(), ExtMemError> {
        let ps = self.page_size.bytes() as u64;
        if !base.is_multiple_of(ps) {
            return Err(ExtMemError::BadIovaBase {
                base,
                page_size: self.page_size,
            });
        }
        for (i, io) in self.iovas.iter_mut().enumerate() {
            *io = base + i as u64 * ps;
        }
        self.iova_mode = IovaMode::Assigned(base);
        Ok(())
    }

    /// True when page `i + 1` follows page `i` in IOVA space.
    pub fn iova_contiguous_after(&self, i: usize) -> bool {
        match (self.iovas.get(i), self.iovas.get(i + 1)) {
            (Some(&a), Some(&b)) => a + self.page_size.bytes() as u64 == b,
            _ => false,
        }
    }
}

impl Drop for ExtMem {
    fn drop(&mut self) {
        match self.mapping {
            Mapping::Mmap => sys::munmap(self.va, self.len),
            Mapping::File(_) => {} // memmap2 unmaps it when the field drops
            Mapping::Heap(layout) => sys::heap_free(self.va, layout),
        }
        // The fd (if any) closes after this, when the fields drop.
    }
}

/// Read `free_hugepages` for a size.
pub fn free_hugepages(ps: PageSize) -> u64 {
    read_hp_counter(ps, "free_hugepages")
}

/// Read `nr_hugepages` for a size.
pub fn total_hugepages(ps: PageSize) -> u64 {
    read_hp_counter(ps, "nr_hugepages")
}

fn read_hp_counter(ps: PageSize, name: &str) -> u64 {
    let p = format!("/sys/kernel/mm/hugepages/hugepages-{}kB/{name}", ps.kb());
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Check before mapping, so the error can say what is missing.
///
/// # Errors
/// [`ExtMemError::NotEnoughHugepages`].
pub fn check_free_hugepages(ps: PageSize, needed: u64) -> Result<(), ExtMemError> {
    let free = free_hugepages(ps);
    if free < needed {
        return Err(not_enough(ps, needed, free));
    }
    Ok(())
}

fn not_enough(ps: PageSize, needed: u64, free: u64) -> ExtMemError {
    ExtMemError::NotEnoughHugepages {
        page_size: ps,
        needed,
        free,
        want: total_hugepages(ps) + needed.saturating_sub(free),
        kb: ps.kb(),
    }
}

/// The first hugetlbfs mount whose page size is `ps` (from `/proc/mounts`).
pub fn hugetlbfs_mount(ps: PageSize) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let default = default_hugepage_size();
    mounts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (_dev, dir, fstype, opts) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if fstype != "hugetlbfs" {
            return None;
        }
        let size = opts
            .split(',')
            .find_map(|o| o.strip_prefix("pagesize="))
            .and_then(PageSize::parse)
            .or(default)?;
        (size == ps).then(|| Path::new(dir).to_path_buf())
    })
}

fn default_hugepage_size() -> Option<PageSize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    PageSize::from_bytes(kb << 10)
}

/// Size the file to `len` and map it shared and populated with memmap2.
fn map_file(fd: &OwnedFd, len: usize, ps: PageSize) -> Result<(NonNull<u8>, Mapping), ExtMemError> {
    sys::ftruncate(fd, len)?;
    let raw = memmap2::MmapOptions::new()
        .len(len)
        .populate()
        .map_raw(fd.as_raw_fd())
        .map_err(|e| sys::map_error(e, len, ps))?;
    let va = NonNull::new(raw.as_mut_ptr()).ok_or_else(|| ExtMemError::Sys {
        call: "mmap",
        what: "returned NULL".into(),
        source: std::io::Error::other("NULL mapping"),
    })?;
    Ok((va, Mapping::File(raw)))
}

#[allow(unsafe_code)]
mod sys {
    //! The raw calls, each wrapped once.
    use super::{not_enough, ExtMemError, Layout, NonNull, OwnedFd, PageSize};
    use std::os::fd::{AsRawFd, FromRawFd};

    fn err(call: &'static str, what: String) -> ExtMemError {
        ExtMemError::Sys {
            call,
            what,
            source: std::io::Error::last_os_error(),
        }
    }

    fn huge_flags(ps: PageSize) -> libc::c_int {
        if ps.is_huge() {
            libc::MAP_HUGETLB | (ps.shift() << libc::MAP_HUGE_SHIFT)
        } else {
            0
        }
    }

    /// The error of a failed mmap of `len` bytes of `ps` pages.
    pub(super) fn map_error(e: std::io::Error, len: usize, ps: PageSize) -> ExtMemError {
        if e.raw_os_error() == Some(libc::ENOMEM) && ps.is_huge() {
            let needed = (len / ps.bytes()) as u64;
            return not_enough(ps, needed, super::free_hugepages(ps));
        }
        ExtMemError::Sys {
            call: "mmap",
            what: format!("{len} bytes of {ps} pages"),
            source: e,
        }
    }

    fn check_map(
        p: *mut libc::c_void,
        len: usize,
        ps: PageSize,
    ) -> Result<NonNull<u8>, ExtMemError> {
        if p == libc::MAP_FAILED {
            return Err(map_error(std::io::Error::last_os_error(), len, ps));
        }
        NonNull::new(p.cast()).ok_or_else(|| err("mmap", "returned NULL".into()))
    }

    pub(super) fn mmap_anon(len: usize, ps: PageSize) -> Result<NonNull<u8>, ExtMemError> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // no existing memory is affected. MAP_NORESERVE is deliberately absent.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | huge_flags(ps),
                -1,
                0,
            )
        };
        check_map(p, len, ps)
    }

    pub(super) fn ftruncate(fd: &OwnedFd, len: usize) -> Result<(), ExtMemError> {
        // SAFETY: ftruncate on an fd we own; no memory is passed.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(err("ftruncate", format!("{len} bytes")));
        }
        Ok(())
    }

    pub(super) fn memfd(ps: PageSize) -> Result<OwnedFd, ExtMemError> {
        let mut flags = libc::MFD_CLOEXEC;
        if ps.is_huge() {
            flags |= libc::MFD_HUGETLB | ((ps.shift() as libc::c_uint) << libc::MFD_HUGE_SHIFT);
        }
        // SAFETY: the name is a valid NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"xfwd-extmem".as_ptr(), flags) };
        if fd < 0 {
            return Err(err("memfd_create", format!("{ps} pages")));
        }
        // SAFETY: memfd_create returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn mlock(va: NonNull<u8>, len: usize) -> Result<(), ExtMemError> {
        // SAFETY: locking a range we mapped; no memory is changed.
        if unsafe { libc::mlock(va.as_ptr().cast(), len) } != 0 {
            return Err(ExtMemError::Mlock {
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub(super) fn munmap(va: NonNull<u8>, len: usize) {
        // SAFETY: va/len is exactly a mapping this ExtMem created and owns;
        // the pool and registry keep the ExtMem alive while they use it.
        let r = unsafe { libc::munmap(va.as_ptr().cast(), len) };
        if r != 0 {
            log::error!(
                "munmap({:p}, {len}) failed: {}",
                va,
                std::io::Error::last_os_error()
            );
        }
    }

    pub(super) fn heap_alloc(layout: Layout) -> Result<NonNull<u8>, ExtMemError> {
        // SAFETY: layout has a non-zero size (len > 0 checked by the caller).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(p).ok_or_else(|| ExtMemError::Sys {
            call: "alloc",
            what: format!("{} heap bytes", layout.size()),
            source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
        })
    }

    pub(super) fn heap_free(p: NonNull<u8>, layout: Layout) {
        // SAFETY: p was returned by heap_alloc with this same layout.
        unsafe { std::alloc::dealloc(p.as_ptr(), layout) }
    }
}

/// Ask the kernel to back `v` with transparent huge pages where it covers
/// whole 2 MiB pages (`madvise(MADV_HUGEPAGE)`; a hint: with THP set to
/// `madvise`, large lookup tables in ordinary heap memory otherwise get
/// 4 KiB pages and a TLB miss per random read). Call it before the memory
/// is first written. False when the kernel refused (or nothing was whole).
pub fn advise_huge<T>(v: &mut [T]) -> bool {
    const HUGE: usize = 2 << 20;
    let start = v.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let lo = start.next_multiple_of(HUGE);
    let hi = end / HUGE * HUGE;
    if hi <= lo {
        return false;
    }
    #[allow(unsafe_code)]
    // SAFETY: [lo, hi) lies inside `v`, memory this process owns and the
    // caller borrows mutably; MADV_HUGEPAGE changes only how the kernel
    // backs it, never its contents or validity.
    let r = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    r == 0
}
