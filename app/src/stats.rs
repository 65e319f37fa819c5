//! Statistics: snapshots of ports, streams and lcores; testpmd-like text
//! tables or one JSON object per line (`--json`). The final summary is
//! [`crate::report`].

use crate::counters::{Drops, LcoreStats, StreamStats};
use crate::dataplane::Dataplane;
use serde::Serialize;
use serde_json::{json, Value};
use xfwd_pmd::PortStats;

/// One moment of the whole data plane.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Seconds since the workers started.
    pub elapsed: f64,
    /// Per port (id, stats).
    pub ports: Vec<(u16, PortStats)>,
    /// Per stream, in [`Dataplane::streams`] order.
    pub streams: Vec<StreamStats>,
    /// Per lcore, in [`Dataplane::lcores`] order.
    pub lcores: Vec<LcoreStats>,
    /// Per port, in `ports` order: the link (memif: a peer is connected).
    pub links: Vec<xfwd_pmd::Link>,
}

impl Snapshot {
    /// Read every counter.
    pub fn take(dp: &Dataplane, elapsed: f64) -> Snapshot {
        Snapshot {
            elapsed,
            ports: dp.ports().iter().map(|p| (p.id, p.port.stats())).collect(),
            streams: dp.streams().iter().map(|s| s.counters.read()).collect(),
            lcores: dp.lcores().iter().map(|l| l.counters.read()).collect(),
            links: dp.ports().iter().map(|p| p.port.link()).collect(),
        }
    }

    /// The forward statistics of port `id`: what streams received from it
    /// and sent to it.
    pub fn fwd(&self, dp: &Dataplane, id: u16) -> PortFwd {
        let mut f = PortFwd::default();
        for (s, st) in dp.streams().iter().zip(&self.streams) {
            if s.rx.is_some_and(|q| q.port == id) {
                f.rx_packets += st.rx;
                f.malformed += st.malformed;
                f.drops += st.drops;
                f.partial += st.partial;
                f.consumed += st.consumed;
                f.no_route += st.no_route;
                f.ttl_exceeded += st.ttl_exceeded;
                f.bad_header += st.bad_header;
                f.non_ip += st.non_ip;
                f.vlan += st.vlan;
            }
            if s.tx.is_some_and(|q| q.port == id) {
                f.tx_packets += st.tx;
                f.tx_dropped += st.tx_dropped;
                f.generated += st.generated;
            }
        }
        f
    }
}

/// testpmd's "Forward statistics for port N".
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PortFwd {
    /// Packets the streams received from this port.
    pub rx_packets: u64,
    /// Of those, dropped by the mode (every reason).
    pub malformed: u64,
    /// The drops per reason (`runt`, `bad_icmp_checksum`, ...; see
    /// docs/forwarding.md).
    pub drops: Drops,
    /// Of those received, forwarded with fewer layers edited (5tswap).
    pub partial: u64,
    /// Of those, consumed (rxonly, flowgen) or ignored (icmpecho).
    pub consumed: u64,
    /// Generated for this port.
    pub generated: u64,
    /// Sent on this port.
    pub tx_packets: u64,
    /// Not taken by this port's TX queue: dropped.
    pub tx_dropped: u64,
    /// l3fwd drops of frames received here: no route.
    pub no_route: u64,
    /// l3fwd: TTL / hop limit exceeded.
    pub ttl_exceeded: u64,
    /// l3fwd: bad IP header.
    pub bad_header: u64,
    /// l3fwd: neither IPv4 nor IPv6.
    pub non_ip: u64,
    /// l3fwd: VLAN-tagged frames received here and forwarded.
    pub vlan: u64,
}

impl PortFwd {
    /// l3fwd drops, all reasons.
    pub fn l3_drops(&self) -> u64 {
        self.no_route + self.ttl_exceeded + self.bad_header + self.non_ip
    }
}

