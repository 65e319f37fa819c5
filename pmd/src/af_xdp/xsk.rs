//! An AF_XDP socket bound to one (device, queue) over a shared [`Umem`].
//!
//! Each socket has its own RX, TX, fill and completion rings. [`XskSocket::split`]
//! separates the receive half (RX + fill) from the transmit half (TX +
//! completion) so two lcores can own them. The socket is created in the
//! calling thread's network namespace: bind from a thread inside the device's
//! netns.

use super::error::{hint_bind, hint_common, XdpError};
use super::ring::{CompRing, FillRing, RingOffsets, RingSize, RxRing, TxRing};
use super::umem::{Member, Umem};
use crate::sys::{Plain, Socket};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// How the socket should move data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Let the kernel choose (zero-copy when the driver has it, copy otherwise).
    Auto,
    /// Force copy mode (`XDP_COPY`).
    Copy,
    /// Require zero-copy (`XDP_ZEROCOPY`); fails on devices without it (veth).
    ZeroCopy,
}

/// Busy-poll socket options (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds to busy poll in a blocking receive/poll.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per NAPI busy-poll run.
    pub budget: u32,
    /// `SO_PREFER_BUSY_POLL`: keep NAPI on the application core.
    pub prefer: bool,
}

/// Ring sizes, mode and options of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// RX ring entries (power of two).
    pub rx_size: u32,
    /// TX ring entries (power of two).
    pub tx_size: u32,
    /// Fill ring entries (power of two; size it 2× the buffers posted at once).
    pub fill_size: u32,
    /// Completion ring entries (power of two).
    pub comp_size: u32,
    /// Copy / zero-copy. Ignored (inherited) when joining an already registered UMEM.
    pub mode: BindMode,
    /// Request `XDP_USE_NEED_WAKEUP`. Ignored (inherited) when joining.
    pub need_wakeup: bool,
    /// Busy-poll options, if any.
    pub busy_poll: Option<BusyPoll>,
}

impl Default for XskConfig {
    fn default() -> XskConfig {
        XskConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 4096,
            comp_size: 2048,
            mode: BindMode::Auto,
            need_wakeup: true,
            busy_poll: None,
        }
    }
}

/// What the kernel actually gave us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskInfo {
    /// Device index.
    pub ifindex: u32,
    /// Queue id.
    pub queue: u32,
    /// True when `XDP_OPTIONS` reports zero-copy; false means copy mode.
    pub zero_copy: bool,
    /// True when this socket joined an existing UMEM registration (`XDP_SHARED_UMEM`).
    pub shared_umem: bool,
}

/// `XDP_STATISTICS` of a socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than an invalid descriptor.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty on a kick.
    pub tx_ring_empty_descs: u64,
}

fn setsockopt<T: Plain>(
    s: &Socket,
    level: i32,
    opt: i32,
    val: &T,
    what: &str,
) -> Result<(), XdpError> {
    s.set_opt(level, opt, val)
        .map_err(|e| XdpError::sys(format!("setsockopt {what}"), e, hint_common))
}

fn getsockopt<T: Plain>(s: &Socket, opt: i32, val: &mut T, what: &str) -> Result<usize, XdpError> {
    s.get_opt(libc::SOL_XDP, opt, val)
        .map_err(|e| XdpError::sys(format!("getsockopt {what}"), e, hint_common))
}

fn stats_of(s: &Socket) -> Result<XskStats, XdpError> {
    let mut st = libc::xdp_statistics::zeroed();
    getsockopt(s, libc::XDP_STATISTICS, &mut st, "XDP_STATISTICS")?;
    Ok(XskStats {
        rx_dropped: st.rx_dropped,
        rx_invalid_descs: st.rx_invalid_descs,
        tx_invalid_descs: st.tx_invalid_descs,
        rx_ring_full: st.rx_ring_full,
        rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: st.tx_ring_empty_descs,
    })
}

/// Errnos that mean "the kernel is busy, call again", not failure.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR)
    )
}

/// Receive half: the RX ring and the fill ring.
#[derive(Debug)]
pub struct XskRx {
    /// Received frames.
    pub rx: RxRing,
    /// Buffers offered to the kernel for reception.
    pub fill: FillRing,
    fd: Arc<Socket>,
}

impl XskRx {
    /// Ask the kernel to process RX (a `recvfrom` with `MSG_DONTWAIT`): needed
    /// when the fill ring needs a wakeup, and it drives NAPI under busy poll.
    ///
    /// # Errors
    /// [`XdpError::Sys`] for errors other than "try again".
    pub fn wakeup(&self) -> Result<(), XdpError> {
        match self.fd.recv_kick() {
            Err(e) if !is_retry(&e) => Err(XdpError::sys("AF_XDP RX wakeup", e, hint_common)),
            _ => Ok(()),
        }
    }

    /// Wait up to `timeout` for frames on the RX ring. Returns true when readable.
    ///
    /// # Errors
    /// [`XdpError::Sys`] when `poll` fails.
    pub fn poll(&self, timeout: Duration) -> Result<bool, XdpError> {
        match self.fd.poll_in(timeout) {
            Ok(r) => Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(false),
            Err(e) => Err(XdpError::sys("poll AF_XDP socket", e, hint_common)),
        }
    }

