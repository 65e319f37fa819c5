//! xfwd-bench: xfwd against DPDK testpmd, side by side, alternating runs,
//! with a noise check; writes bench-out/results.json, SVG plots and
//! BENCHMARKS.md.
//!
//! ```text
//! xfwd-bench [--quick] [--runs N] [--warmup S] [--measure S] [--scenarios a,b]
//!            [--no-sweep] [--no-latency] [--no-rfc2544] [--noise-limit PCT] [--reruns N]
//!            [--xfwd PATH] [--out DIR] [--md PATH] [--report-only]
//! ```
//! Needs root, 2M hugepages and `dpdk-testpmd` (Debian `dpdk`). Builds xfwd
//! with `cargo build --release -p xfwd` into `$CARGO_TARGET_DIR` (default
//! `target/`) unless `--xfwd PATH` names a binary.
#![deny(unsafe_code)]

mod opts;
mod rate;
mod setup;
mod trials;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use xfwd_benches::bench::ratepath::{self};
use xfwd_benches::bench::results::Results;
use xfwd_benches::bench::scenario::Env;
use xfwd_benches::bench::{procfs, report};

use opts::{parse, Opts};
use setup::{build_xfwd, dpdk_version, ensure_hugepages, repo_root, DpdkRunDirs};
use trials::Bench;

const HEAD: &str = "# xfwd benchmarks\n\n\
xfwd against DPDK 22.11 `dpdk-testpmd` on the same machine, same ports, same generator, alternating runs.\n\n\
Reproduce (root, 2M hugepages, `apt-get install dpdk iproute2`):\n\n\
```\nscripts/bench            # the whole report, < 15 minutes: bench-out/results.json, bench-out/*.svg, this file\n\
scripts/bench --quick    # < 2 minutes, fewer runs and scenarios (CI smoke test; writes bench-out/BENCHMARKS.md)\n\
scripts/bench --report-only   # re-render this file and the plots from bench-out/results.json\n```\n\n\
Absolute figures on a shared 2-vCPU VM drift by ±15–20 % between minutes; the ratio of interleaved runs is the\n\
figure to read. The forwarder runs on CPU 1; testpmd's main lcore, and the veth generator, on CPU 0.\n\n";

fn main() {
    let root = repo_root();
    let o = match parse(&root) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&o.out) {
        eprintln!("xfwd-bench: {}: {e}", o.out.display());
        std::process::exit(1);
    }
    let json_path = o.out.join("results.json");
    let load = || match std::fs::read_to_string(&json_path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<Results>(&s).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xfwd-bench: {}: {e}", json_path.display());
            std::process::exit(1);
        }
    };
    let results = if o.report_only {
        load()
    } else if o.rate_only {
        let mut r = load();
        if let Err(e) = rate_update(&root, o, &mut r) {
            eprintln!("xfwd-bench: {e}");
            std::process::exit(1);
        }
        r
    } else {
        match run_all(&root, o) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("xfwd-bench: {e}");
                std::process::exit(1);
            }
        }
    };
    let o = parse(&root).unwrap_or_else(|_| std::process::exit(2));
    if !o.report_only {
        if let Err(e) = serde_json::to_string_pretty(&results)
            .map_err(|e| e.to_string())
            .and_then(|s| std::fs::write(&json_path, s).map_err(|e| e.to_string()))
        {
            eprintln!("xfwd-bench: {}: {e}", json_path.display());
            std::process::exit(1);
        }
    }
    println!("{}", report::terminal(&results));
    // Plots next to the markdown when it is the repository's, so the
    // committed report shows them; bench-out otherwise.
    let md_dir =
        o.md.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
    let (plot_dir, prefix) = if md_dir == o.out {
        (o.out.clone(), String::new())
    } else {
        (md_dir.join("docs/bench"), "docs/bench/".to_string())
    };
    let plots = std::fs::create_dir_all(&plot_dir).and_then(|_| report::plots(&results, &plot_dir));
    let plots = match plots {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xfwd-bench: plots: {e}");
            std::process::exit(1);
        }
    };
    let md = report::markdown(&results, &prefix, &plots);
    if let Err(e) = report::write_markdown(&o.md, &md, HEAD) {
        eprintln!("xfwd-bench: {}: {e}", o.md.display());
        std::process::exit(1);
    }
    println!(
        "results: {}\nreport:  {}\nplots:   {}",
        json_path.display(),
        o.md.display(),
        plot_dir.display()
    );
}

