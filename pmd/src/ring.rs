//! The `ring` port (DPDK `net_ring`): ports joined by lock-free rings.
//!
//! `ring:NAME` — the first port probed with a name takes side A, the second
//! side B; A's TX queue q feeds B's RX queue q and the other way round. A
//! port alone on its name (or with `loop=1`) receives what it sends. Only
//! mbuf pointers move: the fastest possible port, for testing the app.
//!
//! Each ring ([`MbufRing`]) has one writer (a TX queue, holding the ring's
//! [`RingProducer`]) and one reader (an RX queue, holding its
//! [`RingConsumer`]), so the queues take the ring's single-producer /
//! single-consumer paths (no compare-exchange; one release store per burst).
//! The mbufs move as addresses inside the mempool crate: this module forbids
//! `unsafe` (lib.rs). Like DPDK's `net_ring`, the port counts packets per burst and
//! does not touch the mbufs; `bytes=1` also counts bytes and sets each
//! received mbuf's input port (reads every header on TX and writes it on RX).

use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::port::{Port, PortConf, PortCore, PortInfo, PortQueues, QueueToken, RxQueue, TxQueue};
use crate::stats::QueueCounters;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use xfwd_mempool::{MbufBatch, MbufRing, RingConsumer, RingProducer};

const MAX_QUEUES: usize = 16;
const MAX_DESC: u16 = 32768;

/// Rings of one name: `dir[0]` carries A→B, `dir[1]` B→A, per queue. A ring
/// left holding mbufs frees them when its last holder drops it.
#[derive(Debug)]
struct Link2 {
    name: String,
    rings: [Mutex<Vec<Option<Arc<MbufRing>>>>; 2],
    sides: Mutex<[bool; 2]>,
}

fn links() -> &'static Mutex<HashMap<String, Weak<Link2>>> {
    static L: OnceLock<Mutex<HashMap<String, Weak<Link2>>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

impl Link2 {
    fn ring(&self, dir: usize, q: usize, cap: u16) -> Arc<MbufRing> {
        let mut v = self.rings[dir].lock().unwrap_or_else(|p| p.into_inner());
        if v.len() <= q {
            v.resize(q + 1, None);
        }
        v[q].get_or_insert_with(|| MbufRing::new(cap as u32))
            .clone()
    }
}

/// A ring port.
#[derive(Debug)]
pub struct RingPort {
    core: PortCore,
    link: Arc<Link2>,
    side: usize,
    looped: bool,
    /// Count bytes and set the input port (`bytes=1`).
    bytes: bool,
    devargs: String,
}

impl RingPort {
    /// Probe from devargs.
    ///
    /// # Errors
    /// Missing name, unknown keys, or a name already used by two ports.
    pub fn probe(d: &Devargs) -> Result<RingPort, PortError> {
        d.check_keys(&["loop", "bytes"])?;
        let name = d.name.clone().ok_or_else(|| PortError::Devargs {
            devargs: d.raw.clone(),
            why: "a ring port needs a name: `ring:NAME` (two ports with the same NAME are joined)"
                .into(),
        })?;
        let looped = d.flag("loop", false)?;
        let bytes = d.flag("bytes", false)?;
        let mut map = links().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let link = map.get(&name).and_then(Weak::upgrade).unwrap_or_else(|| {
            Arc::new(Link2 {
                name: name.clone(),
                rings: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
                sides: Mutex::new([false; 2]),
            })
        });
        map.insert(name.clone(), Arc::downgrade(&link));
        let side = {
            let mut s = link.sides.lock().unwrap_or_else(|p| p.into_inner());
            let side = s
                .iter()
                .position(|t| !t)
                .ok_or_else(|| PortError::Devargs {
                    devargs: d.raw.clone(),
                    why: format!("ring `{name}` already joins two ports; pick another name"),
                })?;
            s[side] = true;
            side
        };
        Ok(RingPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::None))),
            link,
            side,
            looped,
            bytes,
            devargs: d.raw.clone(),
        })
    }

    fn peer_present(&self) -> bool {
        let s = self.link.sides.lock().unwrap_or_else(|p| p.into_inner());
        s[1 - self.side]
    }

    /// (tx direction, rx direction) for this port.
    fn dirs(&self) -> (usize, usize) {
        if self.looped || !self.peer_present() {
            (self.side, self.side)
        } else {
            (self.side, 1 - self.side)
        }
    }
}

