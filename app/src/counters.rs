//! Per-stream and per-lcore counters: plain relaxed atomics with one writer
//! (the worker), read by the main thread for stats and telemetry. No
//! read-modify-write, no lock.

use crate::fwd::{Reason, N_REASONS};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// A single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (only the owning worker calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        if n != 0 {
            self.0.store(
                self.0.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Raise the value to `n` if `n` is larger (only the owning worker).
    #[inline]
    pub fn max(&self, n: u64) {
        if n > self.0.load(Ordering::Relaxed) {
            self.0.store(n, Ordering::Relaxed);
        }
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What happened to the packets of one stream.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Received.
    pub rx: Counter,
    /// Generated (txonly/flowgen).
    pub generated: Counter,
    /// Sent.
    pub tx: Counter,
    /// Not taken by the TX queue after retries: freed.
    pub tx_dropped: Counter,
    /// Dropped by the mode (every reason): freed.
    pub malformed: Counter,
    /// Of those, per [`crate::fwd::Reason`] (by its index).
    pub drops: [Counter; N_REASONS],
    /// Forwarded with fewer layers edited than announced (5tswap).
    pub partial: Counter,
    /// Not for this mode (icmpecho) or consumed (rxonly, flowgen RX): freed.
    pub consumed: Counter,
    /// Generator bursts the pool could not serve.
    pub nombuf: Counter,
    /// 1 once the stream's generator sent its `--tx-count`.
    pub gen_done: Counter,
    /// l3fwd: dropped, no route (or no flow).
    pub no_route: Counter,
    /// l3fwd: dropped, TTL / hop limit ≤ 1.
    pub ttl_exceeded: Counter,
    /// l3fwd: dropped, IP header fails the checks.
    pub bad_header: Counter,
    /// l3fwd: dropped, neither IPv4 nor IPv6.
    pub non_ip: Counter,
    /// l3fwd: VLAN-tagged frames forwarded (tags kept).
    pub vlan: Counter,
}

/// A snapshot of [`StreamCounters`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StreamStats {
    /// Received.
    pub rx: u64,
    /// Generated.
    pub generated: u64,
    /// Sent.
    pub tx: u64,
    /// Dropped at TX.
    pub tx_dropped: u64,
    /// Dropped by the mode.
    pub malformed: u64,
    /// Of those, per reason.
    pub drops: Drops,
    /// Forwarded with fewer layers edited (5tswap).
    pub partial: u64,
    /// Consumed or ignored.
    pub consumed: u64,
    /// Generator allocation failures (bursts).
    pub nombuf: u64,
    /// l3fwd: no route.
    pub no_route: u64,
    /// l3fwd: TTL exceeded.
    pub ttl_exceeded: u64,
    /// l3fwd: bad IP header.
    pub bad_header: u64,
    /// l3fwd: not IP.
    pub non_ip: u64,
    /// l3fwd: VLAN-tagged frames forwarded.
    pub vlan: u64,
}

impl StreamCounters {
    /// Snapshot.
    pub fn read(&self) -> StreamStats {
        StreamStats {
            rx: self.rx.get(),
            generated: self.generated.get(),
            tx: self.tx.get(),
            tx_dropped: self.tx_dropped.get(),
            malformed: self.malformed.get(),
            drops: Drops(std::array::from_fn(|i| self.drops[i].get())),
            partial: self.partial.get(),
            consumed: self.consumed.get(),
            nombuf: self.nombuf.get(),
            no_route: self.no_route.get(),
            ttl_exceeded: self.ttl_exceeded.get(),
            bad_header: self.bad_header.get(),
            non_ip: self.non_ip.get(),
            vlan: self.vlan.get(),
        }
    }
}

impl std::ops::AddAssign for StreamStats {
    fn add_assign(&mut self, o: StreamStats) {
        self.rx += o.rx;
        self.generated += o.generated;
        self.tx += o.tx;
        self.tx_dropped += o.tx_dropped;
        self.malformed += o.malformed;
        self.drops += o.drops;
        self.partial += o.partial;
        self.consumed += o.consumed;
        self.nombuf += o.nombuf;
        self.no_route += o.no_route;
        self.ttl_exceeded += o.ttl_exceeded;
        self.bad_header += o.bad_header;
        self.non_ip += o.non_ip;
        self.vlan += o.vlan;
    }
}

/// Frames a mode dropped, per [`Reason`]; serialized as a map from the
/// reason's name to its count (zeros left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops(pub [u64; N_REASONS]);

impl Drops {
    /// The count for `r`.
    pub fn get(&self, r: Reason) -> u64 {
        self.0[r.index()]
    }

    /// Non-zero counts with their names.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

impl std::ops::AddAssign for Drops {
    fn add_assign(&mut self, o: Drops) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
}

impl Serialize for Drops {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.nonzero() {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

/// Where an lcore's time goes.
#[derive(Debug, Default)]
pub struct LcoreCounters {
    /// Nanoseconds in loop iterations that moved packets.
    pub busy_ns: Counter,
    /// Nanoseconds in iterations that found nothing.
    pub idle_ns: Counter,
    /// Packets handled (received + generated).
    pub packets: Counter,
    /// Loop iterations.
    pub loops: Counter,
    /// Longest time between two consecutive loop iterations (ns) among the
    /// stalls: how long the lcore was away (preempted, interrupted) at
    /// worst; 0 when no gap reached [`STALL_NS`].
    pub max_gap_ns: Counter,
    /// Iterations that started more than [`STALL_NS`] after the previous one
    /// (after an idle sleep: woke that much later than asked).
    pub stalls: Counter,
    /// Idle sleeps (`--idle-sleep`).
    pub sleeps: Counter,
    /// Nanoseconds asleep in them.
    pub slept_ns: Counter,
    /// Idle sleeps an RX interrupt ended early (memif's eventfd).
    pub intr_wakes: Counter,
    /// Latency buckets, published every 100 ms (`--metrics`).
    pub latency: crate::control::metrics::LatencyBuckets,
}

/// A loop iteration this much later than the previous one is a stall: the
/// lcore did not poll for that long (it was preempted or interrupted).
pub const STALL_NS: u64 = 100_000;

/// A snapshot of [`LcoreCounters`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LcoreStats {
    /// Busy ns.
    pub busy_ns: u64,
    /// Idle ns.
    pub idle_ns: u64,
    /// Packets.
    pub packets: u64,
    /// Iterations.
    pub loops: u64,
    /// Longest gap between iterations (ns).
    pub max_gap_ns: u64,
    /// Gaps over [`STALL_NS`].
    pub stalls: u64,
    /// Idle sleeps.
    pub sleeps: u64,
    /// Nanoseconds asleep.
    pub slept_ns: u64,
    /// Idle sleeps an RX interrupt ended early.
    pub intr_wakes: u64,
}

impl LcoreCounters {
    /// Snapshot.
    pub fn read(&self) -> LcoreStats {
        LcoreStats {
            busy_ns: self.busy_ns.get(),
            idle_ns: self.idle_ns.get(),
            packets: self.packets.get(),
            loops: self.loops.get(),
            max_gap_ns: self.max_gap_ns.get(),
            stalls: self.stalls.get(),
            sleeps: self.sleeps.get(),
            slept_ns: self.slept_ns.get(),
            intr_wakes: self.intr_wakes.get(),
        }
    }
}
