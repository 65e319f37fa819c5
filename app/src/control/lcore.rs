//! The control thread ↔ lcore channel: one flag the lcore reads once per
//! round (never per packet), and two bounded lock-free queues
//! (`crossbeam_queue::ArrayQueue`) for the commands and their replies.
//!
//! ```text
//! control: cmds.push(cmd); pending = true; wait for replies.pop() (bounded time)
//! lcore:   each round: if pending { pending = false; while let Some(c) = cmds.pop() { .. } }
//!          Park: flush TX, reply, then wait (1 ms naps) for Apply/Resume or stop
//! ```
//!
//! A parked lcore polls no queue: ports stay configured, started and mapped.
//! `port stop N` has the parked lcores give port N's queue handles back
//! ([`LcoreCmd::Ports`]: each is replaced by a [`Detached`] queue, which
//! receives nothing and sends nothing) so the driver can stop; `port start
//! N` hands the new handles over the same way.

use crate::fwd::txgen::Generator;
use crate::fwd::FwdMode;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xfwd_mempool::MbufBatch;
use xfwd_pmd::{RxQueue, TxQueue};

/// Commands in flight per lcore (the control thread sends one and waits).
const DEPTH: usize = 4;

/// New settings for one stream (applied while parked).
#[derive(Debug)]
pub struct StreamSettings {
    /// The generator (txonly, flowgen), or none.
    pub gen: Option<Generator>,
    /// `start tx_first`: one burst of these frames when resuming.
    pub first: Option<Generator>,
    /// Destination MAC of `mac` mode.
    pub peer_mac: [u8; 6],
    /// False when a port of the stream is stopped (`port stop N`).
    pub enabled: bool,
}

/// New settings for an lcore (applied while parked).
#[derive(Debug)]
pub struct LcoreSettings {
    /// Forwarding mode.
    pub mode: FwdMode,
    /// Burst size.
    pub burst: usize,
    /// Idle sleep (ns), 0 = busy poll.
    pub idle_sleep_ns: u64,
    /// One entry per stream of the lcore, in order.
    pub streams: Vec<StreamSettings>,
}

/// `port stop|start`: queue handles to give back and to take (by the
/// lcore's own queue index), and which streams poll afterwards.
#[derive(Debug, Default)]
pub struct PortChange {
    /// RX queues to give back (replaced by [`Detached`], then dropped).
    pub rx_out: Vec<usize>,
    /// TX queues to give back (flushed first).
    pub tx_out: Vec<usize>,
    /// New RX queue handles of a started port.
    pub rx_in: Vec<(usize, Box<dyn RxQueue>)>,
    /// New TX queue handles of a started port.
    pub tx_in: Vec<(usize, Box<dyn TxQueue>)>,
    /// Per stream of the lcore: polled (no port of it stopped).
    pub enabled: Vec<bool>,
}

/// The queue of a stopped port an lcore holds in its place: it receives
/// nothing and accepts nothing (what a mode sends there is freed and
/// counted as TX-dropped, like a full queue's).
#[derive(Debug, Default)]
pub struct Detached;

impl RxQueue for Detached {
    fn rx_burst(&mut self, _out: &mut MbufBatch) -> usize {
        0
    }
}

impl TxQueue for Detached {
    fn tx_burst(&mut self, _pkts: &mut MbufBatch) -> usize {
        0
    }
}

/// A command to an lcore.
#[derive(Debug)]
pub enum LcoreCmd {
    /// Flush TX and stop polling until [`LcoreCmd::Resume`].
    Park,
    /// Take these settings (only while parked).
    Apply(Box<LcoreSettings>),
    /// Poll again.
    Resume,
    /// Start or end a capture (one entry per stream; taken parked or not).
    Tap(Vec<Option<super::capture::StreamTap>>),
    /// Give back or take queue handles (only while parked).
    Ports(Box<PortChange>),
}

/// An lcore's answer to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LcoreReply {
    /// Parked: TX flushed, no queue polled.
    Parked,
    /// Settings taken.
    Applied,
    /// Refused: the command needs the lcore parked.
    NotParked,
    /// Polling again.
    Resumed,
}

/// The channel of one lcore.
#[derive(Debug)]
pub struct LcoreCtl {
    pending: AtomicBool,
    parked: AtomicBool,
    cmds: ArrayQueue<LcoreCmd>,
    replies: ArrayQueue<LcoreReply>,
}

impl Default for LcoreCtl {
    fn default() -> Self {
        LcoreCtl {
            pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            cmds: ArrayQueue::new(DEPTH),
            replies: ArrayQueue::new(DEPTH),
        }
    }
}

/// What the lcore does for the commands it reads.
pub trait LcoreHooks {
    /// Hand every held TX frame to the driver (before parking).
    fn flush(&mut self);
    /// Take new settings.
    fn apply(&mut self, s: LcoreSettings);
    /// About to poll again (send the `tx_first` bursts).
    fn resume(&mut self);
    /// Attach (or detach) the streams' capture taps.
    fn tap(&mut self, taps: Vec<Option<super::capture::StreamTap>>);
    /// Give back or take queue handles; then every mbuf the lcore caches
    /// goes back to the pool.
    fn ports(&mut self, change: PortChange);
}

/// How long the control thread waits for an lcore's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

