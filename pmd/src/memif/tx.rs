//! The memif TX queue. Copy mode copies into the buffers the ring offers
//! (the client's own layout, or the client's descriptors checked by the
//! server); zero copy (client) posts descriptors pointing at the mbufs'
//! data, which stay ours until the server's tail passes them. A buffer
//! outside its region is counted (`oerrors`) and never written. The peer
//! is kicked only when its ring flags ask for it.

use super::conn::{Conn, RingSide};
use super::link::{Path, QueueBase};
use super::proto::DESC_FLAG_NEXT;
use super::ring::{Desc, Ring};
use super::Role;
use crate::port::TxQueue;
use std::sync::atomic::Ordering;
use xfwd_mempool::MbufBatch;

/// A TX queue.
#[derive(Debug)]
pub(crate) struct MemifTx {
    b: QueueBase,
}

impl MemifTx {
    pub fn new(b: QueueBase) -> MemifTx {
        MemifTx { b }
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
                    .is_some_and(|r| r.contains(d.offset as usize, d.length as usize));
            ok.then_some((reg, d.offset, d.length))
        }
    }
}

/// After publishing our index: kick the receiver when its ring flags ask
/// for it (a full counter is as good as a kick). The fence (once per burst
/// that sent something) keeps the flag load after our index store, the
/// mirror of the receiver's fence after unmasking: one of the two sides
/// then sees the other's write, so an xfwd receiver about to block never
/// misses our burst (DPDK's sender has no fence: its rare lost kick costs
/// an xfwd receiver at most its idle sleep).
#[inline]
fn kick(side: &RingSide) {
    std::sync::atomic::fence(Ordering::SeqCst);
    if side.ring.wants_kick() {
        let _ = side.efd.signal(1);
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
        self.b.link.sync();
        match self.b.link.path(&mut self.b.zc) {
            Path::Down => 0,
            Path::Copy(c) => {
                let n = self.tx_copy(&c, pkts);
                self.b.link.restore(c, n)
            }
            Path::ZeroCopy(c) => {
                let n = self.tx_zc(&c, pkts);
                self.b.link.restore(c, n)
            }
        }
    }
}

impl MemifTx {
    fn tx_copy(&mut self, conn: &Conn, pkts: &mut MbufBatch) -> usize {
        let side = &conn.tx[self.b.q];
        let r = &side.ring;
        let size = r.size();
        let mut slot = self.b.link.last;
        let mut free = match self.b.role {
            Role::Client => {
                let used = u32::from(slot.wrapping_sub(r.tail(Ordering::Acquire)));
                size.saturating_sub(used)
            }
            Role::Server => {
                let f = u32::from(r.head(Ordering::Acquire).wrapping_sub(slot));
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
            let Some((mut reg, mut off, mut cap)) = tx_buf(self.b.role, conn, side, slot) else {
                errors += 1;
                break;
            };
            let mut used = 0u32;
            for seg in m.segments() {
                let mut s = seg;
                while !s.is_empty() {
                    if used == cap {
                        tx_finish(self.b.role, r, slot, DESC_FLAG_NEXT, off, used);
                        slot = slot.wrapping_add(1);
                        free -= 1;
                        let next = if free == 0 {
                            None
                        } else {
                            tx_buf(self.b.role, conn, side, slot)
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
                    let dst = &conn.regions[reg];
                    if !dst.contains((off + used) as usize, k) {
                        errors += 1;
                        slot = saved.0;
                        break 'pkts;
                    }
                    dst.copy_in((off + used) as usize, &s[..k]);
                    used += k as u32;
                    s = &s[k..];
                }
            }
            tx_finish(self.b.role, r, slot, 0, off, used);
            slot = slot.wrapping_add(1);
            free -= 1;
            sent += 1;
            bytes += m.pkt_len() as u64;
        }
        if slot != self.b.link.last {
            match self.b.role {
                Role::Client => r.set_head(slot, Ordering::Release),
                Role::Server => r.set_tail(slot, Ordering::Release),
            }
            self.b.link.last = slot;
            kick(side);
        }
        if sent > 0 {
            self.b
                .pool
                .with_lcore_cache(|c| pkts.consume_front(sent, |m| c.free(m)));
        }
        self.b.counters.add(sent as u64, bytes);
        self.b.counters.add_errors(errors);
        sent
    }
}

impl MemifTx {
    fn tx_zc(&mut self, conn: &Conn, pkts: &mut MbufBatch) -> usize {
        let side = &conn.tx[self.b.q];
        let r = &side.ring;
        let size = r.size();
        let mask = r.mask();
        let z = self.b.zc.as_mut().expect("zero copy");
        if z.gen != self.b.link.gen || z.inflight.is_empty() {
            z.reset(self.b.link.gen, None);
            z.inflight.resize_with(size as usize, || None);
            self.b.link.head = self.b.link.last;
        }
        // Reclaim what the server has consumed (link.head: reclaim index).
        let tail = r.tail(Ordering::Acquire);
        let done = tail.wrapping_sub(self.b.link.head);
        if u32::from(done) <= u32::from(self.b.link.last.wrapping_sub(self.b.link.head)) {
            let from = self.b.link.head;
            self.b.pool.with_lcore_cache(|c| {
                for i in 0..done {
                    if let Some(m) = z.inflight[usize::from(from.wrapping_add(i) & mask)].take() {
                        c.free(m);
                    }
                }
            });
            self.b.link.head = tail;
        }
        let base = conn.regions[1].addr();
        let end = base + conn.regions[1].len();
        let mut slot = self.b.link.last;
        let mut free = size.saturating_sub(u32::from(slot.wrapping_sub(self.b.link.head)));
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
            r.set_head(slot, Ordering::Release);
            self.b.link.last = slot;
            kick(side);
            let mut i = 0;
            pkts.consume_front(sent, |m| {
                z.inflight[usize::from(firsts[i] & mask)] = Some(m);
                i += 1;
            });
        }
        self.b.counters.add(sent as u64, bytes);
        self.b.counters.add_errors(errors);
        sent
    }
}
