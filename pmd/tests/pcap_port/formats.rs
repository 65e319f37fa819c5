//! The pcap and pcapng readers on hand-made files: both byte orders,
//! nanosecond magic, pcapng sections/interfaces/blocks, malformed files.

use super::*;

/// A classic pcap in either byte order with micro- or nanosecond stamps.
fn pcap_bytes(be: bool, nanos: bool, data: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
    };
    let mut v = Vec::new();
    w32(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut v, 2);
    w16(&mut v, 4);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, 65535);
    w32(&mut v, 1);
    for (i, f) in data.iter().enumerate() {
        w32(&mut v, 1000 + i as u32);
        w32(&mut v, 123 + i as u32);
        w32(&mut v, f.len() as u32);
        w32(&mut v, f.len() as u32 + 4);
        v.extend_from_slice(f);
    }
    v
}

/// pcapng blocks in one byte order.
struct Ng {
    v: Vec<u8>,
    be: bool,
}

impl Ng {
    fn w32(&mut self, x: u32) {
        let b = if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        };
        self.v.extend_from_slice(&b);
    }
    fn w16(&mut self, x: u16) {
        let b = if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        };
        self.v.extend_from_slice(&b);
    }
    fn block(&mut self, t: u32, body: impl FnOnce(&mut Ng)) {
        let start = self.v.len();
        self.w32(t);
        self.w32(0);
        body(self);
        while !(self.v.len() - start).is_multiple_of(4) {
            self.v.push(0);
        }
        let len = (self.v.len() - start + 4) as u32;
        self.w32(len);
        let b = if self.be {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        };
        self.v[start + 4..start + 8].copy_from_slice(&b);
    }
    fn shb(&mut self) {
        self.block(0x0a0d_0d0a, |n| {
            n.w32(0x1a2b_3c4d);
            n.w16(1);
            n.w16(0);
            n.w32(u32::MAX);
            n.w32(u32::MAX);
        });
    }
    fn idb(&mut self, linktype: u16, snaplen: u32, tsresol: Option<u8>) {
        self.block(1, |n| {
            n.w16(linktype);
            n.w16(0);
            n.w32(snaplen);
            if let Some(r) = tsresol {
                n.w16(9);
                n.w16(1);
                n.v.extend_from_slice(&[r, 0, 0, 0]);
                n.w16(0);
                n.w16(0);
            }
        });
    }
    fn epb(&mut self, iface: u32, ts: u64, f: &[u8]) {
        self.block(6, |n| {
            n.w32(iface);
            n.w32((ts >> 32) as u32);
            n.w32(ts as u32);
            n.w32(f.len() as u32);
            n.w32(f.len() as u32);
            n.v.extend_from_slice(f);
        });
    }
    fn spb(&mut self, f: &[u8]) {
        self.block(3, |n| {
            n.w32(f.len() as u32);
            n.v.extend_from_slice(f);
        });
    }
}

