//! Bind and unbind PCI network devices, like `dpdk-devbind.py`, with the checks it lacks.
//!
//! Binding uses `driver_override` + `drivers_probe` (so only the named device moves, never every
//! device with the same ids as `new_id` does), reads the `driver` link back to see what the kernel
//! really did, and on failure binds the previous driver again. All checks (driver loaded, IOMMU,
//! no-IOMMU mode, group viability, active interfaces) run for every named device before the first
//! write, so a refused command changes nothing.

use serde::Serialize;

use crate::error::{GroupMember, HostError};
use crate::iommu::{self, IommuMode, IommuStatus};
use crate::nics::{self, XfwdSupport};
use crate::pci::{self, PciDevice, DPDK_DRIVERS};
use crate::sysfs::Sysfs;

/// Options shared by bind and unbind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// Unbind active interfaces and bind into non-viable IOMMU groups anyway.
    pub force: bool,
    /// Owner to give `/dev/vfio/N` after binding to vfio-pci.
    pub uid: Option<u32>,
    /// Group to give `/dev/vfio/N` after binding to vfio-pci.
    pub gid: Option<u32>,
}

/// Where a device's driver stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Bound to vfio-pci, uio_pci_generic or igb_uio.
    Dpdk,
    /// Bound to a kernel driver.
    Kernel,
    /// No driver.
    Unbound,
}

/// IOMMU group of a device as shown by `--status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// Group number.
    pub number: u32,
    /// Usable by vfio as it stands now.
    pub viable: bool,
    /// Every device of the group (the device itself included) with its driver.
    pub members: Vec<GroupMember>,
    /// `/dev/vfio/...` node, when the device is bound to vfio-pci.
    pub vfio_node: Option<String>,
}

/// One device in the status listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    /// The device.
    #[serde(flatten)]
    pub device: PciDevice,
    /// Driver category.
    pub category: Category,
    /// An interface of the device has addresses or routes.
    pub active: bool,
    /// Drivers that can take the device, other than the current one.
    pub possible_drivers: Vec<String>,
    /// Its IOMMU group.
    pub iommu_group_status: Option<GroupStatus>,
    /// Whether one of xfwd's `vfio:` drivers drives it.
    pub xfwd: XfwdSupport,
}

/// The `--status` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// IOMMU/VFIO readiness.
    pub iommu: IommuStatus,
    /// Devices (network class only unless all were asked for).
    pub devices: Vec<DeviceStatus>,
}

/// Build the status report; `all` lists every PCI device, not only network controllers.
pub fn status(fs: &dyn Sysfs, all: bool) -> Status {
    let active = pci::active_interfaces(fs);
    let mut devs: Vec<PciDevice> = PciDevice::scan(fs)
        .into_iter()
        .filter(|d| all || d.is_network())
        .collect();
    pci::add_names(fs, &mut devs);
    let devices = devs
        .into_iter()
        .map(|d| {
            let category = match &d.driver {
                None => Category::Unbound,
                Some(_) if d.is_dpdk_bound() => Category::Dpdk,
                Some(_) => Category::Kernel,
            };
            let mut possible = pci::kernel_modules_for(fs, &d.pci);
            for drv in DPDK_DRIVERS {
                if !possible.iter().any(|p| p == drv) {
                    possible.push(drv.to_string());
                }
            }
            possible.retain(|p| Some(p) != d.driver.as_ref());
            let group = d.iommu_group.map(|number| {
                let members = iommu::group_members(fs, number);
                GroupStatus {
                    number,
                    viable: iommu::viable(&members, &[]),
                    members,
                    vfio_node: (d.driver.as_deref() == Some("vfio-pci"))
                        .then(|| iommu::vfio_node(fs, number)),
                }
            });
            DeviceStatus {
                active: d.interfaces.iter().any(|i| active.contains(i)),
                xfwd: nics::support(&d.vendor, &d.device),
                category,
                possible_drivers: possible,
                iommu_group_status: group,
                device: d,
            }
        })
        .collect();
    Status {
        iommu: IommuStatus::read(fs),
        devices,
    }
}

/// What happened to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindOutcome {
    /// PCI address.
    pub pci: String,
    /// Driver before.
    pub from: Option<String>,
    /// Driver after (as read back; the requested one in a dry run).
    pub to: Option<String>,
    /// Why nothing was done, when nothing was.
    pub skipped: Option<String>,
    /// Warnings (no-IOMMU mode, forced actions).
    pub warnings: Vec<String>,
    /// vfio device node given to `--uid/--gid`.
    pub vfio_node: Option<String>,
}

