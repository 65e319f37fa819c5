//! PCI devices as sysfs shows them: address, ids, class, driver, interfaces, IOMMU group, and
//! which kernel modules could drive them.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::sysfs::Sysfs;

/// Drivers that hand a device to a userspace dataplane.
pub const DPDK_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Host path of the PCI device directory.
pub fn dev_path(pci: &str) -> String {
    format!("/sys/bus/pci/devices/{pci}")
}

/// Host path of a PCI driver's directory.
pub fn driver_path(driver: &str) -> String {
    format!("/sys/bus/pci/drivers/{driver}")
}

/// Canonical `dddd:bb:dd.f` form of a PCI address (`01:00.0` gets domain 0000), or `None` if
/// the text is not a PCI address.
pub fn normalize_address(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let full = if s.matches(':').count() == 1 {
        format!("0000:{s}")
    } else {
        s
    };
    let (rest, func) = full.rsplit_once('.')?;
    let mut parts = rest.split(':');
    let (dom, bus, slot) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let func_ok = func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7');
    (parts.next().is_none() && hex(dom, 4) && hex(bus, 2) && hex(slot, 2) && func_ok)
        .then_some(full)
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Address, `0000:01:00.0`.
    pub pci: String,
    /// Vendor id, 4 hex digits.
    pub vendor: String,
    /// Device id, 4 hex digits.
    pub device: String,
    /// 24-bit class code (`0x020000` = Ethernet).
    pub class: u32,
    /// Vendor and device name from pci.ids, when available.
    pub name: Option<String>,
    /// Bound driver.
    pub driver: Option<String>,
    /// Network interfaces of the device (also those of a virtio child).
    pub interfaces: Vec<String>,
    /// NUMA node, when the platform reports one.
    pub numa_node: Option<u32>,
    /// IOMMU group number.
    pub iommu_group: Option<u32>,
    /// `driver_override`, when set.
    pub driver_override: Option<String>,
}

impl PciDevice {
    /// Read one device; `None` when it does not exist.
    pub fn read(fs: &dyn Sysfs, pci: &str) -> Option<PciDevice> {
        let base = dev_path(pci);
        if !fs.exists(&base) {
            return None;
        }
        let hex_id = |f: &str| {
            fs.read_opt(&format!("{base}/{f}"))
                .map(|v| v.trim_start_matches("0x").to_string())
                .unwrap_or_default()
        };
        let class = fs
            .read_opt(&format!("{base}/class"))
            .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let numa_node = fs
            .read_opt(&format!("{base}/numa_node"))
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        let driver_override = fs
            .read_opt(&format!("{base}/driver_override"))
            .filter(|o| !o.is_empty() && o != "(null)");
        let mut interfaces = fs.list(&format!("{base}/net"));
        for child in fs.list(&base) {
            if child.starts_with("virtio") {
                interfaces.extend(fs.list(&format!("{base}/{child}/net")));
            }
        }
        Some(PciDevice {
            pci: pci.to_string(),
            vendor: hex_id("vendor"),
            device: hex_id("device"),
            class,
            name: None,
            driver: fs.link_name(&format!("{base}/driver")),
            interfaces,
            numa_node,
            iommu_group: fs
                .link_name(&format!("{base}/iommu_group"))
                .and_then(|g| g.parse().ok()),
            driver_override,
        })
    }

    /// Every PCI device of the host, in address order.
    pub fn scan(fs: &dyn Sysfs) -> Vec<PciDevice> {
        fs.list("/sys/bus/pci/devices")
            .iter()
            .filter_map(|d| PciDevice::read(fs, d))
            .collect()
    }

    /// Ethernet/network controller (class 0x02).
    pub fn is_network(&self) -> bool {
        self.class >> 16 == 0x02
    }

    /// PCI-to-PCI bridge (class 0x0604), which IOMMU-group viability ignores.
    pub fn is_bridge(&self) -> bool {
        self.class >> 8 == 0x0604
    }

    /// Bound to a userspace (DPDK-compatible) driver.
    pub fn is_dpdk_bound(&self) -> bool {
        self.driver
            .as_deref()
            .is_some_and(|d| DPDK_DRIVERS.contains(&d))
    }
}

