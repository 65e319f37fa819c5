//! The `pcap` port (DPDK `net_pcap`): RX replays a capture file, TX writes
//! one.
//!
//! Devargs: `pcap:rx=in.pcap,tx=out.pcap[,loop=N|infinite][,snaplen=N]`
//! (DPDK's `rx_pcap=`/`tx_pcap=` and `infinite_rx=1` are accepted too).
//!
//! - RX reads pcap (either byte order, micro or nanosecond magic) or pcapng
//!   ([`reader`]). The file is read and validated whole at `configure`, so a
//!   malformed file fails there with [`PortError::Format`] (offset and
//!   reason), then laid out once as a [`Replay`] (the frames in one flat,
//!   64-byte aligned buffer with their lengths and timestamps), and
//!   `rx_burst` does no I/O and no per-frame parsing: one bulk allocation
//!   per burst, then per frame one header update and one copy into an mbuf
//!   of the queue's pool (`rx`; a frame larger than the data room becomes a
//!   chain). Each `start` replays from the first frame;
//!   after `loop` passes (default 1) RX returns 0 and the port reports its
//!   source finished ([`Port::rx_finished`]), so a run ends by itself once
//!   the replayed frames are forwarded (`loop=infinite` never finishes).
//! - TX writes a classic pcap ([`writer`]: Ethernet, microsecond stamps,
//!   snaplen 65535 unless `snaplen=` says otherwise) through a `BufWriter`,
//!   flushed at `stop`; the file is created (truncated) at `start`. Sent
//!   mbufs go back to their pool through a [`PoolCache`]. A write error
//!   counts the packet in `oerrors` (it is freed, not retried) and `stop`
//!   returns the first such error. A port without `tx=` discards what it is
//!   given (counted in `tx_discarded`).
//! - One RX and one TX queue. xstats: `rx_file_frames`, `rx_loops`
//!   (completed passes), `rx_copies`, `rx_copy_bytes`, `tx_written`,
//!   `tx_truncated`, `tx_discarded`.

pub mod reader;
pub mod replay;
mod rx;
pub mod writer;

pub use reader::{Capture, CaptureFormat, FormatError, Record};
pub use replay::Replay;
pub use writer::PcapWriter;

use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::port::{Port, PortConf, PortCore, PortInfo, PortQueues, QueueToken, TxQueue};
use crate::stats::QueueCounters;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use xfwd_mempool::{MbufBatch, PoolCache};

static NEXT_MAC: AtomicU16 = AtomicU16::new(0);
const MAX_DESC: u16 = 4096;

type FileWriter = PcapWriter<BufWriter<File>>;

/// Driver counters of a pcap port (single writer each: the queue owner).
#[derive(Debug, Default)]
pub(super) struct PcapCounters {
    pub(super) rx_loops: AtomicU64,
    pub(super) rx_copies: AtomicU64,
    pub(super) rx_copy_bytes: AtomicU64,
    tx_written: AtomicU64,
    tx_truncated: AtomicU64,
    tx_discarded: AtomicU64,
}

#[inline]
pub(super) fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// The TX file: the queue owns the writer while started and parks it here
/// when dropped, so `stop` can flush it and report errors.
#[derive(Debug, Default)]
struct TxSlot {
    writer: Option<FileWriter>,
    error: Option<std::io::Error>,
}

/// A pcap port.
#[derive(Debug)]
pub struct PcapPort {
    core: PortCore,
    devargs: String,
    mac: [u8; 6],
    rx_path: Option<PathBuf>,
    tx_path: Option<PathBuf>,
    /// Passes over the file; `None` = forever.
    loops: Option<u64>,
    snaplen: u32,
    replay: Option<Arc<Replay>>,
    slot: Arc<Mutex<TxSlot>>,
    xc: Arc<PcapCounters>,
    /// Set by the RX queue once its last pass delivered the last frame.
    rx_done: Arc<AtomicBool>,
}

