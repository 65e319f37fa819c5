//! Latency measurement: the generator writes a magic word and a timestamp
//! (ns since the process's clock epoch) right after the UDP header; a
//! receiving worker reads it back with one clock read per burst and records
//! the difference in its own HDR histogram (no allocation, no lock).

use hdrhistogram::Histogram;
use nix::time::{clock_gettime, ClockId};
use std::sync::OnceLock;

/// Where the stamp lives (after Ethernet + IPv4 + UDP).
pub const OFFSET: usize = 42;
const MAGIC: [u8; 8] = *b"xfwdTS\x00\x01";

/// `CLOCK_MONOTONIC` (the clock of `Instant`) in ns.
#[inline]
fn mono_ns() -> u64 {
    // CLOCK_MONOTONIC is always there on Linux (std's Instant::now panics
    // the same way if it were not).
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime(CLOCK_MONOTONIC)");
    (t.tv_sec() as u64) * 1_000_000_000 + t.tv_nsec() as u64
}

fn epoch_ns() -> u64 {
    static E: OnceLock<u64> = OnceLock::new();
    *E.get_or_init(mono_ns)
}

/// Nanoseconds since the process's clock epoch (one `clock_gettime` via
/// vDSO). Read once per busy round: plain integer ns, not
/// `Instant::elapsed` (its checked `timespec` subtraction and `Duration`
/// cost ~40 instructions per read, ~0.6 per packet of the ring loop).
#[inline]
pub fn now_ns() -> u64 {
    mono_ns().saturating_sub(epoch_ns())
}

/// Write the stamp into a frame (no-op when the frame is too short).
#[inline]
pub fn stamp(frame: &mut [u8], ns: u64) {
    if let Some(s) = frame.get_mut(OFFSET..OFFSET + 16) {
        s[..8].copy_from_slice(&MAGIC);
        s[8..].copy_from_slice(&ns.to_le_bytes());
    }
}

/// The stamp of a frame, if it carries one.
#[inline]
pub fn read(frame: &[u8]) -> Option<u64> {
    let s = frame.get(OFFSET..OFFSET + 16)?;
    if s[..8] != MAGIC {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[8..]);
    Some(u64::from_le_bytes(b))
}

/// A histogram of latencies in ns: 1 ns .. 100 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid static bounds")
}

/// Percentiles of a histogram, serialisable.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct Summary {
    /// Samples.
    pub samples: u64,
    /// Smallest (ns).
    pub min_ns: u64,
    /// Median (ns).
    pub p50_ns: u64,
    /// 90th percentile (ns).
    pub p90_ns: u64,
    /// 99th percentile (ns).
    pub p99_ns: u64,
    /// 99.9th percentile (ns).
    pub p999_ns: u64,
    /// Largest (ns).
    pub max_ns: u64,
    /// Mean (ns).
    pub mean_ns: f64,
}

impl Summary {
    /// Summarise `h`.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            samples: h.len(),
            min_ns: h.min(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_roundtrip() {
        let mut f = [0u8; 64];
        assert_eq!(read(&f), None);
        stamp(&mut f, 12345);
        assert_eq!(read(&f), Some(12345));
        assert_eq!(read(&f[..50]), None);
        stamp(&mut [0u8; 10], 1);
    }

    #[test]
    fn summary_has_min_and_mean() {
        let mut h = histogram();
        for v in [100u64, 200, 300] {
            h.record(v).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!((s.samples, s.min_ns, s.max_ns), (3, 100, 300));
        assert!((s.mean_ns - 200.0).abs() < 1.0, "{}", s.mean_ns);
        assert_eq!(Summary::of(&histogram()), Summary::default());
    }
}
