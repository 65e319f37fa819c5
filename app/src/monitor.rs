//! The main thread while the lcores run: periodic stats, telemetry, the
//! ports' links, and the stop conditions (a signal, `--duration`, a worker
//! that ended, every finite source done and drained, or a link lost under
//! `on_link_loss = "exit"`).

use crate::control::Control;
use crate::dataplane::Dataplane;
use crate::error::RunError;
use crate::lcores::Handle;
use crate::plan::{OnLinkLoss, RunSettings, DRAIN_SECS};
use crate::stats::{self, Snapshot};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xfwd_pmd::Port;

/// The main thread's loop: periodic stats, telemetry, links, stop
/// conditions. Returns the error that stopped the run, if one did (a link
/// lost under `on_link_loss = "exit"`).
pub fn monitor(
    dp: &mut Dataplane,
    run: &RunSettings,
    signals: &AtomicUsize,
    handles: &[Handle],
    ctl: &mut Control,
    start: Instant,
) -> Option<RunError> {
    let mhz = stats::cpu_mhz();
    let mut prev = Snapshot::take(dp, 0.0);
    let mut next_print = run.stats_period;
    let mut drain = Drain::default();
    let mut links = Links::new(dp);
    loop {
        let t = start.elapsed().as_secs_f64();
        if signals.load(Ordering::SeqCst) > 0
            || (run.duration > 0.0 && t >= run.duration)
            || handles.iter().any(|h| h.is_finished())
            || ctl.quit
        {
            return None;
        }
        if crate::out::gone() {
            eprintln!("xfwd: stdout is closed (its reader has gone): stopping");
            return None;
        }
        if drain.done(dp, t) {
            eprintln!(
                "xfwd: every finite source is done (every generator sent its --tx-count, every pcap RX replayed its loops) and nothing arrived for {DRAIN_SECS} s: stopping"
            );
            return None;
        }
        if let Some(e) = links.check(dp, t, run.on_link_loss) {
            return Some(e);
        }
        if run.stats_period > 0.0 && t >= next_print {
            let cur = Snapshot::take(dp, t);
            stats::print_period(dp, &cur, &prev, run.json, mhz);
            prev = cur;
            next_print += run.stats_period;
        }
        let mut wait: f64 = 0.1; // also paces the link checks (LINK_CHECK_SECS)
        if run.stats_period > 0.0 {
            wait = wait.min(next_print - t);
        }
        if run.duration > 0.0 {
            wait = wait.min(run.duration - t);
        }
        let wait = Duration::from_secs_f64(wait.max(0.001));
        ctl.serve(wait, dp); // the socket, metrics, prompt and script
    }
}

/// How often the main thread reads every port's link (off the fast path:
/// a few ioctls per kernel port).
pub const LINK_CHECK_SECS: f64 = 0.25;

/// The links the main thread last saw, to tell when one goes away: a port
/// whose link was up and reads down (its interface deleted, replaced by a
/// new one of the same name, set down; a memif peer gone; a vfio device
/// that needs a reset) is reported once, and under `on_link_loss = "exit"`
/// stops the run.
#[derive(Debug)]
struct Links {
    up: Vec<bool>,
    reported: Vec<bool>,
    next: f64,
}

impl Links {
    fn new(dp: &Dataplane) -> Links {
        Links {
            // A port already *lost* at the first read (a vfio device that
            // needed a reset right after its start) was there and went away:
            // counted as up, so the first check reports it. Merely down
            // (no carrier yet) is not a loss.
            up: dp
                .ports()
                .iter()
                .map(|p| p.port.link().up || stats::link_lost(p.port.as_ref()))
                .collect(),
            reported: vec![false; dp.ports().len()],
            next: LINK_CHECK_SECS,
        }
    }

    /// Read every port's link (at most every [`LINK_CHECK_SECS`]); the
    /// first port that lost it when the policy is to exit.
    fn check(&mut self, dp: &Dataplane, t: f64, policy: OnLinkLoss) -> Option<RunError> {
        if t < self.next {
            return None;
        }
        self.next = t + LINK_CHECK_SECS;
        for (i, p) in dp.ports().iter().enumerate() {
            let up = p.port.link().up;
            if up == self.up[i] {
                continue;
            }
            self.up[i] = up;
            let devargs = &p.info.devargs;
            if up {
                if std::mem::take(&mut self.reported[i]) {
                    eprintln!("xfwd: port {} ({devargs}): link up again", p.id);
                }
                continue;
            }
            self.reported[i] = true;
            let what = link_loss(p.port.as_ref(), devargs);
            match policy {
                OnLinkLoss::Continue => eprintln!(
                    "xfwd: port {} ({devargs}): {what}; the other ports keep forwarding (on_link_loss = \"continue\")",
                    p.id
                ),
                OnLinkLoss::Exit => {
                    eprintln!(
                        "xfwd: port {} ({devargs}): {what}; on_link_loss = \"exit\": stopping",
                        p.id
                    );
                    return Some(RunError::LinkLost {
                        port: p.id,
                        devargs: devargs.clone(),
                        what,
                    });
                }
            }
        }
        None
    }
}

/// "link lost: interface d1 is gone ..." or "link down ...", naming the
/// interface when the devargs do.
fn link_loss(port: &dyn Port, devargs: &str) -> String {
    let iface = xfwd_pmd::Devargs::parse(devargs)
        .ok()
        .and_then(|d| d.get("iface").map(str::to_string));
    match (stats::link_lost(port), iface) {
        (true, Some(i)) => format!(
            "link lost: interface {i} is gone (deleted, moved to another namespace, or replaced by a new device of that name)"
        ),
        (true, None) => "link lost: its device is gone".to_string(),
        (false, Some(i)) => format!("link down: interface {i} is down or has no carrier"),
        (false, None) => "link down".to_string(),
    }
}

/// Watches for the end of a run whose sources are finite: at least one
/// finite source (a generating stream with a `--tx-count`, a port whose RX
/// is a finite replay such as `pcap:rx=..` with a `loop` count) and every
/// one of them done (a generator without a count never is), then RX quiet
/// for [`DRAIN_SECS`] (what was sent has come back, TX queues are flushed).
#[derive(Debug, Default)]
struct Drain {
    rx: u64,
    since: f64,
}

impl Drain {
    fn done(&mut self, dp: &Dataplane, t: f64) -> bool {
        let gens = dp
            .streams()
            .iter()
            .filter(|s| s.mode.generates() && s.tx.is_some())
            .map(|s| s.counters.gen_done.get() > 0);
        let ports = dp.ports().iter().filter_map(|p| p.port.rx_finished());
        let (mut sources, mut all_done) = (0usize, true);
        for done in gens.chain(ports) {
            sources += 1;
            all_done &= done;
        }
        if sources == 0 || !all_done {
            self.since = t;
            return false;
        }
        let rx: u64 = dp.streams().iter().map(|s| s.counters.rx.get()).sum();
        if rx != self.rx {
            (self.rx, self.since) = (rx, t);
        }
        t - self.since >= DRAIN_SECS
    }
}
