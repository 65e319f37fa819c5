//! The `af_xdp` port: the external mbuf pool **is** the UMEM.
//!
//! `af_xdp:iface=NAME[,queues=N][,mode=drv|skb][,zero_copy=0|1][,need_wakeup=0|1]
//! [,busy_poll=USECS][,busy_budget=N][,prefer_busy_poll=0|1][,tx_kick_batch=N]`
//!
//! TX kicks are coalesced: in copy mode every `sendto` kick is a syscall
//! (~0.3 µs here) and the kernel sends at most 32 frames per call, so a queue
//! kicks once `tx_kick_batch` (default 32) descriptors wait in its TX ring,
//! when the ring is full, and on [`TxQueue::flush`](crate::port::TxQueue::flush) (after
//! [`crate::port::TX_QUIET_NS`] without work, and at least every
//! [`crate::port::TX_DRAIN_NS`]). `tx_kick_batch=1`
//! kicks after every burst, as DPDK's `net_af_xdp` does. The kicks made are
//! counted in the `tx_kicks` xstat.
//!
//! The memory of the RX pool is registered once as a UMEM in unaligned-chunk
//! mode and shared by every socket of every port over that memory, so a frame
//! received on port 0 is sent on port 1 by moving a descriptor: no copy in
//! user space ("DMA-map per port" = the UMEM registration, kind `umem`).
//!
//! Addresses: a fill entry is the UMEM offset of an mbuf's buffer; the kernel
//! writes the frame 256 bytes (`XDP_PACKET_HEADROOM`) in, so received mbufs
//! have `data_off = 256`. A TX address is the buffer offset with the data
//! offset in the top 16 bits, so a completion names the buffer exactly. An
//! mbuf whose buffer is outside this UMEM (another pool) or that is chained
//! is copied into a UMEM mbuf first and counted in `tx_copies`.
//!
//! Every buffer handed to the kernel is recorded by the queue half that
//! handed it; when both halves of a socket are gone the socket is closed
//! (the kernel unbinds it and waits for in-flight RX) and only then are those
//! mbufs returned to their pool. So `stop()` gets every mbuf back.
//!
//! A vanished device: the port follows the interface by the index it had at
//! probe ([`LinkWatch`]); `link()` reads it (xfwd's main thread every
//! 250 ms) and a kick the kernel refuses (ENXIO: the socket was unbound
//! because the device is gone; ENETDOWN: it is down) tells the queues at
//! once. While the link is down TX takes nothing (the caller counts its
//! drops) and makes no syscall; once the device is gone both halves close
//! their socket and every buffer they lent the kernel goes back to the pool
//! (frames still waiting in the TX ring are counted in `tx_revoked`), RX
//! returns 0 and a restart says the interface is gone.

use super::args::Args;
use super::bpf::{XdpMode, XdpRedirect};
use super::rx::XdpRx;
use super::tx::XdpTx;
use super::umem::{Umem, XDP_PACKET_HEADROOM};
use super::xsk::{XskConfig, XskSocket};
use super::XdpDesc;
use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::netdev::{self, LinkCondition, LinkState, LinkWatch};
use crate::port::{Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use crate::stats::PortStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use xfwd_mempool::{InFlight, Mbuf, MbufBatch, MbufPool};

/// Chunk size the kernel is told (the buffer part of each pool object).
pub(super) const CHUNK: u32 = 2048;

/// UMEMs by memory base: ports over the same pool share one.
fn umems() -> &'static Mutex<HashMap<usize, Weak<Umem>>> {
    static U: OnceLock<Mutex<HashMap<usize, Weak<Umem>>>> = OnceLock::new();
    U.get_or_init(Default::default)
}

