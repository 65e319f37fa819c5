//! Classic pcap writing: the format every tool reads (tcpdump, Wireshark,
//! tshark, scapy). Little-endian headers, magic `a1b2c3d4` (microsecond
//! timestamps), version 2.4, link type Ethernet.

use super::reader::LINKTYPE_ETHERNET;
use std::io::{self, Write};
use xfwd_mempool::Mbuf;

/// Default snaplen of written files.
pub const DEFAULT_SNAPLEN: u32 = 65_535;

/// Writes frames to a pcap stream (wrap files in a `BufWriter`).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header.
    ///
    /// # Errors
    /// The stream's write error.
    pub fn new(mut w: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone = 0, sigfigs = 0
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, snaplen })
    }

    /// The snaplen in the header: longer frames are cut to it.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    fn record_header(&mut self, ts_ns: u64, caplen: u32, orig_len: u32) -> io::Result<()> {
        let mut h = [0u8; 16];
        let sec = (ts_ns / 1_000_000_000) as u32;
        let usec = ((ts_ns % 1_000_000_000) / 1000) as u32;
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&usec.to_le_bytes());
        h[8..12].copy_from_slice(&caplen.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.w.write_all(&h)
    }

    /// Write one frame; returns true when it was cut to the snaplen.
    ///
    /// # Errors
    /// The stream's write error.
    pub fn write_frame(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<bool> {
        let orig = frame.len() as u32;
        let cap = orig.min(self.snaplen);
        self.record_header(ts_ns, cap, orig)?;
        self.w.write_all(&frame[..cap as usize])?;
        Ok(cap < orig)
    }

    /// Write one packet, every segment of the chain in order; returns true
    /// when it was cut to the snaplen.
    ///
    /// # Errors
    /// The stream's write error.
    pub fn write_mbuf(&mut self, ts_ns: u64, m: &Mbuf) -> io::Result<bool> {
        let orig = m.pkt_len() as u32;
        let cap = orig.min(self.snaplen);
        self.record_header(ts_ns, cap, orig)?;
        let mut left = cap as usize;
        for seg in m.segments() {
            if left == 0 {
                break;
            }
            let k = seg.len().min(left);
            self.w.write_all(&seg[..k])?;
            left -= k;
        }
        if left > 0 {
            // pkt_len said more than the segments hold: keep the file valid.
            self.w.write_all(&vec![0u8; left])?;
        }
        Ok(cap < orig)
    }

    /// Flush buffered records.
    ///
    /// # Errors
    /// The stream's write error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.w
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::Capture;
    use super::*;

    #[test]
    fn written_frames_parse_back() {
        let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
        assert!(!w.write_frame(1_500_000_123_456, &[7u8; 60]).unwrap());
        assert!(w.write_frame(2_000_000_000, &[9u8; 150]).unwrap());
        let c = Capture::parse(w.into_inner()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.frame(0), &[7u8; 60]);
        assert_eq!(c.records()[0].ts_ns, 1_500_000_123_000);
        assert_eq!((c.records()[1].caplen, c.records()[1].orig_len), (100, 150));
    }
}
