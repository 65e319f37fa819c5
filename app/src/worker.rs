//! The lcore: a pinned worker thread in a run-to-completion loop. It owns
//! its RX/TX queue handles and its pool cache (moved in, never shared), and
//! per burst: receive, edit headers in place, transmit, free what is left.
//! No allocation, lock or system call per packet; the clock is read once
//! per loop iteration (so at most once per burst). With `--idle-sleep`
//! (adaptive polling) a receiving lcore whose round found nothing flushes
//! its TX queues and sleeps — blocked on its RX queues' interrupts where
//! they have them (memif), see [`crate::idle`]: a system call per empty
//! round, never per packet.

mod hooks;

use crate::control::lcore::LcoreCtl;
use crate::counters::{LcoreCounters, StreamCounters};
use crate::fwd::edit;
use crate::fwd::txgen::Generator;
use crate::fwd::{FwdMode, Verdict, N_REASONS};
use crate::idle::{IdleWait, Woke};
use crate::latency;
use hdrhistogram::Histogram;
use hooks::Hooks;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache, MAX_BURST};
use xfwd_pmd::{RxQueue, TxQueue, TX_DRAIN_NS, TX_QUIET_NS};

/// How often an lcore publishes its latency buckets (for `--metrics`).
const PUBLISH_NS: u64 = 100_000_000;

/// One stream of a worker: indexes into the worker's queue tables.
#[derive(Debug)]
pub struct Stream {
    /// RX queue index in [`Worker::rxqs`].
    pub rx: Option<usize>,
    /// TX queue index in [`Worker::txqs`].
    pub tx: Option<usize>,
    /// MAC of the TX port (mac mode source, icmpecho replies).
    pub tx_mac: [u8; 6],
    /// Peer MAC of the TX port (mac mode destination).
    pub peer_mac: [u8; 6],
    /// The generator (txonly, flowgen).
    pub gen: Option<Generator>,
    /// `--tx-first`: one burst of these frames before forwarding.
    pub first: Option<Generator>,
    /// Counters.
    pub counters: Arc<StreamCounters>,
    /// False while a port of the stream is stopped (`port stop N`).
    pub enabled: bool,
    /// A live capture of what the stream receives or sends.
    pub tap: Option<crate::control::capture::StreamTap>,
}

/// Everything a worker owns.
#[derive(Debug)]
pub struct Worker {
    /// CPU to pin to.
    pub cpu: u32,
    /// Mode.
    pub mode: FwdMode,
    /// Owned RX queues.
    pub rxqs: Vec<Box<dyn RxQueue>>,
    /// Owned TX queues.
    pub txqs: Vec<Box<dyn TxQueue>>,
    /// Streams.
    pub streams: Vec<Stream>,
    /// This lcore's pool cache.
    pub cache: PoolCache,
    /// Burst size.
    pub burst: usize,
    /// TX retries.
    pub tx_retry: u32,
    /// Sleep this long (ns) when a round found nothing; 0 = busy poll.
    pub idle_sleep_ns: u64,
    /// Record latency in forwarding modes too.
    pub latency: bool,
    /// Time accounting.
    pub counters: Arc<LcoreCounters>,
    /// Set by the main thread to stop.
    pub stop: Arc<AtomicBool>,
    /// Pin the thread (false in in-process tests that run many workers).
    pub pin: bool,
    /// Shared by the run's lcores: none polls before all are ready.
    pub gate: Arc<StartGate>,
    /// l3fwd: the router's tables and per-port TX queues.
    pub l3: Option<crate::fwd::l3fwd::Lcore>,
    /// Run-time commands (`stop`, `start`, `set fwd` ...), read once per round.
    pub ctl: Arc<LcoreCtl>,
}

/// Start line of a run's lcores: a generator must not send before the
/// lcore that receives its frames polls (a ring or a queue would overflow
/// while that thread is still being created and pinned).
#[derive(Debug)]
pub struct StartGate {
    ready: AtomicUsize,
    lcores: usize,
}

impl StartGate {
    /// A gate for `lcores` workers.
    pub fn new(lcores: usize) -> Arc<StartGate> {
        Arc::new(StartGate {
            ready: AtomicUsize::new(0),
            lcores,
        })
    }

    /// Count this lcore in, then wait for the others (or for `stop`: an
    /// lcore that failed to start never arrives).
    fn arrive_and_wait(&self, stop: &AtomicBool) {
        self.ready.fetch_add(1, Ordering::AcqRel);
        while self.ready.load(Ordering::Acquire) < self.lcores && !stop.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
    }
}

/// What a finished worker hands back.
#[derive(Debug)]
pub struct WorkerResult {
    /// CPU.
    pub cpu: u32,
    /// Latency samples (ns).
    pub latency: Histogram<u64>,
}

