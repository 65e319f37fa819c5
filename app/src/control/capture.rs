//! Live capture (DPDK's `dpdk-dumpcap`): `capture PORT[:QUEUE] rx|tx|both
//! --count N -w FILE.pcapng` copies frames from the running streams into a
//! pcapng file.
//!
//! The lcores copy into buffers the control thread allocated up front (a
//! bounded free list, `crossbeam_queue::ArrayQueue`), at most
//! [`BUDGET_PER_BURST`] frames per burst and stream; a frame that finds no
//! free buffer or no budget is counted in `skipped` and forwarded as usual:
//! the capture never drops a frame from the forward path. The control thread
//! drains the filled buffers into the file from its loop. With no capture
//! the lcores test one `Option` per burst.
//!
//! Reconciliation: each lcore attaches and detaches the tap at a round
//! boundary and reads its tapped streams' own counters there (RX: frames
//! received from the queue; TX: frames handed to the queue, sent or
//! dropped), so the window's counts are exact:
//!
//! ```text
//! taken + skipped + past_count == window_rx + window_tx
//! ```
//!
//! (`past_count`: frames of the window after the count was reached.) The
//! stream's RX count is the port queue's counter, so a capture attached and
//! detached while forwarding is stopped holds the port's counter delta.

use crate::plan::QueueRef;
use crossbeam_queue::ArrayQueue;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use xfwd_mempool::MbufBatch;

/// Frames one lcore may copy per burst and stream.
pub const BUDGET_PER_BURST: usize = 32;
/// Buffers in flight between the lcores and the file.
pub const BUFFERS: usize = 1024;
/// Bytes kept per frame.
pub const SNAPLEN: usize = 2048;

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Received from the port.
    Rx,
    /// Handed to the port for sending.
    Tx,
}

/// One copied frame.
#[derive(Debug)]
pub struct Frame {
    buf: Box<[u8]>,
    len: u32,
    orig_len: u32,
    port: u16,
    dir: Dir,
    ts_ns: u64,
}

/// The shared state of one capture.
#[derive(Debug)]
pub struct Tap {
    free: ArrayQueue<Box<[u8]>>,
    full: ArrayQueue<Frame>,
    active: AtomicBool,
    /// Frames still to take (shared by the lcores).
    remaining: AtomicU64,
    /// Frames that matched while active but were not copied.
    skipped: AtomicU64,
    /// Frames copied.
    taken: AtomicU64,
    /// Frames seen after the count was reached (or the capture closed),
    /// until the lcores detached.
    past: AtomicU64,
    /// The tapped streams' RX counters: minus at attach, plus at detach.
    win_rx: AtomicU64,
    /// The tapped streams' TX counters (sent + dropped), likewise.
    win_tx: AtomicU64,
}

/// What a capture counted (see the module's reconciliation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapCounts {
    /// Frames copied.
    pub taken: u64,
    /// Frames of the window not copied (no budget or no free buffer).
    pub skipped: u64,
    /// Frames of the window after the count was reached.
    pub past_count: u64,
    /// Frames the tapped RX queues received in the window (once detached).
    pub window_rx: u64,
    /// Frames handed to the tapped TX queues in the window (once detached).
    pub window_tx: u64,
}

/// What one stream captures.
#[derive(Debug, Clone)]
pub struct StreamTap {
    /// The capture.
    pub tap: Arc<Tap>,
    /// Capture what this stream receives (from this queue).
    pub rx: Option<QueueRef>,
    /// Capture what this stream sends (to this queue).
    pub tx: Option<QueueRef>,
}

impl Tap {
    /// A capture of `count` frames.
    pub fn new(count: u64) -> Arc<Tap> {
        let free = ArrayQueue::new(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = free.push(vec![0u8; SNAPLEN].into_boxed_slice());
        }
        Arc::new(Tap {
            free,
            full: ArrayQueue::new(BUFFERS),
            active: AtomicBool::new(true),
            remaining: AtomicU64::new(count),
            skipped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            past: AtomicU64::new(0),
            win_rx: AtomicU64::new(0),
            win_tx: AtomicU64::new(0),
        })
    }

    /// Lcore side, at a round boundary: a stream whose counters read
    /// `rx` and `tx` (sent + dropped) attaches (`attach`) or detaches.
    pub fn window_edge(&self, st: &StreamTap, rx: u64, tx: u64, attach: bool) {
        let edge = |w: &AtomicU64, v: u64| {
            if attach {
                w.fetch_sub(v, Ordering::AcqRel);
            } else {
                w.fetch_add(v, Ordering::AcqRel);
            }
        };
        if st.rx.is_some() {
            edge(&self.win_rx, rx);
        }
        if st.tx.is_some() {
            edge(&self.win_tx, tx);
        }
    }

