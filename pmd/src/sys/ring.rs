//! [`SpscRing`]: a single-producer/single-consumer ring of descriptors in
//! memory shared with the kernel (AF_XDP's fill, completion, RX and TX rings),
//! the index protocol written once.
//!
//! Protocol (as in the kernel's `xsk_queue.h` and libxdp), an instance of the
//! ownership-word rules of [`super::shared`]: the producer writes
//! descriptors, then publishes its index with a release store; the consumer
//! loads the producer index with acquire, reads the descriptors, then
//! publishes its own index with a release store, which hands the slots back.
//! Both sides cache the other's index and reload it only when the cache says
//! the ring is full/empty, so a burst costs two atomic operations, no
//! syscall and no allocation.

use super::shared::{Plain, Shared};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a ring's words and descriptors lie in its window (the kernel's
/// `struct xdp_ring_offset`), and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Offset of the producer index (u32).
    pub producer: usize,
    /// Offset of the consumer index (u32).
    pub consumer: usize,
    /// Offset of the flags word (u32).
    pub flags: usize,
    /// Offset of the descriptor array.
    pub desc: usize,
    /// Slots (a power of two).
    pub size: u32,
}

impl RingLayout {
    /// Bytes the ring needs from the start of its window.
    pub fn bytes<T>(&self) -> usize {
        self.desc + self.size as usize * std::mem::size_of::<T>()
    }
}

/// One user-space side of a shared index ring.
#[derive(Debug)]
pub struct SpscRing<T: Plain> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    /// Producer side: our next index. Consumer side: the last producer index seen.
    cached_prod: u32,
    /// Producer side: last consumer index seen + size. Consumer side: our next index.
    cached_cons: u32,
    _mem: Shared,
    _t: PhantomData<T>,
}

// SAFETY: the ring is a single-producer/single-consumer channel with the
// kernel; this handle is the only user-space side (not Clone, not Sync) and
// the pointers stay valid while `_mem` keeps the mapping alive.
unsafe impl<T: Plain + Send> Send for SpscRing<T> {}

impl<T: Plain> SpscRing<T> {
    /// The ring laid out as `layout` in `mem`, starting from the indices the
    /// kernel left there (both equal after `mmap`: an empty ring).
    ///
    /// # Panics
    /// When the layout does not fit `mem`, is misaligned, or `size` is not a
    /// power of two (the kernel's offsets are validated here, once).
    pub fn new(mem: Shared, layout: RingLayout) -> SpscRing<T> {
        assert!(
            layout.size.is_power_of_two(),
            "ring size {} is not a power of two",
            layout.size
        );
        let producer = mem.atomic_u32(layout.producer);
        let consumer = mem.atomic_u32(layout.consumer);
        let flags = mem.atomic_u32(layout.flags);
        let bytes = layout.size as usize * std::mem::size_of::<T>();
        let d = mem
            .sub(layout.desc, bytes)
            .expect("descriptor array inside the ring's mapping");
        assert!(
            d.addr().is_multiple_of(std::mem::align_of::<T>()),
            "descriptor array misaligned"
        );
        let descs = NonNull::new(d.addr() as *mut T).expect("mapped memory is not at address 0");
        // SAFETY: the index words were checked to lie in the live window.
        let (p0, c0) = unsafe {
            (
                producer.as_ref().load(Ordering::Acquire),
                consumer.as_ref().load(Ordering::Acquire),
            )
        };
        SpscRing {
            producer,
            consumer,
            flags,
            descs,
            mask: layout.size - 1,
            size: layout.size,
            cached_prod: p0,
            cached_cons: c0,
            _mem: mem,
            _t: PhantomData,
        }
    }

