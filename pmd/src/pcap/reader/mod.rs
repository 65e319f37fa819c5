//! Capture file parsing: classic pcap (both byte orders, micro- and
//! nanosecond magic) and pcapng (SHB, IDB, EPB, SPB and the obsolete PB;
//! unknown blocks are skipped; several sections and interfaces; both byte
//! orders per section).
//!
//! The whole file is held in memory and indexed once: [`Capture::parse`]
//! validates every length against the file and the block it sits in, so a
//! malformed or truncated file gives a [`FormatError`] naming the byte
//! offset and the reason, never a panic or an out-of-bounds read later.
//!
//! References: libpcap `pcap-savefile(5)`; draft-ietf-opsawg-pcapng
//! (sections 4.1 SHB, 4.2 IDB, 4.3 EPB, 4.4 SPB).
//!
//! This module holds the [`Capture`] index and the dispatch on the magic;
//! `pcap` parses classic pcap, `pcapng` the block format.

mod pcap;
mod pcapng;

use pcap::{PCAP_MAGIC_NS, PCAP_MAGIC_US};
use pcapng::NG_SHB;
use std::fmt;

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest caplen accepted whatever the file says (libpcap's
/// `MAXIMUM_SNAPLEN`).
pub const MAX_SNAPLEN: u32 = 262_144;

/// A malformed capture: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset in the file of the header/block at fault.
    pub offset: usize,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.why)
    }
}

impl std::error::Error for FormatError {}

/// Which container the frames came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic pcap.
    Pcap {
        /// Big-endian headers.
        big_endian: bool,
        /// Nanosecond timestamps (magic `a1b23c4d`).
        nanos: bool,
    },
    /// pcapng.
    PcapNg,
}

/// One frame of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Offset of the frame bytes in the file.
    pub off: usize,
    /// Bytes captured (present in the file).
    pub caplen: u32,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// Timestamp, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// pcapng interface id within its section (0 for pcap).
    pub iface: u32,
}

/// A parsed capture file held in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Capture {
    data: Vec<u8>,
    records: Vec<Record>,
    format: CaptureFormat,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("format", &self.format)
            .field("frames", &self.records.len())
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Bounds-checked reader over the file in one byte order.
#[derive(Clone, Copy)]
struct Bytes<'a> {
    d: &'a [u8],
    be: bool,
}

impl Bytes<'_> {
    /// The `N` bytes at `off`, most significant first.
    fn be_bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut b: [u8; N] = self.d.get(off..off.checked_add(N)?)?.try_into().ok()?;
        if !self.be {
            b.reverse();
        }
        Some(b)
    }

    fn u16(&self, off: usize) -> Option<u16> {
        self.be_bytes(off).map(u16::from_be_bytes)
    }

    fn u32(&self, off: usize) -> Option<u32> {
        self.be_bytes(off).map(u32::from_be_bytes)
    }

    fn u64(&self, off: usize) -> Option<u64> {
        self.be_bytes(off).map(u64::from_be_bytes)
    }
}

fn err<T>(offset: usize, why: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError {
        offset,
        why: why.into(),
    })
}

impl Capture {
    /// Parse a whole pcap or pcapng file.
    ///
    /// # Errors
    /// [`FormatError`] for an unknown magic, a truncated header or record,
    /// a caplen above the snaplen, a pcapng block whose trailing length
    /// differs from its leading one, a packet of a non-Ethernet interface, …
    pub fn parse(data: Vec<u8>) -> Result<Capture, FormatError> {
        if data.len() < 4 {
            return err(
                0,
                format!(
                    "file too short ({} bytes) to hold a pcap or pcapng header",
                    data.len()
                ),
            );
        }
        let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let (records, format) = match magic {
            PCAP_MAGIC_US | PCAP_MAGIC_NS => pcap::parse(&data, false, magic == PCAP_MAGIC_NS)?,
            m if m.swap_bytes() == PCAP_MAGIC_US || m.swap_bytes() == PCAP_MAGIC_NS => {
                pcap::parse(&data, true, m.swap_bytes() == PCAP_MAGIC_NS)?
            }
            NG_SHB => (pcapng::parse(&data)?, CaptureFormat::PcapNg),
            m => {
                return err(
                    0,
                    format!(
                        "bad magic 0x{m:08x}: not a pcap (a1b2c3d4 / a1b23c4d) \
                         or pcapng (0a0d0d0a) file"
                    ),
                )
            }
        };
        Ok(Capture {
            data,
            records,
            format,
        })
    }

    /// The container format.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the capture has no frames.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Frame records in file order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The captured bytes of frame `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        let r = &self.records[i];
        &self.data[r.off..r.off + r.caplen as usize]
    }

    /// Every frame's captured bytes, in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.frame(i))
    }
}
