//! The UMEM: a caller-owned memory area (the external mbuf pool) registered
//! with the kernel in unaligned-chunk mode and shared by every AF_XDP socket
//! that uses it, across queues and devices.
//!
//! Addresses on the rings are byte offsets from the UMEM base. On the fill
//! ring a port posts the offset of a chunk (the data part of a pool object);
//! the kernel writes the frame at `chunk + headroom + XDP_PACKET_HEADROOM`
//! and the RX descriptor says where: in unaligned mode its address is
//! `chunk | (headroom + 256) << 48` (see [`desc_base`], [`desc_data`]). Such an
//! address must never go back on a fill ring as is: recompute the chunk base.
//! Completion addresses are TX addresses returned verbatim.

use super::error::XdpError;
use crate::sys::Socket;
use std::sync::{Arc, Mutex, Weak};
use xfwd_mempool::ExtMem;

/// Headroom the kernel reserves in front of every received frame.
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// Smallest chunk size the kernel accepts.
pub const MIN_CHUNK_SIZE: u32 = 2048;
/// Bit position of the data offset in an unaligned-mode address.
pub const UNALIGNED_OFFSET_SHIFT: u32 = 48;
const ADDR_MASK: u64 = (1 << UNALIGNED_OFFSET_SHIFT) - 1;

/// The chunk base (low 48 bits) of a ring address.
#[inline]
pub const fn desc_base(addr: u64) -> u64 {
    addr & ADDR_MASK
}

/// The data offset carried in the top 16 bits of an unaligned-mode address.
#[inline]
pub const fn desc_offset(addr: u64) -> u64 {
    addr >> UNALIGNED_OFFSET_SHIFT
}

/// The UMEM offset of the first frame byte of a ring address (`base + offset`).
#[inline]
pub const fn desc_data(addr: u64) -> u64 {
    desc_base(addr) + desc_offset(addr)
}

/// An address with `offset` encoded in the top 16 bits (`offset < 65536`).
#[inline]
pub const fn desc_encode(base: u64, offset: u64) -> u64 {
    (base & ADDR_MASK) | (offset << UNALIGNED_OFFSET_SHIFT)
}

/// Geometry of a UMEM registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Virtual address of the area (page aligned).
    pub base: usize,
    /// Length in bytes (a multiple of 4 KiB).
    pub len: usize,
    /// Bytes per chunk as the kernel sees it (≥ 2048). In unaligned mode chunks
    /// may start anywhere; this bounds headroom + 256 + frame.
    pub chunk_size: u32,
    /// Bytes the kernel leaves free in front of [`XDP_PACKET_HEADROOM`] in
    /// each chunk (must be < chunk_size − 256).
    pub headroom: u32,
}

impl UmemConfig {
    /// Check the geometry against the kernel's rules.
    ///
    /// # Errors
    /// [`XdpError::Config`] naming the rule that is broken.
    pub fn validate(&self) -> Result<(), XdpError> {
        let bad = |m: String| Err(XdpError::Config(m));
        if self.base == 0 || self.base & 4095 != 0 {
            return bad(format!("UMEM base {:#x} must be 4 KiB aligned", self.base));
        }
        if self.len == 0 || self.len & 4095 != 0 {
            return bad(format!(
                "UMEM length {} must be a non-zero multiple of 4096",
                self.len
            ));
        }
        if self.base.checked_add(self.len).is_none() || self.len as u64 > ADDR_MASK {
            return bad(format!("UMEM length {} overflows", self.len));
        }
        if self.chunk_size < MIN_CHUNK_SIZE {
            return bad(format!(
                "UMEM chunk size {} is below the kernel minimum {MIN_CHUNK_SIZE}",
                self.chunk_size
            ));
        }
        if self.chunk_size as usize > self.len {
            return bad(format!(
                "UMEM chunk size {} is larger than the area ({} bytes)",
                self.chunk_size, self.len
            ));
        }
        if self.headroom >= self.chunk_size - XDP_PACKET_HEADROOM {
            return bad(format!(
                "UMEM headroom {} must be below chunk size {} minus the {XDP_PACKET_HEADROOM} \
                 bytes of XDP headroom",
                self.headroom, self.chunk_size
            ));
        }
        Ok(())
    }

