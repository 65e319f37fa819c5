//! Run-time control, testpmd style: one table of commands
//! ([`commands::COMMANDS`]) serves the interactive prompt (`-i`), the
//! `--cmdline-file` and the control socket (`--telemetry`, `xfwd ctl`).
//!
//! The main thread owns the [`Control`] and executes every command; it
//! talks to the lcores only through their [`lcore::LcoreCtl`] (one flag read
//! per round, bounded lock-free queues), so no command adds a lock or a
//! system call to the forward path.
//!
//! ```text
//! prompt thread ─(line, reply channel)─┐
//! --cmdline-file ──────────────────────┼─→ Control::execute ─→ LcoreCtl ─→ lcores
//! socket (telemetry.rs, bounded) ──────┘         │
//! --metrics HTTP (metrics.rs) ←── counters ──────┘
//! ```

pub mod capture;
pub mod commands;
pub mod ctl;
pub mod lcore;
pub mod metrics;
pub mod ports;
pub mod prompt;
mod setup;

use crate::dataplane::Dataplane;
use crate::fwd::txgen::{GenConfig, Generator};
use crate::fwd::FwdMode;
use crate::plan::Plan;
use crate::telemetry::Telemetry;
use lcore::{LcoreCmd, LcoreReply, LcoreSettings, StreamSettings};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xfwd_pmd::PortStats;

/// The answer to one command: text for the prompt, data for the socket.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// What the prompt prints.
    pub text: String,
    /// What the socket sends (`show` commands: the figures).
    pub data: Value,
}

impl Reply {
    /// A reply with text only.
    pub fn text(t: impl Into<String>) -> Reply {
        Reply {
            text: t.into(),
            data: Value::Null,
        }
    }
}

/// Settings the lcores run with, changed by `set ...` while stopped.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mode of each lcore (in [`Dataplane::lcores`] order).
    pub modes: Vec<FwdMode>,
    /// Burst size.
    pub burst: usize,
    /// Generator settings (`set txpkts`, `set rate`).
    pub gen: GenConfig,
    /// `set eth-peer`: peer MAC per port.
    pub peers: HashMap<u16, [u8; 6]>,
    /// `port stop N`.
    pub stopped_ports: BTreeSet<u16>,
    /// `--idle-sleep` of receiving lcores (ns).
    pub idle_sleep_ns: u64,
    /// Changed since the lcores last took the settings.
    pub dirty: bool,
}

/// The main thread's control state.
#[derive(Debug)]
pub struct Control {
    /// Forwarding (lcores polling) or stopped (parked).
    pub running: bool,
    /// Settings.
    pub settings: Settings,
    /// `clear port stats`: the port counters at the clear.
    port_base: HashMap<u16, PortStats>,
    /// The streams' counters at the last `start` (or `clear fwd stats`).
    fwd_base: Option<crate::stats::Snapshot>,
    /// The ports' `imissed` then (testpmd's RX-dropped of the window).
    missed_base: HashMap<u16, u64>,
    /// `show port stats`: the previous call's counters and time (rates).
    last_show: HashMap<u16, (PortStats, Instant)>,
    /// `quit` was asked.
    pub quit: bool,
    stop: Arc<AtomicBool>,
    /// The control socket.
    pub server: Option<Telemetry>,
    /// The metrics endpoint.
    pub metrics: Option<metrics::Metrics>,
    /// Lines from the prompt thread, each with its reply channel.
    prompt: Option<mpsc::Receiver<prompt::Request>>,
    /// `--cmdline-file` lines not yet run, and the pause of a `sleep`.
    script: VecDeque<String>,
    resume_at: Option<Instant>,
    /// The prompt thread, joined (or the terminal restored) when dropped.
    pub prompt_thread: Option<prompt::Prompt>,
    /// The live capture, and the figures of the last one.
    pub capture: Option<capture::Capture>,
    /// `show capture` after the end.
    pub last_capture: Value,
}

