//! Per-device DMA mapping: `rte_dev_dma_map/unmap` for xfwd.
//!
//! The application owns the packet memory. Each port is asked to make it
//! DMA-able through one device-level API, [`DmaMapper`], which hides how the
//! device translates addresses:
//!
//! | kind | mapper | what a map does |
//! |---|---|---|
//! | [`MappingKind::MemoryRegion`] | [`mr::MrTable`] | registers a memory region and issues a key (mlx5 MR) |
//! | [`MappingKind::Iommu`] | [`vfio::VfioPortMapper`] | `VFIO_IOMMU_MAP_DMA` into the process's VFIO container |
//! | [`MappingKind::Umem`] | the AF_XDP port's own mapper | the memory is (part of) the UMEM |
//! | [`MappingKind::None`] | [`SoftMapper`] | records it: the device uses virtual addresses |
//!
//! # The flow (DPDK 19.05 external memory)
//!
//! ```text
//! 1. container = VfioContainerMapper::open()?          (only when a port is bound to vfio-pci)
//! 2. mem  = ExtMem::alloc(len, page)                   (hugepages)
//!    iova = container.alloc_iova(len, page)?           (our IOVA allocator; before the first
//!                                                        group is attached it hands out IOVAs
//!                                                        from a conservative window, checked
//!                                                        against the IOMMU's ranges at attach)
//! 3. registry.register(mem with IovaMode::Assigned(iova))   (rte_extmem_register)
//! 4. per port: probe (a vfio port attaches its group: container.attach(sysfs))
//!              mapper = mapper_for(port, binding, driver_mapper, Some(&container))?
//!              for each IOVA-contiguous chunk of the region (iova_chunks):
//!                  mapper.dma_map(va, iova, len)?     (rte_dev_dma_map)
//!              start: pins = mapper.pin_all()          (unmap refused while pinned)
//! 5. shutdown: stop port, drop pins, dma_unmap the same chunks, unregister, free.
//! ```
//!
//! Without VFIO, step 2 takes the IOVA from the memory itself (VA or PA mode)
//! and step 4 uses the driver's own mapper or a [`SoftMapper`].
//!
//! # Rules every mapper enforces
//! - Map exactly what was registered: a chunk is `(va, iova, len)`.
//! - Mapping the identical chunk again succeeds with [`MapOrigin::AlreadyMapped`]
//!   (for VFIO this is the second port of a shared container); any other
//!   overlap is [`DmaError::Conflict`] — a stale mapping is never accepted.
//! - Unmap names exactly a mapped chunk ([`DmaError::PartialUnmap`], [`DmaError::NotMapped`]).
//! - A pinned chunk ([`DmaMapper::pin`]) cannot be unmapped ([`DmaError::Busy`]).

pub mod error;
pub mod mr;
mod set;
pub mod vfio;

pub use error::{DmaError, DmaRange};
pub use mr::{MrCache, MrLookup, MrTable};
pub use set::{MappingPin, SoftMapper};
pub use vfio::{VfioContainerMapper, VfioPortMapper};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// How a device translates the addresses it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// A device-side table of registered memory regions with keys (mlx5 MR).
    MemoryRegion,
    /// An IOMMU programmed through VFIO type1.
    Iommu,
    /// An AF_XDP UMEM.
    Umem,
    /// No translation (software ports, kernel sockets).
    None,
}

impl fmt::Display for MappingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappingKind::MemoryRegion => "mr",
            MappingKind::Iommu => "iommu",
            MappingKind::Umem => "umem",
            MappingKind::None => "none",
        })
    }
}

/// Whether a map call created the mapping or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapOrigin {
    /// This call created it.
    New,
    /// The identical mapping existed (e.g. made by another port of the same VFIO container).
    AlreadyMapped,
}

/// One mapping as reported by [`DmaMapper::dma_map`] and [`DmaMapper::mappings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapInfo {
    /// The chunk.
    pub range: DmaRange,
    /// How the device translates it.
    pub kind: MappingKind,
    /// Created by this port, or found already mapped.
    pub origin: MapOrigin,
    /// Memory-region key (lkey) for [`MappingKind::MemoryRegion`].
    pub key: Option<u32>,
    /// Pins held when this report was made.
    pub pins: u32,
}

impl MapInfo {
    pub(crate) fn new(
        range: DmaRange,
        kind: MappingKind,
        origin: MapOrigin,
        key: Option<u32>,
    ) -> MapInfo {
        MapInfo {
            range,
            kind,
            origin,
            key,
            pins: 0,
        }
    }

