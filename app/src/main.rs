//! `xfwd`: the whole flow on one screen, like DPDK l2fwd's `main.c`:
//! parse → validate → memory and ports → launch lcores → monitor → clean
//! shutdown → final report (with the leak audit). Exit code 2: bad
//! configuration (nothing was touched); 1: runtime failure or leak; 0:
//! clean run.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use xfwd::cli::{Cli, Cmd};
use xfwd::config::Settings;
use xfwd::control::Control;
use xfwd::dataplane::Dataplane;
use xfwd::error::ConfigError;
use xfwd::lcores::{self, Handle};
use xfwd::monitor::monitor;
use xfwd::plan::{Plan, RunSettings};
use xfwd::report::FinalReport;
use xfwd::worker::Worker;
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
    if let Some(Cmd::Ctl {
        socket,
        text,
        command,
    }) = &cli.cmd
    {
        return Ok(xfwd::control::ctl::main(socket, command, *text)); // `xfwd ctl`
    }
    let (settings, check_only) = parse(&cli)?; // 1. the config file (or the demo) + flags
    let Some(plan) = validate(&settings, check_only)? else {
        return Ok(ExitCode::SUCCESS); // `xfwd check`: the plan was printed
    };
    let up = bring_up(plan, &cli.opts)?; // 3. memory (hugepages → registry → pool), 4. ports
    let mut running = launch(up)?; // 5. one pinned worker per lcore
    let stopped_by = watch(&mut running); // 6. stats until --duration, a signal, sources done, a lost link
    let report = shutdown(running, stopped_by); // 7. stop lcores, then ports; unmap, free, audit
    report.print(); // 8. the final report
    let code = report.exit_code()?;
    if let Some(e) = xfwd::out::error() {
        anyhow::bail!(e); // stdout failed (a closed pipe is not a failure)
    }
    Ok(code)
}

/// Step 1: parse: which settings, and whether only to check them.
fn parse(cli: &Cli) -> anyhow::Result<(Settings, bool)> {
    let (check, path) = match &cli.cmd {
        Some(Cmd::Check { config }) => (true, config.clone().or(cli.opts.config.clone())),
        Some(Cmd::Demo) => (false, None),
        Some(Cmd::Run) | None => (false, cli.opts.config.clone()),
        Some(Cmd::Ctl { .. }) => unreachable!("handled in run()"),
    };
    Ok((config::settings(path.as_deref(), &cli.opts)?, check))
}

/// Step 2: validate everything (ports probed, free hugepages counted) before
/// touching memory; print the plan. `None` when only checking.
fn validate(settings: &Settings, check_only: bool) -> anyhow::Result<Option<Plan>> {
    let plan = validate::validate(settings)?;
    if check_only {
        xfwd::outln!("{plan}");
        if let Some(e) = xfwd::out::error() {
            anyhow::bail!(e);
        }
        return Ok(None);
    }
    eprintln!("{plan}");
    Ok(Some(plan))
}

/// The data plane, up and not yet running.
struct Up {
    dp: Dataplane,
    workers: Vec<Worker>,
    run: RunSettings,
    stop: Arc<AtomicBool>,
    signals: Arc<AtomicUsize>,
    ctl: Control,
}

/// Steps 3 and 4: memory and ports: signals, run-time control (socket,
/// metrics, prompt), then the data plane (memory, pool, DMA maps, ports
/// configured and started, workers built).
fn bring_up(mut plan: Plan, opts: &xfwd::cli::Opts) -> anyhow::Result<Up> {
    let stop = Arc::new(AtomicBool::new(false));
    let signals = signals::install()?;
    let mut ctl = Control::setup(opts, &mut plan, &stop)?;
    let run = plan.run.clone();
    let (dp, workers) = Dataplane::setup(plan, &stop).context("bringing up the data plane")?;
    eprint!("{}", dp.mapping_report());
    ctl.attach(&dp);
    Ok(Up {
        dp,
        workers,
        run,
        stop,
        signals,
        ctl,
    })
}

/// The lcores running over the data plane.
struct Running {
    up: Up,
    lcores: Vec<Handle>,
    start: Instant,
}

/// Step 5: launch one pinned worker thread per lcore; on failure tear down.
fn launch(mut up: Up) -> anyhow::Result<Running> {
    let start = Instant::now();
    match lcores::launch(std::mem::take(&mut up.workers), &up.stop) {
        Ok(lcores) => Ok(Running { up, lcores, start }),
        Err(e) => {
            up.dp.teardown();
            Err(e.into())
        }
    }
}

/// Step 6: monitor: periodic stats, telemetry and links until a stop
/// condition; the error that stopped the run, if one did.
fn watch(r: &mut Running) -> Option<xfwd::error::RunError> {
    let up = &mut r.up;
    monitor(
        &mut up.dp,
        &up.run,
        &up.signals,
        &r.lcores,
        &mut up.ctl,
        r.start,
    )
}

/// Step 7: clean shutdown: stop and join the lcores, close telemetry, then stop
/// the ports, unmap, free and audit (in [`FinalReport::teardown`]); the
/// error that stopped the run goes into the report (exit code 1).
fn shutdown(running: Running, stopped_by: Option<xfwd::error::RunError>) -> FinalReport {
    let Running { up, lcores, start } = running;
    up.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (latency, mut worker_errors) = lcores::join(lcores);
    worker_errors.extend(stopped_by);
    drop(up.ctl);
    FinalReport::teardown(up.dp, elapsed, &latency, worker_errors, up.run.json)
}
