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
use crate::netdev::LinkState;
use crate::port::{QueueToken, RxQueue, TxQueue};
use crate::stats::QueueCounters;
use crate::vfio::common::{self, RxPost};
use crate::vfio::mmio::Mmio;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache};

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
        common::refill(rx, &mut self.cache, &mut self.scratch, &self.counters)
    }
}

impl RxPost for RxRing {
    fn free_slots(&self) -> usize {
        (self.ring.size - 1 - self.posted()) as usize
    }

    fn post(&mut self, m: Mbuf) {
        let i = self.tail as usize;
        let off = i * DESC;
        // Read format: packet buffer address, header buffer address (0:
        // no header split). Writing the upper half clears a stale DD.
        self.ring.desc.write64(off, m.buf_iova() + self.headroom);
        self.ring.desc.write64(off + 8, 0);
        self.ring.slots[i] = Some(m);
        self.tail = self.ring.wrap(self.tail);
    }

    fn kick(&mut self) {
        fence(Ordering::Release);
        self.ring.regs.wr(self.ring.tail_reg, u32::from(self.tail));
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
    /// The port's link as its last read said (written off the fast path):
    /// while it is down nothing is handed to the device.
    pub link: Arc<LinkState>,
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
        if !self.link.is_up() {
            return 0;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{MappingKind, SoftMapper};
    use crate::port::PortCore;
    use crate::vfio::igb::hw::double::FakeIgb;
    use xfwd_mempool::{ExtMem, MbufPool, PageSize, PoolConfig, MAX_BURST};

    /// The device's write-back of descriptor `i`: length, RSS hash, status.
    fn write_back(desc: &Mmio, i: usize, len: u16, hash: u32, status: u32) {
        desc.write32(i * DESC + 4, hash);
        desc.write16(i * DESC + 12, len);
        desc.write32(i * DESC + 8, status);
    }

    #[test]
    fn rx_posts_every_free_descriptor_takes_written_back_frames_and_refills() {
        let pool = MbufPool::on_heap(&PoolConfig {
            name: "igb-rx".into(),
            n: 64,
            cache_size: 0,
            ..Default::default()
        })
        .unwrap();
        let headroom = u64::from(pool.config().headroom);
        let size = 16u16;
        let mem = Arc::new(ExtMem::heap(usize::from(size) * DESC, PageSize::Size4K).unwrap());
        let desc = crate::vfio::mmio::over(mem);
        let fake = Arc::new(FakeIgb::new());
        let tail_reg = regs::rxq(0) + regs::q::TAIL;
        let ring = Ring::new(desc.clone(), size, fake.clone(), tail_reg);
        let core = PortCore::new("igb-test", Arc::new(SoftMapper::new(MappingKind::None)));
        let home: Home<RxRing> = Arc::new(Mutex::new(None));
        let counters = Arc::new(QueueCounters::default());
        let mut q = IgbRx {
            ring: Some(RxRing::new(ring, headroom)),
            home: home.clone(),
            cache: pool.cache(),
            scratch: MbufBatch::new(MAX_BURST),
            counters: counters.clone(),
            xstats: Arc::default(),
            token: core.token(),
        };
        // size - 1 posted (head == tail would mean empty), the tail written once.
        assert_eq!(q.refill(), 15);
        assert_eq!(fake.peek(tail_reg), 15);
        assert_eq!(pool.available(), 64 - 15);
        let addr0 = desc.read64(0);
        assert_eq!(addr0 % 64, headroom % 64, "packet buffer at the headroom");
        assert_eq!(q.refill(), 0, "nothing free");

        for i in 0..3 {
            write_back(
                &desc,
                i,
                60 + i as u16,
                0xabc0 + i as u32,
                regs::RXD_STAT_DD | regs::RXD_STAT_EOP,
            );
        }
        // Done but no EOP: counted as a bad descriptor, the mbuf freed.
        write_back(&desc, 3, 60, 0, regs::RXD_STAT_DD);
        let mut out = MbufBatch::new(MAX_BURST);
        assert_eq!(q.rx_burst(&mut out), 3);
        let got: Vec<(usize, u32)> = out.iter().map(|m| (m.data_len(), m.rss_hash())).collect();
        assert_eq!(got, [(60, 0xabc0), (61, 0xabc1), (62, 0xabc2)]);
        assert_eq!(q.xstats.rx_bad_desc.load(Ordering::Relaxed), 1);
        // 11 still posted: above the refill threshold (15 - 8), no refill yet.
        assert_eq!(fake.peek(tail_reg), 15);
        for i in 4..9 {
            write_back(&desc, i, 100, 0, regs::RXD_STAT_DD | regs::RXD_STAT_EOP);
        }
        assert_eq!(q.rx_burst(&mut out), 5);
        // 6 left posted: refilled back to 15 in one tail write.
        assert_eq!(fake.peek(tail_reg), (15 + 9) % 16);
        let s = counters.read();
        assert_eq!(
            (s.packets, s.bytes, s.errors),
            (8, 60 + 61 + 62 + 5 * 100, 1)
        );

        // Down to 7 posted with the pool empty: the failed allocation is
        // counted, nothing posted, the tail left alone.
        let mut hold = MbufBatch::new(64);
        pool.cache()
            .alloc_bulk_raw(&mut hold, pool.available())
            .unwrap();
        for i in (9..16).chain(0..1) {
            write_back(&desc, i, 100, 0, regs::RXD_STAT_DD | regs::RXD_STAT_EOP);
        }
        assert_eq!(q.rx_burst(&mut out), 8);
        assert_eq!(counters.read().nombuf, 8);
        assert_eq!(fake.peek(tail_reg), 8);

        drop(out);
        drop(hold);
        drop(q);
        let mut parked = home.lock().unwrap().take().expect("parked at drop");
        assert_eq!(parked.take_all().len(), 7);
        pool.leak_check().unwrap();
    }

    #[test]
    fn tx_hands_the_device_nothing_while_the_link_is_down() {
        let pool = MbufPool::on_heap(&PoolConfig {
            name: "igb-tx".into(),
            n: 64,
            cache_size: 0,
            ..Default::default()
        })
        .unwrap();
        let mem = Arc::new(ExtMem::heap(16 * DESC, PageSize::Size4K).unwrap());
        let fake = Arc::new(FakeIgb::new());
        let tail_reg = regs::txq(0) + regs::q::TAIL;
        let ring = Ring::new(crate::vfio::mmio::over(mem), 16, fake.clone(), tail_reg);
        let core = PortCore::new("igb-test", Arc::new(SoftMapper::new(MappingKind::None)));
        let home: Home<TxRing> = Arc::new(Mutex::new(None));
        let link = Arc::new(LinkState::default());
        let mut q = IgbTx {
            ring: Some(TxRing::new(ring)),
            home: home.clone(),
            cache: pool.cache(),
            counters: Arc::default(),
            xstats: Arc::default(),
            link: link.clone(),
            token: core.token(),
        };
        let mut burst = MbufBatch::new(MAX_BURST);
        let fill = |b: &mut MbufBatch| {
            for _ in 0..4 {
                let mut m = pool.cache().alloc().unwrap();
                m.append(60).unwrap().fill(0);
                b.push(m).unwrap();
            }
        };
        fill(&mut burst);
        link.follow(false);
        assert_eq!(q.tx_burst(&mut burst), 0, "link down: nothing taken");
        assert_eq!(burst.len(), 4, "the caller keeps them");
        assert_eq!(fake.peek(tail_reg), 0, "the tail untouched");
        link.follow(true);
        assert_eq!(q.tx_burst(&mut burst), 4, "link up again: sent");
        assert_eq!(fake.peek(tail_reg), 4);
        drop(burst);
        drop(q);
        let mut parked = home.lock().unwrap().take().expect("parked at drop");
        assert_eq!(parked.take_all().len(), 4);
        pool.leak_check().unwrap();
    }
}
