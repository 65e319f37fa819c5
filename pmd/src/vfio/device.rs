//! The PCI device behind a vfio port: found in sysfs, identified by its ids
//! and checked to be bound to vfio-pci (with the command that fixes it when
//! not), and its config space read and written through the vfio region.

use super::mmio;
use super::pci::ConfigSpace;
use super::DeviceError;
use crate::error::PortError;
use std::path::{Path, PathBuf};
use vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
use vfio_ioctls::VfioDevice;

/// Config space of a vfio-pci device through its config region.
pub(super) struct DevConfig<'a>(pub &'a VfioDevice);

impl ConfigSpace for DevConfig<'_> {
    fn read(&self, off: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        mmio::region_read(self.0, VFIO_PCI_CONFIG_REGION_INDEX, u64::from(off), buf)
            .map_err(|e| DeviceError::Config(format!("read at {off:#x}: {e}")))
    }

    fn write(&self, off: u16, buf: &[u8]) -> Result<(), DeviceError> {
        mmio::region_write(self.0, VFIO_PCI_CONFIG_REGION_INDEX, u64::from(off), buf)
            .map_err(|e| DeviceError::Config(format!("write at {off:#x}: {e}")))
    }
}

fn read_sysfs(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A device error of `port` during `what`.
pub(super) fn dev_err(port: &str, what: &str, e: DeviceError) -> PortError {
    PortError::Io {
        port: port.to_string(),
        what: what.to_string(),
        source: std::io::Error::other(e),
    }
}

/// The sysfs directory of PCI device `bdf` and its vendor/device ids as
/// sysfs shows them (`0x1af4`, `0x1041`).
///
/// # Errors
/// No such device.
pub(super) fn identify(port: &str, bdf: &str) -> Result<(PathBuf, (String, String)), PortError> {
    let sysfs = PathBuf::from("/sys/bus/pci/devices").join(bdf);
    if !sysfs.exists() {
        return Err(dev_err(
            port,
            "probe",
            DeviceError::Unsupported(format!("no PCI device {bdf} ({} missing)", sysfs.display())),
        ));
    }
    let ids = (
        read_sysfs(&sysfs.join("vendor")),
        read_sysfs(&sysfs.join("device")),
    );
    Ok((sysfs, ids))
}

/// The device at `sysfs` must be bound to vfio-pci.
///
/// # Errors
/// Another driver or none, naming the devbind command that fixes it.
pub(super) fn check_bound(port: &str, bdf: &str, sysfs: &Path) -> Result<(), PortError> {
    let driver = std::fs::read_link(sysfs.join("driver"))
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    if driver.as_deref() != Some("vfio-pci") {
        return Err(dev_err(
            port,
            "probe",
            DeviceError::Unsupported(format!(
                "{bdf} is bound to {}, not vfio-pci; bind it first: \
                     `xfwd-host devbind --bind vfio-pci {bdf}`",
                driver.as_deref().unwrap_or("no driver")
            )),
        ));
    }
    Ok(())
}

/// The sysfs directory of PCI device `bdf`, checked to be a virtio-net
/// (1af4:1041 or transitional 1af4:1000) bound to vfio-pci.
///
/// # Errors
/// No such device, another device, another driver (naming the fix).
pub(super) fn check(port: &str, bdf: &str) -> Result<PathBuf, PortError> {
    let (sysfs, ids) = identify(port, bdf)?;
    if ids.0 != "0x1af4" || !matches!(ids.1.as_str(), "0x1041" | "0x1000") {
        return Err(dev_err(
            port,
            "probe",
            DeviceError::Unsupported(format!(
                "{bdf} is {}:{}, this driver drives virtio-net (1af4:1041)",
                ids.0, ids.1
            )),
        ));
    }
    check_bound(port, bdf, &sysfs)?;
    Ok(sysfs)
}
