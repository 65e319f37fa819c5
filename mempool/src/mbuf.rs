//! The mbuf: a unique owning handle to a packet buffer in pool memory.
//!
//! Layout of every pool object (64-byte aligned):
//! `[MbufHeader: 128 B][headroom][data room]`. The header records the
//! buffer's virtual address and IOVA so a driver never looks them up per
//! packet. An [`Mbuf`] is `Send`, not `Clone`: exactly one owner at a time;
//! dropping it returns every segment to its pool.

use crate::error::MbufError;
use crate::pool::PoolShared;
use std::fmt;
use std::ptr::NonNull;

/// Bytes reserved for the header at the start of each object.
pub const MBUF_HEADER_SIZE: usize = 128;

/// Most segments in one chain (`nb_segs` is a u16).
pub const MAX_SEGS: usize = u16::MAX as usize;

/// Offload flags (a subset of DPDK's `RTE_MBUF_F_*`).
pub mod ol_flags {
    /// RX: the RSS hash field is valid.
    pub const RX_RSS_HASH: u64 = 1 << 1;
    /// RX: L4 checksum known bad.
    pub const RX_L4_CKSUM_BAD: u64 = 1 << 3;
    /// RX: IP checksum known bad.
    pub const RX_IP_CKSUM_BAD: u64 = 1 << 4;
    /// RX: IP checksum known good.
    pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
    /// RX: L4 checksum known good.
    pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
    /// TX: compute the IPv4 header checksum.
    pub const TX_IP_CKSUM: u64 = 1 << 54;
    /// TX: compute the UDP checksum.
    pub const TX_UDP_CKSUM: u64 = 3 << 52;
}

/// The header at the start of each pool object (DPDK's `struct rte_mbuf`,
/// reduced to what xfwd uses). Private fields: it is reached only through
/// [`Mbuf`].
#[repr(C, align(64))]
#[derive(Debug)]
pub struct MbufHeader {
    pub(crate) buf_addr: *mut u8,
    pub(crate) buf_iova: u64,
    pub(crate) next: *mut MbufHeader,
    pub(crate) pool: *const PoolShared,
    pub(crate) ol_flags: u64,
    pub(crate) timestamp: u64,
    pub(crate) pkt_len: u32,
    pub(crate) rss_hash: u32,
    pub(crate) packet_type: u32,
    pub(crate) index: u32,
    pub(crate) data_off: u16,
    pub(crate) data_len: u16,
    pub(crate) buf_len: u16,
    pub(crate) port: u16,
    pub(crate) nb_segs: u16,
    pub(crate) headroom: u16,
    /// Explicit (zeroed) padding to the header size: a header has no
    /// uninitialised bytes, so reading any aligned word of pool memory
    /// (`InFlight` maps device addresses back to headers) reads initialised
    /// memory (Miri checks it).
    pub(crate) pad: [u8; HEADER_PAD],
}

/// Bytes after the last field of [`MbufHeader`] (76 bytes of fields; the
/// size assertion below checks the sum).
pub(crate) const HEADER_PAD: usize = MBUF_HEADER_SIZE - 76;

const _: () = assert!(std::mem::size_of::<MbufHeader>() == MBUF_HEADER_SIZE);

/// A cache prefetch hint for the line holding `p` (any address: a prefetch
/// never faults and changes nothing but timing). Safe to call with any
/// pointer; exported so `app/` (which has no `unsafe`) can prefetch table
/// entries.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: PREFETCHT0 has no architectural effect and cannot fault, even
    // on an unmapped address; SSE is part of the x86_64 baseline.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}

impl MbufHeader {
    /// Put the header back to its just-allocated state.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.next = std::ptr::null_mut();
        self.nb_segs = 1;
        self.data_off = self.headroom;
        self.data_len = 0;
        self.pkt_len = 0;
        self.ol_flags = 0;
        self.rss_hash = 0;
        self.packet_type = 0;
        self.port = u16::MAX;
        self.timestamp = 0;
    }
}

/// A packet buffer owned by exactly one holder.
#[repr(transparent)]
pub struct Mbuf {
    hdr: NonNull<MbufHeader>,
}

