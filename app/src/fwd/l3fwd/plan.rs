//! The router in the run's plan: every l3fwd lcore sends on its own TX
//! queue of every forwarding port (queue k for the k-th l3fwd lcore, as
//! DPDK l3fwd sets one TX queue per lcore), and the tables are built and
//! checked before anything touches memory.

use super::config::{build, RouterPort, Sources};
use super::table::Shared;
use crate::config::Settings;
use crate::error::ConfigError;
use crate::fwd::FwdMode;
use crate::plan::{LcorePlan, PortPlan, QueueRef, StreamPlan};
use std::sync::Arc;

/// Give l3fwd lcores their TX streams and build the tables.
///
/// # Errors
/// Too few TX queues, or a bad route/neighbour/flow (named).
pub(crate) fn prepare(
    s: &Settings,
    lcores: &mut [LcorePlan],
    ports: &[PortPlan],
    txq: u16,
) -> Result<Arc<Shared>, ConfigError> {
    let n = lcores.iter().filter(|l| l.mode == FwdMode::L3fwd).count();
    if n > usize::from(txq) {
        return Err(ConfigError::Invalid {
            key: s.name("fwd.txq"),
            value: txq.to_string(),
            accepted: format!(
                "at least {n}: each of the {n} l3fwd lcores sends on its own TX queue of every port"
            ),
        });
    }
    for (k, l) in lcores
        .iter_mut()
        .filter(|l| l.mode == FwdMode::L3fwd)
        .enumerate()
    {
        for st in &mut l.streams {
            st.tx = None;
        }
        l.streams.retain(|st| st.rx.is_some());
        for p in ports {
            l.streams.push(StreamPlan {
                rx: None,
                tx: Some(QueueRef {
                    port: p.id,
                    queue: k as u16,
                }),
            });
        }
    }
    let rports: Vec<RouterPort> = ports
        .iter()
        .map(|p| RouterPort {
            id: p.id,
            mac: p.info.mac,
            next_hop: s
                .cfg
                .ports
                .get(usize::from(p.id))
                .and_then(|c| c.eth_peer.as_ref())
                .map(|_| p.peer_mac),
        })
        .collect();
    let c = &s.cfg;
    let lookup_key = s.name("l3fwd.lookup");
    let t = build(
        &Sources {
            cfg: &c.l3fwd,
            routes: &c.routes,
            neighbors: &c.neighbors,
            flows: &c.flows,
            flags: &s.l3fwd,
            source: &s.source,
            lookup_key: &lookup_key,
        },
        &rports,
    )?;
    Ok(Shared::new(t))
}
