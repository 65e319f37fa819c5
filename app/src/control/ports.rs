//! `port stop N` / `port start N`: the driver really stops and starts
//! (testpmd's `port stop|start`), with forwarding stopped (the lcores
//! parked):
//!
//! ```text
//! port stop N:  each lcore gives port N's queue handles back (a Detached
//!               queue takes their place, its streams are no longer polled)
//!               and returns its cached mbufs to the pool → Port::stop()
//!               (every mbuf the driver held comes back; mappings stay)
//! port start N: Port::start() → each lcore takes the new handles of the
//!               queues it owns, its streams are polled again at `start`
//! ```
//!
//! The port's counters survive (they live in its core, recreated only by
//! a new configuration), so the statistics add up across a stop/start.

use super::lcore::{LcoreCmd, PortChange};
use super::Control;
use crate::dataplane::{Dataplane, StreamInfo};
use crate::plan::QueueRef;

/// The indexes of `queues` (an lcore's table) that belong to port `id`.
fn on_port(queues: &[QueueRef], id: u16) -> impl Iterator<Item = (usize, QueueRef)> + '_ {
    queues
        .iter()
        .enumerate()
        .filter(move |(_, q)| q.port == id)
        .map(|(i, q)| (i, *q))
}

impl Control {
    /// A stream is polled while none of its ports is stopped.
    pub(crate) fn stream_enabled(&self, rx: Option<QueueRef>, tx: Option<QueueRef>) -> bool {
        let stopped =
            |q: Option<QueueRef>| q.is_some_and(|q| self.settings.stopped_ports.contains(&q.port));
        !stopped(rx) && !stopped(tx)
    }

    /// Per stream of lcore `i`: polled.
    fn enabled(&self, dp: &Dataplane, i: usize) -> Vec<bool> {
        let cpu = dp.lcores()[i].cpu;
        dp.streams()
            .iter()
            .filter(|s| s.cpu == cpu)
            .map(|s: &StreamInfo| self.stream_enabled(s.rx, s.tx))
            .collect()
    }

    /// `port stop N` (forwarding stopped): take port `id`'s queues back from
    /// the lcores, then stop its driver.
    ///
    /// # Errors
    /// Forwarding runs, the port is stopped already, an lcore did not
    /// answer, or the driver refused to stop.
    pub fn stop_port(&mut self, dp: &mut Dataplane, id: u16) -> Result<(), String> {
        self.needs_parked("port stop")?;
        if !dp.port(id).is_some_and(|p| p.started()) {
            return Err(format!("port {id} is already stopped"));
        }
        self.settings.stopped_ports.insert(id);
        let changes: Vec<PortChange> = (0..dp.lcores().len())
            .map(|i| {
                let l = &dp.lcores()[i];
                PortChange {
                    rx_out: on_port(&l.rxqs, id).map(|(j, _)| j).collect(),
                    tx_out: on_port(&l.txqs, id).map(|(j, _)| j).collect(),
                    enabled: self.enabled(dp, i),
                    ..PortChange::default()
                }
            })
            .collect();
        let mut changes = changes.into_iter();
        self.broadcast(dp, |_| {
            LcoreCmd::Ports(Box::new(changes.next().unwrap_or_default()))
        })
        .map_err(|e| format!("port {id}: the lcores did not give its queues back: {e}"))?;
        dp.stop_port(id)
    }

    /// `port start N` (forwarding stopped): start port `id`'s driver and
    /// hand each lcore the new handles of the queues it owns.
    ///
    /// # Errors
    /// Forwarding runs, the port is started already, the driver refused,
    /// or an lcore did not answer.
    pub fn start_port(&mut self, dp: &mut Dataplane, id: u16) -> Result<(), String> {
        self.needs_parked("port start")?;
        let mut slots = dp.start_port(id)?;
        self.settings.stopped_ports.remove(&id);
        let mut changes = Vec::new();
        for i in 0..dp.lcores().len() {
            let l = &dp.lcores()[i];
            let rx_in = on_port(&l.rxqs, id)
                .filter_map(|(j, q)| Some((j, slots.0.get_mut(q.queue as usize)?.take()?)))
                .collect();
            let tx_in = on_port(&l.txqs, id)
                .filter_map(|(j, q)| Some((j, slots.1.get_mut(q.queue as usize)?.take()?)))
                .collect();
            changes.push(PortChange {
                rx_in,
                tx_in,
                enabled: self.enabled(dp, i),
                ..PortChange::default()
            });
        }
        dp.keep_unused(id, slots);
        let mut changes = changes.into_iter();
        self.broadcast(dp, |_| {
            LcoreCmd::Ports(Box::new(changes.next().unwrap_or_default()))
        })
        .map_err(|e| format!("port {id}: started, but the lcores did not take its queues: {e}"))
    }

    fn needs_parked(&self, what: &str) -> Result<(), String> {
        if self.running {
            Err(format!(
                "{what} needs forwarding stopped: `stop` first, then `start`"
            ))
        } else {
            Ok(())
        }
    }
}