// SAFETY: an Mbuf is the unique handle to its object; moving it to another
// thread moves that ownership. The pool it returns to is shared through a
// lock-free ring.
#[allow(unsafe_code)]
unsafe impl Send for Mbuf {}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("index", &self.h().index)
            .field("port", &self.h().port)
            .field("data_len", &self.h().data_len)
            .field("pkt_len", &self.h().pkt_len)
            .field("nb_segs", &self.h().nb_segs)
            .finish()
    }
}

#[allow(unsafe_code)]
impl Mbuf {
    /// Take ownership of the object whose header is at `addr`.
    ///
    /// # Safety
    /// `addr` must be the header address of an object of a live pool that
    /// nobody else owns (taken from the pool's ring or cache, or given back by
    /// [`Mbuf::into_raw`]).
    #[inline]
    pub(crate) unsafe fn from_raw(addr: NonNull<MbufHeader>) -> Mbuf {
        Mbuf { hdr: addr }
    }

    /// Give up ownership without returning the object to its pool; pair with
    /// [`Mbuf::from_raw`] (drivers hand mbufs over through
    /// [`crate::MbufRing`] or [`crate::InFlight`], never by address).
    #[inline]
    pub(crate) fn into_raw(self) -> NonNull<MbufHeader> {
        let p = self.hdr;
        std::mem::forget(self);
        p
    }

    #[inline]
    fn h(&self) -> &MbufHeader {
        // SAFETY: the header lives in pool memory that outlives every mbuf
        // (a pool with mbufs out is never freed), and self owns it uniquely.
        unsafe { self.hdr.as_ref() }
    }

    #[inline]
    fn hm(&mut self) -> &mut MbufHeader {
        // SAFETY: as in h(), and &mut self makes the access exclusive.
        unsafe { self.hdr.as_mut() }
    }

    #[inline]
    fn last_seg(&mut self) -> &mut MbufHeader {
        let mut p = self.hdr.as_ptr();
        // SAFETY: every `next` in a chain points to a header owned by this
        // chain; the chain ends with null.
        unsafe {
            while !(*p).next.is_null() {
                p = (*p).next;
            }
            &mut *p
        }
    }

    /// The data of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.h();
        // SAFETY: data_off + data_len <= buf_len is kept by every mutator, the
        // buffer lies inside the object, and self owns it.
        unsafe {
            std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// The data of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hm();
        // SAFETY: as in data(), with exclusive access through &mut self.
        unsafe {
            std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Bytes of data in the first segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        self.h().data_len as usize
    }

    /// Bytes of data in the whole chain.
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.h().pkt_len as usize
    }

