//! `xfwd`: the whole flow on one screen, like DPDK l2fwd's `main.c`:
//! parse → validate → init memory → init ports → launch lcores → print
//! stats → clean shutdown → leak audit. Exit code 2: bad configuration
//! (nothing was touched); 1: runtime failure or leak; 0: clean run.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xfwd::cli::{Cli, Cmd};
use xfwd::dataplane::Dataplane;
use xfwd::error::{ConfigError, RunError};
use xfwd::latency::{self, Summary};
use xfwd::plan::{RunSettings, DRAIN_SECS};
use xfwd::stats::{self, FinalInfo, Snapshot};
use xfwd::telemetry::Telemetry;
use xfwd::worker::{Worker, WorkerResult};
use xfwd::{config, signals, validate};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse(); // usage errors exit 2 (clap)
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The causes, skipping those a message already quotes.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg = format!("{msg}: {c}");
                }
            }
            eprintln!("xfwd: error: {msg}");
            let config_error = e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some());
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // 1. Parse: the config file (or the built-in demo) with flags on top.
    let (check, path) = match &cli.cmd {
        Some(Cmd::Check { config }) => (true, config.clone().or(cli.opts.config.clone())),
        Some(Cmd::Demo) => (false, None),
        Some(Cmd::Run) | None => (false, cli.opts.config.clone()),
    };
    let settings = config::settings(path.as_deref(), &cli.opts)?;

    // 2. Validate everything (ports probed, free hugepages counted) before touching memory.
    let plan = validate::validate(&settings)?;
    if check {
        println!("{plan}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{plan}");
    let run = plan.run.clone();

    // 3. Init memory (hugepages → registry → pool) and 4. ports (dma_map, configure, start).
    let stop = Arc::new(AtomicBool::new(false));
    let signals = signals::install()?;
    let mut telemetry = match &run.telemetry {
        Some(p) => Some(Telemetry::bind(p)?),
        None => None,
    };
    let (dp, workers) = Dataplane::setup(plan, &stop).context("bringing up the data plane")?;
    eprint!("{}", dp.mapping_report());

    // 5. Launch one pinned worker thread per lcore.
    let start = Instant::now();
    let handles = match launch(workers, &stop) {
        Ok(h) => h,
        Err(e) => {
            dp.teardown();
            return Err(e.into());
        }
    };

    // 6. Print stats until --duration or a signal; serve telemetry meanwhile.
    monitor(&dp, &run, &signals, &handles, telemetry.as_mut(), start);

    // 7. Clean shutdown: stop lcores, then ports, unmap, free; leak audit.
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (hist, worker_errors) = join(handles);
    drop(telemetry.take());
    let snap = Snapshot::take(&dp, elapsed);
    let ports: Vec<_> = snap
        .ports
        .iter()
        .map(|(id, st)| (*id, st.clone(), snap.fwd(&dp, *id)))
        .collect();
    let lcores = stats::lcores_total(&dp, &snap, stats::cpu_mhz());
    let memory = dp.memory.clone();
    let port_meta: Vec<_> = dp
        .ports
        .iter()
        .map(|p| {
            serde_json::json!({"driver": p.info.driver, "devargs": p.info.devargs,
                "mac": xfwd_pmd::port::mac_string(&p.info.mac)})
        })
        .collect();
    let td = dp.teardown();
    let mut info = FinalInfo::new(lcores, elapsed, Summary::of(&hist), memory, &td);
    info.errors
        .extend(worker_errors.iter().map(|e| e.to_string()));
    info.port_meta = port_meta;
    stats::print_final(&ports, &info, run.json);
    if let Err(leak) = td.leak {
        return Err(RunError::Leak(leak).into());
    }
    Ok(if info.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

type Handle = JoinHandle<Result<WorkerResult, RunError>>;

/// Spawn the workers; on a spawn failure the ones started are stopped.
fn launch(workers: Vec<Worker>, stop: &Arc<AtomicBool>) -> Result<Vec<Handle>, RunError> {
    let mut handles = Vec::new();
    for w in workers {
        let cpu = w.cpu;
        match std::thread::Builder::new()
            .name(format!("lcore{cpu}"))
            .spawn(move || w.run())
        {
            Ok(h) => handles.push(h),
            Err(source) => {
                stop.store(true, Ordering::Relaxed);
                let _ = join(handles);
                return Err(RunError::Spawn { lcore: cpu, source });
            }
        }
    }
    Ok(handles)
}

/// The main thread's loop: periodic stats, telemetry, stop conditions.
fn monitor(
    dp: &Dataplane,
    run: &RunSettings,
    signals: &AtomicUsize,
    handles: &[Handle],
    mut telemetry: Option<&mut Telemetry>,
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
        match telemetry.as_deref_mut() {
            Some(tel) => tel.serve(wait, dp),
            None => std::thread::sleep(wait),
        }
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
            .streams
            .iter()
            .filter(|s| s.mode.generates() && s.tx.is_some())
            .map(|s| s.counters.gen_done.get() > 0);
        let ports = dp.ports.iter().filter_map(|p| p.port.rx_finished());
        let (mut sources, mut all_done) = (0usize, true);
        for done in gens.chain(ports) {
            sources += 1;
            all_done &= done;
        }
        if sources == 0 || !all_done {
            self.since = t;
            return false;
        }
        let rx: u64 = dp.streams.iter().map(|s| s.counters.rx.get()).sum();
        if rx != self.rx {
            (self.rx, self.since) = (rx, t);
        }
        t - self.since >= DRAIN_SECS
    }
}

/// Join every worker; merge their latency histograms.
fn join(handles: Vec<Handle>) -> (hdrhistogram::Histogram<u64>, Vec<RunError>) {
    let mut hist = latency::histogram();
    let mut errors = Vec::new();
    for h in handles {
        let name = h.thread().name().unwrap_or("lcore?").to_string();
        match h.join() {
            Ok(Ok(r)) => {
                let _ = hist.add(&r.latency);
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(RunError::WorkerPanic(
                name.trim_start_matches("lcore").parse().unwrap_or(u32::MAX),
            )),
        }
    }
    (hist, errors)
}
