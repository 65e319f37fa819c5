//! The router's part of an lcore: per polling round it takes the newest
//! table snapshot, then per RX burst parses every frame, batches the table
//! reads (first-level entries or hash slots prefetched for the whole burst
//! before any is resolved), edits the frames that have a next hop and
//! sorts them into one fixed batch per TX port; the rest are freed,
//! counted by reason. No allocation, lock or system call per packet.

use super::pkt::{self, Drop, Parsed};
use super::table::{Lookup, Reader, Tables};
use crate::control::capture::Dir;
use crate::counters::StreamCounters;
use crate::worker::{send_burst, Stream};
use xfwd_mempool::{prefetch, MbufBatch, PoolCache, MAX_BURST};
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
}

/// Per-burst working arrays, allocated once (not zeroed per burst).
#[derive(Debug)]
struct Scratch {
    parsed: [Parsed; MAX_BURST],
    hop: [u32; MAX_BURST],
    a4: [u32; MAX_BURST],
    h: [u64; MAX_BURST],
    k4: [super::em::Key4; MAX_BURST],
}

/// Per-burst drop counts.
#[derive(Debug, Default, Clone, Copy)]
struct Drops {
    non_ip: u64,
    bad_header: u64,
    ttl: u64,
    no_route: u64,
    vlan: u64,
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
        }
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
                b,
                &mut self.out,
                &mut self.drops,
                &mut self.scratch,
            );
            count(&s.counters, d);
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
fn route_burst(
    t: &Tables,
    b: &mut MbufBatch,
    out: &mut [MbufBatch],
    drops: &mut MbufBatch,
    sc: &mut Scratch,
) -> Drops {
    let n = b.len().min(MAX_BURST);
    for m in b.iter() {
        m.prefetch_data();
    }
    let parsed = &mut sc.parsed[..n];
    for (p, m) in parsed.iter_mut().zip(b.iter()) {
        *p = pkt::parse(m.data(), t.check_checksum);
    }
    let hop = &mut sc.hop[..n];
    match t.lookup {
        Lookup::Lpm => lookup_lpm(t, b, parsed, hop, &mut sc.a4[..n]),
        Lookup::Em => lookup_em(t, b, parsed, hop, &mut sc.h[..n], &mut sc.k4[..n]),
    }
    let mut d = Drops::default();
    for (i, mut m) in b.drain().enumerate() {
        let (off, v4, vlan) = match parsed[i] {
            Parsed::V4 { off, vlan } => (usize::from(off), true, vlan),
            Parsed::V6 { off, vlan } => (usize::from(off), false, vlan),
            Parsed::Drop(why) => {
                match why {
                    Drop::NonIp => d.non_ip += 1,
                    Drop::BadHeader => d.bad_header += 1,
                    Drop::TtlExceeded => d.ttl += 1,
                    Drop::NoRoute => d.no_route += 1,
                }
                let _ = drops.push(m);
                continue;
            }
        };
        let Some(h) = t.hops.get(hop[i] as usize) else {
            d.no_route += 1;
            let _ = drops.push(m);
            continue;
        };
        let Some(src) = t.port_macs.get(usize::from(h.port)).copied().flatten() else {
            d.no_route += 1;
            let _ = drops.push(m);
            continue;
        };
        let f = m.data_mut();
        if v4 {
            pkt::ttl_dec4(f, off);
        } else {
            pkt::hop_dec6(f, off);
        }
        pkt::set_macs(f, &h.mac, &src);
        d.vlan += u64::from(vlan);
        // Every batch holds a burst: what came in fits.
        let _ = out[usize::from(h.port)].push(m);
    }
    d
}

fn lookup_lpm(t: &Tables, b: &MbufBatch, parsed: &[Parsed], hop: &mut [u32], a4: &mut [u32]) {
    let (Some(v4), Some(v6)) = (&t.v4, &t.v6) else {
        hop.fill(NONE);
        return;
    };
    // Pass 1: every IPv4 destination's first-level entry is prefetched
    // before any is read (the misses overlap).
    for (i, m) in b.iter().enumerate() {
        if let Parsed::V4 { off, .. } = parsed[i] {
            let a = pkt::dst4(m.data(), usize::from(off));
            a4[i] = a;
            v4.prefetch(a);
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
    parsed: &[Parsed],
    hop: &mut [u32],
    h: &mut [u64],
    k4: &mut [super::em::Key4],
) {
    let (Some(e4), Some(e6)) = (&t.em4, &t.em6) else {
        hop.fill(NONE);
        return;
    };
    for (i, m) in b.iter().enumerate() {
        if let Parsed::V4 { off, .. } = parsed[i] {
            k4[i] = pkt::key4(m.data(), usize::from(off));
            h[i] = super::em::EmKey::hash(&k4[i]);
            prefetch(e4.slot_ptr(h[i]));
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
