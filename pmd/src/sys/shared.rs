//! [`Shared`]: the one accessor for memory that another agent — the kernel
//! (socket rings) or a device (registers, DMA rings) — reads and writes
//! while we do.
//!
//! A window is an address range plus a keep-alive of what backs it (a
//! [`Mapping`] or the application's [`ExtMem`]); it is bounds-checked on
//! every access and narrowed with [`Shared::sub`]. No Rust reference into
//! the memory is ever handed out: bytes come in and out by copy
//! ([`Shared::copy_in`], [`Shared::copy_out`]), integers by value. So the
//! other side writing at any time cannot break Rust's aliasing rules; at
//! worst a misbehaving peer changes the values we read.
//!
//! # The ownership-word rules (written once, used by every ring)
//!
//! Each slot, frame or block belongs to one side at a time, and ownership
//! moves through a 32-bit word in the shared memory (an index or a status):
//!
//! * **Giving a slot away**: write its contents first (plain writes), then
//!   store the word with [`Ordering::Release`] ([`Shared::store_u32`]), so the
//!   contents are visible before the word says "yours".
//! * **Taking a slot**: load the word with [`Ordering::Acquire`]
//!   ([`Shared::load_u32`]) before reading the contents, so the other side's
//!   writes are visible once the word says "mine".
//! * Plain [`Shared::read`]/[`Shared::write`]/copies touch only what our
//!   side owns at that moment.
//!
//! Device registers use the volatile accessors ([`Shared::read32`] …): each
//! is exactly one naturally aligned little-endian access, never folded or
//! torn.

use super::mmap::Mapping;
use std::any::Any;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use xfwd_mempool::ExtMem;

/// Types for which every bit pattern (all zero included) is a valid value:
/// integers, byte arrays and the kernel's plain C structs. Only these are
/// read from or written to shared memory and passed to the kernel by pointer.
///
/// # Safety
/// Implement only for `Copy` types without pointers, references, enums,
/// `bool`s or other invariants.
pub unsafe trait Plain: Copy + 'static {
    /// The all-zero value.
    fn zeroed() -> Self {
        // SAFETY: every bit pattern, zero included, is valid for Plain types.
        unsafe { std::mem::zeroed() }
    }
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: an integer, byte array or C struct of integers (and
        // integer arrays) from the kernel headers: every bit pattern is valid.
        unsafe impl Plain for $t {}
    )* };
}

plain!(
    u8,
    u16,
    u32,
    u64,
    i32,
    [u8; 2],
    [u8; 3],
    [u8; 4],
    [u8; 6],
    [u8; 8],
    [u8; 16],
    libc::xdp_desc,
    libc::xdp_umem_reg,
    libc::xdp_mmap_offsets,
    libc::xdp_statistics,
    libc::xdp_options,
    libc::sockaddr_xdp,
    libc::sockaddr_ll,
    libc::packet_mreq,
    libc::tpacket_req3,
    libc::tpacket_stats_v3,
    libc::ifreq,
    libc::pollfd,
);

/// A bounds-checked window into shared memory.
#[derive(Clone)]
pub struct Shared {
    base: NonNull<u8>,
    len: usize,
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: a Shared is an address range plus an Arc that keeps it mapped; no
// reference into the memory exists, and every access is a copy or an atomic
// or volatile integer access. Which thread uses which part (a queue's ring
// belongs to the worker owning the queue) is the driver's discipline, as for
// device registers in C.
unsafe impl Send for Shared {}
// SAFETY: as above; `&Shared` allows only those copies and integer accesses.
unsafe impl Sync for Shared {}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared({:p}+{:#x})", self.base, self.len)
    }
}

impl Shared {
    /// A window over all of `map` (which it keeps alive).
    pub fn from_mapping(map: Mapping) -> Shared {
        let base = NonNull::new(map.as_ptr()).unwrap_or(NonNull::dangling());
        let len = map.len();
        Shared {
            base,
            len,
            _owner: Arc::new(map),
        }
    }

    /// A window over all of `mem` (device rings in the application's memory).
    pub fn over_extmem(mem: Arc<ExtMem>) -> Shared {
        let base = NonNull::new(mem.as_ptr()).unwrap_or(NonNull::dangling());
        let len = mem.len();
        Shared {
            base,
            len,
            _owner: mem,
        }
    }

