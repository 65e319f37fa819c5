//! VFIO type1 DMA mapping: one container per process, shared by its vfio-pci
//! ports ([`VfioContainerMapper`]); each port maps through its own
//! [`VfioPortMapper`].
//!
//! Mappings belong to the container, not to a port: when a second port maps
//! the same chunk the container already holds it ("already mapped"), which is
//! accepted only when `(va, iova, len)` is identical. The kernel mapping stays
//! until the last port that mapped it unmaps it.
//!
//! All kernel access goes through a [`VfioBackend`]: [`kernel::KernelType1`]
//! (the only code here that issues ioctls) or [`fake::FakeType1`], a test
//! double that answers like the kernel's type1 driver.

pub mod fake;
pub mod iova;
#[allow(unsafe_code)]
pub mod kernel;

pub use iova::IovaRange;

use super::error::{DmaError, DmaRange};
use super::set::{lock, Admit, MappingSet};
use super::{DmaMapper, MapInfo, MapOrigin, MappingKind, MappingPin};
use iova::{fmt_ranges, IovaAllocator, ReserveError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// IOVA window used before the IOMMU reported its ranges: 4 GiB..512 GiB,
/// above the x86 MSI window (0xfee00000) and PCI holes below 4 GiB, and inside
/// a 39-bit aperture, the smallest common on VT-d/AMD-Vi/SMMU.
pub const PROVISIONAL_WINDOW: IovaRange = IovaRange::new(1 << 32, (1 << 39) - 1);

/// Page size assumed before the IOMMU reported its page sizes.
const DEFAULT_PAGE: u64 = 4096;

/// What `VFIO_IOMMU_GET_INFO` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuInfo {
    /// Usable IOVA ranges (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`); empty when not reported.
    pub ranges: Vec<IovaRange>,
    /// Bitmap of supported IOMMU page sizes; the lowest bit is the mapping granularity.
    pub pgsizes: u64,
    /// DMA mappings still available (`VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`), when reported.
    pub dma_avail: Option<u32>,
}

impl IommuInfo {
    /// The smallest IOMMU page: every va, iova and len must be a multiple of it.
    pub fn min_page(&self) -> u64 {
        if self.pgsizes == 0 {
            DEFAULT_PAGE
        } else {
            1 << self.pgsizes.trailing_zeros()
        }
    }
}

/// The RLIMIT_MEMLOCK that applies to pinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemlockLimit {
    /// RLIM_INFINITY, or CAP_IPC_LOCK (the kernel then skips the check).
    Unlimited,
    /// The soft limit in bytes.
    Bytes(u64),
}

/// The kernel side of a VFIO type1 container.
pub trait VfioBackend: Send + Sync + fmt::Debug {
    /// Attach the IOMMU group of the device at `sysfs` (`/sys/bus/pci/devices/<BDF>`);
    /// the first attach sets the IOMMU type (type1v2). Returns the group number.
    ///
    /// # Errors
    /// [`DmaError::Vfio`] when the group cannot be opened or added.
    fn attach(&self, sysfs: &Path) -> Result<u32, DmaError>;

    /// `VFIO_IOMMU_GET_INFO` (valid once a group is attached).
    ///
    /// # Errors
    /// [`DmaError::Vfio`] when the ioctl fails.
    fn iommu_info(&self) -> Result<IommuInfo, DmaError>;

    /// `VFIO_IOMMU_MAP_DMA` read+write; `Err(errno)` as the kernel returns it.
    ///
    /// # Errors
    /// The errno.
    fn map_dma(&self, va: u64, iova: u64, len: u64) -> Result<(), i32>;

    /// `VFIO_IOMMU_UNMAP_DMA`; `Ok(bytes unmapped)` or `Err(errno)`.
    ///
    /// # Errors
    /// The errno.
    fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64, i32>;

    /// The memlock limit that applies to this process.
    fn memlock_limit(&self) -> MemlockLimit;

