//! The router's part of an lcore: per polling round it takes the newest
//! table snapshot, then per RX burst parses every frame, batches the table
//! reads (first-level entries or hash slots prefetched for the whole burst
//! before any is resolved), edits the frames that have a next hop and
//! sorts them into one fixed batch per TX port; the rest are freed,
//! counted by reason. No allocation, lock or system call per packet.
//!
//! Per burst, in passes over the whole burst (so the loads of one pass
//! overlap): 1. parse (the common untagged IPv4 header first, see
//! [`pkt::parse`]), take the lookup key and prefetch its table entry; 2.
//! resolve the lookups; 3. per packet one read of the lcore's edit table
//! (next hop id → TX port and the 12 bytes of destination and source MAC,
//! rebuilt when a new snapshot is taken, so a packet costs no lookup of
//! the next hop and then of its port's MAC), the TTL and checksum update
//! (RFC 1624) and the MAC rewrite, then into its port's batch. Drop
//! reasons are counted out of line.

use super::pkt::{self, Drop, Parsed};
use super::table::{Lookup, Reader, Tables};
use crate::control::capture::Dir;
use crate::counters::StreamCounters;
use crate::worker::{send_burst, Stream};
use xfwd_mempool::{MbufBatch, PoolCache, MAX_BURST};
use xfwd_pmd::{RxQueue, TxQueue};

const NONE: u32 = u32::MAX;

/// What an l3fwd lcore owns besides its queues.
#[derive(Debug)]
pub struct Lcore {
    reader: Reader,
    /// Streams (indices into the worker's list) that receive.
    rx_streams: Vec<usize>,
    /// Per port id: (TX queue index in the worker, stream holding its counters).
    tx_of_port: Vec<Option<(usize, usize)>>,
    out: Vec<MbufBatch>,
    drops: MbufBatch,
    scratch: Box<Scratch>,
    /// Per next hop id: where it goes and what is written (see [`Edit`]).
    edits: Vec<Edit>,
    /// The snapshot generation `edits` was built from.
    edits_gen: Option<u64>,
}

/// What the lcore writes for a next hop: its TX port and the destination
/// and source MACs as one block (`port == NO_PORT`: the port has no MAC or
/// no batch, counted as no route).
#[derive(Debug, Clone, Copy)]
struct Edit {
    macs: [u8; 12],
    port: u16,
}

const NO_PORT: u16 = u16::MAX;
const NO_EDIT: Edit = Edit {
    macs: [0; 12],
    port: NO_PORT,
};

/// Per-burst working arrays, allocated once (not zeroed per burst).
#[derive(Debug)]
struct Scratch {
    parsed: [Parsed; MAX_BURST],
    hop: [u32; MAX_BURST],
    a4: [u32; MAX_BURST],
    h: [u64; MAX_BURST],
    k4: [super::em::Key4; MAX_BURST],
}

/// Per-burst drop counts (and the VLAN-tagged frames forwarded).
#[derive(Debug, Default, Clone, Copy)]
struct Drops {
    non_ip: u64,
    bad_header: u64,
    ttl: u64,
    no_route: u64,
    vlan: u64,
}

impl Drops {
    #[inline]
    fn any(&self) -> bool {
        (self.non_ip | self.bad_header | self.ttl | self.no_route | self.vlan) != 0
    }

    #[cold]
    #[inline(never)]
    fn drop_reason(&mut self, why: Drop) {
        match why {
            Drop::NonIp => self.non_ip += 1,
            Drop::BadHeader => self.bad_header += 1,
            Drop::TtlExceeded => self.ttl += 1,
            Drop::NoRoute => self.no_route += 1,
        }
    }
}

