//! The real VFIO type1 backend: the one place that talks to `/dev/vfio`.
//!
//! Thin on purpose: the container, group attach (`VFIO_GROUP_SET_CONTAINER`,
//! `VFIO_SET_IOMMU` type1v2 on the first group) and `VFIO_IOMMU_MAP_DMA` come
//! from `vfio-ioctls`; `VFIO_IOMMU_GET_INFO` and `VFIO_IOMMU_UNMAP_DMA` (whose
//! answer, the bytes unmapped, the crate hides) are issued here. All policy
//! (exact matching, limits, allocator) lives in the caller, tested over
//! [`super::fake::FakeType1`]. Runs only where `/dev/vfio` exists (the QEMU
//! guest test of the VFIO driver issue).

use super::{IommuInfo, IovaRange, MemlockLimit, VfioBackend};
use crate::dma::error::DmaError;
use std::fmt;
use std::os::raw::c_ulong;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use vfio_bindings::bindings::vfio::{
    vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info, VFIO_BASE, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_TYPE,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError, VfioOps};
use vmm_sys_util::ioctl::{ioctl_expr, ioctl_with_mut_ptr, ioctl_with_mut_ref, _IOC_NONE};

/// `_IO(VFIO_TYPE, VFIO_BASE + 12)` (linux/vfio.h).
const VFIO_IOMMU_GET_INFO: c_ulong = ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, VFIO_BASE + 12, 0);
/// `_IO(VFIO_TYPE, VFIO_BASE + 14)` (linux/vfio.h).
const VFIO_IOMMU_UNMAP_DMA: c_ulong = ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, VFIO_BASE + 14, 0);

/// CAP_IPC_LOCK (linux/capability.h): with it the kernel does not check RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;

fn vfio_err(what: impl Into<String>, e: impl fmt::Display) -> DmaError {
    DmaError::Vfio {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// A VFIO container opened from `/dev/vfio/vfio` and the devices attached to it.
pub struct KernelType1 {
    container: Arc<VfioContainer>,
    devices: Mutex<Vec<(PathBuf, Arc<VfioDevice>)>>,
}

impl fmt::Debug for KernelType1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let paths: Vec<_> = devices
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        f.debug_struct("KernelType1")
            .field("devices", &paths)
            .finish()
    }
}

impl KernelType1 {
    /// Open the container (checks the API version and type1v2 support).
    ///
    /// # Errors
    /// [`DmaError::Vfio`] naming `/dev/vfio/vfio` and what to check.
    pub fn open() -> Result<KernelType1, DmaError> {
        let container = VfioContainer::new(None).map_err(|e| {
            vfio_err(
                "open /dev/vfio/vfio",
                format!("{e} (is the vfio-pci module loaded and the IOMMU enabled: intel_iommu=on / amd_iommu=on?)"),
            )
        })?;
        Ok(KernelType1 {
            container: Arc::new(container),
            devices: Mutex::new(Vec::new()),
        })
    }

