//! Which PCI NICs xfwd's own `vfio:` drivers drive, by vendor and device id.
//!
//! `devbind --status` shows it per device, and binding a NIC to vfio-pci that xfwd has no driver
//! for warns (the bind still happens: DPDK or another user-space driver may want it), naming what
//! xfwd can use instead (its kernel interface through `af_xdp:` / `af_packet:`).
//!
//! The Intel igb family is listed member by member: xfwd's igb driver handles the 82576 register
//! model only (what QEMU's `-device igb` emulates and what the driver is tested on); 82575, 82580,
//! I350, I354, I210/I211 and the virtual functions differ in RX/TX queue layout, RSS and PHY
//! handling, and are refused by the driver with the same reason as shown here.

use serde::Serialize;

/// What xfwd can do with one PCI device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "support", rename_all = "snake_case")]
pub enum XfwdSupport {
    /// A `vfio:` driver of xfwd drives it once bound to vfio-pci.
    Vfio {
        /// Driver inside xfwd's `vfio:` port (`virtio-net`, `igb`).
        driver: &'static str,
        /// The model.
        model: &'static str,
    },
    /// Known family, but this member is not driven (why, and what to use instead).
    Refused {
        /// The family and member.
        model: &'static str,
        /// Why xfwd's driver refuses it.
        why: &'static str,
    },
    /// xfwd has no user-space driver for it.
    None,
}

/// igb-family members by device id (Intel, vendor 8086), after the ids Linux's igb and DPDK's
/// e1000 base code list.
fn igb_member(device: u16) -> Option<(&'static str, bool)> {
    let m = match device {
        0x10c9 | 0x10e6 | 0x10e7 | 0x10e8 | 0x1526 | 0x150a | 0x1518 | 0x150d => ("82576", true),
        0x10ca | 0x152d => ("82576 virtual function", false),
        0x10a7 | 0x10a9 | 0x10d6 => ("82575", false),
        0x150e | 0x150f | 0x1510 | 0x1511 | 0x1516 | 0x1527 => ("82580", false),
        0x1521 | 0x1522 | 0x1523 | 0x1524 | 0x1546 => ("I350", false),
        0x1520 | 0x152f => ("I350 virtual function", false),
        0x1f40 | 0x1f41 | 0x1f45 => ("I354", false),
        0x0438 | 0x043a | 0x043c | 0x0440 => ("DH89xxCC", false),
        0x1533..=0x1538 | 0x157b | 0x157c => ("I210", false),
        0x1539 => ("I211", false),
        _ => return None,
    };
    Some(m)
}

/// Why a refused igb member is refused.
const IGB_REFUSED: &str = "xfwd's igb driver handles the 82576 register model only (RX/TX \
    queue layout, RSS and PHY of the 82575/82580/I350/I354/I210/I211 and of virtual functions \
    differ); use its kernel interface with af_xdp: or af_packet:";

/// Look a device up (`vendor`/`device` as sysfs shows them, hex with or without `0x`).
pub fn support(vendor: &str, device: &str) -> XfwdSupport {
    let hex = |s: &str| u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    match (hex(vendor), hex(device)) {
        (Some(0x1af4), Some(0x1041 | 0x1000)) => XfwdSupport::Vfio {
            driver: "virtio-net",
            model: "virtio-net (modern, VERSION_1 + ACCESS_PLATFORM)",
        },
        (Some(0x8086), Some(d)) => match igb_member(d) {
            Some((model, true)) => XfwdSupport::Vfio {
                driver: "igb",
                model,
            },
            Some((model, false)) => XfwdSupport::Refused {
                model,
                why: IGB_REFUSED,
            },
            None => XfwdSupport::None,
        },
        _ => XfwdSupport::None,
    }
}

impl XfwdSupport {
    /// Short form for the status line: `vfio/igb`, `refused(I350)`, `none`.
    pub fn short(&self) -> String {
        match self {
            XfwdSupport::Vfio { driver, .. } => format!("vfio/{driver}"),
            XfwdSupport::Refused { model, .. } => format!("refused({model})"),
            XfwdSupport::None => "none".to_string(),
        }
    }

    /// The warning for binding such a device to vfio-pci, when xfwd cannot drive it.
    pub fn bind_warning(&self, pci: &str, vendor: &str, device: &str) -> Option<String> {
        match self {
            XfwdSupport::Vfio { .. } => None,
            XfwdSupport::Refused { model, why } => Some(format!(
                "{pci} ({vendor}:{device}, igb family {model}) is not driven by xfwd's vfio: \
                 port: {why}"
            )),
            XfwdSupport::None => Some(format!(
                "xfwd has no vfio: driver for {pci} ({vendor}:{device}; it drives virtio-net \
                 1af4:1041 and the Intel 82576): xfwd's vfio: port will refuse it; use its \
                 kernel interface with af_xdp: or af_packet: instead (or a DPDK driver)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_82576_and_virtio_are_driven_other_igb_members_refused() {
        for d in [
            "0x10c9", "10e6", "0x10E7", "0x10e8", "0x1526", "0x150a", "0x1518", "0x150d",
        ] {
            assert_eq!(support("0x8086", d).short(), "vfio/igb", "{d}");
        }
        assert_eq!(support("0x1af4", "0x1041").short(), "vfio/virtio-net");
        for (d, m) in [
            ("0x1521", "I350"),
            ("0x1533", "I210"),
            ("0x1539", "I211"),
            ("0x10a7", "82575"),
            ("0x150e", "82580"),
            ("0x10ca", "82576 virtual function"),
            ("0x1f41", "I354"),
        ] {
            let s = support("0x8086", d);
            assert_eq!(s.short(), format!("refused({m})"), "{d}");
            let w = s.bind_warning("0000:01:00.0", "8086", d).unwrap();
            assert!(
                w.contains("82576 register model") && w.contains("af_xdp"),
                "{w}"
            );
        }
        let s = support("0x8086", "0x10fb");
        assert_eq!(s, XfwdSupport::None);
        assert!(s
            .bind_warning("0000:01:00.0", "8086", "10fb")
            .unwrap()
            .contains("no vfio: driver for 0000:01:00.0 (8086:10fb"));
        assert_eq!(support("zz", "0x1041"), XfwdSupport::None);
    }
}
