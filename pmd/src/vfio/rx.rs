//! The receive half of a vfio (virtio-net) queue: used buffers → mbufs
//! (the 12-byte virtio-net header in the headroom), fresh buffers posted in
//! bursts from the lcore's cache.

use super::common::{self, RxPost};
use super::port::{Home, Xstats, NET_HDR};
use super::virtqueue::Virtqueue;
use crate::port::{QueueToken, RxQueue};
use crate::stats::QueueCounters;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache};

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
        let mut ring = Posting {
            vq,
            headroom: self.headroom,
        };
        common::refill(
            &mut ring,
            &mut self.cache,
            &mut self.scratch,
            &self.counters,
        )
    }
}

/// The RX virtqueue as [`common::refill`] fills it: each buffer is posted
/// from 12 bytes before the frame's headroom end, for the virtio-net header.
struct Posting<'a> {
    vq: &'a mut Virtqueue,
    headroom: u64,
}

impl RxPost for Posting<'_> {
    fn free_slots(&self) -> usize {
        self.vq.free_count()
    }

    fn post(&mut self, m: Mbuf) {
        let addr = m.buf_iova() + self.headroom - NET_HDR as u64;
        let len = (m.buf_len() as u64 - self.headroom) as u32 + NET_HDR as u32;
        if let Err(m) = self.vq.add(addr, len, true, m) {
            drop(m);
        }
    }

    fn kick(&mut self) {
        self.vq.kick();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{MappingKind, SoftMapper};
    use crate::port::PortCore;
    use crate::vfio::virtqueue::Layout;
    use std::sync::Mutex;
    use xfwd_mempool::{ExtMem, MbufPool, PageSize, PoolConfig, MAX_BURST};

    fn rx(n: u32, size: u16) -> (VfioRx, MbufPool, crate::vfio::mmio::Mmio, Layout) {
        let pool = MbufPool::on_heap(&PoolConfig {
            name: format!("vfio-rx{n}"),
            n,
            cache_size: 0,
            ..Default::default()
        })
        .unwrap();
        let layout = Layout::new(size).unwrap();
        let mem = Arc::new(ExtMem::heap(layout.bytes, PageSize::Size4K).unwrap());
        let ring = crate::vfio::mmio::over(mem);
        let core = PortCore::new("vfio-test", Arc::new(SoftMapper::new(MappingKind::None)));
        let q = VfioRx {
            vq: Some(Virtqueue::new(ring.clone(), 0x1_0000_0000, layout)),
            home: Arc::new(Mutex::new(None)),
            cache: pool.cache(),
            scratch: MbufBatch::new(MAX_BURST),
            headroom: u64::from(pool.config().headroom),
            counters: Arc::default(),
            xstats: Arc::default(),
            _token: core.token(),
        };
        (q, pool, ring, layout)
    }

    #[test]
    fn refill_posts_device_writable_buffers_from_the_header_room_or_counts_nombuf() {
        let (mut q, pool, ring, layout) = rx(64, 8);
        assert_eq!(q.refill(), 8);
        assert_eq!(pool.available(), 64 - 8);
        let c = pool.config();
        let want = u32::from(c.data_room) + NET_HDR as u32;
        for d in 0..8 {
            let at = layout.desc + 16 * d;
            assert_eq!(
                ring.read32(at + 8),
                want,
                "descriptor {d}: data room + header"
            );
            assert_eq!(ring.read16(at + 12) & 2, 2, "device-writable");
        }
        assert_eq!(ring.read16(layout.avail + 2), 8, "published");
        assert_eq!(q.refill(), 0);
        let home = q.home.clone();
        drop(q);
        drop(home.lock().unwrap().take().unwrap().take_all());
        pool.leak_check().unwrap();

        // Fewer mbufs than a refill burst wants: counted, nothing posted.
        let (mut q, pool, _, _) = rx(4, 8);
        assert_eq!(q.refill(), 0);
        assert_eq!(q.counters.read().nombuf, 8);
        drop(q);
        pool.leak_check().unwrap();
    }
}
