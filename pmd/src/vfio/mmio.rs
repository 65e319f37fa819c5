//! The one place of the VFIO driver that touches memory through raw
//! pointers: device registers (a BAR mmapped from the vfio-pci device fd) and
//! the virtqueue rings (our external memory, shared with the device by DMA).
//!
//! [`Mmio`] is a bounds- and alignment-checked window; every access is a
//! volatile load or store of a naturally aligned integer, so neither the
//! compiler nor the CPU folds or tears it. Windows are created from a BAR
//! or an [`ExtMem`] and narrowed with [`Mmio::sub`], which validates
//! offsets that come from the device (capabilities) before any access.
//! Config space is read and written with `pread`/`pwrite` on the device fd.

use std::fmt;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use xfwd_mempool::ExtMem;

/// What keeps the memory behind an [`Mmio`] alive (held only for its drop).
#[allow(dead_code)]
enum Owner {
    /// A BAR mapping (munmapped when the last window drops).
    Bar(BarMap),
    /// External memory (rings).
    Mem(Arc<ExtMem>),
}

struct BarMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: BarMap only holds the address of a shared device mapping to
// munmap it once; it is never dereferenced through this type.
unsafe impl Send for BarMap {}
// SAFETY: as above: no access through &BarMap.
unsafe impl Sync for BarMap {}

impl Drop for BarMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned in `Mmio::map_bar`;
        // no window into it outlives this owner (each holds the Arc).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A checked window into device registers or DMA memory.
#[derive(Clone)]
pub struct Mmio {
    base: NonNull<u8>,
    len: usize,
    _owner: Arc<Owner>,
}

// SAFETY: an Mmio is an address range plus an Arc keeping it mapped; all
// accesses are volatile and of naturally aligned integers. Which thread
// touches which part (a queue's ring belongs to the worker that owns the
// queue handle) is the driver's discipline, as with device registers in C.
unsafe impl Send for Mmio {}
// SAFETY: as above; shared use only issues volatile loads/stores.
unsafe impl Sync for Mmio {}

impl fmt::Debug for Mmio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mmio({:p}+{:#x})", self.base, self.len)
    }
}

impl Mmio {
    /// mmap BAR `index` of a vfio-pci device (region must have the MMAP flag).
    ///
    /// # Errors
    /// The BAR is empty or not mappable, or mmap fails.
    pub fn map_bar(dev: &vfio_ioctls::VfioDevice, index: u32) -> std::io::Result<Mmio> {
        let flags = dev.get_region_flags(index);
        let size = dev.get_region_size(index);
        let offset = dev.get_region_offset(index);
        if size == 0 || flags & vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(std::io::Error::other(format!(
                "BAR{index} (size {size:#x}, flags {flags:#x}) cannot be mmapped"
            )));
        }
        let len = usize::try_from(size).map_err(std::io::Error::other)?;
        let off = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a fresh shared mapping of the device fd at the region's
        // offset; the kernel validates fd, offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                dev.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(Mmio {
            base: ptr,
            len,
            _owner: Arc::new(Owner::Bar(BarMap { ptr, len })),
        })
    }

    /// A window over all of `mem` (virtqueue rings in our external memory).
    pub fn over(mem: Arc<ExtMem>) -> Mmio {
        let base = NonNull::new(mem.as_ptr()).expect("ExtMem never has a null address");
        let len = mem.len();
        Mmio {
            base,
            len,
            _owner: Arc::new(Owner::Mem(mem)),
        }
    }

    /// The narrower window `off..off+len`, or `None` when it does not fit.
    pub fn sub(&self, off: usize, len: usize) -> Option<Mmio> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Mmio {
            // SAFETY: off <= self.len, so the result stays inside (or one past) the window.
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

    #[inline(always)]
    fn at<T>(&self, off: usize) -> *mut T {
        let size = std::mem::size_of::<T>();
        assert!(
            off.checked_add(size).is_some_and(|e| e <= self.len) && off.is_multiple_of(size),
            "MMIO access of {size} bytes at {off:#x} outside or misaligned in a window of {:#x}",
            self.len
        );
        // SAFETY: checked just above: off + size <= len.
        unsafe { self.base.as_ptr().add(off).cast::<T>() }
    }

    /// Volatile read of a `u8` at `off`.
    ///
    /// # Panics
    /// When `off` is outside the window (offsets are validated with [`Mmio::sub`]).
    #[inline(always)]
    pub fn read8(&self, off: usize) -> u8 {
        // SAFETY: `at` checked bounds and alignment; the memory is mapped while `self` lives.
        unsafe { self.at::<u8>(off).read_volatile() }
    }

    /// Volatile little-endian read of a `u16` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn read16(&self, off: usize) -> u16 {
        // SAFETY: as in read8.
        u16::from_le(unsafe { self.at::<u16>(off).read_volatile() })
    }

    /// Volatile little-endian read of a `u32` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn read32(&self, off: usize) -> u32 {
        // SAFETY: as in read8.
        u32::from_le(unsafe { self.at::<u32>(off).read_volatile() })
    }

    /// Volatile little-endian read of a `u64` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn read64(&self, off: usize) -> u64 {
        // SAFETY: as in read8.
        u64::from_le(unsafe { self.at::<u64>(off).read_volatile() })
    }

    /// Volatile write of a `u8` at `off`.
    ///
    /// # Panics
    /// When out of the window.
    #[inline(always)]
    pub fn write8(&self, off: usize, v: u8) {
        // SAFETY: as in read8; the window is writable (PROT_WRITE or our memory).
        unsafe { self.at::<u8>(off).write_volatile(v) }
    }

    /// Volatile little-endian write of a `u16` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn write16(&self, off: usize, v: u16) {
        // SAFETY: as in write8.
        unsafe { self.at::<u16>(off).write_volatile(v.to_le()) }
    }

    /// Volatile little-endian write of a `u32` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn write32(&self, off: usize, v: u32) {
        // SAFETY: as in write8.
        unsafe { self.at::<u32>(off).write_volatile(v.to_le()) }
    }

    /// Volatile little-endian write of a `u64` at `off`.
    ///
    /// # Panics
    /// When out of the window or misaligned.
    #[inline(always)]
    pub fn write64(&self, off: usize, v: u64) {
        // SAFETY: as in write8.
        unsafe { self.at::<u64>(off).write_volatile(v.to_le()) }
    }

    /// Zero the whole window.
    pub fn zero(&self) {
        // SAFETY: the whole window is mapped and writable.
        unsafe { std::ptr::write_bytes(self.base.as_ptr(), 0, self.len) }
    }
}

