//! Capture parsing (classic pcap in both byte orders, micro/nanosecond
//! magic; pcapng with several sections, interfaces and byte orders).
//!
//! Invariants: `Capture::parse` never panics; on success every record lies
//! inside the file, in order and without overlap, no caplen exceeds
//! `MAX_SNAPLEN`, and writing the frames back with `PcapWriter` and parsing
//! that again gives the same frames (cut to the writer's snaplen), lengths
//! and microsecond timestamps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xfwd_pmd::pcap::reader::MAX_SNAPLEN;
use xfwd_pmd::pcap::{Capture, CaptureFormat, PcapWriter};

fuzz_target!(|data: &[u8]| {
    let Ok(cap) = Capture::parse(data.to_vec()) else {
        return;
    };
    let mut end = 0usize;
    for r in cap.records() {
        assert!(r.off >= end, "records overlap or go backwards: {r:?}");
        assert!(r.caplen <= MAX_SNAPLEN, "caplen above MAX_SNAPLEN: {r:?}");
        end = r.off + r.caplen as usize;
        assert!(end <= data.len(), "record outside the file: {r:?}");
    }
    assert_eq!(cap.frames().count(), cap.len());
    if let CaptureFormat::Pcap { .. } = cap.format() {
        assert!(cap.records().iter().all(|r| r.iface == 0));
    }

    // Round trip through the writer.
    let snaplen = 65_535u32;
    let mut w = PcapWriter::new(Vec::new(), snaplen).expect("writing to a Vec");
    for (r, f) in cap.records().iter().zip(cap.frames()) {
        let cut = w.write_frame(r.ts_ns, f).expect("writing to a Vec");
        assert_eq!(cut, f.len() > snaplen as usize);
    }
    let again = Capture::parse(w.into_inner()).expect("xfwd's own pcap parses");
    assert_eq!(again.len(), cap.len());
    assert_eq!(
        again.format(),
        CaptureFormat::Pcap {
            big_endian: false,
            nanos: false
        }
    );
    for ((a, b), (ra, rb)) in again
        .frames()
        .zip(cap.frames())
        .zip(again.records().iter().zip(cap.records()))
    {
        assert_eq!(a, &b[..b.len().min(snaplen as usize)]);
        assert_eq!(ra.orig_len as usize, b.len());
        if rb.ts_ns / 1_000_000_000 <= u64::from(u32::MAX) {
            assert_eq!(ra.ts_ns, rb.ts_ns / 1000 * 1000, "timestamp changed");
        }
    }
});
