//! The receive half of a vfio (virtio-net) queue: used buffers → mbufs
//! (the 12-byte virtio-net header in the headroom), fresh buffers posted in
//! bursts from the lcore's cache.

use super::port::{Home, Xstats, NET_HDR};
use super::virtqueue::Virtqueue;
use crate::port::{QueueToken, RxQueue};
use crate::stats::QueueCounters;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use xfwd_mempool::{MbufBatch, PoolCache, MAX_BURST};

#[derive(Debug)]
pub(super) struct VfioRx {
    pub(super) vq: Option<Virtqueue>,
    pub(super) home: Home,
    pub(super) cache: PoolCache,
    pub(super) scratch: MbufBatch,
    pub(super) headroom: u64,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) xstats: Arc<Xstats>,
    pub(super) _token: QueueToken,
}

impl VfioRx {
    /// Post fresh buffers into every free descriptor (header lands in the headroom).
    pub(super) fn refill(&mut self) -> usize {
        let Some(vq) = self.vq.as_mut() else { return 0 };
        let mut posted = 0;
        loop {
            let want = vq.free_count().min(MAX_BURST);
            if want == 0 {
                break;
            }
            if self.cache.alloc_bulk_raw(&mut self.scratch, want).is_err() {
                self.counters.add_nombuf(want as u64);
                break;
            }
            for m in self.scratch.drain() {
                let addr = m.buf_iova() + self.headroom - NET_HDR as u64;
                let len = (m.buf_len() as u64 - self.headroom) as u32 + NET_HDR as u32;
                if let Err(m) = vq.add(addr, len, true, m) {
                    drop(m);
                }
                posted += 1;
            }
        }
        if posted > 0 {
            vq.kick();
        }
        posted
    }
}

impl RxQueue for VfioRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let Some(vq) = self.vq.as_mut() else { return 0 };
        let room = out.room();
        let mut n = 0;
        let mut bytes = 0u64;
        while n < room {
            let Some((mut m, len)) = vq.pop_used() else {
                break;
            };
            let frame = (len as usize).saturating_sub(NET_HDR);
            if len as usize <= NET_HDR || m.reset_len(frame).is_err() {
                self.xstats.rx_bad_len.fetch_add(1, Ordering::Relaxed);
                self.counters.add_errors(1);
                self.cache.free(m);
                continue;
            }
            bytes += frame as u64;
            if let Err(m) = out.push(m) {
                self.cache.free(m);
                break;
            }
            n += 1;
        }
        if vq.free_count() >= 32.min(vq.size() as usize / 2).max(1) {
            self.refill();
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

impl Drop for VfioRx {
    fn drop(&mut self) {
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) = self.vq.take();
    }
}