/// Read `buf.len()` bytes of a device region (config space) at `off`.
///
/// # Errors
/// The `pread` error, or a short read.
pub fn region_read(
    dev: &vfio_ioctls::VfioDevice,
    index: u32,
    off: u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let pos = region_pos(dev, index, off, buf.len())?;
    // SAFETY: buf is valid for buf.len() writable bytes.
    let n = unsafe { libc::pread(dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), pos) };
    short(n, buf.len())
}

/// Write `buf` to a device region (config space) at `off`.
///
/// # Errors
/// The `pwrite` error, or a short write.
pub fn region_write(
    dev: &vfio_ioctls::VfioDevice,
    index: u32,
    off: u64,
    buf: &[u8],
) -> std::io::Result<()> {
    let pos = region_pos(dev, index, off, buf.len())?;
    // SAFETY: buf is valid for buf.len() readable bytes.
    let n = unsafe { libc::pwrite(dev.as_raw_fd(), buf.as_ptr().cast(), buf.len(), pos) };
    short(n, buf.len())
}

fn region_pos(
    dev: &vfio_ioctls::VfioDevice,
    index: u32,
    off: u64,
    len: usize,
) -> std::io::Result<libc::off_t> {
    let size = dev.get_region_size(index);
    if off.saturating_add(len as u64) > size {
        return Err(std::io::Error::other(format!(
            "access {off:#x}+{len} outside region {index} of size {size:#x}"
        )));
    }
    libc::off_t::try_from(dev.get_region_offset(index) + off).map_err(std::io::Error::other)
}

fn short(n: isize, want: usize) -> std::io::Result<()> {
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != want {
        return Err(std::io::Error::other(format!(
            "short transfer: {n} of {want} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfwd_mempool::PageSize;

    fn heap(len: usize) -> Arc<ExtMem> {
        Arc::new(ExtMem::heap(len, PageSize::Size4K).expect("heap memory"))
    }

    #[test]
    fn reads_what_was_written_little_endian() {
        let m = Mmio::over(heap(4096));
        m.write32(8, 0x1122_3344);
        assert_eq!(m.read8(8), 0x44);
        assert_eq!(m.read16(10), 0x1122);
        m.write64(16, 0x0102_0304_0506_0708);
        assert_eq!(m.read32(16), 0x0506_0708);
        let s = m.sub(16, 8).expect("fits");
        assert_eq!(s.read64(0), 0x0102_0304_0506_0708);
        assert_eq!(s.addr(), m.addr() + 16);
    }

    #[test]
    fn sub_refuses_windows_that_do_not_fit() {
        let m = Mmio::over(heap(4096));
        assert!(m.sub(4096, 0).is_some());
        assert!(m.sub(4090, 8).is_none());
        assert!(m.sub(usize::MAX, 2).is_none());
    }

    #[test]
    #[should_panic(expected = "outside or misaligned")]
    fn out_of_window_access_panics_instead_of_touching_memory() {
        let m = Mmio::over(heap(4096)).sub(0, 8).expect("fits");
        m.read32(8);
    }
}
