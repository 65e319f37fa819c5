//! The `af_xdp` port: the external mbuf pool **is** the UMEM.
//!
//! `af_xdp:iface=NAME[,queues=N][,mode=drv|skb][,zero_copy=0|1][,need_wakeup=0|1]
//! [,busy_poll=USECS][,busy_budget=N][,prefer_busy_poll=0|1][,tx_kick_batch=N]`
//!
//! TX kicks are coalesced: in copy mode every `sendto` kick is a syscall
//! (~0.3 µs here) and the kernel sends at most 32 frames per call, so a queue
//! kicks once `tx_kick_batch` (default 32) descriptors wait in its TX ring,
//! when the ring is full, and on [`TxQueue::flush`] (after
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

#![forbid(unsafe_code)]

use super::bpf::{XdpMode, XdpRedirect};
use super::umem::{desc_base, desc_encode, desc_offset, Umem, XDP_PACKET_HEADROOM};
use super::xsk::{BindMode, BusyPoll, XskConfig, XskRx, XskSocket, XskTx};
use super::XdpDesc;
use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::netdev;
use crate::port::{
    Link, Port, PortConf, PortCore, PortInfo, PortQueues, QueueToken, RxQueue, TxQueue,
};
use crate::stats::{PortStats, QueueCounters};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use xfwd_mempool::{InFlight, Mbuf, MbufBatch, MbufPool, MBUF_HEADER_SIZE};

/// Chunk size the kernel is told (the buffer part of each pool object).
const CHUNK: u32 = 2048;

/// UMEMs by memory base: ports over the same pool share one.
fn umems() -> &'static Mutex<HashMap<usize, Weak<Umem>>> {
    static U: OnceLock<Mutex<HashMap<usize, Weak<Umem>>>> = OnceLock::new();
    U.get_or_init(Default::default)
}

/// Port-wide counters the queues add to (named xstats).
#[derive(Debug, Default)]
struct Xstats {
    tx_copies: AtomicU64,
    tx_kicks: AtomicU64,
    rx_fill_posted: AtomicU64,
    kernel_rx_dropped: AtomicU64,
    kernel_rx_ring_full: AtomicU64,
    kernel_fill_empty: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Mbufs a socket's halves handed to the kernel; freed when the last half
/// (and with it the socket) is gone.
#[derive(Debug, Default)]
struct Reclaim {
    objs: Mutex<Vec<Mbuf>>,
}

impl Reclaim {
    /// Park what `posted` still holds until both halves are gone: the socket
    /// is closed then and the kernel no longer uses the buffers.
    fn park(&self, posted: &mut InFlight) {
        posted.drain_into(&mut self.objs.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Devargs of an af_xdp port.
#[derive(Debug, Clone)]
struct Args {
    iface: String,
    queues: u16,
    mode: XdpMode,
    bind: BindMode,
    need_wakeup: bool,
    busy_poll: Option<BusyPoll>,
    tx_kick_batch: usize,
}

/// An AF_XDP port.
#[derive(Debug)]
pub struct AfXdpPort {
    core: PortCore,
    args: Args,
    ifindex: u32,
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
        d.check_keys(&[
            "iface",
            "queues",
            "queue_count",
            "mode",
            "zero_copy",
            "need_wakeup",
            "busy_poll",
            "busy_budget",
            "prefer_busy_poll",
            "tx_kick_batch",
        ])?;
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        let iface = d
            .get("iface")
            .or(d.name.as_deref())
            .ok_or_else(|| bad("an af_xdp port needs `iface=NAME`".into()))?
            .to_string();
        let ifindex =
            netdev::ifindex(&iface).map_err(|e| bad(format!("interface `{iface}`: {e}")))?;
        let mtu = netdev::mtu(&iface).map_err(|e| bad(format!("interface `{iface}`: {e}")))?;
        let mac = netdev::mac(&iface).unwrap_or([0; 6]);
        let max_queues = netdev::queues(&iface)
            .map(|q| q.rx.clamp(1, 64) as u16)
            .unwrap_or(1);
        let queues = match d.get("queue_count") {
            Some(_) => d.num("queue_count", 1u16, 1..=64)?,
            None => d.num("queues", 1u16, 1..=64)?,
        };
        let mode = match d.get("mode").unwrap_or("drv") {
            "drv" | "native" => XdpMode::Drv,
            "skb" | "generic" => XdpMode::Skb,
            m => return Err(bad(format!("`mode={m}`: expected drv or skb"))),
        };
        let bind = match d.get("zero_copy") {
            None => BindMode::Auto,
            Some(_) if d.flag("zero_copy", false)? => BindMode::ZeroCopy,
            Some(_) => BindMode::Copy,
        };
        let busy = d.num("busy_poll", 0u32, 0..=1_000_000)?;
        let busy_poll = if busy > 0 {
            Some(BusyPoll {
                usecs: busy,
                budget: d.num("busy_budget", 64u32, 1..=65535)?,
                prefer: d.flag("prefer_busy_poll", true)?,
            })
        } else {
            None
        };
        Ok(AfXdpPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::Umem))),
            args: Args {
                iface,
                queues,
                mode,
                bind,
                need_wakeup: d.flag("need_wakeup", true)?,
                busy_poll,
                tx_kick_batch: d.num("tx_kick_batch", 32usize, 1..=4096)?,
            },
            ifindex,
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
        Link {
            up: netdev::ifindex(&self.args.iface).is_ok(),
            speed_mbps: 0,
        }
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
        let xdp = XdpRedirect::attach(self.ifindex, self.args.queues as u32, self.args.mode)
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
            let sock = XskSocket::bind(&umem, self.ifindex, q as u32, &xcfg).map_err(|e| {
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
                _token: self.core.token(),
            }));
        }
        self.zero_copy = zc;
        log::info!(
            "{}: {} queue(s) on {} (ifindex {}), XDP {:?} mode, {} mode, UMEM {:#x}+{:#x} shared by all ports over pool `{}`",
            self.devargs,
            self.args.queues,
            self.args.iface,
            self.ifindex,
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

/// Receive half of one queue.
struct XdpRx {
    xsk: Option<XskRx>,
    pool: MbufPool,
    base: usize,
    posted: InFlight,
    want_fill: usize,
    scratch: MbufBatch,
    port: u16,
    polls: u32,
    counters: Arc<QueueCounters>,
    xstats: Arc<Xstats>,
    reclaim: Arc<Reclaim>,
    _token: QueueToken,
}

impl fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XdpRx(in kernel {})", self.posted.len())
    }
}