    /// The socket's counters.
    ///
    /// # Errors
    /// [`XdpError::Sys`] when getsockopt fails.
    pub fn stats(&self) -> Result<XskStats, XdpError> {
        stats_of(&self.fd)
    }

    /// The socket's file descriptor (for an XSKMAP).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Transmit half: the TX ring and the completion ring.
#[derive(Debug)]
pub struct XskTx {
    /// Frames to send.
    pub tx: TxRing,
    /// Sent frames' addresses, returned verbatim.
    pub comp: CompRing,
    fd: Arc<Socket>,
}

impl XskTx {
    /// One `sendto` kick. Returns false when the kernel said "again" (in copy
    /// mode it sends at most 32 frames per call and says EAGAIN while more are pending).
    ///
    /// # Errors
    /// [`XdpError::Sys`] for real failures.
    pub fn kick(&self) -> Result<bool, XdpError> {
        match self.fd.send_kick() {
            Ok(()) => Ok(true),
            Err(e) if is_retry(&e) => Ok(false),
            Err(e) => Err(XdpError::sys("AF_XDP TX kick (sendto)", e, hint_common)),
        }
    }

    /// One `sendto` kick with the kernel's answer as it is, so the caller
    /// can tell busy (EAGAIN, EBUSY, ENOBUFS) from down (ENETDOWN) from gone
    /// (ENXIO: the socket was unbound because its device went away).
    ///
    /// # Errors
    /// The errno of `sendto`.
    #[inline]
    pub fn try_kick(&self) -> io::Result<()> {
        self.fd.send_kick()
    }

    /// Kick until the kernel has taken every posted TX descriptor or `max_kicks`
    /// calls were made. Returns the descriptors still not taken.
    ///
    /// # Errors
    /// [`XdpError::Sys`] from [`XskTx::kick`].
    pub fn flush(&mut self, max_kicks: usize) -> Result<usize, XdpError> {
        for _ in 0..max_kicks {
            if self.tx.outstanding() == 0 {
                break;
            }
            self.kick()?;
        }
        Ok(self.tx.outstanding())
    }

    /// The socket's counters.
    ///
    /// # Errors
    /// [`XdpError::Sys`] when getsockopt fails.
    pub fn stats(&self) -> Result<XskStats, XdpError> {
        stats_of(&self.fd)
    }

