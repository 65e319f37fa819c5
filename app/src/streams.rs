//! The lcore → stream map: testpmd's round robin over the forwarding
//! ports' queues, or an explicit l3fwd-style `[[lcore]]` list; every queue
//! gets exactly one owning lcore.

use crate::config::LcoreCfg;
use crate::cpu;
use crate::error::ConfigError;
use crate::fwd::FwdMode;
use crate::plan::{LcorePlan, PortPlan, QueueRef, StreamPlan};
use crate::validate::V;
use std::collections::HashMap;

/// One worker on the last allowed CPU (CPU 0 keeps the main thread company
/// on small machines, like testpmd's main lcore).
pub(crate) fn default_lcores(allowed: &[u32]) -> Vec<u32> {
    allowed.last().map_or(vec![0], |&c| vec![c])
}

pub(crate) fn check_allowed(
    v: &V,
    key: &str,
    cpus: &[u32],
    allowed: &[u32],
) -> Result<(), ConfigError> {
    if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
        return v.bad(
            key,
            c,
            format!(
                "a CPU this process may run on: {}",
                cpu::format_list(allowed)
            ),
        );
    }
    Ok(())
}

fn peer_index(topology: &str, i: usize, n: usize) -> usize {
    match topology {
        "paired" if n > 1 => i ^ 1,
        "chained" => (i + 1) % n,
        _ => i,
    }
}

/// testpmd's streams: each (port, rx queue) forwards to (peer port, same
/// queue index mod txq); streams go round-robin over the lcores.
pub(crate) fn round_robin(
    v: &V,
    ports: &[PortPlan],
    topology: &str,
    rxq: u16,
    txq: u16,
    mode: FwdMode,
    cpus: &[u32],
) -> Result<Vec<LcorePlan>, ConfigError> {
    let n = ports.len();
    // l3fwd sends where its routes say: the topology does not apply.
    let topology = if mode == FwdMode::L3fwd {
        "loop"
    } else {
        topology
    };
    if topology == "paired" && n > 1 && n % 2 == 1 {
        return v.bad(
            "fwd.port_topology",
            "paired",
            format!("an even number of forwarding ports (got {n}); or use chained/loop"),
        );
    }
    let mut streams = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let peer = &ports[peer_index(topology, i, n)];
        for q in 0..rxq {
            let rx = QueueRef {
                port: p.id,
                queue: q,
            };
            let tx = QueueRef {
                port: peer.id,
                queue: q % txq,
            };
            streams.push(StreamPlan {
                rx: mode.receives().then_some(rx),
                tx: mode.transmits().then_some(tx),
            });
        }
    }
    let used = cpus.len().min(streams.len());
    if used < cpus.len() {
        log::warn!(
            "{} lcores listed but only {} streams: lcores {} stay idle",
            cpus.len(),
            streams.len(),
            cpu::format_list(&cpus[used..])
        );
    }
    let mut out: Vec<LcorePlan> = cpus[..used]
        .iter()
        .map(|&cpu| LcorePlan {
            cpu,
            mode,
            streams: Vec::new(),
        })
        .collect();
    for (k, s) in streams.into_iter().enumerate() {
        out[k % used].streams.push(s);
    }
    Ok(out)
}

