//! The main thread while the lcores run: periodic stats, telemetry, and the
//! stop conditions (a signal, `--duration`, a worker that ended, or every
//! finite source done and drained).

use crate::control::Control;
use crate::dataplane::Dataplane;
use crate::lcores::Handle;
use crate::plan::{RunSettings, DRAIN_SECS};
use crate::stats::{self, Snapshot};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The main thread's loop: periodic stats, telemetry, stop conditions.
pub fn monitor(
    dp: &mut Dataplane,
    run: &RunSettings,
    signals: &AtomicUsize,
    handles: &[Handle],
    ctl: &mut Control,
    start: Instant,
) {
    let mhz = stats::cpu_mhz();
    let mut prev = Snapshot::take(dp, 0.0);
    let mut next_print = run.stats_period;
    let mut drain = Drain::default();
    loop {
        let t = start.elapsed().as_secs_f64();
        if signals.load(Ordering::SeqCst) > 0
            || (run.duration > 0.0 && t >= run.duration)
            || handles.iter().any(|h| h.is_finished())
            || ctl.quit
        {
            return;
        }
        if drain.done(dp, t) {
            eprintln!(
                "xfwd: every finite source is done (every generator sent its --tx-count, every pcap RX replayed its loops) and nothing arrived for {DRAIN_SECS} s: stopping"
            );
            return;
        }
        if run.stats_period > 0.0 && t >= next_print {
            let cur = Snapshot::take(dp, t);
            stats::print_period(dp, &cur, &prev, run.json, mhz);
            prev = cur;
            next_print += run.stats_period;
        }
        let mut wait: f64 = 0.1;
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
