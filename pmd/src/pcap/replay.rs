//! The RX side's replay buffer: the frames of a parsed [`Capture`] laid out
//! once, at configure, in one flat buffer (each frame at a 64-byte aligned
//! offset, so a minimum-size frame is one cache line) with a flat array of
//! (offset, length, timestamp). Everything a frame needs on the fast path
//! is worked out here once: `rx_burst` does one header update and one copy
//! per frame, with no per-frame parse, no format dispatch and no record
//! lookup through the file's index.
//!
//! DPDK's `net_pcap` with `infinite_rx=1` does the same kind of work per
//! packet (it preloads the file into mbufs kept in a ring, then per
//! received packet dequeues one, `rte_memcpy`s its data into a fresh mbuf
//! and sets the lengths and the port; the ring is refilled per burst).

use super::Capture;

/// Alignment (and stride granule) of a frame in the flat buffer.
pub const FRAME_ALIGN: usize = 64;

/// One frame of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame in [`Replay::bytes`] (a multiple of [`FRAME_ALIGN`]).
    pub off: usize,
    /// Bytes.
    pub len: usize,
    /// Bytes rounded up to whole [`FRAME_ALIGN`] granules.
    pub granules: usize,
    /// Timestamp, ns since the epoch.
    pub ts_ns: u64,
}

/// Frames ready for replay.
#[derive(Clone, PartialEq, Eq)]
pub struct Replay {
    bytes: Vec<u8>,
    frames: Vec<Frame>,
    max_len: usize,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes.len())
            .field("max_len", &self.max_len)
            .finish()
    }
}

#[inline]
fn round_up(n: usize) -> usize {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

impl Replay {
    /// Lay out the frames of `cap` (the capture is no longer needed after).
    pub fn new(cap: &Capture) -> Replay {
        let total: usize = cap.frames().map(|f| round_up(f.len())).sum();
        // One spare granule so a whole-granule copy of the last frame stays
        // in bounds; the start of the buffer is aligned by skipping ahead.
        let mut bytes = vec![0u8; total + 2 * FRAME_ALIGN];
        let skip = bytes.as_ptr().align_offset(FRAME_ALIGN).min(FRAME_ALIGN);
        let mut frames = Vec::with_capacity(cap.len());
        let mut off = skip;
        let mut max_len = 0;
        for (f, r) in cap.frames().zip(cap.records()) {
            bytes[off..off + f.len()].copy_from_slice(f);
            frames.push(Frame {
                off,
                len: f.len(),
                granules: round_up(f.len()),
                ts_ns: r.ts_ns,
            });
            max_len = max_len.max(f.len());
            off += round_up(f.len());
        }
        Replay {
            bytes,
            frames,
            max_len,
        }
    }

    /// Number of frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True without frames.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The longest frame.
    #[inline]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The frame table.
    #[inline]
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The bytes of `f`.
    #[inline]
    pub fn bytes(&self, f: &Frame) -> &[u8] {
        &self.bytes[f.off..f.off + f.len]
    }

    /// The bytes of `f` rounded up to whole [`FRAME_ALIGN`] granules (the
    /// padding is zeros): for copies in fixed-size blocks.
    #[inline]
    pub fn granules(&self, f: &Frame) -> &[u8] {
        self.bytes.get(f.off..f.off + f.granules).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_aligned_and_equal_to_the_capture() {
        let mut file = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            file.extend_from_slice(&w.to_le_bytes());
        }
        for (i, n) in [60usize, 64, 65, 1514, 1].iter().enumerate() {
            for w in [i as u32, 7, *n as u32, *n as u32] {
                file.extend_from_slice(&w.to_le_bytes());
            }
            file.extend((0..*n).map(|b| (b + i) as u8));
        }
        let cap = Capture::parse(file).unwrap();
        let r = Replay::new(&cap);
        assert_eq!(r.len(), 5);
        assert_eq!(r.max_len(), 1514);
        for (i, (f, want)) in r.frames().iter().zip(cap.frames()).enumerate() {
            assert_eq!(r.bytes(f), want, "frame {i}");
            assert_eq!(r.bytes(f).as_ptr() as usize % FRAME_ALIGN, 0);
            assert_eq!(r.granules(f).len() % FRAME_ALIGN, 0);
            assert_eq!(f.ts_ns, i as u64 * 1_000_000_000 + 7000);
        }
    }
}