    pub(crate) fn of<T>(
        e: &set::Entry<T>,
        kind: MappingKind,
        origin: MapOrigin,
        key: Option<u32>,
    ) -> MapInfo {
        MapInfo {
            pins: e.pins(),
            ..MapInfo::new(e.range, kind, origin, key)
        }
    }
}

/// Device-level DMA mapping (`rte_dev_dma_map`), one per port.
pub trait DmaMapper: Send + Sync + fmt::Debug {
    /// How this device translates addresses.
    fn kind(&self) -> MappingKind;

    /// Make `len` bytes at `va` reachable by the device at `iova`.
    ///
    /// # Errors
    /// [`DmaError::Conflict`] when a different mapping overlaps, plus the
    /// mapper's own limits (keys, IOVA ranges, memlock, group not attached).
    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError>;

    /// Undo exactly one earlier [`dma_map`](Self::dma_map).
    ///
    /// # Errors
    /// [`DmaError::NotMapped`], [`DmaError::PartialUnmap`], [`DmaError::Busy`],
    /// or the kernel's refusal.
    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError>;

    /// Every mapping of this device, in VA order (stats, telemetry `/dma`).
    fn mappings(&self) -> Vec<MapInfo>;

    /// Pin the exact mapping so that `dma_unmap` is refused until the pin drops.
    ///
    /// # Errors
    /// [`DmaError::NotMapped`] / [`DmaError::PartialUnmap`] when it is not exactly a mapping.
    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError>;

    /// Pin every current mapping (what a port does at start).
    fn pin_all(&self) -> Vec<MappingPin> {
        self.mappings()
            .iter()
            .filter_map(|m| self.pin(m.range.va, m.range.iova, m.range.len).ok())
            .collect()
    }

    /// The IOVA this device uses for `va`, if `va` is mapped (verify before use).
    fn translate(&self, va: u64) -> Option<u64>;
}

/// Split a registered region (one IOVA per page) into IOVA-contiguous chunks:
/// the `(va, iova, len)` triples to map, and later to unmap, one by one.
pub fn iova_chunks(va: u64, page_size: u64, iovas: &[u64]) -> Vec<DmaRange> {
    let mut out: Vec<DmaRange> = Vec::new();
    for (i, &iova) in iovas.iter().enumerate() {
        let page_va = va + i as u64 * page_size;
        match out.last_mut() {
            Some(c) if c.iova_end() == iova && c.va_end() == page_va => c.len += page_size,
            _ => out.push(DmaRange::new(page_va, iova, page_size)),
        }
    }
    out
}

/// How the device behind a port is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceBinding {
    /// Bound to vfio-pci; `sysfs` is `/sys/bus/pci/devices/<BDF>`.
    VfioPci {
        /// The device's sysfs directory.
        sysfs: PathBuf,
    },
    /// Reached through a kernel driver (AF_XDP, AF_PACKET): no IOMMU programming by us.
    Kernel,
    /// A software port (null, ring, pcap, memif).
    Software,
}

/// The mapper a port uses: the driver's own when it has one (MR table, UMEM),
/// else for a vfio-pci device the shared VFIO container's (the PCI-bus
/// fallback of DPDK's `rte_dev_dma_map`), else a [`SoftMapper`].
///
/// # Errors
/// [`DmaError::Vfio`] when the device is bound to vfio-pci and no container was opened.
pub fn mapper_for(
    port: &str,
    binding: &DeviceBinding,
    driver_mapper: Option<Arc<dyn DmaMapper>>,
    container: Option<&Arc<VfioContainerMapper>>,
) -> Result<Arc<dyn DmaMapper>, DmaError> {
    if let Some(own) = driver_mapper {
        return Ok(own);
    }
    match binding {
        DeviceBinding::VfioPci { sysfs } => match container {
            Some(c) => Ok(Arc::new(c.port_mapper(port))),
            None => Err(DmaError::Vfio {
                what: format!("port {port} ({})", sysfs.display()),
                detail: "is bound to vfio-pci and its driver has no DMA mapper of its own, \
                         but no VFIO container was opened; open one with \
                         VfioContainerMapper::open() and pass it"
                    .to_string(),
            }),
        },
        DeviceBinding::Kernel | DeviceBinding::Software => {
            Ok(Arc::new(SoftMapper::new(MappingKind::None)))
        }
    }
}
