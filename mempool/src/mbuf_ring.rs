//! [`MbufRing`]: a ring of owned mbufs with one producer and one consumer,
//! the safe way to hand mbufs from one thread to another as raw header
//! addresses (the `ring` port's queues; DPDK's `net_ring` over `rte_ring`).
//!
//! A driver never casts an mbuf to a pointer or back: a TX queue holds the
//! ring's [`RingProducer`], an RX queue its [`RingConsumer`], each an owned
//! claim of its side (at most one of each exists at a time: a second
//! [`MbufRing::producer`] is refused until the first is dropped). Enqueue
//! moves mbufs out of an [`MbufBatch`] into the ring, dequeue moves them into
//! a batch, as addresses only (no header is read); the unsafe conversions
//! live here, where the ownership argument is: the ring holds exactly the
//! addresses of the mbufs enqueued and not yet dequeued, each once.
//! Dropping the ring frees what it holds.

use crate::batch::MbufBatch;
use crate::mbuf::Mbuf;
use crate::ring::{Obj, Ring};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// A single-producer single-consumer ring of owned mbufs.
pub struct MbufRing {
    ring: Ring,
}

impl fmt::Debug for MbufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MbufRing")
            .field("capacity", &self.ring.capacity())
            .field("len", &self.ring.count())
            .finish()
    }
}

/// The producer side of an [`MbufRing`] (one at a time); given back on drop.
#[derive(Debug)]
pub struct RingProducer {
    ring: Arc<MbufRing>,
}

/// The consumer side of an [`MbufRing`] (one at a time); given back on drop.
#[derive(Debug)]
pub struct RingConsumer {
    ring: Arc<MbufRing>,
}

impl MbufRing {
    /// A ring holding up to `capacity` mbufs.
    ///
    /// # Panics
    /// `capacity` of zero or above 2^31.
    pub fn new(capacity: u32) -> Arc<MbufRing> {
        Arc::new(MbufRing {
            ring: Ring::new(capacity),
        })
    }

    /// Maximum mbufs held.
    pub fn capacity(&self) -> u32 {
        self.ring.capacity()
    }

    /// Mbufs held now (exact when quiescent).
    pub fn len(&self) -> u32 {
        self.ring.count()
    }

    /// True when the ring holds nothing (exact when quiescent).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The producer side; `None` while another [`RingProducer`] lives.
    pub fn producer(self: &Arc<Self>) -> Option<RingProducer> {
        self.ring.claim_producer().then(|| RingProducer {
            ring: Arc::clone(self),
        })
    }

    /// The consumer side; `None` while another [`RingConsumer`] lives.
    pub fn consumer(self: &Arc<Self>) -> Option<RingConsumer> {
        self.ring.claim_consumer().then(|| RingConsumer {
            ring: Arc::clone(self),
        })
    }

    /// Free what the ring holds back to the pools, unless a consumer lives
    /// (it will read them); returns how many were freed.
    pub fn drain(self: &Arc<Self>) -> usize {
        self.consumer().map_or(0, |mut c| c.drain())
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        // No handle lives (each holds an Arc of the ring): take the
        // consumer side and free every entry.
        if !self.ring.claim_consumer() {
            return;
        }
        free_all(&self.ring);
    }
}

/// Dequeue and free every entry; the caller holds the consumer claim.
fn free_all(ring: &Ring) -> usize {
    let mut buf: [Obj; 64] = [std::ptr::null_mut(); 64];
    let mut total = 0;
    loop {
        // SAFETY: the caller holds the consumer claim, and only the holder
        // of a claim dequeues from an MbufRing's ring.
        #[allow(unsafe_code)]
        let n = unsafe { ring.dequeue_burst_sc(&mut buf) };
        if n == 0 {
            return total;
        }
        total += n;
        for &a in &buf[..n] {
            // SAFETY: the ring holds only header addresses of mbufs whose
            // ownership an enqueue moved into it (non-null: they came from
            // `Mbuf`s), and each entry is dequeued once.
            #[allow(unsafe_code)]
            drop(unsafe { Mbuf::from_raw(NonNull::new_unchecked(a)) });
        }
    }
}

impl RingProducer {
    /// Move as many mbufs from the front of `b` into the ring as fit, in
    /// order; returns how many (the rest stay in `b`, shifted to its front).
    #[inline(always)]
    pub fn enqueue_burst(&mut self, b: &mut MbufBatch) -> usize {
        // SAFETY: this handle is the producer claim, the only one (claimed
        // in `producer`, given back on drop), and `&mut self` keeps its use
        // on one thread at a time. The ring takes over the addresses of the
        // first `sent` mbufs, which the batch then forgets.
        #[allow(unsafe_code)]
        unsafe {
            let sent = self.ring.ring.enqueue_burst_sp(b.owned_addrs());
            b.forget_front(sent);
            sent
        }
    }

    /// The ring.
    pub fn ring(&self) -> &Arc<MbufRing> {
        &self.ring
    }
}

impl Drop for RingProducer {
    fn drop(&mut self) {
        self.ring.ring.release_producer();
    }
}

