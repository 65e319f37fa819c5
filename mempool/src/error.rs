//! Typed errors of the mempool crate.

use crate::extmem::PageSize;
use std::path::PathBuf;

/// Errors while allocating external memory.
#[derive(Debug, thiserror::Error)]
pub enum ExtMemError {
    /// A zero-length request.
    #[error("external memory length must be > 0")]
    ZeroLength,
    /// 4 KiB pages were asked for without the explicit permission.
    #[error(
        "4 KiB pages were requested but not allowed: hugepages (2M or 1G) are the default; \
         pass --allow-4k (config `memory.allow_4k = true`) to accept 4 KiB pages"
    )]
    FourKNotAllowed,
    /// Not enough free hugepages of the requested size.
    #[error(
        "not enough {page_size} hugepages: {needed} needed, {free} free \
         (reserve more with: `scripts/hugepages reserve --page-size {page_size} --pages {needed}` \
         or `echo {want} > /sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages` as root)"
    )]
    NotEnoughHugepages {
        /// Page size asked for.
        page_size: PageSize,
        /// Pages the allocation needs.
        needed: u64,
        /// Pages the kernel reports free.
        free: u64,
        /// Suggested `nr_hugepages` value (current total + missing).
        want: u64,
        /// Page size in KiB, for the sysfs path.
        kb: u64,
    },
    /// No hugetlbfs mount for this page size.
    #[error(
        "no hugetlbfs mount with page size {0} found in /proc/mounts; mount one with \
         `mount -t hugetlbfs -o pagesize={0} nodev /dev/hugepages` or pick --mem-backing anon|memfd"
    )]
    NoHugetlbfsMount(PageSize),
    /// A system call failed.
    #[error("{call} failed for {what}: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// What it was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file on hugetlbfs could not be created.
    #[error("cannot create hugetlbfs file {path}: {source}")]
    HugetlbfsFile {
        /// Path tried.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc/self/pagemap` gave no physical address.
    #[error(
        "IOVA mode PA needs physical addresses, but /proc/self/pagemap reads PFN 0 for va {va:#x}: \
         reading PFNs needs CAP_SYS_ADMIN (run as root) — or use --iova-mode va"
    )]
    NoPhysAddr {
        /// The virtual address whose PFN read 0.
        va: usize,
    },
    /// A page was not present after population.
    #[error("page at va {va:#x} is not present after population (pagemap present bit clear)")]
    NotPresent {
        /// The virtual address.
        va: usize,
    },
    /// Memory could not be locked.
    #[error(
        "mlock of {len} bytes failed: {source}; raise the memlock limit \
         (`ulimit -l unlimited`, systemd LimitMEMLOCK=infinity) or use hugepages"
    )]
    Mlock {
        /// Bytes asked to lock.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Invalid IOVA assignment.
    #[error("invalid IOVA base {base:#x}: must be aligned to the page size {page_size}")]
    BadIovaBase {
        /// The base asked for.
        base: u64,
        /// The region's page size.
        page_size: PageSize,
    },
}

/// Errors of the region registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The new region overlaps one already registered.
    #[error(
        "region [{va:#x}, +{len:#x}) overlaps registered region {existing} [{existing_va:#x}, +{existing_len:#x})"
    )]
    Overlap {
        /// New region start.
        va: usize,
        /// New region length.
        len: usize,
        /// Id of the region it overlaps.
        existing: crate::registry::RegionId,
        /// Start of that region.
        existing_va: usize,
        /// Length of that region.
        existing_len: usize,
    },
    /// The description is inconsistent.
    #[error("invalid region: {0}")]
    Invalid(String),
    /// Unknown id.
    #[error("region {0} is not registered")]
    Unknown(crate::registry::RegionId),
    /// No region covers this address.
    #[error("no registered region covers va {0:#x}: register the memory first")]
    NotRegistered(usize),
    /// The region still has users.
    #[error("cannot unregister region {id}: still used by {users}; release them first")]
    InUse {
        /// The region.
        id: crate::registry::RegionId,
        /// Who still uses it.
        users: String,
    },
}

/// Errors creating or planning an mbuf pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The configuration cannot work.
    #[error("invalid pool config `{field}` = {value}: {accepted}")]
    Config {
        /// The field.
        field: &'static str,
        /// The bad value.
        value: String,
        /// What is accepted.
        accepted: String,
    },
    /// The region is too small for the pool.
    #[error(
        "region of {have} bytes holds only {placed} of {wanted} mbufs ({obj_size} B each, page size {page_size}); \
         the plan needs {need_bytes} bytes"
    )]
    TooSmall {
        /// Bytes available.
        have: usize,
        /// Objects that fit.
        placed: usize,
        /// Objects wanted.
        wanted: u32,
        /// Object size.
        obj_size: usize,
        /// Page size.
        page_size: PageSize,
        /// Bytes the plan asks for.
        need_bytes: usize,
    },
    /// The registry refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Errors of mbuf data operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MbufError {
    /// Not enough headroom to prepend.
    #[error("cannot prepend {want} bytes: only {have} bytes of headroom")]
    NoHeadroom {
        /// Bytes asked.
        want: usize,
        /// Headroom left.
        have: usize,
    },
    /// Not enough tailroom to append.
    #[error("cannot append {want} bytes: only {have} bytes of tailroom")]
    NoTailroom {
        /// Bytes asked.
        want: usize,
        /// Tailroom left.
        have: usize,
    },
    /// Removing more data than there is.
    #[error("cannot remove {want} bytes: segment holds {have}")]
    TooShort {
        /// Bytes asked.
        want: usize,
        /// Bytes present.
        have: usize,
    },
    /// Too many segments.
    #[error("segment chain would exceed {max} segments")]
    TooManySegments {
        /// The maximum.
        max: usize,
    },
}

/// A bulk allocation could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[error("mbuf pool exhausted: {wanted} wanted, {available} available in ring and cache")]
pub struct AllocError {
    /// Objects asked for.
    pub wanted: usize,
    /// Objects that were available.
    pub available: usize,
}

/// The pool still has mbufs out after everything should have come back.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error(
    "pool `{pool}` leaked {in_use} mbufs: capacity {capacity}, available {available}, in caches {in_caches}"
)]
pub struct LeakError {
    /// Pool name.
    pub pool: String,
    /// Capacity.
    pub capacity: usize,
    /// In the shared ring.
    pub available: usize,
    /// In per-lcore caches.
    pub in_caches: usize,
    /// Neither: held somewhere.
    pub in_use: usize,
}
