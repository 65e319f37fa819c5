//! What the memif RX and TX queues share: [`Link`], a queue's view of the
//! current connection (picked up through a generation counter, one load per
//! burst), the burst prelude ([`Link::path`]: down, copy or zero copy), and
//! the zero-copy bookkeeping ([`Zc`]).
//!
//! No lock, syscall or allocation per packet: one acquire generation load
//! per burst notices a new connection (or its loss), one acquire load of the
//! peer's index and one release store of ours per burst; the peer's eventfd
//! is written only when its ring flags ask for interrupts.

use super::conn::{Conn, RingSide};
use super::ring::Desc;
use super::{lock, QueueSlot, Role};
use crate::port::QueueToken;
use crate::stats::QueueCounters;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use xfwd_mempool::{Mbuf, MbufPool};

/// What an RX and a TX queue both hold.
#[derive(Debug)]
pub(crate) struct QueueBase {
    /// Queue index (ring index in our direction).
    pub q: usize,
    pub role: Role,
    pub link: Link,
    pub pool: MbufPool,
    /// Zero copy (client): the mbufs posted to the ring.
    pub zc: Option<Zc>,
    pub counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl QueueBase {
    pub fn new(
        q: usize,
        role: Role,
        zero_copy: bool,
        slot: Arc<QueueSlot>,
        pool: MbufPool,
        counters: Arc<QueueCounters>,
        token: QueueToken,
    ) -> QueueBase {
        QueueBase {
            q,
            role,
            link: Link::new(slot),
            pool,
            zc: zero_copy.then(Zc::default),
            counters,
            _token: token,
        }
    }
}

/// What a burst works on (see [`Link::path`]).
pub(super) enum Path {
    /// No connection: nothing to do.
    Down,
    /// Copy mode on this connection.
    Copy(Arc<Conn>),
    /// Zero copy on this connection.
    ZeroCopy(Arc<Conn>),
}

/// A queue's view of the current connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub slot: Arc<QueueSlot>,
    pub gen: u64,
    pub conn: Option<Arc<Conn>>,
    /// RX: our consumer index. TX: our producer index.
    pub last: u16,
    /// Client RX: our producer index of empty buffers (S2C head).
    pub head: u16,
    /// RX after the peer left: its last producer index, drained up to.
    pub drain_to: Option<u16>,
}

impl Link {
    pub fn new(slot: Arc<QueueSlot>) -> Link {
        Link {
            slot,
            gen: 0,
            conn: None,
            last: 0,
            head: 0,
            drain_to: None,
        }
    }

    /// Pick up a new connection (or its loss): one load per burst.
    #[inline]
    pub fn sync(&mut self) {
        let g = self.slot.gen.load(Ordering::Acquire);
        if g != self.gen {
            self.resync(g);
        }
    }

    /// RX: as [`Link::sync`], but when the peer has gone, first take what
    /// it had already put in the ring (its last burst before DISCONNECT or
    /// death) up to the producer index seen then; the mapping is still ours.
    #[inline]
    pub fn sync_rx(&mut self, role: Role, q: usize) {
        let g = self.slot.gen.load(Ordering::Acquire);
        if g == self.gen {
            return;
        }
        self.drain_rx(g, role, q);
    }

    #[cold]
    fn drain_rx(&mut self, g: u64, role: Role, q: usize) {
        if let Some(c) = &self.conn {
            if lock(&self.slot.conn).is_none() {
                let r = &c.rx[q].ring;
                let to = *self.drain_to.get_or_insert_with(|| match role {
                    Role::Server => r.head(Ordering::Acquire),
                    Role::Client => r.tail(Ordering::Acquire),
                });
                if to != self.last && u32::from(to.wrapping_sub(self.last)) <= r.size() {
                    return;
                }
            }
        }
        self.resync(g);
    }

    #[cold]
    fn resync(&mut self, g: u64) {
        self.gen = g;
        self.conn = lock(&self.slot.conn).clone();
        self.last = 0;
        // Client RX: the control thread offered every S2C buffer at connect.
        self.head = self
            .conn
            .as_ref()
            .and_then(|c| c.rx.first())
            .map_or(0, |s| s.ring.mask().wrapping_add(1));
        self.drain_to = None;
    }

    /// The burst prelude of every RX and TX path: with no connection,
    /// every mbuf a zero-copy queue had posted to the old one comes back
    /// (so a peer that left holds none) and the burst does nothing;
    /// otherwise the copy or zero-copy path runs on the connection, lent
    /// out of the link (a move, not a reference-count update: no atomic per
    /// burst) until [`Link::restore`] gives it back.
    #[inline]
    pub fn path(&mut self, zc: &mut Option<Zc>) -> Path {
        match (self.conn.take(), zc) {
            (None, Some(z)) => {
                z.reset(self.gen, None);
                Path::Down
            }
            (None, None) => Path::Down,
            (Some(c), Some(_)) => Path::ZeroCopy(c),
            (Some(c), None) => Path::Copy(c),
        }
    }

    /// Give back the connection [`Link::path`] lent out; `n` passes through.
    #[inline]
    pub fn restore(&mut self, c: Arc<Conn>, n: usize) -> usize {
        self.conn = Some(c);
        n
    }
}

// Zero copy (client only): region 1 is the mbuf pool itself. S2C slots hold
// pool mbufs the server fills; C2S descriptors point at the data of the
// mbufs sent, which stay ours until the server's tail passes them.

/// Mbufs a zero-copy queue has posted to its ring, by slot.
#[derive(Debug, Default)]
pub(crate) struct Zc {
    pub gen: u64,
    pub inflight: Vec<Option<Mbuf>>,
}

impl Zc {
    /// A new connection (or none): every mbuf posted to the old one comes
    /// back to the pool; `take` gives the RX mbufs offered at connect.
    pub fn reset(&mut self, gen: u64, take: Option<&RingSide>) {
        if self.gen == gen && !self.inflight.is_empty() {
            return;
        }
        self.gen = gen;
        self.inflight.clear();
        if let Some(side) = take {
            self.inflight = std::mem::take(&mut *lock(&side.offered));
            self.inflight
                .resize_with(side.ring.size() as usize, || None);
        }
    }
}

/// The descriptor offering mbuf `m`'s data room (zero copy, region 1 at
/// address `base`).
pub(super) fn zc_desc(m: &Mbuf, base: usize) -> Desc {
    Desc {
        flags: 0,
        region: 1,
        length: (m.buf_len() - m.headroom()) as u32,
        offset: (m.buf_addr() as usize + m.headroom() - base) as u32,
        metadata: 0,
    }
}