    fn get_info(&self, buf: &mut [u64]) -> Result<(), DmaError> {
        // SAFETY: the fd is our VFIO container; `buf` is writable for
        // `buf.len() * 8` bytes, which is the argsz the caller stored in its
        // first bytes, so the kernel writes only inside it.
        let ret =
            unsafe { ioctl_with_mut_ptr(&*self.container, VFIO_IOMMU_GET_INFO, buf.as_mut_ptr()) };
        if ret < 0 {
            return Err(vfio_err(
                "VFIO_IOMMU_GET_INFO",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// Read a native-endian integer of `N` bytes at `off`, or `None` past the end.
fn read<const N: usize>(bytes: &[u8], off: usize) -> Option<[u8; N]> {
    bytes.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Parse the capability chain of a `vfio_iommu_type1_info` buffer.
pub(crate) fn parse_info(bytes: &[u8]) -> Option<IommuInfo> {
    let flags = u32::from_ne_bytes(read(bytes, 4)?);
    let pgsizes = u64::from_ne_bytes(read(bytes, 8)?);
    let mut info = IommuInfo {
        ranges: Vec::new(),
        pgsizes,
        dma_avail: None,
    };
    let mut off = if flags & VFIO_IOMMU_INFO_CAPS != 0 {
        u32::from_ne_bytes(read(bytes, 16)?) as usize
    } else {
        0
    };
    let mut hops = 0;
    while off != 0 && hops < 64 {
        hops += 1;
        let id = u32::from(u16::from_ne_bytes(read(bytes, off)?));
        let next = u32::from_ne_bytes(read(bytes, off + 4)?) as usize;
        if id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let n = u32::from_ne_bytes(read(bytes, off + 8)?) as usize;
            for i in 0..n {
                let at = off + 16 + i * 16;
                info.ranges.push(IovaRange::new(
                    u64::from_ne_bytes(read(bytes, at)?),
                    u64::from_ne_bytes(read(bytes, at + 8)?),
                ));
            }
        } else if id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL {
            info.dma_avail = Some(u32::from_ne_bytes(read(bytes, off + 8)?));
        }
        off = next;
    }
    Some(info)
}

impl VfioBackend for KernelType1 {
    fn attach(&self, sysfs: &Path) -> Result<u32, DmaError> {
        let link = sysfs.join("iommu_group");
        let group = std::fs::read_link(&link)
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok())
            .ok_or_else(|| {
                vfio_err(
                    format!("read {}", link.display()),
                    "the device has no IOMMU group (IOMMU disabled, or not a PCI device path)",
                )
            })?;
        let ops: Arc<dyn VfioOps> = self.container.clone();
        let dev = VfioDevice::new(sysfs, ops, false).map_err(|e| {
            vfio_err(
                format!("attach group {group} ({})", sysfs.display()),
                format!("{e} (is the device bound to vfio-pci and are all devices of the group bound or unbound?)"),
            )
        })?;
        self.devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((sysfs.to_path_buf(), Arc::new(dev)));
        Ok(group)
    }

    fn iommu_info(&self) -> Result<IommuInfo, DmaError> {
        let base = std::mem::size_of::<vfio_iommu_type1_info>();
        let mut argsz = base;
        for _ in 0..2 {
            // u64 words keep the buffer 8-byte aligned for the kernel's struct.
            let mut buf = vec![0u64; argsz.div_ceil(8)];
            let mut head = [0u8; 8];
            head[..4].copy_from_slice(&(argsz as u32).to_ne_bytes()); // argsz; flags = 0
            buf[0] = u64::from_ne_bytes(head);
            self.get_info(&mut buf)?;
            let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let want = u32::from_ne_bytes(read(&bytes, 0).unwrap_or([0; 4])) as usize;
            if want <= argsz {
                return parse_info(&bytes)
                    .ok_or_else(|| vfio_err("VFIO_IOMMU_GET_INFO", "malformed capability chain"));
            }
            argsz = want;
        }
        Err(vfio_err("VFIO_IOMMU_GET_INFO", "argsz kept growing"))
    }

    fn map_dma(&self, va: u64, iova: u64, len: u64) -> Result<(), i32> {
        let size = usize::try_from(len).map_err(|_| libc::EINVAL)?;
        // SAFETY: `va..va+len` is external packet memory the application
        // registered for DMA; by the mempool contract its bytes are reached only
        // through mbuf handles, and ownership of a buffer passes to the device
        // and back through the rings, which is the discipline the VfioOps
        // contract asks for. The kernel checks the range is mapped memory of
        // this process (EFAULT otherwise).
        let res = unsafe { self.container.vfio_dma_map(iova, size, va as *mut u8) };
        match res {
            Ok(()) => Ok(()),
            Err(VfioError::IommuDmaMap(e)) => Err(e.errno()),
            Err(_) => Err(libc::EIO),
        }
    }

    fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64, i32> {
        let mut arg = vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova,
            size: len,
            ..Default::default()
        };
        // SAFETY: the fd is our VFIO container and `arg` is a valid
        // `vfio_iommu_type1_dma_unmap` whose argsz covers only its fixed part.
        let ret = unsafe { ioctl_with_mut_ref(&*self.container, VFIO_IOMMU_UNMAP_DMA, &mut arg) };
        if ret < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        Ok(arg.size)
    }

    fn memlock_limit(&self) -> MemlockLimit {
        memlock_limit()
    }

    fn device(&self, sysfs: &Path) -> Option<Arc<VfioDevice>> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices
            .iter()
            .find(|(p, _)| p == sysfs)
            .map(|(_, d)| Arc::clone(d))
    }
}

/// RLIMIT_MEMLOCK as the kernel applies it to VFIO pinning.
pub fn memlock_limit() -> MemlockLimit {
    if has_cap_ipc_lock() {
        return MemlockLimit::Unlimited;
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit struct.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if ret != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return MemlockLimit::Unlimited;
    }
    MemlockLimit::Bytes(rl.rlim_cur)
}

fn has_cap_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iova_range_and_dma_avail_caps() {
        let mut b = vec![0u8; 24 + 48 + 12];
        b[0..4].copy_from_slice(&84u32.to_ne_bytes());
        b[4..8].copy_from_slice(&(VFIO_IOMMU_INFO_CAPS | 1).to_ne_bytes());
        b[8..16].copy_from_slice(&0x4020_1000u64.to_ne_bytes());
        b[16..20].copy_from_slice(&24u32.to_ne_bytes());
        // IOVA range cap at 24: header, nr_iovas=2, reserved, two ranges; next = 72.
        b[24..26].copy_from_slice(&1u16.to_ne_bytes());
        b[28..32].copy_from_slice(&72u32.to_ne_bytes());
        b[32..36].copy_from_slice(&2u32.to_ne_bytes());
        b[40..48].copy_from_slice(&0u64.to_ne_bytes());
        b[48..56].copy_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        b[56..64].copy_from_slice(&0xfef0_0000u64.to_ne_bytes());
        b[64..72].copy_from_slice(&0xffff_ffff_ffffu64.to_ne_bytes());
        // DMA avail cap at 72.
        b[72..74].copy_from_slice(&3u16.to_ne_bytes());
        b[80..84].copy_from_slice(&65535u32.to_ne_bytes());
        let info = parse_info(&b).expect("parses");
        assert_eq!(info.pgsizes, 0x4020_1000);
        assert_eq!(info.min_page(), 0x1000);
        assert_eq!(
            info.ranges,
            vec![
                IovaRange::new(0, 0xfedf_ffff),
                IovaRange::new(0xfef0_0000, 0xffff_ffff_ffff)
            ]
        );
        assert_eq!(info.dma_avail, Some(65535));
        // A truncated chain is an error, not a panic.
        assert!(parse_info(&b[..60]).is_none());
    }

    #[test]
    fn memlock_limit_matches_getrlimit_or_capability() {
        let lim = memlock_limit();
        if has_cap_ipc_lock() {
            assert_eq!(lim, MemlockLimit::Unlimited);
            return;
        }
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `rl` is a valid, writable rlimit struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) }, 0);
        let want = if rl.rlim_cur == libc::RLIM_INFINITY {
            MemlockLimit::Unlimited
        } else {
            MemlockLimit::Bytes(rl.rlim_cur)
        };
        assert_eq!(lim, want);
    }
}
