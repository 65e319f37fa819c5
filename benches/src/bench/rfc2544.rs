//! RFC 2544 §26.1 throughput: the highest offered rate at which the device
//! under test forwards every frame, found by binary search over trials.
//!
//! The search is written against [`Dut`] — "offer `rate` packets per second
//! for `secs` seconds, tell me (sent, received)" — so it runs against any
//! generator that can hold a rate. xfwd's `txonly` cannot yet (it needs a
//! rate limiter: `--tx-rate PPS`, see the harness README section), so today
//! it is exercised by the simulated DUTs of the tests below.

/// A trial runner.
pub trait Dut {
    /// Offer `rate_pps` for `secs`; return `(sent, received)`.
    ///
    /// # Errors
    /// Why the trial could not run.
    fn trial(&mut self, rate_pps: f64, secs: f64) -> Result<(u64, u64), String>;
}

/// Search parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchConfig {
    /// Highest rate tried (the link's line rate for the frame size).
    pub max_pps: f64,
    /// Stop when the pass/fail interval is narrower than this (pps).
    pub resolution_pps: f64,
    /// Seconds per trial (RFC 2544: 60; shorter for a quick look).
    pub trial_secs: f64,
    /// Lost fraction still counted as a pass (RFC 2544: 0).
    pub loss_tolerance: f64,
    /// Upper bound on the number of trials.
    pub max_trials: usize,
}

impl SearchConfig {
    /// Line rate of a `gbps` link for `frame` bytes: the search's upper bound
    /// (20 B of preamble, delimiter and inter-frame gap per frame).
    pub fn line_rate_pps(gbps: f64, frame: u32) -> f64 {
        gbps * 1e9 / ((f64::from(frame) + 20.0) * 8.0)
    }
}

/// One trial of the search.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Step {
    /// Offered rate.
    pub rate_pps: f64,
    /// Frames the generator sent.
    pub sent: u64,
    /// Frames that came back.
    pub received: u64,
    /// The generator reached the rate (sent ≥ 95 % of rate × duration).
    pub offered_ok: bool,
    /// Within the loss tolerance and the rate was really offered.
    pub pass: bool,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Throughput {
    /// Highest passing rate (0 when even the lowest rate lost frames).
    pub rate_pps: f64,
    /// Every trial in order.
    pub steps: Vec<Step>,
}

fn step(dut: &mut dyn Dut, rate: f64, cfg: &SearchConfig) -> Result<Step, String> {
    let (sent, received) = dut.trial(rate, cfg.trial_secs)?;
    if sent == 0 {
        return Err(format!("the generator sent nothing at {rate:.0} pps"));
    }
    let lost = sent.saturating_sub(received) as f64 / sent as f64;
    // A generator that cannot hold the rate offered less than asked: the
    // DUT did not pass at this rate (RFC 2544 counts offered frames).
    let offered_ok = sent as f64 >= 0.95 * rate * cfg.trial_secs;
    Ok(Step {
        rate_pps: rate,
        sent,
        received,
        offered_ok,
        pass: offered_ok && lost <= cfg.loss_tolerance,
    })
}

