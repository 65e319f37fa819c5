//! The single-producer/single-consumer rings shared with the kernel
//! (fill, completion, RX, TX), mapped from the AF_XDP socket. The index
//! protocol (acquire/release, cached indices, no syscall per burst) is
//! [`crate::sys::SpscRing`]; this file maps the four rings and gives each
//! its typed, one-sided API.

use super::error::{hint_common, XdpError};
use crate::sys::{Mapping, Plain, RingLayout, Shared, Socket, SpscRing};
use std::marker::PhantomData;

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
fn map_ring<T: Plain>(
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

/// One of the four rings: entries of `T`, produced by user space when `D`
/// is [`Produce`] (fill, TX), consumed by it when `D` is [`Consume`]
/// (completion, RX); the kernel holds the other side.
#[derive(Debug)]
pub struct Ring<T: Plain, D>(SpscRing<T>, PhantomData<D>);

/// User space posts into the ring (fill, TX).
#[derive(Debug)]
pub enum Produce {}

/// User space takes from the ring (completion, RX).
#[derive(Debug)]
pub enum Consume {}

impl<T: Plain, D> Ring<T, D> {
    /// Map this ring of socket `fd` (sized with setsockopt before).
    pub(crate) fn map(
        fd: &Socket,
        pgoff: u64,
        off: RingOffsets,
        size: RingSize,
        what: &str,
    ) -> Result<Ring<T, D>, XdpError> {
        Ok(Ring(map_ring(fd, pgoff, off, size, what)?, PhantomData))
    }

    /// The ring's size.
    pub fn size(&self) -> u32 {
        self.0.size()
    }
}

impl<T: Plain> Ring<T, Produce> {
    /// Post up to `max` entries, the `i`-th produced by `f(i)`; returns how many were
    /// posted (fewer when the ring is full). No syscall, no allocation.
    pub fn produce_with(&mut self, max: usize, f: impl FnMut(usize) -> T) -> usize {
        self.0.produce(max, f)
    }

    /// Post a prefix of `items`; returns how many were posted.
    pub fn produce(&mut self, items: &[T]) -> usize {
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

    /// True when the kernel asks for a wakeup syscall (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.0.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T: Plain> Ring<T, Consume> {
    /// Take up to `max` entries, handing the `i`-th to `f(i, entry)`; returns how many.
    /// No syscall, no allocation.
    pub fn consume_with(&mut self, max: usize, f: impl FnMut(usize, T)) -> usize {
        self.0.consume(max, f)
    }

    /// Take entries into a prefix of `out`; returns how many.
    pub fn consume(&mut self, out: &mut [T]) -> usize {
        let n = out.len();
        self.0.consume(n, |i, v| out[i] = v)
    }

    /// Entries ready to take right now.
    pub fn available(&mut self) -> usize {
        self.0.cons_avail(u32::MAX) as usize
    }
}

/// An RX or TX descriptor: UMEM address (with the unaligned offset in the top
/// 16 bits on RX) and frame length.
pub type XdpDesc = libc::xdp_desc;

/// The fill ring: UMEM chunk addresses given to the kernel for RX.
pub type FillRing = Ring<u64, Produce>;
/// The completion ring: UMEM addresses of transmitted frames, returned verbatim.
pub type CompRing = Ring<u64, Consume>;
/// The TX ring: frames given to the kernel to send.
pub type TxRing = Ring<XdpDesc, Produce>;
/// The RX ring: received frames.
pub type RxRing = Ring<XdpDesc, Consume>;

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