/// Port-wide counters the queues add to (named xstats).
#[derive(Debug, Default)]
pub(super) struct Xstats {
    pub(super) tx_copies: AtomicU64,
    pub(super) tx_kicks: AtomicU64,
    pub(super) rx_fill_posted: AtomicU64,
    pub(super) kernel_rx_dropped: AtomicU64,
    pub(super) kernel_rx_ring_full: AtomicU64,
    pub(super) kernel_fill_empty: AtomicU64,
    /// TX frames the kernel never took when the device vanished.
    pub(super) tx_revoked: AtomicU64,
    /// Kicks refused for another reason than busy, down or gone.
    pub(super) kick_errors: AtomicU64,
}

#[inline]
pub(super) fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Mbufs a socket's halves handed to the kernel; back to their pool once
/// both halves have closed (and with them the socket).
#[derive(Debug, Default)]
pub(super) struct Reclaim {
    objs: Mutex<Vec<Mbuf>>,
    closed: AtomicU8,
}

impl Reclaim {
    /// One half has dropped its rings (its `xsk`): park what `posted` still
    /// holds. When this was the second half the socket is closed (the kernel
    /// unbound it and no longer uses the buffers), so they go back now: at
    /// stop, or mid-run when the device vanished.
    pub(super) fn close(&self, posted: &mut InFlight) {
        let mut objs = self.objs.lock().unwrap_or_else(|p| p.into_inner());
        posted.drain_into(&mut objs);
        if self.closed.fetch_add(1, Ordering::AcqRel) + 1 >= 2 {
            objs.clear();
        }
    }
}
/// An AF_XDP port.
#[derive(Debug)]
pub struct AfXdpPort {
    core: PortCore,
    args: Args,
    watch: LinkWatch,
    mac: [u8; 6],
    mtu: u32,
    max_queues: u16,
    devargs: String,
    umem: Option<Arc<Umem>>,
    xdp: Option<XdpRedirect>,
    zero_copy: bool,
    xstats: Arc<Xstats>,
}

impl AfXdpPort {
    /// Probe from devargs (in the calling thread's network namespace).
    ///
    /// # Errors
    /// Unknown keys, bad values, an interface that does not exist.
    pub fn probe(d: &Devargs) -> Result<AfXdpPort, PortError> {
        let iface = Args::iface(d)?;
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        let watch =
            LinkWatch::open(&iface).map_err(|e| bad(format!("interface `{iface}`: {e}")))?;
        let mtu = netdev::mtu(&iface).map_err(|e| bad(format!("interface `{iface}`: {e}")))?;
        let mac = netdev::mac(&iface).unwrap_or([0; 6]);
        let max_queues = netdev::queues(&iface)
            .map(|q| q.rx.clamp(1, 64) as u16)
            .unwrap_or(1);
        let args = Args::parse(d, iface)?;
        Ok(AfXdpPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::Umem))),
            args,
            watch,
            mac,
            mtu,
            max_queues,
            devargs: d.raw.clone(),
            umem: None,
            xdp: None,
            zero_copy: false,
            xstats: Arc::default(),
        })
    }

    fn cfg_err(&self, what: &'static str, value: String, accepted: String) -> PortError {
        PortError::Config {
            port: self.devargs.clone(),
            what,
            value,
            accepted,
        }
    }

    /// The UMEM over `pool`'s memory (shared with every port over it).
    fn umem_for(&self, pool: &MbufPool) -> Result<Arc<Umem>, PortError> {
        let mem = pool.mem();
        let mut map = umems().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(u) = map.get(&mem.va()).and_then(Weak::upgrade) {
            return Ok(u);
        }
        // The UMEM keeps the pool's memory mapped for as long as it lives.
        let u = Umem::over_mem(mem.clone(), CHUNK, 0)
            .map_err(|e| self.cfg_err("umem", e.to_string(), "see the message".into()))?;
        map.insert(mem.va(), Arc::downgrade(&u));
        Ok(u)
    }
}