impl std::ops::AddAssign for PortFwd {
    fn add_assign(&mut self, o: PortFwd) {
        self.rx_packets += o.rx_packets;
        self.malformed += o.malformed;
        self.drops += o.drops;
        self.partial += o.partial;
        self.consumed += o.consumed;
        self.generated += o.generated;
        self.tx_packets += o.tx_packets;
        self.tx_dropped += o.tx_dropped;
        self.no_route += o.no_route;
        self.ttl_exceeded += o.ttl_exceeded;
        self.bad_header += o.bad_header;
        self.non_ip += o.non_ip;
        self.vlan += o.vlan;
    }
}

fn rate(cur: u64, prev: u64, dt: f64) -> u64 {
    if dt <= 0.0 {
        0
    } else {
        (cur.saturating_sub(prev) as f64 / dt) as u64
    }
}

/// CPU MHz from /proc/cpuinfo (for cycles estimates; 0 when unknown).
pub fn cpu_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn lcore_json(dp: &Dataplane, cur: &Snapshot, prev: Option<&Snapshot>, mhz: f64) -> Vec<Value> {
    dp.lcores()
        .iter()
        .zip(&cur.lcores)
        .enumerate()
        .map(|(i, (l, c))| {
            let p = prev.map(|p| p.lcores[i]).unwrap_or_default();
            let busy = c.busy_ns - p.busy_ns;
            let idle = c.idle_ns - p.idle_ns;
            let slept = c.slept_ns - p.slept_ns;
            let all = busy + idle + slept;
            let pct = |x: u64| {
                if all > 0 {
                    100.0 * x as f64 / all as f64
                } else {
                    0.0
                }
            };
            let pkts = c.packets - p.packets;
            let ns_pp = if pkts > 0 {
                busy as f64 / pkts as f64
            } else {
                0.0
            };
            json!({
                "lcore": l.cpu, "mode": l.mode, "packets": pkts,
                "busy_ns": busy, "idle_ns": idle, "slept_ns": slept,
                "busy_pct": pct(busy), "slept_pct": pct(slept),
                "sleeps": c.sleeps - p.sleeps,
                "intr_wakes": c.intr_wakes - p.intr_wakes,
                "busy_cycles": (busy as f64 * mhz / 1000.0) as u64,
                "idle_cycles": (idle as f64 * mhz / 1000.0) as u64,
                "ns_per_pkt": ns_pp,
                "cycles_per_pkt": ns_pp * mhz / 1000.0,
                "stalls": c.stalls - p.stalls,
                "max_gap_ns": c.max_gap_ns,
            })
        })
        .collect()
}