    /// The `VfioDevice` attached from `sysfs` (the driver's handle for BARs and
    /// IRQs); `None` for backends without real devices.
    fn device(&self, _sysfs: &Path) -> Option<Arc<vfio_ioctls::VfioDevice>> {
        None
    }
}

/// One kernel mapping and the ports that mapped it.
#[derive(Debug)]
struct KernelMapping {
    range: DmaRange,
    users: Vec<String>,
    /// The IOVAs were reserved by the map itself (not by `alloc_iova`): freed with it.
    implicit: bool,
}

#[derive(Debug)]
struct State {
    groups: Vec<u32>,
    info: Option<IommuInfo>,
    dma_limit: Option<u64>,
    alloc: IovaAllocator,
    by_iova: BTreeMap<u64, KernelMapping>,
    mapped_bytes: u64,
}

impl State {
    fn min_page(&self) -> u64 {
        self.info.as_ref().map_or(DEFAULT_PAGE, IommuInfo::min_page)
    }

    fn overlapping_iova(&self, r: &DmaRange) -> Option<&KernelMapping> {
        self.by_iova
            .range(..r.iova_end())
            .next_back()
            .map(|(_, m)| m)
            .filter(|m| m.range.overlaps_iova(r))
    }
}

/// The VFIO container of the process and its mappings, shared (`Arc`) by the
/// vfio-pci ports.
#[derive(Debug)]
pub struct VfioContainerMapper {
    backend: Box<dyn VfioBackend>,
    state: Mutex<State>,
}

fn kernel_hint(errno: i32) -> &'static str {
    match errno {
        libc::EEXIST => {
            "; the IOVA range is already mapped in the container by someone outside this \
             mapper, so it cannot be verified to be the identical mapping"
        }
        libc::ENOMEM => {
            "; the kernel could not pin the pages: RLIMIT_MEMLOCK counts all memory the process \
             pinned (raise `ulimit -l` / LimitMEMLOCK=)"
        }
        libc::EFAULT => "; the virtual range is not (all) mapped memory of this process",
        libc::EINVAL => {
            "; va, iova or len not aligned to the IOMMU page size, the IOVA is outside the usable \
             ranges, or (unmap) the range splits a mapping, which type1v2 refuses"
        }
        libc::ENOTTY | libc::ENODEV => "; the container has no IOMMU backend (no group attached)",
        _ => "",
    }
}

impl VfioContainerMapper {
    /// Open `/dev/vfio/vfio` with the real kernel backend.
    ///
    /// # Errors
    /// [`DmaError::Vfio`] when there is no VFIO (module not loaded, no permission).
    pub fn open() -> Result<Arc<VfioContainerMapper>, DmaError> {
        Ok(VfioContainerMapper::with_backend(Box::new(
            kernel::KernelType1::open()?,
        )))
    }

    /// A container over any backend (tests use [`fake::FakeType1`]).
    pub fn with_backend(backend: Box<dyn VfioBackend>) -> Arc<VfioContainerMapper> {
        Arc::new(VfioContainerMapper {
            backend,
            state: Mutex::new(State {
                groups: Vec::new(),
                info: None,
                dma_limit: None,
                alloc: IovaAllocator::new(vec![PROVISIONAL_WINDOW]),
                by_iova: BTreeMap::new(),
                mapped_bytes: 0,
            }),
        })
    }

    /// The backend (e.g. [`VfioBackend::device`] for a driver's BAR and IRQ access).
    pub fn backend(&self) -> &dyn VfioBackend {
        self.backend.as_ref()
    }