impl Port for AfXdpPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "af_xdp",
            devargs: self.devargs.clone(),
            mac: self.mac,
            max_rx_queues: self.max_queues,
            max_tx_queues: self.max_queues,
            max_rx_desc: 4096,
            max_tx_desc: 4096,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: self.mtu.min(u16::MAX as u32) as u16,
            zero_copy: self.zero_copy,
            mapping: MappingKind::Umem,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        if conf.rx_queues != self.args.queues || conf.tx_queues != self.args.queues {
            return Err(self.cfg_err(
                "queues",
                format!("rx {} / tx {}", conf.rx_queues, conf.tx_queues),
                format!(
                    "{} (the devargs `queues=`), one socket per queue pair",
                    self.args.queues
                ),
            ));
        }
        self.core.configure(conf, &info)?;
        let pool = conf.pool(0).expect("checked");
        for q in 0..conf.rx_queues as usize {
            let p = conf.pool(q).expect("checked");
            if p.mem().va() != pool.mem().va() {
                return Err(self.cfg_err(
                    "pools",
                    format!("queue {q} uses pool `{}`", p.name()),
                    "one pool (one UMEM) for all queues of an af_xdp port".into(),
                ));
            }
        }
        let c = pool.config();
        let buf = c.headroom as u32 + c.data_room as u32;
        if buf < CHUNK {
            return Err(self.cfg_err(
                "mbuf size",
                format!(
                    "headroom {} + data room {} = {buf}",
                    c.headroom, c.data_room
                ),
                format!("at least {CHUNK} bytes per buffer (the UMEM chunk)"),
            ));
        }
        let frame = self.mtu + 18;
        if frame > CHUNK - XDP_PACKET_HEADROOM {
            return Err(self.cfg_err(
                "MTU",
                self.mtu.to_string(),
                format!(
                    "at most {} for a {CHUNK}-byte chunk with {XDP_PACKET_HEADROOM} bytes of XDP headroom",
                    CHUNK - XDP_PACKET_HEADROOM - 18
                ),
            ));
        }
        if self.args.mode == XdpMode::Drv && self.mtu >= 3520 {
            return Err(self.cfg_err(
                "mode",
                "drv".into(),
                format!(
                    "skb on this interface (native XDP on veth fails when the MTU {} ≥ 3520)",
                    self.mtu
                ),
            ));
        }
        self.umem = Some(self.umem_for(pool)?);
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let conf = self.core.start()?;
        let r = self.start_queues(&conf);
        if r.is_err() {
            self.xdp = None;
            let _ = self.core.stop();
        }
        r
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()?;
        // Queue halves are gone: their sockets are closed and their buffers
        // back in the pool. Detach the program (the BPF link).
        self.xdp = None;
        Ok(())
    }

    fn link(&self) -> Link {
        self.watch.poll(&self.devargs)
    }

    fn stats(&self) -> PortStats {
        let mut s = self.core.counters.read();
        s.imissed = self.xstats.kernel_rx_dropped.load(Ordering::Relaxed)
            + self.xstats.kernel_rx_ring_full.load(Ordering::Relaxed);
        s
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let x = &self.xstats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("zero_copy".into(), self.zero_copy as u64),
            ("tx_copies".into(), g(&x.tx_copies)),
            ("tx_kicks".into(), g(&x.tx_kicks)),
            ("rx_fill_posted".into(), g(&x.rx_fill_posted)),
            ("kernel_rx_dropped".into(), g(&x.kernel_rx_dropped)),
            ("kernel_rx_ring_full".into(), g(&x.kernel_rx_ring_full)),
            ("kernel_fill_ring_empty".into(), g(&x.kernel_fill_empty)),
            ("tx_revoked".into(), g(&x.tx_revoked)),
            ("tx_kick_errors".into(), g(&x.kick_errors)),
            ("link_up".into(), self.watch.state().is_up() as u64),
            (
                "link_lost".into(),
                (self.watch.state().get() == LinkCondition::Lost) as u64,
            ),
        ]
    }
}

