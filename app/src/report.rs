//! The final report: what a run forwarded per port and in total, latency,
//! lcores, the pool and the leak audit (testpmd's "Forward statistics"
//! tables, or one JSON object with `--json`), and the exit code that
//! follows from it.

use crate::dataplane::{Dataplane, Teardown};
use crate::error::RunError;
use crate::latency::Summary;
use crate::stats::{self, pool_json, PortFwd, Snapshot};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::process::ExitCode;
use xfwd_mempool::LeakError;
use xfwd_pmd::PortStats;

/// Everything the final report says, read from the data plane before its
/// tear-down and completed by what the tear-down found.
#[derive(Debug)]
pub struct FinalReport {
    ports: Vec<(u16, PortStats, PortFwd)>,
    info: FinalInfo,
    leak: Result<(), LeakError>,
    json: bool,
}

impl FinalReport {
    /// Read the last counters of `dp` (workers joined), tear it down (stop
    /// ports, unmap, audit, free) and keep what the report needs.
    pub fn teardown(
        dp: Dataplane,
        elapsed: f64,
        latency: &Histogram<u64>,
        worker_errors: Vec<RunError>,
        json: bool,
    ) -> FinalReport {
        let snap = Snapshot::take(&dp, elapsed);
        let ports: Vec<_> = snap
            .ports
            .iter()
            .map(|(id, st)| (*id, st.clone(), snap.fwd(&dp, *id)))
            .collect();
        let lcores = stats::lcores_total(&dp, &snap, stats::cpu_mhz());
        let memory = dp.memory().to_string();
        let port_meta: Vec<_> = dp
            .ports()
            .iter()
            .zip(&snap.links)
            .map(|(p, l)| {
                let link = stats::link_word(l.up, p.port.as_ref());
                json!({"driver": p.info.driver, "devargs": p.info.devargs,
                    "mac": xfwd_pmd::port::mac_string(&p.info.mac), "link_up": l.up,
                    "link": link})
            })
            .collect();
        let td = dp.teardown();
        let mut info = FinalInfo::new(lcores, elapsed, Summary::of(latency), memory, &td);
        info.errors
            .extend(worker_errors.iter().map(|e| e.to_string()));
        info.port_meta = port_meta;
        FinalReport {
            ports,
            info,
            leak: td.leak,
            json,
        }
    }

    /// Print the report (text tables, or one JSON object).
    pub fn print(&self) {
        print_final(&self.ports, &self.info, self.json);
    }