impl Control {
    /// Control state for `plan` (read before the plan is consumed).
    pub fn new(plan: &Plan, stop: &Arc<AtomicBool>, running: bool) -> Control {
        Control {
            running,
            settings: Settings {
                modes: plan.lcores.iter().map(|l| l.mode).collect(),
                burst: plan.burst,
                gen: plan.gen.clone(),
                peers: HashMap::new(),
                stopped_ports: BTreeSet::new(),
                idle_sleep_ns: plan.idle_sleep_ns,
                dirty: false,
            },
            port_base: HashMap::new(),
            fwd_base: None,
            missed_base: HashMap::new(),
            last_show: HashMap::new(),
            quit: false,
            stop: stop.clone(),
            server: None,
            metrics: None,
            prompt: None,
            script: VecDeque::new(),
            resume_at: None,
            prompt_thread: None,
            capture: None,
            last_capture: Value::Null,
        }
    }

    /// After bring-up: remember the start counters; with `!running`
    /// (`--interactive`) the lcores park before their first poll.
    pub fn attach(&mut self, dp: &Dataplane) {
        self.mark_window(dp);
        if !self.running {
            for l in dp.lcores() {
                l.ctl.park_at_start();
            }
        }
    }

    /// Run the lines of `path` (`--cmdline-file`) from the monitor loop.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn load_script(&mut self, path: &Path) -> std::io::Result<()> {
        let text = std::fs::read_to_string(path)?;
        self.script = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        Ok(())
    }

    /// Take prompt lines from this channel.
    pub fn attach_prompt(&mut self, rx: mpsc::Receiver<prompt::Request>) {
        self.prompt = Some(rx);
    }

    /// True while a prompt or a script still has commands to give.
    pub fn interactive(&self) -> bool {
        self.prompt.is_some() || !self.script.is_empty()
    }

    /// One step of the monitor loop: run the next script line (unless a
    /// `sleep` pauses it), answer prompt lines, serve the socket and the
    /// metrics for up to `wait`.
    pub fn serve(&mut self, wait: Duration, dp: &mut Dataplane) {
        self.run_script(dp);
        self.capture_step(dp);
        // The prompt's lines wait until the script is done (`-i --cmdline-file`).
        let scripted = !self.script.is_empty() || self.resume_at.is_some();
        if let Some(rx) = self.prompt.as_ref().filter(|_| !scripted && !self.quit) {
            let mut lines = Vec::new();
            loop {
                match rx.try_recv() {
                    Ok(r) => lines.push(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.prompt = None;
                        self.quit = true;
                        break;
                    }
                }
            }
            for r in lines {
                let out = self.execute(dp, &r.line);
                let _ = r.reply.send(out);
            }
        }
        let wait = if self.prompt.is_some() || !self.script.is_empty() || self.capture.is_some() {
            wait.min(Duration::from_millis(10))
        } else {
            wait
        };
        // The server is taken out while it serves: its handler needs `self`.
        let mut server = self.server.take();
        if let Some(srv) = server.as_mut() {
            srv.serve(wait, &mut |line: &str| self.socket_line(dp, line));
        }
        self.server = server;
        match self.metrics.as_mut() {
            Some(m) if self.server.is_some() => m.serve(Duration::ZERO, &*dp),
            Some(m) => m.serve(wait, dp),
            None if self.server.is_none() => std::thread::sleep(wait),
            None => {}
        }
    }

    fn run_script(&mut self, dp: &mut Dataplane) {
        if let Some(t) = self.resume_at {
            if Instant::now() < t {
                return;
            }
            self.resume_at = None;
        }
        while let Some(line) = self.script.pop_front() {
            if let Some(ms) = line.strip_prefix("sleep ") {
                match ms.trim().parse::<u64>() {
                    Ok(ms) => {
                        self.resume_at = Some(Instant::now() + Duration::from_millis(ms));
                        return;
                    }
                    Err(_) => println!("bad sleep `{line}`: milliseconds expected"),
                }
                continue;
            }
            println!("xfwd> {line}");
            let out = self.execute(dp, &line);
            println!("{}", out.text.trim_end());
            if self.quit {
                return;
            }
        }
    }

    /// Execute one command line; errors become a one-line text.
    pub fn execute(&mut self, dp: &mut Dataplane, line: &str) -> Reply {
        match commands::run(self, dp, line) {
            Ok(r) => r,
            Err(e) => Reply {
                text: format!("error: {e}"),
                data: json!({"error": e}),
            },
        }
    }

    /// One socket request: a legacy `/query`, or a command whose reply
    /// is `{"command", "text", "data"}` (or `{"error"}`).
    fn socket_line(&mut self, dp: &mut Dataplane, line: &str) -> Value {
        if line.starts_with('/') {
            return crate::telemetry::answer(line, dp);
        }
        let r = self.execute(dp, line);
        if r.data.get("error").is_some_and(Value::is_string) {
            r.data
        } else {
            json!({"command": line, "text": r.text, "data": r.data})
        }
    }

    /// Write what a live capture copied; at its end detach it from the
    /// lcores and close the file.
    fn capture_step(&mut self, dp: &Dataplane) {
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        let mut err = c.drain().err();
        if c.tap.done() || err.is_some() {
            c.tap.close();
            // One `None` per stream of each lcore: every tap detaches.
            let per: Vec<usize> = dp
                .lcores()
                .iter()
                .map(|l| dp.streams().iter().filter(|s| s.cpu == l.cpu).count())
                .collect();
            if let Err(e) = self.broadcast(dp, |i| LcoreCmd::Tap(vec![None; per[i]])) {
                log::warn!("capture: detaching: {e}");
            }
            let mut c = self.capture.take().expect("checked above");
            if let Err(e) = c.finish() {
                err.get_or_insert(e);
            }
            self.last_capture = capture_status(&c, true, err.map(|e| e.to_string()));
        }
    }

    /// Send `cmd` to every lcore; the first failure is returned.
    fn broadcast(
        &self,
        dp: &Dataplane,
        mut cmd: impl FnMut(usize) -> LcoreCmd,
    ) -> Result<(), String> {
        for (i, l) in dp.lcores().iter().enumerate() {
            match l.ctl.call(cmd(i), &self.stop)? {
                LcoreReply::NotParked => {
                    return Err(format!("lcore {}: not parked", l.cpu));
                }
                _ => continue,
            }
        }
        Ok(())
    }

    /// The settings for lcore `i` (generators built here, on the control
    /// thread; the lcore only swaps them in).
    fn lcore_settings(&self, dp: &Dataplane, i: usize, tx_first: bool) -> LcoreSettings {
        let l = &dp.lcores()[i];
        let mode = self.settings.modes[i];
        let streams = dp
            .streams()
            .iter()
            .filter(|s| s.cpu == l.cpu)
            .map(|s| {
                let txp =
                    s.tx.and_then(|q| dp.ports().iter().find(|p| p.id == q.port));
                let (mac, peer) = txp.map_or(([0; 6], [0; 6]), |p| {
                    (
                        p.info.mac,
                        *self.settings.peers.get(&p.id).unwrap_or(&p.peer_mac),
                    )
                });
                let gen = (mode.generates() && s.tx.is_some()).then(|| {
                    Generator::new(&self.settings.gen, &mac, &peer, mode == FwdMode::FlowGen)
                });
                let first = (tx_first && !mode.generates() && s.tx.is_some())
                    .then(|| Generator::new(&self.settings.gen, &mac, &peer, false));
                StreamSettings {
                    gen,
                    first,
                    peer_mac: peer,
                    enabled: self.stream_enabled(s.rx, s.tx),
                }
            })
            .collect();
        LcoreSettings {
            mode,
            burst: self.settings.burst,
            idle_sleep_ns: if mode.generates() {
                0
            } else {
                self.settings.idle_sleep_ns
            },
            streams,
        }
    }

    /// `stop`: park every lcore (ports stay started and mapped).
    pub fn park(&mut self, dp: &Dataplane) -> Result<(), String> {
        self.broadcast(dp, |_| LcoreCmd::Park)?;
        self.running = false;
        Ok(())
    }

    /// `start [tx_first]`: hand changed settings over, then resume.
    pub fn resume(&mut self, dp: &Dataplane, tx_first: bool) -> Result<(), String> {
        if self.settings.dirty || tx_first {
            let all: Vec<LcoreSettings> = (0..dp.lcores().len())
                .map(|i| self.lcore_settings(dp, i, tx_first))
                .collect();
            let mut all = all.into_iter();
            self.broadcast(dp, |_| {
                LcoreCmd::Apply(Box::new(all.next().expect("one per lcore")))
            })?;
            self.settings.dirty = false;
        }
        self.mark_window(dp);
        self.broadcast(dp, |_| LcoreCmd::Resume)?;
        self.running = true;
        Ok(())
    }

    /// Port counters minus the last `clear port stats`.
    pub fn port_stats(&self, dp: &Dataplane, id: u16) -> Option<PortStats> {
        let p = dp.port(id)?;
        let mut s = p.port.stats();
        if let Some(b) = self.port_base.get(&id) {
            s = sub_stats(&s, b);
        }
        Some(s)
    }

    /// Start a forward-stats window (`start`, `clear fwd stats`).
    pub fn mark_window(&mut self, dp: &Dataplane) {
        self.fwd_base = Some(crate::stats::Snapshot::take(dp, 0.0));
        self.missed_base = dp
            .ports()
            .iter()
            .map(|p| (p.id, p.port.stats().imissed))
            .collect();
    }

    /// Port `id`'s `imissed` since the window began.
    pub fn missed_since_start(&self, dp: &Dataplane, id: u16) -> u64 {
        let now = dp.port(id).map_or(0, |p| p.port.stats().imissed);
        now.saturating_sub(self.missed_base.get(&id).copied().unwrap_or(0))
    }

    /// Forward stats per port since the last `start` (testpmd's
    /// "Forward statistics for port N" fields, as JSON: the window is the
    /// field-by-field difference, whatever fields the stats carry).
    pub fn fwd_since_start(&self, dp: &Dataplane) -> Vec<(u16, Value)> {
        let snap = crate::stats::Snapshot::take(dp, 0.0);
        dp.ports()
            .iter()
            .map(|p| {
                let cur = serde_json::to_value(snap.fwd(dp, p.id)).unwrap_or_default();
                let base = self
                    .fwd_base
                    .as_ref()
                    .map(|b| serde_json::to_value(b.fwd(dp, p.id)).unwrap_or_default());
                let w = base.map_or(cur.clone(), |b| json_combine(&cur, &b, u64::saturating_sub));
                (p.id, w)
            })
            .collect()
    }
}

