//! `FaultInjector`: a port that wraps any other port and misbehaves on
//! purpose, deterministically (smoltcp's `phy::FaultInjector` for ports).
//!
//! RX: drop frames, corrupt a byte of a frame, truncate frames, return
//! short bursts (fewer frames than the caller has room for, possibly none;
//! the rest stay in the inner port). TX: "ring full" bursts that accept
//! only a prefix of the packets, possibly none (the rest stay with the
//! caller, as with a real full ring).
//!
//! Each fault kind on each queue draws from its own generator seeded from
//! `(seed, kind, queue)`, so the same seed and the same traffic give the
//! same faults, and turning one fault on does not change which frames
//! another fault hits.
//!
//! API: [`FaultInjector::wrap`]`(port, FaultConfig)`. Devargs:
//! `fault:seed=7,rx_drop=0.01,rx_corrupt=0,rx_truncate=0,rx_short=0,tx_full=0,inner=<devargs>`
//! — `inner=` must come last and takes the whole rest of the string,
//! commas included (`fault:seed=1,rx_drop=0.5,inner=pcap:rx=a.pcap,tx=b.pcap`);
//! faults nest (`inner=fault:…`), at most [`MAX_FAULT_NESTING`] deep. Rates are probabilities in `0..=1`: per
//! frame for `rx_drop`/`rx_corrupt`/`rx_truncate`, per burst for `rx_short`
//! and `tx_full`.
//!
//! The port's stats are the inner port's (what it really received and
//! sent); what was injected is in xstats: `fault_rx_dropped`,
//! `fault_rx_corrupted`, `fault_rx_truncated`, `fault_rx_short_bursts`,
//! `fault_tx_full_bursts`, `fault_tx_held` (packets refused by a "full"
//! burst).

use crate::devargs::Devargs;
use crate::dma::DmaMapper;
use crate::error::PortError;
use crate::port::{Link, Port, PortConf, PortInfo, PortQueues, RxQueue, TxQueue};
use crate::stats::PortStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use xfwd_mempool::{MbufBatch, MAX_BURST};

/// How many `fault:` wrappers one devargs string may nest (the outermost
/// counts): deeper nesting is refused with a clear error instead of
/// recursing without bound on a hostile or mistaken string.
pub const MAX_FAULT_NESTING: usize = 8;

/// What to inject and how often.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Seed of every generator.
    pub seed: u64,
    /// Probability that an RX frame is dropped.
    pub rx_drop: f64,
    /// Probability that one byte of an RX frame is changed.
    pub rx_corrupt: f64,
    /// Probability that an RX frame is cut short (at least 1 byte stays).
    pub rx_truncate: f64,
    /// Probability that an RX burst is limited to fewer frames than asked.
    pub rx_short: f64,
    /// Probability that a TX burst finds the ring "full" and sends only a
    /// prefix (possibly nothing).
    pub tx_full: f64,
}

impl FaultConfig {
    fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("rx_drop", self.rx_drop),
            ("rx_corrupt", self.rx_corrupt),
            ("rx_truncate", self.rx_truncate),
            ("rx_short", self.rx_short),
            ("tx_full", self.tx_full),
        ]
    }

    /// Check every rate is a probability.
    ///
    /// # Errors
    /// A message naming the rate.
    pub fn check(&self) -> Result<(), String> {
        for (k, v) in self.rates() {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("`{k}={v}`: expected a probability in 0..=1"));
            }
        }
        Ok(())
    }
}

/// Counts of injected faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// RX frames dropped.
    pub rx_dropped: u64,
    /// RX frames with a byte changed.
    pub rx_corrupted: u64,
    /// RX frames cut short.
    pub rx_truncated: u64,
    /// RX bursts limited.
    pub rx_short_bursts: u64,
    /// TX bursts that met a "full ring".
    pub tx_full_bursts: u64,
    /// Packets those bursts left with the caller.
    pub tx_held: u64,
}

#[derive(Debug, Default)]
struct Counters([AtomicU64; 6]);