impl AfXdpPort {
    fn start_queues(&mut self, conf: &PortConf) -> Result<PortQueues, PortError> {
        let io = |what: String, e: super::XdpError| PortError::Io {
            port: self.devargs.clone(),
            what,
            source: std::io::Error::other(e.to_string()),
        };
        let umem = self
            .umem
            .clone()
            .ok_or_else(|| self.core.state("not configured"))?;
        let ifindex = self.watch.ifindex();
        self.link(); // read the device now
        if self.watch.state().get() == LinkCondition::Lost {
            return Err(PortError::Io {
                port: self.devargs.clone(),
                what: format!("start on {}", self.args.iface),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("interface {} (index {ifindex}) is gone", self.args.iface),
                ),
            });
        }
        let link: Arc<LinkState> = self.watch.state().clone();
        let xdp = XdpRedirect::attach(ifindex, self.args.queues as u32, self.args.mode)
            .map_err(|e| io(format!("attach XDP program to {}", self.args.iface), e))?;
        let pool = conf.pool(0).expect("checked").clone();
        let cap = pool.capacity();
        let base = umem.config().base;
        let mut out = PortQueues::default();
        let mut zc = true;
        for q in 0..self.args.queues as usize {
            let xcfg = XskConfig {
                rx_size: conf.rx_desc.next_power_of_two() as u32,
                tx_size: conf.tx_desc.next_power_of_two() as u32,
                fill_size: 2 * conf.rx_desc.next_power_of_two() as u32,
                comp_size: conf.tx_desc.next_power_of_two() as u32,
                mode: self.args.bind,
                need_wakeup: self.args.need_wakeup,
                busy_poll: self.args.busy_poll,
            };
            let sock = XskSocket::bind(&umem, ifindex, q as u32, &xcfg).map_err(|e| {
                io(
                    format!("bind AF_XDP socket to {} queue {q}", self.args.iface),
                    e,
                )
            })?;
            zc &= sock.info().zero_copy;
            xdp.map()
                .insert(q as u32, sock.as_raw_fd())
                .map_err(|e| io(format!("XSKMAP insert queue {q}"), e))?;
            let (rx, tx) = sock.split();
            let reclaim = Arc::new(Reclaim::default());
            let mut rxq = XdpRx {
                xsk: Some(rx),
                pool: conf.pool(q).expect("checked").clone(),
                base,
                posted: InFlight::new(cap),
                want_fill: conf.rx_desc as usize,
                scratch: MbufBatch::new(xfwd_mempool::MAX_BURST),
                port: 0,
                polls: 0,
                counters: self.core.counters.rx[q].clone(),
                xstats: self.xstats.clone(),
                reclaim: reclaim.clone(),
                link: link.clone(),
                _token: self.core.token(),
            };
            // The first fill comes from a temporary cache: this is the
            // control thread, which must not keep an lcore cache of the pool.
            rxq.refill_from(&mut pool.cache());
            out.rx.push(Box::new(rxq));
            out.tx.push(Box::new(XdpTx {
                xsk: Some(tx),
                pool: pool.clone(),
                base,
                len: umem.config().len,
                posted: InFlight::new(cap),
                descs: vec![
                    XdpDesc {
                        addr: 0,
                        len: 0,
                        options: 0
                    };
                    xfwd_mempool::MAX_BURST
                ]
                .into_boxed_slice(),
                comp: vec![0u64; xfwd_mempool::MAX_BURST].into_boxed_slice(),
                kick_batch: self.args.tx_kick_batch,
                counters: self.core.counters.tx[q].clone(),
                xstats: self.xstats.clone(),
                reclaim,
                link: link.clone(),
                _token: self.core.token(),
            }));
        }
        self.zero_copy = zc;
        log::info!(
            "{}: {} queue(s) on {} (ifindex {}), XDP {:?} mode, {} mode, UMEM {:#x}+{:#x} shared by all ports over pool `{}`",
            self.devargs,
            self.args.queues,
            self.args.iface,
            ifindex,
            self.args.mode,
            if zc { "zero-copy" } else { "copy (the kernel copies frames; veth has no zero-copy)" },
            base,
            umem.config().len,
            pool.name()
        );
        self.xdp = Some(xdp);
        Ok(out)
    }
}
