//! The validated plan of a run: memory, pool, ports, lcores and their
//! streams. Built by [`crate::validate::validate`] before anything touches
//! memory; printed by `xfwd check` and at startup.

use crate::fwd::txgen::GenConfig;
use crate::fwd::FwdMode;
use std::fmt;
use std::path::PathBuf;
use xfwd_mempool::{Backing, ExtMemConfig, IovaMode, PageSize, PoolConfig, PoolPlan};
use xfwd_pmd::port::mac_string;
use xfwd_pmd::{Port, PortInfo};

/// A queue of a port: `port.queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    /// Port id (index in the port list).
    pub port: u16,
    /// Queue index.
    pub queue: u16,
}

impl fmt::Display for QueueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.port, self.queue)
    }
}

/// One stream: what a worker receives from and sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// RX queue (none for txonly).
    pub rx: Option<QueueRef>,
    /// TX queue (none for rxonly).
    pub tx: Option<QueueRef>,
}

/// One worker lcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcorePlan {
    /// CPU id it is pinned to.
    pub cpu: u32,
    /// Its forwarding mode.
    pub mode: FwdMode,
    /// Its streams.
    pub streams: Vec<StreamPlan>,
}

/// A probed port and its layout.
#[derive(Debug)]
pub struct PortPlan {
    /// Port id.
    pub id: u16,
    /// The probed port (configured and started later).
    pub port: Box<dyn Port>,
    /// Its capabilities.
    pub info: PortInfo,
    /// Its peer's MAC (mac mode and generator destination).
    pub peer_mac: [u8; 6],
    /// RX descriptors per queue: `fwd.rxd`, or the device's maximum when
    /// that is smaller (as DPDK's virtio PMD does; shown in the plan).
    pub rxd: u16,
    /// TX descriptors per queue, likewise.
    pub txd: u16,
}

/// Stats and run-time settings.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Seconds between stats prints (0 = none).
    pub stats_period: f64,
    /// Seconds to run (0 = until a signal).
    pub duration: f64,
    /// JSON output.
    pub json: bool,
    /// Telemetry socket.
    pub telemetry: Option<PathBuf>,
    /// What a port whose link goes away mid-run does to the run.
    pub on_link_loss: OnLinkLoss,
}

/// `fwd.on_link_loss` / `--on-link-loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLinkLoss {
    /// The other ports keep forwarding; the port reads down (testpmd's way).
    #[default]
    Continue,
    /// Stop the run and exit 1, naming the port and its interface.
    Exit,
}

impl OnLinkLoss {
    /// The accepted spellings.
    pub const ACCEPTED: &'static str = "continue, exit";

    /// Parse `continue` / `exit`.
    pub fn parse(s: &str) -> Option<OnLinkLoss> {
        match s {
            "continue" => Some(OnLinkLoss::Continue),
            "exit" => Some(OnLinkLoss::Exit),
            _ => None,
        }
    }

    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnLinkLoss::Continue => "continue",
            OnLinkLoss::Exit => "exit",
        }
    }
}

/// How long RX must stay quiet after the last generator finished its
/// `--tx-count` before the run ends (frames still in flight arrive first).
pub const DRAIN_SECS: f64 = 0.3;

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Plan {
    /// Where the settings came from.
    pub source: String,
    /// External memory to allocate.
    pub mem: ExtMemConfig,
    /// The pool.
    pub pool: PoolConfig,
    /// Its exact page plan.
    pub pool_plan: PoolPlan,
    /// Free pages of the page size when validated (hugepages only).
    pub free_pages: Option<u64>,
    /// Ports.
    pub ports: Vec<PortPlan>,
    /// RX/TX queues and descriptors per port.
    pub rxq: u16,
    /// TX queues per port.
    pub txq: u16,
    /// RX descriptors.
    pub rxd: u16,
    /// TX descriptors.
    pub txd: u16,
    /// Burst size.
    pub burst: usize,
    /// TX retries.
    pub tx_retry: u32,
    /// Idle sleep of receiving lcores (ns), 0 = busy poll.
    pub idle_sleep_ns: u64,
    /// Latency in forwarding modes too.
    pub latency: bool,
    /// One generated burst per forwarding stream first (`--tx-first`).
    pub tx_first: bool,
    /// Topology name (for the report).
    pub topology: &'static str,
    /// Generator settings.
    pub gen: GenConfig,
    /// Workers.
    pub lcores: Vec<LcorePlan>,
    /// l3fwd: the router's tables (shared by its lcores, updated at run time).
    pub l3fwd: Option<std::sync::Arc<crate::fwd::l3fwd::Shared>>,
    /// Stats.
    pub run: RunSettings,
}

impl Plan {
    /// The mbufs the rings and the per-lcore caches can hold at once: every
    /// port's RX and TX queues full (their descriptors as clamped for the
    /// port) and, per lcore, a full cache (1.5 × its size) and two bursts.
    pub fn pool_floor(&self) -> u64 {
        let rings: u64 = self
            .ports
            .iter()
            .map(|p| {
                u64::from(self.rxq) * u64::from(p.rxd) + u64::from(self.txq) * u64::from(p.txd)
            })
            .sum();
        let per_lcore = u64::from(self.pool.cache_size) * 3 / 2 + 2 * self.burst as u64;
        rings + self.lcores.len() as u64 * per_lcore
    }

