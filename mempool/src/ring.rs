//! A bounded multi-producer multi-consumer ring of object addresses, in the
//! shape of DPDK's `rte_ring` (head/tail per side, bulk all-or-nothing).
//!
//! Slots are plain `UnsafeCell<*mut MbufHeader>` (pointers keep their
//! provenance), written by the producer that reserved them and read by the
//! consumer that reserved them; a side publishes its slots with the release
//! store of its tail and the other side observes them with the acquire load
//! of that tail (and a side waiting for its earlier reservations acquires
//! their tails), so no slot is ever accessed by two threads without a
//! happens-before between them (Miri's race detector checks the tests). The
//! copies are runs of 8 addresses (vector moves) instead of one atomic
//! load and store per address: ~1.5 instead of ~2.75 instructions per
//! address. It is touched by the pool only when a per-lcore cache
//! refills or flushes, in bulk.
//!
//! A side with one thread at a time (a ring port's TX queue, its RX queue)
//! takes the single-producer / single-consumer paths after claiming the side
//! (crate-private: [`crate::MbufRing`] hands out the claims as owned
//! producer/consumer handles): no compare-exchange, no wait for earlier
//! reservations, and the other side's tail cached so its cache line is read
//! only when the cached value does not cover the burst. One acquire (only
//! then) and one release store per burst, like DPDK's `rte_ring` with
//! `RING_F_SP_ENQ | RING_F_SC_DEQ`.

use crate::mbuf::MbufHeader;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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
    slots: Box<[UnsafeCell<Obj>]>,
}

// SAFETY: the ring owns plain object addresses (never dereferenced here);
// every slot access is ordered by the head/tail protocol (see the module
// text), so sharing the ring between threads races on no slot. Sending it
// moves only addresses.
#[allow(unsafe_code)]
unsafe impl Send for Ring {}
// SAFETY: as for Send.
#[allow(unsafe_code)]
unsafe impl Sync for Ring {}

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
                .map(|_| UnsafeCell::new(std::ptr::null_mut()))
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
    /// false when another thread holds the claim.
    pub(crate) fn claim_producer(&self) -> bool {
        claim(&self.prod, &self.cons)
    }

    /// Give the producer claim back (the holder, after its last enqueue).
    pub(crate) fn release_producer(&self) {
        self.prod.single.store(false, Ordering::Release);
    }

    /// Become this ring's only consumer until [`Ring::release_consumer`];
    /// as [`Ring::claim_producer`], for [`Ring::dequeue_burst_sc`].
    pub(crate) fn claim_consumer(&self) -> bool {
        claim(&self.cons, &self.prod)
    }

    /// Give the consumer claim back.
    pub(crate) fn release_consumer(&self) {
        self.cons.single.store(false, Ordering::Release);
    }

    /// [`Ring::enqueue_burst`] for the holder of the producer claim: the
    /// free space from the cached consumer tail (re-read, acquire, only
    /// when it does not cover the burst), the slots, one release store.
    ///
    /// # Safety
    /// The caller holds the producer claim ([`Ring::claim_producer`]) and
    /// no other thread enqueues (on any path) while it is held: two
    /// writers of one slot would race.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn enqueue_burst_sp(&self, objs: &[Obj]) -> usize {
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
        // SAFETY: slots head..head+n are free (the consumers published
        // that they left them: the acquire above, now or when cached) and
        // reserved by this, the only producer (the caller's contract).
        unsafe { self.fill(head, objs.as_ptr(), n as usize) };
        let next = head.wrapping_add(n);
        self.prod.head.store(next, Ordering::Relaxed);
        self.prod.tail.store(next, Ordering::Release);
        n as usize
    }

    /// [`Ring::dequeue_burst`] for the holder of the consumer claim; as
    /// [`Ring::enqueue_burst_sp`] with the producer tail cached.
    ///
    /// # Safety
    /// The caller holds the consumer claim and no other thread dequeues
    /// while it is held: two readers would both own an entry.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn dequeue_burst_sc(&self, out: &mut [Obj]) -> usize {
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
        // SAFETY: slots head..head+n were published by the producers (the
        // acquire above) and are reserved by this, the only consumer.
        unsafe { self.take(head, out.as_mut_ptr(), n as usize) };
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
        // SAFETY: the compare-exchange reserved slots head..head+n for this
        // producer alone; the consumers left them (the cons tail acquire).
        #[allow(unsafe_code)]
        unsafe {
            self.fill(head, objs.as_ptr(), n as usize)
        };
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
        // SAFETY: the compare-exchange reserved slots head..head+n for this
        // consumer alone; the producers published them (prod tail acquire).
        #[allow(unsafe_code)]
        unsafe {
            self.take(head, out.as_mut_ptr(), n as usize)
        };
        wait_turn(&self.cons.tail, head);
        self.cons
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }
}