impl PcapPort {
    /// Probe from devargs (files are opened at configure/start).
    ///
    /// # Errors
    /// [`PortError::Devargs`]: unknown keys, neither `rx` nor `tx`, a bad
    /// `loop` or `snaplen`.
    pub fn probe(d: &Devargs) -> Result<PcapPort, PortError> {
        d.check_keys(&[
            "rx",
            "tx",
            "rx_pcap",
            "tx_pcap",
            "loop",
            "infinite_rx",
            "snaplen",
        ])?;
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        let path = |a: &str, b: &str| -> Result<Option<PathBuf>, PortError> {
            match (d.get(a), d.get(b)) {
                (Some(_), Some(_)) => {
                    Err(bad(format!("`{a}` and `{b}` name the same file: give one")))
                }
                (Some(""), _) | (_, Some("")) => Err(bad(format!("`{a}=` needs a file path"))),
                (Some(p), None) | (None, Some(p)) => Ok(Some(PathBuf::from(p))),
                (None, None) => Ok(None),
            }
        };
        let rx_path = path("rx", "rx_pcap")?;
        let tx_path = path("tx", "tx_pcap")?;
        if rx_path.is_none() && tx_path.is_none() {
            return Err(bad(
                "a pcap port needs `rx=FILE` (replay) and/or `tx=FILE` (record)".into(),
            ));
        }
        let mut loops = match d.get("loop") {
            None => Some(1),
            Some("infinite" | "inf") => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(bad(format!(
                        "`loop={v}`: expected a number of passes >= 1 or `infinite`"
                    )))
                }
            },
        };
        if d.flag("infinite_rx", false)? {
            loops = None;
        }
        let snaplen = d.num("snaplen", writer::DEFAULT_SNAPLEN, 64..=reader::MAX_SNAPLEN)?;
        let n = NEXT_MAC.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        Ok(PcapPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::None))),
            devargs: d.raw.clone(),
            mac: [0x02, 0, 0, 0x50, n[0], n[1]],
            rx_path,
            tx_path,
            loops,
            snaplen,
            replay: None,
            slot: Arc::default(),
            xc: Arc::default(),
            rx_done: Arc::default(),
        })
    }

    /// The preloaded RX frames (after configure).
    pub fn replay(&self) -> Option<&Arc<Replay>> {
        self.replay.as_ref()
    }

    fn io(&self, what: String, source: std::io::Error) -> PortError {
        PortError::Io {
            port: self.devargs.clone(),
            what,
            source,
        }
    }

    fn load(&self, p: &Path) -> Result<Replay, PortError> {
        let data =
            std::fs::read(p).map_err(|e| self.io(format!("reading capture {}", p.display()), e))?;
        let cap = Capture::parse(data).map_err(|e| PortError::Format {
            port: self.devargs.clone(),
            why: format!("{}: {e}", p.display()),
        })?;
        Ok(Replay::new(&cap))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, TxSlot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Port for PcapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "pcap",
            devargs: self.devargs.clone(),
            mac: self.mac,
            max_rx_queues: 1,
            max_tx_queues: 1,
            max_rx_desc: MAX_DESC,
            max_tx_desc: MAX_DESC,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: 9600,
            zero_copy: false,
            mapping: MappingKind::None,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        if self.core.started() {
            // Let the core explain the state error.
            return self.core.configure(conf, &info);
        }
        // Load first: a bad file leaves the port unconfigured.
        let replay = match &self.rx_path {
            Some(p) => Some(Arc::new(self.load(p)?)),
            None => None,
        };
        self.core.configure(conf, &info)?;
        self.replay = replay;
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        if self.core.started() || self.core.conf.is_none() {
            // Let the core explain the state error.
            self.core.start()?;
        }
        let writer = match &self.tx_path {
            Some(p) => {
                let f =
                    File::create(p).map_err(|e| self.io(format!("creating {}", p.display()), e))?;
                let w = PcapWriter::new(BufWriter::with_capacity(1 << 16, f), self.snaplen)
                    .map_err(|e| self.io(format!("writing the header of {}", p.display()), e))?;
                Some(w)
            }
            None => None,
        };
        *self.slot() = TxSlot::default();
        let conf = self.core.start()?;
        let empty = self.replay.as_ref().is_none_or(|c| c.is_empty());
        self.rx_done.store(empty, Ordering::Release);
        let mut q = PortQueues::default();
        q.rx.push(Box::new(rx::PcapRx {
            cache: conf.pool(0).expect("checked: at least one pool").cache(),
            data_room: conf.pool(0).expect("checked").config().data_room as usize,
            replay: self.replay.clone(),
            pos: 0,
            passes_left: self.loops,
            done: self.rx_done.clone(),
            counters: self.core.counters.rx[0].clone(),
            xc: self.xc.clone(),
            _token: self.core.token(),
        }));
        q.tx.push(Box::new(PcapTx {
            cache: conf.pool(0).expect("checked").cache(),
            writer,
            slot: self.slot.clone(),
            counters: self.core.counters.tx[0].clone(),
            xc: self.xc.clone(),
            _token: self.core.token(),
        }));
        Ok(q)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()?;
        let (writer, error) = {
            let mut s = self.slot();
            (s.writer.take(), s.error.take())
        };
        let path = self
            .tx_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if let Some(mut w) = writer {
            w.flush()
                .map_err(|e| self.io(format!("flushing {path}"), e))?;
            w.into_inner()
                .into_inner()
                .map_err(|e| self.io(format!("closing {path}"), e.into_error()))?
                .sync_data()
                .map_err(|e| self.io(format!("syncing {path}"), e))?;
        }
        if let Some(e) = error {
            return Err(self.io(format!("writing {path} (frames were lost)"), e));
        }
        Ok(())
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let x = &self.xc;
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            (
                "rx_file_frames".into(),
                self.replay.as_ref().map_or(0, |c| c.len() as u64),
            ),
            ("rx_loops".into(), r(&x.rx_loops)),
            ("rx_copies".into(), r(&x.rx_copies)),
            ("rx_copy_bytes".into(), r(&x.rx_copy_bytes)),
            ("tx_written".into(), r(&x.tx_written)),
            ("tx_truncated".into(), r(&x.tx_truncated)),
            ("tx_discarded".into(), r(&x.tx_discarded)),
        ]
    }

    fn rx_finished(&self) -> Option<bool> {
        // A port without `rx=` is no source; `loop=infinite` never ends.
        self.rx_path.as_ref()?;
        self.loops?;
        Some(self.rx_done.load(Ordering::Acquire))
    }
}