    /// Largest frame a chunk can receive.
    pub fn max_frame_len(&self) -> u32 {
        self.chunk_size - self.headroom - XDP_PACKET_HEADROOM
    }

    /// Check that a frame of a device with `mtu` (plus a 14-byte Ethernet and a
    /// 4-byte VLAN header) fits a chunk after the headrooms.
    ///
    /// # Errors
    /// [`XdpError::Config`] saying how big the chunk or how small the MTU must be.
    pub fn check_mtu(&self, mtu: u32) -> Result<(), XdpError> {
        let frame = mtu.saturating_add(18);
        if frame > self.max_frame_len() {
            return Err(XdpError::Config(format!(
                "MTU {mtu} needs {frame}-byte frames but a {}-byte chunk with {} bytes of \
                 headroom and {XDP_PACKET_HEADROOM} of XDP headroom holds {}; lower the MTU to \
                 {} or enlarge the chunk",
                self.chunk_size,
                self.headroom,
                self.max_frame_len(),
                self.max_frame_len().saturating_sub(18)
            )));
        }
        Ok(())
    }

    /// Offset from a fill address to the first received byte.
    pub fn rx_data_offset(&self) -> u32 {
        self.headroom + XDP_PACKET_HEADROOM
    }
}

/// A socket bound over a [`Umem`].
#[derive(Debug)]
pub(crate) struct Member {
    pub fd: Weak<Socket>,
    pub ifindex: u32,
    pub queue: u32,
}

/// A UMEM area shared by AF_XDP sockets. Create it once per memory region,
/// wrap it in an `Arc`, and bind every socket (any device, any queue) with it.
///
/// The first socket bound registers the memory (`XDP_UMEM_REG`); later sockets
/// join with `XDP_SHARED_UMEM` through any socket still alive, and inherit its
/// copy/zero-copy mode. The kernel keeps the registration while any socket
/// uses it; when all are gone the next bind registers again.
#[derive(Debug)]
pub struct Umem {
    cfg: UmemConfig,
    /// Sockets currently using this UMEM; any live one can be shared.
    members: Mutex<Vec<Member>>,
    /// The memory, when the UMEM keeps it alive itself ([`Umem::over_mem`]).
    _mem: Option<Arc<ExtMem>>,
}

impl Umem {
    /// Describe the area `cfg`; nothing is registered until the first bind.
    ///
    /// # Safety
    /// `cfg.base .. cfg.base + cfg.len` must stay mapped read/write (and not be
    /// used for anything the kernel must not see) for as long as any socket
    /// bound with this UMEM exists: the kernel pins and writes these pages.
    ///
    /// # Errors
    /// [`XdpError::Config`] from [`UmemConfig::validate`].
    pub unsafe fn new(cfg: UmemConfig) -> Result<Arc<Umem>, XdpError> {
        cfg.validate()?;
        Ok(Arc::new(Umem {
            cfg,
            members: Mutex::new(Vec::new()),
            _mem: None,
        }))
    }

    /// A UMEM over all of `mem` (an external mbuf pool's memory), which it
    /// keeps mapped for as long as it lives — so at least as long as any
    /// socket bound with it (each holds the `Arc<Umem>` while binding and
    /// the port holds it while its queues run). The safe form of [`Umem::new`].
    ///
    /// # Errors
    /// [`XdpError::Config`] from [`UmemConfig::validate`].
    pub fn over_mem(
        mem: Arc<ExtMem>,
        chunk_size: u32,
        headroom: u32,
    ) -> Result<Arc<Umem>, XdpError> {
        let cfg = UmemConfig {
            base: mem.va(),
            len: mem.len(),
            chunk_size,
            headroom,
        };
        cfg.validate()?;
        Ok(Arc::new(Umem {
            cfg,
            members: Mutex::new(Vec::new()),
            _mem: Some(mem),
        }))
    }

