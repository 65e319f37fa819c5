//! Every system call of the `af_packet` port, each wrapped once as a safe
//! function: the packet socket and its options (TPACKET_V3, rings, qdisc
//! bypass, fanout, promiscuous membership, statistics), the ring `mmap`, the
//! TX kick, the interface ioctls on a control socket, and the network
//! namespace of the probing thread.
//!
//! Values are those of `<linux/if_packet.h>` (kept here so the layout the
//! ring code relies on is visible in one place).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::NonNull;

const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_DROP_MEMBERSHIP: libc::c_int = 2;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const ETH_P_ALL: u16 = 0x0003;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const ETHTOOL_GSET: u32 = 0x1;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TpacketReq3 {
    /// Bytes per block (a multiple of the page size).
    pub block_size: u32,
    /// Blocks.
    pub block_nr: u32,
    /// Bytes per frame (multiple of 16).
    pub frame_size: u32,
    /// Frames (= block_nr * block_size / frame_size).
    pub frame_nr: u32,
    /// RX: ms after which a partly filled block goes to user space (TX: 0).
    pub retire_blk_tov: u32,
    /// Private bytes per block (0).
    pub sizeof_priv: u32,
    /// Feature flags (0).
    pub feature_req_word: u32,
}

impl TpacketReq3 {
    /// Bytes of the ring.
    pub fn bytes(&self) -> usize {
        self.block_size as usize * self.block_nr as usize
    }
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames the socket saw (received + dropped).
    pub packets: u32,
    /// Frames dropped because the ring was full.
    pub drops: u32,
    /// Times the RX queue was frozen (all blocks in user space).
    pub freeze_q_cnt: u32,
}

/// How a fanout group spreads frames over its sockets (`PACKET_FANOUT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutMode {
    /// By flow hash (same flow, same queue); IP fragments are reassembled first.
    Hash,
    /// Round robin.
    Lb,
    /// By the CPU that received the frame.
    Cpu,
}

impl FanoutMode {
    fn arg(self) -> u32 {
        match self {
            FanoutMode::Hash => PACKET_FANOUT_FLAG_DEFRAG,
            FanoutMode::Lb => 1,
            FanoutMode::Cpu => 2,
        }
    }
}

fn last(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cvt(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        Err(last(what))
    } else {
        Ok(())
    }
}

/// A raw `AF_PACKET` socket.
#[derive(Debug)]
pub struct PacketFd(OwnedFd);

