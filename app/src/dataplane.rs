//! Bring-up and tear-down of the data plane, in the one order that is safe:
//!
//! ```text
//! up:   ExtMem::alloc → Registry::register_mem → MbufPool::create
//!       → per port: dma_map each IOVA-contiguous chunk → configure → start
//!       → hand each lcore its queues and a PoolCache
//! down: (workers joined: queues and caches dropped) → port.stop
//!       → dma_unmap exactly the chunks mapped → leak audit → drop ports and pool
//!       → Registry::unregister → drop ExtMem
//! ```

use crate::counters::{LcoreCounters, StreamCounters};
use crate::error::RunError;
use crate::fwd::txgen::Generator;
use crate::fwd::FwdMode;
use crate::plan::{Plan, QueueRef};
use crate::worker::{StartGate, Stream, Worker};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xfwd_mempool::{ExtMem, LeakError, MbufPool, PoolStats, RegionId, Registry};
use xfwd_pmd::dma::{iova_chunks, DmaRange, MapInfo};
use xfwd_pmd::{Port, PortConf, PortInfo, RxQueue, TxQueue};

/// The queue handles of a started port, taken one by one by the lcores.
type PortQueueSlots = (Vec<Option<Box<dyn RxQueue>>>, Vec<Option<Box<dyn TxQueue>>>);

/// Move queue `q` out of its port's `slots` (the RX or the TX list) into a
/// worker's list `to` and note it in `refs`; its index in `to`. Validation
/// gave every queue exactly one owner, so the slot is full.
fn hand_over<H>(
    slots: Option<&mut Vec<Option<H>>>,
    q: QueueRef,
    to: &mut Vec<H>,
    refs: &mut Vec<QueueRef>,
    side: &str,
) -> usize {
    let h = slots.and_then(|s| s[q.queue as usize].take());
    to.push(h.unwrap_or_else(|| panic!("validated: each {side} queue has one owner")));
    refs.push(q);
    to.len() - 1
}

/// A started port and the chunks it mapped.
#[derive(Debug)]
pub struct RunPort {
    /// Port id.
    pub id: u16,
    /// The port.
    pub port: Box<dyn Port>,
    /// Its capabilities.
    pub info: PortInfo,
    /// Its peer MAC.
    pub peer_mac: [u8; 6],
    /// Chunks mapped with `dma_map` (unmapped exactly at tear-down).
    pub chunks: Vec<DmaRange>,
    /// What each map call reported.
    pub maps: Vec<MapInfo>,
    started: bool,
}

impl RunPort {
    /// False after `port stop` (until `port start`).
    pub fn started(&self) -> bool {
        self.started
    }
}

/// A stream as the stats see it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Lcore.
    pub cpu: u32,
    /// Mode.
    pub mode: FwdMode,
    /// RX queue.
    pub rx: Option<QueueRef>,
    /// TX queue.
    pub tx: Option<QueueRef>,
    /// Counters.
    pub counters: Arc<StreamCounters>,
}

/// An lcore as the stats see it.
#[derive(Debug, Clone)]
pub struct LcoreInfo {
    /// CPU.
    pub cpu: u32,
    /// Mode.
    pub mode: FwdMode,
    /// Counters.
    pub counters: Arc<LcoreCounters>,
    /// Its run-time command channel.
    pub ctl: Arc<crate::control::lcore::LcoreCtl>,
    /// The port queue behind each of its RX queue indexes.
    pub rxqs: Vec<QueueRef>,
    /// The port queue behind each of its TX queue indexes.
    pub txqs: Vec<QueueRef>,
}

/// How long start-up waits for peer-dependent links (memif).
pub const LINK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The running data plane (owned by the main thread).
#[derive(Debug)]
pub struct Dataplane {
    ports: Vec<RunPort>,
    streams: Vec<StreamInfo>,
    lcores: Vec<LcoreInfo>,
    memory: String,
    /// l3fwd: the router's tables (telemetry updates them).
    l3fwd: Option<Arc<crate::fwd::l3fwd::Shared>>,
    pool: Option<MbufPool>,
    registry: Registry,
    region: Option<RegionId>,
    mem: Option<Arc<ExtMem>>,
    vfio_iovas: Option<(u64, u64)>,
    spare_rx: Vec<(QueueRef, Box<dyn RxQueue>)>,
    spare_tx: Vec<(QueueRef, Box<dyn TxQueue>)>,
}

