//! The `vfio:` port: userspace drivers over vfio-pci, polling mode, for
//! virtio-net (modern, 1af4:1041; this page) and the Intel 82576 ([`igb`]),
//! chosen by the device's PCI ids ([`probe`]).
//!
//! ```text
//! vfio:0000:00:03.0[,debug_skip_map=1|2][,debug_bad_desc=1]
//! ```
//!
//! The device is opened through the process's VFIO container
//! ([`shared_container`], one per process, shared by all vfio ports), its
//! BARs are mmapped, bus mastering enabled, and the virtio 1.x transport is
//! driven through the PCI capabilities ([`virtio`]). Feature negotiation
//! requires VERSION_1 and ACCESS_PLATFORM (so the device's DMA goes through
//! the IOMMU); MAC and STATUS are used when offered.
//!
//! # Memory
//! The packet memory must be registered with IOVAs from the container
//! ([`prepare_memory`], before `Registry::register_mem`), then `dma_map`ped
//! on the port chunk by chunk (see [`crate::dma`]). The virtqueue rings live
//! in a small external memory of the port's own, mapped at start at IOVAs
//! from the same allocator and unmapped at stop after the device was reset.
//! `start()` verifies that every page of every RX pool is mapped at the IOVA
//! its mbufs carry and refuses otherwise: a device is never given an
//! address that is not mapped.
//!
//! `debug_skip_map=1` (debug builds only) makes `dma_map` pretend success
//! without mapping, to prove `start()` refuses; `debug_skip_map=2` also skips
//! that check, so the device really DMAs to an unmapped IOVA and the IOMMU
//! blocks it (the guest kernel logs a DMAR fault, which the VM test asserts).
//!
//! `debug_bad_desc=1` (virtio-net) posts, at start, one TX chain the device
//! must refuse (`VIRTQ_DESC_F_NEXT` with `next` out of range, no mbuf behind
//! it) and kicks: QEMU then sets DEVICE_NEEDS_RESET, which the port reports
//! as a lost link. Both switches need `XFWD_DEBUG_DEVARGS=1`.

mod args;
mod common;
mod device;
pub mod igb;
pub mod mmio;
pub mod pci;
mod port;
mod rx;
mod tx;
pub mod virtio;
pub mod virtqueue;

pub use port::VfioPort;

use crate::dma::{DmaError, VfioContainerMapper};
use std::sync::{Arc, Mutex, PoisonError};
use xfwd_mempool::ExtMem;

/// Errors talking to the device itself.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Config space access failed.
    #[error("PCI config space: {0}")]
    Config(String),
    /// The device describes itself inconsistently.
    #[error("{0}")]
    Malformed(String),
    /// Required virtio features are missing, or the device refused ours.
    #[error("virtio features {offered:#x}: missing {missing}")]
    Features {
        /// What the device offers.
        offered: u64,
        /// What is missing (with the QEMU/host option that provides it).
        missing: String,
    },
    /// The device did not answer in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The device is not what this driver drives, or not bound to vfio-pci.
    #[error("{0}")]
    Unsupported(String),
    /// The device reported an error (DEVICE_NEEDS_RESET, FAILED).
    #[error("device error: {0}")]
    Failed(String),
}

/// Probe a `vfio:` device with the driver its PCI ids call for: virtio-net
/// ([`VfioPort`]) or the Intel 82576 ([`igb::IgbPort`]).
///
/// # Errors
/// As the drivers' probes; a device neither drives is refused naming its ids.
pub fn probe(
    d: &crate::devargs::Devargs,
) -> Result<Box<dyn crate::port::Port>, crate::error::PortError> {
    let keys: Vec<&str> = igb::EXTRA_KEYS
        .iter()
        .chain(args::VIRTIO_KEYS)
        .copied()
        .collect();
    let a = args::Args::parse_with(d, &keys)?;
    let (_, ids) = device::identify(&d.raw, &a.bdf)?;
    if igb::is_igb(&ids) {
        return Ok(Box::new(igb::IgbPort::probe(d)?));
    }
    if ids.0 == "0x1af4" {
        return Ok(Box::new(VfioPort::probe(d)?));
    }
    Err(device::dev_err(
        &d.raw,
        "probe",
        DeviceError::Unsupported(format!(
            "{} is {}:{}; the vfio: drivers drive virtio-net (1af4:1041) and the Intel 82576 \
             (8086:10c9 and its variants); use the device's kernel driver with af_xdp: or \
             af_packet: instead",
            a.bdf, ids.0, ids.1
        )),
    ))
}

static CONTAINER: Mutex<Option<Arc<VfioContainerMapper>>> = Mutex::new(None);

/// The process's VFIO container, opened on first use (`/dev/vfio/vfio`).
///
/// # Errors
/// [`DmaError::Vfio`] when VFIO is not available.
pub fn shared_container() -> Result<Arc<VfioContainerMapper>, DmaError> {
    let mut c = CONTAINER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = c.as_ref() {
        return Ok(Arc::clone(c));
    }
    let opened = VfioContainerMapper::open()?;
    *c = Some(Arc::clone(&opened));
    Ok(opened)
}

/// The container when a vfio port opened one, else `None`.
pub fn opened_container() -> Option<Arc<VfioContainerMapper>> {
    CONTAINER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Give `mem` IOVAs from the VFIO container's allocator when a vfio port
/// was probed (call after probing the ports, between `ExtMem::alloc` and
/// `Registry::register_mem`); returns the IOVA base, or `None` when no vfio
/// port exists (the memory keeps its VA/PA IOVAs).
///
/// # Errors
/// [`DmaError::IovaExhausted`] / [`DmaError::InvalidRange`] from the
/// allocator, [`DmaError::InvalidRange`] when the base does not suit the page size.
pub fn prepare_memory(mem: &mut ExtMem) -> Result<Option<u64>, DmaError> {
    let Some(c) = opened_container() else {
        return Ok(None);
    };
    let page = mem.page_size().bytes() as u64;
    let len = mem.len() as u64;
    let base = c.alloc_iova(len, page)?;
    if let Err(e) = mem.assign_iovas(base) {
        let _ = c.free_iova(base, len);
        return Err(DmaError::InvalidRange {
            range: crate::dma::DmaRange::new(mem.va() as u64, base, len),
            reason: e.to_string(),
        });
    }
    log::info!(
        "vfio: memory va {:#x}+{len:#x} gets IOVAs {base:#x}.. from the container allocator",
        mem.va()
    );
    Ok(Some(base))
}

/// Return the IOVAs [`prepare_memory`] gave (after every port unmapped them).
///
/// # Errors
/// As [`VfioContainerMapper::free_iova`].
pub fn release_memory(base: u64, len: u64) -> Result<(), DmaError> {
    match opened_container() {
        Some(c) => c.free_iova(base, len),
        None => Ok(()),
    }
}