/// Resolve a user's device name (full or short PCI address, or interface name).
///
/// # Errors
/// [`HostError::UnknownDevice`].
pub fn resolve(fs: &dyn Sysfs, name: &str) -> Result<PciDevice, HostError> {
    if let Some(addr) = pci::normalize_address(name) {
        return PciDevice::read(fs, &addr).ok_or_else(|| HostError::UnknownDevice(name.into()));
    }
    PciDevice::scan(fs)
        .into_iter()
        .find(|d| d.interfaces.iter().any(|i| i == name))
        .ok_or_else(|| HostError::UnknownDevice(name.into()))
}

fn check_active(fs: &dyn Sysfs, dev: &PciDevice, opts: &BindOptions) -> Result<(), HostError> {
    let active = pci::active_interfaces(fs);
    let busy: Vec<&str> = dev
        .interfaces
        .iter()
        .filter(|i| active.contains(*i))
        .map(String::as_str)
        .collect();
    if busy.is_empty() || opts.force {
        return Ok(());
    }
    Err(HostError::ActiveInterface {
        device: dev.pci.clone(),
        interfaces: busy.join(","),
    })
}

/// Bind every named device to `driver` (`none` unbinds).
///
/// # Errors
/// Before any write: unknown device, driver not loaded, no IOMMU, non-viable group, active
/// interface. During: [`HostError::BindFailed`] after rolling back to the previous driver, or
/// [`HostError::Io`] when the first unbind write fails.
pub fn bind(
    fs: &dyn Sysfs,
    names: &[String],
    driver: &str,
    opts: &BindOptions,
) -> Result<Vec<BindOutcome>, HostError> {
    if driver == "none" {
        return unbind(fs, names, opts);
    }
    if pci::normalize_address(driver).is_some() {
        return Err(HostError::DriverLooksLikeDevice(driver.to_string()));
    }
    let devs = names
        .iter()
        .map(|n| resolve(fs, n))
        .collect::<Result<Vec<_>, _>>()?;
    let iommu_status = IommuStatus::read(fs);
    let vfio = driver == "vfio-pci";
    let addrs: Vec<String> = devs.iter().map(|d| d.pci.clone()).collect();
    let mut warnings = Vec::new();
    for dev in &devs {
        if vfio {
            iommu_status.require_vfio(&dev.pci)?;
        } else if !fs.exists(&pci::driver_path(driver)) {
            let fix = match driver {
                "igb_uio" => "igb_uio is out of tree: build it from dpdk-kmods and insmod it, or use vfio-pci".to_string(),
                d => format!("modprobe {d}"),
            };
            return Err(HostError::DriverNotLoaded {
                driver: driver.to_string(),
                fix,
            });
        }
        if dev.driver.as_deref() != Some(driver) {
            check_active(fs, dev, opts)?;
        }
        if vfio {
            if let Err(e) = iommu::check_group(fs, dev, &addrs) {
                if !opts.force {
                    return Err(e);
                }
                warnings.push(format!("--force: {e}"));
            }
        }
    }
    if vfio && iommu_status.mode == IommuMode::NoIommu {
        warnings.push(iommu::NOIOMMU_WARNING.to_string());
    }
    let mut out = Vec::new();
    for dev in &devs {
        let mut o = bind_one(fs, dev, driver)?;
        if vfio && (opts.uid.is_some() || opts.gid.is_some()) {
            o.vfio_node = Some(chown_vfio_node(fs, &dev.pci, opts)?);
        }
        o.warnings.extend(warnings.iter().cloned());
        if vfio {
            let support = nics::support(&dev.vendor, &dev.device);
            if let Some(w) = support.bind_warning(&dev.pci, &dev.vendor, &dev.device) {
                o.warnings.push(w);
            }
        }
        out.push(o);
    }
    Ok(out)
}

fn current_driver(fs: &dyn Sysfs, pci: &str) -> Option<String> {
    fs.link_name(&format!("{}/driver", pci::dev_path(pci)))
}

/// Ask the kernel to bind `pci` to `driver` and read back what it did.
fn probe_with_override(fs: &dyn Sysfs, pci: &str, driver: &str) -> Result<(), String> {
    let ov = format!("{}/driver_override", pci::dev_path(pci));
    let r = fs
        .write(&ov, driver)
        .and_then(|()| fs.write("/sys/bus/pci/drivers_probe", pci));
    let now = if fs.dry_run() {
        Some(driver.to_string())
    } else {
        current_driver(fs, pci)
    };
    // Clear the override either way, so a later unbind/rebind is not forced to `driver`.
    let clear = fs.write(&ov, "\n");
    match (r, now) {
        (Ok(()), Some(d)) if d == driver => clear.map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), now) => Err(format!(
            "after drivers_probe the device is {} (check dmesg for the probe error)",
            now.map_or("unbound".to_string(), |d| format!("bound to {d}"))
        )),
    }
}