impl Worker {
    /// Run until `stop` is set; the queues and the cache are dropped on
    /// return (so the port can stop and the cache flushes).
    ///
    /// # Errors
    /// Pinning failed.
    pub fn run(self) -> Result<WorkerResult, crate::error::RunError> {
        if self.pin {
            crate::cpu::pin(self.cpu).map_err(|source| crate::error::RunError::Pin {
                lcore: self.cpu,
                source,
            })?;
        }
        let Worker {
            cpu,
            mode,
            mut rxqs,
            mut txqs,
            mut streams,
            mut cache,
            burst,
            tx_retry,
            idle_sleep_ns,
            latency: lat_fwd,
            counters,
            stop,
            gate,
            mut l3,
            ctl,
            ..
        } = self;
        let mut idle_sleep_ns = idle_sleep_ns;
        if idle_sleep_ns > 0 {
            // Wake close to the asked time: the default 50 µs timer slack
            // would make a 10 µs sleep a 60 µs one.
            if let Err(e) = nix::sys::prctl::set_timerslack((idle_sleep_ns / 10).max(1000)) {
                log::warn!("lcore {cpu}: timer slack not set ({e}): idle sleeps may last ~50 µs longer than asked");
            }
        }
        gate.arrive_and_wait(&stop);
        let measure = mode == FwdMode::RxOnly || (lat_fwd && mode != FwdMode::TxOnly);
        let mut hist = latency::histogram();
        let mut b = MbufBatch::new(burst);
        let mut last = latency::now_ns();
        let mut last_drain = last;
        let mut last_work = last;
        let mut last_pub = last;
        let mut idle = IdleWait::new(rxqs.len());
        let mut ctx = Ctx {
            mode,
            burst,
            tx_retry,
            measure,
            hist: &mut hist,
        };
        for s in streams.iter_mut() {
            ctx.tx_first(s, &mut txqs, &mut cache, &mut b);
        }
        while !stop.load(Ordering::Relaxed) {
            if ctl.pending() {
                let mut h = Hooks {
                    ctx: &mut ctx,
                    streams: &mut streams,
                    rxqs: &mut rxqs,
                    txqs: &mut txqs,
                    cache: &mut cache,
                    b: &mut b,
                    idle_sleep_ns: &mut idle_sleep_ns,
                    lat_fwd,
                };
                if !ctl.serve(&stop, &mut h) {
                    break;
                }
                // Time parked is neither busy, idle nor a stall.
                last = latency::now_ns();
                (last_drain, last_work) = (last, last);
            }
            let mut clock: Option<u64> = None;
            let mut work = 0u64;
            if let Some(l3) = l3.as_mut() {
                work += l3.round(&streams, &mut rxqs, &mut txqs, &mut cache, &mut b, tx_retry);
            } else {
                for s in streams.iter_mut() {
                    work += ctx.stream(s, &mut rxqs, &mut txqs, &mut cache, &mut b, &mut clock);
                }
            }
            let now = clock.unwrap_or_else(latency::now_ns);
            let dt = now.saturating_sub(last);
            last = now;
            if dt >= crate::counters::STALL_NS {
                counters.stalls.add(1);
                counters.max_gap_ns.max(dt);
            }
            if work > 0 {
                counters.busy_ns.add(dt);
                counters.packets.add(work);
            } else {
                counters.idle_ns.add(dt);
            }
            // TX queues may hold accepted packets back to batch their kicks:
            // hand them over once the lcore found no work for TX_QUIET_NS,
            // at least every TX_DRAIN_NS while busy, and before an idle
            // sleep (nothing may wait in a TX ring while the lcore sleeps).
            if work > 0 {
                last_work = now;
            }
            let sleep = idle_sleep_ns > 0 && work == 0;
            let quiet = work == 0 && now.saturating_sub(last_work) >= TX_QUIET_NS;
            if sleep || quiet || now.saturating_sub(last_drain) >= TX_DRAIN_NS {
                last_drain = now;
                txqs.iter_mut().for_each(|q| q.flush());
                if ctx.measure && now.saturating_sub(last_pub) >= PUBLISH_NS {
                    last_pub = now;
                    counters.latency.publish(ctx.hist);
                }
            }
            counters.loops.add(1);
            if sleep {
                // Adaptive polling: nothing came in; what arrives meanwhile
                // is taken in full bursts on waking. Queues with interrupts
                // (memif) wake the lcore as soon as a packet arrives.
                let how = idle.wait(&mut rxqs, std::time::Duration::from_nanos(idle_sleep_ns));
                if how == Woke::Interrupt {
                    counters.intr_wakes.add(1);
                }
                let woke = latency::now_ns();
                let slept = woke.saturating_sub(now);
                counters.sleeps.add(1);
                counters.slept_ns.add(slept);
                if slept >= idle_sleep_ns + crate::counters::STALL_NS {
                    counters.stalls.add(1);
                    counters.max_gap_ns.max(slept - idle_sleep_ns);
                }
                last = woke;
            }
        }
        txqs.iter_mut().for_each(|q| q.flush());
        counters.latency.publish(&hist);
        // Drop order: queue handles first (the port's stop() waits for
        // them), then the cache (flushes to the shared ring).
        drop(b);
        drop(rxqs);
        drop(txqs);
        drop(cache);
        // Drivers' per-lcore caches of this thread go back to the pools now,
        // before the main thread runs the leak audit.
        xfwd_mempool::flush_lcore_caches();
        Ok(WorkerResult { cpu, latency: hist })
    }
}

