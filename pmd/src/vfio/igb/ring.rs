//! Advanced RX and TX descriptor rings (82576 datasheet §7.1.5, §7.2.2.3)
//! in the port's ring memory, with the mbufs the device owns.
//!
//! RX: descriptors `next..tail` (mod size) hold posted buffers; the tail
//! register is written after the descriptors (release fence), at most
//! size − 1 are posted (head == tail means empty to the device). A
//! descriptor is done when the device wrote DD in its write-back.
//!
//! TX: descriptors `clean..tail` are in flight; every descriptor asks for
//! status (RS), the device sets DD in its write-back once it sent it.

use super::regs::{self, Regs};
use crate::port::{QueueToken, RxQueue, TxQueue};
use crate::stats::QueueCounters;
use crate::vfio::mmio::Mmio;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache, MAX_BURST};

/// Bytes per descriptor.
pub const DESC: usize = 16;

/// Software counters of the driver (shown as xstats).
#[derive(Debug, Default)]
pub struct SwXstats {
    /// Descriptors written back without EOP or with a bad length.
    pub rx_bad_desc: AtomicU64,
    /// Multi-segment mbufs refused on TX.
    pub tx_bad_segs: AtomicU64,
    /// TX descriptors still in flight when the port stopped.
    pub tx_unsent_at_stop: AtomicU64,
}

/// Descriptor ring memory, slots and the tail register.
#[derive(Debug)]
pub struct Ring {
    desc: Mmio,
    slots: Vec<Option<Mbuf>>,
    size: u16,
    regs: Arc<dyn Regs>,
    tail_reg: usize,
}

impl Ring {
    /// A ring of `size` descriptors in `desc` (zeroed), tail register at `tail_reg`.
    pub fn new(desc: Mmio, size: u16, regs: Arc<dyn Regs>, tail_reg: usize) -> Ring {
        desc.zero();
        Ring {
            desc,
            slots: (0..size).map(|_| None).collect(),
            size,
            regs,
            tail_reg,
        }
    }

    fn wrap(&self, i: u16) -> u16 {
        if i + 1 == self.size {
            0
        } else {
            i + 1
        }
    }

    /// Every mbuf still in the ring (after the device was reset).
    pub fn take_all(&mut self) -> Vec<Mbuf> {
        self.slots.iter_mut().filter_map(Option::take).collect()
    }
}

/// Where a queue handle parks its ring when dropped, so `stop()` gets every
/// posted mbuf back once the device is reset.
pub type Home<T> = Arc<Mutex<Option<T>>>;

/// An RX queue's ring state.
#[derive(Debug)]
pub struct RxRing {
    ring: Ring,
    next: u16,
    tail: u16,
    headroom: u64,
}

impl RxRing {
    /// Over a fresh ring.
    pub fn new(ring: Ring, headroom: u64) -> RxRing {
        RxRing {
            ring,
            next: 0,
            tail: 0,
            headroom,
        }
    }

    fn posted(&self) -> u16 {
        (self.tail + self.ring.size - self.next) % self.ring.size
    }

    /// Give back every mbuf (the device must be reset).
    pub fn take_all(&mut self) -> Vec<Mbuf> {
        self.ring.take_all()
    }
}

/// An RX queue handle.
#[derive(Debug)]
pub struct IgbRx {
    /// The ring (None once parked).
    pub ring: Option<RxRing>,
    /// Where it parks.
    pub home: Home<RxRing>,
    /// Mbufs come from here.
    pub cache: PoolCache,
    /// Bulk allocation scratch.
    pub scratch: MbufBatch,
    /// Queue counters.
    pub counters: Arc<QueueCounters>,
    /// Driver counters.
    pub xstats: Arc<SwXstats>,
    /// Liveness token.
    pub token: QueueToken,
}

impl IgbRx {
    /// Post fresh buffers into every free descriptor; returns how many.
    pub fn refill(&mut self) -> usize {
        let Some(rx) = self.ring.as_mut() else {
            return 0;
        };
        let mut posted = 0;
        loop {
            let free = (rx.ring.size - 1 - rx.posted()) as usize;
            let want = free.min(MAX_BURST);
            if want == 0 {
                break;
            }
            if self.cache.alloc_bulk_raw(&mut self.scratch, want).is_err() {
                self.counters.add_nombuf(want as u64);
                break;
            }
            for m in self.scratch.drain() {
                let i = rx.tail as usize;
                let off = i * DESC;
                // Read format: packet buffer address, header buffer address (0:
                // no header split). Writing the upper half clears a stale DD.
                rx.ring.desc.write64(off, m.buf_iova() + rx.headroom);
                rx.ring.desc.write64(off + 8, 0);
                rx.ring.slots[i] = Some(m);
                rx.tail = rx.ring.wrap(rx.tail);
                posted += 1;
            }
        }
        if posted > 0 {
            fence(Ordering::Release);
            rx.ring.regs.wr(rx.ring.tail_reg, u32::from(rx.tail));
        }
        posted
    }
}