impl RingConsumer {
    /// Move up to [`MbufBatch::room`] mbufs from the ring to the end of `b`,
    /// in order; returns how many.
    #[inline(always)]
    pub fn dequeue_burst(&mut self, b: &mut MbufBatch) -> usize {
        // SAFETY: this handle is the only consumer claim (see
        // RingProducer::enqueue_burst); the dequeued entries are owned
        // header addresses (moved in by an enqueue), now the batch's.
        #[allow(unsafe_code)]
        unsafe {
            let start = b.len();
            let n = self.ring.ring.dequeue_burst_sc(b.spare_addrs());
            b.set_len(start + n);
            n
        }
    }

    /// Free every mbuf the ring holds; returns how many.
    pub fn drain(&mut self) -> usize {
        free_all(&self.ring.ring)
    }

    /// The ring.
    pub fn ring(&self) -> &Arc<MbufRing> {
        &self.ring
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        self.ring.ring.release_consumer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PoolConfig;
    use crate::pool::MbufPool;

    fn pool(n: u32) -> MbufPool {
        MbufPool::on_heap(&PoolConfig {
            n,
            cache_size: 0,
            ..PoolConfig::default()
        })
        .unwrap()
    }

    fn batch(p: &MbufPool, k: usize) -> MbufBatch {
        let mut b = MbufBatch::new(k.max(1));
        for _ in 0..k {
            b.push(p.alloc().unwrap()).unwrap();
        }
        b
    }

    #[test]
    fn one_producer_one_consumer_at_a_time() {
        let r = MbufRing::new(8);
        let p = r.producer().expect("first producer");
        assert!(r.producer().is_none());
        let c = r.consumer().expect("first consumer");
        assert!(r.consumer().is_none());
        assert_eq!(r.drain(), 0, "a live consumer keeps the entries");
        drop((p, c));
        assert!(r.producer().is_some() && r.consumer().is_some());
    }

    #[test]
    fn mbufs_move_in_order_and_the_rest_stays() {
        let p = pool(32);
        let r = MbufRing::new(5);
        let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
        let mut b = batch(&p, 7);
        let idx: Vec<u32> = b.iter().map(|m| m.index()).collect();
        assert_eq!(tx.enqueue_burst(&mut b), 5);
        assert_eq!(b.len(), 2, "what did not fit stays, at the front");
        assert_eq!(b.iter().map(|m| m.index()).collect::<Vec<_>>(), idx[5..]);
        assert_eq!(tx.enqueue_burst(&mut b), 0);
        let mut out = MbufBatch::new(4);
        assert_eq!(rx.dequeue_burst(&mut out), 4);
        assert_eq!(rx.dequeue_burst(&mut out), 0, "no room");
        assert_eq!(out.iter().map(|m| m.index()).collect::<Vec<_>>(), idx[..4]);
        assert_eq!(tx.enqueue_burst(&mut b), 2);
        assert!(b.is_empty());
        drop(out);
        assert_eq!(rx.drain(), 3);
        p.leak_check().unwrap();
    }

    #[test]
    fn dropping_the_ring_frees_what_it_holds() {
        let p = pool(64);
        let r = MbufRing::new(64);
        let mut tx = r.producer().unwrap();
        for k in [1, 8, 17, 32] {
            let mut b = batch(&p, k);
            assert_eq!(tx.enqueue_burst(&mut b), k);
        }
        drop(tx);
        assert_eq!(r.len(), 58);
        drop(r);
        p.leak_check().unwrap();
    }

    #[test]
    fn full_bursts_wrap_around_in_order() {
        let p = pool(128);
        let r = MbufRing::new(40);
        let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
        let mut b = batch(&p, 32);
        let mut out = MbufBatch::new(32);
        let n = if cfg!(miri) { 20 } else { 2000 };
        for round in 0..n {
            let want: Vec<u32> = b.iter().map(|m| m.index()).collect();
            assert_eq!(tx.enqueue_burst(&mut b), 32, "round {round}");
            assert_eq!(rx.dequeue_burst(&mut out), 32);
            assert_eq!(out.iter().map(|m| m.index()).collect::<Vec<_>>(), want);
            std::mem::swap(&mut b, &mut out);
        }
        drop((b, out));
        p.leak_check().unwrap();
    }

    #[test]
    fn two_threads_pass_every_mbuf() {
        let p = pool(256);
        let r = MbufRing::new(64);
        let mut tx = r.producer().unwrap();
        let mut rx = r.consumer().unwrap();
        let rounds = if cfg!(miri) { 30 } else { 20_000usize };
        let per = 13;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut got = 0;
                let mut b = MbufBatch::new(32);
                while got < rounds * per {
                    let n = rx.dequeue_burst(&mut b);
                    if n == 0 {
                        std::thread::yield_now();
                    }
                    got += n;
                    b.clear();
                }
            });
            let mut b = MbufBatch::new(per);
            for _ in 0..rounds {
                while b.len() < per {
                    match p.alloc() {
                        Some(m) => b.push(m).unwrap(),
                        None => std::thread::yield_now(),
                    }
                }
                while !b.is_empty() {
                    if tx.enqueue_burst(&mut b) == 0 {
                        std::thread::yield_now();
                    }
                }
            }
        });
        drop((tx, rx, r));
        p.leak_check().unwrap();
    }
}