impl XdpRx {
    /// Top the fill ring up to `want_fill` buffers from the pool.
    #[inline]
    fn refill(&mut self) {
        if self.posted.len() >= self.want_fill {
            return;
        }
        // One Arc clone per refilling burst (not per packet) to lend the pool
        // to the lcore-cache closure while self is borrowed mutably.
        let pool = self.pool.clone();
        pool.with_lcore_cache(|c| self.refill_from(c));
    }

    /// Top the fill ring up from `cache` (the lcore's, or a temporary one at
    /// start so the control thread keeps no cache of the pool).
    #[inline]
    fn refill_from(&mut self, cache: &mut xfwd_mempool::PoolCache) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        let want = self
            .want_fill
            .saturating_sub(self.posted.len())
            .min(self.scratch.limit());
        if want == 0 {
            return;
        }
        let n = want.min(xsk.fill.free());
        if n == 0 || cache.alloc_bulk_raw(&mut self.scratch, n).is_err() {
            self.counters.add_nombuf(n as u64);
            return;
        }
        let (base, posted, scratch) = (self.base, &mut self.posted, &mut self.scratch);
        let mut drained = scratch.drain();
        let done = xsk.fill.produce_with(n, |_| {
            let m = drained.next().expect("n allocated");
            let hdr = posted.park(m);
            (hdr + MBUF_HEADER_SIZE - base) as u64
        });
        debug_assert_eq!(done, n);
        drop(drained);
        bump(&self.xstats.rx_fill_posted, n as u64);
        if xsk.fill.needs_wakeup() {
            let _ = xsk.wakeup();
        }
    }
}

impl RxQueue for XdpRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let Some(xsk) = self.xsk.as_mut() else {
            return 0;
        };
        let room = out.room();
        let (base, posted, port, pool) = (self.base, &mut self.posted, self.port, &self.pool);
        let mut bytes = 0u64;
        let mut bad = 0u64;
        let n = xsk.rx.consume_with(room, |_, d| {
            let hdr = base + desc_base(d.addr) as usize - MBUF_HEADER_SIZE;
            match posted.take(pool, hdr) {
                Some(mut m) => {
                    if m.set_data_range(desc_offset(d.addr) as usize, d.len as usize)
                        .is_ok()
                    {
                        m.set_port(port);
                        // The kernel wrote this frame from another core: start
                        // pulling it in now, for the whole burst at once, so the
                        // misses overlap instead of stalling whoever reads it
                        // next (the forward loop, or the TX copy in sendto).
                        m.prefetch_data();
                        bytes += d.len as u64;
                        let _ = out.push(m);
                    } else {
                        bad += 1;
                    }
                }
                None => bad += 1,
            }
        });
        self.counters.add((n as u64) - bad, bytes);
        self.counters.add_errors(bad);
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(4096) {
            if let Ok(s) = xsk.stats() {
                self.xstats
                    .kernel_rx_dropped
                    .store(s.rx_dropped, Ordering::Relaxed);
                self.xstats
                    .kernel_rx_ring_full
                    .store(s.rx_ring_full, Ordering::Relaxed);
                self.xstats
                    .kernel_fill_empty
                    .store(s.rx_fill_ring_empty_descs, Ordering::Relaxed);
            }
        }
        self.refill();
        n - bad as usize
    }
}

