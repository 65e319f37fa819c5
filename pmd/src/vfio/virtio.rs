//! The virtio 1.x PCI transport ("modern", virtio 1.2 §4.1): the common,
//! notify, ISR and device-specific structures found through vendor-specific
//! PCI capabilities, the status handshake and feature negotiation.

use super::mmio::Mmio;
use super::pci::{self, ConfigSpace};
use super::DeviceError;
use std::time::{Duration, Instant};

/// Feature bits (virtio 1.2 §5.1.3 and §6).
pub mod feature {
    /// Device has a MAC address in its config.
    pub const NET_MAC: u64 = 1 << 5;
    /// Merge receive buffers.
    pub const NET_MRG_RXBUF: u64 = 1 << 15;
    /// Link status in the device config.
    pub const NET_STATUS: u64 = 1 << 16;
    /// Control virtqueue.
    pub const NET_CTRL_VQ: u64 = 1 << 17;
    /// Multiqueue.
    pub const NET_MQ: u64 = 1 << 22;
    /// Virtio 1.x (modern) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// The device's DMA goes through the platform IOMMU (VFIO must map it).
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
}

/// Device status bits (§2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error and needs a reset.
    pub const NEEDS_RESET: u8 = 64;
    /// The driver gave up.
    pub const FAILED: u8 = 128;
}

/// Features this driver requires.
pub const REQUIRED: u64 = feature::VERSION_1 | feature::ACCESS_PLATFORM;
/// Features this driver uses when offered.
pub const OPTIONAL: u64 = feature::NET_MAC | feature::NET_STATUS;

/// The feature set to accept from what the device offers.
///
/// MRG_RXBUF and MQ are recognised but not accepted: every RX buffer holds
/// a full frame, and one queue pair is used.
///
/// # Errors
/// [`DeviceError::Features`] naming the missing required bits.
pub fn negotiate(offered: u64) -> Result<u64, DeviceError> {
    let missing = REQUIRED & !offered;
    if missing != 0 {
        let mut names = Vec::new();
        if missing & feature::VERSION_1 != 0 {
            names.push("VERSION_1 (a modern device: 1af4:1041, QEMU disable-legacy=on)");
        }
        if missing & feature::ACCESS_PLATFORM != 0 {
            names.push(
                "ACCESS_PLATFORM (its DMA must go through the IOMMU: QEMU iommu_platform=on)",
            );
        }
        return Err(DeviceError::Features {
            offered,
            missing: names.join(", "),
        });
    }
    Ok(offered & (REQUIRED | OPTIONAL))
}

/// Common configuration structure offsets (§4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1a;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
    pub const LEN: usize = 0x38;
}

/// `cfg_type` values of `virtio_pci_cap` (§4.1.4).
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;

/// Where one virtio structure lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructLoc {
    /// BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length.
    pub length: u32,
}

/// The virtio structures a device advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: StructLoc,
    /// Notification area.
    pub notify: StructLoc,
    /// `notify_off_multiplier`.
    pub notify_mult: u32,
    /// ISR status.
    pub isr: Option<StructLoc>,
    /// Device-specific configuration.
    pub device: Option<StructLoc>,
}

/// Find the virtio structures in the capability list (the first of each type wins, §4.1.4.1).
///
/// # Errors
/// [`DeviceError::Malformed`] when the common or notify structure is missing.
pub fn find_caps(cfg: &dyn ConfigSpace) -> Result<VirtioCaps, DeviceError> {
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    for c in pci::capabilities(cfg)?
        .into_iter()
        .filter(|c| c.id == pci::CAP_VENDOR)
    {
        let o = c.offset;
        let cfg_type = cfg.read8(o + 3)?;
        let loc = StructLoc {
            bar: cfg.read8(o + 4)?,
            offset: cfg.read32(o + 8)?,
            length: cfg.read32(o + 12)?,
        };
        if loc.bar > 5 {
            continue; // reserved BAR values are ignored (§4.1.4)
        }
        match cfg_type {
            CAP_COMMON if common.is_none() => common = Some(loc),
            CAP_NOTIFY if notify.is_none() => notify = Some((loc, cfg.read32(o + 16)?)),
            CAP_ISR if isr.is_none() => isr = Some(loc),
            CAP_DEVICE if device.is_none() => device = Some(loc),
            _ => {}
        }
    }
    let common = common.ok_or_else(|| {
        DeviceError::Malformed(
            "no virtio common configuration capability: not a virtio 1.x (modern) device".into(),
        )
    })?;
    let (notify, notify_mult) =
        notify.ok_or_else(|| DeviceError::Malformed("no virtio notification capability".into()))?;
    if (common.length as usize) < common::LEN {
        return Err(DeviceError::Malformed(format!(
            "virtio common configuration is {} bytes, needs {}",
            common.length,
            common::LEN
        )));
    }
    Ok(VirtioCaps {
        common,
        notify,
        notify_mult,
        isr,
        device,
    })
}