    /// The narrower window `off..off+len`, or `None` when it does not fit.
    pub fn sub(&self, off: usize, len: usize) -> Option<Shared> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Shared {
            // SAFETY: off <= self.len: the result stays inside (or one past) the window.
            base: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off)) },
            len,
            _owner: Arc::clone(&self._owner),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of byte 0 (for IOVA arithmetic and logs only).
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// `off..off+len` lies inside the window (check before a copy of
    /// bounds a peer chose, so a bad one is refused instead of panicking).
    #[inline(always)]
    pub fn contains(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|e| e <= self.len)
    }

    /// The address of `off..off+size`, checked to lie inside.
    #[inline(always)]
    fn span(&self, off: usize, size: usize) -> *mut u8 {
        assert!(
            self.contains(off, size),
            "shared-memory access of {size} bytes at {off:#x} outside a window of {:#x}",
            self.len
        );
        // SAFETY: checked just above: off + size <= len.
        unsafe { self.base.as_ptr().add(off) }
    }

    /// The address of a naturally aligned `T` at `off`, checked.
    #[inline(always)]
    fn at<T>(&self, off: usize) -> *mut T {
        let p = self.span(off, std::mem::size_of::<T>());
        assert!(
            (p as usize).is_multiple_of(std::mem::align_of::<T>()),
            "shared-memory access of {} bytes at {off:#x} misaligned",
            std::mem::size_of::<T>()
        );
        p.cast()
    }

    /// Atomic load of the ownership word at `off` (see the module rules).
    ///
    /// # Panics
    /// When `off` is outside the window or not 4-byte aligned.
    #[inline(always)]
    pub fn load_u32(&self, off: usize, order: Ordering) -> u32 {
        // SAFETY: `at` checked bounds and alignment; AtomicU32 has u32's
        // layout; the memory is mapped while `self` lives.
        unsafe { (*self.at::<AtomicU32>(off)).load(order) }
    }

    /// Atomic store of the ownership word at `off` (see the module rules).
    ///
    /// # Panics
    /// When `off` is outside the window or not 4-byte aligned.
    #[inline(always)]
    pub fn store_u32(&self, off: usize, v: u32, order: Ordering) {
        // SAFETY: as in load_u32.
        unsafe { (*self.at::<AtomicU32>(off)).store(v, order) }
    }

    /// Atomic load of a 16-bit ownership word (memif's ring head and tail).
    ///
    /// # Panics
    /// When `off` is outside the window or not 2-byte aligned.
    #[inline(always)]
    pub fn load_u16(&self, off: usize, order: Ordering) -> u16 {
        // SAFETY: as in load_u32, for an AtomicU16.
        unsafe { (*self.at::<AtomicU16>(off)).load(order) }
    }

    /// Atomic store of a 16-bit ownership word.
    ///
    /// # Panics
    /// When `off` is outside the window or not 2-byte aligned.
    #[inline(always)]
    pub fn store_u16(&self, off: usize, v: u16, order: Ordering) {
        // SAFETY: as in load_u32, for an AtomicU16.
        unsafe { (*self.at::<AtomicU16>(off)).store(v, order) }
    }

    /// The atomic word at `off` (for rings that keep it at hand).
    ///
    /// # Panics
    /// When `off` is outside the window or not 4-byte aligned.
    pub(crate) fn atomic_u32(&self, off: usize) -> NonNull<AtomicU32> {
        // SAFETY: `at` never returns null (it points into the window).
        unsafe { NonNull::new_unchecked(self.at::<AtomicU32>(off)) }
    }

    /// Plain (possibly unaligned) read of a `T` our side owns at `off`.
    ///
    /// # Panics
    /// When outside the window.
    #[inline(always)]
    pub fn read<T: Plain>(&self, off: usize) -> T {
        // SAFETY: in bounds (checked); any bit pattern is a valid T.
        unsafe {
            self.span(off, std::mem::size_of::<T>())
                .cast::<T>()
                .read_unaligned()
        }
    }

    /// Plain (possibly unaligned) write of a `T` into memory our side owns.
    ///
    /// # Panics
    /// When outside the window.
    #[inline(always)]
    pub fn write<T: Plain>(&self, off: usize, v: T) {
        // SAFETY: in bounds (checked); the memory is writable shared memory
        // that no Rust reference points into.
        unsafe {
            self.span(off, std::mem::size_of::<T>())
                .cast::<T>()
                .write_unaligned(v)
        }
    }

    /// Copy `src` into the window at `off`.
    ///
    /// # Panics
    /// When outside the window.
    #[inline(always)]
    pub fn copy_in(&self, off: usize, src: &[u8]) {
        let p = self.span(off, src.len());
        // SAFETY: `p..p+len` is inside the window (checked) and cannot
        // overlap `src`, a Rust slice (no reference into shared memory exists).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) }
    }

    /// Copy `dst.len()` bytes at `off` out of the window.
    ///
    /// # Panics
    /// When outside the window.
    #[inline(always)]
    pub fn copy_out(&self, off: usize, dst: &mut [u8]) {
        let p = self.span(off, dst.len());
        // SAFETY: as in copy_in, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) }
    }

    /// Zero the whole window.
    pub fn zero(&self) {
        // SAFETY: the whole window is mapped and writable.
        unsafe { std::ptr::write_bytes(self.base.as_ptr(), 0, self.len) }
    }
}

