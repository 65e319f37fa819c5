//! RX and TX queues of the `af_packet` port: the hot path.
//!
//! RX walks the V3 blocks and copies each frame into an mbuf allocated in
//! bulk from the queue's pool (a re-stripped VLAN tag is put back, so the
//! mbuf holds the frame as it was on the wire). TX copies each mbuf (all
//! segments) into the next TX frame, frees the mbufs in bulk and kicks the
//! kernel once per burst. No syscall on RX, one on TX, no heap per burst.

use super::ring::{BadBlock, RxFrame, RxRing, TxRing};
use super::socket::PacketFd;
use crate::netdev::{LinkCondition, LinkState};
use crate::port::{QueueToken, RxQueue, TxQueue};
use crate::stats::QueueCounters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xfwd_mempool::{Mbuf, MbufBatch, PoolCache};

/// Smallest frame the kernel accepts on an Ethernet device (the MAC header).
const MIN_FRAME: usize = 14;
/// How long a closing TX queue waits for the kernel to finish its frames.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// A socket and its mapped rings; closed (rings unmapped after the views
/// that borrow them are gone) when the last holder drops it.
#[derive(Debug)]
pub struct Sock {
    /// The packet socket.
    pub fd: PacketFd,
}

/// Driver counters of one queue beyond [`QueueCounters`] (single writer).
#[derive(Debug, Default)]
pub struct QueueX {
    /// Frames copied (RX: frame → mbuf; TX: mbuf → frame).
    pub copies: AtomicU64,
    /// RX: blocks handed back; TX: `sendto` kicks.
    pub rounds: AtomicU64,
    /// RX: VLAN tags put back; TX: kicks the kernel answered busy (retried).
    pub busy: AtomicU64,
    /// RX: frames left in the ring when the queue closed; TX: frames revoked
    /// after the device went away.
    pub lost: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

impl QueueX {
    /// (copies, rounds, busy, lost).
    pub fn read(&self) -> [u64; 4] {
        [
            self.copies.load(Ordering::Relaxed),
            self.rounds.load(Ordering::Relaxed),
            self.busy.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        ]
    }
}

/// Copy a received frame into `m`; false when it does not fit.
#[inline]
fn copy_in(m: &mut Mbuf, f: &RxFrame<'_>) -> bool {
    match f.vlan {
        None => {
            if m.reset_len(f.data.len()).is_err() {
                return false;
            }
            f.data.copy_to(0, m.data_mut());
        }
        Some((tpid, tci)) => {
            if f.data.len() < 12 || m.reset_len(f.data.len() + 4).is_err() {
                return false;
            }
            let d = m.data_mut();
            f.data.copy_to(0, &mut d[..12]);
            d[12..14].copy_from_slice(&tpid.to_be_bytes());
            d[14..16].copy_from_slice(&tci.to_be_bytes());
            f.data.copy_to(12, &mut d[16..]);
        }
    }
    true
}

/// An RX queue: one socket's RX ring.
#[derive(Debug)]
pub struct AfpRx {
    pub(super) ring: RxRing,
    pub(super) _sock: Arc<Sock>,
    pub(super) cache: PoolCache,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) x: Arc<QueueX>,
    pub(super) link: Arc<LinkState>,
    pub(super) _token: QueueToken,
}

impl RxQueue for AfpRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        if self.link.get() == LinkCondition::Lost {
            return 0;
        }
        let start = out.len();
        let (mut bytes, mut errors, mut vlans, mut blocks) = (0u64, 0u64, 0u64, 0u64);
        while out.room() > 0 {
            let ready = match self.ring.ready() {
                Ok(0) => break,
                Ok(n) => n as usize,
                Err(BadBlock) => {
                    errors += 1;
                    continue;
                }
            };
            let n = ready.min(out.room());
            if self.cache.alloc_bulk_raw(out, n).is_err() {
                self.counters.add_nombuf(n as u64);
                break;
            }
            // Fresh mbufs are out[filled..]; a frame we drop leaves its mbuf
            // for the next frame, the unused ones go back below.
            let mut filled = out.len() - n;
            for _ in 0..n {
                let last = self.ring.ready() == Ok(1);
                let slot = &mut out.as_mut_slice()[filled];
                let r = self.ring.next_frame(|f| {
                    if f.outgoing {
                        return None;
                    }
                    let ok = f.data.len() as u32 == f.wire_len && copy_in(slot, &f);
                    Some((ok, f.data.len(), f.vlan.is_some()))
                });
                match r {
                    Ok(Some((true, len, vlan))) => {
                        filled += 1;
                        bytes += len as u64 + if vlan { 4 } else { 0 };
                        vlans += u64::from(vlan);
                    }
                    Ok(Some((false, _, _))) | Err(BadBlock) => errors += 1,
                    Ok(None) => {}
                }
                if last {
                    blocks += 1;
                }
                if r.is_err() {
                    break;
                }
            }
            while out.len() > filled {
                if let Some(m) = out.pop() {
                    self.cache.free(m);
                }
            }
        }
        let got = out.len() - start;
        self.counters.add(got as u64, bytes);
        self.counters.add_errors(errors);
        bump(&self.x.copies, got as u64);
        bump(&self.x.rounds, blocks);
        bump(&self.x.busy, vlans);
        got
    }
}

