//! Ports, queues, drivers and per-device DMA mapping of xfwd.
//!
//! [`probe`] turns DPDK-style devargs into a [`Port`]; a started port hands
//! out [`RxQueue`]/[`TxQueue`] handles that worker threads own. Each port
//! has a [`dma::DmaMapper`] (`rte_dev_dma_map`): an mlx5-style MR table,
//! the VFIO container, an AF_XDP UMEM, or nothing for software ports.
#![deny(unsafe_code)]
// `unsafe` lives in `sys` (the system layer) and in the few modules that
// must, each opened below with its reason (docs/architecture.md); every
// other module forbids it, so no nested `allow` can reopen it.

#[forbid(unsafe_code)]
pub mod af_packet;
// umem.rs declares the raw-area constructor; the rest of af_xdp forbids unsafe.
pub mod af_xdp;
#[forbid(unsafe_code)]
pub mod devargs;
// dma/vfio/kernel.rs: the VFIO type1 ioctls.
pub mod dma;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod fault;
#[forbid(unsafe_code)]
pub mod memif;
#[forbid(unsafe_code)]
pub mod netdev;
#[forbid(unsafe_code)]
pub mod null;
#[forbid(unsafe_code)]
pub mod pcap;
#[forbid(unsafe_code)]
pub mod port;
#[forbid(unsafe_code)]
pub mod ring;
#[forbid(unsafe_code)]
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
#[forbid(unsafe_code)]
pub mod vfio;

pub use devargs::Devargs;
pub use error::PortError;
pub use port::{
    Intr, Link, Port, PortConf, PortId, PortInfo, PortQueues, RxQueue, TxQueue, TX_DRAIN_NS,
    TX_QUIET_NS,
};
pub use stats::{PortStats, QueueStats};

/// Drivers [`probe`] knows.
pub const DRIVERS: &[&str] = &[
    "null",
    "ring",
    "pcap",
    "fault",
    "af_xdp",
    "af_packet",
    "vfio",
    "memif",
];

/// Create a port from devargs (`null:`, `ring:NAME`, `pcap:rx=..,tx=..`, …).
///
/// # Errors
/// [`PortError::Devargs`] / [`PortError::UnknownDriver`] and the driver's
/// own probe errors.
pub fn probe(devargs: &str) -> Result<Box<dyn Port>, PortError> {
    // `fault:...,inner=<devargs>` nests a whole devargs string (keys may
    // repeat), so it is parsed before the generic parser sees it.
    if devargs.trim_start().starts_with("fault:") {
        return Ok(Box::new(fault::FaultInjector::probe(devargs)?));
    }
    let d = Devargs::parse(devargs)?;
    Ok(match d.driver.as_str() {
        "null" | "net_null" => Box::new(null::NullPort::probe(&d)?),
        "ring" | "net_ring" => Box::new(ring::RingPort::probe(&d)?),
        "pcap" | "net_pcap" => Box::new(pcap::PcapPort::probe(&d)?),
        "af_xdp" | "net_af_xdp" => Box::new(af_xdp::AfXdpPort::probe(&d)?),
        "vfio" | "net_virtio" => vfio::probe(&d)?,
        "af_packet" | "net_af_packet" => Box::new(af_packet::AfPacketPort::probe(&d)?),
        "memif" | "net_memif" => Box::new(memif::MemifPort::probe(&d)?),
        other => {
            return Err(PortError::UnknownDriver {
                driver: other.to_string(),
                devargs: devargs.to_string(),
                known: DRIVERS.join(", "),
            })
        }
    })
}
