//! The one error type of the host tools. Every variant says what to do about it.

use std::io;
use std::path::{Path, PathBuf};

/// A device in an IOMMU group and the driver it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupMember {
    /// PCI address.
    pub pci: String,
    /// Bound driver, `None` when unbound.
    pub driver: Option<String>,
    /// True for PCI bridges, which the kernel does not count against viability.
    pub bridge: bool,
}

fn members(list: &[GroupMember]) -> String {
    list.iter()
        .map(|m| format!("{} ({})", m.pci, m.driver.as_deref().unwrap_or("no driver")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => " (run as root)",
        io::ErrorKind::NotFound => " (not present on this kernel/host)",
        _ => "",
    }
}

/// Errors of devbind, hugepages and host-config operations.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        /// What was attempted.
        op: &'static str,
        /// Resolved path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The name is neither a PCI address nor an interface of a PCI network device.
    #[error("unknown device {0:?}: give a PCI address (0000:01:00.0 or 01:00.0) or the interface name of a PCI network device; `devbind --status` lists them")]
    UnknownDevice(String),
    /// `--bind 0000:01:00.0 ...`: the driver argument is a device.
    #[error("{0:?} is a device, not a driver: did you forget the driver? e.g. `devbind --bind vfio-pci {0}`")]
    DriverLooksLikeDevice(String),
    /// The target driver is not registered with the PCI bus.
    #[error("driver {driver} is not loaded (no /sys/bus/pci/drivers/{driver}); fix: {fix}")]
    DriverNotLoaded {
        /// Driver name.
        driver: String,
        /// Command that fixes it.
        fix: String,
    },
    /// vfio-pci requested but the host has no IOMMU and no-IOMMU mode is off.
    #[error("no IOMMU: /sys/kernel/iommu_groups is empty, so vfio-pci cannot isolate {device}; fix: {fix}")]
    NoIommu {
        /// Device that was to be bound.
        device: String,
        /// What to do.
        fix: String,
    },
    /// Binding would leave an IOMMU group that vfio cannot use.
    #[error("IOMMU group {group} of {device} is not viable for vfio: every device in it must be bound to vfio-pci/pci-stub or unbound (bridges excepted); group members: {}; fix: {fix} (or --force to bind anyway)", members(siblings))]
    GroupNotViable {
        /// Device being bound.
        device: String,
        /// IOMMU group number.
        group: u32,
        /// Every device of the group with its driver.
        siblings: Vec<GroupMember>,
        /// Command that makes the group viable.
        fix: String,
    },
    /// Refusal to unbind an interface that carries addresses or routes.
    #[error("{device} is active: interface {interfaces} has addresses or routes; unbinding it cuts that traffic (maybe your SSH session). Use --force to do it anyway")]
    ActiveInterface {
        /// Device.
        device: String,
        /// Its active interface names, comma separated.
        interfaces: String,
    },
    /// The kernel did not bind the device to the requested driver.
    #[error("binding {device} to {driver} failed: {why}; {}", match (restored, rollback_error) {
        (_, Some(e)) => format!("rollback to the previous driver failed too: {e}"),
        (Some(d), None) => format!("restored the previous driver {d}"),
        (None, None) => "the device was unbound before and is left unbound".to_string(),
    })]
    BindFailed {
        /// Device.
        device: String,
        /// Requested driver.
        driver: String,
        /// Why (write error or what the read-back found).
        why: String,
        /// Previous driver, restored.
        restored: Option<String>,
        /// Why restoring failed.
        rollback_error: Option<String>,
    },
    /// A vfio device node did not appear after binding.
    #[error("{} does not exist after binding {device} to vfio-pci; is devtmpfs mounted on /dev?", path.display())]
    VfioNodeMissing {
        /// Device.
        device: String,
        /// Expected node.
        path: PathBuf,
    },
    /// A size argument could not be parsed.
    #[error("invalid size {input:?}: {why} (examples: 2M, 1G, 512M, 2048k)")]
    InvalidSize {
        /// What the user gave.
        input: String,
        /// What is wrong.
        why: String,
    },
    /// Reservation is not a whole number of pages.
    #[error("{size} is not a multiple of the page size {page}")]
    NotMultiple {
        /// Requested size, formatted.
        size: String,
        /// Page size, formatted.
        page: String,
    },
    /// The kernel does not support that hugepage size.
    #[error("hugepage size {size} is not supported here; supported: {available}")]
    UnsupportedPageSize {
        /// Requested page size.
        size: String,
        /// Supported ones.
        available: String,
    },
    /// No such NUMA node (or it has no hugepage pool).
    #[error("NUMA node {node} does not exist or has no hugepages; nodes: {available}")]
    NoSuchNode {
        /// Requested node.
        node: u32,
        /// Existing nodes.
        available: String,
    },
    /// The kernel granted fewer pages than asked.
    #[error("asked for {asked} pages of {page} in {}, the kernel granted {granted}: memory is too fragmented or too small; free memory (echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory) and retry, or reserve at boot (kernel command line: hugepagesz={page} hugepages={asked})", path.display())]
    HugepagesShort {
        /// nr_hugepages file.
        path: PathBuf,
        /// Page size, formatted.
        page: String,
        /// Requested pages.
        asked: u64,
        /// Pages the kernel actually reserved.
        granted: u64,
    },
    /// Mount or unmount failed.
    #[error("{op} {}: {detail}", path.display())]
    Mount {
        /// `mount` or `umount`.
        op: &'static str,
        /// Mount point.
        path: PathBuf,
        /// What the tool or the kernel said.
        detail: String,
    },
    /// The host configuration file is invalid.
    #[error("host config {}: {detail}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl HostError {
    /// Build an [`HostError::Io`].
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        HostError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
