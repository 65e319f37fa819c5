//! The memif data path (copy mode): RX copies out of the shared buffers
//! into pool mbufs, TX copies into them. No lock, syscall or allocation per
//! packet: one relaxed generation load per burst notices a new connection
//! (or its loss), one acquire load of the peer's index and one release store
//! of ours per burst; the peer's eventfd is written only when its ring
//! flags ask for interrupts.
//!
//! Every descriptor the peer wrote is checked before bytes move: region
//! index, `offset + length` inside that region, chains bounded and
//! complete, the packet within the mbuf's data room. A bad one is counted
//! as an error (RX `ierrors`, TX `oerrors`) and skipped.

use super::control::{Conn, RingSide};
use super::proto::{DESC_FLAG_NEXT, RING_FLAG_MASK_INT};
use super::sys::{self, Desc, Ring};
use super::{lock, QueueSlot, Role};
use crate::port::{QueueToken, RxQueue, TxQueue};
use crate::stats::QueueCounters;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use xfwd_mempool::{Mbuf, MbufBatch, MbufPool};

/// Longest descriptor chain accepted for one packet.
const MAX_CHAIN: usize = 32;

/// A queue's view of the current connection.
#[derive(Debug)]
struct Link {
    slot: Arc<QueueSlot>,
    gen: u64,
    conn: Option<Arc<Conn>>,
    /// RX: our consumer index. TX: our producer index.
    last: u16,
    /// Client RX: our producer index of empty buffers (S2C head).
    head: u16,
    /// RX after the peer left: its last producer index, drained up to.
    drain_to: Option<u16>,
}

