//! What every `vfio:` driver shares: opening the device through the
//! process's container, the negative-test mapper, the checks and the order
//! of `start()`/`stop()` around the driver's own bring-up and teardown
//! ([`Lifecycle`]), the RX refill loop over the driver's ring ([`RxPost`]),
//! and the rings' own small external memory mapped at IOVAs from the
//! container.

use super::device::{dev_err, DevConfig};
use super::pci;
use super::{shared_container, DeviceError};
use crate::dma::{
    DmaError, DmaMapper, DmaRange, MapInfo, MapOrigin, MappingKind, MappingPin, VfioContainerMapper,
};
use crate::error::PortError;
use crate::port::{PortConf, PortCore, PortQueues};
use crate::stats::QueueCounters;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use vfio_ioctls::VfioDevice;
use xfwd_mempool::{
    AllocError, Backing, ExtMem, ExtMemConfig, IovaMode, Mbuf, MbufBatch, MbufPool, PageSize,
    PoolCache, MAX_BURST,
};

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
fn conf_to_start(core: &PortCore, bdf: &str, debug_skip_map: u8) -> Result<PortConf, PortError> {
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

/// The driver's own halves of a vfio port's lifecycle; [`start`] and
/// [`stop`] put around them what every vfio port does.
pub(super) trait Lifecycle {
    /// The port's core, the device's PCI address and `debug_skip_map`.
    fn parts(&mut self) -> (&mut PortCore, &str, u8);
    /// Map the rings, program the device and post the RX buffers.
    ///
    /// # Errors
    /// Whatever failed; [`start`] tears down what was brought up.
    fn bring_up(&mut self, conf: &PortConf) -> Result<PortQueues, PortError>;
    /// Reset the device (no DMA after it), take every mbuf back, unmap the
    /// rings; nothing to do when not brought up.
    ///
    /// # Errors
    /// The bus-master fallback or the ring unmap failed.
    fn teardown(&mut self) -> Result<(), PortError>;
}

/// `Port::start` of a vfio port: the start checks, the driver's bring-up
/// (torn down again when it fails), then the core's start, which pins every
/// mapping (pool chunks and rings): unmap is refused until stop.
///
/// # Errors
/// The checks, the bring-up or the core's start.
pub(super) fn start(port: &mut impl Lifecycle) -> Result<PortQueues, PortError> {
    let (core, bdf, debug_skip_map) = port.parts();
    let conf = conf_to_start(core, bdf, debug_skip_map)?;
    let bdf = bdf.to_string();
    let r = port.bring_up(&conf);
    if r.is_err() {
        if let Err(t) = port.teardown() {
            log::error!("vfio {bdf}: {t}");
        }
    }
    let q = r?;
    port.parts().0.start()?;
    Ok(q)
}

/// `Port::stop` of a vfio port: the core's stop (refused while a queue
/// handle is still held), then the driver's teardown.
///
/// # Errors
/// Either step.
pub(super) fn stop(port: &mut impl Lifecycle) -> Result<(), PortError> {
    port.parts().0.stop()?;
    port.teardown()
}

/// The rings parked at `homes` (where a queue handle parks its ring when
/// dropped), in order; `None` where a handle is still
/// held by a worker (it keeps its ring; its mbufs return when it drops).
pub(super) fn take_parked<T>(homes: &[Arc<Mutex<Option<T>>>]) -> Vec<Option<T>> {
    homes
        .iter()
        .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).take())
        .collect()
}

/// Let the device finish the frames already handed to TX ring `tx` (until
/// `deadline`), so TX counts are true; returns how many are still in flight.
pub(super) fn finish_tx<T>(
    tx: &mut T,
    deadline: Instant,
    in_flight: impl Fn(&T) -> u64,
    reclaim: impl Fn(&mut T),
) -> u64 {
    while in_flight(tx) > 0 && Instant::now() < deadline {
        reclaim(tx);
        std::thread::sleep(Duration::from_millis(1));
    }
    in_flight(tx)
}

/// How long teardown waits for the device to send what it was given.
pub(super) const TX_FINISH: Duration = Duration::from_millis(500);

/// Teardown's step after the device reset `reset`: when the reset failed the
/// device may still DMA, so bus mastering is cleared before anything is
/// unmapped.
///
/// # Errors
/// Clearing bus master failed too.
pub(super) fn stop_dma(
    port: &str,
    bdf: &str,
    dev: &VfioDevice,
    reset: Result<(), impl std::fmt::Display>,
) -> Result<(), PortError> {
    if let Err(e) = reset {
        log::error!("vfio {bdf}: {e}; clearing bus master");
        pci::set_command(&DevConfig(dev), 0, pci::CMD_BUS_MASTER)
            .map_err(|e| dev_err(port, "disable bus master", e))?;
    }
    Ok(())
}

/// The teardown a port's `Drop` runs (its error logged: drop cannot fail).
pub(super) fn teardown_at_drop(port: &mut impl Lifecycle) {
    if let Err(e) = port.teardown() {
        let (_, bdf, _) = port.parts();
        log::error!("vfio {bdf}: teardown at drop: {e}");
    }
}

/// The refusal when not one RX buffer could be posted at start.
pub(super) fn no_rx_buffers(port: String, conf: &PortConf, pool: &MbufPool) -> PortError {
    PortError::NoMbufs {
        port,
        source: AllocError {
            wanted: conf.rx_desc as usize,
            available: pool.available(),
        },
    }
}

/// An RX ring that takes fresh buffers: what [`refill`] needs of it.
pub(super) trait RxPost {
    /// Descriptors free for a buffer now.
    fn free_slots(&self) -> usize;
    /// Hand `m` to the device in the next free descriptor.
    fn post(&mut self, m: Mbuf);
    /// Publish the posted buffers to the device (its tail register or
    /// notification).
    fn kick(&mut self);
}

/// Post fresh buffers from `cache` into every free descriptor of `ring`,
/// in bulk allocations of up to a burst through `scratch` (a failed one is
/// counted as `nombuf` and ends the refill); one kick at the end. Returns
/// how many were posted.
#[inline]
pub(super) fn refill(
    ring: &mut impl RxPost,
    cache: &mut PoolCache,
    scratch: &mut MbufBatch,
    counters: &QueueCounters,
) -> usize {
    let mut posted = 0;
    loop {
        let want = ring.free_slots().min(MAX_BURST);
        if want == 0 {
            break;
        }
        if cache.alloc_bulk_raw(scratch, want).is_err() {
            counters.add_nombuf(want as u64);
            break;
        }
        for m in scratch.drain() {
            ring.post(m);
            posted += 1;
        }
    }
    if posted > 0 {
        ring.kick();
    }
    posted
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
