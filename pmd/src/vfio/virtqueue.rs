//! A split virtqueue (virtio 1.2 §2.7) whose rings live in our external
//! memory, reached by the device at IOVAs we mapped through the container.
//!
//! One mbuf per descriptor: RX posts device-writable buffers, TX posts
//! device-readable frames. The queue owns the mbufs it posted until the
//! device returns them through the used ring (or until the device is reset,
//! after which [`Virtqueue::take_all`] hands every one back).

use super::mmio::Mmio;
use super::virtio::{Notifier, QueueAddrs};
use std::sync::atomic::{fence, Ordering};
use xfwd_mempool::Mbuf;

/// `VIRTQ_DESC_F_NEXT`: the chain continues at the descriptor `next`.
const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device does not need kicks right now.
const USED_F_NO_NOTIFY: u16 = 1;
/// Largest split queue (§2.7).
pub const MAX_SIZE: u16 = 32768;

/// Byte offsets of the three parts of a split queue of `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Entries (power of two).
    pub size: u16,
    /// Descriptor table (16 bytes each, 16-aligned).
    pub desc: usize,
    /// Driver ring: flags, idx, ring\[size\], used_event (2-aligned).
    pub avail: usize,
    /// Device ring: flags, idx, ring\[size\] of (id u32, len u32), avail_event (4-aligned).
    pub used: usize,
    /// Total bytes, rounded up to 4 KiB so queues can be laid out page by page.
    pub bytes: usize,
}

impl Layout {
    /// The layout of a queue of `size` entries, `None` unless a power of two ≤ [`MAX_SIZE`].
    pub fn new(size: u16) -> Option<Layout> {
        if !size.is_power_of_two() || size > MAX_SIZE {
            return None;
        }
        let n = size as usize;
        let desc = 0;
        let avail = 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        let bytes = (used + 6 + 8 * n).next_multiple_of(4096);
        Some(Layout {
            size,
            desc,
            avail,
            used,
            bytes,
        })
    }
}

/// Why a device answer was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedError {
    /// The device returned a descriptor id we never posted (or twice).
    BadId(u32),
}

/// One split virtqueue.
#[derive(Debug)]
pub struct Virtqueue {
    ring: Mmio,
    iova: u64,
    layout: Layout,
    free: Vec<u16>,
    slots: Vec<Option<Mbuf>>,
    avail_idx: u16,
    last_used: u16,
    notifier: Option<Notifier>,
    broken: Option<UsedError>,
    /// The descriptor [`Virtqueue::post_malformed`] posted (no mbuf behind it).
    malformed: Option<u16>,
}

impl Virtqueue {
    /// A queue over `ring` (at least `layout.bytes`, device address `iova`); zeroes the rings.
    ///
    /// # Panics
    /// When `ring` is smaller than the layout (the caller sized it from the same layout).
    pub fn new(ring: Mmio, iova: u64, layout: Layout) -> Virtqueue {
        assert!(
            ring.len() >= layout.bytes,
            "ring window smaller than its layout"
        );
        ring.zero();
        let n = layout.size as usize;
        Virtqueue {
            ring,
            iova,
            layout,
            free: (0..layout.size).rev().collect(),
            slots: (0..n).map(|_| None).collect(),
            avail_idx: 0,
            last_used: 0,
            notifier: None,
            broken: None,
            malformed: None,
        }
    }

    /// Where the device finds the rings.
    pub fn addrs(&self) -> QueueAddrs {
        QueueAddrs {
            desc: self.iova + self.layout.desc as u64,
            driver: self.iova + self.layout.avail as u64,
            device: self.iova + self.layout.used as u64,
        }
    }