#[allow(unsafe_code)]
impl Ring {
    /// The `n` slots from index `head` on, as at most two runs (the second
    /// when they wrap): their first slot and lengths.
    #[inline(always)]
    fn span(&self, head: u32, n: usize) -> (*mut Obj, usize, usize) {
        debug_assert!(n <= self.slots.len());
        let i = (head & self.mask) as usize;
        let first = n.min(self.slots.len() - i);
        // UnsafeCell<Obj> has the layout of Obj; writing through the cell's
        // pointer is what UnsafeCell permits.
        let base = UnsafeCell::raw_get(self.slots.as_ptr());
        // SAFETY: i < slots.len() (masked), so base + i is inside the slots.
        (unsafe { base.add(i) }, first, n - first)
    }

    /// Store `n` objects from `objs` in the slots from `head` on.
    ///
    /// # Safety
    /// `objs` holds `n` ≤ capacity readable entries and the caller has
    /// reserved these slots (no other thread touches them until published).
    #[inline(always)]
    unsafe fn fill(&self, head: u32, objs: *const Obj, n: usize) {
        let (at, first, rest) = self.span(head, n);
        let base = UnsafeCell::raw_get(self.slots.as_ptr());
        // SAFETY: span() keeps both runs inside the slots; the caller's
        // contract gives the reads and the exclusive writes.
        unsafe {
            copy_objs(objs, at, first);
            copy_objs(objs.add(first), base, rest);
        }
    }

    /// Load the `n` slots from `head` on into `out`.
    ///
    /// # Safety
    /// `out` has room for `n` ≤ capacity entries and the caller has
    /// reserved these published slots.
    #[inline(always)]
    unsafe fn take(&self, head: u32, out: *mut Obj, n: usize) {
        let (at, first, rest) = self.span(head, n);
        let base = UnsafeCell::raw_get(self.slots.as_ptr());
        // SAFETY: as in fill(), reading the slots and writing `out`.
        unsafe {
            copy_objs(at, out, first);
            copy_objs(base, out.add(first), rest);
        }
    }
}

/// Copy `n` addresses: runs of 8, each written out as 8 moves (the
/// compiler pairs them into 16-byte vector moves; a run of 16 written out
/// it does not), then 4, 2, 1. Written
/// out, not as a loop over single entries: LLVM turns such a loop (or one
/// over fixed-size copies) into a `memcpy` call, whose code the CPU picks at
/// run time (the instruction-count gate must not depend on the CPU).
///
/// # Safety
/// `src` readable and `dst` writable for `n` entries; they do not overlap.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn copy_objs(src: *const Obj, dst: *mut Obj, n: usize) {
    let mut i = 0;
    macro_rules! copy {
        ($($k:literal)*) => {
            // SAFETY: the caller checked i + the run ≤ n: inside both ranges
            // (the function's contract).
            $( unsafe { dst.add(i + $k).write(src.add(i + $k).read()) }; )*
        };
    }
    while n - i >= 8 {
        copy!(0 1 2 3 4 5 6 7);
        i += 8;
    }
    if n - i >= 4 {
        copy!(0 1 2 3);
        i += 4;
    }
    if n - i >= 2 {
        copy!(0 1);
        i += 2;
    }
    if n - i >= 1 {
        copy!(0);
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
    // Acquire: the earlier reservations' slot accesses happen before this
    // one's publication (the other side acquires only the last tail).
    while tail.load(Ordering::Acquire) != mine {
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

    /// The SP enqueue; every caller below holds the producer claim and is
    /// the ring's only producer thread.
    #[allow(unsafe_code)]
    fn sp(r: &Ring, objs: &[Obj]) -> usize {
        // SAFETY: see above.
        unsafe { r.enqueue_burst_sp(objs) }
    }

    /// The SC dequeue; as `sp` for the consumer claim.
    #[allow(unsafe_code)]
    fn sc(r: &Ring, out: &mut [Obj]) -> usize {
        // SAFETY: see above.
        unsafe { r.dequeue_burst_sc(out) }
    }

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
        assert_eq!(sp(&r, &ps(&[1, 2, 3, 4])), 4);
        assert_eq!(sp(&r, &ps(&[5, 6, 7])), 2);
        assert_eq!(sp(&r, &ps(&[8])), 0);
        let mut out = [NULL; 4];
        assert_eq!(sc(&r, &mut out), 4);
        assert_eq!(ids(&out), [1, 2, 3, 4]);
        // A multi-thread consumer and the single producer mix.
        r.release_consumer();
        assert!(r.dequeue_bulk(&mut out[..1]));
        assert_eq!(ids(&out[..1]), [5]);
        assert!(r.claim_consumer());
        assert_eq!(sp(&r, &ps(&[9, 10, 11, 12, 13, 14])), 5);
        let mut all = [NULL; 8];
        assert_eq!(sc(&r, &mut all), 6);
        assert_eq!(ids(&all[..6]), [6, 9, 10, 11, 12, 13]);
        assert_eq!(sc(&r, &mut all), 0);
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
                        let m = sp(&r, &v[done..]);
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
            let m = sc(&r, &mut buf[..(want % 11) + 1]);
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