struct Ctx<'h> {
    mode: FwdMode,
    burst: usize,
    tx_retry: u32,
    measure: bool,
    hist: &'h mut Histogram<u64>,
}

impl Ctx<'_> {
    /// One burst of one stream; returns packets handled.
    #[inline(always)]
    fn stream(
        &mut self,
        s: &mut Stream,
        rxqs: &mut [Box<dyn RxQueue>],
        txqs: &mut [Box<dyn TxQueue>],
        cache: &mut PoolCache,
        b: &mut MbufBatch,
        clock: &mut Option<u64>,
    ) -> u64 {
        let mut handled = 0u64;
        if !s.enabled {
            return 0;
        }
        if let Some(rx) = s.rx {
            let n = rxqs[rx].rx_burst(b);
            if n > 0 {
                handled += n as u64;
                s.counters.rx.add(n as u64);
                if s.tap.is_some() {
                    tap_rx(s, b, clock);
                }
                // A receive-only stream on a generating lcore reads back what
                // the generator stamped (one lcore as generator and sink).
                if self.measure || (self.mode == FwdMode::TxOnly && s.tx.is_none()) {
                    let now = *clock.get_or_insert_with(latency::now_ns);
                    for m in b.iter() {
                        m.prefetch_data();
                    }
                    for m in b.iter() {
                        if let Some(ts) = latency::read(m.data()) {
                            self.hist.saturating_record(now.saturating_sub(ts).max(1));
                        }
                    }
                }
                self.edit(s, b);
                match (self.mode, s.tx) {
                    (FwdMode::RxOnly | FwdMode::FlowGen, _) | (_, None) => {
                        s.counters.consumed.add(b.len() as u64);
                        cache.free_batch(b);
                    }
                    (_, Some(tx)) => self.send(s, &mut *txqs[tx], cache, b),
                }
            }
        }
        if let (Some(gen), Some(tx)) = (s.gen.as_mut(), s.tx) {
            let now = *clock.get_or_insert_with(latency::now_ns);
            let n = gen.allowance(now, self.burst);
            if n == 0 {
                if gen.done() {
                    s.counters.gen_done.max(1);
                }
                return handled;
            }
            if !generate(gen, n, now, &s.counters, cache, b) {
                return handled;
            }
            gen.generated(n);
            handled += b.len() as u64;
            self.send(s, &mut *txqs[tx], cache, b);
        }
        handled
    }

    /// `--tx-first`: one burst of generated frames on the stream's TX queue
    /// (counted as generated, like txonly's).
    fn tx_first(
        &mut self,
        s: &mut Stream,
        txqs: &mut [Box<dyn TxQueue>],
        cache: &mut PoolCache,
        b: &mut MbufBatch,
    ) {
        let (Some(mut gen), Some(tx)) = (s.first.take(), s.tx) else {
            return;
        };
        if generate(
            &mut gen,
            self.burst,
            latency::now_ns(),
            &s.counters,
            cache,
            b,
        ) {
            self.send(s, &mut *txqs[tx], cache, b);
        }
    }

    /// The mode's header edits; frames it refuses leave the batch (freed).
    #[inline]
    fn edit(&mut self, s: &mut Stream, b: &mut MbufBatch) {
        match self.mode {
            FwdMode::Io | FwdMode::RxOnly | FwdMode::TxOnly | FwdMode::FlowGen | FwdMode::L3fwd => {
            }
            FwdMode::Mac => {
                let (src, dst) = (s.tx_mac, s.peer_mac);
                apply(s, b, |m| edit::mac(m.data_mut(), &src, &dst));
            }
            FwdMode::MacSwap => apply(s, b, |m| edit::macswap(m.data_mut())),
            FwdMode::FiveTupleSwap => apply(s, b, |m| {
                let len = m.pkt_len();
                edit::five_tuple_swap(m.data_mut(), len)
            }),
            FwdMode::IcmpEcho => {
                let mac = s.tx_mac;
                apply(s, b, |m| {
                    let len = m.pkt_len();
                    let (head, tail) = m.head_and_tail();
                    edit::icmpecho(&mut edit::Frame { head, len, tail }, &mac)
                });
            }
        }
    }

    /// Transmit with up to `tx_retry` retries; what is left is freed and counted.
    /// (`stream`, `send` and `send_burst` are always inlined: each as a
    /// call cost its prologue and epilogue per burst, ~0.7 instructions per
    /// packet of null-io under callgrind.)
    #[inline(always)]
    fn send(&mut self, s: &Stream, tx: &mut dyn TxQueue, cache: &mut PoolCache, b: &mut MbufBatch) {
        if s.tap.is_some() {
            tap_tx(s, b);
        }
        send_burst(&s.counters, tx, cache, b, self.tx_retry);
    }
}

