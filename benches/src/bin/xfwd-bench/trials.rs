//! Stage 3: interleaved xfwd/testpmd trials: the scenarios, the frame-size sweep
//! and the latency points.

use super::opts::Opts;
use std::time::Instant;
use xfwd_benches::bench::results::{LatencyPoint, ScenarioResult, Side, SweepPoint};
use xfwd_benches::bench::runner::{self, Cmd, Tool, Trial};
use xfwd_benches::bench::scenario::{self, Env, Topology};

pub struct Bench {
    pub env: Env,
    pub o: Opts,
    pub notes: Vec<String>,
    /// Noisy runs are rerun only before this instant (keeps the whole
    /// report under its time bound on a busy machine).
    pub rerun_until: Instant,
}

impl Bench {
    /// Run a trial, rerunning a noisy one up to `reruns` times.
    pub fn trial(&self, spec: &runner::TrialSpec, label: &str) -> Trial {
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
    pub fn alternate(
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

    pub fn scenario(&mut self, name: &str) -> ScenarioResult {
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
            "null-io-2lc" => (
                "as null-io on 2 forwarding lcores (xfwd -l 0,1; testpmd --nb-cores=2, its main lcore sharing CPU 0)".into(),
                self.alternate(name, &|t| Ok(env.two_lcores(t, env.null(t, "io", 64, "native")))),
            ),
            "ring-2lc" => (
                "as ring on 2 forwarding lcores (one stream each; frames cross CPUs)".into(),
                self.alternate(name, &|t| {
                    env.ring(t, 64)
                        .map(|s| env.two_lcores(t, s))
                        .map_err(|e| e.to_string())
                }),
            ),
            "memif" | "memif-zc" => {
                let zc = name == "memif-zc";
                (
                    if zc {
                        "2 processes over memif, zero copy (clients export their pools), io on one lcore each, 32 × 64 B looping".into()
                    } else {
                        "2 processes over memif, copy mode, io on one lcore each, 32 × 64 B looping"
                            .into()
                    },
                    self.alternate(name, &|t| Ok(env.memif(t, zc))),
                )
            }
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

    pub fn sweep(&self) -> Vec<SweepPoint> {
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
    pub fn latency(&mut self) -> Vec<LatencyPoint> {
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
                min_ns: g("min_ns"),
                mean_ns: l["mean_ns"].as_f64().unwrap_or(0.0),
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