impl RxQueue for IgbRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let Some(rx) = self.ring.as_mut() else {
            return 0;
        };
        let room = out.room();
        let (mut n, mut bytes, mut bad) = (0usize, 0u64, 0u64);
        while n < room && rx.next != rx.tail {
            let off = rx.next as usize * DESC;
            let status = rx.ring.desc.read32(off + 8);
            if status & regs::RXD_STAT_DD == 0 {
                break;
            }
            fence(Ordering::Acquire);
            let len = usize::from(rx.ring.desc.read16(off + 12));
            let hash = rx.ring.desc.read32(off + 4);
            let slot = rx.next as usize;
            rx.next = rx.ring.wrap(rx.next);
            let Some(mut m) = rx.ring.slots[slot].take() else {
                bad += 1;
                continue;
            };
            if status & regs::RXD_STAT_EOP == 0 || len == 0 || m.reset_len(len).is_err() {
                bad += 1;
                self.cache.free(m);
                continue;
            }
            m.set_rss_hash(hash);
            bytes += len as u64;
            if let Err(m) = out.push(m) {
                self.cache.free(m);
                break;
            }
            n += 1;
        }
        if bad > 0 {
            self.xstats.rx_bad_desc.fetch_add(bad, Ordering::Relaxed);
            self.counters.add_errors(bad);
        }
        let size = rx.ring.size;
        if rx.posted() <= size - 1 - 32.min(size / 2) {
            self.refill();
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

impl Drop for IgbRx {
    fn drop(&mut self) {
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) = self.ring.take();
    }
}

/// A TX queue's ring state.
#[derive(Debug)]
pub struct TxRing {
    ring: Ring,
    clean: u16,
    tail: u16,
}

impl TxRing {
    /// Over a fresh ring.
    pub fn new(ring: Ring) -> TxRing {
        TxRing {
            ring,
            clean: 0,
            tail: 0,
        }
    }

    /// Descriptors handed to the device and not yet done.
    pub fn in_flight(&self) -> u16 {
        (self.tail + self.ring.size - self.clean) % self.ring.size
    }

    /// Free the mbufs of done descriptors into `free`.
    pub fn reclaim(&mut self, mut free: impl FnMut(Mbuf)) {
        while self.clean != self.tail {
            let off = self.clean as usize * DESC;
            if self.ring.desc.read32(off + 12) & regs::TXD_STAT_DD == 0 {
                break;
            }
            if let Some(m) = self.ring.slots[self.clean as usize].take() {
                free(m);
            }
            self.clean = self.ring.wrap(self.clean);
        }
    }

    /// Give back every mbuf (the device must be reset).
    pub fn take_all(&mut self) -> Vec<Mbuf> {
        self.ring.take_all()
    }
}

/// A TX queue handle.
#[derive(Debug)]
pub struct IgbTx {
    /// The ring (None once parked).
    pub ring: Option<TxRing>,
    /// Where it parks.
    pub home: Home<TxRing>,
    /// Sent mbufs return here.
    pub cache: PoolCache,
    /// Queue counters.
    pub counters: Arc<QueueCounters>,
    /// Driver counters.
    pub xstats: Arc<SwXstats>,
    /// Liveness token.
    pub token: QueueToken,
}

impl TxQueue for IgbTx {
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        let Some(tx) = self.ring.as_mut() else {
            return 0;
        };
        let cache = &mut self.cache;
        tx.reclaim(|m| cache.free(m));
        let free = (tx.ring.size - 1 - tx.in_flight()) as usize;
        let k = pkts.len().min(free);
        let (mut sent, mut bytes, mut bad) = (0u64, 0u64, 0u64);
        pkts.consume_front(k, |m| {
            if m.nb_segs() != 1 {
                bad += 1;
                cache.free(m);
                return;
            }
            let len = m.data_len() as u32;
            let i = tx.tail as usize;
            let off = i * DESC;
            tx.ring.desc.write64(off, m.data_iova());
            tx.ring.desc.write32(
                off + 8,
                (len & 0xffff)
                    | regs::TXD_DTYP_DATA_DEXT
                    | regs::TXD_EOP
                    | regs::TXD_IFCS
                    | regs::TXD_RS,
            );
            tx.ring
                .desc
                .write32(off + 12, len << regs::TXD_PAYLEN_SHIFT);
            tx.ring.slots[i] = Some(m);
            tx.tail = tx.ring.wrap(tx.tail);
            sent += 1;
            bytes += u64::from(len);
        });
        if sent > 0 {
            fence(Ordering::Release);
            tx.ring.regs.wr(tx.ring.tail_reg, u32::from(tx.tail));
        }
        if bad > 0 {
            self.xstats.tx_bad_segs.fetch_add(bad, Ordering::Relaxed);
            self.counters.add_errors(bad);
        }
        self.counters.add(sent, bytes);
        k
    }
}

impl Drop for IgbTx {
    fn drop(&mut self) {
        *self.home.lock().unwrap_or_else(PoisonError::into_inner) = self.ring.take();
    }
}
