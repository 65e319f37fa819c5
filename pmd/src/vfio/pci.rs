//! PCI config space: identity, command register, and the capability list
//! walk that finds the virtio structures (virtio 1.x §4.1.4).

use super::DeviceError;

/// Offsets in the type-0 config header (PCI Local Bus 3.0 §6.1).
pub mod reg {
    /// Vendor id (u16).
    pub const VENDOR: u16 = 0x00;
    /// Device id (u16).
    pub const DEVICE: u16 = 0x02;
    /// Command (u16).
    pub const COMMAND: u16 = 0x04;
    /// Status (u16); bit 4 = capability list present.
    pub const STATUS: u16 = 0x06;
    /// First capability pointer (u8).
    pub const CAP_PTR: u16 = 0x34;
}

/// Command register: memory space enable.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable (the device may DMA).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Status register: capability list present.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Capability id of vendor-specific capabilities (virtio uses them).
pub const CAP_VENDOR: u8 = 0x09;

/// Byte access to a device's config space (vfio region, or a fake in tests).
pub trait ConfigSpace {
    /// Read `buf.len()` bytes at `off`.
    ///
    /// # Errors
    /// [`DeviceError::Config`].
    fn read(&self, off: u16, buf: &mut [u8]) -> Result<(), DeviceError>;

    /// Write `buf` at `off`.
    ///
    /// # Errors
    /// [`DeviceError::Config`].
    fn write(&self, off: u16, buf: &[u8]) -> Result<(), DeviceError>;

    /// Read a u8.
    ///
    /// # Errors
    /// As [`ConfigSpace::read`].
    fn read8(&self, off: u16) -> Result<u8, DeviceError> {
        let mut b = [0u8; 1];
        self.read(off, &mut b)?;
        Ok(b[0])
    }

    /// Read a little-endian u16.
    ///
    /// # Errors
    /// As [`ConfigSpace::read`].
    fn read16(&self, off: u16) -> Result<u16, DeviceError> {
        let mut b = [0u8; 2];
        self.read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Read a little-endian u32.
    ///
    /// # Errors
    /// As [`ConfigSpace::read`].
    fn read32(&self, off: u16) -> Result<u32, DeviceError> {
        let mut b = [0u8; 4];
        self.read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// One entry of the capability list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability id.
    pub id: u8,
    /// Its offset in config space.
    pub offset: u16,
}

/// Walk the capability list (bounded: a looping or out-of-range list is an error).
///
/// # Errors
/// [`DeviceError::Config`] for read failures, [`DeviceError::Malformed`] for a bad list.
pub fn capabilities(cfg: &dyn ConfigSpace) -> Result<Vec<Capability>, DeviceError> {
    let mut out = Vec::new();
    if cfg.read16(reg::STATUS)? & STATUS_CAP_LIST == 0 {
        return Ok(out);
    }
    let mut ptr = cfg.read8(reg::CAP_PTR)? & 0xfc;
    while ptr != 0 {
        if ptr < 0x40 || out.len() >= 48 {
            return Err(DeviceError::Malformed(format!(
                "PCI capability list is broken at {ptr:#x} after {} entries (pointer into the \
                 header or a loop)",
                out.len()
            )));
        }
        let id = cfg.read8(u16::from(ptr))?;
        out.push(Capability {
            id,
            offset: u16::from(ptr),
        });
        ptr = cfg.read8(u16::from(ptr) + 1)? & 0xfc;
    }
    Ok(out)
}

/// Set bits in the command register (memory space, bus master).
///
/// # Errors
/// As [`ConfigSpace::read`]/[`ConfigSpace::write`].
pub fn set_command(cfg: &dyn ConfigSpace, set: u16, clear: u16) -> Result<u16, DeviceError> {
    let cmd = (cfg.read16(reg::COMMAND)? | set) & !clear;
    cfg.write(reg::COMMAND, &cmd.to_le_bytes())?;
    Ok(cmd)
}

/// A config space image in memory (tests, and fakes of devices).
#[derive(Debug, Clone)]
pub struct FakeConfig(pub std::cell::RefCell<Vec<u8>>);

impl FakeConfig {
    /// 256 zero bytes with vendor/device ids.
    pub fn new(vendor: u16, device: u16) -> FakeConfig {
        let mut b = vec![0u8; 256];
        b[0..2].copy_from_slice(&vendor.to_le_bytes());
        b[2..4].copy_from_slice(&device.to_le_bytes());
        FakeConfig(std::cell::RefCell::new(b))
    }

    /// Append a capability `body` (starting with its id byte) at `at`, linking it last.
    pub fn add_cap(&self, at: u8, body: &[u8]) {
        let mut b = self.0.borrow_mut();
        b[at as usize..at as usize + body.len()].copy_from_slice(body);
        b[at as usize + 1] = 0;
        let status = u16::from_le_bytes([b[6], b[7]]) | STATUS_CAP_LIST;
        b[6..8].copy_from_slice(&status.to_le_bytes());
        let mut link = reg::CAP_PTR as usize;
        while b[link] != 0 {
            link = b[link] as usize + 1;
        }
        b[link] = at;
    }
}

impl ConfigSpace for FakeConfig {
    fn read(&self, off: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        let b = self.0.borrow();
        let src = b
            .get(off as usize..off as usize + buf.len())
            .ok_or_else(|| DeviceError::Config(format!("read past the end at {off:#x}")))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&self, off: u16, buf: &[u8]) -> Result<(), DeviceError> {
        let mut b = self.0.borrow_mut();
        let dst = b
            .get_mut(off as usize..off as usize + buf.len())
            .ok_or_else(|| DeviceError::Config(format!("write past the end at {off:#x}")))?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_the_list_in_order_and_sets_bus_master() {
        let c = FakeConfig::new(0x1af4, 0x1041);
        c.add_cap(0x40, &[0x11, 0, 12]);
        c.add_cap(0x84, &[CAP_VENDOR, 0, 16]);
        c.add_cap(0x60, &[CAP_VENDOR, 0, 16]);
        let caps = capabilities(&c).unwrap();
        let offs: Vec<u16> = caps.iter().map(|c| c.offset).collect();
        assert_eq!(offs, [0x40, 0x84, 0x60]);
        assert_eq!(caps[1].id, CAP_VENDOR);
        let cmd = set_command(&c, CMD_MEMORY | CMD_BUS_MASTER, 0).unwrap();
        assert_eq!(c.read16(reg::COMMAND).unwrap(), cmd);
        assert_eq!(cmd & 0x6, 0x6);
    }

    #[test]
    fn a_looping_list_is_an_error_not_a_hang() {
        let c = FakeConfig::new(0x1af4, 0x1041);
        c.add_cap(0x40, &[CAP_VENDOR, 0, 16]);
        c.0.borrow_mut()[0x41] = 0x40; // points at itself
        let e = capabilities(&c).unwrap_err().to_string();
        assert!(e.contains("broken"), "{e}");
    }

    #[test]
    fn no_capability_bit_means_no_list() {
        let c = FakeConfig::new(0x1af4, 0x1041);
        c.0.borrow_mut()[reg::CAP_PTR as usize] = 0x40;
        assert!(capabilities(&c).unwrap().is_empty());
    }
}