impl LcoreCtl {
    /// The lcore's check, once per round: one relaxed load.
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// True while the lcore is parked.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Acquire)
    }

    /// Control side: send `cmd` and wait for the reply.
    ///
    /// # Errors
    /// A text when the queue is full or the lcore does not answer in
    /// [`REPLY_TIMEOUT`] (it has stopped, or is stuck in a driver call).
    pub fn call(&self, cmd: LcoreCmd, stop: &AtomicBool) -> Result<LcoreReply, String> {
        while self.replies.pop().is_some() {} // a late reply of a timed-out call
        if self.cmds.push(cmd).is_err() {
            return Err("lcore command queue full".into());
        }
        self.pending.store(true, Ordering::Release);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(r) = self.replies.pop() {
                return Ok(r);
            }
            if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                return Err("lcore did not answer within 2 s".into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Queue a park before the lcore starts polling (`--interactive`: the
    /// lcores wait for `start`); no reply is awaited.
    pub fn park_at_start(&self) {
        if self.cmds.push(LcoreCmd::Park).is_ok() {
            self.pending.store(true, Ordering::Release);
        }
    }

    /// Drop the replies nobody waited for (after [`LcoreCtl::park_at_start`]).
    pub fn drain_replies(&self) {
        while self.replies.pop().is_some() {}
    }

    fn reply(&self, r: LcoreReply) {
        // Bounded: if the control thread gave up and never read, the oldest
        // reply is dropped rather than blocking the lcore.
        let _ = self.replies.force_push(r);
    }

    /// Lcore side, when [`LcoreCtl::pending`]: run the queued commands; a
    /// park waits here (napping 1 ms) for `Resume` or `stop`. Returns false
    /// when `stop` was set while parked.
    pub fn serve(&self, stop: &AtomicBool, hooks: &mut impl LcoreHooks) -> bool {
        self.pending.store(false, Ordering::Relaxed);
        let mut parked = false;
        loop {
            while let Some(c) = self.cmds.pop() {
                match c {
                    LcoreCmd::Park => {
                        hooks.flush();
                        parked = true;
                        self.parked.store(true, Ordering::Release);
                        self.reply(LcoreReply::Parked);
                    }
                    LcoreCmd::Apply(s) if parked => {
                        hooks.apply(*s);
                        self.reply(LcoreReply::Applied);
                    }
                    LcoreCmd::Ports(p) if parked => {
                        hooks.ports(*p);
                        self.reply(LcoreReply::Applied);
                    }
                    LcoreCmd::Apply(_) | LcoreCmd::Ports(_) => {
                        self.reply(LcoreReply::NotParked);
                    }
                    LcoreCmd::Tap(t) => {
                        hooks.tap(t);
                        self.reply(LcoreReply::Applied);
                    }
                    LcoreCmd::Resume => {
                        if parked {
                            hooks.resume();
                        }
                        parked = false;
                        self.parked.store(false, Ordering::Release);
                        self.reply(LcoreReply::Resumed);
                    }
                }
            }
            if !parked {
                return true;
            }
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Rec {
        flushes: usize,
        applied: Vec<usize>,
        resumes: usize,
    }

    impl LcoreHooks for Rec {
        fn flush(&mut self) {
            self.flushes += 1;
        }
        fn apply(&mut self, s: LcoreSettings) {
            self.applied.push(s.burst);
        }
        fn resume(&mut self) {
            self.resumes += 1;
        }
        fn tap(&mut self, _: Vec<Option<crate::control::capture::StreamTap>>) {}
        fn ports(&mut self, p: PortChange) {
            self.applied.push(1000 + p.rx_out.len());
        }
    }

    fn settings(burst: usize) -> LcoreCmd {
        LcoreCmd::Apply(Box::new(LcoreSettings {
            mode: FwdMode::Io,
            burst,
            idle_sleep_ns: 0,
            streams: Vec::new(),
        }))
    }

    #[test]
    fn park_apply_resume_through_the_queues() {
        let ctl = Arc::new(LcoreCtl::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (ctl.clone(), stop.clone());
        let lcore = std::thread::spawn(move || {
            let mut rec = Rec::default();
            let mut rounds = 0u64;
            while !s2.load(Ordering::Relaxed) {
                rounds += 1;
                if c2.pending() && !c2.serve(&s2, &mut rec) {
                    break;
                }
                std::thread::yield_now();
            }
            (rec.flushes, rec.applied, rec.resumes, rounds)
        });
        assert_eq!(ctl.call(settings(8), &stop), Ok(LcoreReply::NotParked));
        assert_eq!(ctl.call(LcoreCmd::Park, &stop), Ok(LcoreReply::Parked));
        assert!(ctl.is_parked());
        assert_eq!(ctl.call(settings(16), &stop), Ok(LcoreReply::Applied));
        let change = || {
            LcoreCmd::Ports(Box::new(PortChange {
                rx_out: vec![0],
                ..PortChange::default()
            }))
        };
        assert_eq!(ctl.call(change(), &stop), Ok(LcoreReply::Applied));
        assert_eq!(ctl.call(LcoreCmd::Resume, &stop), Ok(LcoreReply::Resumed));
        assert!(!ctl.is_parked());
        assert_eq!(ctl.call(change(), &stop), Ok(LcoreReply::NotParked));
        // Parked again, then stopped: the lcore leaves its wait.
        assert_eq!(ctl.call(LcoreCmd::Park, &stop), Ok(LcoreReply::Parked));
        stop.store(true, Ordering::Relaxed);
        let (flushes, applied, resumes, _) = lcore.join().unwrap();
        assert_eq!((flushes, applied, resumes), (2, vec![16, 1001], 1));
    }

    #[test]
    fn no_wait_for_an_lcore_once_stop_is_set() {
        let ctl = LcoreCtl::default();
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(ctl.call(LcoreCmd::Park, &stop).is_err());
        assert!(t.elapsed() < REPLY_TIMEOUT);
    }
}