    /// Room before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.h().data_off as usize
    }

    /// Room after the data of the first segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.h();
        (h.buf_len - h.data_off - h.data_len) as usize
    }

    /// Size of the buffer (headroom + data room).
    #[inline]
    pub fn buf_len(&self) -> usize {
        self.h().buf_len as usize
    }

    /// Prefetch hint for the header's cache line.
    #[inline]
    pub(crate) fn prefetch_header(&self) {
        prefetch(self.hdr.as_ptr());
    }

    /// Ask the CPU to start loading the cache line where the data begins,
    /// for a caller about to write it (a generator filling a burst: issue it
    /// for the whole burst first, so the misses overlap). Only a hint.
    #[inline]
    pub fn prefetch_data(&self) {
        let h = self.h();
        prefetch(h.buf_addr.wrapping_add(h.data_off as usize));
    }

    /// Virtual address of the buffer start.
    #[inline]
    pub fn buf_addr(&self) -> *mut u8 {
        self.h().buf_addr
    }

    /// IOVA of the buffer start (what a device is given).
    #[inline]
    pub fn buf_iova(&self) -> u64 {
        self.h().buf_iova
    }

    /// IOVA of the first data byte.
    #[inline]
    pub fn data_iova(&self) -> u64 {
        self.h().buf_iova + self.h().data_off as u64
    }

    /// Offset of the data in the buffer.
    #[inline]
    pub fn data_off(&self) -> usize {
        self.h().data_off as usize
    }

    /// Index of the object in its pool.
    #[inline]
    pub fn index(&self) -> u32 {
        self.h().index
    }

    /// Input port (`u16::MAX` when unset).
    #[inline]
    pub fn port(&self) -> u16 {
        self.h().port
    }

    /// Set the input port.
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        self.hm().port = port;
    }

    /// RSS hash (valid with `RX_RSS_HASH`).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        self.h().rss_hash
    }

    /// Set the RSS hash and its flag.
    #[inline]
    pub fn set_rss_hash(&mut self, hash: u32) {
        let h = self.hm();
        h.rss_hash = hash;
        h.ol_flags |= ol_flags::RX_RSS_HASH;
    }

    /// Offload flags.
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.h().ol_flags
    }

    /// Set offload flags.
    #[inline]
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.hm().ol_flags = flags;
    }

    /// Packet type (driver-defined classification).
    #[inline]
    pub fn packet_type(&self) -> u32 {
        self.h().packet_type
    }

    /// Set the packet type.
    #[inline]
    pub fn set_packet_type(&mut self, t: u32) {
        self.hm().packet_type = t;
    }

    /// Timestamp (driver or generator defined, ns).
    #[inline]
    pub fn timestamp(&self) -> u64 {
        self.h().timestamp
    }

    /// Set the timestamp.
    #[inline]
    pub fn set_timestamp(&mut self, ts: u64) {
        self.hm().timestamp = ts;
    }

    /// Number of segments.
    #[inline]
    pub fn nb_segs(&self) -> usize {
        self.h().nb_segs as usize
    }

    /// Grow the data at the front by `n` bytes (into the headroom) and return
    /// the new front.
    ///
    /// # Errors
    /// [`MbufError::NoHeadroom`].
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], MbufError> {
        let have = self.headroom();
        if n > have {
            return Err(MbufError::NoHeadroom { want: n, have });
        }
        let h = self.hm();
        h.data_off -= n as u16;
        h.data_len += n as u16;
        h.pkt_len += n as u32;
        Ok(&mut self.data_mut()[..n])
    }

    /// Remove `n` bytes from the front of the first segment.
    ///
    /// # Errors
    /// [`MbufError::TooShort`].
    pub fn adj(&mut self, n: usize) -> Result<(), MbufError> {
        let have = self.data_len();
        if n > have {
            return Err(MbufError::TooShort { want: n, have });
        }
        let h = self.hm();
        h.data_off += n as u16;
        h.data_len -= n as u16;
        h.pkt_len -= n as u32;
        Ok(())
    }

    /// Grow the data at the tail of the last segment by `n` bytes and return
    /// the new bytes.
    ///
    /// # Errors
    /// [`MbufError::NoTailroom`].
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], MbufError> {
        let last = self.last_seg();
        let have = (last.buf_len - last.data_off - last.data_len) as usize;
        if n > have {
            return Err(MbufError::NoTailroom { want: n, have });
        }
        let start = last.data_off as usize + last.data_len as usize;
        last.data_len += n as u16;
        let buf = last.buf_addr;
        self.hm().pkt_len += n as u32;
        // SAFETY: start + n <= buf_len was checked; the last segment is owned
        // by this chain and borrowed exclusively through &mut self.
        Ok(unsafe { std::slice::from_raw_parts_mut(buf.add(start), n) })
    }

    /// Remove `n` bytes from the tail of the last segment.
    ///
    /// # Errors
    /// [`MbufError::TooShort`].
    pub fn trim(&mut self, n: usize) -> Result<(), MbufError> {
        let last = self.last_seg();
        let have = last.data_len as usize;
        if n > have {
            return Err(MbufError::TooShort { want: n, have });
        }
        last.data_len -= n as u16;
        self.hm().pkt_len -= n as u32;
        Ok(())
    }

    /// Replace the data with a copy of `bytes` (first segment only; a chain
    /// is refused).
    ///
    /// # Errors
    /// [`MbufError::NoTailroom`] when `bytes` does not fit after the headroom.
    pub fn set_data(&mut self, bytes: &[u8]) -> Result<(), MbufError> {
        let h = self.hm();
        let room = (h.buf_len - h.data_off) as usize;
        if bytes.len() > room || !h.next.is_null() {
            return Err(MbufError::NoTailroom {
                want: bytes.len(),
                have: room,
            });
        }
        h.data_len = bytes.len() as u16;
        h.pkt_len = bytes.len() as u32;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }

    /// Make this a single-segment packet of `len` bytes starting at the
    /// default headroom, leaving the bytes as they are (drivers that DMA or
    /// copy the data themselves). Offload flags are cleared.
    ///
    /// # Errors
    /// [`MbufError::NoTailroom`] when `len` exceeds the data room; a chain
    /// is refused the same way.
    #[inline]
    pub fn reset_len(&mut self, len: usize) -> Result<(), MbufError> {
        let h = self.hm();
        let room = (h.buf_len - h.headroom) as usize;
        if len > room || !h.next.is_null() {
            return Err(MbufError::NoTailroom {
                want: len,
                have: room,
            });
        }
        h.data_off = h.headroom;
        h.data_len = len as u16;
        h.pkt_len = len as u32;
        h.ol_flags = 0;
        Ok(())
    }

    /// Make this a single-segment packet of `len` bytes starting `off` bytes
    /// into the buffer (a device wrote it there), leaving the bytes as they
    /// are. Offload flags are cleared.
    ///
    /// # Errors
    /// [`MbufError::NoTailroom`] when `off + len` exceeds the buffer; a chain
    /// is refused the same way.
    #[inline]
    pub fn set_data_range(&mut self, off: usize, len: usize) -> Result<(), MbufError> {
        let h = self.hm();
        let room = h.buf_len as usize;
        if off + len > room || !h.next.is_null() {
            return Err(MbufError::NoTailroom {
                want: off + len,
                have: room,
            });
        }
        h.data_off = off as u16;
        h.data_len = len as u16;
        h.pkt_len = len as u32;
        h.ol_flags = 0;
        Ok(())
    }

    /// Append `tail` (and its segments) to this chain.
    ///
    /// # Errors
    /// [`MbufError::TooManySegments`]; `tail` is then dropped back to its pool.
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), MbufError> {
        let segs = self.nb_segs() + tail.nb_segs();
        if segs > MAX_SEGS {
            return Err(MbufError::TooManySegments { max: MAX_SEGS });
        }
        let add = tail.pkt_len() as u32;
        let tail = tail.into_raw();
        self.last_seg().next = tail.as_ptr();
        let h = self.hm();
        h.nb_segs = segs as u16;
        h.pkt_len += add;
        Ok(())
    }

    /// The first segment's data, writable, and the data of the segments
    /// after it, read only (header edits that checksum a whole chain).
    #[inline]
    pub fn head_and_tail(&mut self) -> (&mut [u8], Segments<'_>) {
        let h = self.hm();
        let next = h.next;
        // SAFETY: as in data_mut(); the following segments are other objects
        // of the chain (disjoint buffers and headers), only read through the
        // returned iterator while self stays mutably borrowed.
        let head = unsafe {
            std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        };
        (
            head,
            Segments {
                next,
                _m: std::marker::PhantomData,
            },
        )
    }

    /// The data of each segment in order.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            next: self.hdr.as_ptr(),
            _m: std::marker::PhantomData,
        }
    }

    /// Copy the whole chain's data into `out` (cleared first).
    pub fn copy_to_vec(&self, out: &mut Vec<u8>) {
        out.clear();
        for s in self.segments() {
            out.extend_from_slice(s);
        }
    }

    /// Reset to the just-allocated state (single segment, empty, default
    /// headroom). Segments after the first are returned to their pools.
    pub fn reset(&mut self) {
        let next = std::mem::replace(&mut self.hm().next, std::ptr::null_mut());
        if let Some(n) = NonNull::new(next) {
            // SAFETY: the rest of the chain was owned by self.
            drop(unsafe { Mbuf::from_raw(n) });
        }
        self.hm().reset();
    }

    /// Header address (for drivers and pool bookkeeping).
    #[inline]
    pub fn as_ptr(&self) -> NonNull<MbufHeader> {
        self.hdr
    }

    #[inline]
    pub(crate) fn pool_ptr(&self) -> *const PoolShared {
        self.h().pool
    }

    #[inline]
    pub(crate) fn is_chained(&self) -> bool {
        !self.h().next.is_null()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        crate::pool::free_chain(self.hdr);
    }
}

/// Iterator over the segments of a chain.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    next: *mut MbufHeader,
    _m: std::marker::PhantomData<&'a Mbuf>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next.is_null() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: every header in the chain is owned by the borrowed Mbuf and
        // keeps data_off + data_len <= buf_len.
        unsafe {
            let h = &*self.next;
            self.next = h.next;
            Some(std::slice::from_raw_parts(
                h.buf_addr.add(h.data_off as usize),
                h.data_len as usize,
            ))
        }
    }
}