/// The new queue handles of a port started again, by queue number (taken
/// out by their lcores' owners; what no stream uses stays in the data plane).
pub type Restarted = PortQueueSlots;

/// What tear-down found.
#[derive(Debug)]
pub struct Teardown {
    /// Pool stats after every mbuf came back (or not).
    pub pool: Option<PoolStats>,
    /// The leak audit.
    pub leak: Result<(), LeakError>,
    /// Errors on the way down (stop, unmap, unregister), already logged.
    pub errors: Vec<String>,
}

impl Teardown {
    /// Mbufs not returned.
    pub fn leaked(&self) -> usize {
        self.leak.as_ref().err().map_or(0, |e| e.in_use)
    }
}

impl Dataplane {
    /// Allocate memory, create the pool, map, configure and start the ports,
    /// and build the workers (not yet running). On failure everything done
    /// so far is undone.
    ///
    /// # Errors
    /// [`RunError`] from the step that failed.
    pub fn setup(plan: Plan, stop: &Arc<AtomicBool>) -> Result<(Dataplane, Vec<Worker>), RunError> {
        let mut dp = Dataplane {
            ports: Vec::new(),
            streams: Vec::new(),
            lcores: Vec::new(),
            memory: format!(
                "{} {} pages{}",
                plan.mem.backing.name(),
                plan.mem.page_size,
                if plan.mem.backing == xfwd_mempool::Backing::Heap {
                    " (no hugepages: --no-huge)"
                } else {
                    ""
                }
            ),
            l3fwd: plan.l3fwd.clone(),
            pool: None,
            registry: Registry::new(),
            region: None,
            mem: None,
            vfio_iovas: None,
            spare_rx: Vec::new(),
            spare_tx: Vec::new(),
        };
        match dp.bring_up(plan, stop) {
            Ok(w) => Ok((dp, w)),
            Err(e) => {
                let _ = dp.teardown();
                Err(e)
            }
        }
    }