impl Drop for AfpRx {
    fn drop(&mut self) {
        // Frames the kernel delivered that nobody read: account for them.
        let n = self.ring.drain_count();
        self.counters.add_missed(n);
        bump(&self.x.lost, n);
    }
}

/// A TX queue: one socket's TX ring.
#[derive(Debug)]
pub struct AfpTx {
    pub(super) ring: TxRing,
    pub(super) sock: Arc<Sock>,
    pub(super) cache: PoolCache,
    pub(super) counters: Arc<QueueCounters>,
    pub(super) x: Arc<QueueX>,
    pub(super) need_kick: bool,
    /// Kick once this many frames were placed since the last kick (see
    /// `TxQueue::flush`).
    pub(super) kick_batch: usize,
    /// Frames placed since the last successful kick.
    pub(super) unkicked: usize,
    /// The device went away and the unsent frames were revoked.
    pub(super) revoked: bool,
    pub(super) link: Arc<LinkState>,
    pub(super) _token: QueueToken,
}

impl AfpTx {
    #[inline]
    fn reclaim(&mut self) {
        let r = self.ring.reclaim();
        self.counters.add(r.sent, r.bytes);
        self.counters.add_errors(r.failed);
    }

    /// One `sendto` for everything marked; a busy device leaves the frames
    /// queued for the next kick, a vanished one revokes them.
    #[inline]
    fn kick(&mut self) {
        bump(&self.x.rounds, 1);
        match self.sock.fd.kick() {
            Ok(()) => {
                self.need_kick = false;
                self.unkicked = 0;
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::ENXIO | libc::ENODEV) => {
                    self.link.set_lost();
                    self.went_away();
                }
                _ => {
                    // ENOBUFS/EAGAIN (device or socket buffer busy),
                    // ENETDOWN (link down; also once after it came back up,
                    // the socket's pending error): the kernel keeps its
                    // place, the frames stay queued and the next burst kicks
                    // again. `link()` tells the queue when the link is down.
                    bump(&self.x.busy, 1);
                    self.need_kick = true;
                }
            },
        }
    }

    /// The device is gone: what the kernel never took is revoked (counted
    /// as errors), the queue sends nothing more.
    #[cold]
    fn went_away(&mut self) {
        if self.revoked {
            return;
        }
        self.revoked = true;
        self.need_kick = false;
        self.unkicked = 0;
        let n = self.ring.revoke_unsent();
        bump(&self.x.lost, n as u64);
        self.reclaim();
    }

    /// The link is not up: down, take nothing; gone, revoke.
    #[cold]
    fn not_up(&mut self) {
        if self.link.get() == LinkCondition::Lost {
            self.went_away();
        }
    }
}

impl TxQueue for AfpTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        if self.ring.pending() > 0 {
            self.reclaim();
        }
        if !self.link.is_up() {
            self.not_up();
            return 0;
        }
        let max = self.ring.max_len();
        let (mut taken, mut placed, mut bad) = (0usize, 0u64, 0u64);
        for m in pkts.iter() {
            let len = m.pkt_len();
            if !(MIN_FRAME..=max).contains(&len) {
                bad += 1;
            } else if self.ring.room() == 0 {
                break;
            } else if self.ring.push(len, m.segments()) {
                placed += 1;
            } else {
                bad += 1; // a chain whose segments disagree with pkt_len
            }
            taken += 1;
        }
        self.unkicked += placed as usize;
        if self.need_kick
            || (placed > 0 && (self.unkicked >= self.kick_batch || self.ring.room() == 0))
        {
            self.kick();
        }
        if taken == pkts.len() {
            self.cache.free_batch(pkts);
        } else {
            let cache = &mut self.cache;
            pkts.consume_front(taken, |m| cache.free(m));
        }
        self.counters.add_errors(bad);
        bump(&self.x.copies, placed);
        taken
    }

    #[inline]
    fn flush(&mut self) {
        if self.unkicked > 0 && self.link.is_up() {
            self.kick();
        }
    }
}

impl Drop for AfpTx {
    fn drop(&mut self) {
        // Let the kernel finish what it holds, bounded in time; what it never
        // took is counted as failed.
        let deadline = Instant::now() + CLOSE_WAIT;
        while self.link.is_up() && self.ring.pending() > 0 && Instant::now() < deadline {
            if self.ring.unsent() > 0 {
                self.kick();
            }
            self.reclaim();
            if self.ring.pending() > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if self.ring.pending() > 0 {
            let n = self.ring.revoke_unsent();
            bump(&self.x.lost, n as u64);
            self.reclaim();
            // Still in the kernel's hands (on their way out): count as sent.
            let left = self.ring.pending() as u64;
            self.counters.add(left, 0);
        }
    }
}