/// `--rate-only`: rerun the RFC 2544 search and the latency points into an
/// existing results.json (the scenarios stay as they were).
fn rate_update(root: &Path, o: Opts, r: &mut Results) -> Result<(), String> {
    let _dirs = DpdkRunDirs; // testpmd's runtime directories go at the end
    let xfwd = match &o.xfwd {
        Some(p) => p.clone(),
        None => build_xfwd(root)?,
    };
    if !ratepath::supports_tx_rate(&xfwd) {
        return Err(format!("{} has no --tx-rate/--tx-count", xfwd.display()));
    }
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let env = Env {
        xfwd,
        testpmd: "dpdk-testpmd".into(),
        root: root.to_path_buf(),
        out: o.out.clone(),
        fwd_cpu: if ncpu > 1 { 1 } else { 0 },
        main_cpu: 0,
        warmup: r.warmup_s,
        measure: r.measure_s,
        noise_limit_pct: r.noise_limit_pct,
    };
    let mut b = Bench {
        env,
        o,
        notes: Vec::new(),
        rerun_until: Instant::now(),
    };
    let (rfc, lat) = b.rate_based();
    r.rfc2544 = rfc;
    r.latency = lat;
    r.notes.retain(|n| {
        !n.starts_with("RFC 2544") && !n.starts_with("latency") && !n.starts_with("capacity")
    });
    r.notes.extend(b.notes);
    const NOTE: &str = " (RFC 2544 and latency: scripts/bench --rate-only)";
    if !r.command.ends_with(NOTE) {
        r.command.push_str(NOTE);
    }
    Ok(())
}

fn run_all(root: &Path, o: Opts) -> Result<Results, String> {
    let _dirs = DpdkRunDirs; // testpmd's runtime directories go at the end
    let t0 = Instant::now();
    let xfwd = match &o.xfwd {
        Some(p) => p.clone(),
        None => build_xfwd(root)?,
    };
    if !xfwd.exists() {
        return Err(format!("no xfwd binary at {}", xfwd.display()));
    }
    let testpmd = "dpdk-testpmd".to_string();
    let have_testpmd = Command::new("sh")
        .args(["-c", "command -v dpdk-testpmd"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut notes = Vec::new();
    if !have_testpmd {
        notes.push("dpdk-testpmd not found (apt-get install dpdk): peer columns are empty".into());
    }
    ensure_hugepages(400);
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let env = Env {
        xfwd,
        testpmd: testpmd.clone(),
        root: root.to_path_buf(),
        out: o.out.clone(),
        fwd_cpu: if ncpu > 1 { 1 } else { 0 },
        main_cpu: 0,
        warmup: o.warmup,
        measure: o.measure,
        noise_limit_pct: o.noise,
    };
    let command = std::iter::once("scripts/bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let budget = std::time::Duration::from_secs(if o.quick { 0 } else { 150 });
    let mut b = Bench {
        env,
        o,
        notes,
        rerun_until: t0 + budget,
    };
    let mut scenarios = Vec::new();
    for s in b.o.scenarios.clone() {
        scenarios.push(b.scenario(&s));
    }
    let sweep = if b.o.sweep { b.sweep() } else { Vec::new() };
    let (rfc, latency) = if !b.o.rfc2544 {
        (
            Vec::new(),
            if b.o.latency { b.latency() } else { Vec::new() },
        )
    } else if ratepath::supports_tx_rate(&b.env.xfwd) {
        b.rate_based()
    } else {
        b.notes.push("RFC 2544 throughput search: implemented (benches/src/bench/rfc2544.rs, tested against simulated DUTs) but not run: this xfwd has no `--tx-rate`/`--tx-count`; latency load set by refusing generator bursts instead.".into());
        (
            Vec::new(),
            if b.o.latency { b.latency() } else { Vec::new() },
        )
    };
    Ok(Results {
        machine: procfs::Machine::describe(
            dpdk_version(&testpmd).unwrap_or_else(|| "dpdk-testpmd (version unknown)".into()),
        ),
        command,
        quick: b.o.quick,
        runs: b.o.runs,
        warmup_s: b.o.warmup,
        measure_s: b.o.measure,
        noise_limit_pct: b.o.noise,
        wall_s: t0.elapsed().as_secs_f64(),
        scenarios,
        sweep,
        latency,
        rfc2544: rfc,
        notes: b.notes,
    })
}
