//! IOMMU and VFIO readiness: is there an IOMMU, is no-IOMMU mode on, is vfio-pci loaded, and is
//! an IOMMU group viable (the kernel's "group is not viable" check, done before binding).

use serde::Serialize;

use crate::error::{GroupMember, HostError};
use crate::pci::PciDevice;
use crate::sysfs::Sysfs;

/// Host path of the IOMMU groups directory.
pub const GROUPS: &str = "/sys/kernel/iommu_groups";
/// Host path of vfio's no-IOMMU switch.
pub const NOIOMMU_PARAM: &str = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";

/// What to do when there is no IOMMU.
pub const FIX_NO_IOMMU: &str = "enable VT-d/AMD-Vi in the firmware and boot with `intel_iommu=on iommu=pt` (Intel) or `amd_iommu=on iommu=pt` (AMD) on the kernel command line; without an IOMMU bind to uio_pci_generic, or enable the unsafe no-IOMMU mode: `modprobe vfio enable_unsafe_noiommu_mode=1` (or `echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode`)";
/// What to do when vfio-pci is not loaded.
pub const FIX_VFIO_PCI: &str = "modprobe vfio-pci";
/// Warning shown in no-IOMMU mode.
pub const NOIOMMU_WARNING: &str = "vfio is in no-IOMMU mode: devices bound to vfio-pci can DMA anywhere in memory (unsafe, taints the kernel)";

/// Drivers the kernel accepts in a group handed to vfio (they do not DMA on their own behalf).
const VIABLE_DRIVERS: [&str; 3] = ["vfio-pci", "pci-stub", "pcieport"];

/// How devices get DMA isolation on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IommuMode {
    /// IOMMU groups exist: vfio-pci works with isolation.
    Enabled,
    /// No IOMMU, but vfio's unsafe no-IOMMU mode is on.
    NoIommu,
    /// No IOMMU and no-IOMMU mode off: vfio-pci cannot be used.
    Missing,
}

/// Readiness of the host for vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IommuStatus {
    /// Isolation mode.
    pub mode: IommuMode,
    /// Number of IOMMU groups.
    pub groups: usize,
    /// `vfio-pci` registered with the PCI bus.
    pub vfio_pci_loaded: bool,
    /// Problems, each with the command that fixes it.
    pub problems: Vec<String>,
}

impl IommuStatus {
    /// Inspect the host.
    pub fn read(fs: &dyn Sysfs) -> IommuStatus {
        let groups = fs.list(GROUPS).len();
        let noiommu = fs
            .read_opt(NOIOMMU_PARAM)
            .is_some_and(|v| v == "Y" || v == "1");
        let vfio_pci_loaded = fs.exists("/sys/bus/pci/drivers/vfio-pci");
        let mode = if noiommu {
            IommuMode::NoIommu
        } else if groups > 0 {
            IommuMode::Enabled
        } else {
            IommuMode::Missing
        };
        let mut problems = Vec::new();
        match mode {
            IommuMode::Missing => problems.push(format!(
                "no IOMMU ({GROUPS} is empty): vfio-pci cannot be used; fix: {FIX_NO_IOMMU}"
            )),
            IommuMode::NoIommu => problems.push(NOIOMMU_WARNING.to_string()),
            IommuMode::Enabled => {}
        }
        if !vfio_pci_loaded {
            problems.push(format!("vfio-pci is not loaded; fix: {FIX_VFIO_PCI}"));
        }
        IommuStatus {
            mode,
            groups,
            vfio_pci_loaded,
            problems,
        }
    }

    /// Fail unless a device can be bound to vfio-pci now.
    ///
    /// # Errors
    /// [`HostError::NoIommu`] or [`HostError::DriverNotLoaded`], each with its fix.
    pub fn require_vfio(&self, device: &str) -> Result<(), HostError> {
        if self.mode == IommuMode::Missing {
            return Err(HostError::NoIommu {
                device: device.to_string(),
                fix: FIX_NO_IOMMU.to_string(),
            });
        }
        if !self.vfio_pci_loaded {
            return Err(HostError::DriverNotLoaded {
                driver: "vfio-pci".to_string(),
                fix: FIX_VFIO_PCI.to_string(),
            });
        }
        Ok(())
    }
}

/// Every device of IOMMU group `group` with its driver.
pub fn group_members(fs: &dyn Sysfs, group: u32) -> Vec<GroupMember> {
    fs.list(&format!("{GROUPS}/{group}/devices"))
        .into_iter()
        .map(|pci| {
            let dev = PciDevice::read(fs, &pci);
            GroupMember {
                driver: dev.as_ref().and_then(|d| d.driver.clone()),
                bridge: dev.as_ref().is_some_and(PciDevice::is_bridge),
                pci,
            }
        })
        .collect()
}

/// True when vfio can use a group whose members are `members`, given that the devices in
/// `becoming_vfio` are about to be bound to vfio-pci.
pub fn viable(members: &[GroupMember], becoming_vfio: &[String]) -> bool {
    members.iter().all(|m| member_ok(m, becoming_vfio))
}

fn member_ok(m: &GroupMember, becoming_vfio: &[String]) -> bool {
    m.bridge
        || becoming_vfio.contains(&m.pci)
        || m.driver
            .as_deref()
            .is_none_or(|d| VIABLE_DRIVERS.contains(&d))
}

/// Check that binding `becoming_vfio` to vfio-pci leaves `device`'s group viable.
///
/// # Errors
/// [`HostError::GroupNotViable`] listing every group member and its driver, with the command
/// that binds the offending siblings too.
pub fn check_group(
    fs: &dyn Sysfs,
    device: &PciDevice,
    becoming_vfio: &[String],
) -> Result<Vec<GroupMember>, HostError> {
    let Some(group) = device.iommu_group else {
        return Ok(Vec::new());
    };
    let members = group_members(fs, group);
    if viable(&members, becoming_vfio) {
        return Ok(members);
    }
    let offenders: Vec<&str> = members
        .iter()
        .filter(|m| !member_ok(m, becoming_vfio))
        .map(|m| m.pci.as_str())
        .collect();
    let mut all: Vec<&str> = becoming_vfio.iter().map(String::as_str).collect();
    all.extend(&offenders);
    Err(HostError::GroupNotViable {
        device: device.pci.clone(),
        group,
        siblings: members.clone(),
        fix: format!(
            "bind the whole group at once: `devbind --bind vfio-pci {}` (or unbind {})",
            all.join(" "),
            offenders.join(" ")
        ),
    })
}

/// The character device vfio creates for `group` (`/dev/vfio/N`, or `/dev/vfio/noiommu-N` for a
/// no-IOMMU group).
pub fn vfio_node(fs: &dyn Sysfs, group: u32) -> String {
    let noiommu = fs
        .read_opt(&format!("{GROUPS}/{group}/name"))
        .is_some_and(|n| n == "vfio-noiommu");
    if noiommu {
        format!("/dev/vfio/noiommu-{group}")
    } else {
        format!("/dev/vfio/{group}")
    }
}