impl Lcore {
    /// An lcore reading `reader`; `tx_of_port[p]` names its TX queue on
    /// port `p` and the stream counting what is sent there.
    pub fn new(
        reader: Reader,
        rx_streams: Vec<usize>,
        tx_of_port: Vec<Option<(usize, usize)>>,
        burst: usize,
    ) -> Lcore {
        let out = tx_of_port.iter().map(|_| MbufBatch::new(burst)).collect();
        Lcore {
            reader,
            rx_streams,
            tx_of_port,
            out,
            drops: MbufBatch::new(burst),
            scratch: Box::new(Scratch {
                parsed: [Parsed::Drop(Drop::NonIp); MAX_BURST],
                hop: [NONE; MAX_BURST],
                a4: [0; MAX_BURST],
                h: [0; MAX_BURST],
                k4: [super::em::Key4::default(); MAX_BURST],
            }),
            edits: Vec::new(),
            edits_gen: None,
        }
    }

    /// Rebuild the edit table when the snapshot changed (allocates only
    /// when the table grew: an update, never per packet).
    #[inline]
    fn sync_edits(&mut self) {
        let t = self.reader.tables();
        if self.edits_gen == Some(t.generation) {
            return;
        }
        self.edits_gen = Some(t.generation);
        let ports = self.out.len();
        self.edits.clear();
        self.edits.extend(t.hops.iter().map(|h| {
            match t.port_macs.get(usize::from(h.port)).copied().flatten() {
                Some(src) if usize::from(h.port) < ports => {
                    let mut macs = [0u8; 12];
                    macs[..6].copy_from_slice(&h.mac);
                    macs[6..].copy_from_slice(&src);
                    Edit { macs, port: h.port }
                }
                _ => NO_EDIT,
            }
        }));
    }

    /// One polling round over the lcore's RX queues; returns packets received.
    pub fn round(
        &mut self,
        streams: &[Stream],
        rxqs: &mut [Box<dyn RxQueue>],
        txqs: &mut [Box<dyn TxQueue>],
        cache: &mut PoolCache,
        b: &mut MbufBatch,
        tx_retry: u32,
    ) -> u64 {
        self.reader.refresh();
        self.sync_edits();
        let mut work = 0u64;
        for &si in &self.rx_streams {
            let s = &streams[si];
            let Some(rx) = s.rx else { continue };
            let n = rxqs[rx].rx_burst(b);
            if n == 0 {
                continue;
            }
            work += n as u64;
            s.counters.rx.add(n as u64);
            if let Some((t, q)) = s.tap.as_ref().and_then(|t| Some((t, t.rx?))) {
                t.tap.copy(b, q, Dir::Rx, crate::latency::now_ns());
            }
            let d = route_burst(
                self.reader.tables(),
                &self.edits,
                b,
                &mut self.out,
                &mut self.drops,
                &mut self.scratch,
            );
            if d.any() {
                count(&s.counters, d);
            }
            if !self.drops.is_empty() {
                cache.free_batch(&mut self.drops);
            }
            for (p, out) in self.out.iter_mut().enumerate() {
                if out.is_empty() {
                    continue;
                }
                match self.tx_of_port[p] {
                    Some((q, ts)) => {
                        let st = &streams[ts];
                        if let Some((t, tq)) = st.tap.as_ref().and_then(|t| Some((t, t.tx?))) {
                            t.tap.copy(out, tq, Dir::Tx, crate::latency::now_ns());
                        }
                        send_burst(&st.counters, &mut *txqs[q], cache, out, tx_retry)
                    }
                    // The tables only hold next hops on forwarding ports.
                    None => cache.free_batch(out),
                }
            }
        }
        work
    }
}

fn count(c: &StreamCounters, d: Drops) {
    c.non_ip.add(d.non_ip);
    c.bad_header.add(d.bad_header);
    c.ttl_exceeded.add(d.ttl);
    c.no_route.add(d.no_route);
    c.vlan.add(d.vlan);
}