#[derive(Debug)]
struct PcapTx {
    cache: PoolCache,
    writer: Option<FileWriter>,
    slot: Arc<Mutex<TxSlot>>,
    counters: Arc<QueueCounters>,
    xc: Arc<PcapCounters>,
    _token: QueueToken,
}

impl TxQueue for PcapTx {
    fn tx_burst(&mut self, pkts: &mut MbufBatch) -> usize {
        let n = pkts.len();
        if n == 0 {
            return 0;
        }
        let mut bytes = 0u64;
        let Some(w) = self.writer.as_mut() else {
            for m in pkts.iter() {
                bytes += m.pkt_len() as u64;
            }
            self.cache.free_batch(pkts);
            bump(&self.xc.tx_discarded, n as u64);
            self.counters.add(n as u64, bytes);
            return n;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let (mut written, mut truncated, mut failed) = (0u64, 0u64, 0u64);
        for m in pkts.iter() {
            match w.write_mbuf(now, m) {
                Ok(t) => {
                    written += 1;
                    truncated += t as u64;
                    bytes += m.pkt_len() as u64;
                }
                Err(e) => {
                    failed += 1;
                    let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
                    if s.error.is_none() {
                        log::error!("pcap TX write failed: {e}");
                        s.error = Some(e);
                    }
                }
            }
        }
        self.cache.free_batch(pkts);
        bump(&self.xc.tx_written, written);
        bump(&self.xc.tx_truncated, truncated);
        self.counters.add(written, bytes);
        self.counters.add_errors(failed);
        n
    }
}

impl Drop for PcapTx {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            self.slot.lock().unwrap_or_else(|p| p.into_inner()).writer = Some(w);
        }
    }
}