impl RingPort {
    /// Why ring `dir`/`q` refused its second reader (`reader`) or writer.
    fn busy(&self, q: usize, reader: bool) -> PortError {
        let (what, who) = if reader {
            ("RX", "reader")
        } else {
            ("TX", "writer")
        };
        PortError::Devargs {
            devargs: self.devargs.clone(),
            why: format!(
                "ring `{}`: its {what} queue {q} already has a {who} (a port with loop=1 and a peer, \
                 or a port started alone before its peer was probed): stop it first or use another name",
                self.link.name
            ),
        }
    }

    /// The queues of a start, each holding its ring side's claim.
    fn queues(&self, conf: &PortConf) -> Result<PortQueues, PortError> {
        let (txd, rxd) = self.dirs();
        let mut q = PortQueues::default();
        for i in 0..conf.rx_queues as usize {
            let ring = self.link.ring(rxd, i, conf.rx_desc);
            q.rx.push(Box::new(RingRx {
                ring: ring.consumer().ok_or_else(|| self.busy(i, true))?,
                port: self.side as u16,
                bytes: self.bytes,
                counters: self.core.counters.rx[i].clone(),
                _token: self.core.token(),
            }));
        }
        for i in 0..conf.tx_queues as usize {
            let ring = self.link.ring(txd, i, conf.tx_desc);
            q.tx.push(Box::new(RingTx {
                ring: ring.producer().ok_or_else(|| self.busy(i, false))?,
                bytes: self.bytes,
                counters: self.core.counters.tx[i].clone(),
                _token: self.core.token(),
            }));
        }
        Ok(q)
    }
}

impl Drop for RingPort {
    fn drop(&mut self) {
        let mut s = self.link.sides.lock().unwrap_or_else(|p| p.into_inner());
        s[self.side] = false;
    }
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "ring",
            devargs: self.devargs.clone(),
            mac: [
                0x02,
                0,
                0,
                0x52,
                self.link.name.len() as u8,
                self.side as u8,
            ],
            max_rx_queues: MAX_QUEUES as u16,
            max_tx_queues: MAX_QUEUES as u16,
            max_rx_desc: MAX_DESC,
            max_tx_desc: MAX_DESC,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: 9600,
            zero_copy: true,
            mapping: MappingKind::None,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        self.core.configure(conf, &info)
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let conf = self.core.start()?;
        match self.queues(&conf) {
            Ok(q) => Ok(q),
            Err(e) => {
                // The queues made so far are dropped (their claims given back).
                self.core.stop()?;
                Err(e)
            }
        }
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()?;
        // Packets addressed to this port that nobody received go back to
        // their pools.
        let (_, rxd) = self.dirs();
        let rings = self.link.rings[rxd]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dropped: usize = rings.iter().flatten().map(|r| r.drain()).sum();
        if dropped > 0 {
            log::info!(
                "{}: freed {dropped} mbufs left in its RX rings",
                self.devargs
            );
        }
        Ok(())
    }
}

#[derive(Debug)]
struct RingRx {
    ring: RingConsumer,
    port: u16,
    bytes: bool,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let start = out.len();
        let n = self.ring.dequeue_burst(out);
        if n == 0 {
            return 0;
        }
        let mut bytes = 0u64;
        if self.bytes {
            for m in &mut out.as_mut_slice()[start..] {
                bytes += m.pkt_len() as u64;
                m.set_port(self.port);
            }
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

#[derive(Debug)]
struct RingTx {
    ring: RingProducer,
    bytes: bool,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        if self.bytes {
            return self.tx_counting_bytes(pkts);
        }
        let sent = self.ring.enqueue_burst(pkts);
        if sent == 0 {
            return 0;
        }
        self.counters.add(sent as u64, 0);
        sent
    }
}

impl RingTx {
    /// `bytes=1`: the bytes sent are those of the batch before the enqueue
    /// less those left in it (a sent mbuf is the reader's at once).
    #[cold]
    fn tx_counting_bytes(&mut self, pkts: &mut MbufBatch) -> usize {
        let len = |b: &MbufBatch| b.iter().map(|m| m.pkt_len() as u64).sum::<u64>();
        let before = len(pkts);
        let sent = self.ring.enqueue_burst(pkts);
        if sent > 0 {
            self.counters.add(sent as u64, before - len(pkts));
        }
        sent
    }
}
