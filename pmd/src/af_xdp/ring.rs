//! The single-producer/single-consumer rings shared with the kernel
//! (fill, completion, RX, TX), mapped from the AF_XDP socket.
//!
//! Protocol (as in the kernel's `xsk_queue.h` and libxdp): the producer
//! writes descriptors, then publishes its index with a release store; the
//! consumer reads the producer index with an acquire load, reads the
//! descriptors, then publishes its own index with a release store, which
//! hands the slots back. Both sides cache the other's index and reload it
//! only when the cache says the ring is full/empty, so a burst costs two
//! atomic operations, no syscall and no allocation.

use super::error::{hint_common, XdpError};
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A ring size: a power of two between 1 and 2^24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSize(u32);

impl RingSize {
    /// Validate `n`.
    ///
    /// # Errors
    /// [`XdpError::Config`] when `n` is not a power of two in range.
    pub fn new(n: u32) -> Result<RingSize, XdpError> {
        if n.is_power_of_two() && n <= 1 << 24 {
            Ok(RingSize(n))
        } else {
            Err(XdpError::Config(format!(
                "ring size {n} must be a power of two between 1 and 16777216"
            )))
        }
    }

    /// The number of slots.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// One mmap'd ring area; unmapped on drop.
#[derive(Debug)]
struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is a mapping this struct created and owns;
        // the ring handles that point into it are dropped with it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Offsets of one ring inside its mapping (`struct xdp_ring_offset`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingOffsets {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// The raw ring: pointers into the mapping plus the cached indices.
#[derive(Debug)]
struct Ring<T> {
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
    _map: RingMap,
    _t: PhantomData<T>,
}

// SAFETY: the ring is a single-producer/single-consumer channel with the
// kernel; this handle is the only user-space side and is moved, never shared.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Map the ring at page offset `pgoff` of socket `fd`.
    ///
    /// # Safety
    /// `fd` must be an AF_XDP socket on which this ring was sized to `size`
    /// entries of `T` with `setsockopt`, `off` must be the kernel's offsets
    /// for this ring, and `T` must be the ring's descriptor type.
    unsafe fn map(
        fd: RawFd,
        pgoff: u64,
        off: RingOffsets,
        size: RingSize,
        what: &str,
    ) -> Result<Ring<T>, XdpError> {
        let len = off.desc as usize + size.get() as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // validates the offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XdpError::last_os(format!("mmap {what} ring"), hint_common));
        }
        let base = NonNull::new(p.cast::<u8>()).expect("mmap returned a non-null mapping");
        let map = RingMap { base, len };
        let at = |o: u64| {
            // SAFETY: every offset the kernel reports lies inside the mapping of `len` bytes.
            unsafe { NonNull::new_unchecked(base.as_ptr().add(o as usize)) }
        };
        // The kernel state at mmap: both indices equal (empty ring).
        let producer: NonNull<AtomicU32> = at(off.producer).cast();
        let consumer: NonNull<AtomicU32> = at(off.consumer).cast();
        // SAFETY: the index words are 4-byte aligned u32s in the live mapping.
        let (p0, c0) = unsafe {
            (
                producer.as_ref().load(Ordering::Acquire),
                consumer.as_ref().load(Ordering::Acquire),
            )
        };
        Ok(Ring {
            producer,
            consumer,
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: size.get() - 1,
            size: size.get(),
            cached_prod: p0,
            cached_cons: c0,
            _map: map,
            _t: PhantomData,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping owned by `self`.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping owned by `self`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> u32 {
        // SAFETY: points into the mapping owned by `self`.
        unsafe { self.flags.as_ref().load(Ordering::Relaxed) }
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size`, inside the descriptor array.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }

    // ---- producer side (fill, TX) ----

    /// Free slots, reloading the consumer index when the cache shows fewer than `want`.
    fn prod_free(&mut self, want: u32) -> u32 {
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
    fn produce(&mut self, max: usize, mut f: impl FnMut(usize) -> T) -> usize {
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
    fn prod_outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    // ---- consumer side (completion, RX) ----

    fn cons_avail(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want && avail > 0 {
            return avail;
        }
        // Acquire: the kernel's descriptor writes are visible after we see its index.
        self.cached_prod = self.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Read up to `max` entries into `f(i, entry)`, release them, return the count.
    fn consume(&mut self, max: usize, mut f: impl FnMut(usize, T)) -> usize {
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

/// Generates a producer ring type (user space → kernel).
macro_rules! producer_ring {
    ($(#[$m:meta])* $name:ident, $t:ty) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name(Ring<$t>);

        impl $name {
            /// # Safety
            /// As for the private `Ring::map`.
            pub(crate) unsafe fn map(
                fd: RawFd, pgoff: u64, off: RingOffsets, size: RingSize, what: &str,
            ) -> Result<$name, XdpError> {
                // SAFETY: forwarded caller contract.
                Ok($name(unsafe { Ring::map(fd, pgoff, off, size, what)? }))
            }

            /// Post up to `max` entries, the `i`-th produced by `f(i)`; returns how many were
            /// posted (fewer when the ring is full). No syscall, no allocation.
            pub fn produce_with(&mut self, max: usize, f: impl FnMut(usize) -> $t) -> usize {
                self.0.produce(max, f)
            }

            /// Post a prefix of `items`; returns how many were posted.
            pub fn produce(&mut self, items: &[$t]) -> usize {
                self.0.produce(items.len(), |i| items[i])
            }

            /// Slots free for posting right now.
            pub fn free(&mut self) -> usize {
                self.0.prod_free(u32::MAX) as usize
            }

            /// Posted entries the kernel has not consumed yet.
            pub fn outstanding(&self) -> usize {
                self.0.prod_outstanding() as usize
            }

            /// The ring's size.
            pub fn size(&self) -> u32 {
                self.0.size
            }

            /// True when the kernel asks for a wakeup syscall (`XDP_RING_NEED_WAKEUP`).
            pub fn needs_wakeup(&self) -> bool {
                self.0.flags() & libc::XDP_RING_NEED_WAKEUP != 0
            }
        }
    };
}

/// Generates a consumer ring type (kernel → user space).
macro_rules! consumer_ring {
    ($(#[$m:meta])* $name:ident, $t:ty) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name(Ring<$t>);

        impl $name {
            /// # Safety
            /// As for the private `Ring::map`.
            pub(crate) unsafe fn map(
                fd: RawFd, pgoff: u64, off: RingOffsets, size: RingSize, what: &str,
            ) -> Result<$name, XdpError> {
                // SAFETY: forwarded caller contract.
                Ok($name(unsafe { Ring::map(fd, pgoff, off, size, what)? }))
            }

            /// Take up to `max` entries, handing the `i`-th to `f(i, entry)`; returns how many.
            /// No syscall, no allocation.
            pub fn consume_with(&mut self, max: usize, f: impl FnMut(usize, $t)) -> usize {
                self.0.consume(max, f)
            }

            /// Take entries into a prefix of `out`; returns how many.
            pub fn consume(&mut self, out: &mut [$t]) -> usize {
                let n = out.len();
                self.0.consume(n, |i, v| out[i] = v)
            }

            /// Entries ready to take right now.
            pub fn available(&mut self) -> usize {
                self.0.cons_avail(u32::MAX) as usize
            }

            /// The ring's size.
            pub fn size(&self) -> u32 {
                self.0.size
            }
        }
    };
}

/// An RX or TX descriptor: UMEM address (with the unaligned offset in the top
/// 16 bits on RX) and frame length.
pub type XdpDesc = libc::xdp_desc;

producer_ring!(
    /// The fill ring: UMEM chunk addresses given to the kernel for RX.
    FillRing,
    u64
);
consumer_ring!(
    /// The completion ring: UMEM addresses of transmitted frames, returned verbatim.
    CompRing,
    u64
);
producer_ring!(
    /// The TX ring: frames given to the kernel to send.
    TxRing,
    XdpDesc
);
consumer_ring!(
    /// The RX ring: received frames.
    RxRing,
    XdpDesc
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_must_be_powers_of_two() {
        assert!(RingSize::new(2048).is_ok());
        assert!(RingSize::new(1).is_ok());
        for bad in [0, 3, 1000, 1 << 25] {
            assert!(
                matches!(RingSize::new(bad), Err(XdpError::Config(_))),
                "{bad}"
            );
        }
    }

    /// A heap-backed ring (no kernel) exercising the index protocol and wrap-around.
    #[test]
    fn produce_then_consume_wraps_around() {
        let size = 8u32;
        let len = 64 + size as usize * 8;
        // SAFETY: an anonymous private mapping standing in for the kernel's.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = NonNull::new(p.cast::<u8>()).unwrap();
        let at = |o: usize| {
            // SAFETY: offsets below `len`.
            unsafe { NonNull::new_unchecked(base.as_ptr().add(o)) }
        };
        let mut prod: Ring<u64> = Ring {
            producer: at(0).cast(),
            consumer: at(4).cast(),
            flags: at(8).cast(),
            descs: at(64).cast(),
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: size,
            _map: RingMap { base, len },
            _t: PhantomData,
        };
        // The consumer view shares the same memory but must not unmap it.
        let mut cons_prod = 0u32;
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
            cons_prod = cons_prod.max(prod.producer().load(Ordering::Acquire));
            while cons_idx != cons_prod {
                expect += 1;
                // SAFETY: published slot.
                let v = unsafe { prod.slot(cons_idx).read() };
                assert_eq!(v, expect);
                cons_idx = cons_idx.wrapping_add(1);
            }
            prod.consumer().store(cons_idx, Ordering::Release);
            assert_eq!(prod.prod_outstanding(), 0);
        }
        // Full ring: only `size` fit.
        assert_eq!(prod.produce(100, |i| i as u64), size as usize);
        assert_eq!(prod.produce(1, |_| 0), 0);
        // Switch roles: read back the same memory as a consumer ring.
        let mut c = 0;
        prod.cached_cons = cons_idx;
        prod.cached_prod = cons_idx;
        c += prod.consume(3, |i, v| assert_eq!(v, i as u64));
        c += prod.consume(100, |i, v| assert_eq!(v, i as u64 + 3));
        assert_eq!(c, size as usize);
        assert_eq!(prod.consume(1, |_, _| panic!("ring should be empty")), 0);
    }
}
