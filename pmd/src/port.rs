//! The port model: a control-plane [`Port`] and data-plane queue handles.
//!
//! A port is probed from devargs, configured (queues, ring sizes, a pool per
//! RX queue), DMA-maps the application's memory through its [`DmaMapper`],
//! and on start hands out RX/TX queue handles that a worker thread owns
//! (`Send`): `rx_burst(&mut self, &mut MbufBatch) -> usize` and
//! `tx_burst(&mut self, &mut MbufBatch) -> usize` (unsent packets stay with
//! the caller). `stop()` refuses while queue handles are alive and gets back
//! every mbuf the port holds.

use crate::dma::{DmaError, DmaMapper, MapInfo, MappingKind, MappingPin};
use crate::error::PortError;
use crate::stats::{PortCounters, PortStats};
use std::fmt;
use std::sync::Arc;
use xfwd_mempool::{MbufBatch, MbufPool};

/// Port id with a compact Debug (`port0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PortId(pub u16);

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// What a port can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name (`null`, `ring`, `pcap`, `af_xdp`, …).
    pub driver: &'static str,
    /// The devargs it was probed with.
    pub devargs: String,
    /// MAC address.
    pub mac: [u8; 6],
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// Most RX descriptors per queue.
    pub max_rx_desc: u16,
    /// Most TX descriptors per queue.
    pub max_tx_desc: u16,
    /// Largest useful burst.
    pub max_burst: usize,
    /// MTU.
    pub mtu: u16,
    /// Packets move without copies (the data is not copied by the driver).
    pub zero_copy: bool,
    /// How the device translates buffer addresses.
    pub mapping: MappingKind,
}

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Up.
    pub up: bool,
    /// Speed in Mb/s (0 = unknown).
    pub speed_mbps: u32,
}

/// Queue layout and memory of a port.
#[derive(Debug, Clone)]
pub struct PortConf {
    /// RX queues.
    pub rx_queues: u16,
    /// TX queues.
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Pool of each RX queue (one entry serves all queues).
    pub pools: Vec<MbufPool>,
}

impl PortConf {
    /// One queue each way, 1024 descriptors, one pool.
    pub fn simple(pool: &MbufPool) -> PortConf {
        PortConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            pools: vec![pool.clone()],
        }
    }

    /// The pool of RX queue `q`.
    pub fn pool(&self, q: usize) -> Option<&MbufPool> {
        self.pools.get(q).or(self.pools.last())
    }

    /// Check the layout against what the port can do.
    ///
    /// # Errors
    /// [`PortError::Config`] naming the setting, the value and the limit.
    pub fn check(&self, port: &str, info: &PortInfo) -> Result<(), PortError> {
        let bad = |what, value: u32, accepted: String| {
            Err(PortError::Config {
                port: port.to_string(),
                what,
                value: value.to_string(),
                accepted,
            })
        };
        if self.rx_queues == 0 || self.rx_queues > info.max_rx_queues {
            return bad(
                "rx queues",
                self.rx_queues.into(),
                format!("1..={}", info.max_rx_queues),
            );
        }
        if self.tx_queues == 0 || self.tx_queues > info.max_tx_queues {
            return bad(
                "tx queues",
                self.tx_queues.into(),
                format!("1..={}", info.max_tx_queues),
            );
        }
        if self.rx_desc == 0 || self.rx_desc > info.max_rx_desc {
            return bad(
                "rx descriptors",
                self.rx_desc.into(),
                format!("1..={}", info.max_rx_desc),
            );
        }
        if self.tx_desc == 0 || self.tx_desc > info.max_tx_desc {
            return bad(
                "tx descriptors",
                self.tx_desc.into(),
                format!("1..={}", info.max_tx_desc),
            );
        }
        if self.pools.is_empty() {
            return bad("pools", 0, "one pool per RX queue, or one for all".into());
        }
        Ok(())
    }
}

/// A receive queue, owned by one worker.
pub trait RxQueue: Send + fmt::Debug {
    /// Receive up to `out.room()` packets, appended to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize;

