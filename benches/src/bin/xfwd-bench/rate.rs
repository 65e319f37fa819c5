//! Stage 4: rate-based runs: RFC 2544 searches for the no-drop and the
//! partial-drop rate (NDR, PDR; ring path at 64 B and IMIX, the veth path)
//! and latency at 10/50/90 % of the ring path's PDR.

use std::process::Command;
use xfwd_benches::bench::ratepath::{self, RingPath};
use xfwd_benches::bench::results::{LatencyPoint, Rfc2544Outcome};
use xfwd_benches::bench::rfc2544::{self, SearchConfig};
use xfwd_benches::bench::runner::{self};
use xfwd_benches::bench::scenario::{self, Topology};

use super::trials::Bench;

impl Bench {
    /// With xfwd `--tx-rate`: RFC 2544 NDR and PDR of the ring path
    /// (repeated), then latency at 10/50/90 % of its PDR (as FD.io CSIT
    /// reports it).
    pub fn rate_based(&mut self) -> (Vec<Rfc2544Outcome>, Vec<LatencyPoint>) {
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
        // The lowest partial-drop rate of the repetitions (a failed one, 0,
        // does not count).
        let zl = out
            .pdr_pps
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
                            "    latency at {pct} % of PDR: min {} p50 {} p99 {} ns",
                            g("min_ns"),
                            g("p50_ns"),
                            g("p99_ns")
                        );
                        let secs = self.env.measure.max(1.0);
                        lat.push(LatencyPoint {
                            load: format!("{pct:.0} % of PDR ({:.3} Mpps)", rate / 1e6),
                            mpps: t.received as f64 / secs / 1e6,
                            min_ns: g("min_ns"),
                            mean_ns: l["mean_ns"].as_f64().unwrap_or(0.0),
                            p50_ns: g("p50_ns"),
                            p90_ns: g("p90_ns"),
                            p99_ns: g("p99_ns"),
                            p999_ns: g("p999_ns"),
                            max_ns: g("max_ns"),
                            noisy: false,
                        });
                    }
                    Err(e) => self.notes.push(format!("latency at {pct} % of PDR: {e}")),
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
    pub fn imix_search(
        &mut self,
        ring: &RingPath,
        cfg: &SearchConfig,
        reps: usize,
    ) -> Rfc2544Outcome {
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
    pub fn searches(
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
        out.pdr_loss = rfc2544::PDR_LOSS;
        let tl = |t: bool| if t { " (tester-limited)" } else { "" };
        for i in 0..reps {
            match rfc2544::search_ndr_pdr(path, cfg, rfc2544::PDR_LOSS) {
                Ok(r) => {
                    eprintln!(
                        "    rfc2544 {name} #{}: NDR {:.3} Mpps{}, PDR {:.3} Mpps{} in {} trials ({} repeated)",
                        i + 1,
                        r.ndr.rate_pps / 1e6,
                        tl(r.ndr.tester_limited),
                        r.pdr.rate_pps / 1e6,
                        tl(r.pdr.tester_limited),
                        r.ndr.steps.len(),
                        r.ndr.repeated()
                    );
                    out.rates_pps.push(r.ndr.rate_pps);
                    out.tester_limited.push(r.ndr.tester_limited);
                    out.pdr_pps.push(r.pdr.rate_pps);
                    out.pdr_tester_limited.push(r.pdr.tester_limited);
                    out.steps.push(r.ndr.steps);
                }
                Err(e) => self
                    .notes
                    .push(format!("RFC 2544 search on the {name} path failed: {e}")),
            }
        }
    }

    /// RFC 2544 on the veth path: xfwd txonly --tx-rate (AF_PACKET on g0)
    /// → xfwd io (AF_PACKET d0 → d1) → counted at s1.
    pub fn veth_search(&mut self, cfg: &SearchConfig, reps: usize) -> Option<Rfc2544Outcome> {
        let topo = match Topology::up(&self.env.root) {
            Ok(t) => t,
            Err(e) => {
                self.notes.push(format!("RFC 2544 veth: topology: {e}"));
                return None;
            }
        };
        let ns = |n: &str| format!("{}-{n}", scenario::topo());
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