fn sub_stats(a: &PortStats, b: &PortStats) -> PortStats {
    PortStats {
        ipackets: a.ipackets.saturating_sub(b.ipackets),
        opackets: a.opackets.saturating_sub(b.opackets),
        ibytes: a.ibytes.saturating_sub(b.ibytes),
        obytes: a.obytes.saturating_sub(b.obytes),
        imissed: a.imissed.saturating_sub(b.imissed),
        ierrors: a.ierrors.saturating_sub(b.ierrors),
        oerrors: a.oerrors.saturating_sub(b.oerrors),
        rx_nombuf: a.rx_nombuf.saturating_sub(b.rx_nombuf),
        rxq: a.rxq.clone(),
        txq: a.txq.clone(),
    }
}

/// `show capture`'s figures.
pub fn capture_status(c: &capture::Capture, done: bool, error: Option<String>) -> Value {
    let n = c.tap.counts();
    // The window's counts are complete once every lcore detached (done).
    let window = done.then_some(json!({"rx": n.window_rx, "tx": n.window_tx}));
    json!({"file": c.path.display().to_string(), "capture": c.what, "taken": n.taken,
        "skipped": n.skipped, "past_count": n.past_count, "window": window,
        "written": c.written, "done": done, "write_error": error})
}

/// Numbers combined leaf by leaf (objects by key, a missing key is 0).
pub fn json_combine(a: &Value, b: &Value, f: fn(u64, u64) -> u64) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in out.iter_mut() {
                *v = json_combine(v, y.get(k).unwrap_or(&Value::Null), f);
            }
            for (k, v) in y {
                if !x.contains_key(k) {
                    let zero = if v.is_object() { json!({}) } else { json!(0) };
                    out.insert(k.clone(), json_combine(&zero, v, f));
                }
            }
            Value::Object(out)
        }
        (Value::Number(_), _) | (Value::Null, Value::Number(_)) => {
            json!(f(a.as_u64().unwrap_or(0), b.as_u64().unwrap_or(0)))
        }
        _ => a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::json_combine;
    use serde_json::json;

    #[test]
    fn windows_subtract_leaf_by_leaf() {
        let cur = json!({"rx": 10, "drops": {"runt": 3, "ttl": 1}, "name": "x"});
        let base = json!({"rx": 4, "drops": {"runt": 1}});
        assert_eq!(
            json_combine(&cur, &base, u64::saturating_sub),
            json!({"rx": 6, "drops": {"runt": 2, "ttl": 1}, "name": "x"})
        );
        assert_eq!(
            json_combine(
                &json!({}),
                &json!({"a": 2, "d": {"r": 1}}),
                u64::saturating_add
            ),
            json!({"a": 2, "d": {"r": 1}})
        );
    }
}
