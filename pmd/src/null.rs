//! The `null` port (DPDK `net_null`): RX allocates up to a burst of mbufs
//! from the queue's pool and hands them out as packets of `size` bytes; TX
//! frees what it is given. It measures the pool and the forwarding loop.
//!
//! Devargs: `null:[size=64][,copy=0|1][,mac=02:..]`. With `copy=1` RX writes
//! a template frame into each packet and TX reads each packet (like
//! net_null's `copy`), so the data is really touched.

use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::port::{
    parse_mac, Port, PortConf, PortCore, PortInfo, PortQueues, QueueToken, RxQueue, TxQueue,
};
use crate::stats::QueueCounters;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use xfwd_mempool::{MbufBatch, MbufPool};

static NEXT_MAC: AtomicU16 = AtomicU16::new(0);

/// A null port.
#[derive(Debug)]
pub struct NullPort {
    core: PortCore,
    size: usize,
    copy: bool,
    mac: [u8; 6],
    devargs: String,
}

impl NullPort {
    /// Probe from devargs.
    ///
    /// # Errors
    /// Unknown keys or bad values.
    pub fn probe(d: &Devargs) -> Result<NullPort, PortError> {
        d.check_keys(&["size", "copy", "mac"])?;
        let size = d.num("size", 64usize, 14..=9600)?;
        let copy = d.flag("copy", false)?;
        let mac = match d.get("mac") {
            Some(m) => parse_mac(m).ok_or_else(|| PortError::Devargs {
                devargs: d.raw.clone(),
                why: format!("`mac={m}`: expected aa:bb:cc:dd:ee:ff"),
            })?,
            None => {
                let n = NEXT_MAC.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                [0x02, 0, 0, 0x4e, n[0], n[1]]
            }
        };
        Ok(NullPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::None))),
            size,
            copy,
            mac,
            devargs: d.raw.clone(),
        })
    }
}

impl Port for NullPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "null",
            devargs: self.devargs.clone(),
            mac: self.mac,
            max_rx_queues: 64,
            max_tx_queues: 64,
            max_rx_desc: 4096,
            max_tx_desc: 4096,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: 9600,
            zero_copy: !self.copy,
            mapping: MappingKind::None,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        self.core.configure(conf, &info)?;
        for q in 0..conf.rx_queues as usize {
            let pool = conf.pool(q).expect("checked: at least one pool");
            let room = pool.config().data_room as usize;
            if self.size > room {
                return Err(PortError::Config {
                    port: self.devargs.clone(),
                    what: "size",
                    value: self.size.to_string(),
                    accepted: format!("<= the data room {room} of pool `{}`", pool.name()),
                });
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let conf = self.core.start()?;
        let mut q = PortQueues::default();
        for i in 0..conf.rx_queues as usize {
            q.rx.push(Box::new(NullRx {
                pool: conf.pool(i).expect("checked").clone(),
                size: self.size,
                copy: self.copy,
                template: template(self.size, self.mac),
                counters: self.core.counters.rx[i].clone(),
                _token: self.core.token(),
            }));
        }
        for i in 0..conf.tx_queues as usize {
            q.tx.push(Box::new(NullTx {
                pool: conf.pool(0).expect("checked").clone(),
                copy: self.copy,
                counters: self.core.counters.tx[i].clone(),
                _token: self.core.token(),
            }));
        }
        Ok(q)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()
    }
}

/// A UDP/IPv4 frame of `size` bytes from `mac` (the `copy=1` payload).
fn template(size: usize, mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    if size >= 14 {
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
    }
    f
}

#[derive(Debug)]
struct NullRx {
    pool: MbufPool,
    size: usize,
    copy: bool,
    template: Vec<u8>,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl RxQueue for NullRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut MbufBatch) -> usize {
        let start = out.len();
        let n = out.room();
        if n == 0 {
            return 0;
        }
        // The polling thread's (lcore's) cache: TX on this core frees into
        // the same cache, so the next RX gets hot mbufs back (DPDK's model).
        if self
            .pool
            .with_lcore_cache(|c| c.alloc_bulk_raw(out, n))
            .is_err()
        {
            self.counters.add_nombuf(n as u64);
            return 0;
        }
        for m in &mut out.as_mut_slice()[start..] {
            m.reset_len(self.size)
                .expect("size checked against the data room at configure");
            if self.copy {
                m.data_mut().copy_from_slice(&self.template);
            }
        }
        self.counters.add(n as u64, (n * self.size) as u64);
        n
    }
}

#[derive(Debug)]
struct NullTx {
    pool: MbufPool,
    copy: bool,
    counters: Arc<QueueCounters>,
    _token: QueueToken,
}

impl TxQueue for NullTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        let n = pkts.len();
        let mut bytes = 0u64;
        let mut sink = 0u8;
        for m in pkts.iter() {
            bytes += m.pkt_len() as u64;
            if self.copy {
                sink ^= m.data().iter().fold(0, |a, &b| a ^ b);
            }
        }
        std::hint::black_box(sink);
        self.pool.with_lcore_cache(|c| c.free_batch(pkts));
        self.counters.add(n as u64, bytes);
        n
    }
}