/// A live capture's copy of what `s` received (out of line: the forward
/// loop only tests the `Option`).
#[cold]
#[inline(never)]
fn tap_rx(s: &Stream, b: &MbufBatch, clock: &mut Option<u64>) {
    if let Some((t, q)) = s.tap.as_ref().and_then(|t| Some((t, t.rx?))) {
        let now = *clock.get_or_insert_with(latency::now_ns);
        t.tap.copy(b, q, crate::control::capture::Dir::Rx, now);
    }
}

/// A live capture's copy of what `s` hands to its TX queue.
#[cold]
#[inline(never)]
fn tap_tx(s: &Stream, b: &MbufBatch) {
    if let Some((t, q)) = s.tap.as_ref().and_then(|t| Some((t, t.tx?))) {
        if !b.is_empty() {
            t.tap
                .copy(b, q, crate::control::capture::Dir::Tx, latency::now_ns());
        }
    }
}

/// Transmit `b` with up to `tx_retry` retries, counted on `counters`; what
/// is left is freed and counted as dropped.
#[inline(always)]
pub(crate) fn send_burst(
    counters: &StreamCounters,
    tx: &mut dyn TxQueue,
    cache: &mut PoolCache,
    b: &mut MbufBatch,
    tx_retry: u32,
) {
    if b.is_empty() {
        return;
    }
    let mut sent = tx.tx_burst(b);
    let mut tries = 0;
    while !b.is_empty() && tries < tx_retry {
        sent += tx.tx_burst(b);
        tries += 1;
    }
    counters.tx.add(sent as u64);
    if !b.is_empty() {
        counters.tx_dropped.add(b.len() as u64);
        cache.free_batch(b);
    }
}

/// Allocate `n` mbufs into `b` and write the generator's next frames into
/// them, stamped `now` (counted as generated); false, counted as `nombuf`,
/// when the pool cannot serve the burst.
#[inline]
fn generate(
    gen: &mut Generator,
    n: usize,
    now: u64,
    counters: &StreamCounters,
    cache: &mut PoolCache,
    b: &mut MbufBatch,
) -> bool {
    if cache.alloc_bulk(b, n).is_err() {
        counters.nombuf.add(1);
        return false;
    }
    for m in b.iter() {
        m.prefetch_data();
    }
    for m in b.iter_mut() {
        if m.reset_len(gen.next_len()).is_ok() {
            gen.fill(m.data_mut(), now);
        }
    }
    counters.generated.add(b.len() as u64);
    true
}

/// Run `f` over every frame of the burst in place; the frames it does not
/// forward are marked in a fixed bitmap (no allocation) and then leave the
/// batch, counted per drop reason or as consumed.
#[inline]
fn apply(s: &Stream, b: &mut MbufBatch, mut f: impl FnMut(&mut Mbuf) -> Verdict) {
    let mut dropped = [0u64; MAX_BURST / 64];
    let (mut ignored, mut partial, mut any) = (0u64, 0u64, false);
    let mut reasons = [0u64; N_REASONS];
    // Touch every frame's first byte first: independent loads the CPU
    // overlaps (a prefetch without `unsafe`), so the edits below hit cache.
    let mut touch = 0u8;
    for m in b.iter() {
        touch ^= m.data().first().copied().unwrap_or(0);
    }
    std::hint::black_box(touch);
    for (i, m) in b.as_mut_slice().iter_mut().enumerate() {
        match f(m) {
            Verdict::Forward => continue,
            Verdict::Partial => {
                partial += 1;
                continue;
            }
            Verdict::Ignore => ignored += 1,
            Verdict::Drop(r) => reasons[r.index()] += 1,
        }
        any = true;
        dropped[i / 64] |= 1 << (i % 64);
    }
    s.counters.partial.add(partial);
    if any {
        let mut i = 0usize;
        b.retain(|_| {
            let keep = dropped[i / 64] & (1 << (i % 64)) == 0;
            i += 1;
            keep
        });
        let mut malformed = 0;
        for (c, n) in s.counters.drops.iter().zip(reasons) {
            c.add(n);
            malformed += n;
        }
        s.counters.malformed.add(malformed);
        s.counters.consumed.add(ignored);
    }
}
