//! The `af_packet` port (DPDK `net_af_packet`): a Linux interface through
//! `AF_PACKET` sockets with mmap'd TPACKET_V3 rings.
//!
//! ```text
//! af_packet:iface=NAME[,qpairs=N][,blocksz=B][,framesz=F][,framecnt=C]
//!          [,qdisc_bypass=0|1][,fanout=hash|lb|cpu][,promisc=0|1][,blk_tov=MS]
//!          [,tx_kick_batch=N]
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `iface` (or the bare name) | — | the interface, looked up in the network namespace of the thread that probes |
//! | `qpairs` | 1 | queue pairs the port offers (1..=16); one socket per queue, RX sockets joined in one fanout group |
//! | `blocksz` | 4096 | ring block size: a power of two, 4 KiB..4 MiB; an RX frame must fit a block (`blocksz − 130 ≥ MTU + 14`) |
//! | `framesz` | 2048 | TX slot size (multiple of 16, ≤ `blocksz`); `framesz − 48 ≥ MTU + 14` |
//! | `framecnt` | the queue's descriptors | frames per ring; the RX ring holds `framecnt × framesz` bytes in whole blocks |
//! | `qdisc_bypass` | 1 | `PACKET_QDISC_BYPASS`: TX goes straight to the driver |
//! | `fanout` (`fanout_mode`) | hash | how RX frames spread over the queues: flow hash, round robin, or receiving CPU |
//! | `promisc` | 1 | promiscuous mode (a `PACKET_ADD_MEMBERSHIP`) while started; dropped at stop |
//! | `blk_tov` | 1 | ms after which a partly filled RX block is handed to user space (latency bound) |
//! | `tx_kick_batch` | 32 | TX frames that wait in the ring before a `sendto` kick; the forward loop flushes the rest after 0.5 µs without work ([`crate::port::TX_QUIET_NS`]) and at least every 100 µs ([`crate::port::TX_DRAIN_NS`]); 1 = kick after every burst, as DPDK's `net_af_packet` does |
//!
//! Every frame is copied (RX: kernel block → mbuf from the queue's pool; TX:
//! mbuf → TX slot), counted in the `rx_copies` / `tx_copies` xstats; the
//! mapper is a [`SoftMapper`] of [`MappingKind::None`]. Kernel drops
//! (`PACKET_STATISTICS`) show as `imissed`. The port follows its interface
//! by the index it had at probe ([`LinkWatch`]; a new interface of the same
//! name is another device): `link()` reads it (xfwd's main thread every
//! 250 ms) and a kick the kernel refuses tells the queues at once. While the
//! link is down TX takes nothing and makes no syscall (what the ring holds
//! goes out once it is up); once the interface is gone the link reads lost,
//! RX returns nothing, TX returns 0 after counting the frames it had queued
//! as errors (`tx_revoked`), `stop()` still works and a restart says it is gone.

mod args;
mod queue;
pub mod ring;
pub mod socket;