    /// Like testpmd's link check: give ports whose link depends on a peer
    /// (memif) up to [`LINK_WAIT`] to come up before forwarding starts.
    fn wait_links(&self, stop: &Arc<AtomicBool>) {
        let waits: Vec<&RunPort> = self
            .ports
            .iter()
            .filter(|p| p.info.driver == "memif")
            .collect();
        if waits.is_empty() {
            return;
        }
        let deadline = std::time::Instant::now() + LINK_WAIT;
        loop {
            let down: Vec<String> = waits
                .iter()
                .filter(|p| !p.port.link().up)
                .map(|p| format!("port{}", p.id))
                .collect();
            if down.is_empty() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if std::time::Instant::now() > deadline {
                log::warn!(
                    "{} link still down after {LINK_WAIT:?} (no memif peer yet): forwarding starts anyway; \
                     packets sent before the peer connects are not accepted",
                    down.join(", ")
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn bring_up(&mut self, plan: Plan, stop: &Arc<AtomicBool>) -> Result<Vec<Worker>, RunError> {
        // Memory, registration, pool.
        let mut mem = ExtMem::alloc(&plan.mem)?;
        // With a vfio port the device sees IOVAs from the VFIO container's
        // allocator, never the VA: assign them before registering.
        if let Some(base) = xfwd_pmd::vfio::prepare_memory(&mut mem)? {
            self.vfio_iovas = Some((base, mem.len() as u64));
        }
        let mem = Arc::new(mem);
        self.mem = Some(mem.clone());
        let region = self.registry.register_mem(&mem)?;
        self.region = Some(region);
        let pool = MbufPool::create(&plan.pool, mem, &self.registry)?;
        self.pool = Some(pool.clone());
        let info = self.registry.get(region)?;
        let chunks = iova_chunks(info.va as u64, info.page_size.bytes() as u64, &info.iovas);

        // Ports: map every chunk, configure, start.
        let mut queues: HashMap<u16, PortQueueSlots> = HashMap::new();
        for p in plan.ports {
            let (rxd, txd) = (p.rxd, p.txd);
            self.ports.push(RunPort {
                id: p.id,
                port: p.port,
                info: p.info,
                peer_mac: p.peer_mac,
                chunks: Vec::new(),
                maps: Vec::new(),
                started: false,
            });
            let rp = self.ports.last_mut().expect("just pushed");
            for c in &chunks {
                let m = rp.port.dma_map(c.va, c.iova, c.len)?;
                rp.chunks.push(*c);
                rp.maps.push(m);
            }
            rp.port.configure(&PortConf {
                rx_queues: plan.rxq,
                tx_queues: plan.txq,
                rx_desc: rxd,
                tx_desc: txd,
                pools: vec![pool.clone()],
            })?;
            let q = rp.port.start()?;
            rp.started = true;
            queues.insert(
                rp.id,
                (
                    q.rx.into_iter().map(Some).collect(),
                    q.tx.into_iter().map(Some).collect(),
                ),
            );
        }
        self.wait_links(stop);

        // Workers: each takes its queues (exactly one owner per queue).
        let mut workers = Vec::new();
        let gate = StartGate::new(plan.lcores.len());
        for l in &plan.lcores {
            let counters = Arc::new(LcoreCounters::default());
            let ctl = Arc::new(crate::control::lcore::LcoreCtl::default());
            let mut w = Worker {
                cpu: l.cpu,
                mode: l.mode,
                rxqs: Vec::new(),
                txqs: Vec::new(),
                streams: Vec::new(),
                cache: pool.cache(),
                burst: plan.burst,
                tx_retry: plan.tx_retry,
                idle_sleep_ns: if l.mode.generates() {
                    0
                } else {
                    plan.idle_sleep_ns
                },
                latency: plan.latency,
                counters: counters.clone(),
                stop: stop.clone(),
                pin: true,
                gate: gate.clone(),
                l3: None,
                ctl: ctl.clone(),
            };
            let mut tx_idx: HashMap<QueueRef, usize> = HashMap::new();
            let (mut rx_refs, mut tx_refs) = (Vec::new(), Vec::new());
            for s in &l.streams {
                let rx = s.rx.map(|q| {
                    let slots = queues.get_mut(&q.port).map(|e| &mut e.0);
                    hand_over(slots, q, &mut w.rxqs, &mut rx_refs, "RX")
                });
                let tx = s.tx.map(|q| {
                    *tx_idx.entry(q).or_insert_with(|| {
                        let slots = queues.get_mut(&q.port).map(|e| &mut e.1);
                        hand_over(slots, q, &mut w.txqs, &mut tx_refs, "TX")
                    })
                });
                let txp =
                    s.tx.and_then(|q| self.ports.iter().find(|p| p.id == q.port));
                let (tx_mac, peer_mac) = txp.map_or(([0; 6], [0; 6]), |p| (p.info.mac, p.peer_mac));
                let gen = (l.mode.generates() && tx.is_some()).then(|| {
                    Generator::new(&plan.gen, &tx_mac, &peer_mac, l.mode == FwdMode::FlowGen)
                });
                let first = (plan.tx_first && !l.mode.generates() && tx.is_some())
                    .then(|| Generator::new(&plan.gen, &tx_mac, &peer_mac, false));
                let sc = Arc::new(StreamCounters::default());
                self.streams.push(StreamInfo {
                    cpu: l.cpu,
                    mode: l.mode,
                    rx: s.rx,
                    tx: s.tx,
                    counters: sc.clone(),
                });
                w.streams.push(Stream {
                    rx,
                    tx,
                    tx_mac,
                    peer_mac,
                    gen,
                    first,
                    counters: sc,
                    enabled: true,
                    tap: None,
                });
            }
            if let (FwdMode::L3fwd, Some(sh)) = (l.mode, &self.l3fwd) {
                let max = self.ports.iter().map(|p| p.id).max().unwrap_or(0);
                let mut tx_of_port = vec![None; usize::from(max) + 1];
                let mut rx_streams = Vec::new();
                for (si, (sp, st)) in l.streams.iter().zip(&w.streams).enumerate() {
                    if st.rx.is_some() {
                        rx_streams.push(si);
                    }
                    if let (Some(q), Some(t)) = (sp.tx, st.tx) {
                        tx_of_port[usize::from(q.port)] = Some((t, si));
                    }
                }
                w.l3 = Some(crate::fwd::l3fwd::Lcore::new(
                    sh.reader(),
                    rx_streams,
                    tx_of_port,
                    plan.burst,
                ));
            }
            self.lcores.push(LcoreInfo {
                cpu: l.cpu,
                mode: l.mode,
                counters,
                ctl,
                rxqs: rx_refs,
                txqs: tx_refs,
            });
            workers.push(w);
        }
        // Queues no stream uses stay here until tear-down.
        for (port, slots) in queues {
            self.keep_spare(port, slots);
        }
        Ok(workers)
    }

    fn keep_spare(&mut self, port: u16, (rx, tx): PortQueueSlots) {
        let r = |i: usize| QueueRef {
            port,
            queue: i as u16,
        };
        for (i, q) in rx.into_iter().enumerate() {
            self.spare_rx.extend(q.map(|q| (r(i), q)));
        }
        for (i, q) in tx.into_iter().enumerate() {
            self.spare_tx.extend(q.map(|q| (r(i), q)));
        }
    }

    /// `port stop N`, once the lcores gave port `id`'s queue handles back:
    /// drop the unused ones and stop the driver (every mbuf it held goes
    /// back to the pool; the DMA mappings stay).
    ///
    /// # Errors
    /// The driver's refusal (a queue handle still held, a write error).
    pub fn stop_port(&mut self, id: u16) -> Result<(), String> {
        self.spare_rx.retain(|(q, _)| q.port != id);
        self.spare_tx.retain(|(q, _)| q.port != id);
        let p = self.port_mut(id)?;
        if !p.started {
            return Err(format!("port {id} is already stopped"));
        }
        p.port.stop().map_err(|e| format!("port {id}: {e}"))?;
        p.started = false;
        Ok(())
    }

    /// `port start N`: start port `id`'s driver again; its queue handles by
    /// queue number, for the lcores to take (call [`Dataplane::keep_unused`]
    /// with what is left).
    ///
    /// # Errors
    /// The driver's refusal.
    pub fn start_port(&mut self, id: u16) -> Result<Restarted, String> {
        let p = self.port_mut(id)?;
        if p.started {
            return Err(format!("port {id} is already started"));
        }
        let q = p.port.start().map_err(|e| format!("port {id}: {e}"))?;
        p.started = true;
        Ok((
            q.rx.into_iter().map(Some).collect(),
            q.tx.into_iter().map(Some).collect(),
        ))
    }

    /// The handles of a restarted port that no lcore took.
    pub fn keep_unused(&mut self, id: u16, left: Restarted) {
        self.keep_spare(id, left);
    }

    /// testpmd's `port config`: change port `id`'s configuration (stopped
    /// ports only); the next `port start` uses it.
    ///
    /// # Errors
    /// The port is started, or the driver refused the configuration.
    pub fn reconfigure_port(
        &mut self,
        id: u16,
        change: impl FnOnce(&mut PortConf),
    ) -> Result<(), String> {
        let p = self.port_mut(id)?;
        if p.started {
            return Err(format!("port {id} must be stopped first: `port stop {id}`"));
        }
        let mut conf = p
            .port
            .core()
            .conf
            .clone()
            .ok_or_else(|| format!("port {id} is not configured"))?;
        change(&mut conf);
        p.port
            .configure(&conf)
            .map_err(|e| format!("port {id}: {e}"))
    }

    fn port_mut(&mut self, id: u16) -> Result<&mut RunPort, String> {
        self.ports
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("no port {id}"))
    }

    /// What each port mapped (printed at startup: the real IOVAs, keys and
    /// whether the mapping was new or already there).
    pub fn mapping_report(&self) -> String {
        let mut out = String::new();
        for p in &self.ports {
            for m in &p.maps {
                out.push_str(&format!(
                    "  dma    : port{} mapped va {:#x} → iova {:#x}, {} B ({}, {:?}{})\n",
                    p.id,
                    m.range.va,
                    m.range.iova,
                    m.range.len,
                    m.kind,
                    m.origin,
                    m.key.map_or(String::new(), |k| format!(", key {k:#x}"))
                ));
            }
        }
        out
    }

    /// The ports, by position (read-only: stats, telemetry, reports; a
    /// port is stopped and started through [`Dataplane::stop_port`] and
    /// [`Dataplane::start_port`]).
    pub fn ports(&self) -> &[RunPort] {
        &self.ports
    }

    /// Port `id`.
    pub fn port(&self, id: u16) -> Option<&RunPort> {
        self.ports.iter().find(|p| p.id == id)
    }

    /// The streams (an lcore's RX queue → mode → TX queue), as the stats see them.
    pub fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }

    /// The lcores, as the stats see them.
    pub fn lcores(&self) -> &[LcoreInfo] {
        &self.lcores
    }

    /// Backing description for reports (`anon 2M`, `heap (no hugepages)`).
    pub fn memory(&self) -> &str {
        &self.memory
    }

    /// l3fwd: the router's tables (telemetry swaps them; the tables
    /// themselves synchronise the swap with the lcores).
    pub fn l3fwd(&self) -> Option<&Arc<crate::fwd::l3fwd::Shared>> {
        self.l3fwd.as_ref()
    }

    /// The pool (for stats).
    pub fn pool(&self) -> Option<&MbufPool> {
        self.pool.as_ref()
    }

    /// Stop ports, unmap, audit, free — after the workers were joined.
    pub fn teardown(mut self) -> Teardown {
        let mut errors = Vec::new();
        let mut note = |e: String| {
            log::error!("{e}");
            errors.push(e);
        };
        self.spare_rx.clear();
        self.spare_tx.clear();
        for p in &mut self.ports {
            if p.started {
                match p.port.stop() {
                    Ok(()) => p.started = false,
                    Err(e) => note(format!("stop port{}: {e}", p.id)),
                }
            }
        }
        for p in &mut self.ports {
            if p.started {
                continue; // a started port may still DMA: never unmap under it
            }
            for c in std::mem::take(&mut p.chunks) {
                if let Err(e) = p.port.dma_unmap(c.va, c.iova, c.len) {
                    note(format!(
                        "dma_unmap port{} {:#x}+{:#x}: {e}",
                        p.id, c.va, c.len
                    ));
                }
            }
        }
        let (pool_stats, leak) = match &self.pool {
            Some(pool) => (Some(pool.stats()), pool.leak_check()),
            None => (None, Ok(())),
        };
        // Ports hold pool handles in their configuration: drop them first.
        let still_started = self.ports.iter().any(|p| p.started);
        if still_started {
            // Keep them (and so the memory) alive rather than free memory a
            // device may still write: leak on purpose.
            std::mem::forget(std::mem::take(&mut self.ports));
        }
        self.ports.clear();
        self.pool = None;
        if let Some(r) = self.region.take() {
            if let Err(e) = self.registry.unregister(r) {
                note(format!("unregister {r}: {e}"));
            }
        }
        if let Some((base, len)) = self.vfio_iovas.take() {
            if let Err(e) = xfwd_pmd::vfio::release_memory(base, len) {
                note(format!("release VFIO IOVAs {base:#x}+{len:#x}: {e}"));
            }
        }
        self.mem = None;
        Teardown {
            pool: pool_stats,
            leak,
            errors,
        }
    }
}
