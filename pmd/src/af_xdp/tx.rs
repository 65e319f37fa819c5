//! The transmit half of an `af_xdp` queue: mbufs → TX ring (zero copy for
//! UMEM mbufs, a counted copy for others), completions freed in bulk, kicks
//! batched. A link that is down takes nothing (no kick either); a device
//! that is gone closes this half and returns its buffers.

use super::port::{bump, Reclaim, Xstats};
use super::umem::{desc_base, desc_encode};
use super::xsk::XskTx;
use super::XdpDesc;
use crate::netdev::{LinkCondition, LinkState};
use crate::port::{QueueToken, TxQueue};
use crate::stats::QueueCounters;
use std::fmt;
use std::sync::Arc;
use xfwd_mempool::{InFlight, Mbuf, MbufBatch, MbufPool, MBUF_HEADER_SIZE};

/// Transmit half of one queue.
pub(super) struct XdpTx {
    pub(super) xsk: Option<XskTx>,
    pub(super) pool: MbufPool,
    pub(super) base: usize,
    pub(super) len: usize,
    pub(super) posted: InFlight,
    pub(super) descs: Box<[XdpDesc]>,
    pub(super) comp: Box<[u64]>,
    /// Kick once this many descriptors wait in the TX ring.
    pub(super) kick_batch: usize,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) xstats: Arc<Xstats>,
    pub(super) reclaim: Arc<Reclaim>,
    pub(super) link: Arc<LinkState>,
    pub(super) _token: QueueToken,
}

impl fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XdpTx(in kernel {})", self.posted.len())
    }
}

impl XdpTx {
    /// Free what the kernel finished sending.
    #[inline]
    fn complete(&mut self) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        loop {
            let n = xsk.comp.consume(&mut self.comp);
            if n == 0 {
                return;
            }
            let (base, comp, posted, pool) = (self.base, &self.comp, &mut self.posted, &self.pool);
            pool.with_lcore_cache(|c| {
                for &a in &comp[..n] {
                    let hdr = base + desc_base(a) as usize - MBUF_HEADER_SIZE;
                    if let Some(m) = posted.take(pool, hdr) {
                        c.free(m);
                    }
                }
            });
        }
    }

    /// One `sendto`: the kernel sends what waits in the TX ring (up to 32
    /// frames per call in copy mode; the rest go with the next kick).
    #[inline]
    fn kick(&mut self) {
        if let Some(xsk) = self.xsk.as_ref() {
            let r = xsk.try_kick();
            bump(&self.xstats.tx_kicks, 1);
            if let Err(e) = r {
                self.kick_refused(&e);
            }
        }
    }

    /// What a refused kick says about the device.
    #[cold]
    fn kick_refused(&mut self, e: &std::io::Error) {
        match e.raw_os_error() {
            // Busy, or down (`link()` tells the queue when it is down for
            // longer): the frames stay in the ring for the next kick.
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR | libc::ENETDOWN) => {}
            Some(libc::ENXIO | libc::ENODEV) => {
                self.link.set_lost();
                self.close();
            }
            _ => {
                if self
                    .xstats
                    .kick_errors
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
                {
                    log::warn!("AF_XDP TX kick (sendto): {e}");
                }
                bump(&self.xstats.kick_errors, 1);
            }
        }
    }

    /// The link is not up: down, take nothing; gone, close this half.
    #[cold]
    fn not_up(&mut self) {
        if self.link.get() == LinkCondition::Lost {
            self.close();
        }
    }

    /// Drop the rings (the socket closes with the other half) and hand what
    /// the kernel held to the reclaim; frames it never took are revoked.
    fn close(&mut self) {
        self.complete();
        if let Some(x) = self.xsk.take() {
            bump(&self.xstats.tx_revoked, x.tx.outstanding() as u64);
            drop(x);
            self.reclaim.close(&mut self.posted);
        }
    }

    /// A UMEM mbuf with a copy of `m`'s data (for foreign or chained mbufs).
    #[cold]
    fn copy_into_umem(&mut self, m: &Mbuf) -> Option<Mbuf> {
        let mut c = self.pool.with_lcore_cache(|c| c.alloc())?;
        let len = m.pkt_len();
        let dst = c.append(len).ok()?;
        let mut off = 0;
        for s in m.segments() {
            dst[off..off + s.len()].copy_from_slice(s);
            off += s.len();
        }
        bump(&self.xstats.tx_copies, 1);
        Some(c)
    }
}

impl TxQueue for XdpTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        self.complete();
        if !self.link.is_up() {
            self.not_up();
            return 0;
        }
        let Some(xsk) = self.xsk.as_mut() else {
            return 0;
        };
        if pkts.is_empty() {
            return 0;
        }
        let n = pkts.len().min(xsk.tx.free());
        if n == 0 {
            self.kick();
            return 0;
        }
        let (base, len) = (self.base, self.len);
        let mut bytes = 0u64;
        let mut sent = 0usize;
        let mut copied_out = 0usize;
        let mut tmp = Vec::new();
        pkts.consume_front(n, |m| {
            let buf = m.buf_addr() as usize;
            let inside = buf >= base && buf + m.buf_len() <= base + len;
            let m = if inside && m.nb_segs() == 1 && self.pool.owns(&m) {
                m
            } else {
                tmp.push(m);
                copied_out += 1;
                return;
            };
            bytes += m.data_len() as u64;
            let off = (buf - base) as u64;
            let d = m.data_off() as u64;
            let l = m.data_len() as u32;
            self.posted.park(m);
            self.descs[sent] = XdpDesc {
                addr: desc_encode(off, d),
                len: l,
                options: 0,
            };
            sent += 1;
        });
        // Foreign or chained mbufs: copy into the UMEM (counted), rare path.
        for m in tmp.drain(..) {
            match self.copy_into_umem(&m) {
                Some(c) => {
                    let off = (c.buf_addr() as usize - base) as u64;
                    bytes += c.data_len() as u64;
                    self.descs[sent] = XdpDesc {
                        addr: desc_encode(off, c.data_off() as u64),
                        len: c.data_len() as u32,
                        options: 0,
                    };
                    self.posted.park(c);
                    sent += 1;
                }
                None => self.counters.add_errors(1),
            }
        }
        if let Some(xsk) = self.xsk.as_mut() {
            let posted = xsk.tx.produce(&self.descs[..sent]);
            debug_assert_eq!(posted, sent);
            if xsk.tx.outstanding() >= self.kick_batch {
                self.kick();
            }
        }
        self.counters.add(sent as u64, bytes);
        n
    }

    #[inline]
    fn flush(&mut self) {
        if self.link.is_up() && self.xsk.as_ref().is_some_and(|x| x.tx.outstanding() > 0) {
            self.kick();
        }
    }
}

impl Drop for XdpTx {
    fn drop(&mut self) {
        // Let the kernel finish what it can (not on a link that is down or
        // gone), then close: the rest waits for the socket to close.
        if let Some(x) = self.xsk.as_mut().filter(|_| self.link.is_up()) {
            let _ = x.flush(64);
        }
        self.close();
    }
}