    #[inline(always)]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: checked at construction to lie in the mapping `_mem` keeps alive.
        unsafe { self.producer.as_ref() }
    }

    #[inline(always)]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    /// The ring's flags word (e.g. `XDP_RING_NEED_WAKEUP`).
    #[inline]
    pub fn flags(&self) -> u32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref().load(Ordering::Relaxed) }
    }

    /// Slots.
    pub fn size(&self) -> u32 {
        self.size
    }

    #[inline(always)]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size`, inside the descriptor array checked at
        // construction.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }

    // ---- producer side (fill, TX) ----

    /// Free slots, reloading the consumer index when the cache shows fewer than `want`.
    #[inline]
    pub fn prod_free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        // Acquire: the kernel's reads of the slots it released happen before we reuse them.
        self.cached_cons = self
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Write up to `max` entries produced by `f(i)`, publish them, return the count.
    #[inline]
    pub fn produce(&mut self, max: usize, mut f: impl FnMut(usize) -> T) -> usize {
        let n = self
            .prod_free(max.min(self.size as usize) as u32)
            .min(max as u32);
        for i in 0..n {
            let v = f(i as usize);
            // SAFETY: slot `cached_prod + i` is free (between our producer and
            // the consumer + size), so the kernel does not read it until we publish.
            unsafe {
                self.slot(self.cached_prod.wrapping_add(i))
                    .write_volatile(v)
            };
        }
        if n > 0 {
            self.cached_prod = self.cached_prod.wrapping_add(n);
            // Release: the descriptors above are visible before the new index.
            self.producer().store(self.cached_prod, Ordering::Release);
        }
        n as usize
    }

    /// Entries published by us and not yet consumed by the kernel.
    #[inline]
    pub fn prod_outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    // ---- consumer side (completion, RX) ----

    /// Entries ready, reloading the producer index when the cache shows fewer than `want`.
    #[inline]
    pub fn cons_avail(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want && avail > 0 {
            return avail;
        }
        // Acquire: the kernel's descriptor writes are visible after we see its index.
        self.cached_prod = self.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Read up to `max` entries into `f(i, entry)`, release them, return the count.
    #[inline]
    pub fn consume(&mut self, max: usize, mut f: impl FnMut(usize, T)) -> usize {
        let n = self
            .cons_avail(max.min(self.size as usize) as u32)
            .min(max as u32);
        for i in 0..n {
            // SAFETY: slot `cached_cons + i` was published by the kernel
            // (before the producer index we loaded with acquire) and is ours
            // until we advance the consumer index.
            let v = unsafe { self.slot(self.cached_cons.wrapping_add(i)).read_volatile() };
            f(i as usize, v);
        }
        if n > 0 {
            self.cached_cons = self.cached_cons.wrapping_add(n);
            // Release: our reads of the slots complete before the kernel may reuse them.
            self.consumer().store(self.cached_cons, Ordering::Release);
        }
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Mapping;

    /// A ring over anonymous memory (no kernel) exercising the index protocol
    /// and wrap-around; the test plays the kernel through a second window.
    #[test]
    fn produce_then_consume_wraps_around() {
        let size = 8u32;
        let mem = Shared::from_mapping(Mapping::anon(64 + size as usize * 8).unwrap());
        let layout = RingLayout {
            producer: 0,
            consumer: 4,
            flags: 8,
            desc: 64,
            size,
        };
        let kernel = mem.clone();
        let mut prod: SpscRing<u64> = SpscRing::new(mem.clone(), layout);
        let mut cons_idx = 0u32;
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..5 {
            let n = prod.produce(5, |_| {
                next += 1;
                next
            });
            assert_eq!(n, 5, "round {round}");
            assert_eq!(prod.prod_outstanding(), 5);
            // Consume by hand, as the kernel would.
            let p = kernel.load_u32(0, Ordering::Acquire);
            while cons_idx != p {
                expect += 1;
                let v: u64 = kernel.read(64 + (cons_idx & (size - 1)) as usize * 8);
                assert_eq!(v, expect);
                cons_idx = cons_idx.wrapping_add(1);
            }
            kernel.store_u32(4, cons_idx, Ordering::Release);
            assert_eq!(prod.prod_outstanding(), 0);
        }
        // Full ring: only `size` fit.
        assert_eq!(prod.produce(100, |i| i as u64), size as usize);
        assert_eq!(prod.produce(1, |_| 0), 0);
        // The other side: a consumer over the same memory reads them back.
        let mut cons: SpscRing<u64> = SpscRing::new(mem, layout);
        let mut c = 0;
        c += cons.consume(3, |i, v| assert_eq!(v, i as u64));
        c += cons.consume(100, |i, v| assert_eq!(v, i as u64 + 3));
        assert_eq!(c, size as usize);
        assert_eq!(cons.consume(1, |_, _| panic!("ring should be empty")), 0);
        assert_eq!(
            kernel.load_u32(4, Ordering::Acquire),
            cons_idx.wrapping_add(size)
        );
    }

    #[test]
    #[should_panic(expected = "descriptor array inside")]
    fn a_layout_beyond_the_mapping_is_refused() {
        let mem = Shared::from_mapping(Mapping::anon(4096).unwrap());
        let layout = RingLayout {
            producer: 0,
            consumer: 4,
            flags: 8,
            desc: 64,
            size: 1024,
        };
        let _ = SpscRing::<u64>::new(mem, layout);
    }
}