    /// Attach the IOMMU group of a vfio-pci device, then read the IOMMU's
    /// usable IOVA ranges, page sizes and mapping limit. IOVAs allocated
    /// earlier from [`PROVISIONAL_WINDOW`] that fall outside the reported
    /// ranges are logged; mapping them fails with [`DmaError::IovaOutOfRange`].
    ///
    /// # Errors
    /// [`DmaError::Vfio`] from the backend.
    pub fn attach(&self, sysfs: &Path) -> Result<u32, DmaError> {
        let mut st = lock(&self.state);
        let group = self.backend.attach(sysfs)?;
        if !st.groups.contains(&group) {
            st.groups.push(group);
        }
        let info = self.backend.iommu_info()?;
        if !info.ranges.is_empty() {
            st.alloc.set_windows(info.ranges.clone());
        }
        st.dma_limit = info
            .dma_avail
            .map(|avail| u64::from(avail) + st.by_iova.len() as u64);
        for (iova, len) in st.alloc.outside() {
            log::warn!(
                "vfio: IOVA block {iova:#x}+{len:#x} allocated before attach lies outside the \
                 IOMMU ranges [{}]; it cannot be mapped",
                fmt_ranges(&info.ranges)
            );
        }
        log::info!(
            "vfio: group {group} attached ({}), IOVA ranges [{}], page sizes {:#x}, dma_avail {:?}",
            sysfs.display(),
            fmt_ranges(st.alloc.windows()),
            info.pgsizes,
            info.dma_avail
        );
        st.info = Some(info);
        Ok(group)
    }

    /// Groups attached so far.
    pub fn groups(&self) -> Vec<u32> {
        lock(&self.state).groups.clone()
    }

    /// The IOMMU info, once a group is attached.
    pub fn iommu_info(&self) -> Option<IommuInfo> {
        lock(&self.state).info.clone()
    }

    /// The ranges the allocator hands IOVAs from (reported ranges once a group is attached).
    pub fn iova_ranges(&self) -> Vec<IovaRange> {
        lock(&self.state).alloc.windows().to_vec()
    }

    /// Bytes currently mapped (pinned) in the container.
    pub fn mapped_bytes(&self) -> u64 {
        lock(&self.state).mapped_bytes
    }

    /// Pick `len` bytes of IOVA space aligned to `align` (at least the IOMMU
    /// page): call before registering the memory, then register it with this
    /// IOVA and `dma_map` it on each port.
    ///
    /// # Errors
    /// [`DmaError::InvalidRange`] for a zero/misaligned length or an alignment
    /// that is not a power of two, [`DmaError::IovaExhausted`] when no block fits.
    pub fn alloc_iova(&self, len: u64, align: u64) -> Result<u64, DmaError> {
        let mut st = lock(&self.state);
        let page = st.min_page();
        let invalid = |reason: String| DmaError::InvalidRange {
            range: DmaRange::new(0, 0, len),
            reason,
        };
        if len == 0 || !len.is_multiple_of(page) {
            return Err(invalid(format!(
                "IOVA allocation length must be a non-zero multiple of the IOMMU page size {page:#x}"
            )));
        }
        if !align.is_power_of_two() && align != 0 {
            return Err(invalid(format!(
                "alignment {align:#x} is not a power of two"
            )));
        }
        let align = align.max(page);
        st.alloc
            .alloc(len, align)
            .map_err(|largest_free| DmaError::IovaExhausted {
                len,
                align,
                ranges: fmt_ranges(st.alloc.windows()),
                allocated: st.alloc.allocated(),
                largest_free,
            })
    }

    /// Return an allocation made by [`alloc_iova`](Self::alloc_iova).
    ///
    /// # Errors
    /// [`DmaError::InvalidRange`] while a mapping uses it or when `(iova, len)`
    /// is not exactly one allocation.
    pub fn free_iova(&self, iova: u64, len: u64) -> Result<(), DmaError> {
        let mut st = lock(&self.state);
        let r = DmaRange::new(0, iova, len);
        if let Some(m) = st.overlapping_iova(&r) {
            return Err(DmaError::InvalidRange {
                range: r,
                reason: format!(
                    "the IOVAs are still mapped ({}) by port(s) {}; dma_unmap on every port first",
                    m.range,
                    m.users.join(", ")
                ),
            });
        }
        if st.alloc.free(iova, len) {
            Ok(())
        } else {
            Err(DmaError::InvalidRange {
                range: r,
                reason: "not an IOVA allocation of this container (free exactly what \
                         alloc_iova returned)"
                    .to_string(),
            })
        }
    }

