//! Facts about a network device, read in the calling thread's network
//! namespace: index, MTU, MAC address and queue counts (ioctls on a UDP
//! socket through [`crate::sys::netdev`], so they work inside any netns
//! without remounting sysfs); and the [`LinkWatch`] of a kernel port: the
//! device it opened, followed by index, and the [`LinkState`] its queues act on.

use crate::af_xdp::error::{hint_common, XdpError};
use crate::port::Link;
use crate::sys::netdev::{valid_name, Control};
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

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

const UP: u8 = 0;
const DOWN: u8 = 1;
const LOST: u8 = 2;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_RUNNING: u32 = libc::IFF_RUNNING as u32;

/// The link of a kernel port as its queues see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkCondition {
    /// Up and running: the queues move frames.
    Up = UP,
    /// Down (set down, or no carrier): TX hands the kernel nothing until
    /// the link is up again (the caller keeps, and drops, what it offered).
    Down = DOWN,
    /// The device the port opened is gone (deleted, moved to another network
    /// namespace, or its name now belongs to a new device): for good, the
    /// queues close their sockets and return every buffer they lent.
    Lost = LOST,
}

impl LinkCondition {
    /// `up`, `down` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkCondition::Up => "up",
            LinkCondition::Down => "down",
            LinkCondition::Lost => "lost",
        }
    }
}

/// The [`LinkCondition`] a port and its queues share: written by
/// [`LinkWatch::poll`] (off the fast path) and by a queue whose kick says the
/// device is gone (ENXIO/ENODEV: lost), read by the queues once per burst
/// (one relaxed load of a line nobody writes while the link is steady).
/// `Lost` is final; up and down come from the polls only (a kick's ENETDOWN
/// may be a stale socket error from before the link came back).
#[derive(Debug, Default)]
pub struct LinkState(AtomicU8);

impl LinkState {
    /// True while the link is up.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed) == UP
    }

    /// The condition now.
    pub fn get(&self) -> LinkCondition {
        match self.0.load(Ordering::Relaxed) {
            UP => LinkCondition::Up,
            DOWN => LinkCondition::Down,
            _ => LinkCondition::Lost,
        }
    }

    /// The device is gone.
    pub fn set_lost(&self) {
        self.0.store(LOST, Ordering::Relaxed);
    }

    /// The link went down (unless it is lost).
    fn set_down(&self) {
        let _ = self
            .0
            .compare_exchange(UP, DOWN, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The link is up again (unless it is lost).
    fn set_up(&self) {
        let _ = self
            .0
            .compare_exchange(DOWN, UP, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Follow a link read off the fast path (a device's status register):
    /// up or down, unless it is lost. Returns the condition now.
    pub fn follow(&self, up: bool) -> LinkCondition {
        if up {
            self.set_up();
        } else {
            self.set_down();
        }
        self.get()
    }
}

/// The device a kernel port (af_xdp, af_packet) opened, followed by the
/// index it had at open (a device re-created under the same name has a new
/// index, so it reads as lost, not up), in the network namespace of the
/// thread that created the watch.
#[derive(Debug)]
pub struct LinkWatch {
    iface: String,
    ifindex: u32,
    ctl: Control,
    state: Arc<LinkState>,
    /// The condition the last poll logged.
    logged: AtomicU8,
}

impl LinkWatch {
    /// Watch device `iface` of the calling thread's network namespace.
    ///
    /// # Errors
    /// [`XdpError::NoSuchDevice`], [`XdpError::Config`] for a bad name.
    pub fn open(iface: &str) -> Result<LinkWatch, XdpError> {
        let ctl = control(iface)?;
        let ifindex = ctl
            .ifindex(iface)
            .map_err(|_| XdpError::NoSuchDevice { name: iface.into() })?;
        Ok(LinkWatch::new(ctl, iface, ifindex))
    }

    /// Watch device `ifindex` (called `iface` at open) through `ctl`.
    pub fn new(ctl: Control, iface: &str, ifindex: u32) -> LinkWatch {
        LinkWatch {
            iface: iface.to_string(),
            ifindex,
            ctl,
            state: Arc::default(),
            logged: AtomicU8::new(UP),
        }
    }

    /// The state to hand to the queues.
    pub fn state(&self) -> &Arc<LinkState> {
        &self.state
    }

    /// The index at open.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The name at open.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The control socket (in the watched device's namespace).
    pub fn control(&self) -> &Control {
        &self.ctl
    }

    /// The device's current name, or `None` once it is gone.
    pub fn current_name(&self) -> Option<String> {
        self.ctl.by_index(self.ifindex).ok().map(|b| b.name)
    }

    /// Read the device by index (five ioctls, never on the fast path:
    /// `link()` calls it, and xfwd's main thread every 250 ms), publish
    /// what it found to the queues and return the link. A transition is
    /// logged once, naming `port`.
    pub fn poll(&self, port: &str) -> Link {
        let mut speed = 0;
        match self.ctl.by_index(self.ifindex) {
            Ok(b) if b.flags & IFF_UP == 0 => self.state.set_down(),
            Ok(b) => {
                // The carrier as the driver reports it now; IFF_RUNNING
                // (the operational state) lags it, and is the fallback.
                let carrier = self
                    .ctl
                    .carrier(&b.name)
                    .unwrap_or(b.flags & IFF_RUNNING != 0);
                if carrier {
                    self.state.set_up();
                    if self.state.is_up() {
                        speed = self.ctl.speed_mbps(&b.name);
                    }
                } else {
                    self.state.set_down();
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => self.state.set_lost(),
            Err(e) => {
                log::debug!(
                    "{port}: reading {} (ifindex {}): {e}",
                    self.iface,
                    self.ifindex
                );
                self.state.set_down();
            }
        }
        let now = self.state.get();
        if self.logged.swap(now as u8, Ordering::Relaxed) != now as u8 {
            match now {
                LinkCondition::Up => log::info!("{port}: link up again"),
                LinkCondition::Down => log::warn!(
                    "{port}: link down ({} is down or has no carrier): TX takes nothing until it is up",
                    self.iface
                ),
                LinkCondition::Lost => log::warn!(
                    "{port}: interface {} (ifindex {}) is gone (deleted, moved, or replaced by a new \
                     device of that name): the port's queues stop and return their buffers",
                    self.iface,
                    self.ifindex
                ),
            }
        }
        Link {
            up: now == LinkCondition::Up,
            speed_mbps: speed,
        }
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
    fn link_state_lost_is_final() {
        let s = LinkState::default();
        assert!(s.is_up());
        s.set_down();
        assert_eq!(s.get(), LinkCondition::Down);
        s.set_up();
        assert!(s.is_up());
        s.set_lost();
        s.set_up();
        s.set_down();
        assert_eq!(s.get(), LinkCondition::Lost);
        assert_eq!(s.get().as_str(), "lost");
    }

    #[test]
    fn a_watch_follows_the_index() {
        let w = LinkWatch::open("lo").unwrap();
        assert_eq!(w.current_name().as_deref(), Some("lo"));
        assert!(w.poll("lo").up, "lo is up");
        // An index no device has: gone for good.
        let gone = LinkWatch::new(Control::new().unwrap(), "lo", u32::MAX >> 1);
        assert!(!gone.poll("test").up);
        assert_eq!(gone.state().get(), LinkCondition::Lost);
        assert!(gone.current_name().is_none());
        assert!(matches!(
            LinkWatch::open("no-such-dev0"),
            Err(XdpError::NoSuchDevice { .. })
        ));
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
