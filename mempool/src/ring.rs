//! A bounded multi-producer multi-consumer ring of object addresses, in the
//! shape of DPDK's `rte_ring` (head/tail per side, bulk all-or-nothing).
//!
//! Slots are `AtomicPtr<MbufHeader>` (pointers keep their provenance)
//! accessed with relaxed loads and stores (plain moves on x86), published by the release store of the tail and observed by
//! the acquire load of the other side's tail, so this module needs no `unsafe`.
//! It is touched only when a per-lcore cache refills or flushes, in bulk.
//!
//! A side with one thread at a time (a ring port's TX queue, its RX queue)
//! takes the single-producer / single-consumer paths after claiming the side
//! ([`Ring::claim_producer`], [`Ring::claim_consumer`]): no compare-exchange,
//! no wait for earlier reservations, and the other side's tail cached so its
//! cache line is read only when the cached value does not cover the burst.
//! One acquire (only then) and one release store per burst, like DPDK's
//! `rte_ring` with `RING_F_SP_ENQ | RING_F_SC_DEQ`. The other side may stay
//! multi-threaded: a single producer works with multi consumers and back.

use crate::mbuf::MbufHeader;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

/// What a ring holds: an mbuf header pointer.
pub type Obj = *mut MbufHeader;

#[repr(align(128))]
#[derive(Debug, Default)]
struct HeadTail {
    head: AtomicU32,
    tail: AtomicU32,
    /// The single thread of this side holds it (claim_producer/consumer).
    single: AtomicBool,
    /// That thread's last look at the other side's tail (only it touches
    /// this; it lives on this side's cache line).
    other_tail: AtomicU32,
}

/// The ring.
#[derive(Debug)]
pub struct Ring {
    prod: HeadTail,
    cons: HeadTail,
    mask: u32,
    capacity: u32,
    slots: Box<[AtomicPtr<MbufHeader>]>,
}

