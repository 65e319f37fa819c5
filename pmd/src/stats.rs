//! Port and queue statistics.
//!
//! Each queue owns its counters; they are atomics written by exactly one
//! worker with a plain relaxed load+store once per burst (no read-modify-write,
//! no lock) and read by the main thread for stats and telemetry.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one queue (single writer: the worker owning the queue).
#[derive(Debug, Default)]
pub struct QueueCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    missed: AtomicU64,
    nombuf: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

impl QueueCounters {
    /// Count a burst of `pkts` packets and `bytes` bytes.
    #[inline]
    pub fn add(&self, pkts: u64, bytes: u64) {
        bump(&self.packets, pkts);
        bump(&self.bytes, bytes);
    }

    /// Count errors (RX: bad frames; TX: frames the device refused).
    #[inline]
    pub fn add_errors(&self, n: u64) {
        bump(&self.errors, n);
    }

    /// Count frames the device dropped for lack of room (RX `imissed`).
    #[inline]
    pub fn add_missed(&self, n: u64) {
        bump(&self.missed, n);
    }

    /// Count failed mbuf allocations (RX `rx_nombuf`).
    #[inline]
    pub fn add_nombuf(&self, n: u64) {
        bump(&self.nombuf, n);
    }

    /// Snapshot.
    pub fn read(&self) -> QueueStats {
        QueueStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            nombuf: self.nombuf.load(Ordering::Relaxed),
        }
    }
}

/// A queue's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Errors.
    pub errors: u64,
    /// Dropped for lack of room (RX).
    pub missed: u64,
    /// Allocation failures (RX).
    pub nombuf: u64,
}

/// A port's counters (DPDK `rte_eth_stats`), summed over queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Received packets.
    pub ipackets: u64,
    /// Sent packets.
    pub opackets: u64,
    /// Received bytes.
    pub ibytes: u64,
    /// Sent bytes.
    pub obytes: u64,
    /// RX dropped by the device for lack of room.
    pub imissed: u64,
    /// RX errors.
    pub ierrors: u64,
    /// TX errors.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
    /// Per RX queue.
    pub rxq: Vec<QueueStats>,
    /// Per TX queue.
    pub txq: Vec<QueueStats>,
}

/// The counters of all queues of a port.
#[derive(Debug, Default, Clone)]
pub struct PortCounters {
    /// RX queues.
    pub rx: Vec<std::sync::Arc<QueueCounters>>,
    /// TX queues.
    pub tx: Vec<std::sync::Arc<QueueCounters>>,
}

impl PortCounters {
    /// Fresh counters for `rxq` RX and `txq` TX queues.
    pub fn new(rxq: usize, txq: usize) -> PortCounters {
        PortCounters {
            rx: (0..rxq).map(|_| Default::default()).collect(),
            tx: (0..txq).map(|_| Default::default()).collect(),
        }
    }

    /// Sum into [`PortStats`].
    pub fn read(&self) -> PortStats {
        let rxq: Vec<QueueStats> = self.rx.iter().map(|c| c.read()).collect();
        let txq: Vec<QueueStats> = self.tx.iter().map(|c| c.read()).collect();
        PortStats {
            ipackets: rxq.iter().map(|q| q.packets).sum(),
            ibytes: rxq.iter().map(|q| q.bytes).sum(),
            imissed: rxq.iter().map(|q| q.missed).sum(),
            ierrors: rxq.iter().map(|q| q.errors).sum(),
            rx_nombuf: rxq.iter().map(|q| q.nombuf).sum(),
            opackets: txq.iter().map(|q| q.packets).sum(),
            obytes: txq.iter().map(|q| q.bytes).sum(),
            oerrors: txq.iter().map(|q| q.errors).sum(),
            rxq,
            txq,
        }
    }
}
