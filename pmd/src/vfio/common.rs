//! What every `vfio:` driver shares: opening the device through the
//! process's container, the negative-test mapper, the checks `start()` makes
//! (a pool is mapped before the device may see it), and the rings' own small
//! external memory mapped at IOVAs from the container.

use super::device::dev_err;
use super::{shared_container, DeviceError};
use crate::dma::{
    DmaError, DmaMapper, DmaRange, MapInfo, MapOrigin, MappingKind, MappingPin, VfioContainerMapper,
};
use crate::error::PortError;
use crate::port::{PortConf, PortCore};
use std::path::Path;
use std::sync::Arc;
use vfio_ioctls::VfioDevice;
use xfwd_mempool::{Backing, ExtMem, ExtMemConfig, IovaMode, PageSize};

/// The negative-test mapper: `dma_map` claims success without mapping.
#[derive(Debug)]
pub(super) struct SkipMapper(pub(super) Arc<dyn DmaMapper>);

impl DmaMapper for SkipMapper {
    fn kind(&self) -> MappingKind {
        MappingKind::Iommu
    }
    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError> {
        log::warn!("vfio: debug_skip_map: NOT mapping {va:#x}+{len:#x} at IOVA {iova:#x}");
        Ok(MapInfo::new(
            DmaRange::new(va, iova, len),
            MappingKind::Iommu,
            MapOrigin::New,
            None,
        ))
    }
    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError> {
        match self.0.dma_unmap(va, iova, len) {
            Err(DmaError::NotMapped { .. }) => Ok(()),
            r => r,
        }
    }
    fn mappings(&self) -> Vec<MapInfo> {
        self.0.mappings()
    }
    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError> {
        self.0.pin(va, iova, len)
    }
    fn translate(&self, va: u64) -> Option<u64> {
        self.0.translate(va)
    }
}

pub(super) fn dma_err(port: &str) -> impl Fn(DmaError) -> PortError + '_ {
    move |source| PortError::Dma {
        port: port.to_string(),
        source,
    }
}

/// Attach the device at `sysfs` (checked by [`device::check_bound`]) to the
/// process's container, get its handle and the port's mappers.
///
/// # Errors
/// VFIO unavailable, the group not viable, no device handle.
pub(super) fn open(
    port: &str,
    bdf: &str,
    sysfs: &Path,
    debug_skip_map: u8,
) -> Result<Opened, PortError> {
    let container = shared_container().map_err(dma_err(port))?;
    let group = container.attach(sysfs).map_err(dma_err(port))?;
    let dev = container.backend().device(sysfs).ok_or_else(|| {
        dev_err(
            port,
            "probe",
            DeviceError::Unsupported("the VFIO backend has no device handle".into()),
        )
    })?;
    let real: Arc<dyn DmaMapper> = Arc::new(container.port_mapper(port));
    let mapper: Arc<dyn DmaMapper> = if debug_skip_map > 0 {
        log::warn!("vfio {bdf}: debug_skip_map={debug_skip_map}: pool memory will NOT be mapped");
        Arc::new(SkipMapper(real.clone()))
    } else {
        real.clone()
    };
    Ok(Opened {
        container,
        group,
        dev,
        real,
        mapper,
    })
}

/// An opened vfio-pci device.
pub(super) struct Opened {
    pub container: Arc<VfioContainerMapper>,
    pub group: u32,
    pub dev: Arc<VfioDevice>,
    /// The real mapper (rings are always really mapped).
    pub real: Arc<dyn DmaMapper>,
    /// What the port maps pools with (the real one, or [`SkipMapper`]).
    pub mapper: Arc<dyn DmaMapper>,
}

/// Every page of `mem` must be mapped by `mapper` at the IOVA its mbufs carry.
///
/// # Errors
/// [`PortError::State`] naming the first page that is not.
pub(super) fn verify_mapped(
    port: &str,
    mapper: &dyn DmaMapper,
    mem: &ExtMem,
    pool: &str,
) -> Result<(), PortError> {
    let page = mem.page_size().bytes();
    for (i, &iova) in mem.iovas().iter().enumerate() {
        let va = (mem.va() + i * page) as u64;
        let got = mapper.translate(va);
        if got != Some(iova) {
            return Err(PortError::State {
                port: port.to_string(),
                why: format!(
                    "refusing to start: page {i} of pool `{pool}` (va {va:#x}, IOVA {iova:#x}) is {} \
                     for this device; dma_map every chunk of the pool's region on this port \
                     first (the device would DMA to an address the IOMMU does not translate)",
                    match got {
                        None => "not DMA-mapped".to_string(),
                        Some(o) => format!("mapped at a different IOVA {o:#x}"),
                    }
                ),
            });
        }
    }
    Ok(())
}

