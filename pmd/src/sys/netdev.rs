//! Interface facts by ioctl on a datagram control socket: index, name,
//! flags, MTU, MAC, ethtool link speed and channel counts. A [`Control`]
//! answers for the network namespace it was created in, whichever thread
//! asks later (so it works inside any netns without remounting sysfs).

use super::shared::Plain;
use super::socket::Socket;
use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

const ETHTOOL_GSET: u32 = 0x1;
const ETHTOOL_GLINK: u32 = 0xa;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_cmd` (the legacy `ETHTOOL_GSET` layout; only the speed is read).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ethtool_value` (`ETHTOOL_GLINK`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// SAFETY: C structs of integers; every bit pattern is valid.
unsafe impl Plain for EthtoolCmd {}
// SAFETY: as above.
unsafe impl Plain for EthtoolValue {}
// SAFETY: as above.
unsafe impl Plain for EthtoolChannels {}

/// Channel counts in use (`ETHTOOL_GCHANNELS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    /// RX-only channels.
    pub rx: u32,
    /// TX-only channels.
    pub tx: u32,
    /// Combined channels (count as both).
    pub combined: u32,
}

/// What [`Control::by_index`] read about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByIndex {
    /// Its current name.
    pub name: String,
    /// Its flags (`IFF_*`).
    pub flags: u32,
}

/// True for a name the kernel can hold: 1..15 bytes, no '/', space or NUL.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.contains(['/', ' ', '\0'])
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if !valid_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name (1..15 bytes, no '/', spaces or NUL)"),
        ));
    }
    let mut r = libc::ifreq::zeroed();
    for (d, s) in r.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

/// A datagram socket for interface ioctls.
#[derive(Debug)]
pub struct Control(Socket);

impl Control {
    /// A control socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// `socket(2)` errors.
    pub fn new() -> io::Result<Control> {
        Ok(Control(Socket::new(libc::AF_INET, libc::SOCK_DGRAM, 0)?))
    }