    /// The mapper one port uses.
    pub fn port_mapper(self: &Arc<Self>, port: &str) -> VfioPortMapper {
        VfioPortMapper {
            port: port.to_string(),
            container: Arc::clone(self),
            set: Mutex::new(MappingSet::default()),
        }
    }

    /// Map `r` for `port` (or join the identical existing mapping).
    fn map(&self, port: &str, r: DmaRange) -> Result<MapOrigin, DmaError> {
        let mut st = lock(&self.state);
        let Some(info) = st.info.clone() else {
            return Err(DmaError::NoGroupAttached { range: r });
        };
        let page = info.min_page();
        if !r.va.is_multiple_of(page) || !r.iova.is_multiple_of(page) || !r.len.is_multiple_of(page)
        {
            return Err(DmaError::InvalidRange {
                range: r,
                reason: format!(
                    "va, iova and len must be multiples of the IOMMU page size {page:#x}"
                ),
            });
        }
        if let Some(m) = st.overlapping_iova(&r) {
            if m.range != r {
                return Err(DmaError::Conflict {
                    range: r,
                    existing: m.range,
                    space: "IOVA",
                });
            }
            let m = st.by_iova.get_mut(&r.iova).ok_or(DmaError::NotMapped {
                range: r,
                hint: String::new(),
            })?;
            m.users.push(port.to_string());
            log::info!("vfio: {port}: {r} already mapped in the container (identical): shared");
            return Ok(MapOrigin::AlreadyMapped);
        }
        if !st.alloc.in_windows(r.iova, r.len) {
            return Err(DmaError::IovaOutOfRange {
                range: r,
                iova: r.iova,
                iova_end: r.iova_end(),
                ranges: fmt_ranges(st.alloc.windows()),
            });
        }
        if let MemlockLimit::Bytes(limit) = self.backend.memlock_limit() {
            let needed = st.mapped_bytes.saturating_add(r.len);
            if needed > limit {
                return Err(DmaError::Memlock {
                    range: r,
                    mapped: st.mapped_bytes,
                    needed,
                    needed_kib: needed.div_ceil(1024),
                    limit,
                });
            }
        }
        let used = st.by_iova.len() as u64;
        if let Some(limit) = st.dma_limit.filter(|&l| used >= l) {
            return Err(DmaError::MappingLimit {
                range: r,
                used,
                limit,
            });
        }
        let implicit = match st.alloc.reserve(r.iova, r.len) {
            Ok(new) => new,
            Err(ReserveError::Overlap(s, l)) => {
                return Err(DmaError::InvalidRange {
                    range: r,
                    reason: format!(
                        "the IOVA range straddles the IOVA allocation {s:#x}+{l:#x}; map within \
                         one allocation from alloc_iova"
                    ),
                })
            }
            Err(ReserveError::Outside) => {
                return Err(DmaError::IovaOutOfRange {
                    range: r,
                    iova: r.iova,
                    iova_end: r.iova_end(),
                    ranges: fmt_ranges(st.alloc.windows()),
                })
            }
        };
        if let Err(errno) = self.backend.map_dma(r.va, r.iova, r.len) {
            if implicit {
                st.alloc.free(r.iova, r.len);
            }
            if errno == libc::ENOSPC {
                return Err(DmaError::MappingLimit {
                    range: r,
                    used,
                    limit: used,
                });
            }
            return Err(DmaError::Kernel {
                op: "VFIO_IOMMU_MAP_DMA",
                range: r,
                errno,
                hint: kernel_hint(errno).to_string(),
            });
        }
        st.mapped_bytes += r.len;
        st.by_iova.insert(
            r.iova,
            KernelMapping {
                range: r,
                users: vec![port.to_string()],
                implicit,
            },
        );
        log::debug!("vfio: {port}: mapped {r}");
        Ok(MapOrigin::New)
    }