/// Print one period: per-port table (or one JSON line).
pub fn print_period(dp: &Dataplane, cur: &Snapshot, prev: &Snapshot, json_out: bool, mhz: f64) {
    let dt = cur.elapsed - prev.elapsed;
    let mut ports = Vec::new();
    let (mut trx, mut ttx) = (0u64, 0u64);
    for (i, ((id, c), (_, p))) in cur.ports.iter().zip(&prev.ports).enumerate() {
        let up = cur.links.get(i).is_some_and(|l| l.up);
        let (rx_pps, tx_pps) = (
            rate(c.ipackets, p.ipackets, dt),
            rate(c.opackets, p.opackets, dt),
        );
        let (rx_bps, tx_bps) = (
            8 * rate(c.ibytes, p.ibytes, dt),
            8 * rate(c.obytes, p.obytes, dt),
        );
        trx += rx_pps;
        ttx += tx_pps;
        if json_out {
            ports.push(json!({
                "port": id, "rx_packets": c.ipackets, "tx_packets": c.opackets,
                "rx_bytes": c.ibytes, "tx_bytes": c.obytes, "rx_missed": c.imissed,
                "rx_errors": c.ierrors, "tx_errors": c.oerrors, "rx_nombuf": c.rx_nombuf,
                "rx_pps": rx_pps, "tx_pps": tx_pps, "rx_bps": rx_bps, "tx_bps": tx_bps,
                "link_up": up,
            }));
            if dp.l3fwd().is_some() {
                // The router's drops of what this port received, so far.
                let f = cur.fwd(dp, *id);
                ports.last_mut().expect("pushed")["l3fwd"] = json!({
                    "no_route": f.no_route, "ttl_exceeded": f.ttl_exceeded,
                    "bad_header": f.bad_header, "non_ip": f.non_ip, "vlan": f.vlan,
                });
            }
        } else {
            crate::outln!("\n  ######################## NIC statistics for port {id:<2} ########################");
            crate::outln!("  Link: {}", if up { "up" } else { "down" });
            crate::outln!(
                "  RX-packets: {:<14} RX-missed: {:<14} RX-bytes:  {}",
                c.ipackets,
                c.imissed,
                c.ibytes
            );
            crate::outln!("  RX-errors: {}\n  RX-nombuf:  {}", c.ierrors, c.rx_nombuf);
            crate::outln!(
                "  TX-packets: {:<14} TX-errors: {:<14} TX-bytes:  {}",
                c.opackets,
                c.oerrors,
                c.obytes
            );
            crate::outln!("\n  Throughput (since last show)");
            crate::outln!("  Rx-pps: {rx_pps:>14}          Rx-bps: {rx_bps:>14}");
            crate::outln!("  Tx-pps: {tx_pps:>14}          Tx-bps: {tx_bps:>14}");
            crate::outln!(
                "  ############################################################################"
            );
        }
    }
    let lc = lcore_json(dp, cur, Some(prev), mhz);
    if json_out {
        let v = json!({
            "type": "period", "elapsed_s": cur.elapsed, "ports": ports,
            "total": {"rx_pps": trx, "tx_pps": ttx}, "lcores": lc,
        });
        crate::outln!("{v}");
    } else {
        for l in &lc {
            let asleep = match l["sleeps"].as_u64().unwrap_or(0) {
                0 => String::new(),
                _ => format!("  asleep {:.1}%", l["slept_pct"].as_f64().unwrap_or(0.0)),
            };
            crate::outln!(
                "  lcore {:<3} {:<8} busy {:>5.1}%  {:>8.1} ns/pkt  ~{:.0} cycles/pkt{asleep}",
                l["lcore"],
                l["mode"].as_str().unwrap_or(""),
                l["busy_pct"].as_f64().unwrap_or(0.0),
                l["ns_per_pkt"].as_f64().unwrap_or(0.0),
                l["cycles_per_pkt"].as_f64().unwrap_or(0.0)
            );
        }
    }
}

/// True when a port's device is gone for good (the `link_lost` xstat of a
/// kernel port).
pub fn link_lost(port: &dyn xfwd_pmd::Port) -> bool {
    port.xstats()
        .iter()
        .any(|(k, v)| k == "link_lost" && *v > 0)
}

/// A port's link in one word: `up`, `down`, or `lost` ([`link_lost`]).
pub fn link_word(up: bool, port: &dyn xfwd_pmd::Port) -> &'static str {
    if up {
        "up"
    } else if link_lost(port) {
        "lost"
    } else {
        "down"
    }
}

/// Pool stats as JSON.
pub fn pool_json(s: &xfwd_mempool::PoolStats) -> Value {
    json!({
        "name": s.name, "capacity": s.capacity, "available": s.available,
        "in_caches": s.in_caches, "in_use": s.in_use, "alloc_failures": s.alloc_failures,
        "obj_size": s.obj_size, "data_room": s.data_room, "headroom": s.headroom,
        "region": s.region.to_string(), "page_size": s.page_size.to_string(),
    })
}

/// Lcore totals as JSON (for the final summary).
pub fn lcores_total(dp: &Dataplane, snap: &Snapshot, mhz: f64) -> Vec<Value> {
    lcore_json(dp, snap, None, mhz)
}
