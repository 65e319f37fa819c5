//! The pcap port's RX queue: replays the [`Replay`] frames into mbufs.
//!
//! Per burst: how many frames may still be delivered (a finite `loop=`
//! stops at the end of its last pass), one bulk allocation from the
//! queue's pool cache, then per frame one header update and one copy. When
//! every frame rounded up to 64-byte granules fits the data room (checked
//! once per burst against the longest frame), the copy is done in whole
//! granules of fixed size, which the compiler inlines as vector moves (no
//! `memcpy` call per frame); the padding beyond the frame lands in the
//! mbuf's tailroom. Longer frames take the general path, which chains
//! segments. End of pass bookkeeping is out of line.

use super::replay::{Frame, Replay, FRAME_ALIGN};
use super::{bump, PcapCounters};
use crate::port::{QueueToken, RxQueue};
use crate::stats::QueueCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache};

#[derive(Debug)]
pub(super) struct PcapRx {
    pub(super) cache: PoolCache,
    pub(super) data_room: usize,
    pub(super) replay: Option<Arc<Replay>>,
    pub(super) pos: usize,
    /// Passes left including the current one; `None` = forever.
    pub(super) passes_left: Option<u64>,
    /// Set once `passes_left` reaches 0.
    pub(super) done: Arc<AtomicBool>,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) xc: Arc<PcapCounters>,
    pub(super) _token: QueueToken,
}

/// Frames that can still be delivered, capped at `want`.
#[inline]
fn available(passes_left: Option<u64>, frames: usize, pos: usize, want: usize) -> usize {
    match passes_left {
        None => want,
        Some(0) => 0,
        Some(p) => {
            let total =
                ((frames - pos) as u64).saturating_add((p - 1).saturating_mul(frames as u64));
            want.min(total.min(usize::MAX as u64) as usize)
        }
    }
}

/// A pass ended (the position is back at 0).
#[cold]
#[inline(never)]
fn pass_done(xc: &PcapCounters, passes_left: &mut Option<u64>, done: &AtomicBool) {
    bump(&xc.rx_loops, 1);
    if let Some(p) = passes_left.as_mut() {
        *p -= 1;
        if *p == 0 {
            done.store(true, Ordering::Release);
        }
    }
}

/// Copy frame `f` into `m` in whole granules (`room` checked by the caller).
#[inline(always)]
fn copy_granules(rp: &Replay, f: &Frame, m: &mut Mbuf) {
    let g = rp.granules(f);
    // Cannot fail: a freshly allocated mbuf is one segment and the caller
    // checked that the granules fit its data room.
    let ok = m.reset_len(g.len()).is_ok();
    debug_assert!(ok, "granules fit the data room");
    if ok {
        let d = m.data_mut();
        match (
            <&mut [u8; FRAME_ALIGN]>::try_from(&mut *d),
            <&[u8; FRAME_ALIGN]>::try_from(g),
        ) {
            // A minimum-size frame: one fixed 64-byte copy.
            (Ok(d), Ok(g)) => *d = *g,
            _ => {
                for (d, s) in d
                    .chunks_exact_mut(FRAME_ALIGN)
                    .zip(g.chunks_exact(FRAME_ALIGN))
                {
                    d.copy_from_slice(s);
                }
            }
        }
    }
    let _ = m.reset_len(f.len);
    m.set_timestamp(f.ts_ns);
}

impl PcapRx {
    /// Copy frame `f` into `m`, chaining more mbufs when it exceeds the
    /// data room. False when a segment could not be allocated.
    fn fill(cache: &mut PoolCache, data_room: usize, rp: &Replay, f: &Frame, m: &mut Mbuf) -> bool {
        let frame = rp.bytes(f);
        let first = frame.len().min(data_room);
        if m.reset_len(first).is_err() {
            return false;
        }
        m.data_mut().copy_from_slice(&frame[..first]);
        let mut rest = &frame[first..];
        while !rest.is_empty() {
            let Some(mut seg) = cache.alloc() else {
                return false;
            };
            let k = rest.len().min(data_room);
            match seg.append(k) {
                Ok(buf) => buf.copy_from_slice(&rest[..k]),
                Err(_) => return false,
            }
            if m.chain(seg).is_err() {
                return false;
            }
            rest = &rest[k..];
        }
        m.set_timestamp(f.ts_ns);
        true
    }

    /// The general path (frames may exceed the data room): returns
    /// (frames filled, bytes).
    #[inline(never)]
    fn burst_general(
        &mut self,
        rp: &Replay,
        out: &mut MbufBatch,
        start: usize,
        n: usize,
    ) -> (usize, u64) {
        let mut done = 0;
        let mut bytes = 0u64;
        while done < n {
            let f = rp.frames()[self.pos];
            let m = &mut out.as_mut_slice()[start + done];
            if !Self::fill(&mut self.cache, self.data_room, rp, &f, m) {
                break;
            }
            bytes += f.len as u64;
            done += 1;
            self.pos += 1;
            if self.pos == rp.len() {
                self.pos = 0;
                pass_done(&self.xc, &mut self.passes_left, &self.done);
            }
        }
        (done, bytes)
    }
}

impl RxQueue for PcapRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let Some(rp) = self.replay.as_deref() else {
            return 0;
        };
        let total = rp.len();
        if total == 0 {
            return 0;
        }
        let n = available(self.passes_left, total, self.pos, out.room());
        if n == 0 {
            return 0;
        }
        let start = out.len();
        if self.cache.alloc_bulk_raw(out, n).is_err() {
            self.counters.add_nombuf(n as u64);
            return 0;
        }
        let (done, bytes) = if rp.max_len().div_ceil(FRAME_ALIGN) * FRAME_ALIGN <= self.data_room {
            // The frames from `pos` on, then (at the end of a pass) from 0.
            let mut bytes = 0u64;
            let mut left = &mut out.as_mut_slice()[start..start + n];
            while !left.is_empty() {
                let run = &rp.frames()[self.pos..];
                let k = run.len().min(left.len());
                let (now, rest) = left.split_at_mut(k);
                for (m, f) in now.iter_mut().zip(run) {
                    copy_granules(rp, f, m);
                    bytes += f.len as u64;
                }
                left = rest;
                self.pos += k;
                if self.pos == total {
                    self.pos = 0;
                    pass_done(&self.xc, &mut self.passes_left, &self.done);
                }
            }
            (n, bytes)
        } else {
            let rp = Arc::clone(self.replay.as_ref().expect("checked above"));
            self.burst_general(&rp, out, start, n)
        };
        if done < n {
            // A chain segment could not be allocated: give back the unfilled
            // mbufs; that frame is retried on the next burst.
            self.counters.add_nombuf((n - done) as u64);
            while out.len() > start + done {
                if let Some(m) = out.pop() {
                    self.cache.free(m);
                }
            }
        }
        bump(&self.xc.rx_copies, done as u64);
        bump(&self.xc.rx_copy_bytes, bytes);
        self.counters.add(done as u64, bytes);
        done
    }
}