    /// One SIOC* request on `r`.
    fn ioctl(&self, req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: `r` is a valid ifreq; the SIOCGIF* requests used here read
        // and write only inside it (SIOCETHTOOL's data pointer is set by
        // `ethtool` to a live Plain struct).
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, r as *mut libc::ifreq) };
        super::check(rc.into()).map(drop)
    }

    /// `SIOCETHTOOL` with `data` (whose first word is the ethtool command).
    fn ethtool<T: Plain>(&self, name: &str, data: &mut T) -> io::Result<()> {
        let mut r = ifreq(name)?;
        r.ifr_ifru.ifru_data = (data as *mut T).cast();
        self.ioctl(libc::SIOCETHTOOL, &mut r)
    }

    /// The index of device `name`.
    ///
    /// # Errors
    /// ENODEV, or an invalid name.
    pub fn ifindex(&self, name: &str) -> io::Result<u32> {
        let mut r = ifreq(name)?;
        self.ioctl(libc::SIOCGIFINDEX, &mut r)?;
        // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member (an integer).
        Ok(unsafe { r.ifr_ifru.ifru_ifindex } as u32)
    }

    /// The current name of device `ifindex`.
    ///
    /// # Errors
    /// ENODEV once it is deleted.
    pub fn name(&self, ifindex: u32) -> io::Result<String> {
        let mut r = libc::ifreq::zeroed();
        r.ifr_ifru.ifru_ifindex = ifindex as i32;
        self.ioctl(libc::SIOCGIFNAME, &mut r)?;
        // The last byte stays NUL: the kernel writes at most IFNAMSIZ-1 bytes.
        r.ifr_name[libc::IFNAMSIZ - 1] = 0;
        // SAFETY: `ifr_name` is NUL-terminated within its IFNAMSIZ bytes (just set).
        let c = unsafe { CStr::from_ptr(r.ifr_name.as_ptr()) };
        Ok(c.to_string_lossy().into_owned())
    }

    /// The device `ifindex` as it is now: its current name and flags,
    /// checked against the index again after the flags were read (so a
    /// device deleted in between and replaced by a new one of the same name
    /// reads as gone, not as the new device).
    ///
    /// # Errors
    /// ENODEV once the device is gone (deleted, moved to another network
    /// namespace, or replaced).
    pub fn by_index(&self, ifindex: u32) -> io::Result<ByIndex> {
        let name = self.name(ifindex)?;
        let flags = self.flags(&name)?;
        if self.ifindex(&name)? != ifindex {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(ByIndex { name, flags })
    }

    /// Interface flags (`IFF_*`).
    ///
    /// # Errors
    /// ENODEV.
    pub fn flags(&self, name: &str) -> io::Result<u32> {
        let mut r = ifreq(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member (an integer).
        Ok(unsafe { r.ifr_ifru.ifru_flags } as u16 as u32)
    }

    /// MTU.
    ///
    /// # Errors
    /// ENODEV.
    pub fn mtu(&self, name: &str) -> io::Result<u32> {
        let mut r = ifreq(name)?;
        self.ioctl(libc::SIOCGIFMTU, &mut r)?;
        // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member (an integer).
        Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
    }

    /// MAC address.
    ///
    /// # Errors
    /// ENODEV.
    pub fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let mut r = ifreq(name)?;
        self.ioctl(libc::SIOCGIFHWADDR, &mut r)?;
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member (plain bytes).
        let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
        let mut m = [0u8; 6];
        for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(m)
    }

    /// Link speed in Mb/s from ethtool (0 when unknown or unsupported).
    pub fn speed_mbps(&self, name: &str) -> u32 {
        let mut cmd = EthtoolCmd {
            cmd: ETHTOOL_GSET,
            ..Default::default()
        };
        if self.ethtool(name, &mut cmd).is_err() {
            return 0;
        }
        let s = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
        if s == u32::MAX || s == u32::from(u16::MAX) {
            0
        } else {
            s
        }
    }

    /// Carrier (`ETHTOOL_GLINK`: running and the carrier on), read at once;
    /// `IFF_RUNNING` of the flags follows the carrier only after the
    /// kernel's link watch caught up (up to a second later).
    ///
    /// # Errors
    /// ENODEV, EOPNOTSUPP for drivers that do not report it.
    pub fn carrier(&self, name: &str) -> io::Result<bool> {
        let mut v = EthtoolValue {
            cmd: ETHTOOL_GLINK,
            data: 0,
        };
        self.ethtool(name, &mut v)?;
        Ok(v.data != 0)
    }

    /// Channel counts (`ETHTOOL_GCHANNELS`).
    ///
    /// # Errors
    /// ENODEV, EOPNOTSUPP for drivers without channels.
    pub fn channels(&self, name: &str) -> io::Result<Channels> {
        let mut ch = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..Default::default()
        };
        self.ethtool(name, &mut ch)?;
        Ok(Channels {
            rx: ch.rx_count,
            tx: ch.tx_count,
            combined: ch.combined_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts() {
        let c = Control::new().unwrap();
        let i = c.ifindex("lo").unwrap();
        assert_eq!(c.name(i).unwrap(), "lo");
        assert_eq!(c.mac("lo").unwrap(), [0; 6]);
        assert!(c.mtu("lo").unwrap() >= 1500);
        assert_ne!(c.flags("lo").unwrap() & libc::IFF_LOOPBACK as u32, 0);
        assert_eq!(
            c.ifindex("no-such-dev0").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        assert!(c.ifindex("bad/name").is_err());
        let b = c.by_index(i).unwrap();
        assert_eq!(b.name, "lo");
        assert_ne!(b.flags & libc::IFF_UP as u32, 0);
        // Index 0 names no device.
        assert_eq!(
            c.by_index(0).unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        assert!(!valid_name("") && !valid_name("a-very-long-interface-name"));
    }
}
