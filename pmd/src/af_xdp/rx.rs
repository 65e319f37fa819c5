//! The receive half of an `af_xdp` queue: RX ring → mbufs, the fill ring
//! topped up from the lcore's pool cache. Once the device is gone the half
//! closes (its buffers go back with the socket) and RX returns 0.

use super::port::{bump, Reclaim, Xstats};
use super::umem::{desc_base, desc_offset};
use super::xsk::XskRx;
use crate::netdev::{LinkCondition, LinkState};
use crate::port::{QueueToken, RxQueue};
use crate::stats::QueueCounters;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use xfwd_mempool::{InFlight, MbufBatch, MbufPool, MBUF_HEADER_SIZE};

/// Receive half of one queue.
pub(super) struct XdpRx {
    pub(super) xsk: Option<XskRx>,
    pub(super) pool: MbufPool,
    pub(super) base: usize,
    pub(super) posted: InFlight,
    pub(super) want_fill: usize,
    pub(super) scratch: MbufBatch,
    pub(super) port: u16,
    pub(super) polls: u32,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) xstats: Arc<Xstats>,
    pub(super) reclaim: Arc<Reclaim>,
    pub(super) link: Arc<LinkState>,
    pub(super) _token: QueueToken,
}

impl fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XdpRx(in kernel {})", self.posted.len())
    }
}

impl XdpRx {
    /// Top the fill ring up to `want_fill` buffers from the pool.
    #[inline]
    fn refill(&mut self) {
        if self.posted.len() >= self.want_fill {
            return;
        }
        // One Arc clone per refilling burst (not per packet) to lend the pool
        // to the lcore-cache closure while self is borrowed mutably.
        let pool = self.pool.clone();
        pool.with_lcore_cache(|c| self.refill_from(c));
    }

    /// Top the fill ring up from `cache` (the lcore's, or a temporary one at
    /// start so the control thread keeps no cache of the pool).
    #[inline]
    pub(super) fn refill_from(&mut self, cache: &mut xfwd_mempool::PoolCache) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        let want = self
            .want_fill
            .saturating_sub(self.posted.len())
            .min(self.scratch.limit());
        if want == 0 {
            return;
        }
        let n = want.min(xsk.fill.free());
        if n == 0 || cache.alloc_bulk_raw(&mut self.scratch, n).is_err() {
            self.counters.add_nombuf(n as u64);
            return;
        }
        let (base, posted, scratch) = (self.base, &mut self.posted, &mut self.scratch);
        let mut drained = scratch.drain();
        let done = xsk.fill.produce_with(n, |_| {
            let m = drained.next().expect("n allocated");
            let hdr = posted.park(m);
            (hdr + MBUF_HEADER_SIZE - base) as u64
        });
        debug_assert_eq!(done, n);
        drop(drained);
        bump(&self.xstats.rx_fill_posted, n as u64);
        if xsk.fill.needs_wakeup() {
            if let Err(e) = xsk.wakeup() {
                self.wakeup_refused(e.errno());
            }
        }
    }

    /// Copy the socket's `XDP_STATISTICS` drop counters into the xstats
    /// (every 4096 polls, and at close).
    #[cold]
    fn read_kernel_stats(&mut self) {
        let Some(Ok(s)) = self.xsk.as_ref().map(|x| x.stats()) else {
            return;
        };
        let x = &self.xstats;
        x.kernel_rx_dropped.store(s.rx_dropped, Ordering::Relaxed);
        x.kernel_rx_ring_full
            .store(s.rx_ring_full, Ordering::Relaxed);
        x.kernel_fill_empty
            .store(s.rx_fill_ring_empty_descs, Ordering::Relaxed);
    }

    /// A wakeup the kernel refused: ENXIO means the socket was unbound
    /// because its device went away.
    #[cold]
    fn wakeup_refused(&mut self, errno: Option<i32>) {
        if matches!(errno, Some(libc::ENXIO | libc::ENODEV)) {
            self.link.set_lost();
            self.close();
        }
    }

    /// Drop the rings (the socket closes with the other half) and hand the
    /// buffers the kernel held to the reclaim.
    fn close(&mut self) {
        // The kernel's drop counters of the last polls since the periodic
        // read would be lost with the socket: read them once more first.
        self.read_kernel_stats();
        if self.xsk.take().is_some() {
            self.reclaim.close(&mut self.posted);
        }
    }
}

impl RxQueue for XdpRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        if self.link.get() == LinkCondition::Lost {
            self.close();
            return 0;
        }
        let Some(xsk) = self.xsk.as_mut() else {
            return 0;
        };
        let room = out.room();
        let (base, posted, port, pool) = (self.base, &mut self.posted, self.port, &self.pool);
        let mut bytes = 0u64;
        let mut bad = 0u64;
        let n = xsk.rx.consume_with(room, |_, d| {
            let hdr = base + desc_base(d.addr) as usize - MBUF_HEADER_SIZE;
            match posted.take(pool, hdr) {
                Some(mut m) => {
                    if m.set_data_range(desc_offset(d.addr) as usize, d.len as usize)
                        .is_ok()
                    {
                        m.set_port(port);
                        // The kernel wrote this frame from another core: start
                        // pulling it in now, for the whole burst at once, so the
                        // misses overlap instead of stalling whoever reads it
                        // next (the forward loop, or the TX copy in sendto).
                        m.prefetch_data();
                        bytes += d.len as u64;
                        let _ = out.push(m);
                    } else {
                        bad += 1;
                    }
                }
                None => bad += 1,
            }
        });
        self.counters.add((n as u64) - bad, bytes);
        self.counters.add_errors(bad);
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(4096) {
            self.read_kernel_stats();
        }
        self.refill();
        n - bad as usize
    }
}

impl Drop for XdpRx {
    fn drop(&mut self) {
        // Rings first (the socket closes when the TX half is gone too), then
        // park the buffers the kernel may still hold until it is closed.
        self.close();
    }
}