impl Counters {
    fn add(&self, i: usize, n: u64) {
        if n != 0 {
            self.0[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn read(&self) -> FaultCounts {
        let r = |i: usize| self.0[i].load(Ordering::Relaxed);
        FaultCounts {
            rx_dropped: r(0),
            rx_corrupted: r(1),
            rx_truncated: r(2),
            rx_short_bursts: r(3),
            tx_full_bursts: r(4),
            tx_held: r(5),
        }
    }
}

/// splitmix64: small, fast, and good enough for fault decisions.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, kind: u64, queue: u64) -> Rng {
        let mut r = Rng(seed
            ^ kind.wrapping_mul(0xd1b5_4a32_d192_ed03)
            ^ queue.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Always draws, so the stream position does not depend on `p`.
    fn chance(&mut self, p: f64) -> bool {
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// A port that injects faults into another port's traffic.
#[derive(Debug)]
pub struct FaultInjector {
    inner: Box<dyn Port>,
    cfg: FaultConfig,
    devargs: String,
    counters: Arc<Counters>,
}

impl FaultInjector {
    /// Wrap `inner`.
    ///
    /// # Errors
    /// [`PortError::Config`] when a rate is not a probability.
    pub fn wrap(inner: Box<dyn Port>, cfg: FaultConfig) -> Result<FaultInjector, PortError> {
        let devargs = format!("fault:seed={},inner={}", cfg.seed, inner.info().devargs);
        cfg.check().map_err(|why| PortError::Config {
            port: devargs.clone(),
            what: "fault rate",
            value: why,
            accepted: "probabilities in 0..=1".into(),
        })?;
        Ok(FaultInjector {
            inner,
            cfg,
            devargs,
            counters: Arc::default(),
        })
    }

    /// Split `fault:k=v,…,inner=REST` into the fault settings and the inner
    /// devargs.
    ///
    /// # Errors
    /// [`PortError::Devargs`]: no `inner=`, unknown keys, bad numbers.
    pub fn parse_devargs(devargs: &str) -> Result<(FaultConfig, &str), PortError> {
        let bad = |why: String| PortError::Devargs {
            devargs: devargs.to_string(),
            why,
        };
        let s = devargs.trim();
        let body = s
            .strip_prefix("fault:")
            .ok_or_else(|| bad("expected `fault:…,inner=<devargs>`".into()))?;
        let at = [body.starts_with("inner=").then_some(0), body.find(",inner=").map(|i| i + 1)]
            .into_iter()
            .flatten()
            .min()
            .ok_or_else(|| {
                bad("a fault port needs `inner=<devargs>` last, e.g. `fault:seed=1,rx_drop=0.1,inner=null:`".into())
            })?;
        let inner = &body[at + "inner=".len()..];
        if inner.trim().is_empty() {
            return Err(bad(
                "`inner=` is empty: give the devargs of the wrapped port".into(),
            ));
        }
        let head = format!("fault:{}", body[..at].trim_end_matches(','));
        let d = Devargs::parse(&head).map_err(|_| bad(format!("cannot parse `{head}`")))?;
        if let Some(n) = &d.name {
            return Err(bad(format!("`{n}`: fault settings are key=value")));
        }
        d.check_keys(&[
            "seed",
            "rx_drop",
            "rx_corrupt",
            "rx_truncate",
            "rx_short",
            "tx_full",
        ])
        .map_err(|e| match e {
            PortError::Devargs { why, .. } => bad(why),
            e => e,
        })?;
        let rate = |k: &str| -> Result<f64, PortError> {
            match d.get(k) {
                None => Ok(0.0),
                Some(v) => match v.parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
                    _ => Err(bad(format!("`{k}={v}`: expected a probability in 0..=1"))),
                },
            }
        };
        let seed = match d.get("seed") {
            None => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| bad(format!("`seed={v}`: expected an unsigned integer")))?,
        };
        let cfg = FaultConfig {
            seed,
            rx_drop: rate("rx_drop")?,
            rx_corrupt: rate("rx_corrupt")?,
            rx_truncate: rate("rx_truncate")?,
            rx_short: rate("rx_short")?,
            tx_full: rate("tx_full")?,
        };
        Ok((cfg, inner))
    }

    /// Probe from `fault:…,inner=<devargs>` (the inner port through
    /// [`crate::probe`]).
    ///
    /// # Errors
    /// As [`FaultInjector::parse_devargs`] and the inner port's probe.
    /// More than [`MAX_FAULT_NESTING`] nested `fault:` wrappers:
    /// [`PortError::Devargs`].
    pub fn probe(devargs: &str) -> Result<FaultInjector, PortError> {
        Self::probe_nested(devargs, 1)
    }

    fn probe_nested(devargs: &str, depth: usize) -> Result<FaultInjector, PortError> {
        if depth > MAX_FAULT_NESTING {
            return Err(PortError::Devargs {
                devargs: devargs.to_string(),
                why: format!(
                    "`fault:` wrappers nest at most {MAX_FAULT_NESTING} deep; \
                     wrap the port once with the combined rates instead"
                ),
            });
        }
        let (cfg, inner) = Self::parse_devargs(devargs)?;
        let port: Box<dyn Port> = if inner.trim_start().starts_with("fault:") {
            Box::new(Self::probe_nested(inner, depth + 1)?)
        } else {
            crate::probe(inner)?
        };
        let mut f = Self::wrap(port, cfg)?;
        f.devargs = devargs.to_string();
        Ok(f)
    }

    /// The settings.
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// The wrapped port.
    pub fn inner(&self) -> &dyn Port {
        self.inner.as_ref()
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counters.read()
    }
}

impl Port for FaultInjector {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "fault",
            devargs: self.devargs.clone(),
            ..self.inner.info()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        self.inner.configure(conf)
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let q = self.inner.start()?;
        let mut out = PortQueues::default();
        for (i, rx) in q.rx.into_iter().enumerate() {
            let i = i as u64;
            out.rx.push(Box::new(FaultRx {
                inner: rx,
                cfg: self.cfg,
                drop: Rng::new(self.cfg.seed, 1, i),
                corrupt: Rng::new(self.cfg.seed, 2, i),
                truncate: Rng::new(self.cfg.seed, 3, i),
                short: Rng::new(self.cfg.seed, 4, i),
                counters: self.counters.clone(),
            }));
        }
        for (i, tx) in q.tx.into_iter().enumerate() {
            out.tx.push(Box::new(FaultTx {
                inner: tx,
                p: self.cfg.tx_full,
                rng: Rng::new(self.cfg.seed, 5, i as u64),
                held: MbufBatch::new(MAX_BURST),
                counters: self.counters.clone(),
            }));
        }
        Ok(out)
    }

    fn core(&self) -> &crate::port::PortCore {
        self.inner.core()
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.inner.stop()
    }

    fn link(&self) -> Link {
        self.inner.link()
    }

    fn stats(&self) -> PortStats {
        self.inner.stats()
    }

    fn rx_finished(&self) -> Option<bool> {
        self.inner.rx_finished()
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let c = self.counts();
        let mut x = self.inner.xstats();
        x.extend([
            ("fault_rx_dropped".to_string(), c.rx_dropped),
            ("fault_rx_corrupted".to_string(), c.rx_corrupted),
            ("fault_rx_truncated".to_string(), c.rx_truncated),
            ("fault_rx_short_bursts".to_string(), c.rx_short_bursts),
            ("fault_tx_full_bursts".to_string(), c.tx_full_bursts),
            ("fault_tx_held".to_string(), c.tx_held),
        ]);
        x
    }

    fn mapper(&self) -> Arc<dyn DmaMapper> {
        self.inner.mapper()
    }
}

#[derive(Debug)]
struct FaultRx {
    inner: Box<dyn RxQueue>,
    cfg: FaultConfig,
    drop: Rng,
    corrupt: Rng,
    truncate: Rng,
    short: Rng,
    counters: Arc<Counters>,
}

impl RxQueue for FaultRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let start = out.len();
        let room = out.room();
        if room == 0 {
            return 0;
        }
        let mut want = room;
        if self.short.chance(self.cfg.rx_short) {
            want = self.short.below(room);
            self.counters.add(3, 1);
            if want == 0 {
                return 0;
            }
        }
        let limit = out.limit();
        out.set_limit(start + want);
        let n = self.inner.rx_burst(out);
        out.set_limit(limit);
        if n == 0 {
            return 0;
        }
        let (mut dropped, mut corrupted, mut truncated) = (0u64, 0u64, 0u64);
        let mut idx = 0usize;
        let cfg = self.cfg;
        let (dr, cr, tr) = (&mut self.drop, &mut self.corrupt, &mut self.truncate);
        out.retain(|m| {
            idx += 1;
            if idx <= start {
                return true;
            }
            if dr.chance(cfg.rx_drop) {
                dropped += 1;
                return false;
            }
            if cr.chance(cfg.rx_corrupt) && m.data_len() > 0 {
                let i = cr.below(m.data_len());
                let mask = 1 + cr.below(255) as u8;
                m.data_mut()[i] ^= mask;
                corrupted += 1;
            }
            if tr.chance(cfg.rx_truncate) && m.pkt_len() > 1 {
                let last = m.segments().last().map_or(0, <[u8]>::len);
                // Keep at least one byte of the packet.
                let most = last.min(m.pkt_len() - 1);
                if most > 0 && m.trim(1 + tr.below(most)).is_ok() {
                    truncated += 1;
                }
            }
            true
        });
        self.counters.add(0, dropped);
        self.counters.add(1, corrupted);
        self.counters.add(2, truncated);
        out.len() - start
    }
}