    /// The warning for a pool below [`Plan::pool_floor`]: the RX rings take
    /// the mbufs the caches and TX rings need, and forwarding nearly stalls
    /// (allowed: a small pool is a legitimate test of exhaustion).
    pub fn pool_warning(&self) -> Option<String> {
        let floor = self.pool_floor();
        (u64::from(self.pool.n) < floor).then(|| {
            format!(
                "the pool's {} mbufs are fewer than the {floor} its rings and caches can hold \
                 ({} ports × ({} rxq × rxd + {} txq × txd) + {} lcores × (1.5 × cache {} + 2 × burst {})): \
                 forwarding may nearly stall; raise it to at least {floor} with --nb-mbufs (pool.nb_mbufs)",
                self.pool.n,
                self.ports.len(),
                self.rxq,
                self.txq,
                self.lcores.len(),
                self.pool.cache_size,
                self.burst
            )
        })
    }

    /// DMA chunks each port will map, predicted before allocation: one per
    /// IOVA-contiguous run of pages.
    pub fn predicted_chunks(&self) -> String {
        if self
            .ports
            .iter()
            .any(|p| p.info.mapping == xfwd_pmd::dma::MappingKind::Iommu)
        {
            return format!(
                "1 chunk of {} B at IOVAs from the VFIO container's allocator (not the VA)",
                self.pool_plan.bytes
            );
        }
        match (self.mem.iova_mode, &self.mem.backing) {
            (IovaMode::Pa, b) if *b != Backing::Heap => format!(
                "up to {} chunks (PA mode: one per physically contiguous run of {} pages)",
                self.pool_plan.pages, self.pool_plan.page_size
            ),
            _ => format!(
                "1 chunk of {} B (IOVA = VA, contiguous)",
                self.pool_plan.bytes
            ),
        }
    }
}

fn page_note(ps: PageSize, backing: &Backing) -> &'static str {
    match (ps, backing) {
        (_, Backing::Heap) => " [heap: NOT hugepages, --no-huge; software ports only]",
        (PageSize::Size4K, _) => " [4 KiB pages allowed explicitly]",
        _ => "",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "xfwd plan ({})", self.source)?;
        writeln!(
            f,
            "  memory : {} B of {} pages, backing {}, IOVA mode {:?}{}",
            self.pool_plan.bytes,
            self.mem.page_size,
            self.mem.backing.name(),
            self.mem.iova_mode,
            page_note(self.mem.page_size, &self.mem.backing)
        )?;
        if let Some(free) = self.free_pages {
            writeln!(
                f,
                "           {} pages needed, {} free",
                self.pool_plan.pages, free
            )?;
        }
        writeln!(
            f,
            "  pool   : `{}`: {} (data room {}, headroom {}, cache {} per lcore)",
            self.pool.name,
            self.pool_plan,
            self.pool.data_room,
            self.pool.headroom,
            self.pool.cache_size
        )?;
        if let Some(w) = self.pool_warning() {
            writeln!(f, "           warning: {w}")?;
        }
        writeln!(
            f,
            "  ports  : {} rxq × {} rxd, {} txq × {} txd each, topology {}, burst {}",
            self.rxq, self.rxd, self.txq, self.txd, self.topology, self.burst
        )?;
        for p in &self.ports {
            writeln!(
                f,
                "    port{} {:<28} driver {:<6} mac {} peer {} mapping {}: {}",
                p.id,
                p.info.devargs,
                p.info.driver,
                mac_string(&p.info.mac),
                mac_string(&p.peer_mac),
                p.info.mapping,
                self.predicted_chunks()
            )?;
            if (p.rxd, p.txd) != (self.rxd, self.txd) {
                writeln!(
                    f,
                    "           rxd {} txd {}: the device's queues hold at most {} / {} (asked {} / {})",
                    p.rxd, p.txd, p.info.max_rx_desc, p.info.max_tx_desc, self.rxd, self.txd
                )?;
            }
        }
        let polling = match self.idle_sleep_ns {
            0 => "busy poll".to_string(),
            ns => format!(
                "sleep {} µs when a round finds nothing (receiving lcores)",
                ns / 1000
            ),
        };
        writeln!(f, "  lcores : {} workers, {polling}", self.lcores.len())?;
        for l in &self.lcores {
            let s: Vec<String> = l
                .streams
                .iter()
                .map(|s| {
                    let q = |q: Option<QueueRef>| q.map_or("-".to_string(), |q| q.to_string());
                    format!("{}→{}", q(s.rx), q(s.tx))
                })
                .collect();
            writeln!(
                f,
                "    lcore{} {:<8} streams (rx port.queue→tx port.queue): {}",
                l.cpu,
                l.mode,
                s.join(" ")
            )?;
        }
        if self.lcores.iter().any(|l| l.mode.generates()) {
            let g = &self.gen;
            let size = if g.mix.is_empty() {
                format!("{} B", g.pkt_len)
            } else {
                format!(
                    "mix {} (B:weight, mean {:.1} B)",
                    crate::fwd::mix::describe(&g.mix),
                    crate::fwd::mix::mean_len(&g.mix)
                )
            };
            writeln!(
                f,
                "  txgen  : {size} UDP/IPv4 {}:{} → {}:{}, {} flows, latency stamp at byte 42",
                g.src_ip, g.src_port, g.dst_ip, g.dst_port, g.flows
            )?;
        }
        if let Some(l3) = &self.l3fwd {
            writeln!(f, "  l3fwd  : {}", l3.current().describe())?;
        }
        let r = &self.run;
        write!(
            f,
            "  run    : stats every {} s, duration {}, json {}, telemetry {}, on link loss {}",
            r.stats_period,
            if r.duration > 0.0 {
                format!("{} s", r.duration)
            } else {
                "until Ctrl-C".into()
            },
            r.json,
            r.telemetry
                .as_ref()
                .map_or("off".to_string(), |p| p.display().to_string()),
            r.on_link_loss.as_str()
        )
    }
}