/// Binary search for the zero-loss rate: the line rate first, then halve
/// the interval between the highest pass and the lowest fail until it is
/// narrower than the resolution.
///
/// # Errors
/// A bad configuration or a trial that could not run.
pub fn search(dut: &mut dyn Dut, cfg: &SearchConfig) -> Result<Throughput, String> {
    if !(cfg.max_pps > 0.0
        && cfg.resolution_pps > 0.0
        && cfg.trial_secs > 0.0
        && cfg.max_trials > 0)
    {
        return Err(format!(
            "bad search configuration {cfg:?}: rates, resolution, duration and trials must be > 0"
        ));
    }
    let mut steps = Vec::new();
    let first = step(dut, cfg.max_pps, cfg)?;
    steps.push(first);
    if first.pass {
        return Ok(Throughput {
            rate_pps: cfg.max_pps,
            steps,
        });
    }
    let (mut lo, mut hi) = (0.0f64, cfg.max_pps);
    while hi - lo > cfg.resolution_pps && steps.len() < cfg.max_trials {
        let mid = (lo + hi) / 2.0;
        let s = step(dut, mid, cfg)?;
        steps.push(s);
        if s.pass {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Throughput {
        rate_pps: lo,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards up to `cap` pps; above that the excess is lost. `jitter`
    /// loses a few frames at random just below capacity, as a real DUT does.
    struct SimDut {
        cap: f64,
        calls: usize,
        seed: u64,
        jitter: f64,
    }

    impl Dut for SimDut {
        fn trial(&mut self, rate: f64, secs: f64) -> Result<(u64, u64), String> {
            self.calls += 1;
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((self.seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * self.jitter;
            let cap = self.cap * (1.0 + noise);
            let sent = (rate * secs) as u64;
            let recv = sent.min((cap * secs) as u64);
            Ok((sent, recv))
        }
    }

    fn cfg(max: f64) -> SearchConfig {
        SearchConfig {
            max_pps: max,
            resolution_pps: max / 1000.0,
            trial_secs: 1.0,
            loss_tolerance: 0.0,
            max_trials: 40,
        }
    }

    #[test]
    fn finds_the_capacity_within_the_resolution() {
        let max = SearchConfig::line_rate_pps(10.0, 64);
        let mut d = SimDut {
            cap: 3.3e6,
            calls: 0,
            seed: 1,
            jitter: 0.0,
        };
        let t = search(&mut d, &cfg(max)).unwrap();
        assert!(
            t.rate_pps <= 3.3e6 && t.rate_pps >= 3.3e6 - max / 1000.0,
            "{}",
            t.rate_pps
        );
        assert_eq!(t.steps.len(), d.calls);
        assert!(t.steps.len() <= 12, "{} trials", t.steps.len());
        // Every passing step is below every failing one.
        let maxpass = t
            .steps
            .iter()
            .filter(|s| s.pass)
            .map(|s| s.rate_pps)
            .fold(0.0, f64::max);
        let minfail = t
            .steps
            .iter()
            .filter(|s| !s.pass)
            .map(|s| s.rate_pps)
            .fold(f64::MAX, f64::min);
        assert!(maxpass < minfail);
    }

    #[test]
    fn a_dut_faster_than_the_link_passes_at_line_rate_in_one_trial() {
        let mut d = SimDut {
            cap: 1e9,
            calls: 0,
            seed: 1,
            jitter: 0.0,
        };
        let t = search(&mut d, &cfg(14_880_952.0)).unwrap();
        assert_eq!((t.rate_pps, t.steps.len()), (14_880_952.0, 1));
    }

    #[test]
    fn a_dut_that_always_loses_gets_zero() {
        let mut d = SimDut {
            cap: 0.0,
            calls: 0,
            seed: 1,
            jitter: 0.0,
        };
        let t = search(&mut d, &cfg(1e6)).unwrap();
        assert_eq!(t.rate_pps, 0.0);
        assert!(t.steps.iter().all(|s| !s.pass));
    }

    #[test]
    fn a_noisy_dut_is_found_within_its_noise_and_the_tolerance_helps() {
        let mut d = SimDut {
            cap: 5e6,
            calls: 0,
            seed: 7,
            jitter: 0.02,
        };
        let t = search(&mut d, &cfg(14.88e6)).unwrap();
        assert!(
            (t.rate_pps - 5e6).abs() <= 5e6 * 0.02 + 14.88e6 / 1000.0,
            "{}",
            t.rate_pps
        );
        let mut c = cfg(14.88e6);
        c.loss_tolerance = 0.05;
        let t2 = search(
            &mut SimDut {
                cap: 5e6,
                calls: 0,
                seed: 7,
                jitter: 0.02,
            },
            &c,
        )
        .unwrap();
        assert!(t2.rate_pps >= t.rate_pps);
    }

    #[test]
    fn a_generator_short_of_the_rate_is_not_a_pass() {
        /// Lossless DUT behind a generator that tops out at 1 Mpps.
        struct SlowGen;
        impl Dut for SlowGen {
            fn trial(&mut self, rate: f64, secs: f64) -> Result<(u64, u64), String> {
                let n = (rate.min(1e6) * secs) as u64;
                Ok((n, n))
            }
        }
        let t = search(&mut SlowGen, &cfg(2e6)).unwrap();
        assert!(!t.steps[0].offered_ok && !t.steps[0].pass);
        assert!(
            t.rate_pps <= 1e6 / 0.95 && t.rate_pps >= 1e6 - 2e6 / 1000.0,
            "{}",
            t.rate_pps
        );
    }

    #[test]
    fn bad_configs_and_dead_generators_are_errors() {
        let mut d = SimDut {
            cap: 1.0,
            calls: 0,
            seed: 1,
            jitter: 0.0,
        };
        let mut c = cfg(1e6);
        c.resolution_pps = 0.0;
        assert!(search(&mut d, &c).unwrap_err().contains("resolution"));
        struct Dead;
        impl Dut for Dead {
            fn trial(&mut self, _: f64, _: f64) -> Result<(u64, u64), String> {
                Ok((0, 0))
            }
        }
        assert!(search(&mut Dead, &cfg(1e6))
            .unwrap_err()
            .contains("sent nothing"));
    }
}
