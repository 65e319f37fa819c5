//! Host preparation for xfwd: the logic behind `scripts/devbind`, `scripts/hugepages` and
//! `xfwd-host apply`.
//!
//! What DPDK's `dpdk-devbind.py` and `dpdk-hugepages.py` do, plus what users trip over with them:
//! IOMMU-group viability ("group is not viable"), missing IOMMU / no-IOMMU mode / `vfio-pci` not
//! loaded (each reported with the command that fixes it), rollback of a failed bind, dry runs that
//! list every sysfs write, JSON output, hugepage reservations split across NUMA nodes (instead of
//! multiplied) and read back to check that the kernel granted them.
//!
//! Every sysfs/procfs/dev path goes through a [`sysfs::Sysfs`] rooted at a directory (`/` on a
//! real host, a fake tree in tests); mounts go through [`hugepages::Mounter`].
#![deny(unsafe_code)]

pub mod cli;
pub mod devbind;
pub mod error;
pub mod hostcfg;
pub mod hugepages;
pub mod iommu;
pub mod nics;
pub mod pci;
pub mod size;
pub mod sysfs;

pub use error::HostError;
pub use sysfs::{Action, RealSysfs, Sysfs};