/// A queue's notification register.
#[derive(Debug, Clone)]
pub struct Notifier {
    reg: Mmio,
    index: u16,
}

impl Notifier {
    /// Tell the device queue `index` has new buffers.
    #[inline]
    pub fn notify(&self) {
        self.reg.write16(0, self.index);
    }
}

/// The mapped virtio structures of one device.
#[derive(Debug)]
pub struct Transport {
    common: Mmio,
    notify: Mmio,
    notify_mult: u32,
    device: Option<Mmio>,
}

/// Addresses of one split virtqueue, as the device sees them (IOVAs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueAddrs {
    /// Descriptor table.
    pub desc: u64,
    /// Driver (available) ring.
    pub driver: u64,
    /// Device (used) ring.
    pub device: u64,
}

impl Transport {
    /// Map the structures from their BARs (`bars[i]` is BAR i when mappable).
    ///
    /// # Errors
    /// [`DeviceError::Malformed`] when a structure lies outside its BAR.
    pub fn new(caps: &VirtioCaps, bars: &[Option<Mmio>; 6]) -> Result<Transport, DeviceError> {
        let window = |loc: &StructLoc, what: &str| -> Result<Mmio, DeviceError> {
            bars[loc.bar as usize]
                .as_ref()
                .and_then(|b| b.sub(loc.offset as usize, loc.length as usize))
                .ok_or_else(|| {
                    DeviceError::Malformed(format!(
                        "virtio {what} structure BAR{}+{:#x} len {:#x} is outside a mappable BAR",
                        loc.bar, loc.offset, loc.length
                    ))
                })
        };
        Ok(Transport {
            common: window(&caps.common, "common")?,
            notify: window(&caps.notify, "notify")?,
            notify_mult: caps.notify_mult,
            device: caps
                .device
                .as_ref()
                .map(|d| window(d, "device"))
                .transpose()?,
        })
    }

    /// Device status.
    pub fn status(&self) -> u8 {
        self.common.read8(common::DEVICE_STATUS)
    }

    /// Add status bits.
    pub fn add_status(&self, bits: u8) {
        let s = self.status();
        self.common.write8(common::DEVICE_STATUS, s | bits);
    }