    /// Drop `port`'s use of `r`; the last user unmaps it in the kernel.
    fn unmap(&self, port: &str, r: DmaRange) -> Result<(), DmaError> {
        let mut st = lock(&self.state);
        let m = match st.by_iova.get_mut(&r.iova) {
            Some(m) if m.range == r && m.users.iter().any(|u| u == port) => m,
            _ => {
                return Err(DmaError::NotMapped {
                    range: r,
                    hint: format!("; port {port} holds no such mapping in the VFIO container"),
                })
            }
        };
        if m.users.len() > 1 {
            if let Some(i) = m.users.iter().position(|u| u == port) {
                m.users.remove(i);
            }
            log::debug!("vfio: {port}: released {r}, still used by {:?}", m.users);
            return Ok(());
        }
        let implicit = m.implicit;
        let kernel_err = |errno: i32, hint: String| DmaError::Kernel {
            op: "VFIO_IOMMU_UNMAP_DMA",
            range: r,
            errno,
            hint,
        };
        match self.backend.unmap_dma(r.iova, r.len) {
            Ok(n) if n == r.len => {}
            Ok(n) => {
                return Err(kernel_err(
                    libc::EIO,
                    format!("; the kernel unmapped {n:#x} bytes instead of {:#x}", r.len),
                ))
            }
            Err(errno) => return Err(kernel_err(errno, kernel_hint(errno).to_string())),
        }
        st.by_iova.remove(&r.iova);
        st.mapped_bytes -= r.len;
        if implicit {
            st.alloc.free(r.iova, r.len);
        }
        log::debug!("vfio: {port}: unmapped {r}");
        Ok(())
    }
}

/// The [`DmaMapper`] of one vfio-pci port: its own mapped chunks (exact unmap,
/// pins) over the shared container.
#[derive(Debug)]
pub struct VfioPortMapper {
    port: String,
    container: Arc<VfioContainerMapper>,
    set: Mutex<MappingSet<()>>,
}

impl VfioPortMapper {
    /// The shared container.
    pub fn container(&self) -> &Arc<VfioContainerMapper> {
        &self.container
    }
}

impl DmaMapper for VfioPortMapper {
    fn kind(&self) -> MappingKind {
        MappingKind::Iommu
    }

    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError> {
        let r = DmaRange::new(va, iova, len);
        let mut set = lock(&self.set);
        if let Admit::Identical(e) = set.admit(r)? {
            return Ok(MapInfo::of(
                e,
                MappingKind::Iommu,
                MapOrigin::AlreadyMapped,
                None,
            ));
        }
        let origin = self.container.map(&self.port, r)?;
        set.insert(r, origin, ());
        Ok(MapInfo::new(r, MappingKind::Iommu, origin, None))
    }

    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError> {
        let r = DmaRange::new(va, iova, len);
        let mut set = lock(&self.set);
        set.check_removal(r)?;
        self.container.unmap(&self.port, r)?;
        set.remove(r).map(drop)
    }

    fn mappings(&self) -> Vec<MapInfo> {
        lock(&self.set)
            .iter()
            .map(|e| MapInfo::of(e, MappingKind::Iommu, e.origin, None))
            .collect()
    }

    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError> {
        lock(&self.set).pin(DmaRange::new(va, iova, len))
    }

    fn translate(&self, va: u64) -> Option<u64> {
        lock(&self.set).translate(va)
    }
}

impl Drop for VfioPortMapper {
    /// A port dropped without unmapping releases its share of each mapping
    /// (the kernel mapping goes with the last port), so nothing stays pinned.
    fn drop(&mut self) {
        let set = lock(&self.set);
        for e in set.iter() {
            log::warn!(
                "vfio: port {} dropped while {} mapped: releasing it",
                self.port,
                e.range
            );
            if let Err(err) = self.container.unmap(&self.port, e.range) {
                log::error!("vfio: port {}: {err}", self.port);
            }
        }
    }
}