fn bind_one(fs: &dyn Sysfs, dev: &PciDevice, driver: &str) -> Result<BindOutcome, HostError> {
    let mut out = BindOutcome {
        pci: dev.pci.clone(),
        from: dev.driver.clone(),
        to: dev.driver.clone(),
        skipped: None,
        warnings: Vec::new(),
        vfio_node: None,
    };
    if dev.driver.as_deref() == Some(driver) {
        out.skipped = Some(format!("already bound to {driver}"));
        return Ok(out);
    }
    if let Some(old) = &dev.driver {
        fs.write(&format!("{}/unbind", pci::driver_path(old)), &dev.pci)?;
    }
    match probe_with_override(fs, &dev.pci, driver) {
        Ok(()) => {
            out.to = Some(driver.to_string());
            Ok(out)
        }
        Err(why) => Err(rollback(fs, dev, driver, why)),
    }
}

fn rollback(fs: &dyn Sysfs, dev: &PciDevice, driver: &str, why: String) -> HostError {
    let mut rollback_error = None;
    if let Some(stray) = current_driver(fs, &dev.pci) {
        if Some(&stray) != dev.driver.as_ref() {
            let path = format!("{}/unbind", pci::driver_path(&stray));
            if let Err(e) = fs.write(&path, &dev.pci) {
                rollback_error = Some(e.to_string());
            }
        }
    }
    if let (Some(old), None) = (&dev.driver, &rollback_error) {
        if current_driver(fs, &dev.pci).as_ref() != Some(old) {
            rollback_error = probe_with_override(fs, &dev.pci, old).err();
        }
    }
    HostError::BindFailed {
        device: dev.pci.clone(),
        driver: driver.to_string(),
        why,
        restored: dev.driver.clone().filter(|_| rollback_error.is_none()),
        rollback_error,
    }
}

/// Unbind every named device from its driver.
///
/// # Errors
/// Unknown device, active interface without `force` (before any write), or the write error.
pub fn unbind(
    fs: &dyn Sysfs,
    names: &[String],
    opts: &BindOptions,
) -> Result<Vec<BindOutcome>, HostError> {
    let devs = names
        .iter()
        .map(|n| resolve(fs, n))
        .collect::<Result<Vec<_>, _>>()?;
    for dev in &devs {
        check_active(fs, dev, opts)?;
    }
    let mut out = Vec::new();
    for dev in devs {
        let mut o = BindOutcome {
            pci: dev.pci.clone(),
            from: dev.driver.clone(),
            to: None,
            skipped: None,
            warnings: Vec::new(),
            vfio_node: None,
        };
        match &dev.driver {
            None => o.skipped = Some("not bound to any driver".to_string()),
            Some(d) => {
                fs.write(&format!("{}/unbind", pci::driver_path(d)), &dev.pci)?;
                if dev.driver_override.is_some() {
                    fs.write(
                        &format!("{}/driver_override", pci::dev_path(&dev.pci)),
                        "\n",
                    )?;
                }
                if !fs.dry_run() {
                    if let Some(still) = current_driver(fs, &dev.pci) {
                        return Err(HostError::BindFailed {
                            device: dev.pci.clone(),
                            driver: "none".to_string(),
                            why: format!("the device is still bound to {still} after unbind"),
                            restored: None,
                            rollback_error: None,
                        });
                    }
                }
            }
        }
        out.push(o);
    }
    Ok(out)
}

/// Give the `/dev/vfio` node of a vfio-pci-bound device to `uid`/`gid`; returns the node's host
/// path.
///
/// # Errors
/// [`HostError::VfioNodeMissing`] when the node does not exist, or the chown error.
pub fn chown_vfio_node(fs: &dyn Sysfs, pci: &str, opts: &BindOptions) -> Result<String, HostError> {
    let group = fs
        .link_name(&format!("{}/iommu_group", pci::dev_path(pci)))
        .and_then(|g| g.parse::<u32>().ok());
    let node = match group {
        Some(g) => iommu::vfio_node(fs, g),
        // A no-IOMMU group is only created by the bind: in a dry run it does not exist yet.
        None if fs.dry_run() => "/dev/vfio/<group created by the bind>".to_string(),
        None => {
            return Err(HostError::VfioNodeMissing {
                device: pci.to_string(),
                path: fs.resolve("/dev/vfio/<no iommu_group link>"),
            })
        }
    };
    if !fs.dry_run() && !fs.exists(&node) {
        return Err(HostError::VfioNodeMissing {
            device: pci.to_string(),
            path: fs.resolve(&node),
        });
    }
    fs.chown(&node, opts.uid, opts.gid)?;
    Ok(node)
}
