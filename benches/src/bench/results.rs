//! The result model written to `results.json` and read back to render the
//! report: per scenario, every trial of both tools and their summaries.

use super::procfs::Machine;
use super::rfc2544::Step;
use super::runner::Trial;
use serde::{Deserialize, Serialize};

/// min / median / max of the accepted runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Runs summarised.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (lower middle of an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarise `v` (n = 0 when empty).
    pub fn of(v: &[f64]) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        Summary {
            n: s.len(),
            min: s[0],
            median: s[(s.len() - 1) / 2],
            max: s[s.len() - 1],
        }
    }
}

/// One tool's side of a scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Side {
    /// "ok", "noisy" (no quiet run: figures from noisy runs), "failed" or
    /// "unavailable".
    pub status: String,
    /// Why not ok.
    #[serde(default)]
    pub reason: String,
    /// Forwarded Mpps.
    pub mpps: Summary,
    /// Offered Mpps (veth scenarios).
    pub offered_mpps: Option<Summary>,
    /// Forwarder CPU ns per packet.
    pub cpu_ns_per_pkt: Summary,
    /// Tool-reported cycles per packet.
    pub cycles_per_pkt: Option<Summary>,
    /// Every measured run, the warm-up run excluded, noisy ones included.
    pub runs: Vec<serde_json::Value>,
}

impl Side {
    /// Summarise trials: quiet runs if any, else the noisy ones (flagged).
    pub fn from_trials(trials: &[Trial]) -> Side {
        let runs = trials
            .iter()
            .map(|t| serde_json::to_value(t).unwrap_or_default())
            .collect();
        let ok: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.status == "ok" && t.packets > 0)
            .collect();
        let noisy: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.status == "noisy" && t.packets > 0)
            .collect();
        let (use_, status) = if !ok.is_empty() {
            (ok, "ok")
        } else if !noisy.is_empty() {
            (noisy, "noisy")
        } else {
            let last = trials.last();
            let st = last
                .map(|t| t.status.as_str())
                .filter(|s| *s == "unavailable")
                .unwrap_or("failed");
            return Side {
                status: st.into(),
                reason: last
                    .map(|t| t.reason.clone())
                    .unwrap_or_else(|| "not run".into()),
                runs,
                ..Side::default()
            };
        };
        let f = |g: &dyn Fn(&Trial) -> Option<f64>| {
            let v: Vec<f64> = use_.iter().filter_map(|t| g(t)).collect();
            (!v.is_empty()).then(|| Summary::of(&v))
        };
        Side {
            status: status.into(),
            reason: String::new(),
            mpps: f(&|t| Some(t.mpps)).unwrap_or_default(),
            offered_mpps: f(&|t| t.offered_mpps),
            cpu_ns_per_pkt: f(&|t| Some(t.cpu_ns_per_pkt)).unwrap_or_default(),
            cycles_per_pkt: f(&|t| t.cycles_per_pkt),
            runs,
        }
    }
}

/// A scenario: both sides and the ratio of medians.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Name (`null-io`, …).
    pub name: String,
    /// What it measures.
    pub what: String,
    /// xfwd.
    pub ours: Side,
    /// dpdk-testpmd.
    pub peer: Side,
    /// ours / peer of the median Mpps, when both have figures.
    pub ratio: Option<f64>,
}

impl ScenarioResult {
    /// Build with the ratio filled in.
    pub fn new(name: &str, what: &str, ours: Side, peer: Side) -> ScenarioResult {
        let usable = |s: &Side| (s.status == "ok" || s.status == "noisy") && s.mpps.median > 0.0;
        let ratio = (usable(&ours) && usable(&peer)).then(|| ours.mpps.median / peer.mpps.median);
        ScenarioResult {
            name: name.into(),
            what: what.into(),
            ours,
            peer,
            ratio,
        }
    }
}

/// One point of the frame-size sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// `null-io` or `ring`.
    pub scenario: String,
    /// Frame size, bytes.
    pub size: u32,
    /// xfwd Mpps (median of its runs), None if it failed.
    pub ours: Option<f64>,
    /// testpmd Mpps.
    pub peer: Option<f64>,
    /// Any run noisy.
    pub noisy: bool,
}

/// One point of latency vs offered load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyPoint {
    /// The load knob: `refuse 0.9` (fraction of generator bursts refused)
    /// or `50 % of PDR` (xfwd `--tx-rate`).
    #[serde(default)]
    pub load: String,
    /// Received Mpps.
    pub mpps: f64,
    /// Smallest latency (ns; 0 in results from before it was recorded).
    #[serde(default)]
    pub min_ns: u64,
    /// Mean latency (ns; 0 in results from before it was recorded).
    #[serde(default)]
    pub mean_ns: f64,
    /// p50, p90, p99, p99.9, max in ns.
    pub p50_ns: u64,
    /// p90.
    pub p90_ns: u64,
    /// p99.
    pub p99_ns: u64,
    /// p99.9.
    pub p999_ns: u64,
    /// max.
    pub max_ns: u64,
    /// The run was noisy.
    pub noisy: bool,
}

/// Everything in `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// The command line that produced this.
    pub command: String,
    /// Quick mode.
    pub quick: bool,
    /// Runs per tool per scenario (after the warm-up run).
    pub runs: usize,
    /// Warm-up and measured seconds per run.
    pub warmup_s: f64,
    /// Measured seconds.
    pub measure_s: f64,
    /// Noise limit, % of one CPU used by other processes.
    pub noise_limit_pct: f64,
    /// Wall time of the whole harness, s.
    pub wall_s: f64,
    /// Scenarios.
    pub scenarios: Vec<ScenarioResult>,
    /// Frame-size sweep.
    pub sweep: Vec<SweepPoint>,
    /// Latency vs load (xfwd txonly → ring → rxonly).
    pub latency: Vec<LatencyPoint>,
    /// RFC 2544 throughput searches (xfwd txonly `--tx-rate` → ring → rxonly).
    #[serde(default)]
    pub rfc2544: Vec<Rfc2544Outcome>,
    /// Notes (skipped parts and why).
    pub notes: Vec<String>,
}

