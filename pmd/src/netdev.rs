//! Facts about a network device, read in the calling thread's network
//! namespace: index, MTU, MAC address and queue counts (ioctls on a UDP
//! socket through [`crate::sys::netdev`], so they work inside any netns
//! without remounting sysfs).

use crate::af_xdp::error::{hint_common, XdpError};
use crate::sys::netdev::{valid_name, Control};
use std::io;

/// Queue counts of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    /// RX queues in use (combined channels count as both).
    pub rx: u32,
    /// TX queues in use.
    pub tx: u32,
}

/// Check a device name against the kernel's limits.
fn check_name(name: &str) -> Result<(), XdpError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
        return Err(XdpError::Config(format!(
            "{name:?} is not a valid interface name (1..15 bytes, no '/' or spaces)"
        )));
    }
    if !valid_name(name) {
        return Err(XdpError::Config(format!("{name:?} contains a NUL byte")));
    }
    Ok(())
}

/// A control socket in this thread's namespace, with `name` checked.
fn control(name: &str) -> Result<Control, XdpError> {
    check_name(name)?;
    Control::new().map_err(|e| XdpError::sys("socket for device ioctls", e, hint_common))
}

/// Map an ioctl error: ENODEV is "no such device".
fn ioctl_err<'a>(name: &'a str, what: &str) -> impl FnOnce(io::Error) -> XdpError + 'a {
    let what = what.to_string();
    move |e| {
        if e.raw_os_error() == Some(libc::ENODEV) {
            XdpError::NoSuchDevice { name: name.into() }
        } else {
            XdpError::sys(format!("{what} of {name}"), e, hint_common)
        }
    }
}

/// The index of device `name` in the current network namespace.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] when there is no such device here.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let c = control(name)?;
    c.ifindex(name)
        .map_err(|_| XdpError::NoSuchDevice { name: name.into() })
}

/// The MTU of device `name`.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn mtu(name: &str) -> Result<u32, XdpError> {
    control(name)?
        .mtu(name)
        .map_err(ioctl_err(name, "SIOCGIFMTU"))
}

/// The MAC address of device `name`.
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn mac(name: &str) -> Result<[u8; 6], XdpError> {
    control(name)?
        .mac(name)
        .map_err(ioctl_err(name, "SIOCGIFHWADDR"))
}

/// RX/TX queue counts of device `name` (ethtool channels; on drivers without
/// them, the counts under `/sys/class/net/NAME/queues`, valid only in the
/// netns where sysfs was mounted).
///
/// # Errors
/// [`XdpError::NoSuchDevice`] or [`XdpError::Sys`].
pub fn queues(name: &str) -> Result<Queues, XdpError> {
    match control(name)?.channels(name) {
        Ok(ch) => Ok(Queues {
            rx: ch.rx + ch.combined,
            tx: ch.tx + ch.combined,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
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
        Err(e) => Err(ioctl_err(name, "ETHTOOL_GCHANNELS")(e)),
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