impl AsRawFd for PacketFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl PacketFd {
    /// A packet socket that receives nothing until [`PacketFd::bind`].
    ///
    /// # Errors
    /// `socket(2)` errors (EPERM without CAP_NET_RAW).
    pub fn new() -> io::Result<PacketFd> {
        // SAFETY: plain socket(2); protocol 0 receives nothing before bind.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        cvt(fd, "socket(AF_PACKET, SOCK_RAW)")?;
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(PacketFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn set<T>(&self, level: libc::c_int, opt: libc::c_int, v: &T, what: &str) -> io::Result<()> {
        // SAFETY: `v` is a live value of the size passed; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                level,
                opt,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        cvt(rc, what)
    }

    fn set_int(&self, opt: libc::c_int, v: libc::c_int, what: &str) -> io::Result<()> {
        self.set(SOL_PACKET, opt, &v, what)
    }

    /// `PACKET_VERSION = TPACKET_V3` (both rings use V3 headers).
    ///
    /// # Errors
    /// The kernel refuses (very old kernels).
    pub fn set_v3(&self) -> io::Result<()> {
        self.set_int(PACKET_VERSION, TPACKET_V3, "PACKET_VERSION TPACKET_V3")
    }

    /// `PACKET_QDISC_BYPASS`: TX frames go straight to the driver.
    ///
    /// # Errors
    /// The kernel refuses.
    pub fn set_qdisc_bypass(&self, on: bool) -> io::Result<()> {
        self.set_int(PACKET_QDISC_BYPASS, on.into(), "PACKET_QDISC_BYPASS")
    }

    /// `PACKET_LOSS`: a TX frame the kernel cannot parse is skipped instead
    /// of stalling the ring.
    ///
    /// # Errors
    /// The kernel refuses.
    pub fn set_loss(&self) -> io::Result<()> {
        self.set_int(PACKET_LOSS, 1, "PACKET_LOSS")
    }

    /// `PACKET_IGNORE_OUTGOING`: do not receive frames sent on the device
    /// (by this or any other socket). Returns false when the kernel lacks it.
    pub fn ignore_outgoing(&self) -> bool {
        self.set_int(PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING")
            .is_ok()
    }

    /// `PACKET_RX_RING` / `PACKET_TX_RING` with a V3 request.
    ///
    /// # Errors
    /// EINVAL for a geometry the kernel refuses, ENOMEM when it cannot
    /// allocate the blocks.
    pub fn set_ring(&self, tx: bool, req: &TpacketReq3) -> io::Result<()> {
        let (opt, what) = if tx {
            (PACKET_TX_RING, "PACKET_TX_RING")
        } else {
            (PACKET_RX_RING, "PACKET_RX_RING")
        };
        self.set(SOL_PACKET, opt, req, what)
    }

    /// Bind to device `ifindex`; `receive` binds to every protocol
    /// (`ETH_P_ALL`), otherwise the socket only sends.
    ///
    /// # Errors
    /// ENODEV when the device is gone, ENETDOWN.
    pub fn bind(&self, ifindex: u32, receive: bool) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = if receive { ETH_P_ALL.to_be() } else { 0 };
        sa.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                self.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        cvt(rc, "bind AF_PACKET socket to the interface")
    }

    /// Create a fanout group with a kernel-chosen unique id (this socket is
    /// its first member); returns the id for [`PacketFd::join_fanout`].
    ///
    /// # Errors
    /// The kernel refuses (socket not bound).
    pub fn create_fanout(&self, mode: FanoutMode) -> io::Result<u16> {
        let arg = (mode.arg() | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        self.set(SOL_PACKET, PACKET_FANOUT, &arg, "PACKET_FANOUT (create)")?;
        let mut v: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live and sized as passed.
        let rc = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                SOL_PACKET,
                PACKET_FANOUT,
                (&mut v as *mut u32).cast(),
                &mut len,
            )
        };
        cvt(rc, "getsockopt PACKET_FANOUT")?;
        Ok(v as u16)
    }

    /// Join the fanout group `id`.
    ///
    /// # Errors
    /// EINVAL when the group has other settings.
    pub fn join_fanout(&self, id: u16, mode: FanoutMode) -> io::Result<()> {
        let arg = (mode.arg() << 16) | u32::from(id);
        self.set(SOL_PACKET, PACKET_FANOUT, &arg, "PACKET_FANOUT (join)")
    }

    fn membership(&self, ifindex: u32, add: bool) -> io::Result<()> {
        // SAFETY: packet_mreq is plain data; all-zero is valid.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex as i32;
        mr.mr_type = PACKET_MR_PROMISC;
        let (opt, what) = if add {
            (PACKET_ADD_MEMBERSHIP, "PACKET_ADD_MEMBERSHIP (promiscuous)")
        } else {
            (
                PACKET_DROP_MEMBERSHIP,
                "PACKET_DROP_MEMBERSHIP (promiscuous)",
            )
        };
        self.set(SOL_PACKET, opt, &mr, what)
    }

    /// Put the device in promiscuous mode for as long as this membership
    /// (or the socket) lives; the kernel counts such holders.
    ///
    /// # Errors
    /// The kernel refuses.
    pub fn add_promisc(&self, ifindex: u32) -> io::Result<()> {
        self.membership(ifindex, true)
    }

    /// Drop the promiscuous membership taken by [`PacketFd::add_promisc`].
    ///
    /// # Errors
    /// The device is gone (the kernel dropped the membership already).
    pub fn drop_promisc(&self, ifindex: u32) -> io::Result<()> {
        self.membership(ifindex, false)
    }

    /// `PACKET_STATISTICS` since the last call (the kernel resets them).
    ///
    /// # Errors
    /// The kernel refuses.
    pub fn take_stats(&self) -> io::Result<KernelStats> {
        let mut s = KernelStats::default();
        let mut len = std::mem::size_of::<KernelStats>() as libc::socklen_t;
        // SAFETY: `s` and `len` are live and sized as passed.
        let rc = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut s as *mut KernelStats).cast(),
                &mut len,
            )
        };
        cvt(rc, "getsockopt PACKET_STATISTICS")?;
        Ok(s)
    }

    /// Kick the TX ring: the kernel sends every frame marked for sending.
    /// Never blocks.
    ///
    /// # Errors
    /// The errno of `sendto` (ENOBUFS/EAGAIN: the device was busy and the
    /// frames stay queued; ENXIO: the device is gone; ENETDOWN).
    #[inline]
    pub fn kick(&self) -> io::Result<()> {
        // SAFETY: no buffer is passed; the kernel reads the mapped TX ring.
        let rc = unsafe {
            libc::sendto(
                self.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Map the socket's rings (RX first, then TX).
    ///
    /// # Errors
    /// `mmap(2)` errors.
    pub fn map(&self, len: usize) -> io::Result<RingMap> {
        // SAFETY: a fresh shared mapping of the socket's rings; it aliases
        // no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                self.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last("mmap of the packet rings"));
        }
        Ok(RingMap {
            base: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        })
    }
}

/// The mapped rings of one socket; unmapped on drop.
#[derive(Debug)]
pub struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a plain shared mapping; the ring code synchronises with the
// kernel through the status words, and each queue uses its own part.
unsafe impl Send for RingMap {}
// SAFETY: as above; `&RingMap` hands out only the base address.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// First byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty mapping (never: mmap refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
impl RingMap {
    /// Anonymous zeroed memory standing in for a socket's rings (unit tests).
    pub fn anon(len: usize) -> RingMap {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        RingMap {
            base: NonNull::new(p.cast()).expect("mmap never returns NULL here"),
            len,
        }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; no ring view outlives it
        // (they hold an Arc of the socket that owns this map).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A datagram socket for interface ioctls; it answers for the network
/// namespace it was created in, whichever thread asks later.
#[derive(Debug)]
pub struct Control(OwnedFd);

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

impl Control {
    /// A control socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// `socket(2)` errors.
    pub fn new() -> io::Result<Control> {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        cvt(fd, "socket(AF_INET, SOCK_DGRAM) for interface ioctls")?;
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(Control(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl(&self, req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: `r` is a valid ifreq; these SIOC* requests read and write
        // only inside it (ETHTOOL's data pointer is checked by the caller).
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, r as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn ifreq(name: &str) -> io::Result<libc::ifreq> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{name:?} is not a valid interface name (1..15 bytes, no '/', spaces or NUL)"
                ),
            ));
        }
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in r.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        Ok(r)
    }

    /// The index of device `name` (ENODEV when there is none).
    ///
    /// # Errors
    /// ENODEV, or an invalid name.
    pub fn ifindex(&self, name: &str) -> io::Result<u32> {
        let mut r = Self::ifreq(name)?;
        self.ioctl(libc::SIOCGIFINDEX, &mut r)?;
        // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member.
        Ok(unsafe { r.ifr_ifru.ifru_ifindex } as u32)
    }

    /// The current name of device `ifindex` (ENODEV once it is deleted).
    ///
    /// # Errors
    /// ENODEV.
    pub fn name(&self, ifindex: u32) -> io::Result<String> {
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        r.ifr_ifru.ifru_ifindex = ifindex as i32;
        self.ioctl(libc::SIOCGIFNAME, &mut r)?;
        // SAFETY: the kernel wrote a NUL-terminated name into ifr_name (all
        // zero beyond it), which is IFNAMSIZ long.
        let c = unsafe { CStr::from_ptr(r.ifr_name.as_ptr()) };
        Ok(c.to_string_lossy().into_owned())
    }

    /// Interface flags (`IFF_*`).
    ///
    /// # Errors
    /// ENODEV.
    pub fn flags(&self, name: &str) -> io::Result<u32> {
        let mut r = Self::ifreq(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member.
        Ok(unsafe { r.ifr_ifru.ifru_flags } as u16 as u32)
    }

    /// MTU.
    ///
    /// # Errors
    /// ENODEV.
    pub fn mtu(&self, name: &str) -> io::Result<u32> {
        let mut r = Self::ifreq(name)?;
        self.ioctl(libc::SIOCGIFMTU, &mut r)?;
        // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member.
        Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
    }

    /// MAC address.
    ///
    /// # Errors
    /// ENODEV.
    pub fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let mut r = Self::ifreq(name)?;
        self.ioctl(libc::SIOCGIFHWADDR, &mut r)?;
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member.
        let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
        let mut m = [0u8; 6];
        for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(m)
    }

    /// Link speed in Mb/s from ethtool (0 when unknown or unsupported).
    pub fn speed_mbps(&self, name: &str) -> u32 {
        let Ok(mut r) = Self::ifreq(name) else {
            return 0;
        };
        let mut cmd = EthtoolCmd {
            cmd: ETHTOOL_GSET,
            ..Default::default()
        };
        r.ifr_ifru.ifru_data = (&mut cmd as *mut EthtoolCmd).cast();
        if self.ioctl(libc::SIOCETHTOOL, &mut r).is_err() {
            return 0;
        }
        let s = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
        if s == u32::MAX || s == u32::from(u16::MAX) {
            0
        } else {
            s
        }
    }
}

/// The network namespace of the thread that created it (an open
/// `/proc/thread-self/ns/net`), so sockets made later from another thread
/// land next to the interface.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    ino: u64,
}

fn current_ns() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

impl NetNs {
    /// The calling thread's namespace.
    ///
    /// # Errors
    /// `/proc` is not mounted.
    pub fn current() -> io::Result<NetNs> {
        let file = current_ns()?;
        let ino = file.metadata()?.ino();
        Ok(NetNs { file, ino })
    }

    /// Run `f` inside this namespace: on the calling thread when it is
    /// already there, else on a short-lived thread that enters it first.
    ///
    /// # Errors
    /// `setns(2)` refused (needs CAP_SYS_ADMIN), or `f`'s error.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> io::Result<R> + Send) -> io::Result<R> {
        let here = current_ns().and_then(|f| f.metadata()).map(|m| m.ino());
        if here.ok() == Some(self.ino) {
            return f();
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace fd changes only this
                // short-lived thread, which ends right after `f`.
                let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
                cvt(rc, "setns into the interface's network namespace")?;
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}