    /// The geometry.
    pub fn config(&self) -> &UmemConfig {
        &self.cfg
    }

    /// The UMEM offset of virtual address `va`, if it is inside the area.
    #[inline]
    pub fn offset_of(&self, va: usize) -> Option<u64> {
        va.checked_sub(self.cfg.base)
            .filter(|&o| o < self.cfg.len)
            .map(|o| o as u64)
    }

    /// The virtual address of UMEM offset `off`, if inside the area. Accepts an
    /// unaligned-mode ring address and resolves it to the frame's first byte.
    #[inline]
    pub fn va_of(&self, addr: u64) -> Option<usize> {
        let off = desc_data(addr);
        if off < self.cfg.len as u64 {
            Some(self.cfg.base + off as usize)
        } else {
            None
        }
    }

    /// The frame bytes of a descriptor (`addr`, `len`), if it lies inside the area.
    ///
    /// # Safety
    /// The caller must own the frame (it came off an RX ring and was not given
    /// back, or it is a buffer not posted to any ring), and no `&mut` alias may exist.
    pub unsafe fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let off = desc_data(addr);
        if off.checked_add(len as u64)? > self.cfg.len as u64 {
            return None;
        }
        // SAFETY: inside the area, which the constructor's contract keeps mapped;
        // ownership and aliasing are the caller's contract.
        Some(unsafe {
            std::slice::from_raw_parts((self.cfg.base + off as usize) as *const u8, len as usize)
        })
    }

    /// Mutable frame bytes of a descriptor (`addr`, `len`), if inside the area.
    ///
    /// # Safety
    /// As for [`Umem::frame`], and no other reference to these bytes may exist.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame_mut(&self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let off = desc_data(addr);
        if off.checked_add(len as u64)? > self.cfg.len as u64 {
            return None;
        }
        // SAFETY: as in `frame`, plus exclusivity from the caller.
        Some(unsafe {
            std::slice::from_raw_parts_mut((self.cfg.base + off as usize) as *mut u8, len as usize)
        })
    }

    /// The member list, locked: binds hold it so two sockets never both register the memory.
    pub(crate) fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UmemConfig {
        UmemConfig {
            base: 0x20_0000,
            len: 2 << 20,
            chunk_size: 2048,
            headroom: 128,
        }
    }

    #[test]
    fn address_encoding_round_trips() {
        let a = desc_encode(0x1234, 384);
        assert_eq!(desc_base(a), 0x1234);
        assert_eq!(desc_offset(a), 384);
        assert_eq!(desc_data(a), 0x1234 + 384);
        assert_eq!(desc_data(0x5000), 0x5000);
    }

    #[test]
    fn geometry_rules() {
        assert!(cfg().validate().is_ok());
        assert_eq!(cfg().max_frame_len(), 2048 - 128 - 256);
        assert!(cfg().check_mtu(1500).is_ok());
        let e = cfg().check_mtu(1700).unwrap_err().to_string();
        assert!(e.contains("lower the MTU to 1646"), "{e}");
        let bad = [
            UmemConfig {
                base: 0x20_0010,
                ..cfg()
            },
            UmemConfig { len: 100, ..cfg() },
            UmemConfig {
                chunk_size: 1024,
                ..cfg()
            },
            UmemConfig {
                headroom: 2048 - 256,
                ..cfg()
            },
        ];
        for b in bad {
            assert!(matches!(b.validate(), Err(XdpError::Config(_))), "{b:?}");
        }
    }

    #[test]
    fn offsets_and_addresses() {
        // SAFETY: the area is never registered or touched in this test.
        let u = unsafe { Umem::new(cfg()) }.unwrap();
        assert_eq!(u.offset_of(0x20_0000 + 4608), Some(4608));
        assert_eq!(u.offset_of(0x1f_ffff), None);
        assert_eq!(u.offset_of(0x40_0000), None);
        assert_eq!(
            u.va_of(desc_encode(2304, 384)),
            Some(0x20_0000 + 2304 + 384)
        );
        assert_eq!(u.va_of(2 << 20), None);
    }
}
