//! A bounded multi-producer multi-consumer ring of object addresses, in the
//! shape of DPDK's `rte_ring` (head/tail per side, bulk all-or-nothing).
//!
//! Slots are `AtomicUsize` accessed with relaxed loads and stores (plain
//! moves on x86), published by the release store of the tail and observed by
//! the acquire load of the other side's tail, so this module needs no `unsafe`.
//! It is touched only when a per-lcore cache refills or flushes, in bulk.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

#[repr(align(128))]
#[derive(Debug, Default)]
struct HeadTail {
    head: AtomicU32,
    tail: AtomicU32,
}

/// The ring.
#[derive(Debug)]
pub struct Ring {
    prod: HeadTail,
    cons: HeadTail,
    mask: u32,
    capacity: u32,
    slots: Box<[AtomicUsize]>,
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
            slots: (0..size).map(|_| AtomicUsize::new(0)).collect(),
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
    pub fn enqueue_bulk(&self, objs: &[usize]) -> bool {
        objs.is_empty() || self.enqueue(objs, false) == objs.len()
    }

    /// Enqueue as many of `objs` as fit, from the front; returns how many.
    pub fn enqueue_burst(&self, objs: &[usize]) -> usize {
        if objs.is_empty() {
            return 0;
        }
        self.enqueue(objs, true)
    }

    /// Dequeue exactly `out.len()` entries or nothing. Returns false when the
    /// ring holds fewer.
    pub fn dequeue_bulk(&self, out: &mut [usize]) -> bool {
        out.is_empty() || self.dequeue(out, false) == out.len()
    }

    /// Dequeue up to `out.len()` entries; returns how many.
    pub fn dequeue_burst(&self, out: &mut [usize]) -> usize {
        if out.is_empty() {
            return 0;
        }
        self.dequeue(out, true)
    }

    #[inline]
    fn enqueue(&self, objs: &[usize], burst: bool) -> usize {
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
        for (i, &o) in objs[..n as usize].iter().enumerate() {
            self.slots[(head.wrapping_add(i as u32) & self.mask) as usize]
                .store(o, Ordering::Relaxed);
        }
        wait_turn(&self.prod.tail, head);
        self.prod
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }

    #[inline]
    fn dequeue(&self, out: &mut [usize], burst: bool) -> usize {
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
        for (i, o) in out[..n as usize].iter_mut().enumerate() {
            *o = self.slots[(head.wrapping_add(i as u32) & self.mask) as usize]
                .load(Ordering::Relaxed);
        }
        wait_turn(&self.cons.tail, head);
        self.cons
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }
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

    #[test]
    fn bulk_all_or_nothing() {
        let r = Ring::new(5);
        assert!(r.enqueue_bulk(&[1, 2, 3]));
        assert!(!r.enqueue_bulk(&[4, 5, 6]));
        assert!(r.enqueue_bulk(&[4, 5]));
        assert_eq!(r.count(), 5);
        let mut out = [0; 6];
        assert!(!r.dequeue_bulk(&mut out));
        let mut out = [0; 4];
        assert!(r.dequeue_bulk(&mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn burst_takes_what_fits() {
        let r = Ring::new(4);
        assert_eq!(r.enqueue_burst(&[1, 2, 3]), 3);
        assert_eq!(r.enqueue_burst(&[4, 5, 6]), 1);
        assert_eq!(r.enqueue_burst(&[7]), 0);
        let mut out = [0; 8];
        assert_eq!(r.dequeue_burst(&mut out), 4);
        assert_eq!(out[..4], [1, 2, 3, 4]);
        assert_eq!(r.dequeue_burst(&mut out), 0);
    }

    #[test]
    fn wraps_around_many_times() {
        let r = Ring::new(8);
        let mut out = [0; 3];
        for i in 0..10_000usize {
            assert!(r.enqueue_bulk(&[i, i + 1, i + 2]));
            assert!(r.dequeue_bulk(&mut out));
            assert_eq!(out, [i, i + 1, i + 2]);
        }
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn mpmc_conserves_entries() {
        let n = 1024usize;
        let r = Arc::new(Ring::new(n as u32));
        let all: Vec<usize> = (1..=n).collect();
        assert!(r.enqueue_bulk(&all));
        let iters = if cfg!(miri) { 50 } else { 20_000 };
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [0usize; 8];
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
        let mut out = vec![0; n];
        assert!(r.dequeue_bulk(&mut out));
        out.sort_unstable();
        assert_eq!(out, all);
    }
}