/// What `start()` of a vfio port checks first: not started, configured, and
/// every page of every pool mapped for the port (unless `debug_skip_map=2`
/// lets an unmapped pool reach the device); returns the configuration.
///
/// # Errors
/// [`PortError::State`] naming what is wrong.
pub(super) fn conf_to_start(
    core: &PortCore,
    bdf: &str,
    debug_skip_map: u8,
) -> Result<PortConf, PortError> {
    if core.started() {
        return Err(core.state("already started"));
    }
    let conf = core
        .conf
        .clone()
        .ok_or_else(|| core.state("start before configure: configure the queues first"))?;
    if debug_skip_map < 2 {
        for p in &conf.pools {
            verify_mapped(&core.name, core.mapper.as_ref(), p.mem(), p.name())?;
        }
    } else {
        log::warn!("vfio {bdf}: debug_skip_map=2: NOT checking the pool is mapped");
    }
    Ok(conf)
}

/// `r`, after running `teardown` (logging its error) when `r` failed.
pub(super) fn or_teardown<T>(
    bdf: &str,
    r: Result<T, PortError>,
    teardown: impl FnOnce() -> Result<(), PortError>,
) -> Result<T, PortError> {
    if r.is_err() {
        if let Err(t) = teardown() {
            log::error!("vfio {bdf}: {t}");
        }
    }
    r
}

/// The xstats every vfio port shows: its RX error counter (`rx_name`), TX
/// segments refused, TX descriptors unsent at stop, its DMA mappings and
/// the rings' IOVA while started.
pub(super) fn port_xstats(
    rx: (&str, u64),
    tx_bad_segs: u64,
    tx_unsent_at_stop: u64,
    real: &dyn DmaMapper,
    container: &VfioContainerMapper,
    rings: Option<&Rings>,
) -> Vec<(String, u64)> {
    let mut v = vec![
        (rx.0.to_string(), rx.1),
        ("tx_bad_segs".to_string(), tx_bad_segs),
        ("tx_unsent_at_stop".to_string(), tx_unsent_at_stop),
        ("dma_mappings".to_string(), real.mappings().len() as u64),
        ("iommu_mapped_bytes".to_string(), container.mapped_bytes()),
    ];
    if let Some(r) = rings {
        v.push(("rings_iova".to_string(), r.iova));
    }
    v
}

/// The rings' memory and its mapping.
#[derive(Debug)]
pub(super) struct Rings {
    pub mem: Arc<ExtMem>,
    pub iova: u64,
}

impl Rings {
    pub(super) fn range(&self) -> DmaRange {
        DmaRange::new(self.mem.va() as u64, self.iova, self.mem.len() as u64)
    }

    /// Allocate `bytes` of ring memory (4 KiB pages, zeroed) and map it at
    /// IOVAs from the container's allocator.
    ///
    /// # Errors
    /// Allocation, IOVA exhaustion or the map itself.
    pub(super) fn map(
        port: &str,
        bdf: &str,
        container: &VfioContainerMapper,
        real: &dyn DmaMapper,
        bytes: usize,
    ) -> Result<Rings, PortError> {
        let mut mem = ExtMem::alloc(&ExtMemConfig {
            len: bytes,
            page_size: PageSize::Size4K,
            backing: Backing::Anonymous,
            iova_mode: IovaMode::Va,
            allow_4k: true,
        })
        .map_err(|e| PortError::Io {
            port: port.to_string(),
            what: "allocate ring memory".into(),
            source: std::io::Error::other(e),
        })?;
        let len = mem.len() as u64;
        let iova = container.alloc_iova(len, 4096).map_err(dma_err(port))?;
        let mapped = mem
            .assign_iovas(iova)
            .map_err(|e| PortError::Io {
                port: port.to_string(),
                what: "assign ring IOVAs".into(),
                source: std::io::Error::other(e),
            })
            .and_then(|()| {
                real.dma_map(mem.va() as u64, iova, len)
                    .map_err(dma_err(port))
            });
        if let Err(e) = mapped {
            let _ = container.free_iova(iova, len);
            return Err(e);
        }
        log::info!(
            "vfio {bdf}: rings va {:#x}+{len:#x} mapped at IOVA {iova:#x}",
            mem.va()
        );
        Ok(Rings {
            mem: Arc::new(mem),
            iova,
        })
    }

    /// Unmap the rings and give their IOVAs back (the device must be reset first).
    ///
    /// # Errors
    /// The unmap or the IOVA release.
    pub(super) fn unmap(
        &self,
        port: &str,
        bdf: &str,
        container: &VfioContainerMapper,
        real: &dyn DmaMapper,
    ) -> Result<(), PortError> {
        let r = self.range();
        real.dma_unmap(r.va, r.iova, r.len).map_err(dma_err(port))?;
        container.free_iova(r.iova, r.len).map_err(dma_err(port))?;
        log::info!("vfio {bdf}: rings unmapped ({r})");
        Ok(())
    }
}
