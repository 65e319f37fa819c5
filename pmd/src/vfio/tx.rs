//! The transmit half of a vfio (virtio-net) queue: one descriptor per
//! single-segment mbuf (a zeroed virtio-net header prepended), completions
//! freed to the lcore's cache. While the link is down (or the device needs
//! a reset) nothing is handed to the device: the caller keeps, and drops,
//! what it offered.

use super::port::{Home, Xstats, NET_HDR};
use super::virtqueue::Virtqueue;
use crate::netdev::LinkState;
use crate::port::{QueueToken, TxQueue};
use crate::stats::QueueCounters;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use xfwd_mempool::{MbufBatch, PoolCache};

#[derive(Debug)]
pub(super) struct VfioTx {
    pub(super) vq: Option<Virtqueue>,
    pub(super) home: Home,
    pub(super) cache: PoolCache,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) xstats: Arc<Xstats>,
    /// The port's link as its last read said (written off the fast path).
    pub(super) link: Arc<LinkState>,
    pub(super) _token: QueueToken,
}

impl TxQueue for VfioTx {
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        let Some(vq) = self.vq.as_mut() else { return 0 };
        while let Some((m, _)) = vq.pop_used() {
            self.cache.free(m);
        }
        if !self.link.is_up() {
            return 0;
        }
        let k = pkts.len().min(vq.free_count());
        let (mut sent, mut bytes, mut bad) = (0u64, 0u64, 0u64);
        let cache = &mut self.cache;
        pkts.consume_front(k, |mut m| {
            if m.nb_segs() != 1 {
                bad += 1;
                cache.free(m);
                return;
            }
            match m.prepend(NET_HDR) {
                Ok(h) => h.fill(0), // no checksum offload, no GSO (§5.1.6.2)
                Err(_) => {
                    bad += 1;
                    cache.free(m);
                    return;
                }
            }
            let (addr, len) = (m.data_iova(), m.data_len() as u32);
            match vq.add(addr, len, false, m) {
                Ok(()) => {
                    sent += 1;
                    bytes += u64::from(len) - NET_HDR as u64;
                }
                Err(m) => cache.free(m),
            }
        });
        if sent > 0 {
            vq.kick();
        }
        if bad > 0 {
            self.xstats.tx_bad_segs.fetch_add(bad, Ordering::Relaxed);
            self.counters.add_errors(bad);
        }
        self.counters.add(sent, bytes);
        k
    }
}

impl Drop for VfioTx {
    fn drop(&mut self) {
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) = self.vq.take();
    }
}