/// One RFC 2544 search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rfc2544Outcome {
    /// The path searched.
    pub path: String,
    /// The frame-size mix, when not one size (`frame` is then its mean).
    #[serde(default)]
    pub mix: Option<String>,
    /// Frame length, bytes.
    pub frame: u32,
    /// Seconds per trial.
    pub trial_s: f64,
    /// Upper bound (line rate), pps.
    pub max_pps: f64,
    /// Resolution, pps.
    pub resolution_pps: f64,
    /// Zero-loss rate (NDR) of each repetition, pps.
    pub rates_pps: Vec<f64>,
    /// Partial-drop rate (PDR: loss ≤ `pdr_loss`) of each repetition, pps,
    /// from the same trials as `rates_pps` (empty in results from before
    /// it was searched).
    #[serde(default)]
    pub pdr_pps: Vec<f64>,
    /// Per repetition: the PDR is the tester's (as `tester_limited`).
    #[serde(default)]
    pub pdr_tester_limited: Vec<bool>,
    /// PDR's loss tolerance (a fraction; 0 when PDR was not searched).
    #[serde(default)]
    pub pdr_loss: f64,
    /// Per repetition: the path forwarded all the generator could offer
    /// (the rate is the tester's, a lower bound for the path).
    #[serde(default)]
    pub tester_limited: Vec<bool>,
    /// Trials of each repetition, repeated (disturbed) ones included.
    pub steps: Vec<Vec<Step>>,
    /// How a disturbed trial is recognised and how often it is repeated.
    #[serde(default)]
    pub noise_rule: String,
    /// The path's capacity measured in the same run (received pps with the
    /// generator at the bound), a few times: how much the platform itself
    /// varies.
    #[serde(default)]
    pub capacity_pps: Vec<f64>,
}

/// (max − min) / max of `v` in %; None with fewer than two values or a max of 0.
fn spread_pct(v: &[f64]) -> Option<f64> {
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    (v.len() > 1 && hi > 0.0).then(|| 100.0 * (hi - lo) / hi)
}

impl Rfc2544Outcome {
    /// An outcome to fill: searches of `path` under `cfg`.
    pub fn new(
        path: &str,
        mix: Option<String>,
        frame: u32,
        cfg: &super::rfc2544::SearchConfig,
        noise_rule: String,
    ) -> Rfc2544Outcome {
        Rfc2544Outcome {
            path: path.into(),
            mix,
            frame,
            trial_s: cfg.trial_secs,
            max_pps: cfg.max_pps,
            resolution_pps: cfg.resolution_pps,
            rates_pps: Vec::new(),
            pdr_pps: Vec::new(),
            pdr_tester_limited: Vec::new(),
            pdr_loss: 0.0,
            tester_limited: Vec::new(),
            steps: Vec::new(),
            noise_rule,
            capacity_pps: Vec::new(),
        }
    }

    /// Largest difference between the repetitions' rates, in % of the
    /// largest (None with fewer than two).
    pub fn spread_pct(&self) -> Option<f64> {
        spread_pct(&self.rates_pps)
    }

    /// The agreement the method promises: two searches that each end within
    /// one resolution step of the true rate differ by at most two steps
    /// (in % of the largest rate found).
    pub fn bound_pct(&self) -> Option<f64> {
        let hi = self.rates_pps.iter().copied().reduce(f64::max)?;
        (hi > 0.0).then(|| 100.0 * 2.0 * self.resolution_pps / hi)
    }

    /// How much the path's capacity varied between measurements in this run
    /// (% of the largest): the platform's own noise.
    pub fn capacity_noise_pct(&self) -> Option<f64> {
        spread_pct(&self.capacity_pps)
    }

    /// The noise the report states: the larger of the method's resolution
    /// bound and the capacity noise.
    pub fn noise_pct(&self) -> Option<f64> {
        match (self.bound_pct(), self.capacity_noise_pct()) {
            (Some(b), Some(c)) => Some(b.max(c)),
            (b, c) => b.or(c),
        }
    }

    /// Trials the host disturbed (repeated), over all repetitions.
    pub fn repeated(&self) -> usize {
        self.steps.iter().map(|s| super::rfc2544::repeated(s)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_ratio() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.n, s.min, s.median, s.max), (4, 1.0, 2.0, 10.0));
        let t = |m: f64, st: &str| Trial {
            status: st.into(),
            mpps: m,
            packets: 1,
            ..Trial::default()
        };
        let ours = Side::from_trials(&[t(2.0, "ok"), t(9.0, "noisy"), t(4.0, "ok")]);
        assert_eq!(ours.status, "ok");
        assert_eq!(ours.mpps.n, 2);
        let peer = Side::from_trials(&[t(4.0, "noisy")]);
        assert_eq!(peer.status, "noisy");
        let r = ScenarioResult::new("x", "", ours, peer);
        assert_eq!(r.ratio, Some(0.5));
        let un = Side::from_trials(&[Trial {
            status: "unavailable".into(),
            reason: "unknown driver".into(),
            ..Trial::default()
        }]);
        assert_eq!(un.status, "unavailable");
        assert!(ScenarioResult::new("y", "", un, Side::default())
            .ratio
            .is_none());
    }
}