macro_rules! volatile_le {
    ($($read:ident $write:ident $t:ty;)*) => { $(
        impl Shared {
            /// Volatile little-endian read at `off` (one aligned access).
            ///
            /// # Panics
            /// When outside the window or misaligned.
            #[inline(always)]
            pub fn $read(&self, off: usize) -> $t {
                // SAFETY: `at` checked bounds and alignment; the memory is
                // mapped while `self` lives.
                <$t>::from_le(unsafe { self.at::<$t>(off).read_volatile() })
            }

            /// Volatile little-endian write at `off` (one aligned access).
            ///
            /// # Panics
            /// When outside the window or misaligned.
            #[inline(always)]
            pub fn $write(&self, off: usize, v: $t) {
                // SAFETY: as in the read; the window is writable.
                unsafe { self.at::<$t>(off).write_volatile(v.to_le()) }
            }
        }
    )* };
}

volatile_le! {
    read8 write8 u8;
    read16 write16 u16;
    read32 write32 u32;
    read64 write64 u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfwd_mempool::PageSize;

    fn heap(len: usize) -> Shared {
        Shared::over_extmem(Arc::new(ExtMem::heap(len, PageSize::Size4K).expect("heap")))
    }

    #[test]
    fn reads_what_was_written_little_endian() {
        let m = heap(4096);
        m.write32(8, 0x1122_3344);
        assert_eq!(m.read8(8), 0x44);
        assert_eq!(m.read16(10), 0x1122);
        m.write64(16, 0x0102_0304_0506_0708);
        assert_eq!(m.read32(16), 0x0506_0708);
        let s = m.sub(16, 8).expect("fits");
        assert_eq!(s.read64(0), 0x0102_0304_0506_0708);
        assert_eq!(s.addr(), m.addr() + 16);
        m.write::<u32>(33, 7);
        assert_eq!(m.read::<u32>(33), 7, "plain accesses may be unaligned");
        m.store_u32(40, 9, Ordering::Release);
        assert_eq!(m.load_u32(40, Ordering::Acquire), 9);
        m.store_u16(46, 3, Ordering::Release);
        assert_eq!(m.load_u16(46, Ordering::Acquire), 3);
        m.copy_in(100, b"abc");
        let mut out = [0u8; 3];
        m.copy_out(100, &mut out);
        assert_eq!(&out, b"abc");
        m.zero();
        assert_eq!(m.read64(16), 0);
    }

    #[test]
    fn sub_refuses_windows_that_do_not_fit() {
        let m = heap(4096);
        assert!(m.sub(4096, 0).is_some());
        assert!(m.sub(4090, 8).is_none());
        assert!(m.sub(usize::MAX, 2).is_none());
        assert!(m.contains(4088, 8) && m.contains(4096, 0));
        assert!(!m.contains(4089, 8) && !m.contains(usize::MAX, 2));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_window_access_panics_instead_of_touching_memory() {
        let m = heap(4096).sub(0, 8).expect("fits");
        m.read32(8);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_atomic_access_panics() {
        heap(4096).load_u32(2, Ordering::Acquire);
    }

    #[test]
    fn windows_over_a_mapping_keep_it_alive() {
        let s = Shared::from_mapping(Mapping::anon(4096).unwrap());
        let t = s.sub(4000, 96).unwrap();
        drop(s);
        t.write64(8, 5);
        assert_eq!(t.read64(8), 5);
    }
}
