//! The single-producer/single-consumer rings shared with the kernel
//! (fill, completion, RX, TX), mapped from the AF_XDP socket. The index
//! protocol (acquire/release, cached indices, no syscall per burst) is
//! [`crate::sys::SpscRing`]; this file maps the four rings and gives each
//! its typed, one-sided API.

use super::error::{hint_common, XdpError};
use crate::sys::{Mapping, RingLayout, Shared, Socket, SpscRing};

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

/// Offsets of one ring inside its mapping (`struct xdp_ring_offset`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingOffsets {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// Map the ring at page offset `pgoff` of socket `fd`, sized `size`
/// entries of `T` (the kernel validates offset and length; the layout is
/// checked against the mapping in [`SpscRing::new`]).
fn map_ring<T: crate::sys::Plain>(
    fd: &Socket,
    pgoff: u64,
    off: RingOffsets,
    size: RingSize,
    what: &str,
) -> Result<SpscRing<T>, XdpError> {
    let layout = RingLayout {
        producer: off.producer as usize,
        consumer: off.consumer as usize,
        flags: off.flags as usize,
        desc: off.desc as usize,
        size: size.get(),
    };
    let map = Mapping::shared(fd, pgoff, layout.bytes::<T>(), true)
        .map_err(|e| XdpError::sys(format!("mmap {what} ring"), e, hint_common))?;
    Ok(SpscRing::new(Shared::from_mapping(map), layout))
}

/// Generates a producer ring type (user space → kernel).
macro_rules! producer_ring {
    ($(#[$m:meta])* $name:ident, $t:ty) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name(SpscRing<$t>);

        impl $name {
            /// Map this ring of socket `fd` (sized with setsockopt before).
            pub(crate) fn map(
                fd: &Socket, pgoff: u64, off: RingOffsets, size: RingSize, what: &str,
            ) -> Result<$name, XdpError> {
                Ok($name(map_ring(fd, pgoff, off, size, what)?))
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
                self.0.size()
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
        pub struct $name(SpscRing<$t>);

        impl $name {
            /// Map this ring of socket `fd` (sized with setsockopt before).
            pub(crate) fn map(
                fd: &Socket, pgoff: u64, off: RingOffsets, size: RingSize, what: &str,
            ) -> Result<$name, XdpError> {
                Ok($name(map_ring(fd, pgoff, off, size, what)?))
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
                self.0.size()
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
}
