//! The memif RX queue. Copy mode copies out of the shared buffers into
//! pool mbufs; zero copy (client) takes the pool mbufs the server filled and
//! offers fresh ones in their slots. Every descriptor the peer wrote is
//! checked before bytes move: region index, `offset + length` inside that
//! region, chains bounded and complete, the packet within the mbuf's data
//! room. A bad one is counted (`ierrors`) and skipped.
//!
//! Interrupt mode: an idle lcore unmasks the ring's interrupt
//! ([`RxQueue::intr_arm`]) and blocks on the eventfd the peer kicks; it
//! masks it again ([`RxQueue::intr_disarm`]) before polling, so a busy
//! queue makes no system call.

use super::conn::{Conn, RingSide};
use super::link::{zc_desc, Path, QueueBase};
use super::proto::DESC_FLAG_NEXT;
use super::ring::Desc;
use super::Role;
use crate::port::{Intr, RxQueue};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use xfwd_mempool::MbufBatch;

/// Longest descriptor chain accepted for one packet.
const MAX_CHAIN: usize = 32;

/// An RX queue.
#[derive(Debug)]
pub(crate) struct MemifRx {
    b: QueueBase,
    room: usize,
}

impl MemifRx {
    pub fn new(b: QueueBase) -> MemifRx {
        let room = usize::from(b.pool.config().data_room);
        MemifRx { b, room }
    }

    /// Client: offer every consumed buffer back to the server (S2C head).
    #[inline]
    fn refill(&mut self, conn: &Conn, side: &RingSide) {
        let r = &side.ring;
        let n = r
            .size()
            .saturating_sub(u32::from(self.b.link.head.wrapping_sub(self.b.link.last)));
        if n == 0 {
            return;
        }
        let mut head = self.b.link.head;
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
        self.b.link.head = head;
        r.set_head(head, Ordering::Release);
    }
}

/// Copy `dst.len()` bytes at `off` of `reg`; false (nothing copied) when
/// the range leaves the region.
#[inline(always)]
fn copy_out(reg: &crate::sys::Shared, off: u32, dst: &mut [u8]) -> bool {
    let ok = reg.contains(off as usize, dst.len());
    if ok {
        reg.copy_out(off as usize, dst);
    }
    ok
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
                && copy_out(
                    &conn.regions[0],
                    side.buf0 + u32::from(slot & side.ring.mask()) * conn.bsize,
                    dst,
                )
        }
        Role::Server => conn
            .regions
            .get(usize::from(d.region))
            .is_some_and(|reg| copy_out(reg, d.offset, dst)),
    }
}

impl RxQueue for MemifRx {
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        self.b.link.sync_rx(self.b.role, self.b.q);
        match self.b.link.path(&mut self.b.zc) {
            Path::Down => 0,
            Path::Copy(c) => {
                let n = self.rx_copy(&c, out);
                self.b.link.restore(c, n)
            }
            Path::ZeroCopy(c) => {
                let n = self.rx_zc(&c, out);
                self.b.link.restore(c, n)
            }
        }
    }

    fn intr_arm(&mut self) -> Intr {
        let Some(conn) = &self.b.link.conn else {
            return Intr::Unsupported;
        };
        if self.b.link.drain_to.is_some()
            || self.b.link.slot.gen.load(Ordering::Acquire) != self.b.link.gen
        {
            // A connection change to pick up first.
            return Intr::Pending;
        }
        let side = &conn.rx[self.b.q];
        side.ring.set_interrupt(true);
        if self.producer(side) != self.b.link.last {
            side.ring.set_interrupt(false);
            return Intr::Pending;
        }
        Intr::Armed(side.efd.as_raw_fd())
    }

    fn intr_disarm(&mut self, fired: bool) {
        if let Some(conn) = &self.b.link.conn {
            let side = &conn.rx[self.b.q];
            side.ring.set_interrupt(false);
            if fired {
                // Clear the counter, or the next wait would return at once.
                let _ = side.efd.take();
            }
        }
    }
}

impl MemifRx {
    /// The peer's producer index of our ring (server: C2S head; client:
    /// S2C tail).
    #[inline(always)]
    fn producer(&self, side: &RingSide) -> u16 {
        match self.b.role {
            Role::Server => side.ring.head(Ordering::Acquire),
            Role::Client => side.ring.tail(Ordering::Acquire),
        }
    }

    fn rx_copy(&mut self, conn: &Conn, out: &mut MbufBatch) -> usize {
        let side = &conn.rx[self.b.q];
        let r = &side.ring;
        let prod = match self.b.link.drain_to {
            Some(to) => to,
            None => self.producer(side),
        };
        let mut cur = self.b.link.last;
        let avail = u32::from(prod.wrapping_sub(cur));
        let mut filled = 0usize;
        if avail > r.size() {
            // The peer moved its index past anything it could have filled.
            self.b.counters.add_errors(1);
        } else if avail > 0 && out.room() > 0 {
            let want = (avail as usize).min(out.room());
            let start = out.len();
            if self
                .b
                .pool
                .with_lcore_cache(|c| c.alloc_bulk_raw(out, want))
                .is_err()
            {
                self.b.counters.add_nombuf(want as u64);
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
                        if !read_desc(self.b.role, conn, side, slot, d, &mut data[at..at + len]) {
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
                    self.b.pool.with_lcore_cache(|c| {
                        while out.len() > start + filled {
                            if let Some(m) = out.pop() {
                                c.free(m);
                            }
                        }
                    });
                }
                if self.b.role == Role::Server {
                    r.set_tail(cur, Ordering::Release);
                }
                self.b.link.last = cur;
                self.b.counters.add(filled as u64, bytes);
                self.b.counters.add_errors(errors);
            }
        }
        if self.b.role == Role::Client {
            self.refill(conn, side);
        }
        filled
    }
}

impl MemifRx {
    fn rx_zc(&mut self, conn: &Conn, out: &mut MbufBatch) -> usize {
        let side = &conn.rx[self.b.q];
        let r = &side.ring;
        let z = self.b.zc.as_mut().expect("zero copy");
        if z.gen != self.b.link.gen || z.inflight.is_empty() {
            z.reset(self.b.link.gen, Some(side));
            self.b.link.head = z.inflight.iter().filter(|m| m.is_some()).count() as u16;
        }
        let prod = self
            .b
            .link
            .drain_to
            .unwrap_or_else(|| r.tail(Ordering::Acquire));
        let mut cur = self.b.link.last;
        if u32::from(prod.wrapping_sub(cur)) > r.size() {
            self.b.counters.add_errors(1);
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
        self.b.link.last = cur;
        // Refill: a fresh pool mbuf in every slot the server has filled.
        let base = conn.regions[1].addr();
        let offered = self.b.link.head;
        if u32::from(offered.wrapping_sub(self.b.link.last)) < r.size() {
            self.refill_zc(side, base);
        }
        if self.b.link.head != offered {
            // Only a moved index is stored: an empty poll writes nothing to
            // the line the server's TX reads (no ownership change per poll).
            r.set_head(self.b.link.head, Ordering::Release);
        }
        self.b.counters.add(n as u64, bytes);
        self.b.counters.add_errors(errors);
        n
    }

    /// Zero copy: a fresh pool mbuf in every slot the server has filled
    /// (up to a slot still holding one).
    #[inline]
    fn refill_zc(&mut self, side: &RingSide, base: usize) {
        let r = &side.ring;
        let mask = r.mask();
        let z = self.b.zc.as_mut().expect("zero copy");
        let (link, counters) = (&mut self.b.link, &self.b.counters);
        self.b.pool.with_lcore_cache(|c| {
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
    }
}