/// Interfaces that carry IPv4 routes, non-link-local IPv6 addresses or routes: unbinding them
/// would cut live traffic. Read from `/proc/net/{route,if_inet6,ipv6_route}` (IPv4 addresses
/// always come with a route in the main table except /32 without prefix route; the 169.254/16
/// and fe80::/10 link-local entries every interface has are ignored).
pub fn active_interfaces(fs: &dyn Sysfs) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if let Some(route) = fs.read_opt("/proc/net/route") {
        for line in route.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Destination is little-endian hex: 169.254.0.0 = 0000FEA9.
            if f.len() > 1 && !f[1].to_ascii_uppercase().ends_with("FEA9") {
                set.insert(f[0].to_string());
            }
        }
    }
    if let Some(addrs) = fs.read_opt("/proc/net/if_inet6") {
        for line in addrs.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 && !f[0].starts_with("fe8") {
                set.insert(f[5].to_string());
            }
        }
    }
    if let Some(routes) = fs.read_opt("/proc/net/ipv6_route") {
        for line in routes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = f.first().copied().unwrap_or("");
            if f.len() >= 10 && !dest.starts_with("fe8") && !dest.starts_with("ff") {
                set.insert(f[9].to_string());
            }
        }
    }
    set.remove("lo");
    set
}

/// Kernel modules whose PCI aliases match the device's `modalias`
/// (`/lib/modules/$(uname -r)/modules.alias` and `modules.builtin.alias`).
pub fn kernel_modules_for(fs: &dyn Sysfs, pci: &str) -> Vec<String> {
    let Some(modalias) = fs.read_opt(&format!("{}/modalias", dev_path(pci))) else {
        return Vec::new();
    };
    let Some(release) = fs.read_opt("/proc/sys/kernel/osrelease") else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for file in ["modules.alias", "modules.builtin.alias"] {
        let Some(text) = fs.read_opt(&format!("/lib/modules/{release}/{file}")) else {
            continue;
        };
        for line in text.lines() {
            let mut f = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) = (f.next(), f.next(), f.next()) {
                if pattern.starts_with("pci:") && glob_match(pattern, &modalias) {
                    found.insert(module.to_string());
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Shell-style match with `*` and `?` (what modules.alias uses).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// "Vendor Device" from pci.ids (`/usr/share/misc/pci.ids` or `/usr/share/hwdata/pci.ids`).
pub fn pci_ids_name(ids: &str, vendor: &str, device: &str) -> Option<String> {
    let mut vendor_name = None;
    for line in ids.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if !line.starts_with('\t') {
            if vendor_name.is_some() {
                break;
            }
            if line.len() > 6 && line[..4].eq_ignore_ascii_case(vendor) {
                vendor_name = Some(line[4..].trim().to_string());
            }
        } else if let Some(v) = &vendor_name {
            let l = line.trim_start_matches('\t');
            if !line.starts_with("\t\t") && l.len() > 6 && l[..4].eq_ignore_ascii_case(device) {
                return Some(format!("{v} {}", l[4..].trim()));
            }
        }
    }
    vendor_name
}

/// Fill in `name` of each device from the host's pci.ids, when present.
pub fn add_names(fs: &dyn Sysfs, devs: &mut [PciDevice]) {
    let ids = fs
        .read_opt("/usr/share/misc/pci.ids")
        .or_else(|| fs.read_opt("/usr/share/hwdata/pci.ids"));
    if let Some(ids) = ids {
        for d in devs {
            d.name = pci_ids_name(&ids, &d.vendor, &d.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize() {
        assert_eq!(
            normalize_address("01:00.0").as_deref(),
            Some("0000:01:00.0")
        );
        assert_eq!(
            normalize_address("0000:AF:1f.7").as_deref(),
            Some("0000:af:1f.7")
        );
        assert_eq!(normalize_address("eth0"), None);
        assert_eq!(normalize_address("0000:01:00.8"), None);
        assert_eq!(normalize_address("1:00.0"), None);
    }

    #[test]
    fn modalias_globs() {
        let alias = "pci:v00008086d0000100Esv*sd*bc*sc*i*";
        assert!(glob_match(
            alias,
            "pci:v00008086d0000100Esv00008086sd00001234bc02sc00i00"
        ));
        assert!(!glob_match(
            alias,
            "pci:v00008086d0000100Fsv00008086sd00001234bc02sc00i00"
        ));
        assert!(glob_match("a?c*", "abcdef"));
    }

    #[test]
    fn pci_ids_lookup() {
        let ids = "# c\n8086  Intel Corporation\n\t100e  82540EM Gigabit Ethernet Controller\n\t\t1af4 1100  sub\n1af4  Red Hat, Inc.\n\t1041  Virtio 1.0 network device\n";
        assert_eq!(
            pci_ids_name(ids, "8086", "100e").as_deref(),
            Some("Intel Corporation 82540EM Gigabit Ethernet Controller")
        );
        assert_eq!(
            pci_ids_name(ids, "1af4", "1041").as_deref(),
            Some("Red Hat, Inc. Virtio 1.0 network device")
        );
        assert_eq!(
            pci_ids_name(ids, "8086", "ffff").as_deref(),
            Some("Intel Corporation")
        );
    }
}
