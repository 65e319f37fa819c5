//! Persistent host configuration (`configs/host.toml`): hugepage reservations, hugetlbfs mounts
//! and device bindings, applied by `xfwd-host apply FILE` and by `scripts/xfwd-host.service`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::devbind::{self, BindOptions, BindOutcome};
use crate::error::HostError;
use crate::hugepages::{self, MountOutcome, MountOwner, Mounter, Reservation};
use crate::size::parse_size;
use crate::sysfs::Sysfs;

/// One hugepage reservation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HugepageCfg {
    /// Page size, e.g. "2M" or "1G" (default: the kernel's default size).
    pub page_size: Option<String>,
    /// Total memory to reserve, e.g. "1G".
    pub size: String,
    /// NUMA node; without it the pages are split across nodes.
    pub node: Option<u32>,
}

/// One hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountCfg {
    /// Mount point.
    pub path: String,
    /// Page size (default: the kernel's default size).
    pub page_size: Option<String>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Octal permissions, e.g. "0770".
    pub mode: Option<String>,
}

/// One device binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCfg {
    /// PCI address or interface name.
    pub device: String,
    /// Driver ("vfio-pci", a kernel driver, or "none").
    pub driver: String,
    /// Bind even if the interface is active or the IOMMU group is not viable.
    #[serde(default)]
    pub force: bool,
}

/// Ownership of /dev/vfio nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfioCfg {
    /// Owner of /dev/vfio/N.
    pub uid: Option<u32>,
    /// Group of /dev/vfio/N.
    pub gid: Option<u32>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Reservations, applied in order.
    #[serde(default)]
    pub hugepages: Vec<HugepageCfg>,
    /// Mounts.
    #[serde(default)]
    pub mount: Vec<MountCfg>,
    /// /dev/vfio ownership.
    #[serde(default)]
    pub vfio: VfioCfg,
    /// Bindings.
    #[serde(default)]
    pub device: Vec<DeviceCfg>,
}

impl HostConfig {
    /// Parse and validate a config text (`path` only names it in errors).
    ///
    /// # Errors
    /// [`HostError::Config`] for syntax, unknown keys, bad sizes or modes.
    pub fn parse(text: &str, path: &Path) -> Result<HostConfig, HostError> {
        let err = |detail: String| HostError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let cfg: HostConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        for h in &cfg.hugepages {
            parse_size(&h.size).map_err(|e| err(format!("hugepages.size: {e}")))?;
            if let Some(p) = &h.page_size {
                parse_size(p).map_err(|e| err(format!("hugepages.page_size: {e}")))?;
            }
        }
        for m in &cfg.mount {
            if let Some(p) = &m.page_size {
                parse_size(p).map_err(|e| err(format!("mount.page_size: {e}")))?;
            }
            if let Some(mode) = &m.mode {
                u32::from_str_radix(mode, 8).map_err(|_| {
                    err(format!("mount.mode {mode:?} is not octal (e.g. \"0770\")"))
                })?;
            }
        }
        Ok(cfg)
    }

    /// Read and parse a file.
    ///
    /// # Errors
    /// [`HostError::Io`] when unreadable, else as [`HostConfig::parse`].
    pub fn load(path: &Path) -> Result<HostConfig, HostError> {
        let text = std::fs::read_to_string(path).map_err(|e| HostError::io("read", path, e))?;
        Self::parse(&text, path)
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Pools written and read back.
    pub reservations: Vec<Reservation>,
    /// Mounts.
    pub mounts: Vec<MountOutcome>,
    /// Device bindings.
    pub devices: Vec<BindOutcome>,
}

fn size_opt(s: &Option<String>) -> Option<u64> {
    s.as_deref().and_then(|p| parse_size(p).ok())
}

/// Apply the configuration: reservations, then mounts, then bindings; stops at the first error.
///
/// # Errors
/// The first failing step's error.
pub fn apply(
    fs: &dyn Sysfs,
    mounter: &dyn Mounter,
    cfg: &HostConfig,
) -> Result<ApplyReport, HostError> {
    let mut report = ApplyReport::default();
    for h in &cfg.hugepages {
        let bytes = parse_size(&h.size)?;
        let r = hugepages::reserve(fs, bytes, size_opt(&h.page_size), h.node)?;
        report.reservations.extend(r);
    }
    for m in &cfg.mount {
        let owner = MountOwner {
            uid: m.uid,
            gid: m.gid,
            mode: m
                .mode
                .as_deref()
                .and_then(|v| u32::from_str_radix(v, 8).ok()),
        };
        let out = hugepages::mount(fs, mounter, &m.path, size_opt(&m.page_size), owner)?;
        report.mounts.push(out);
    }
    // Devices going to the same driver are bound in one call, so the IOMMU-group check sees
    // every device of a group that the file binds (one at a time, the first would be refused).
    let mut batches: Vec<(&str, bool, Vec<String>)> = Vec::new();
    for d in &cfg.device {
        match batches
            .iter_mut()
            .find(|(drv, force, _)| *drv == d.driver && *force == d.force)
        {
            Some((_, _, names)) => names.push(d.device.clone()),
            None => batches.push((&d.driver, d.force, vec![d.device.clone()])),
        }
    }
    for (driver, force, names) in batches {
        let opts = BindOptions {
            force,
            uid: cfg.vfio.uid,
            gid: cfg.vfio.gid,
        };
        report
            .devices
            .extend(devbind::bind(fs, &names, driver, &opts)?);
    }
    Ok(report)
}