#[test]
fn pcap_both_byte_orders_and_nanosecond_magic_are_read() {
    let data = frames(5, 9);
    for (be, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
        let c = Capture::parse(pcap_bytes(be, nanos, &data)).unwrap();
        assert_eq!(
            c.format(),
            CaptureFormat::Pcap {
                big_endian: be,
                nanos
            }
        );
        let got: Vec<Vec<u8>> = c.frames().map(<[u8]>::to_vec).collect();
        assert_eq!(got, data);
        let unit = if nanos { 1 } else { 1000 };
        assert_eq!(c.records()[2].ts_ns, 1002 * 1_000_000_000 + 125 * unit);
        assert_eq!(c.records()[2].orig_len, data[2].len() as u32 + 4);
    }
    // And through the port, big-endian nanosecond.
    let p = pool("be", 64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("be.pcap");
    std::fs::write(&file, pcap_bytes(true, true, &data)).unwrap();
    assert_eq!(read_back(&p, &file, ""), data);
    p.leak_check().unwrap();
}

#[test]
fn pcapng_sections_interfaces_block_kinds_and_byte_orders() {
    let data = frames(6, 5);
    let mut ng = Ng {
        v: Vec::new(),
        be: false,
    };
    // Section 1, little-endian: two interfaces, µs default and ns, an
    // unknown block between packets.
    ng.shb();
    ng.idb(1, 0, None);
    ng.idb(1, 65535, Some(9));
    ng.epb(0, 5_000_001, &data[0]);
    ng.block(0x0bad, |n| n.w32(42));
    ng.epb(1, 7, &data[1]);
    ng.spb(&data[2]);
    let mut v = ng.v;
    // Section 2, big-endian: a non-Ethernet interface without packets, then
    // an Ethernet one with binary resolution (2^-10 s).
    let mut ng = Ng {
        v: Vec::new(),
        be: true,
    };
    ng.shb();
    ng.idb(113, 0, None);
    ng.idb(1, 0, Some(0x80 | 10));
    ng.epb(1, 2048, &data[3]);
    ng.epb(1, 0, &data[4]);
    ng.block(5, |n| n.w32(1)); // interface statistics: skipped
    ng.epb(1, 1, &data[5]);
    v.extend_from_slice(&ng.v);
    let c = Capture::parse(v.clone()).unwrap();
    assert_eq!(c.format(), CaptureFormat::PcapNg);
    let got: Vec<Vec<u8>> = c.frames().map(<[u8]>::to_vec).collect();
    assert_eq!(got, data);
    let ts: Vec<u64> = c.records().iter().map(|r| r.ts_ns).collect();
    assert_eq!(&ts[..2], &[5_000_001_000, 7]);
    assert_eq!(ts[3], 2_000_000_000);
    assert_eq!(c.records()[1].iface, 1);

    let p = pool("ng", 64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.pcapng");
    std::fs::write(&file, &v).unwrap();
    assert_eq!(read_back(&p, &file, ""), data);
    p.leak_check().unwrap();
}

#[test]
fn malformed_files_give_clear_format_errors() {
    let good = pcap_bytes(false, false, &frames(2, 0));
    let mut ng = Ng {
        v: Vec::new(),
        be: false,
    };
    ng.shb();
    ng.idb(1, 0, None);
    ng.epb(0, 0, &[1u8; 60]);
    let good_ng = ng.v;
    let epb_at = good_ng.len() - 92;

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "too short"),
        (
            "truncated header",
            good[..10].to_vec(),
            "truncated pcap file header",
        ),
        (
            "bad magic",
            b"GIF89a-not-a-capture-file".to_vec(),
            "bad magic 0x38464947",
        ),
        (
            "truncated record header",
            good[..30].to_vec(),
            "truncated record header",
        ),
        (
            "truncated record",
            good[..good.len() - 5].to_vec(),
            "truncated record 1",
        ),
    ];
    let mut big = good.clone();
    big[16..20].copy_from_slice(&50u32.to_le_bytes()); // snaplen 50 < caplen 60
    cases.push((
        "caplen > snaplen",
        big,
        "caplen 60 above the file's snaplen 50",
    ));
    let mut v = good.clone();
    v[4..6].copy_from_slice(&3u16.to_le_bytes());
    cases.push(("version", v, "unsupported pcap version 3.4"));
    let mut v = good.clone();
    v[20..24].copy_from_slice(&105u32.to_le_bytes());
    cases.push(("linktype", v, "link type 105 is not Ethernet"));

    let mut v = good_ng.clone();
    let n = v.len();
    v[n - 4..].copy_from_slice(&100u32.to_le_bytes());
    cases.push((
        "pcapng length mismatch",
        v,
        "leading length 92, trailing length 100",
    ));
    cases.push((
        "pcapng truncated block",
        good_ng[..good_ng.len() - 8].to_vec(),
        "truncated block type 0x6",
    ));
    let mut v = good_ng.clone();
    v[epb_at + 8..epb_at + 12].copy_from_slice(&3u32.to_le_bytes());
    cases.push(("pcapng unknown interface", v, "names interface 3"));
    let mut v = good_ng.clone();
    v[epb_at + 20..epb_at + 24].copy_from_slice(&500u32.to_le_bytes());
    cases.push(("pcapng caplen overrun", v, "caplen 500 overruns its block"));
    let mut v = good_ng.clone();
    v[8..12].copy_from_slice(&0x1122_3344u32.to_le_bytes());
    cases.push(("pcapng bad BOM", v, "byte-order magic 0x11223344"));
    let mut v = good_ng.clone();
    v[epb_at + 4..epb_at + 8].copy_from_slice(&94u32.to_le_bytes());
    cases.push(("pcapng odd length", v, "multiple of 4"));
    cases.push((
        "pcapng starting without SHB",
        good_ng[28..].to_vec(),
        "bad magic",
    ));

    let p = pool("bad", 64);
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, bytes, frag)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.pcap"));
        std::fs::write(&file, &bytes).unwrap();
        let mut port = probe(&format!("pcap:rx={}", file.display())).unwrap();
        let e = port.configure(&PortConf::simple(&p)).unwrap_err();
        assert!(matches!(e, PortError::Format { .. }), "{what}: {e:?}");
        let s = e.to_string();
        assert!(
            s.contains(frag) && s.contains("at byte") && s.contains(&format!("bad{i}.pcap")),
            "{what}: {s}"
        );
        // The port is usable after the error: start refuses cleanly.
        assert!(port.start().is_err());
    }
    p.leak_check().unwrap();
}

// ---- real tools ------------------------------------------------------------