impl Ring {
    /// A ring holding up to `capacity` entries (storage rounded up to a power
    /// of two).
    ///
    /// # Panics
    /// `capacity` of zero or above 2^31.
    pub fn new(capacity: u32) -> Ring {
        assert!(
            capacity > 0 && capacity <= 1 << 31,
            "ring capacity {capacity}"
        );
        let size = capacity.next_power_of_two();
        Ring {
            prod: HeadTail::default(),
            cons: HeadTail::default(),
            mask: size - 1,
            capacity,
            slots: (0..size)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    /// Maximum entries.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Entries now (exact when quiescent).
    pub fn count(&self) -> u32 {
        let p = self.prod.tail.load(Ordering::Acquire);
        let c = self.cons.tail.load(Ordering::Acquire);
        p.wrapping_sub(c).min(self.capacity)
    }

    /// Enqueue all of `objs` or nothing. Returns false when there is no room.
    pub fn enqueue_bulk(&self, objs: &[Obj]) -> bool {
        objs.is_empty() || self.enqueue(objs, false) == objs.len()
    }

    /// Enqueue as many of `objs` as fit, from the front; returns how many.
    pub fn enqueue_burst(&self, objs: &[Obj]) -> usize {
        if objs.is_empty() {
            return 0;
        }
        self.enqueue(objs, true)
    }

    /// Dequeue exactly `out.len()` entries or nothing. Returns false when the
    /// ring holds fewer.
    pub fn dequeue_bulk(&self, out: &mut [Obj]) -> bool {
        out.is_empty() || self.dequeue(out, false) == out.len()
    }

    /// Dequeue up to `out.len()` entries; returns how many.
    pub fn dequeue_burst(&self, out: &mut [Obj]) -> usize {
        if out.is_empty() {
            return 0;
        }
        self.dequeue(out, true)
    }

    /// Become this ring's only producer until [`Ring::release_producer`];
    /// false when another thread holds the claim. While it is held, only the
    /// holder may enqueue, and only with [`Ring::enqueue_burst_sp`].
    pub fn claim_producer(&self) -> bool {
        claim(&self.prod, &self.cons)
    }

    /// Give the producer claim back (the holder, after its last enqueue).
    pub fn release_producer(&self) {
        self.prod.single.store(false, Ordering::Release);
    }

    /// Become this ring's only consumer until [`Ring::release_consumer`];
    /// as [`Ring::claim_producer`], for [`Ring::dequeue_burst_sc`].
    pub fn claim_consumer(&self) -> bool {
        claim(&self.cons, &self.prod)
    }

    /// Give the consumer claim back.
    pub fn release_consumer(&self) {
        self.cons.single.store(false, Ordering::Release);
    }

    /// [`Ring::enqueue_burst`] for the holder of the producer claim: the
    /// free space from the cached consumer tail (re-read, acquire, only
    /// when it does not cover the burst), the slots, one release store.
    /// A caller without the claim corrupts the ring's order (never memory).
    #[inline]
    pub fn enqueue_burst_sp(&self, objs: &[Obj]) -> usize {
        debug_assert!(self.prod.single.load(Ordering::Relaxed));
        let head = self.prod.tail.load(Ordering::Relaxed);
        let want = objs.len().min(self.capacity as usize) as u32;
        let mut free = self
            .capacity
            .wrapping_add(self.prod.other_tail.load(Ordering::Relaxed))
            .wrapping_sub(head);
        if free < want {
            let ct = self.cons.tail.load(Ordering::Acquire);
            self.prod.other_tail.store(ct, Ordering::Relaxed);
            free = self.capacity.wrapping_add(ct).wrapping_sub(head);
        }
        let n = want.min(free);
        if n == 0 {
            return 0;
        }
        self.fill(head, &objs[..n as usize]);
        let next = head.wrapping_add(n);
        self.prod.head.store(next, Ordering::Relaxed);
        self.prod.tail.store(next, Ordering::Release);
        n as usize
    }

    /// [`Ring::dequeue_burst`] for the holder of the consumer claim; as
    /// [`Ring::enqueue_burst_sp`] with the producer tail cached.
    #[inline]
    pub fn dequeue_burst_sc(&self, out: &mut [Obj]) -> usize {
        debug_assert!(self.cons.single.load(Ordering::Relaxed));
        let head = self.cons.tail.load(Ordering::Relaxed);
        let want = out.len().min(self.capacity as usize) as u32;
        let mut entries = self
            .cons
            .other_tail
            .load(Ordering::Relaxed)
            .wrapping_sub(head);
        if entries < want {
            let pt = self.prod.tail.load(Ordering::Acquire);
            self.cons.other_tail.store(pt, Ordering::Relaxed);
            entries = pt.wrapping_sub(head);
        }
        let n = want.min(entries);
        if n == 0 {
            return 0;
        }
        self.take(head, &mut out[..n as usize]);
        let next = head.wrapping_add(n);
        self.cons.head.store(next, Ordering::Relaxed);
        self.cons.tail.store(next, Ordering::Release);
        n as usize
    }

    #[inline]
    fn enqueue(&self, objs: &[Obj], burst: bool) -> usize {
        let mut n = objs.len() as u32;
        // Acquire: a head that includes another thread's reservation must come
        // with that thread's earlier tail update, or free space computed from
        // a stale tail fails a bulk that must succeed (found by Miri).
        let mut head = self.prod.head.load(Ordering::Acquire);
        loop {
            let cons_tail = self.cons.tail.load(Ordering::Acquire);
            let free = self.capacity.wrapping_add(cons_tail).wrapping_sub(head);
            if n > free {
                if !burst || free == 0 {
                    return 0;
                }
                n = free;
            }
            match self.prod.head.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.fill(head, &objs[..n as usize]);
        wait_turn(&self.prod.tail, head);
        self.prod
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }

    #[inline]
    fn dequeue(&self, out: &mut [Obj], burst: bool) -> usize {
        let mut n = out.len() as u32;
        // Acquire, for the same reason as on the producer side.
        let mut head = self.cons.head.load(Ordering::Acquire);
        loop {
            let prod_tail = self.prod.tail.load(Ordering::Acquire);
            let entries = prod_tail.wrapping_sub(head);
            if n > entries {
                if !burst || entries == 0 {
                    return 0;
                }
                n = entries;
            }
            match self.cons.head.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.take(head, &mut out[..n as usize]);
        wait_turn(&self.cons.tail, head);
        self.cons
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }
}

impl Ring {
    /// The `n` slots from index `head` on, as at most two contiguous runs
    /// (the second when they wrap): no mask or bounds check per slot.
    #[inline]
    fn span(&self, head: u32, n: usize) -> (&[AtomicPtr<MbufHeader>], &[AtomicPtr<MbufHeader>]) {
        let i = (head & self.mask) as usize;
        let first = n.min(self.slots.len() - i);
        (&self.slots[i..i + first], &self.slots[..n - first])
    }

    /// Store `objs` in the reserved slots from `head` on.
    #[inline]
    fn fill(&self, head: u32, objs: &[Obj]) {
        let (a, b) = self.span(head, objs.len());
        let (oa, ob) = objs.split_at(a.len());
        for (s, &o) in a.iter().zip(oa) {
            s.store(o, Ordering::Relaxed);
        }
        for (s, &o) in b.iter().zip(ob) {
            s.store(o, Ordering::Relaxed);
        }
    }

    /// Load the reserved slots from `head` on into `out`.
    #[inline]
    fn take(&self, head: u32, out: &mut [Obj]) {
        let (a, b) = self.span(head, out.len());
        let (oa, ob) = out.split_at_mut(a.len());
        for (o, s) in oa.iter_mut().zip(a) {
            *o = s.load(Ordering::Relaxed);
        }
        for (o, s) in ob.iter_mut().zip(b) {
            *o = s.load(Ordering::Relaxed);
        }
    }
}

/// Claim side `me`: only when nobody holds it and no multi-thread
/// reservation of that side is in flight (head == tail); the cached other
/// tail starts from the other side's current tail.
fn claim(me: &HeadTail, other: &HeadTail) -> bool {
    if me
        .single
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    // A multi-thread enqueue (dequeue) still between its reservation and
    // its publication would be overtaken: wait for it (they are short).
    while me.head.load(Ordering::Acquire) != me.tail.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    me.other_tail
        .store(other.tail.load(Ordering::Acquire), Ordering::Relaxed);
    true
}

/// Wait until earlier producers (or consumers) published their part.
#[inline]
fn wait_turn(tail: &AtomicU32, mine: u32) {
    let mut spins = 0u32;
    while tail.load(Ordering::Relaxed) != mine {
        spins += 1;
        if spins < 128 {
            std::hint::spin_loop();
        } else {
            // The other side may be preempted (more threads than cores).
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Distinct fake object pointers (never dereferenced).
    fn p(i: usize) -> Obj {
        std::ptr::without_provenance_mut(i * 64)
    }

    fn ps(v: &[usize]) -> Vec<Obj> {
        v.iter().map(|&i| p(i)).collect()
    }

    fn ids(v: &[Obj]) -> Vec<usize> {
        v.iter().map(|o| o.addr() / 64).collect()
    }

    const NULL: Obj = std::ptr::null_mut();

    #[test]
    fn bulk_all_or_nothing() {
        let r = Ring::new(5);
        assert!(r.enqueue_bulk(&ps(&[1, 2, 3])));
        assert!(!r.enqueue_bulk(&ps(&[4, 5, 6])));
        assert!(r.enqueue_bulk(&ps(&[4, 5])));
        assert_eq!(r.count(), 5);
        let mut out = [NULL; 6];
        assert!(!r.dequeue_bulk(&mut out));
        let mut out = [NULL; 4];
        assert!(r.dequeue_bulk(&mut out));
        assert_eq!(ids(&out), [1, 2, 3, 4]);
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn burst_takes_what_fits() {
        let r = Ring::new(4);
        assert_eq!(r.enqueue_burst(&ps(&[1, 2, 3])), 3);
        assert_eq!(r.enqueue_burst(&ps(&[4, 5, 6])), 1);
        assert_eq!(r.enqueue_burst(&ps(&[7])), 0);
        let mut out = [NULL; 8];
        assert_eq!(r.dequeue_burst(&mut out), 4);
        assert_eq!(ids(&out[..4]), [1, 2, 3, 4]);
        assert_eq!(r.dequeue_burst(&mut out), 0);
    }

    #[test]
    fn wraps_around_many_times() {
        let r = Ring::new(8);
        let mut out = [NULL; 3];
        let n = if cfg!(miri) { 500 } else { 10_000usize };
        for i in 0..n {
            assert!(r.enqueue_bulk(&ps(&[i, i + 1, i + 2])));
            assert!(r.dequeue_bulk(&mut out));
            assert_eq!(ids(&out), [i, i + 1, i + 2]);
        }
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn claims_are_exclusive_and_given_back() {
        let r = Ring::new(8);
        assert!(r.claim_producer());
        assert!(!r.claim_producer());
        assert!(r.claim_consumer());
        assert!(!r.claim_consumer());
        r.release_producer();
        r.release_consumer();
        assert!(r.claim_producer() && r.claim_consumer());
    }

    #[test]
    fn single_producer_consumer_keep_order_and_fill_exactly() {
        let r = Ring::new(6);
        assert!(r.claim_producer() && r.claim_consumer());
        assert_eq!(r.enqueue_burst_sp(&ps(&[1, 2, 3, 4])), 4);
        assert_eq!(r.enqueue_burst_sp(&ps(&[5, 6, 7])), 2);
        assert_eq!(r.enqueue_burst_sp(&ps(&[8])), 0);
        let mut out = [NULL; 4];
        assert_eq!(r.dequeue_burst_sc(&mut out), 4);
        assert_eq!(ids(&out), [1, 2, 3, 4]);
        // A multi-thread consumer and the single producer mix.
        r.release_consumer();
        assert!(r.dequeue_bulk(&mut out[..1]));
        assert_eq!(ids(&out[..1]), [5]);
        assert!(r.claim_consumer());
        assert_eq!(r.enqueue_burst_sp(&ps(&[9, 10, 11, 12, 13, 14])), 5);
        let mut all = [NULL; 8];
        assert_eq!(r.dequeue_burst_sc(&mut all), 6);
        assert_eq!(ids(&all[..6]), [6, 9, 10, 11, 12, 13]);
        assert_eq!(r.dequeue_burst_sc(&mut all), 0);
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn spsc_threads_pass_every_entry_in_order() {
        let r = Arc::new(Ring::new(64));
        let n = if cfg!(miri) { 300 } else { 200_000usize };
        assert!(r.claim_producer());
        let prod = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut next = 1usize;
                while next <= n {
                    let k = (next % 7 + 1).min(n + 1 - next);
                    let v: Vec<Obj> = (next..next + k).map(p).collect();
                    let mut done = 0;
                    while done < k {
                        let m = r.enqueue_burst_sp(&v[done..]);
                        if m == 0 {
                            std::thread::yield_now();
                        }
                        done += m;
                    }
                    next += k;
                }
                r.release_producer();
            })
        };
        assert!(r.claim_consumer());
        let mut want = 1usize;
        let mut buf = [NULL; 16];
        while want <= n {
            let m = r.dequeue_burst_sc(&mut buf[..(want % 11) + 1]);
            if m == 0 {
                std::thread::yield_now();
            }
            for &o in &buf[..m] {
                assert_eq!(o.addr() / 64, want);
                want += 1;
            }
        }
        prod.join().unwrap();
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn mpmc_conserves_entries() {
        let n = 1024usize;
        let r = Arc::new(Ring::new(n as u32));
        let all: Vec<usize> = (1..=n).collect();
        assert!(r.enqueue_bulk(&ps(&all)));
        let iters = if cfg!(miri) { 50 } else { 20_000 };
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [NULL; 8];
                    let k = 1 + t * 3;
                    for _ in 0..iters {
                        while !r.dequeue_bulk(&mut buf[..k]) {
                            std::thread::yield_now();
                        }
                        assert!(r.enqueue_bulk(&buf[..k]));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut out = vec![NULL; n];
        assert!(r.dequeue_bulk(&mut out));
        let mut got = ids(&out);
        got.sort_unstable();
        assert_eq!(got, all);
    }
}