use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::netdev::{LinkCondition, LinkWatch};
use crate::port::{Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use crate::stats::PortStats;
pub use args::AfPacketArgs;
use queue::{AfpRx, AfpTx, QueueX, Sock};
use ring::{RxRing, TxRing, RX_OVERHEAD, TX_DATA_OFF};
pub use socket::FanoutMode;
use socket::{Control, KernelStats, NetNs, PacketFd};
use std::io;
use std::sync::{Arc, Mutex};

/// Most queue pairs (DPDK's `RTE_PMD_AF_PACKET_MAX_RINGS`).
pub const MAX_QPAIRS: u16 = 16;

/// Kernel counters of the RX sockets, accumulated (the kernel resets them
/// on each read).
#[derive(Debug, Default, Clone)]
struct KernelTotals {
    drops: Vec<u64>,
    freezes: u64,
}

/// An `af_packet` port.
#[derive(Debug)]
pub struct AfPacketPort {
    core: PortCore,
    args: AfPacketArgs,
    devargs: String,
    watch: LinkWatch,
    ns: NetNs,
    mac: [u8; 6],
    mtu: u32,
    socks: Vec<Arc<Sock>>,
    promisc_on: Option<usize>,
    kernel: Mutex<KernelTotals>,
    rx_x: Vec<Arc<QueueX>>,
    tx_x: Vec<Arc<QueueX>>,
}

fn io_err(port: &str, what: impl Into<String>, source: io::Error) -> PortError {
    PortError::Io {
        port: port.to_string(),
        what: what.into(),
        source,
    }
}

impl AfPacketPort {
    /// Probe from devargs: the interface must exist in the calling thread's
    /// network namespace (remembered: queues are created there at start).
    ///
    /// # Errors
    /// [`PortError::Devargs`] for bad keys/values or an unknown interface,
    /// [`PortError::Io`] when the interface cannot be queried.
    pub fn probe(d: &Devargs) -> Result<AfPacketPort, PortError> {
        let args = AfPacketArgs::parse(d)?;
        let ctl = Control::new().map_err(|e| io_err(&d.raw, "control socket", e))?;
        let ifindex = ctl.ifindex(&args.iface).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                PortError::Devargs {
                    devargs: d.raw.clone(),
                    why: format!(
                        "no interface `{}` in this network namespace (see `ip link show`)",
                        args.iface
                    ),
                }
            } else {
                io_err(&d.raw, format!("look up interface {}", args.iface), e)
            }
        })?;
        let mac = ctl
            .mac(&args.iface)
            .map_err(|e| io_err(&d.raw, "read the MAC address", e))?;
        let mtu = ctl
            .mtu(&args.iface)
            .map_err(|e| io_err(&d.raw, "read the MTU", e))?;
        let ns = NetNs::current().map_err(|e| io_err(&d.raw, "open the network namespace", e))?;
        let iface = args.iface.clone();
        Ok(AfPacketPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::None))),
            args,
            devargs: d.raw.clone(),
            watch: LinkWatch::new(ctl, &iface, ifindex),
            ns,
            mac,
            mtu,
            socks: Vec::new(),
            promisc_on: None,
            kernel: Mutex::new(KernelTotals::default()),
            rx_x: Vec::new(),
            tx_x: Vec::new(),
        })
    }

    /// The parsed devargs.
    pub fn args(&self) -> &AfPacketArgs {
        &self.args
    }

    /// The interface index the port is bound to.
    pub fn ifindex(&self) -> u32 {
        self.watch.ifindex()
    }

    /// The interface's current name, or `None` once it was deleted.
    pub fn iface_name(&self) -> Option<String> {
        self.watch.current_name()
    }

    /// The MTU now (the probe-time value once the interface is gone).
    fn live_mtu(&self) -> u32 {
        self.iface_name()
            .and_then(|n| self.watch.control().mtu(&n).ok())
            .unwrap_or(self.mtu)
    }

    fn frames(&self, desc: u16) -> u32 {
        self.args.framecnt.unwrap_or(u32::from(desc))
    }

    /// Read the kernel counters of every RX socket into the totals.
    fn collect_kernel(&self) {
        let mut k = self.kernel.lock().unwrap_or_else(|p| p.into_inner());
        for (i, s) in self.socks.iter().enumerate().take(k.drops.len()) {
            match s.fd.take_stats() {
                Ok(KernelStats {
                    drops,
                    freeze_q_cnt,
                    ..
                }) => {
                    k.drops[i] += u64::from(drops);
                    k.freezes += u64::from(freeze_q_cnt);
                }
                Err(e) => log::debug!("{}: {e}", self.devargs),
            }
        }
    }

    /// Create, configure, map and bind one socket per queue.
    fn open_sockets(&self, conf: &PortConf) -> io::Result<Vec<(PacketFd, crate::sys::Shared)>> {
        let (rxq, txq) = (conf.rx_queues as usize, conf.tx_queues as usize);
        let rx_req = self.args.ring_req(self.frames(conf.rx_desc), true);
        let tx_req = self.args.ring_req(self.frames(conf.tx_desc), false);
        let a = &self.args;
        let ifindex = self.ifindex();
        self.ns.run(|| {
            let mut out = Vec::new();
            let mut group = None;
            for i in 0..rxq.max(txq) {
                let (rx, tx) = (i < rxq, i < txq);
                let fd = PacketFd::new()?;
                fd.set_v3()?;
                if a.qdisc_bypass {
                    fd.set_qdisc_bypass(true)?;
                }
                fd.set_loss()?;
                if rx && !fd.ignore_outgoing() {
                    log::debug!("PACKET_IGNORE_OUTGOING unsupported; outgoing frames are filtered");
                }
                let mut len = 0;
                if rx {
                    fd.set_ring(false, &rx_req)?;
                    len += rx_req.bytes();
                }
                if tx {
                    fd.set_ring(true, &tx_req)?;
                    len += tx_req.bytes();
                }
                let map = fd.map(len)?;
                fd.bind(ifindex, rx)?;
                if rx && rxq > 1 {
                    match group {
                        None => group = Some(fd.create_fanout(a.fanout)?),
                        Some(id) => fd.join_fanout(id, a.fanout)?,
                    }
                }
                out.push((fd, map));
            }
            Ok(out)
        })
    }
}

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        let name = self.iface_name();
        PortInfo {
            driver: "af_packet",
            devargs: self.devargs.clone(),
            mac: name
                .as_deref()
                .and_then(|n| self.watch.control().mac(n).ok())
                .unwrap_or(self.mac),
            max_rx_queues: self.args.qpairs,
            max_tx_queues: self.args.qpairs,
            max_rx_desc: 32768,
            max_tx_desc: 32768,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: self.live_mtu().min(u32::from(u16::MAX)) as u16,
            zero_copy: false,
            mapping: MappingKind::None,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        let cfg = |what, value: String, accepted: String| PortError::Config {
            port: self.devargs.clone(),
            what,
            value,
            accepted,
        };
        conf.check(&self.devargs, &info)?;
        let mtu = self.live_mtu();
        let frame = mtu as usize + 14;
        let a = &self.args;
        if (a.framesz as usize) < TX_DATA_OFF + frame {
            return Err(cfg(
                "framesz",
                a.framesz.to_string(),
                format!(
                    ">= {} for MTU {} (48 header bytes + {frame}-byte frames)",
                    TX_DATA_OFF + frame,
                    mtu
                ),
            ));
        }
        if (a.blocksz as usize) < RX_OVERHEAD + frame + 4 {
            return Err(cfg(
                "blocksz",
                a.blocksz.to_string(),
                format!(
                    "a power of two >= {} for MTU {mtu}",
                    RX_OVERHEAD + frame + 4
                ),
            ));
        }
        for q in 0..conf.rx_queues as usize {
            let pool = conf.pool(q).expect("checked: at least one pool");
            let room = pool.config().data_room as usize;
            if room < frame + 4 {
                return Err(cfg(
                    "pool data room",
                    room.to_string(),
                    format!(
                        ">= {} to receive MTU {} frames (with a VLAN tag) in pool `{}`",
                        frame + 4,
                        mtu,
                        pool.name()
                    ),
                ));
            }
        }
        for (what, desc) in [("rx ring", conf.rx_desc), ("tx ring", conf.tx_desc)] {
            let req = a.ring_req(self.frames(desc), what == "rx ring");
            if req.bytes() > 1 << 30 {
                return Err(cfg(
                    what,
                    format!("{} bytes", req.bytes()),
                    "at most 1 GiB per ring: lower framecnt or the descriptors".into(),
                ));
            }
        }
        self.core.configure(conf, &info)?;
        self.rx_x = (0..conf.rx_queues).map(|_| Default::default()).collect();
        self.tx_x = (0..conf.tx_queues).map(|_| Default::default()).collect();
        *self.kernel.lock().unwrap_or_else(|p| p.into_inner()) = KernelTotals {
            drops: vec![0; conf.rx_queues as usize],
            freezes: 0,
        };
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let conf = self.core.start()?;
        let name = self.devargs.clone();
        self.link(); // read the device now
        let opened = if self.watch.state().get() == LinkCondition::Lost {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "interface {} (index {}) is gone",
                    self.args.iface,
                    self.ifindex()
                ),
            ))
        } else {
            self.open_sockets(&conf)
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.core.stop()?;
                return Err(io_err(&name, "open the AF_PACKET queues", e));
            }
        };
        let (rxq, txq) = (conf.rx_queues as usize, conf.tx_queues as usize);
        let rx_req = self.args.ring_req(self.frames(conf.rx_desc), true);
        let tx_req = self.args.ring_req(self.frames(conf.tx_desc), false);
        let mut q = PortQueues::default();
        self.socks.clear();
        for (i, (fd, map)) in opened.into_iter().enumerate() {
            let sock = Arc::new(Sock { fd });
            let link = self.watch.state();
            if i < rxq {
                q.rx.push(Box::new(AfpRx {
                    ring: RxRing::new(map.clone(), &rx_req),
                    _sock: sock.clone(),
                    cache: conf.pool(i).expect("checked").cache(),
                    counters: self.core.counters.rx[i].clone(),
                    x: self.rx_x[i].clone(),
                    link: link.clone(),
                    _token: self.core.token(),
                }));
            }
            if i < txq {
                let off = if i < rxq { rx_req.bytes() } else { 0 };
                q.tx.push(Box::new(AfpTx {
                    ring: TxRing::new(map, off, &tx_req),
                    sock: sock.clone(),
                    cache: conf.pool(0).expect("checked").cache(),
                    counters: self.core.counters.tx[i].clone(),
                    x: self.tx_x[i].clone(),
                    need_kick: false,
                    kick_batch: self.args.tx_kick_batch,
                    unkicked: 0,
                    revoked: false,
                    link: link.clone(),
                    _token: self.core.token(),
                }));
            }
            self.socks.push(sock);
        }
        self.promisc_on = None;
        if self.args.promisc {
            match self.socks[0].fd.add_promisc(self.ifindex()) {
                Ok(()) => self.promisc_on = Some(0),
                Err(e) => log::warn!("{name}: promiscuous mode refused: {e}"),
            }
        }
        log::info!(
            "{name}: {} sockets on {} (ifindex {}), RX {}x{} B blocks, TX {} x {} B frames, qdisc_bypass={}",
            self.socks.len(),
            self.args.iface,
            self.ifindex(),
            rx_req.block_nr,
            rx_req.block_size,
            tx_req.frame_nr,
            tx_req.frame_size,
            self.args.qdisc_bypass
        );
        Ok(q)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        if !self.core.started() {
            return Ok(());
        }
        self.core.stop()?;
        self.collect_kernel();
        if let Some(i) = self.promisc_on.take() {
            if let Err(e) = self.socks[i].fd.drop_promisc(self.ifindex()) {
                // The device went away and took the membership with it.
                log::debug!("{}: {e}", self.devargs);
            }
        }
        // Queue handles are gone, so these are the last holders: the sockets
        // close and the rings are unmapped here.
        self.socks.clear();
        Ok(())
    }

    fn link(&self) -> Link {
        self.watch.poll(&self.devargs)
    }

    fn stats(&self) -> PortStats {
        self.collect_kernel();
        let mut s = self.core.counters.read();
        let k = self.kernel.lock().unwrap_or_else(|p| p.into_inner());
        for (q, d) in s.rxq.iter_mut().zip(&k.drops) {
            q.missed += d;
            s.imissed += d;
        }
        s
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let sum = |v: &[Arc<QueueX>], i: usize| v.iter().map(|x| x.read()[i]).sum::<u64>();
        let k = {
            let _ = self.stats();
            self.kernel
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        vec![
            ("rx_copies".into(), sum(&self.rx_x, 0)),
            ("tx_copies".into(), sum(&self.tx_x, 0)),
            ("rx_blocks".into(), sum(&self.rx_x, 1)),
            ("rx_vlan_reinserted".into(), sum(&self.rx_x, 2)),
            ("rx_left_in_ring".into(), sum(&self.rx_x, 3)),
            ("rx_kernel_drops".into(), k.drops.iter().sum()),
            ("rx_kernel_freezes".into(), k.freezes),
            ("tx_kicks".into(), sum(&self.tx_x, 1)),
            ("tx_kick_busy".into(), sum(&self.tx_x, 2)),
            ("tx_revoked".into(), sum(&self.tx_x, 3)),
            ("link_up".into(), self.watch.state().is_up() as u64),
            (
                "link_lost".into(),
                (self.watch.state().get() == LinkCondition::Lost) as u64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interface_is_a_devargs_error() {
        let e = AfPacketPort::probe(&Devargs::parse("af_packet:iface=nope-xfwd0").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no interface `nope-xfwd0`"), "{e}");
    }
}