    /// Lcore side: copy what the budget allows of `b` (never changes `b`).
    #[inline]
    pub fn copy(&self, b: &MbufBatch, q: QueueRef, dir: Dir, now_ns: u64) {
        if !self.active.load(Ordering::Relaxed) {
            self.past.fetch_add(b.len() as u64, Ordering::Relaxed);
            return;
        }
        let mut budget = BUDGET_PER_BURST;
        let mut skipped = 0u64;
        for (i, m) in b.iter().enumerate() {
            if budget == 0 {
                skipped += 1;
                continue;
            }
            // Claim one of the remaining frames first (an exact count
            // across lcores); past the count the window is over.
            if self
                .remaining
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |x| x.checked_sub(1))
                .is_err()
            {
                self.active.store(false, Ordering::Relaxed);
                self.past.fetch_add((b.len() - i) as u64, Ordering::Relaxed);
                break;
            }
            let Some(mut buf) = self.free.pop() else {
                self.remaining.fetch_add(1, Ordering::AcqRel); // give the claim back
                skipped += 1;
                continue;
            };
            let d = m.data();
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            let f = Frame {
                buf,
                len: n as u32,
                orig_len: d.len() as u32,
                port: q.port,
                dir,
                ts_ns: now_ns,
            };
            if self.full.push(f).is_err() {
                skipped += 1; // cannot happen: as many slots as buffers
            } else {
                self.taken.fetch_add(1, Ordering::Relaxed);
            }
            budget -= 1;
        }
        if skipped > 0 {
            self.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }

    /// Stop taking frames.
    pub fn close(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// True once the count is reached (or closed).
    pub fn done(&self) -> bool {
        !self.active.load(Ordering::Relaxed) || self.remaining.load(Ordering::Relaxed) == 0
    }

    /// The counts (the window's once every lcore detached).
    pub fn counts(&self) -> TapCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Acquire);
        TapCounts {
            taken: r(&self.taken),
            skipped: r(&self.skipped),
            past_count: r(&self.past),
            window_rx: r(&self.win_rx),
            window_tx: r(&self.win_tx),
        }
    }
}

/// The control thread's side: the pcapng file.
#[derive(Debug)]
pub struct Capture {
    /// The shared state.
    pub tap: Arc<Tap>,
    /// The file.
    pub path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Interface id per port.
    ports: Vec<u16>,
    /// Frames written.
    pub written: u64,
    /// What was asked (for `show capture`).
    pub what: String,
    wall0_ns: u64,
    mono0_ns: u64,
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(&len.to_le_bytes());
    v
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// An option: code, length, value padded to 4.
fn opt(v: &mut Vec<u8>, code: u16, val: &[u8]) {
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&(val.len() as u16).to_le_bytes());
    v.extend_from_slice(val);
    pad4(v);
}

impl Capture {
    /// Create `path` with a section header and one interface per port.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub fn create(
        path: &Path,
        ports: &[(u16, String)],
        tap: Arc<Tap>,
        what: String,
    ) -> std::io::Result<Capture> {
        let f = std::fs::File::create(path)?;
        let mut out = std::io::BufWriter::new(f);
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        opt(
            &mut shb,
            4,
            concat!("xfwd ", env!("CARGO_PKG_VERSION")).as_bytes(),
        ); // shb_userappl
        opt(&mut shb, 0, &[]);
        out.write_all(&block(0x0A0D_0D0A, &shb))?;
        for (id, name) in ports {
            let mut idb = Vec::new();
            idb.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
            opt(&mut idb, 2, format!("port{id}").as_bytes()); // if_name
            opt(&mut idb, 3, name.as_bytes()); // if_description
            opt(&mut idb, 9, &[9]); // if_tsresol: ns
            opt(&mut idb, 0, &[]);
            out.write_all(&block(1, &idb))?;
        }
        let wall0_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Capture {
            tap,
            path: path.to_path_buf(),
            out,
            ports: ports.iter().map(|p| p.0).collect(),
            written: 0,
            what,
            wall0_ns,
            mono0_ns: crate::latency::now_ns(),
        })
    }

    /// Write what the lcores copied; the buffers go back to the free list.
    ///
    /// # Errors
    /// Writing failed.
    pub fn drain(&mut self) -> std::io::Result<()> {
        while let Some(f) = self.tap.full.pop() {
            let r = self.write(&f);
            let _ = self.tap.free.push(f.buf);
            r?;
        }
        Ok(())
    }

    fn write(&mut self, f: &Frame) -> std::io::Result<()> {
        let iface = self.ports.iter().position(|&p| p == f.port).unwrap_or(0) as u32;
        let ts = self.wall0_ns + f.ts_ns.saturating_sub(self.mono0_ns);
        let mut epb = Vec::with_capacity(f.len as usize + 40);
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&f.len.to_le_bytes());
        epb.extend_from_slice(&f.orig_len.to_le_bytes());
        epb.extend_from_slice(&f.buf[..f.len as usize]);
        pad4(&mut epb);
        let flags: u32 = match f.dir {
            Dir::Rx => 1,
            Dir::Tx => 2,
        };
        opt(&mut epb, 2, &flags.to_le_bytes()); // epb_flags: direction
        opt(&mut epb, 0, &[]);
        self.out.write_all(&block(6, &epb))?;
        self.written += 1;
        Ok(())
    }

    /// Flush the file.
    ///
    /// # Errors
    /// Writing failed.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.drain()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_padded_and_framed() {
        let b = block(6, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[4..8], &16u32.to_le_bytes());
        assert_eq!(&b[12..16], &16u32.to_le_bytes());
        let mut v = Vec::new();
        opt(&mut v, 2, b"port1");
        assert_eq!(v.len(), 12);
    }
}