impl Drop for XdpRx {
    fn drop(&mut self) {
        // Rings first (the socket closes when the TX half is gone too), then
        // park the buffers the kernel may still hold until it is closed.
        self.xsk = None;
        self.reclaim.park(&mut self.posted);
    }
}

/// Transmit half of one queue.
struct XdpTx {
    xsk: Option<XskTx>,
    pool: MbufPool,
    base: usize,
    len: usize,
    posted: InFlight,
    descs: Box<[XdpDesc]>,
    comp: Box<[u64]>,
    /// Kick once this many descriptors wait in the TX ring.
    kick_batch: usize,
    counters: Arc<QueueCounters>,
    xstats: Arc<Xstats>,
    reclaim: Arc<Reclaim>,
    _token: QueueToken,
}

impl fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XdpTx(in kernel {})", self.posted.len())
    }
}

impl XdpTx {
    /// Free what the kernel finished sending.
    #[inline]
    fn complete(&mut self) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        loop {
            let n = xsk.comp.consume(&mut self.comp);
            if n == 0 {
                return;
            }
            let (base, comp, posted, pool) = (self.base, &self.comp, &mut self.posted, &self.pool);
            pool.with_lcore_cache(|c| {
                for &a in &comp[..n] {
                    let hdr = base + desc_base(a) as usize - MBUF_HEADER_SIZE;
                    if let Some(m) = posted.take(pool, hdr) {
                        c.free(m);
                    }
                }
            });
        }
    }

    /// One `sendto`: the kernel sends what waits in the TX ring (up to 32
    /// frames per call in copy mode; the rest go with the next kick).
    #[inline]
    fn kick(&mut self) {
        if let Some(xsk) = self.xsk.as_ref() {
            let _ = xsk.kick();
            bump(&self.xstats.tx_kicks, 1);
        }
    }

    /// A UMEM mbuf with a copy of `m`'s data (for foreign or chained mbufs).
    #[cold]
    fn copy_into_umem(&mut self, m: &Mbuf) -> Option<Mbuf> {
        let mut c = self.pool.with_lcore_cache(|c| c.alloc())?;
        let len = m.pkt_len();
        let dst = c.append(len).ok()?;
        let mut off = 0;
        for s in m.segments() {
            dst[off..off + s.len()].copy_from_slice(s);
            off += s.len();
        }
        bump(&self.xstats.tx_copies, 1);
        Some(c)
    }
}

impl TxQueue for XdpTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        self.complete();
        let Some(xsk) = self.xsk.as_mut() else {
            return 0;
        };
        if pkts.is_empty() {
            return 0;
        }
        let n = pkts.len().min(xsk.tx.free());
        if n == 0 {
            self.kick();
            return 0;
        }
        let (base, len) = (self.base, self.len);
        let mut bytes = 0u64;
        let mut sent = 0usize;
        let mut copied_out = 0usize;
        let mut tmp = Vec::new();
        pkts.consume_front(n, |m| {
            let buf = m.buf_addr() as usize;
            let inside = buf >= base && buf + m.buf_len() <= base + len;
            let m = if inside && m.nb_segs() == 1 && self.pool.owns(&m) {
                m
            } else {
                tmp.push(m);
                copied_out += 1;
                return;
            };
            bytes += m.data_len() as u64;
            let off = (buf - base) as u64;
            let d = m.data_off() as u64;
            let l = m.data_len() as u32;
            self.posted.park(m);
            self.descs[sent] = XdpDesc {
                addr: desc_encode(off, d),
                len: l,
                options: 0,
            };
            sent += 1;
        });
        // Foreign or chained mbufs: copy into the UMEM (counted), rare path.
        for m in tmp.drain(..) {
            match self.copy_into_umem(&m) {
                Some(c) => {
                    let off = (c.buf_addr() as usize - base) as u64;
                    bytes += c.data_len() as u64;
                    self.descs[sent] = XdpDesc {
                        addr: desc_encode(off, c.data_off() as u64),
                        len: c.data_len() as u32,
                        options: 0,
                    };
                    self.posted.park(c);
                    sent += 1;
                }
                None => self.counters.add_errors(1),
            }
        }
        if let Some(xsk) = self.xsk.as_mut() {
            let posted = xsk.tx.produce(&self.descs[..sent]);
            debug_assert_eq!(posted, sent);
            if xsk.tx.outstanding() >= self.kick_batch {
                self.kick();
            }
        }
        self.counters.add(sent as u64, bytes);
        n
    }

    #[inline]
    fn flush(&mut self) {
        if self.xsk.as_ref().is_some_and(|x| x.tx.outstanding() > 0) {
            self.kick();
        }
    }
}

impl Drop for XdpTx {
    fn drop(&mut self) {
        // Let the kernel finish what it can, then park the rest.
        if let Some(x) = self.xsk.as_mut() {
            let _ = x.flush(64);
        }
        self.complete();
        self.xsk = None;
        self.reclaim.park(&mut self.posted);
    }
}