    /// Interrupt mode, for an idle lcore about to sleep: unmask the queue's
    /// interrupt and say what to wait on. The lcore then blocks (bounded by
    /// its idle sleep) until the fd is readable, and calls
    /// [`RxQueue::intr_disarm`] before polling again. Queues without
    /// interrupts keep this default (the lcore sleeps instead).
    #[inline]
    fn intr_arm(&mut self) -> Intr {
        Intr::Unsupported
    }

    /// Mask the interrupt again (the lcore polls); `fired`: the fd returned
    /// by [`RxQueue::intr_arm`] was readable (clear it).
    #[inline]
    fn intr_disarm(&mut self, fired: bool) {
        let _ = fired;
    }
}

/// What [`RxQueue::intr_arm`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intr {
    /// No interrupts here (or not now): sleep instead of blocking.
    Unsupported,
    /// Packets (or a connection change) are already waiting: poll, don't block.
    Pending,
    /// Armed: this fd becomes readable when packets arrive.
    Armed(std::os::fd::RawFd),
}

/// A transmit queue, owned by one worker.
pub trait TxQueue: Send + fmt::Debug {
    /// Send packets from the front of `pkts`; sent ones leave the batch, the
    /// rest stay (moved to the front). Returns how many were sent.
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize;

    /// Hand to the device anything `tx_burst` accepted but held back to
    /// batch its doorbell (AF_XDP: the `sendto` kick). The forward loop calls
    /// it once its lcore has found no work for [`TX_QUIET_NS`] (at once before
    /// an idle sleep), at least every [`TX_DRAIN_NS`] while busy (l2fwd's TX
    /// drain), and when it stops.
    /// Queues that hold nothing back keep this default.
    #[inline]
    fn flush(&mut self) {}
}

/// The longest a TX queue may hold back accepted packets while its lcore is
/// busy (l2fwd drains its TX buffers every 100 µs).
pub const TX_DRAIN_NS: u64 = 100_000;

/// Quiet time after which held-back TX is flushed. Flushing at every empty
/// poll round would kick after every few packets (a loop that keeps up with
/// a steady stream catches up with it all the time). Measured on the veth
/// forward: 0.5 µs keeps the batching a steady 2 Mpps stream allows (one
/// kick per 32 frames) and adds ~1 µs of latency at 150 kpps (5 µs added
/// ~11 µs over two hops).
pub const TX_QUIET_NS: u64 = 500;

/// The queue handles a started port hands out.
#[derive(Debug, Default)]
pub struct PortQueues {
    /// RX queues, by index.
    pub rx: Vec<Box<dyn RxQueue>>,
    /// TX queues, by index.
    pub tx: Vec<Box<dyn TxQueue>>,
}

/// The control plane of a port.
pub trait Port: Send + fmt::Debug {
    /// Capabilities and identity.
    fn info(&self) -> PortInfo;

    /// Set the queue layout and pools (stopped ports only).
    ///
    /// # Errors
    /// [`PortError::Config`], [`PortError::State`].
    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError>;

    /// Start and hand out the queue handles.
    ///
    /// # Errors
    /// [`PortError::State`] when not configured or already started, and
    /// driver errors.
    fn start(&mut self) -> Result<PortQueues, PortError>;

    /// Stop: every queue handle must have been dropped; every mbuf the port
    /// holds goes back to its pool.
    ///
    /// # Errors
    /// [`PortError::State`] while queue handles are alive.
    fn stop(&mut self) -> Result<(), PortError>;

    /// The state every driver keeps in a [`PortCore`] (configuration,
    /// counters, mapper); the defaults of [`Port::stats`] and
    /// [`Port::mapper`] read it.
    fn core(&self) -> &PortCore;

    /// Link state. Default: up, speed unknown (a software port's link).
    fn link(&self) -> Link {
        Link {
            up: true,
            speed_mbps: 0,
        }
    }

    /// Counters. Default: the sums of the core's queue counters.
    fn stats(&self) -> PortStats {
        self.core().counters.read()
    }

    /// Named driver counters.
    fn xstats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// `Some(done)` for a port whose RX is a finite source (a pcap file
    /// replayed a finite number of times): `done` once every frame was
    /// delivered. `None` (the default): RX may deliver forever.
    fn rx_finished(&self) -> Option<bool> {
        None
    }

