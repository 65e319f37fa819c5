//! Facts about a network device, read in the calling thread's network
//! namespace: index, MTU, MAC address and queue counts (ioctls on a UDP
//! socket, so they work inside any netns without remounting sysfs).

use crate::af_xdp::error::{hint_common, XdpError};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GCHANNELS: u32 = 0x3c;

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

/// Queue counts of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    /// RX queues in use (combined channels count as both).
    pub rx: u32,
    /// TX queues in use.
    pub tx: u32,
}

/// A device name checked for the kernel's limits.
fn c_name(name: &str) -> Result<CString, XdpError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
        return Err(XdpError::Config(format!(
            "{name:?} is not a valid interface name (1..15 bytes, no '/' or spaces)"
        )));
    }
    CString::new(name).map_err(|_| XdpError::Config(format!("{name:?} contains a NUL byte")))
}

/// The index of device `name` in the current network namespace.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] when there is no such device here.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(XdpError::NoSuchDevice { name: name.into() });
    }
    Ok(i)
}

fn ifreq(name: &str) -> Result<libc::ifreq, XdpError> {
    let c = c_name(name)?;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(c.as_bytes()) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

fn ioctl_sock() -> Result<OwnedFd, XdpError> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(XdpError::last_os("socket for device ioctls", hint_common));
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(name: &str, req: libc::c_ulong, r: &mut libc::ifreq, what: &str) -> Result<(), XdpError> {
    let s = ioctl_sock()?;
    // SAFETY: `r` is a valid ifreq for these SIOC* requests, which read/write only inside it.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut libc::ifreq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Err(XdpError::NoSuchDevice { name: name.into() });
        }
        return Err(XdpError::sys(format!("{what} of {name}"), e, hint_common));
    }
    Ok(())
}

/// The MTU of device `name`.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn mtu(name: &str) -> Result<u32, XdpError> {
    let mut r = ifreq(name)?;
    ioctl(name, libc::SIOCGIFMTU, &mut r, "SIOCGIFMTU")?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
}

/// The MAC address of device `name`.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn mac(name: &str) -> Result<[u8; 6], XdpError> {
    let mut r = ifreq(name)?;
    ioctl(name, libc::SIOCGIFHWADDR, &mut r, "SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(m)
}

/// RX/TX queue counts of device `name` (ethtool channels; on drivers without
/// them, the counts under `/sys/class/net/NAME/queues`, valid only in the
/// netns where sysfs was mounted).
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn queues(name: &str) -> Result<Queues, XdpError> {
    let mut r = ifreq(name)?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    r.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    match ioctl(name, libc::SIOCETHTOOL, &mut r, "ETHTOOL_GCHANNELS") {
        Ok(()) => Ok(Queues {
            rx: ch.rx_count + ch.combined_count,
            tx: ch.tx_count + ch.combined_count,
        }),
        Err(XdpError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            ifindex(name)?;
            let count = |prefix: &str| -> u32 {
                std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                            .count() as u32
                    })
                    .unwrap_or(1)
                    .max(1)
            };
            Ok(Queues {
                rx: count("rx-"),
                tx: count("tx-"),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts() {
        let i = ifindex("lo").unwrap();
        assert!(i >= 1);
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(mtu("lo").unwrap() >= 1500);
        let q = queues("lo").unwrap();
        assert!(q.rx >= 1 && q.tx >= 1);
    }

    #[test]
    fn bad_names_are_typed_errors() {
        assert!(matches!(
            ifindex("no-such-dev0"),
            Err(XdpError::NoSuchDevice { .. })
        ));
        assert!(matches!(
            mtu("no-such-dev0"),
            Err(XdpError::NoSuchDevice { .. })
        ));
        assert!(matches!(ifindex(""), Err(XdpError::Config(_))));
        assert!(matches!(
            ifindex("a-very-long-interface-name"),
            Err(XdpError::Config(_))
        ));
    }
}