    /// Reset the device and wait (bounded) until it reads back 0 (§4.1.4.3.2):
    /// after this the device no longer touches any ring or buffer.
    ///
    /// # Errors
    /// [`DeviceError::Timeout`] when the device does not finish the reset.
    pub fn reset(&self) -> Result<(), DeviceError> {
        self.common.write8(common::DEVICE_STATUS, 0);
        let t0 = Instant::now();
        while self.status() != 0 {
            if t0.elapsed() > Duration::from_secs(1) {
                return Err(DeviceError::Timeout(
                    "device reset (status never read 0)".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        self.common.write32(common::DEVICE_FEATURE_SELECT, 0);
        let lo = self.common.read32(common::DEVICE_FEATURE);
        self.common.write32(common::DEVICE_FEATURE_SELECT, 1);
        let hi = self.common.read32(common::DEVICE_FEATURE);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Write the driver features, set FEATURES_OK and check the device kept it (§3.1.1).
    ///
    /// # Errors
    /// [`DeviceError::Features`] when the device refuses the set.
    pub fn set_features(&self, f: u64) -> Result<(), DeviceError> {
        self.common.write32(common::DRIVER_FEATURE_SELECT, 0);
        self.common.write32(common::DRIVER_FEATURE, f as u32);
        self.common.write32(common::DRIVER_FEATURE_SELECT, 1);
        self.common
            .write32(common::DRIVER_FEATURE, (f >> 32) as u32);
        self.add_status(status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            return Err(DeviceError::Features {
                offered: self.device_features(),
                missing: format!("the device refused the feature set {f:#x}"),
            });
        }
        Ok(())
    }

    /// Queues the device has.
    pub fn num_queues(&self) -> u16 {
        self.common.read16(common::NUM_QUEUES)
    }

    /// Largest size of queue `q` (0: the queue does not exist).
    pub fn queue_max(&self, q: u16) -> u16 {
        self.common.write16(common::QUEUE_SELECT, q);
        self.common.read16(common::QUEUE_SIZE)
    }

    /// Program queue `q` (size, ring IOVAs, no MSI-X vector), enable it and
    /// return its notifier.
    ///
    /// # Errors
    /// [`DeviceError::Malformed`] when its notify offset is outside the notify structure.
    pub fn setup_queue(&self, q: u16, size: u16, a: QueueAddrs) -> Result<Notifier, DeviceError> {
        let c = &self.common;
        c.write16(common::QUEUE_SELECT, q);
        c.write16(common::QUEUE_SIZE, size);
        c.write16(common::QUEUE_MSIX_VECTOR, 0xffff); // polling: no interrupt
        for (off, v) in [
            (common::QUEUE_DESC, a.desc),
            (common::QUEUE_DRIVER, a.driver),
            (common::QUEUE_DEVICE, a.device),
        ] {
            c.write32(off, v as u32);
            c.write32(off + 4, (v >> 32) as u32);
        }
        let off = c.read16(common::QUEUE_NOTIFY_OFF) as usize * self.notify_mult as usize;
        let reg = self.notify.sub(off, 2).ok_or_else(|| {
            DeviceError::Malformed(format!(
                "queue {q} notify offset {off:#x} is outside the notify structure ({:#x} bytes)",
                self.notify.len()
            ))
        })?;
        c.write16(common::QUEUE_ENABLE, 1);
        Ok(Notifier { reg, index: q })
    }

    /// The MAC address in the device config (virtio-net §5.1.4), when present.
    pub fn mac(&self) -> Option<[u8; 6]> {
        let d = self.device.as_ref().filter(|d| d.len() >= 6)?;
        let mut m = [0u8; 6];
        for (i, b) in m.iter_mut().enumerate() {
            *b = d.read8(i);
        }
        Some(m)
    }

    /// Link up per the device config `status` field (always up without NET_STATUS).
    pub fn link_up(&self, features: u64) -> bool {
        if features & feature::NET_STATUS == 0 {
            return true;
        }
        match self.device.as_ref().filter(|d| d.len() >= 8) {
            Some(d) => d.read16(6) & 1 != 0,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::pci::FakeConfig;

    fn vcap(cfg_type: u8, bar: u8, offset: u32, length: u32, extra: Option<u32>) -> Vec<u8> {
        let mut b = vec![
            pci::CAP_VENDOR,
            0,
            if extra.is_some() { 20 } else { 16 },
            cfg_type,
            bar,
            0,
            0,
            0,
        ];
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&length.to_le_bytes());
        if let Some(e) = extra {
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    #[test]
    fn finds_qemu_layout() {
        // What QEMU's virtio-net-pci advertises: everything in BAR4.
        let c = FakeConfig::new(0x1af4, 0x1041);
        c.add_cap(0xd0, &[0x11, 0, 0, 0]); // MSI-X
        c.add_cap(0xb8, &vcap(5, 0, 0, 0, Some(0))); // PCI cfg access: ignored
        c.add_cap(0xa4, &vcap(4, 4, 0x3000, 0x1000, None));
        c.add_cap(0x84, &vcap(2, 4, 0x3000 + 0x1000, 0x1000, Some(4)));
        c.add_cap(0x70, &vcap(3, 4, 0x1000, 0x1000, None));
        c.add_cap(0x40, &vcap(1, 4, 0, 0x1000, None));
        c.add_cap(0x58, &vcap(1, 2, 0, 0x1000, None)); // a second common cfg: first wins
        let caps = find_caps(&c).unwrap();
        assert_eq!(
            caps.common,
            StructLoc {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.notify.offset, 0x4000);
        assert_eq!(caps.notify_mult, 4);
        assert_eq!(caps.device.unwrap().offset, 0x3000);
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
    }

    #[test]
    fn a_legacy_device_is_refused_with_the_reason() {
        let c = FakeConfig::new(0x1af4, 0x1000);
        c.add_cap(0x40, &[0x11, 0, 0, 0]);
        let e = find_caps(&c).unwrap_err().to_string();
        assert!(e.contains("modern"), "{e}");
    }

    #[test]
    fn negotiation_requires_version_1_and_access_platform() {
        let offered = REQUIRED | feature::NET_MAC | feature::NET_MRG_RXBUF | feature::NET_MQ | 1;
        assert_eq!(negotiate(offered).unwrap(), REQUIRED | feature::NET_MAC);
        let e = negotiate(feature::VERSION_1 | feature::NET_MAC)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ACCESS_PLATFORM") && e.contains("iommu_platform=on"),
            "{e}"
        );
        assert!(!e.contains("VERSION_1 ("), "{e}");
    }
}