    /// The device's DMA mapper. Default: the core's.
    fn mapper(&self) -> Arc<dyn DmaMapper> {
        self.core().mapper.clone()
    }

    /// `rte_dev_dma_map`: make `va..va+len` reachable at `iova`.
    ///
    /// # Errors
    /// The mapper's refusal, with the port named.
    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, PortError> {
        let name = self.info().devargs;
        self.mapper()
            .dma_map(va, iova, len)
            .map_err(|source| PortError::Dma { port: name, source })
    }

    /// `rte_dev_dma_unmap`: refused while the port is started.
    ///
    /// # Errors
    /// The mapper's refusal ([`DmaError::Busy`] while started).
    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), PortError> {
        let name = self.info().devargs;
        self.mapper()
            .dma_unmap(va, iova, len)
            .map_err(|source: DmaError| PortError::Dma { port: name, source })
    }
}

/// State every driver shares: configuration, started flag, counters, the
/// liveness token of handed-out queues and the mapping pins of a started port.
#[derive(Debug)]
pub struct PortCore {
    /// Port name (devargs).
    pub name: String,
    /// The configuration, once configured.
    pub conf: Option<PortConf>,
    /// Counters (recreated at a configure that changes the queue counts).
    pub counters: PortCounters,
    /// Mapper.
    pub mapper: Arc<dyn DmaMapper>,
    started: bool,
    token: Arc<()>,
    pins: Vec<MappingPin>,
}

/// Held by each queue handle so the port knows when all are gone.
#[derive(Debug, Clone)]
pub struct QueueToken(#[allow(dead_code)] Arc<()>);

impl PortCore {
    /// A stopped, unconfigured port.
    pub fn new(name: &str, mapper: Arc<dyn DmaMapper>) -> PortCore {
        PortCore {
            name: name.to_string(),
            conf: None,
            counters: PortCounters::default(),
            mapper,
            started: false,
            token: Arc::new(()),
            pins: Vec::new(),
        }
    }

    /// True between start and stop.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Validate and store a configuration.
    ///
    /// # Errors
    /// As [`PortConf::check`], or the port is started.
    pub fn configure(&mut self, conf: &PortConf, info: &PortInfo) -> Result<(), PortError> {
        if self.started {
            return Err(self.state("cannot configure a started port; stop it first"));
        }
        conf.check(&self.name, info)?;
        // The same queue layout again (a stopped port's descriptor counts
        // changed): its counters go on, so its statistics add up across it.
        let same = self.counters.rx.len() == conf.rx_queues as usize
            && self.counters.tx.len() == conf.tx_queues as usize;
        if !same {
            self.counters = PortCounters::new(conf.rx_queues as usize, conf.tx_queues as usize);
        }
        self.conf = Some(conf.clone());
        Ok(())
    }

    /// Mark started (pins every mapping) and return the configuration.
    ///
    /// # Errors
    /// Not configured, or already started.
    pub fn start(&mut self) -> Result<PortConf, PortError> {
        if self.started {
            return Err(self.state("already started"));
        }
        let conf = self
            .conf
            .clone()
            .ok_or_else(|| self.state("start before configure: configure the queues first"))?;
        self.pins = self.mapper.pin_all();
        self.started = true;
        Ok(conf)
    }

    /// A token for one queue handle.
    pub fn token(&self) -> QueueToken {
        QueueToken(self.token.clone())
    }

    /// Mark stopped, refusing while queue handles are alive; unpins mappings.
    ///
    /// # Errors
    /// [`PortError::State`] naming how many handles are still held.
    pub fn stop(&mut self) -> Result<(), PortError> {
        if !self.started {
            return Ok(());
        }
        let live = Arc::strong_count(&self.token) - 1;
        if live > 0 {
            return Err(self.state(&format!(
                "{live} queue handles are still held by workers: stop the workers and drop their queues first"
            )));
        }
        self.pins.clear();
        self.started = false;
        Ok(())
    }

    /// A state error for this port.
    pub fn state(&self, why: &str) -> PortError {
        PortError::State {
            port: self.name.clone(),
            why: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip() {
        let m = parse_mac("02:00:00:00:00:1f").unwrap();
        assert_eq!(mac_string(&m), "02:00:00:00:00:1f");
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
    }
}
