//! xfwd-bench: xfwd against DPDK testpmd, side by side, alternating runs,
//! with a noise check; writes bench-out/results.json, SVG plots and
//! BENCHMARKS.md.
//!
//! ```text
//! xfwd-bench [--quick] [--runs N] [--warmup S] [--measure S] [--scenarios a,b]
//!            [--no-sweep] [--no-latency] [--noise-limit PCT] [--reruns N]
//!            [--xfwd PATH] [--out DIR] [--md PATH] [--report-only]
//! ```
//! Needs root, 2M hugepages and `dpdk-testpmd` (Debian `dpdk`). Builds xfwd
//! with `cargo build --release -p xfwd` into `$CARGO_TARGET_DIR` (default
//! `target/`) unless `--xfwd PATH` names a binary.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use xfwd_benches::bench::ratepath::{self, RingPath};
use xfwd_benches::bench::results::{
    LatencyPoint, Results, Rfc2544Outcome, ScenarioResult, Side, SweepPoint,
};
use xfwd_benches::bench::rfc2544::{self, SearchConfig};
use xfwd_benches::bench::runner::{self, Cmd, Tool, Trial};
use xfwd_benches::bench::scenario::{self, Env, Topology};
use xfwd_benches::bench::{procfs, report};

#[derive(Debug)]
struct Opts {
    quick: bool,
    runs: usize,
    warmup: f64,
    measure: f64,
    scenarios: Vec<String>,
    sweep: bool,
    latency: bool,
    noise: f64,
    reruns: usize,
    xfwd: Option<PathBuf>,
    out: PathBuf,
    md: PathBuf,
    report_only: bool,
    rate_only: bool,
}

const USAGE: &str = "usage: xfwd-bench [--quick] [--runs N] [--warmup S] [--measure S] [--scenarios a,b] \
[--no-sweep] [--no-latency] [--noise-limit PCT] [--reruns N] [--xfwd PATH] [--out DIR] [--md PATH] [--report-only] [--rate-only]\n\
scenarios: null-io, null-macswap, null-io-xmem, null-macswap-xmem, ring, af_xdp-veth, af_packet-veth, \
af_xdp-veth-idle, af_packet-veth-idle (the veth ones with xfwd --idle-sleep)";

fn parse(root: &Path) -> Result<Opts, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let quick = a.iter().any(|x| x == "--quick");
    let out = root.join("bench-out");
    let mut o = Opts {
        quick,
        runs: if quick { 1 } else { 5 },
        warmup: if quick { 0.5 } else { 1.0 },
        measure: if quick { 1.0 } else { 3.0 },
        scenarios: if quick {
            vec!["null-io".into(), "ring".into(), "af_packet-veth".into()]
        } else {
            scenario::ALL.iter().map(|s| s.to_string()).collect()
        },
        sweep: true,
        latency: true,
        noise: 10.0,
        reruns: if quick { 0 } else { 2 },
        xfwd: None,
        md: if quick {
            out.join("BENCHMARKS.md")
        } else {
            root.join("BENCHMARKS.md")
        },
        out,
        report_only: false,
        rate_only: false,
    };
    let mut i = 0;
    let val = |i: usize| {
        a.get(i + 1)
            .cloned()
            .ok_or(format!("{} needs a value\n{USAGE}", a[i]))
    };
    let num = |i: usize| -> Result<f64, String> {
        val(i)?
            .parse::<f64>()
            .map_err(|_| format!("{} needs a number, got {:?}", a[i], a.get(i + 1)))
    };
    let mut md_set = false;
    while i < a.len() {
        match a[i].as_str() {
            "--quick" => {}
            "--runs" => {
                o.runs = num(i)?.max(1.0) as usize;
                i += 1;
            }
            "--warmup" => {
                o.warmup = num(i)?;
                i += 1;
            }
            "--measure" => {
                o.measure = num(i)?.max(0.6);
                i += 1;
            }
            "--noise-limit" => {
                o.noise = num(i)?;
                i += 1;
            }
            "--reruns" => {
                o.reruns = num(i)? as usize;
                i += 1;
            }
            "--scenarios" => {
                o.scenarios = val(i)?.split(',').map(str::to_string).collect();
                for s in &o.scenarios {
                    if !scenario::ALL.contains(&s.as_str()) {
                        return Err(format!("unknown scenario {s:?}\n{USAGE}"));
                    }
                }
                i += 1;
            }
            "--no-sweep" => o.sweep = false,
            "--no-latency" => o.latency = false,
            "--xfwd" => {
                o.xfwd = Some(PathBuf::from(val(i)?));
                i += 1;
            }
            "--out" => {
                o.out = PathBuf::from(val(i)?);
                i += 1;
            }
            "--md" => {
                o.md = PathBuf::from(val(i)?);
                md_set = true;
                i += 1;
            }
            "--report-only" => o.report_only = true,
            "--rate-only" => o.rate_only = true,
            "-h" | "--help" => return Err(USAGE.into()),
            x => return Err(format!("unknown argument {x:?}\n{USAGE}")),
        }
        i += 1;
    }
    if quick && !md_set {
        o.md = o.out.join("BENCHMARKS.md");
    }
    Ok(o)
}

fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// `cargo build --release -p xfwd` in the workspace; the binary's path.
fn build_xfwd(root: &Path) -> Result<PathBuf, String> {
    eprintln!("xfwd-bench: cargo build --release -p xfwd");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "xfwd"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err("cargo build --release -p xfwd failed".into());
    }
    let tdir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let tdir = if tdir.is_absolute() {
        tdir
    } else {
        root.join(tdir)
    };
    Ok(tdir.join("release/xfwd"))
}

fn dpdk_version(testpmd: &str) -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "dpdk"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!v.is_empty()).then(|| format!("{testpmd} from Debian dpdk {v}"))
}

fn ensure_hugepages(min_free: u64) {
    let base = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    let rd = |f: &str| {
        std::fs::read_to_string(format!("{base}/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let free = rd("free_hugepages");
    if free < min_free {
        let want = rd("nr_hugepages") + (min_free - free);
        let _ = std::fs::write(format!("{base}/nr_hugepages"), want.to_string());
        eprintln!(
            "xfwd-bench: asked for {want} 2M hugepages ({} free now)",
            rd("free_hugepages")
        );
    }
}

struct Bench {
    env: Env,
    o: Opts,
    notes: Vec<String>,
    /// Noisy runs are rerun only before this instant (keeps the whole
    /// report under its time bound on a busy machine).
    rerun_until: Instant,
}

impl Bench {
    /// Run a trial, rerunning a noisy one up to `reruns` times.
    fn trial(&self, spec: &runner::TrialSpec, label: &str) -> Trial {
        let mut t = runner::run(spec);
        let mut n = 0;
        // A warm-up run is discarded anyway: never rerun it.
        let reruns = if label.contains("warm-up") {
            0
        } else {
            self.o.reruns
        };
        if t.status == "failed" {
            // A start-up hiccup (EAL init, a busy hugepage pool): once more.
            eprintln!("    {label}: failed ({}), retry", t.reason);
            t = runner::run(spec);
        }
        while t.status == "noisy" && n < reruns && Instant::now() < self.rerun_until {
            eprintln!(
                "    {label}: noisy ({:.0} % of a CPU used by others), rerun",
                t.noise_pct
            );
            t = runner::run(spec);
            n += 1;
        }
        eprintln!(
            "    {label}: {} {:.3} Mpps, {:.1} ns/pkt CPU, noise {:.0} %{}",
            t.status,
            t.mpps,
            t.cpu_ns_per_pkt,
            t.noise_pct,
            if t.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.reason)
            }
        );
        t
    }

    /// Warm-up run of each tool, then `runs` alternating pairs.
    fn alternate(
        &self,
        name: &str,
        mk: &dyn Fn(Tool) -> Result<runner::TrialSpec, String>,
    ) -> (Side, Side) {
        let mut sides: [Vec<Trial>; 2] = [Vec::new(), Vec::new()];
        let mut dead = [false, false];
        let tools = [Tool::Xfwd, Tool::Testpmd];
        for round in 0..=self.o.runs {
            for (i, tool) in tools.iter().enumerate() {
                if dead[i] {
                    continue;
                }
                let label = format!(
                    "{name} {:?} {}",
                    tool,
                    if round == 0 {
                        "warm-up".into()
                    } else {
                        format!("run {round}")
                    }
                );
                let t = match mk(*tool) {
                    Ok(spec) => self.trial(&spec, &label),
                    Err(e) => Trial {
                        status: "failed".into(),
                        reason: e,
                        ..Trial::default()
                    },
                };
                if t.status == "unavailable" || (round == 0 && t.status == "failed") {
                    dead[i] = true;
                    sides[i].push(t);
                } else if round > 0 {
                    sides[i].push(t);
                }
            }
        }
        (Side::from_trials(&sides[0]), Side::from_trials(&sides[1]))
    }

    fn scenario(&mut self, name: &str) -> ScenarioResult {
        eprintln!("xfwd-bench: scenario {name}");
        let env = self.env.clone();
        let (what, (ours, peer)) = match name {
            "null-io" => (
                "2 null ports, io, 64 B, burst 32".into(),
                self.alternate(name, &|t| Ok(env.null(t, "io", 64, "native"))),
            ),
            "null-macswap" => (
                "2 null ports, macswap, 64 B".into(),
                self.alternate(name, &|t| Ok(env.null(t, "macswap", 64, "native"))),
            ),
            "null-io-xmem" => (
                "as null-io, testpmd --mp-alloc=xmemhuge (external hugepage memory, like xfwd)"
                    .into(),
                self.alternate(name, &|t| Ok(env.null(t, "io", 64, "xmemhuge"))),
            ),
            "null-macswap-xmem" => (
                "as null-macswap, testpmd --mp-alloc=xmemhuge".into(),
                self.alternate(name, &|t| Ok(env.null(t, "macswap", 64, "xmemhuge"))),
            ),
            "ring" => (
                "64 frames looping through a ring pair, io".into(),
                self.alternate(name, &|t| env.ring(t, 64).map_err(|e| e.to_string())),
            ),
            veth => {
                let (driver, idle) = match veth.strip_suffix("-veth-idle") {
                    Some(d) => (d.to_string(), scenario::IDLE_SLEEP_US),
                    None => (veth.trim_end_matches("-veth").to_string(), 0),
                };
                let what = match idle {
                    0 => format!(
                        "veth gen→dut→sink, {} io, 64 B",
                        driver.to_uppercase()
                    ),
                    us => format!(
                        "as {driver}-veth, xfwd --idle-sleep {us} (testpmd busy-polls: it has no idle mode)"
                    ),
                };
                match Topology::up(&self.env.root) {
                    Ok(topo) => (
                        what,
                        self.alternate(name, &|t| {
                            topo.ensure_up().map_err(|e| format!("topology: {e}"))?;
                            Ok(env.veth(t, &driver, "io", idle))
                        }),
                    ),
                    Err(e) => {
                        let s = Side {
                            status: "failed".into(),
                            reason: format!("topology: {e}"),
                            ..Side::default()
                        };
                        (what, (s.clone(), s))
                    }
                }
            }
        };
        ScenarioResult::new(name, &what, ours, peer)
    }

    fn sweep(&self) -> Vec<SweepPoint> {
        let sizes: &[u32] = if self.o.quick {
            &[64, 1518]
        } else {
            &[64, 128, 256, 512, 1024, 1518]
        };
        let mut pts = Vec::new();
        // One run per point, shorter: the sweep shows a shape, not a ratio.
        let mut env = self.env.clone();
        env.measure = env.measure.min(2.0);
        let env = &env;
        let scs: &[&str] = if self.o.quick {
            &["null-io"]
        } else {
            &["null-io", "ring"]
        };
        for &sc in scs {
            for &size in sizes {
                let mut vals = [None, None];
                let mut noisy = false;
                for (i, tool) in [Tool::Xfwd, Tool::Testpmd].into_iter().enumerate() {
                    let spec = if sc == "ring" {
                        env.ring(tool, size).ok()
                    } else {
                        Some(env.null(tool, "io", size, "native"))
                    };
                    if let Some(spec) = spec {
                        let t = self.trial(&spec, &format!("sweep {sc} {size} B {tool:?}"));
                        noisy |= t.status == "noisy";
                        vals[i] = (t.packets > 0 && (t.status == "ok" || t.status == "noisy"))
                            .then_some(t.mpps);
                    }
                }
                pts.push(SweepPoint {
                    scenario: sc.into(),
                    size,
                    ours: vals[0],
                    peer: vals[1],
                    noisy,
                });
            }
        }
        pts
    }

    /// xfwd txonly → ring → rxonly with a fraction of generator bursts
    /// refused (fault:tx_full), measuring latency from generator stamps.
    fn latency(&mut self) -> Vec<LatencyPoint> {
        let loads: &[f64] = if self.o.quick {
            &[0.0]
        } else {
            &[0.99, 0.95, 0.9, 0.75, 0.5, 0.0]
        };
        let mut pts = Vec::new();
        for &p in loads {
            let cfg = self.env.out.join(format!("latency-{p}.toml"));
            let text = format!(
                "# generated by xfwd-bench: txonly → ring → rxonly, {p} of generator bursts refused\n\
                 [pool]\nnb_mbufs = 8192\nmbcache = 256\n[fwd]\nlcores = \"{m},{f}\"\nburst = 32\ntx_retry = 0\nlatency = true\n\
                 [txonly]\npkt_len = 64\nflows = 16\n\
                 [[port]]\ndevargs = \"fault:seed=1,tx_full={p},inner=ring:xblat\"\n[[port]]\ndevargs = \"ring:xblat\"\n\
                 [[lcore]]\nid = {m}\nmode = \"txonly\"\nstreams = [{{ tx = \"0.0\" }}]\n\
                 [[lcore]]\nid = {f}\nmode = \"rxonly\"\nstreams = [{{ rx = \"1.0\" }}]\n",
                m = self.env.main_cpu,
                f = self.env.fwd_cpu
            );
            if let Err(e) = std::fs::write(&cfg, text) {
                self.notes.push(format!("latency: {e}"));
                return pts;
            }
            let dur = format!("{}", (self.env.warmup + self.env.measure + 30.0).ceil());
            let argv = vec![
                self.env.xfwd.display().to_string(),
                "--config".into(),
                cfg.display().to_string(),
                "--stats-period".into(),
                "1".into(),
                "--json".into(),
                "--duration".into(),
                dur,
            ];
            let spec = runner::TrialSpec {
                tool: Tool::Xfwd,
                fwd: Cmd::new(argv),
                nports: 2,
                gen: None,
                counter: runner::Counter::Forwarder,
                warmup: self.env.warmup,
                measure: self.env.measure,
                noise_limit_pct: self.env.noise_limit_pct,
            };
            let t = self.trial(&spec, &format!("latency refuse={p}"));
            let Some(l) = t.latency.as_ref() else {
                self.notes.push(format!(
                    "latency at refuse={p}: no latency samples ({} {})",
                    t.status, t.reason
                ));
                continue;
            };
            let g = |k: &str| l[k].as_u64().unwrap_or(0);
            // Only port1 receives: the RX total is the received rate.
            pts.push(LatencyPoint {
                load: format!("refuse {p} of bursts"),
                mpps: t.mpps,
                p50_ns: g("p50_ns"),
                p90_ns: g("p90_ns"),
                p99_ns: g("p99_ns"),
                p999_ns: g("p999_ns"),
                max_ns: g("max_ns"),
                noisy: t.status == "noisy",
            });
        }
        pts
    }
}

impl Bench {
    /// With xfwd `--tx-rate`: RFC 2544 zero-loss rate of the ring path
    /// (repeated), then latency at 10/50/90 % of it.
    fn rate_based(&mut self) -> (Vec<Rfc2544Outcome>, Vec<LatencyPoint>) {
        let mut path = RingPath {
            xfwd: self.env.xfwd.clone(),
            out: self.env.out.clone(),
            gen_cpu: self.env.main_cpu,
            rx_cpu: self.env.fwd_cpu,
            // RFC 2544's 64 B frame counts the FCS: 60 B from xfwd.
            frame: 60,
            mix: None,
        };
        let max = SearchConfig::line_rate_pps(10.0, 64.0);
        let cfg = SearchConfig {
            max_pps: max,
            resolution_pps: max / 100.0,
            trial_secs: if self.o.quick { 0.5 } else { 1.0 },
            loss_tolerance: 0.0,
            max_trials: 12,
            // The quick smoke run takes a failure after one repeat.
            retries: if self.o.quick { 1 } else { 3 },
        };
        let reps = if self.o.quick { 1 } else { 3 };
        let mut out = Rfc2544Outcome::new(
            "xfwd txonly --tx-rate → ring → rxonly",
            None,
            64,
            &cfg,
            format!(
                "a failed trial is repeated (up to {} times) when xfwd's stall counter shows the rx lcore off-CPU longer than the rings buffer at that rate ({} descriptors), or other processes or the hypervisor (steal) took more than {} % of the CPUs",
                cfg.retries,
                ratepath::RING_DESC,
                ratepath::OTHER_CPU_LIMIT_PCT
            ),
        );
        self.searches(&mut path, &cfg, reps, "ring", &mut out);
        let mut outs = vec![out.clone()];
        outs.push(self.imix_search(&path, &cfg, reps));
        if let Some(v) = self.veth_search(&cfg, reps) {
            outs.push(v);
        }
        let mut lat = Vec::new();
        // The lowest zero-loss rate of the repetitions (a failed one, 0,
        // does not count).
        let zl = out
            .rates_pps
            .iter()
            .copied()
            .filter(|r| *r > 0.0)
            .fold(f64::MAX, f64::min);
        if self.o.latency && zl.is_finite() && zl > 0.0 && zl < f64::MAX {
            for pct in [10.0, 50.0, 90.0] {
                let rate = zl * pct / 100.0;
                match path.run(rate, self.env.measure.max(1.0)) {
                    Ok(t) => {
                        let l = &t.latency;
                        let g = |k: &str| l[k].as_u64().unwrap_or(0);
                        eprintln!(
                            "    latency at {pct} %: p50 {} ns p99 {} ns",
                            g("p50_ns"),
                            g("p99_ns")
                        );
                        let secs = self.env.measure.max(1.0);
                        lat.push(LatencyPoint {
                            load: format!("{pct:.0} % of zero-loss ({:.3} Mpps)", rate / 1e6),
                            mpps: t.received as f64 / secs / 1e6,
                            p50_ns: g("p50_ns"),
                            p90_ns: g("p90_ns"),
                            p99_ns: g("p99_ns"),
                            p999_ns: g("p999_ns"),
                            max_ns: g("max_ns"),
                            noisy: false,
                        });
                    }
                    Err(e) => self
                        .notes
                        .push(format!("latency at {pct} % of zero-loss: {e}")),
                }
            }
        }
        outs.retain(|o| !o.rates_pps.is_empty());
        (outs, lat)
    }
}

impl Bench {
    /// RFC 2544 on the ring path with the simple IMIX (xfwd `--tx-mix
    /// imix`), bounded by 10 GbE's line rate for the mix's mean frame.
    fn imix_search(&mut self, ring: &RingPath, cfg: &SearchConfig, reps: usize) -> Rfc2544Outcome {
        // 60/590/1514 B + FCS at 7:4:1.
        let mean = (7.0 * 64.0 + 4.0 * 594.0 + 1518.0) / 12.0;
        let max = SearchConfig::line_rate_pps(10.0, mean);
        let c = SearchConfig {
            max_pps: max,
            resolution_pps: max / 100.0,
            ..*cfg
        };
        let mut path = RingPath {
            mix: Some("imix".into()),
            ..ring.clone()
        };
        let mut out = Rfc2544Outcome::new(
            "xfwd txonly --tx-rate --tx-mix imix → ring → rxonly",
            Some(format!(
                "simple IMIX 64:7,594:4,1518:1 B with FCS (mean {mean:.1} B)"
            )),
            mean.round() as u32,
            &c,
            "as the 64 B ring search".into(),
        );
        self.searches(&mut path, &c, reps.min(2), "ring-imix", &mut out);
        out
    }

    /// `reps` searches on `path`, recorded in `out`.
    fn searches(
        &mut self,
        path: &mut dyn rfc2544::Dut,
        cfg: &SearchConfig,
        reps: usize,
        name: &str,
        out: &mut Rfc2544Outcome,
    ) {
        // The platform's noise on this path: its capacity, a few times (not
        // in the quick smoke run: one search states no agreement anyway).
        let n = if self.o.quick { 0 } else { reps.max(2) };
        for _ in 0..n {
            match path.trial(cfg.max_pps, cfg.trial_secs) {
                Ok(t) => out.capacity_pps.push(t.received as f64 / cfg.trial_secs),
                Err(e) => self.notes.push(format!("capacity of the {name} path: {e}")),
            }
        }
        eprintln!(
            "    {name} path capacity: {:?} Mpps",
            out.capacity_pps
                .iter()
                .map(|v| (v / 1e4).round() / 100.0)
                .collect::<Vec<_>>()
        );
        for i in 0..reps {
            match rfc2544::search(path, cfg) {
                Ok(t) => {
                    eprintln!(
                        "    rfc2544 {name} #{}: zero-loss {:.3} Mpps{} in {} trials ({} repeated)",
                        i + 1,
                        t.rate_pps / 1e6,
                        if t.tester_limited {
                            " (tester-limited)"
                        } else {
                            ""
                        },
                        t.steps.len(),
                        t.repeated()
                    );
                    out.rates_pps.push(t.rate_pps);
                    out.tester_limited.push(t.tester_limited);
                    out.steps.push(t.steps);
                }
                Err(e) => self
                    .notes
                    .push(format!("RFC 2544 search on the {name} path failed: {e}")),
            }
        }
    }

    /// RFC 2544 on the veth path: xfwd txonly --tx-rate (AF_PACKET on g0)
    /// → xfwd io (AF_PACKET d0 → d1) → counted at s1.
    fn veth_search(&mut self, cfg: &SearchConfig, reps: usize) -> Option<Rfc2544Outcome> {
        let topo = match Topology::up(&self.env.root) {
            Ok(t) => t,
            Err(e) => {
                self.notes.push(format!("RFC 2544 veth: topology: {e}"));
                return None;
            }
        };
        let ns = |n: &str| format!("{}-{n}", scenario::TOPO);
        let spawn = |argv: Vec<String>, netns: String| {
            Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(&argv)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        };
        let sink = spawn(vec!["sleep".into(), "600".into()], ns("sink"));
        let l = self.env.fwd_cpu.to_string();
        let dut = spawn(
            [
                &self.env.xfwd.display().to_string(),
                "--port",
                "af_packet:iface=d0",
                "--port",
                "af_packet:iface=d1",
                "--forward-mode",
                "io",
                "-l",
                &l,
                "--nb-mbufs",
                "16384",
                "--duration",
                "300",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
            ns("dut"),
        );
        let (Ok(mut sink), Ok(mut dut)) = (sink, dut) else {
            self.notes
                .push("RFC 2544 veth: could not start the DUT or the sink process".into());
            return None;
        };
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let mut path = ratepath::VethPath {
            xfwd: self.env.xfwd.clone(),
            driver: "af_xdp".into(),
            gen_ns: ns("gen"),
            gen_cpu: self.env.main_cpu,
            sink_pid: sink.id(),
            frame: 60,
        };
        // veth forwards well under a million frames per second here: bound
        // the search at 2 Mpps so the resolution stays meaningful.
        let c = SearchConfig {
            max_pps: 2e6,
            resolution_pps: 2e6 / 200.0,
            ..*cfg
        };
        let mut out = Rfc2544Outcome::new(
            "xfwd txonly --tx-rate (af_xdp g0) → xfwd io af_packet d0→d1 → s1",
            None,
            64,
            &c,
            "none: trials are taken as they are (the DUT runs in its own process; its stalls are not read)"
                .into(),
        );
        self.searches(&mut path, &c, reps, "veth", &mut out);
        runner::stop(&mut dut, std::time::Duration::from_secs(10));
        runner::stop(&mut sink, std::time::Duration::from_secs(2));
        drop(topo);
        Some(out)
    }
}

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
    let (rfc, latency) = if ratepath::supports_tx_rate(&b.env.xfwd) {
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