impl Link {
    fn new(slot: Arc<QueueSlot>) -> Link {
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
    fn sync(&mut self) {
        let g = self.slot.gen.load(Ordering::Acquire);
        if g != self.gen {
            self.resync(g);
        }
    }

    /// RX: as [`Link::sync`], but when the peer has gone, first take what
    /// it had already put in the ring (its last burst before DISCONNECT or
    /// death) up to the producer index seen then; the mapping is still ours.
    #[inline]
    fn sync_rx(&mut self, role: Role, q: usize) {
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
                let r = c.rx[q].ring;
                let to = *self.drain_to.get_or_insert_with(|| match role {
                    Role::Server => r.head().load(Ordering::Acquire),
                    Role::Client => r.tail().load(Ordering::Acquire),
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
}

/// An RX queue.
#[derive(Debug)]
pub(crate) struct MemifRx {
    q: usize,
    role: Role,
    link: Link,
    pool: MbufPool,
    room: usize,
    zc: Option<Zc>,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl MemifRx {
    pub fn new(
        q: usize,
        role: Role,
        zero_copy: bool,
        slot: Arc<QueueSlot>,
        pool: MbufPool,
        counters: Arc<QueueCounters>,
        token: QueueToken,
    ) -> MemifRx {
        let room = usize::from(pool.config().data_room);
        MemifRx {
            q,
            role,
            link: Link::new(slot),
            pool,
            room,
            zc: zero_copy.then(Zc::default),
            counters,
            _token: token,
        }
    }

    /// Client: offer every consumed buffer back to the server (S2C head).
    #[inline]
    fn refill(&mut self, conn: &Conn, side: &RingSide) {
        let r = side.ring;
        let n = r
            .size()
            .saturating_sub(u32::from(self.link.head.wrapping_sub(self.link.last)));
        if n == 0 {
            return;
        }
        let mut head = self.link.head;
        for _ in 0..n {
            r.set_desc(
                head,
                Desc {
                    flags: 0,
                    region: 0,
                    length: conn.bsize,
                    offset: side.buf0 + u32::from(head & r.mask()) * conn.bsize,
                    metadata: 0,
                },
            );
            head = head.wrapping_add(1);
        }
        self.link.head = head;
        r.head().store(head, Ordering::Release);
    }
}

/// Copy one descriptor's bytes into `dst` (its length), checking it.
#[inline]
fn read_desc(
    role: Role,
    conn: &Conn,
    side: &RingSide,
    slot: u16,
    d: &Desc,
    dst: &mut [u8],
) -> bool {
    match role {
        // The client's own buffer for this slot: only the length is the
        // peer's, and it was checked against the buffer size.
        Role::Client => {
            d.length <= conn.bsize
                && conn.regions[0].read(
                    side.buf0 + u32::from(slot & side.ring.mask()) * conn.bsize,
                    dst,
                )
        }
        Role::Server => conn
            .regions
            .get(usize::from(d.region))
            .is_some_and(|reg| reg.read(d.offset, dst)),
    }
}

impl RxQueue for MemifRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        self.link.sync_rx(self.role, self.q);
        let Some(conn) = self.link.conn.clone() else {
            if let Some(z) = &mut self.zc {
                z.reset(self.link.gen, None);
            }
            return 0;
        };
        if self.zc.is_some() {
            return self.rx_zc(&conn, out);
        }
        let side = &conn.rx[self.q];
        let r: Ring = side.ring;
        let prod = match (self.link.drain_to, self.role) {
            (Some(to), _) => to,
            (None, Role::Server) => r.head().load(Ordering::Acquire),
            (None, Role::Client) => r.tail().load(Ordering::Acquire),
        };
        let mut cur = self.link.last;
        let avail = u32::from(prod.wrapping_sub(cur));
        let mut filled = 0usize;
        if avail > r.size() {
            // The peer moved its index past anything it could have filled.
            self.counters.add_errors(1);
        } else if avail > 0 && out.room() > 0 {
            let want = (avail as usize).min(out.room());
            let start = out.len();
            if self
                .pool
                .with_lcore_cache(|c| c.alloc_bulk_raw(out, want))
                .is_err()
            {
                self.counters.add_nombuf(want as u64);
            } else {
                let end = prod;
                let mut bytes = 0u64;
                let mut errors = 0u64;
                let mut chain = [Desc::default(); MAX_CHAIN];
                while filled < want && cur != end {
                    let first = cur;
                    let mut k = 0usize;
                    let mut total = 0usize;
                    let mut ok = true;
                    loop {
                        let d = r.desc(cur);
                        cur = cur.wrapping_add(1);
                        if k < MAX_CHAIN {
                            chain[k] = d;
                        } else {
                            ok = false;
                        }
                        k += 1;
                        total += d.length as usize;
                        if d.flags & DESC_FLAG_NEXT == 0 {
                            break;
                        }
                        if cur == end {
                            // A chain the producer never finished.
                            ok = false;
                            break;
                        }
                    }
                    if !ok || total > self.room {
                        errors += 1;
                        continue;
                    }
                    let m = &mut out.as_mut_slice()[start + filled];
                    if m.reset_len(total).is_err() {
                        errors += 1;
                        continue;
                    }
                    let data = m.data_mut();
                    let mut at = 0usize;
                    for (j, d) in chain[..k].iter().enumerate() {
                        let len = d.length as usize;
                        let slot = first.wrapping_add(j as u16);
                        if !read_desc(self.role, &conn, side, slot, d, &mut data[at..at + len]) {
                            ok = false;
                            break;
                        }
                        at += len;
                    }
                    if !ok {
                        errors += 1;
                        continue;
                    }
                    bytes += total as u64;
                    filled += 1;
                }
                // Mbufs allocated for packets that turned out bad or chained.
                if start + filled < out.len() {
                    self.pool.with_lcore_cache(|c| {
                        while out.len() > start + filled {
                            if let Some(m) = out.pop() {
                                c.free(m);
                            }
                        }
                    });
                }
                if self.role == Role::Server {
                    r.tail().store(cur, Ordering::Release);
                }
                self.link.last = cur;
                self.counters.add(filled as u64, bytes);
                self.counters.add_errors(errors);
            }
        }
        if self.role == Role::Client {
            self.refill(&conn, side);
        }
        filled
    }
}

/// A TX queue.
#[derive(Debug)]
pub(crate) struct MemifTx {
    q: usize,
    role: Role,
    link: Link,
    pool: MbufPool,
    zc: Option<Zc>,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl MemifTx {
    pub fn new(
        q: usize,
        role: Role,
        zero_copy: bool,
        slot: Arc<QueueSlot>,
        pool: MbufPool,
        counters: Arc<QueueCounters>,
        token: QueueToken,
    ) -> MemifTx {
        MemifTx {
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

/// The buffer of TX slot `slot`: (region, offset, room). The client's own
/// layout, or the server's checked copy of the client's descriptor.
#[inline]
fn tx_buf(role: Role, conn: &Conn, side: &RingSide, slot: u16) -> Option<(usize, u32, u32)> {
    match role {
        Role::Client => Some((
            0,
            side.buf0 + u32::from(slot & side.ring.mask()) * conn.bsize,
            conn.bsize,
        )),
        Role::Server => {
            let d = side.ring.desc(slot);
            let reg = usize::from(d.region);
            let ok = d.length > 0
                && conn
                    .regions
                    .get(reg)
                    .is_some_and(|r| r.contains(d.offset, d.length as usize));
            ok.then_some((reg, d.offset, d.length))
        }
    }
}

#[inline]
fn tx_finish(role: Role, r: &Ring, slot: u16, flags: u16, off: u32, len: u32) {
    match role {
        Role::Client => r.set_desc(
            slot,
            Desc {
                flags,
                region: 0,
                length: len,
                offset: off,
                metadata: 0,
            },
        ),
        Role::Server => r.set_desc_flags_len(slot, flags, len),
    }
}

impl TxQueue for MemifTx {
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        self.link.sync();
        let Some(conn) = self.link.conn.clone() else {
            if let Some(z) = &mut self.zc {
                z.reset(self.link.gen, None);
            }
            return 0;
        };
        if self.zc.is_some() {
            return self.tx_zc(&conn, pkts);
        }
        let side = &conn.tx[self.q];
        let r = side.ring;
        let size = r.size();
        let mut slot = self.link.last;
        let mut free = match self.role {
            Role::Client => {
                let used = u32::from(slot.wrapping_sub(r.tail().load(Ordering::Acquire)));
                size.saturating_sub(used)
            }
            Role::Server => {
                let f = u32::from(r.head().load(Ordering::Acquire).wrapping_sub(slot));
                if f > size {
                    0
                } else {
                    f
                }
            }
        };
        let mut sent = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        'pkts: for m in pkts.iter() {
            if free == 0 {
                break;
            }
            let saved = (slot,);
            let Some((mut reg, mut off, mut cap)) = tx_buf(self.role, &conn, side, slot) else {
                errors += 1;
                break;
            };
            let mut used = 0u32;
            for seg in m.segments() {
                let mut s = seg;
                while !s.is_empty() {
                    if used == cap {
                        tx_finish(self.role, &r, slot, DESC_FLAG_NEXT, off, used);
                        slot = slot.wrapping_add(1);
                        free -= 1;
                        let next = if free == 0 {
                            None
                        } else {
                            tx_buf(self.role, &conn, side, slot)
                        };
                        let Some(b) = next else {
                            if free != 0 {
                                errors += 1;
                            }
                            slot = saved.0;
                            break 'pkts;
                        };
                        (reg, off, cap) = b;
                        used = 0;
                    }
                    let k = ((cap - used) as usize).min(s.len());
                    if !conn.regions[reg].write(off + used, &s[..k]) {
                        errors += 1;
                        slot = saved.0;
                        break 'pkts;
                    }
                    used += k as u32;
                    s = &s[k..];
                }
            }
            tx_finish(self.role, &r, slot, 0, off, used);
            slot = slot.wrapping_add(1);
            free -= 1;
            sent += 1;
            bytes += m.pkt_len() as u64;
        }
        if slot != self.link.last {
            match self.role {
                Role::Client => r.head().store(slot, Ordering::Release),
                Role::Server => r.tail().store(slot, Ordering::Release),
            }
            self.link.last = slot;
            if r.flags().load(Ordering::Relaxed) & RING_FLAG_MASK_INT == 0 {
                sys::eventfd_kick(side.efd.as_raw_fd());
            }
        }
        if sent > 0 {
            self.pool
                .with_lcore_cache(|c| pkts.consume_front(sent, |m| c.free(m)));
        }
        self.counters.add(sent as u64, bytes);
        self.counters.add_errors(errors);
        sent
    }
}

// ---------------------------------------------------------------------------
// Zero copy (client only): region 1 is the mbuf pool itself. S2C slots hold
// pool mbufs the server fills; C2S descriptors point at the data of the
// mbufs sent, which stay ours until the server's tail passes them.

/// Mbufs a zero-copy queue has posted to its ring, by slot.
#[derive(Debug, Default)]
struct Zc {
    gen: u64,
    inflight: Vec<Option<Mbuf>>,
}

impl Zc {
    /// A new connection (or none): every mbuf posted to the old one comes
    /// back to the pool; `take` gives the RX mbufs offered at connect.
    fn reset(&mut self, gen: u64, take: Option<&RingSide>) {
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
pub(crate) fn zc_desc(m: &Mbuf, base: usize) -> Desc {
    Desc {
        flags: 0,
        region: 1,
        length: (m.buf_len() - m.headroom()) as u32,
        offset: (m.buf_addr() as usize + m.headroom() - base) as u32,
        metadata: 0,
    }
}

impl MemifRx {
    fn rx_zc(&mut self, conn: &Conn, out: &mut MbufBatch) -> usize {
        let side = &conn.rx[self.q];
        let r = side.ring;
        let z = self.zc.as_mut().expect("zero copy");
        if z.gen != self.link.gen || z.inflight.is_empty() {
            z.reset(self.link.gen, Some(side));
            self.link.head = z.inflight.iter().filter(|m| m.is_some()).count() as u16;
        }
        let prod = self
            .link
            .drain_to
            .unwrap_or_else(|| r.tail().load(Ordering::Acquire));
        let mut cur = self.link.last;
        if u32::from(prod.wrapping_sub(cur)) > r.size() {
            self.counters.add_errors(1);
            return 0;
        }
        let (mut n, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        let room = self.room;
        let mask = r.mask();
        while out.room() > 0 && cur != prod {
            let d = r.desc(cur);
            let slot = usize::from(cur & mask);
            cur = cur.wrapping_add(1);
            let Some(mut m) = z.inflight[slot].take() else {
                errors += 1;
                continue;
            };
            let hr = m.headroom();
            let mut ok =
                d.length as usize <= room && m.set_data_range(hr, d.length as usize).is_ok();
            let mut flags = d.flags;
            while flags & DESC_FLAG_NEXT != 0 {
                if cur == prod {
                    ok = false;
                    break;
                }
                let d2 = r.desc(cur);
                let s2 = usize::from(cur & mask);
                cur = cur.wrapping_add(1);
                flags = d2.flags;
                match z.inflight[s2].take() {
                    Some(mut t) => {
                        let hr = t.headroom();
                        ok = ok
                            && d2.length as usize <= room
                            && t.set_data_range(hr, d2.length as usize).is_ok()
                            && m.chain(t).is_ok();
                    }
                    None => ok = false,
                }
            }
            if !ok {
                errors += 1;
                continue;
            }
            bytes += m.pkt_len() as u64;
            if out.push(m).is_err() {
                errors += 1;
                continue;
            }
            n += 1;
        }
        self.link.last = cur;
        // Refill: a fresh pool mbuf in every slot the server has filled.
        let base = conn.regions[1].addr();
        let (link, counters) = (&mut self.link, &self.counters);
        self.pool.with_lcore_cache(|c| {
            let mut head = link.head;
            while u32::from(head.wrapping_sub(link.last)) < r.size() {
                let slot = usize::from(head & mask);
                if z.inflight[slot].is_some() {
                    break;
                }
                let Some(m) = c.alloc() else {
                    counters.add_nombuf(1);
                    break;
                };
                r.set_desc(head, zc_desc(&m, base));
                z.inflight[slot] = Some(m);
                head = head.wrapping_add(1);
            }
            link.head = head;
        });
        r.head().store(self.link.head, Ordering::Release);
        self.counters.add(n as u64, bytes);
        self.counters.add_errors(errors);
        n
    }
}

impl MemifTx {
    fn tx_zc(&mut self, conn: &Conn, pkts: &mut MbufBatch) -> usize {
        let side = &conn.tx[self.q];
        let r = side.ring;
        let size = r.size();
        let mask = r.mask();
        let z = self.zc.as_mut().expect("zero copy");
        if z.gen != self.link.gen || z.inflight.is_empty() {
            z.reset(self.link.gen, None);
            z.inflight.resize_with(size as usize, || None);
            self.link.head = self.link.last;
        }
        // Reclaim what the server has consumed (link.head: reclaim index).
        let tail = r.tail().load(Ordering::Acquire);
        let done = tail.wrapping_sub(self.link.head);
        if u32::from(done) <= u32::from(self.link.last.wrapping_sub(self.link.head)) {
            let from = self.link.head;
            self.pool.with_lcore_cache(|c| {
                for i in 0..done {
                    if let Some(m) = z.inflight[usize::from(from.wrapping_add(i) & mask)].take() {
                        c.free(m);
                    }
                }
            });
            self.link.head = tail;
        }
        let base = conn.regions[1].addr();
        let end = base + conn.regions[1].len();
        let mut slot = self.link.last;
        let mut free = size.saturating_sub(u32::from(slot.wrapping_sub(self.link.head)));
        let mut firsts = [0u16; xfwd_mempool::MAX_BURST];
        let (mut sent, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        for m in pkts.iter() {
            let nseg = m.nb_segs() as u32;
            if nseg > free || sent == firsts.len() {
                break;
            }
            let inside = m.segments().all(|s| {
                let a = s.as_ptr() as usize;
                a >= base && a + s.len() <= end
            });
            if !inside {
                // Not pool memory the peer can see: never a silent copy.
                errors += 1;
                break;
            }
            firsts[sent] = slot;
            let mut segs = m.segments().peekable();
            while let Some(sg) = segs.next() {
                let more = segs.peek().is_some();
                r.set_desc(
                    slot,
                    Desc {
                        flags: if more { DESC_FLAG_NEXT } else { 0 },
                        region: 1,
                        length: sg.len() as u32,
                        offset: (sg.as_ptr() as usize - base) as u32,
                        metadata: 0,
                    },
                );
                slot = slot.wrapping_add(1);
                free -= 1;
            }
            sent += 1;
            bytes += m.pkt_len() as u64;
        }
        if sent > 0 {
            r.head().store(slot, Ordering::Release);
            self.link.last = slot;
            if r.flags().load(Ordering::Relaxed) & RING_FLAG_MASK_INT == 0 {
                sys::eventfd_kick(side.efd.as_raw_fd());
            }
            let mut i = 0;
            pkts.consume_front(sent, |m| {
                z.inflight[usize::from(firsts[i] & mask)] = Some(m);
                i += 1;
            });
        }
        self.counters.add(sent as u64, bytes);
        self.counters.add_errors(errors);
        sent
    }
}