    /// Attach the queue's notification register.
    pub fn set_notifier(&mut self, n: Notifier) {
        self.notifier = Some(n);
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Free descriptors.
    #[inline]
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Buffers the device holds (the malformed chain, if posted, is none).
    pub fn in_flight(&self) -> usize {
        self.layout.size as usize - self.free.len() - usize::from(self.malformed.is_some())
    }

    /// Negative tests only: post one chain the device must refuse — a
    /// descriptor of `len` bytes at `addr` (mapped, device-readable) with
    /// `VIRTQ_DESC_F_NEXT` and `next` = the queue size, out of range
    /// (§2.7.5) — with no mbuf behind it. Not visible before
    /// [`Virtqueue::publish`]. Its descriptor stays taken until
    /// [`Virtqueue::take_all`]; a device that returns it breaks the queue
    /// (its slot holds nothing). Returns the descriptor id, `None` when
    /// none is free or one is posted already.
    pub fn post_malformed(&mut self, addr: u64, len: u32) -> Option<u16> {
        if self.malformed.is_some() {
            return None;
        }
        let id = self.free.pop()?;
        let d = self.layout.desc + 16 * id as usize;
        self.ring.write64(d, addr);
        self.ring.write32(d + 8, len);
        self.ring.write16(d + 12, DESC_F_NEXT);
        self.ring.write16(d + 14, self.layout.size);
        let slot = self.avail_idx & (self.layout.size - 1);
        self.ring
            .write16(self.layout.avail + 4 + 2 * slot as usize, id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.malformed = Some(id);
        Some(id)
    }

    /// The first device answer rejected, if any (the queue then stops taking answers).
    pub fn broken(&self) -> Option<UsedError> {
        self.broken
    }

    /// Post a buffer at device address `addr` of `len` bytes, owned by `m`
    /// until the device returns it; `device_writes` for RX buffers. Not
    /// visible to the device before [`Virtqueue::publish`].
    ///
    /// # Errors
    /// The mbuf back when no descriptor is free.
    #[inline]
    pub fn add(&mut self, addr: u64, len: u32, device_writes: bool, m: Mbuf) -> Result<(), Mbuf> {
        let Some(id) = self.free.pop() else {
            return Err(m);
        };
        let d = self.layout.desc + 16 * id as usize;
        self.ring.write64(d, addr);
        self.ring.write32(d + 8, len);
        self.ring
            .write16(d + 12, if device_writes { DESC_F_WRITE } else { 0 });
        self.ring.write16(d + 14, 0);
        let slot = self.avail_idx & (self.layout.size - 1);
        self.ring
            .write16(self.layout.avail + 4 + 2 * slot as usize, id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.slots[id as usize] = Some(m);
        Ok(())
    }

    /// Make every added buffer visible to the device (§2.7.13: ring entries before idx).
    #[inline]
    pub fn publish(&mut self) {
        fence(Ordering::Release);
        self.ring.write16(self.layout.avail + 2, self.avail_idx);
    }

    /// Publish and notify the device unless it asked not to be (§2.7.10).
    #[inline]
    pub fn kick(&mut self) {
        self.publish();
        fence(Ordering::SeqCst);
        if self.ring.read16(self.layout.used) & USED_F_NO_NOTIFY == 0 {
            if let Some(n) = &self.notifier {
                n.notify();
            }
        }
    }

    /// Used entries the device returned that we have not taken yet.
    #[inline]
    pub fn used_pending(&self) -> u16 {
        self.ring
            .read16(self.layout.used + 2)
            .wrapping_sub(self.last_used)
    }

    /// Take the next buffer the device returned, with the bytes it wrote.
    #[inline]
    pub fn pop_used(&mut self) -> Option<(Mbuf, u32)> {
        if self.broken.is_some() || self.used_pending() == 0 {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = (self.last_used & (self.layout.size - 1)) as usize;
        let e = self.layout.used + 4 + 8 * slot;
        let id = self.ring.read32(e);
        let len = self.ring.read32(e + 4);
        let m = match self.slots.get_mut(id as usize).and_then(Option::take) {
            Some(m) => m,
            None => {
                log::error!("virtqueue: device returned descriptor id {id} that it does not hold");
                self.broken = Some(UsedError::BadId(id));
                return None;
            }
        };
        self.last_used = self.last_used.wrapping_add(1);
        self.free.push(id as u16);
        Some((m, len))
    }

    /// Every mbuf still posted (call only once the device was reset: it
    /// no longer reads or writes them). The queue is empty afterwards.
    pub fn take_all(&mut self) -> Vec<Mbuf> {
        let out: Vec<Mbuf> = self.slots.iter_mut().filter_map(Option::take).collect();
        self.free = (0..self.layout.size).rev().collect();
        self.avail_idx = 0;
        self.last_used = 0;
        self.broken = None;
        self.malformed = None;
        self.ring.zero();
        out
    }
}

/// The device side of a split queue over the same memory (tests and the
/// fake device): takes posted buffers and returns them as used.
#[cfg(test)]
pub(crate) struct FakeDevice {
    pub ring: Mmio,
    pub layout: Layout,
    pub next_avail: u16,
    pub used_idx: u16,
}

#[cfg(test)]
impl FakeDevice {
    /// Take the next posted descriptor: (id, addr, len, flags).
    pub fn take(&mut self) -> Option<(u16, u64, u32, u16)> {
        let avail = self.ring.read16(self.layout.avail + 2);
        if avail == self.next_avail {
            return None;
        }
        let slot = (self.next_avail & (self.layout.size - 1)) as usize;
        let id = self.ring.read16(self.layout.avail + 4 + 2 * slot);
        self.next_avail = self.next_avail.wrapping_add(1);
        let d = self.layout.desc + 16 * id as usize;
        Some((
            id,
            self.ring.read64(d),
            self.ring.read32(d + 8),
            self.ring.read16(d + 12),
        ))
    }

    /// The `next` field of descriptor `id`.
    pub fn next_of(&self, id: u16) -> u16 {
        self.ring.read16(self.layout.desc + 16 * id as usize + 14)
    }

    /// Return descriptor `id` with `len` bytes written.
    pub fn give(&mut self, id: u32, len: u32) {
        let slot = (self.used_idx & (self.layout.size - 1)) as usize;
        let e = self.layout.used + 4 + 8 * slot;
        self.ring.write32(e, id);
        self.ring.write32(e + 4, len);
        self.used_idx = self.used_idx.wrapping_add(1);
        self.ring.write16(self.layout.used + 2, self.used_idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use xfwd_mempool::{ExtMem, MbufPool, PageSize, PoolConfig};

    fn pool(n: u32) -> MbufPool {
        let cfg = PoolConfig {
            name: format!("vq{n}"),
            n,
            cache_size: 0,
            ..Default::default()
        };
        MbufPool::on_heap(&cfg).unwrap()
    }

    fn queue(size: u16) -> (Virtqueue, FakeDevice) {
        let layout = Layout::new(size).unwrap();
        let mem = Arc::new(ExtMem::heap(layout.bytes, PageSize::Size4K).unwrap());
        let ring = crate::vfio::mmio::over(mem);
        let dev = FakeDevice {
            ring: ring.clone(),
            layout,
            next_avail: 0,
            used_idx: 0,
        };
        (Virtqueue::new(ring, 0x1_0000_0000, layout), dev)
    }

    #[test]
    fn layout_follows_the_alignment_rules() {
        let l = Layout::new(256).unwrap();
        assert_eq!((l.desc, l.avail, l.used), (0, 4096, 4096 + 520));
        assert_eq!(l.bytes, 8192);
        assert!(Layout::new(100).is_none());
        assert!(Layout::new(0).is_none());
        let l = Layout::new(1).unwrap();
        assert_eq!(l.used % 4, 0);
    }

    #[test]
    fn buffers_round_trip_through_the_device_across_many_wraps() {
        let p = pool(64);
        let (mut vq, mut dev) = queue(8);
        assert_eq!(vq.addrs().driver, 0x1_0000_0000 + 128);
        let mut sent = 0u32;
        let mut back = 0u32;
        for round in 0..100u32 {
            while vq.free_count() > 0 {
                let m = p.alloc().unwrap();
                let iova = m.buf_iova();
                vq.add(iova, 2048, round % 2 == 0, m).unwrap();
                sent += 1;
            }
            let extra = p.alloc().unwrap();
            assert!(vq.add(0, 1, true, extra).is_err(), "full queue refuses");
            vq.publish();
            assert_eq!(vq.in_flight(), 8);
            // The device completes them out of order: reverse.
            let mut got = Vec::new();
            while let Some((id, addr, len, flags)) = dev.take() {
                assert_eq!(len, 2048);
                assert_eq!(flags, if round % 2 == 0 { DESC_F_WRITE } else { 0 });
                assert_ne!(addr, 0);
                got.push(id);
            }
            assert_eq!(got.len(), 8);
            for id in got.iter().rev() {
                dev.give(u32::from(*id), 60 + u32::from(*id));
            }
            while let Some((m, len)) = vq.pop_used() {
                assert!(len >= 60);
                drop(m);
                back += 1;
            }
            assert_eq!(vq.free_count(), 8);
        }
        assert_eq!((sent, back), (800, 800));
        assert_eq!(p.available(), 64);
    }

    #[test]
    fn a_bogus_id_from_the_device_breaks_the_queue_without_losing_mbufs() {
        let p = pool(16);
        let (mut vq, mut dev) = queue(4);
        for _ in 0..4 {
            let m = p.alloc().unwrap();
            vq.add(m.buf_iova(), 100, true, m).unwrap();
        }
        vq.publish();
        let (id, ..) = dev.take().unwrap();
        dev.give(u32::from(id), 10);
        dev.give(u32::from(id), 10); // returned twice
        assert!(vq.pop_used().is_some());
        assert!(vq.pop_used().is_none());
        assert_eq!(vq.broken(), Some(UsedError::BadId(u32::from(id))));
        // After a reset every posted mbuf comes back.
        let rest = vq.take_all();
        assert_eq!(rest.len(), 3);
        drop(rest);
        assert_eq!(p.available(), 16);
        assert_eq!(vq.free_count(), 4);
        assert!(vq.broken().is_none());
    }

    #[test]
    fn a_malformed_chain_holds_no_mbuf_and_is_not_counted_in_flight() {
        let p = pool(8);
        let (mut vq, mut dev) = queue(4);
        let m = p.alloc().unwrap();
        vq.add(m.buf_iova(), 100, false, m).unwrap();
        let id = vq.post_malformed(0x1_0000_0000, 12).unwrap();
        assert!(vq.post_malformed(0x1_0000_0000, 12).is_none(), "only one");
        vq.publish();
        assert_eq!((vq.in_flight(), vq.free_count()), (1, 2));
        let (real, ..) = dev.take().unwrap();
        let (bad, addr, len, flags) = dev.take().unwrap();
        assert_eq!(
            (bad, addr, len, flags),
            (id, 0x1_0000_0000, 12, DESC_F_NEXT)
        );
        assert!(dev.next_of(bad) >= 4, "next out of range");
        // A device that returned it anyway breaks the queue; nothing is freed twice.
        dev.give(u32::from(real), 0);
        dev.give(u32::from(bad), 0);
        assert!(vq.pop_used().is_some());
        assert!(vq.pop_used().is_none());
        assert_eq!(vq.broken(), Some(UsedError::BadId(u32::from(bad))));
        assert!(vq.take_all().is_empty());
        assert_eq!((vq.in_flight(), vq.free_count(), p.available()), (0, 4, 8));
        assert!(vq.post_malformed(0, 12).is_some(), "again after a reset");
    }
}