    /// The socket's file descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An AF_XDP socket bound to (ifindex, queue) with its four rings.
#[derive(Debug)]
pub struct XskSocket {
    rx: XskRx,
    tx: XskTx,
    info: XskInfo,
    _umem: Arc<Umem>,
}

impl XskSocket {
    /// Create a socket, register or join `umem`, set up the rings and bind to
    /// `(ifindex, queue)` in the calling thread's network namespace.
    ///
    /// Binding retries briefly (≤ 200 ms) on EBUSY, because the teardown of a
    /// previous socket on the same queue is asynchronous.
    ///
    /// # Errors
    /// [`XdpError::Config`] for bad ring sizes, [`XdpError::QueueInUse`] when a
    /// socket over this UMEM already owns `(ifindex, queue)`, [`XdpError::ZeroCopyUnsupported`]
    /// when zero-copy was required and is unavailable (also when joining a copy-mode
    /// UMEM), [`XdpError::Sys`] with a hint otherwise.
    pub fn bind(
        umem: &Arc<Umem>,
        ifindex: u32,
        queue: u32,
        cfg: &XskConfig,
    ) -> Result<XskSocket, XdpError> {
        let sizes = [
            (RingSize::new(cfg.rx_size)?, libc::XDP_RX_RING, "RX"),
            (RingSize::new(cfg.tx_size)?, libc::XDP_TX_RING, "TX"),
            (
                RingSize::new(cfg.fill_size)?,
                libc::XDP_UMEM_FILL_RING,
                "fill",
            ),
            (
                RingSize::new(cfg.comp_size)?,
                libc::XDP_UMEM_COMPLETION_RING,
                "completion",
            ),
        ];
        let fd = Arc::new(
            Socket::new(libc::AF_XDP, libc::SOCK_RAW, 0)
                .map_err(|e| XdpError::sys("socket(AF_XDP)", e, hint_common))?,
        );
        let s: &Socket = &fd;

        let mut members = umem.members();
        members.retain(|m| m.fd.strong_count() > 0);
        if members
            .iter()
            .any(|m| m.ifindex == ifindex && m.queue == queue)
        {
            return Err(XdpError::QueueInUse { ifindex, queue });
        }
        let share = members.iter().find_map(|m| m.fd.upgrade());
        if share.is_none() {
            let c = umem.config();
            let reg = libc::xdp_umem_reg {
                addr: c.base as u64,
                len: c.len as u64,
                chunk_size: c.chunk_size,
                headroom: c.headroom,
                flags: libc::XDP_UMEM_UNALIGNED_CHUNK_FLAG,
                tx_metadata_len: 0,
            };
            setsockopt(s, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        }
        for (size, opt, what) in sizes {
            let n = size.get() as libc::c_int;
            setsockopt(s, libc::SOL_XDP, opt, &n, &format!("{what} ring size {n}"))?;
        }
        let mut off = libc::xdp_mmap_offsets::zeroed();
        let got = getsockopt(s, libc::XDP_MMAP_OFFSETS, &mut off, "XDP_MMAP_OFFSETS")?;
        if got != size_of::<libc::xdp_mmap_offsets>() {
            return Err(XdpError::Config(
                "kernel too old: XDP_MMAP_OFFSETS without ring flags (needs Linux ≥ 5.4)".into(),
            ));
        }
        let o = |r: libc::xdp_ring_offset| RingOffsets {
            producer: r.producer,
            consumer: r.consumer,
            desc: r.desc,
            flags: r.flags,
        };
        // Each ring was sized above with setsockopt on this socket and the
        // offsets are the kernel's for that ring.
        let rx = RxRing::map(
            s,
            libc::XDP_PGOFF_RX_RING as u64,
            o(off.rx),
            sizes[0].0,
            "RX",
        )?;
        let tx = TxRing::map(
            s,
            libc::XDP_PGOFF_TX_RING as u64,
            o(off.tx),
            sizes[1].0,
            "TX",
        )?;
        let fill = FillRing::map(
            s,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            o(off.fr),
            sizes[2].0,
            "fill",
        )?;
        let comp = CompRing::map(
            s,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            o(off.cr),
            sizes[3].0,
            "completion",
        )?;
        if let Some(bp) = cfg.busy_poll {
            let prefer = bp.prefer as libc::c_int;
            setsockopt(
                s,
                libc::SOL_SOCKET,
                SO_PREFER_BUSY_POLL,
                &prefer,
                "SO_PREFER_BUSY_POLL",
            )?;
            let usecs = bp.usecs as libc::c_int;
            setsockopt(s, libc::SOL_SOCKET, SO_BUSY_POLL, &usecs, "SO_BUSY_POLL")?;
            let budget = bp.budget as libc::c_int;
            setsockopt(
                s,
                libc::SOL_SOCKET,
                SO_BUSY_POLL_BUDGET,
                &budget,
                "SO_BUSY_POLL_BUDGET",
            )?;
        }

        let flags = match &share {
            Some(_) => libc::XDP_SHARED_UMEM,
            None => {
                let m = match cfg.mode {
                    BindMode::Auto => 0,
                    BindMode::Copy => libc::XDP_COPY,
                    BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
                };
                m | if cfg.need_wakeup {
                    libc::XDP_USE_NEED_WAKEUP
                } else {
                    0
                }
            }
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: share.as_ref().map_or(0, |f| f.as_raw_fd() as u32),
        };
        let mut tries = 0;
        while let Err(e) = s.bind(&sa) {
            let errno = e.raw_os_error().unwrap_or(0);
            if errno == libc::EBUSY && tries < 20 {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if cfg.mode == BindMode::ZeroCopy && errno == libc::EOPNOTSUPP {
                return Err(XdpError::ZeroCopyUnsupported {
                    ifindex,
                    queue,
                    source: e,
                });
            }
            return Err(XdpError::sys(
                format!(
                    "bind AF_XDP socket to ifindex {ifindex} queue {queue}{}",
                    if share.is_some() {
                        " (shared UMEM)"
                    } else {
                        ""
                    }
                ),
                e,
                hint_bind,
            ));
        }
        let mut opts = libc::xdp_options { flags: 0 };
        getsockopt(s, libc::XDP_OPTIONS, &mut opts, "XDP_OPTIONS")?;
        let zero_copy = opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        if cfg.mode == BindMode::ZeroCopy && !zero_copy {
            return Err(XdpError::ZeroCopyUnsupported {
                ifindex,
                queue,
                source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
            });
        }
        members.push(Member {
            fd: Arc::downgrade(&fd),
            ifindex,
            queue,
        });
        drop(members);
        Ok(XskSocket {
            rx: XskRx {
                rx,
                fill,
                fd: fd.clone(),
            },
            tx: XskTx { tx, comp, fd },
            info: XskInfo {
                ifindex,
                queue,
                zero_copy,
                shared_umem: share.is_some(),
            },
            _umem: umem.clone(),
        })
    }

    /// What the kernel gave us (mode, sharing).
    pub fn info(&self) -> XskInfo {
        self.info
    }

    /// The receive half.
    pub fn rx_mut(&mut self) -> &mut XskRx {
        &mut self.rx
    }

    /// The transmit half.
    pub fn tx_mut(&mut self) -> &mut XskTx {
        &mut self.tx
    }

    /// Separate the halves so two threads can own them. The socket closes when both drop.
    pub fn split(self) -> (XskRx, XskTx) {
        (self.rx, self.tx)
    }

    /// The socket's counters.
    ///
    /// # Errors
    /// [`XdpError::Sys`] when getsockopt fails.
    pub fn stats(&self) -> Result<XskStats, XdpError> {
        self.rx.stats()
    }

    /// The socket's file descriptor (for [`super::XskMap::insert`]).
    pub fn as_raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}