/// Route one burst: every mbuf of `b` ends in `out[port]` (edited) or in
/// `drops` (unchanged).
#[inline]
fn route_burst(
    t: &Tables,
    edits: &[Edit],
    b: &mut MbufBatch,
    out: &mut [MbufBatch],
    drops: &mut MbufBatch,
    sc: &mut Scratch,
) -> Drops {
    let n = b.len().min(MAX_BURST);
    for m in b.iter() {
        m.prefetch_data();
    }
    let hop = &mut sc.hop[..n];
    let parsed = &mut sc.parsed[..n];
    match t.lookup {
        Lookup::Lpm => lookup_lpm(t, b, parsed, hop, &mut sc.a4[..n]),
        Lookup::Em => lookup_em(t, b, parsed, hop, &mut sc.h[..n], &mut sc.k4[..n]),
    }
    let mut d = Drops::default();
    for (i, mut m) in b.drain().enumerate() {
        let p = parsed[i];
        let e = edits.get(hop[i] as usize).unwrap_or(&NO_EDIT);
        match p {
            Parsed::V4 { off, vlan } if e.port != NO_PORT => {
                let f = m.data_mut();
                pkt::ttl_dec4(f, usize::from(off));
                pkt::set_macs12(f, &e.macs);
                d.vlan += u64::from(vlan);
            }
            Parsed::V6 { off, vlan } if e.port != NO_PORT => {
                let f = m.data_mut();
                pkt::hop_dec6(f, usize::from(off));
                pkt::set_macs12(f, &e.macs);
                d.vlan += u64::from(vlan);
            }
            Parsed::Drop(why) => {
                d.drop_reason(why);
                let _ = drops.push(m);
                continue;
            }
            _ => {
                d.drop_reason(Drop::NoRoute);
                let _ = drops.push(m);
                continue;
            }
        }
        // Every batch holds a burst: what came in fits; `port` is below
        // `out.len()` (checked when the edit was made).
        if let Some(o) = out.get_mut(usize::from(e.port)) {
            let _ = o.push(m);
        }
    }
    d
}

fn lookup_lpm(t: &Tables, b: &MbufBatch, parsed: &mut [Parsed], hop: &mut [u32], a4: &mut [u32]) {
    let (Some(v4), Some(v6)) = (&t.v4, &t.v6) else {
        for (p, m) in parsed.iter_mut().zip(b.iter()) {
            *p = pkt::parse(m.data(), t.check_checksum);
        }
        hop.fill(NONE);
        return;
    };
    // Pass 1: parse, and prefetch every IPv4 destination's first-level
    // entry before any is read (the misses overlap).
    for ((p, a), m) in parsed.iter_mut().zip(a4.iter_mut()).zip(b.iter()) {
        let f = m.data();
        *p = pkt::parse(f, t.check_checksum);
        if let Parsed::V4 { off, .. } = *p {
            *a = pkt::dst4(f, usize::from(off));
            v4.prefetch(*a);
        }
    }
    for (i, m) in b.iter().enumerate() {
        hop[i] = match parsed[i] {
            Parsed::V4 { .. } => v4.lookup(a4[i]),
            Parsed::V6 { off, .. } => v6.lookup(pkt::dst6(m.data(), usize::from(off))),
            Parsed::Drop(_) => None,
        }
        .unwrap_or(NONE);
    }
}

fn lookup_em(
    t: &Tables,
    b: &MbufBatch,
    parsed: &mut [Parsed],
    hop: &mut [u32],
    h: &mut [u64],
    k4: &mut [super::em::Key4],
) {
    let (Some(e4), Some(e6)) = (&t.em4, &t.em6) else {
        for (p, m) in parsed.iter_mut().zip(b.iter()) {
            *p = pkt::parse(m.data(), t.check_checksum);
        }
        hop.fill(NONE);
        return;
    };
    for (i, m) in b.iter().enumerate() {
        let f = m.data();
        parsed[i] = pkt::parse(f, t.check_checksum);
        if let Parsed::V4 { off, .. } = parsed[i] {
            k4[i] = pkt::key4(f, usize::from(off));
            h[i] = super::em::EmKey::hash(&k4[i]);
            e4.prefetch(h[i]);
        }
    }
    for (i, m) in b.iter().enumerate() {
        hop[i] = match parsed[i] {
            Parsed::V4 { .. } => e4.get_hashed(&k4[i], h[i]),
            Parsed::V6 { off, .. } => e6.get(&pkt::key6(m.data(), usize::from(off))),
            Parsed::Drop(_) => None,
        }
        .unwrap_or(NONE);
    }
}