fn parse_queue(
    v: &V,
    what: &str,
    s: &str,
    ports: &[PortPlan],
    nq: u16,
) -> Result<QueueRef, ConfigError> {
    let accepted = || {
        format!(
            "PORT.QUEUE with PORT one of the forwarding ports {:?} and QUEUE < {nq}",
            ports.iter().map(|p| p.id).collect::<Vec<_>>()
        )
    };
    let (p, q) = s.split_once('.').unwrap_or((s, "0"));
    let (Ok(port), Ok(queue)) = (p.trim().parse::<u16>(), q.trim().parse::<u16>()) else {
        return v.bad(what, s, accepted());
    };
    if !ports.iter().any(|pp| pp.id == port) || queue >= nq {
        return v.bad(what, s, accepted());
    }
    Ok(QueueRef { port, queue })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn explicit(
    v: &V,
    map: &[LcoreCfg],
    listed: Option<&[u32]>,
    allowed: &[u32],
    ports: &[PortPlan],
    rxq: u16,
    txq: u16,
    default_mode: FwdMode,
) -> Result<Vec<LcorePlan>, ConfigError> {
    let mut ids: Vec<u32> = map.iter().map(|l| l.id).collect();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return v.bad("lcore.id", id, "each [[lcore]] id once");
        }
    }
    // fwd.lcores / -l with as many CPUs as [[lcore]] entries moves them
    // (in order) onto those CPUs: the same map on another machine's cores.
    if let Some(l) = listed {
        if l.len() != ids.len() {
            return v.bad(
                "fwd.lcores",
                cpu::format_list(l),
                format!(
                    "{} CPUs, one per [[lcore]] entry (ids {}), or leave it unset",
                    ids.len(),
                    cpu::format_list(&ids)
                ),
            );
        }
        ids = l.to_vec();
        check_allowed(v, "fwd.lcores", &ids, allowed)?;
    }
    check_allowed(v, "lcore.id", &ids, allowed)?;
    let mut out = Vec::new();
    for (l, &cpu) in map.iter().zip(&ids) {
        let mode = match &l.mode {
            Some(m) => FwdMode::parse(m).map_or_else(
                || {
                    v.bad(
                        "lcore.mode",
                        format!("{m} (lcore {})", l.id),
                        FwdMode::accepted(),
                    )
                },
                Ok,
            )?,
            None => default_mode,
        };
        if l.streams.is_empty() {
            return v.bad(
                "lcore.streams",
                format!("[] (lcore {})", l.id),
                "at least one { rx = \"P.Q\", tx = \"P.Q\" }",
            );
        }
        let mut streams = Vec::new();
        for s in &l.streams {
            let rx = match &s.rx {
                Some(r) => Some(parse_queue(v, "lcore.streams.rx", r, ports, rxq)?),
                None => None,
            };
            let tx = match &s.tx {
                Some(t) => Some(parse_queue(v, "lcore.streams.tx", t, ports, txq)?),
                None => None,
            };
            if mode.receives() && rx.is_none() {
                return v.bad(
                    "lcore.streams.rx",
                    format!("missing (lcore {}, mode {mode})", l.id),
                    "an RX queue P.Q: this mode receives",
                );
            }
            // A txonly lcore may also sink a queue: a stream with `rx` and no
            // `tx` is read like rxonly (latency from the generator's stamps),
            // so one lcore can be both ends of a test path.
            let sink = mode == FwdMode::TxOnly && rx.is_some() && tx.is_none();
            // l3fwd sends where the route says (its TX queues are added later).
            if mode.transmits() && tx.is_none() && !sink && mode != FwdMode::L3fwd {
                return v.bad(
                    "lcore.streams.tx",
                    format!("missing (lcore {}, mode {mode})", l.id),
                    "a TX queue P.Q: this mode transmits",
                );
            }
            streams.push(StreamPlan {
                rx: rx.filter(|_| mode.receives() || sink),
                tx: tx.filter(|_| mode.transmits()),
            });
        }
        out.push(LcorePlan { cpu, mode, streams });
    }
    Ok(out)
}

/// Every queue is owned by one lcore (queues are lock-free single-owner).
pub(crate) fn check_ownership(v: &V, lcores: &[LcorePlan]) -> Result<(), ConfigError> {
    let mut rx: HashMap<QueueRef, u32> = HashMap::new();
    let mut tx: HashMap<QueueRef, u32> = HashMap::new();
    for l in lcores {
        for s in &l.streams {
            if let Some(q) = s.rx {
                if let Some(o) = rx.insert(q, l.cpu) {
                    if o != l.cpu {
                        return v.bad(
                            "fwd.rxq",
                            format!("RX queue {q} on lcores {o} and {}", l.cpu),
                            "each queue polled by one lcore",
                        );
                    }
                    return v.bad(
                        "lcore.streams.rx",
                        format!("RX queue {q} twice on lcore {}", l.cpu),
                        "each RX queue in one stream",
                    );
                }
            }
            if let Some(q) = s.tx {
                if let Some(o) = tx.insert(q, l.cpu) {
                    if o != l.cpu {
                        return v.bad("fwd.txq", format!("TX queue {q} shared by lcores {o} and {}", l.cpu), "each TX queue used by one lcore: raise --txq to --rxq, or list streams per lcore");
                    }
                }
            }
        }
    }
    Ok(())
}