    /// The exit code: 0 for a clean run, 1 when something failed on the way.
    ///
    /// # Errors
    /// [`RunError::Leak`] when mbufs did not come back to the pool.
    pub fn exit_code(self) -> Result<ExitCode, RunError> {
        self.leak.map_err(RunError::Leak)?;
        Ok(if self.info.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// Print the final summary: forward statistics per port, accumulated
/// totals, latency, lcores, pool and the leak audit.
fn print_final(dp_ports: &[(u16, PortStats, PortFwd)], last: &FinalInfo, json_out: bool) {
    let mut acc = PortFwd::default();
    let mut missed = 0;
    for (_, st, f) in dp_ports {
        acc += *f;
        missed += st.imissed;
    }
    if json_out {
        let ports: Vec<Value> = dp_ports
            .iter()
            .enumerate()
            .map(|(i, (id, st, f))| {
                let mut v = json!({
                    "port": id, "rx_packets": st.ipackets, "tx_packets": st.opackets,
                    "rx_bytes": st.ibytes, "tx_bytes": st.obytes, "rx_missed": st.imissed,
                    "rx_errors": st.ierrors, "tx_errors": st.oerrors, "rx_nombuf": st.rx_nombuf,
                    "fwd": f,
                });
                if let (Some(Value::Object(meta)), Value::Object(o)) =
                    (last.port_meta.get(i), &mut v)
                {
                    o.extend(meta.clone());
                }
                v
            })
            .collect();
        let v = json!({
            "type": "final", "elapsed_s": last.elapsed, "ports": ports,
            "accumulated": {"fwd": acc, "rx_missed": missed,
                "rx_pps": (acc.rx_packets as f64 / last.elapsed.max(1e-9)) as u64,
                "tx_pps": (acc.tx_packets as f64 / last.elapsed.max(1e-9)) as u64},
            "latency": last.latency, "lcores": last.lcores, "memory": last.memory,
            "mempool": last.mempool, "leaked_mbufs": last.leaked, "errors": last.errors,
        });
        crate::outln!("{v}");
        return;
    }
    for (i, (id, st, f)) in dp_ports.iter().enumerate() {
        crate::outln!(
            "\n  ---------------------- Forward statistics for port {id:<2} ----------------------"
        );
        if let Some(l @ ("down" | "lost")) = last.port_meta.get(i).and_then(|m| m["link"].as_str())
        {
            crate::outln!("  Link: {l} at the end of the run");
        }
        crate::outln!(
            "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
            f.rx_packets,
            st.imissed,
            f.rx_packets + st.imissed
        );
        crate::outln!(
            "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
            f.tx_packets,
            f.tx_dropped,
            f.tx_packets + f.tx_dropped
        );
        if f.malformed + f.consumed + f.generated > 0 {
            crate::outln!(
                "  Malformed:  {:<14} Consumed:   {:<14} Generated: {}",
                f.malformed,
                f.consumed,
                f.generated
            );
        }
        if f.malformed + f.partial > 0 {
            let why: Vec<String> = f.drops.nonzero().map(|(k, n)| format!("{k} {n}")).collect();
            crate::outln!(
                "  Dropped by the mode: {} | forwarded partly edited: {}",
                if why.is_empty() {
                    "-".into()
                } else {
                    why.join(", ")
                },
                f.partial
            );
        }
        if f.l3_drops() + f.vlan > 0 {
            crate::outln!(
                "  L3 drops:   no-route {} ttl-exceeded {} bad-header {} non-ip {} (VLAN-tagged forwarded {})",
                f.no_route, f.ttl_exceeded, f.bad_header, f.non_ip, f.vlan
            );
        }
        crate::outln!(
            "  ----------------------------------------------------------------------------"
        );
    }
    crate::outln!(
        "\n  +++++++++++++++ Accumulated forward statistics for all ports +++++++++++++++"
    );
    crate::outln!(
        "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
        acc.rx_packets,
        missed,
        acc.rx_packets + missed
    );
    crate::outln!(
        "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
        acc.tx_packets,
        acc.tx_dropped,
        acc.tx_packets + acc.tx_dropped
    );
    crate::outln!("  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++");
    let e = last.elapsed.max(1e-9);
    crate::outln!(
        "\n  Run time {:.2} s: RX {:.3} Mpps, TX {:.3} Mpps (memory: {})",
        last.elapsed,
        acc.rx_packets as f64 / e / 1e6,
        acc.tx_packets as f64 / e / 1e6,
        last.memory
    );
    let l = &last.latency;
    if l.samples > 0 {
        crate::outln!(
            "  Latency ({} samples): p50 {} ns  p90 {} ns  p99 {} ns  p99.9 {} ns  max {} ns",
            l.samples,
            l.p50_ns,
            l.p90_ns,
            l.p99_ns,
            l.p999_ns,
            l.max_ns
        );
    }
    for lc in &last.lcores {
        crate::outln!(
            "  lcore {:<3} {:<8} busy {:>5.1}%  {} pkts  {:.1} ns/pkt  ~{:.0} cycles/pkt",
            lc["lcore"],
            lc["mode"].as_str().unwrap_or(""),
            lc["busy_pct"].as_f64().unwrap_or(0.0),
            lc["packets"],
            lc["ns_per_pkt"].as_f64().unwrap_or(0.0),
            lc["cycles_per_pkt"].as_f64().unwrap_or(0.0)
        );
        if lc["sleeps"].as_u64().unwrap_or(0) > 0 {
            crate::outln!(
                "            asleep {:.1}% in {} idle sleeps ({} ended by an RX interrupt)",
                lc["slept_pct"].as_f64().unwrap_or(0.0),
                lc["sleeps"],
                lc["intr_wakes"].as_u64().unwrap_or(0)
            );
        }
        if lc["stalls"].as_u64().unwrap_or(0) > 0 {
            crate::outln!(
                "            {} stalls ≥ {} µs (the lcore did not poll; longest {} µs)",
                lc["stalls"],
                crate::counters::STALL_NS / 1000,
                lc["max_gap_ns"].as_u64().unwrap_or(0) / 1000
            );
        }
    }
    for e in &last.errors {
        crate::outln!("  shutdown error: {e}");
    }
    match last.leaked {
        0 => crate::outln!("  0 mbufs leaked"),
        n => crate::outln!("  LEAK: {n} mbufs not returned to the pool"),
    }
}

/// What the final summary needs besides the ports.
#[derive(Debug, Clone)]
struct FinalInfo {
    /// Run time in seconds.
    elapsed: f64,
    /// Latency percentiles.
    latency: Summary,
    /// Lcores (JSON objects).
    lcores: Vec<Value>,
    /// Memory description.
    memory: String,
    /// Pool stats (JSON).
    mempool: Value,
    /// Mbufs leaked.
    leaked: usize,
    /// Shutdown errors.
    errors: Vec<String>,
    /// Per port: driver, devargs, MAC (JSON objects, in port order).
    port_meta: Vec<Value>,
}

impl FinalInfo {
    /// Assemble from the last snapshot and the tear-down.
    fn new(
        dp_lcores: Vec<Value>,
        elapsed: f64,
        latency: Summary,
        memory: String,
        td: &Teardown,
    ) -> FinalInfo {
        FinalInfo {
            elapsed,
            latency,
            lcores: dp_lcores,
            memory,
            mempool: td.pool.as_ref().map_or(Value::Null, pool_json),
            leaked: td.leaked(),
            errors: td.errors.clone(),
            port_meta: Vec::new(),
        }
    }
}