#[derive(Debug)]
struct FaultTx {
    inner: Box<dyn TxQueue>,
    p: f64,
    rng: Rng,
    /// Packets kept away from the inner queue during a "full" burst.
    held: MbufBatch,
    counters: Arc<Counters>,
}

impl TxQueue for FaultTx {
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        let n = pkts.len();
        if n == 0 {
            return 0;
        }
        if !self.rng.chance(self.p) {
            return self.inner.tx_burst(pkts);
        }
        let k = self.rng.below(n);
        self.counters.add(4, 1);
        self.counters.add(5, (n - k) as u64);
        if k == 0 {
            return 0;
        }
        // Offer only the first k: park all, bring k back, send, then put the
        // parked rest behind what the inner queue left (order preserved).
        let limit = pkts.limit();
        self.held.append_from(pkts);
        pkts.set_limit(k);
        pkts.append_from(&mut self.held);
        let sent = self.inner.tx_burst(pkts);
        pkts.set_limit(limit);
        pkts.append_from(&mut self.held);
        sent
    }

    /// The inner queue's held-back packets go out as if it were not
    /// wrapped (without this, a wrapped AF_XDP/AF_PACKET queue kicked only
    /// when a batch filled, and under pool exhaustion its completions were
    /// never reaped: forwarding stalled).
    fn flush(&mut self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nest(depth: usize) -> String {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(&format!("fault:seed={i},inner="));
        }
        s.push_str("null:");
        s
    }

    #[derive(Debug, Default)]
    struct CountFlush(Arc<AtomicU64>);

    impl TxQueue for CountFlush {
        fn tx_burst(&mut self, _: &mut MbufBatch) -> usize {
            0
        }
        fn flush(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn flush_reaches_the_inner_queue() {
        let flushes = Arc::new(AtomicU64::new(0));
        let mut tx = FaultTx {
            inner: Box::new(CountFlush(flushes.clone())),
            p: 1.0,
            rng: Rng::new(1, 5, 0),
            held: MbufBatch::new(MAX_BURST),
            counters: Arc::default(),
        };
        tx.flush();
        tx.flush();
        assert_eq!(flushes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn nesting_is_bounded_with_a_clear_error() {
        let ok = FaultInjector::probe(&nest(MAX_FAULT_NESTING)).expect("deepest allowed");
        assert_eq!(ok.inner().info().driver, "fault");
        assert_eq!(ok.info().devargs, nest(MAX_FAULT_NESTING));
        for depth in [MAX_FAULT_NESTING + 1, 64, 10_000] {
            let e = FaultInjector::probe(&nest(depth)).expect_err("too deep");
            let text = e.to_string();
            assert!(
                matches!(e, PortError::Devargs { .. }) && text.contains("nest at most 8"),
                "depth {depth}: {text}"
            );
            // Through the generic probe too (what the config uses).
            let e = crate::probe(&nest(depth)).expect_err("too deep");
            assert!(e.to_string().contains("nest at most"), "{e}");
        }
    }
}
