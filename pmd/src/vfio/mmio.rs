//! Device memory of the VFIO driver: device registers (a BAR mmapped from
//! the vfio-pci device fd) and the virtqueue rings (our external memory,
//! shared with the device by DMA), both as [`Mmio`] windows — the system
//! layer's [`Shared`] accessor, whose volatile accessors make every register
//! access one naturally aligned little-endian load or store. Offsets that
//! come from the device (capabilities) are validated with [`Mmio::sub`]
//! before any access. Config space is read and written with `pread`/`pwrite`
//! on the device fd.

use crate::sys::fd::{pread_exact, pwrite_all};
use crate::sys::{Mapping, Shared};
use std::sync::Arc;
use xfwd_mempool::ExtMem;

/// A checked window into device registers or DMA memory.
pub type Mmio = Shared;

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
    libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
    let map = Mapping::shared(dev, offset, len, false)?;
    Ok(Shared::from_mapping(map))
}

/// A window over all of `mem` (virtqueue rings in our external memory).
pub fn over(mem: Arc<ExtMem>) -> Mmio {
    Shared::over_extmem(mem)
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
    pread_exact(dev, buf, pos)
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
    pwrite_all(dev, buf, pos)
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

#[cfg(test)]
mod tests {
    use super::*;
    use xfwd_mempool::PageSize;

    #[test]
    fn windows_over_external_memory_read_back_little_endian() {
        let m = over(Arc::new(
            ExtMem::heap(4096, PageSize::Size4K).expect("heap"),
        ));
        m.write32(8, 0x1122_3344);
        assert_eq!(m.read8(8), 0x44);
        assert_eq!(m.sub(8, 4).expect("fits").read16(2), 0x1122);
    }
}
