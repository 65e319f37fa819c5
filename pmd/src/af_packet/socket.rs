//! The packet socket of the `af_packet` port and its options (TPACKET_V3,
//! rings, qdisc bypass, fanout, promiscuous membership, statistics), the
//! ring mapping and the TX kick, on [`crate::sys`]. The interface ioctls and
//! the network namespace are [`crate::sys::netdev::Control`] and
//! [`crate::sys::NetNs`].
//!
//! Values are those of `<linux/if_packet.h>` (kept here so the layout the
//! ring code relies on is visible in one place).
pub use crate::sys::netdev::Control;
pub use crate::sys::NetNs;
use crate::sys::{context, Mapping, Plain, Shared, Socket};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

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
    fn to_kernel(self) -> libc::tpacket_req3 {
        libc::tpacket_req3 {
            tp_block_size: self.block_size,
            tp_block_nr: self.block_nr,
            tp_frame_size: self.frame_size,
            tp_frame_nr: self.frame_nr,
            tp_retire_blk_tov: self.retire_blk_tov,
            tp_sizeof_priv: self.sizeof_priv,
            tp_feature_req_word: self.feature_req_word,
        }
    }

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

/// A raw `AF_PACKET` socket.
#[derive(Debug)]
pub struct PacketFd(Socket);

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
        // Protocol 0: receives nothing before bind.
        Socket::new(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map(PacketFd)
            .map_err(|e| context(e, "socket(AF_PACKET, SOCK_RAW)"))
    }

    fn set<T: Plain>(
        &self,
        level: libc::c_int,
        opt: libc::c_int,
        v: &T,
        what: &str,
    ) -> io::Result<()> {
        self.0.set_opt(level, opt, v).map_err(|e| context(e, what))
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
        self.set(SOL_PACKET, opt, &req.to_kernel(), what)
    }

    /// Bind to device `ifindex`; `receive` binds to every protocol
    /// (`ETH_P_ALL`), otherwise the socket only sends.
    ///
    /// # Errors
    /// ENODEV when the device is gone, ENETDOWN.
    pub fn bind(&self, ifindex: u32, receive: bool) -> io::Result<()> {
        let mut sa = libc::sockaddr_ll::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = if receive { ETH_P_ALL.to_be() } else { 0 };
        sa.sll_ifindex = ifindex as i32;
        self.0
            .bind(&sa)
            .map_err(|e| context(e, "bind AF_PACKET socket to the interface"))
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
        self.0
            .get_opt(SOL_PACKET, PACKET_FANOUT, &mut v)
            .map_err(|e| context(e, "getsockopt PACKET_FANOUT"))?;
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
        let mut mr = libc::packet_mreq::zeroed();
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
        let mut s = libc::tpacket_stats_v3::zeroed();
        self.0
            .get_opt(SOL_PACKET, PACKET_STATISTICS, &mut s)
            .map_err(|e| context(e, "getsockopt PACKET_STATISTICS"))?;
        Ok(KernelStats {
            packets: s.tp_packets,
            drops: s.tp_drops,
            freeze_q_cnt: s.tp_freeze_q_cnt,
        })
    }

    /// Kick the TX ring: the kernel sends every frame marked for sending.
    /// Never blocks.
    ///
    /// # Errors
    /// The errno of `sendto` (ENOBUFS/EAGAIN: the device was busy and the
    /// frames stay queued; ENXIO: the device is gone; ENETDOWN).
    #[inline]
    pub fn kick(&self) -> io::Result<()> {
        self.0.send_kick()
    }

    /// Map the socket's rings (RX first, then TX).
    ///
    /// # Errors
    /// `mmap(2)` errors.
    pub fn map(&self, len: usize) -> io::Result<Shared> {
        let m = Mapping::shared(&self.0, 0, len, true)
            .map_err(|e| context(e, "mmap of the packet rings"))?;
        Ok(Shared::from_mapping(m))
    }
}
