//! pcap port: byte-exact round trips (ring → pcap TX → pcap RX), chains,
//! replay loops, files tcpdump reads, captures tcpdump and dumpcap take on
//! a veth inside test namespaces, hand-built pcap/pcapng variants and a
//! corpus of malformed files. The leak audit closes every test.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::packet::{test_frame, test_seq, PacketSocket};
use xfwd_mempool::caps::{require_root, require_tool};
use xfwd_mempool::*;
use xfwd_pmd::pcap::{Capture, CaptureFormat, PcapWriter};
use xfwd_pmd::*;

fn pool(name: &str, n: u32) -> MbufPool {
    let cfg = PoolConfig {
        name: name.into(),
        n,
        cache_size: if n < 64 { 8 } else { 32 },
        ..Default::default()
    };
    MbufPool::on_heap(&cfg).unwrap()
}

fn frames(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = 60 + (i * 37) % 1400;
            (0..len)
                .map(|k| (k as u8).wrapping_mul(7) ^ (i as u8) ^ salt)
                .collect()
        })
        .collect()
}

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .1
}

/// Every frame an RX queue delivers until it returns 0, as bytes.
fn drain_rx(rx: &mut dyn RxQueue, burst: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = MbufBatch::new(burst);
    let mut buf = Vec::new();
    while rx.rx_burst(&mut b) > 0 {
        for m in b.drain() {
            m.copy_to_vec(&mut buf);
            out.push(buf.clone());
        }
    }
    out
}

/// Send `data` as packets through a TX queue.
fn send_all(tx: &mut dyn TxQueue, cache: &mut PoolCache, data: &[Vec<u8>]) {
    let mut b = MbufBatch::new(32);
    for chunk in data.chunks(32) {
        cache.alloc_bulk(&mut b, chunk.len()).unwrap();
        for (m, f) in b.iter_mut().zip(chunk) {
            m.set_data(f).unwrap();
        }
        assert_eq!(tx.tx_burst(&mut b), chunk.len());
        assert!(b.is_empty());
    }
}

/// Read a capture through a pcap RX port.
fn read_back(p: &MbufPool, path: &Path, extra: &str) -> Vec<Vec<u8>> {
    let mut port = probe(&format!("pcap:rx={}{extra}", path.display())).unwrap();
    port.configure(&PortConf::simple(p)).unwrap();
    let mut q = port.start().unwrap();
    let got = drain_rx(q.rx[0].as_mut(), 32);
    assert_eq!(port.stats().ipackets, got.len() as u64);
    drop(q);
    port.stop().unwrap();
    got
}

#[test]
fn ring_to_pcap_to_pcap_rx_is_byte_exact() {
    let p = pool("rt", 1024);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.pcap");
    let sent = frames(300, 1);
    // ring A → ring B → pcap TX.
    let mut a = probe("ring:pcap_rt").unwrap();
    let mut b = probe("ring:pcap_rt").unwrap();
    let mut w = probe(&format!("pcap:tx={}", file.display())).unwrap();
    for port in [&mut a, &mut b, &mut w] {
        port.configure(&PortConf::simple(&p)).unwrap();
    }
    let (mut qa, mut qb, mut qw) = (a.start().unwrap(), b.start().unwrap(), w.start().unwrap());
    let mut cache = p.cache();
    for chunk in sent.chunks(50) {
        send_all(qa.tx[0].as_mut(), &mut cache, chunk);
        let mut burst = MbufBatch::new(64);
        while qb.rx[0].rx_burst(&mut burst) > 0 {
            let n = burst.len();
            assert_eq!(qw.tx[0].tx_burst(&mut burst), n);
            assert!(burst.is_empty());
        }
    }
    drop((qa, qb, qw, cache));
    for port in [&mut a, &mut b, &mut w] {
        port.stop().unwrap();
    }
    assert_eq!(xstat(w.as_ref(), "tx_written"), 300);
    assert_eq!(w.stats().opackets, 300);
    assert_eq!(
        w.stats().obytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    // Read back through a pcap RX port.
    let got = read_back(&p, &file, "");
    assert_eq!(got, sent);
    // The file itself: standard header, microsecond magic, Ethernet, 65535.
    let raw = std::fs::read(&file).unwrap();
    assert_eq!(&raw[..4], &0xa1b2_c3d4u32.to_le_bytes());
    assert_eq!(&raw[16..24], &[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
    p.leak_check().unwrap();
}

#[test]
fn chained_mbufs_are_written_whole_and_jumbo_frames_come_back_as_chains() {
    let p = pool("chain", 256);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jumbo.pcap");
    let mut w = probe(&format!("pcap:tx={}", file.display())).unwrap();
    w.configure(&PortConf::simple(&p)).unwrap();
    let mut q = w.start().unwrap();
    let mut cache = p.cache();
    // A 3-segment packet of 2048 + 2048 + 904 bytes.
    let jumbo: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut head = cache.alloc().unwrap();
    head.set_data(&jumbo[..2048]).unwrap();
    for part in [&jumbo[2048..4096], &jumbo[4096..]] {
        let mut seg = cache.alloc().unwrap();
        seg.set_data(part).unwrap();
        head.chain(seg).unwrap();
    }
    assert_eq!((head.nb_segs(), head.pkt_len()), (3, 5000));
    let mut b = MbufBatch::new(4);
    b.push(head).unwrap();
    let mut small = cache.alloc().unwrap();
    small.set_data(&[0x5a; 64]).unwrap();
    b.push(small).unwrap();
    assert_eq!(q.tx[0].tx_burst(&mut b), 2);
    drop((q, cache));
    w.stop().unwrap();
    let c = Capture::parse(std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(c.frame(0), &jumbo[..]);
    assert_eq!(c.frame(1), &[0x5a; 64]);

    // RX of a frame larger than the data room builds a chain.
    let mut r = probe(&format!("pcap:rx={}", file.display())).unwrap();
    r.configure(&PortConf::simple(&p)).unwrap();
    let mut q = r.start().unwrap();
    let mut b = MbufBatch::new(8);
    assert_eq!(q.rx[0].rx_burst(&mut b), 2);
    let m = &b.as_slice()[0];
    assert_eq!((m.nb_segs(), m.pkt_len(), m.data_len()), (3, 5000, 2048));
    let mut v = Vec::new();
    m.copy_to_vec(&mut v);
    assert_eq!(v, jumbo);
    assert_eq!(xstat(r.as_ref(), "rx_copies"), 2);
    assert_eq!(xstat(r.as_ref(), "rx_copy_bytes"), 5064);
    drop((b, q));
    r.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn snaplen_cuts_written_frames_and_keeps_the_wire_length() {
    let p = pool("snap", 64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.pcap");
    let mut w = probe(&format!("pcap:tx={},snaplen=100", file.display())).unwrap();
    w.configure(&PortConf::simple(&p)).unwrap();
    let mut q = w.start().unwrap();
    let mut cache = p.cache();
    send_all(
        q.tx[0].as_mut(),
        &mut cache,
        &[vec![1u8; 300], vec![2u8; 80]],
    );
    drop((q, cache));
    w.stop().unwrap();
    assert_eq!(xstat(w.as_ref(), "tx_truncated"), 1);
    let c = Capture::parse(std::fs::read(&file).unwrap()).unwrap();
    let r = c.records();
    assert_eq!((r[0].caplen, r[0].orig_len), (100, 300));
    assert_eq!((r[1].caplen, r[1].orig_len), (80, 80));
    p.leak_check().unwrap();
}

fn write_pcap(path: &Path, data: &[Vec<u8>]) {
    let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
    for (i, f) in data.iter().enumerate() {
        w.write_frame(1_700_000_000_000_000_000 + i as u64 * 1000, f)
            .unwrap();
    }
    std::fs::write(path, w.into_inner()).unwrap();
}

#[test]
fn replay_loops_count_then_stop_and_restart_replays() {
    let p = pool("loop", 256);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.pcap");
    let data = frames(10, 3);
    write_pcap(&file, &data);
    let mut port = probe(&format!("pcap:rx_pcap={},loop=3", file.display())).unwrap();
    port.configure(&PortConf::simple(&p)).unwrap();
    for _round in 0..2 {
        let mut q = port.start().unwrap();
        // Bursts of 7 cross the end of the file.
        let got = drain_rx(q.rx[0].as_mut(), 7);
        let want: Vec<Vec<u8>> = data.iter().cycle().take(30).cloned().collect();
        assert_eq!(got, want);
        let mut b = MbufBatch::new(8);
        assert_eq!(q.rx[0].rx_burst(&mut b), 0, "after 3 passes RX is empty");
        drop(q);
        port.stop().unwrap();
    }
    assert_eq!(xstat(port.as_ref(), "rx_file_frames"), 10);
    assert_eq!(xstat(port.as_ref(), "rx_loops"), 6);
    assert_eq!(port.stats().ipackets, 60);

    // Forever: far more than the file holds; each mbuf carries the stamp.
    let mut inf = probe(&format!("pcap:rx={},loop=infinite", file.display())).unwrap();
    inf.configure(&PortConf::simple(&p)).unwrap();
    let mut q = inf.start().unwrap();
    let mut b = MbufBatch::new(64);
    for i in 0..50 {
        assert_eq!(q.rx[0].rx_burst(&mut b), 64, "burst {i}");
        let ts = b.as_slice()[0].timestamp();
        assert_eq!((ts - 1_700_000_000_000_000_000) % 1000, 0);
        b.clear();
    }
    assert!(xstat(inf.as_ref(), "rx_loops") >= 319);
    drop(q);
    inf.stop().unwrap();

    // A capture without frames replays nothing, even forever (no spinning).
    let empty = dir.path().join("empty.pcap");
    write_pcap(&empty, &[]);
    let mut e = probe(&format!("pcap:rx={},loop=infinite", empty.display())).unwrap();
    e.configure(&PortConf::simple(&p)).unwrap();
    let mut q = e.start().unwrap();
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    assert_eq!(xstat(e.as_ref(), "rx_file_frames"), 0);
    drop(q);
    e.stop().unwrap();
    // A huge loop count does not overflow the frame budget.
    let mut h = probe(&format!("pcap:rx={},loop={}", file.display(), u64::MAX)).unwrap();
    h.configure(&PortConf::simple(&p)).unwrap();
    let mut q = h.start().unwrap();
    let mut b = MbufBatch::new(32);
    assert_eq!(q.rx[0].rx_burst(&mut b), 32);
    assert_eq!(b.as_slice()[10].data(), &data[0][..]);
    drop((b, q));
    h.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn rx_counts_nombuf_and_resumes_where_it_stopped() {
    let p = pool("nombuf", 40);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.pcap");
    let data = frames(50, 4);
    write_pcap(&file, &data);
    let mut port = probe(&format!("pcap:rx={}", file.display())).unwrap();
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut held = MbufBatch::new(40);
    assert_eq!(q.rx[0].rx_burst(&mut held), 40);
    let mut b = MbufBatch::new(8);
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    assert_eq!(port.stats().rx_nombuf, 8);
    let mut got: Vec<Vec<u8>> = held.drain().map(|m| m.data().to_vec()).collect();
    got.extend(drain_rx(q.rx[0].as_mut(), 8));
    assert_eq!(got, data);
    drop(q);
    port.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn rx_only_port_discards_tx_and_devargs_errors_are_explained() {
    let p = pool("misc", 64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.pcap");
    write_pcap(&file, &frames(3, 0));
    let mut port = probe(&format!("net_pcap:rx={}", file.display())).unwrap();
    assert_eq!(
        (
            port.info().driver,
            port.info().max_rx_queues,
            port.info().max_tx_queues
        ),
        ("pcap", 1, 1)
    );
    let e = port
        .configure(&PortConf {
            rx_queues: 2,
            ..PortConf::simple(&p)
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("rx queues = 2") && e.contains("1..=1"), "{e}");
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut cache = p.cache();
    send_all(q.tx[0].as_mut(), &mut cache, &frames(5, 0));
    assert_eq!(xstat(port.as_ref(), "tx_discarded"), 5);
    drop((q, cache));
    port.stop().unwrap();

    for (args, frag) in [
        ("pcap:", "needs `rx=FILE`"),
        ("pcap:rx=a,rx_pcap=b", "name the same file"),
        ("pcap:rx=a,loop=0", "loop=0"),
        ("pcap:rx=a,loop=x", "infinite"),
        ("pcap:rx=a,snaplen=10", "snaplen=10"),
        ("pcap:rx=a,iface=eth0", "unknown key `iface`"),
    ] {
        let e = probe(args).unwrap_err().to_string();
        assert!(e.contains(frag), "{args}: {e}");
    }
    let mut missing = probe("pcap:rx=/nonexistent/x.pcap").unwrap();
    let e = missing
        .configure(&PortConf::simple(&p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reading capture /nonexistent/x.pcap") && e.contains("No such file"),
        "{e}"
    );
    let mut bad_tx = probe("pcap:tx=/nonexistent/dir/o.pcap").unwrap();
    bad_tx.configure(&PortConf::simple(&p)).unwrap();
    let e = bad_tx.start().unwrap_err().to_string();
    assert!(e.contains("creating /nonexistent/dir/o.pcap"), "{e}");
    // A failed start leaves the port stopped and startable.
    assert!(bad_tx.stop().is_ok());
    p.leak_check().unwrap();
}

// ---- hand-built variants ---------------------------------------------------

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

/// Parse `tcpdump -r FILE -xx -nn` output into frames.
fn tcpdump_frames(file: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("tcpdump")
        .args(["-r", &file.display().to_string(), "-xx", "-nn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let t = line.trim_start();
        if !line.starts_with(char::is_whitespace) || !t.starts_with("0x") {
            frames.push(Vec::new());
            continue;
        }
        let cur = frames.last_mut().expect("hex before a header line");
        let hex = t.split_once(':').expect("offset colon").1;
        for group in hex.split_whitespace() {
            for k in (0..group.len()).step_by(2) {
                cur.push(u8::from_str_radix(&group[k..k + 2], 16).unwrap());
            }
        }
    }
    frames
}

/// Timestamps of `tcpdump -r FILE -tt --time-stamp-precision=nano`, in ns.
fn tcpdump_stamps(file: &Path) -> Vec<u64> {
    let out = Command::new("tcpdump")
        .args(["-r", &file.display().to_string(), "-tt", "-nn"])
        .arg("--time-stamp-precision=nano")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // Payload hex of unknown EtherTypes is indented: skip it.
        .filter(|l| !l.starts_with(char::is_whitespace))
        .map(|l| {
            let t = l.split_whitespace().next().unwrap();
            let (sec, frac) = t.split_once('.').unwrap();
            assert_eq!(frac.len(), 9, "{l}");
            sec.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
        })
        .collect()
}

#[test]
fn tcpdump_reads_what_the_pcap_port_writes() {
    if !require_tool("tcpdump", "tcpdump reads pcap port output") {
        return;
    }
    let p = pool("tcpd", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("for_tcpdump.pcap");
    let sent = frames(100, 7);
    let mut w = probe(&format!("pcap:tx={}", file.display())).unwrap();
    w.configure(&PortConf::simple(&p)).unwrap();
    let mut q = w.start().unwrap();
    let mut cache = p.cache();
    send_all(q.tx[0].as_mut(), &mut cache, &sent);
    drop((q, cache));
    w.stop().unwrap();
    let got = tcpdump_frames(&file);
    assert_eq!(got.len(), 100);
    assert_eq!(got, sent);
    if require_tool("tshark", "tshark reads pcap port output") {
        let out = Command::new("tshark")
            .args([
                "-r",
                &file.display().to_string(),
                "-T",
                "fields",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lens: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(lens, sent.iter().map(Vec::len).collect::<Vec<_>>());
    }
    p.leak_check().unwrap();
}

/// A capture process started by this test; killed by pid if still running.
struct Capturer {
    child: Option<Child>,
    what: &'static str,
}

impl Capturer {
    /// Start `prog args` in `ns` (bounded by `timeout 30`) and wait until it
    /// says it is listening on stderr.
    fn start(ns: &Netns, what: &'static str, prog: &str, args: &[&str], ready: &str) -> Capturer {
        let mut child = Command::new("timeout")
            .args(["30", "ip", "netns", "exec", ns.name(), prog])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(&ready) {
                    let _ = tx.send(Ok(()));
                }
                seen.push(line);
            }
            let _ = tx.send(Err(seen.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            other => panic!("{what} did not start listening: {other:?}"),
        }
        Capturer {
            child: Some(child),
            what,
        }
    }

    /// Wait (bounded) for the capture to end by itself after its count.
    fn wait(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "{} exited with {st}", self.what);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM to `timeout`, which passes it on to the capture tool.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

#[test]
fn captures_taken_by_tcpdump_and_dumpcap_on_a_veth_are_read_frame_for_frame() {
    if !require_root("capture on a veth in a test netns")
        || !require_tool("tcpdump", "tcpdump captures")
        || !require_tool("dumpcap", "pcapng captures (tcpdump cannot write pcapng)")
    {
        return;
    }
    const N: usize = 40;
    let a = Netns::new("pcapa");
    let b = Netns::new("pcapb");
    a.veth("va", &b, "vb");
    let dir = tempfile::tempdir().unwrap();
    let f_us = dir.path().join("tcpdump_us.pcap");
    let f_ns = dir.path().join("tcpdump_ns.pcap");
    let f_ng = dir.path().join("dumpcap.pcapng");
    let count = N.to_string();
    let filter = "ether proto 0x88b5";
    let caps = [
        Capturer::start(
            &b,
            "tcpdump (µs)",
            "tcpdump",
            &[
                "-i",
                "vb",
                "-c",
                &count,
                "-U",
                "-w",
                &f_us.display().to_string(),
                filter,
            ],
            "listening on",
        ),
        Capturer::start(
            &b,
            "tcpdump (ns)",
            "tcpdump",
            &[
                "-i",
                "vb",
                "-c",
                &count,
                "-U",
                "--time-stamp-precision=nano",
                "-w",
                &f_ns.display().to_string(),
                filter,
            ],
            "listening on",
        ),
        Capturer::start(
            &b,
            "dumpcap",
            "dumpcap",
            &[
                "-i",
                "vb",
                "-c",
                &count,
                "-f",
                filter,
                "-w",
                &f_ng.display().to_string(),
            ],
            "Capturing on",
        ),
    ];
    // Send rounds of N known frames (sequence numbers keep counting, sizes
    // cycle) from the other end until every capture has its N. A tool that
    // says it listens may still miss frames while libpcap installs its
    // filter, so each file holds N frames of the stream in increasing
    // order (not necessarily consecutive), each checked byte for byte.
    let frame = |seq: u32| {
        test_frame(
            [0x02, 0, 0, 0, 0, 0xb],
            [0x02, 0, 0, 0, 0, 0xa],
            seq,
            60 + (seq as usize % N) * 31,
        )
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let rounds = std::thread::scope(|sc| {
        let sender = sc.spawn(|| {
            a.run(|| {
                let idx = xfwd_pmd::netdev::ifindex("va").unwrap();
                let s = PacketSocket::bind(idx);
                let mut round = 0u32;
                // Bounded: at most 200 rounds, 50 ms apart.
                while !done.load(std::sync::atomic::Ordering::Relaxed) && round < 200 {
                    for i in 0..N as u32 {
                        s.send(&frame(round * N as u32 + i));
                    }
                    round += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                round
            })
        });
        for c in caps {
            c.wait();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().unwrap()
    });
    eprintln!("captures complete after {rounds} rounds of {N} frames");

    let p = pool("veth", 256);
    for (file, fmt) in [
        (
            &f_us,
            CaptureFormat::Pcap {
                big_endian: false,
                nanos: false,
            },
        ),
        (
            &f_ns,
            CaptureFormat::Pcap {
                big_endian: false,
                nanos: true,
            },
        ),
        (&f_ng, CaptureFormat::PcapNg),
    ] {
        let c = Capture::parse(std::fs::read(file).unwrap()).unwrap();
        assert_eq!(c.format(), fmt, "{}", file.display());
        let got = read_back(&p, file, "");
        assert_eq!(got.len(), N, "{}", file.display());
        let mut last = None;
        for (i, g) in got.iter().enumerate() {
            let seq = test_seq(g).expect("only test frames pass the filter");
            assert!(last < Some(seq), "{} frame {i}: order", file.display());
            assert_eq!(g, &frame(seq), "{} frame {i}", file.display());
            last = Some(seq);
        }
        // Timestamps are real and in order.
        let ts: Vec<u64> = c.records().iter().map(|r| r.ts_ns).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]) && ts[0] > 1_600_000_000_000_000_000);
        // libpcap reads pcapng too: tcpdump -xx shows the same bytes, and
        // -tt the same timestamps to the nanosecond.
        assert_eq!(tcpdump_frames(file), got, "tcpdump -xx {}", file.display());
        assert_eq!(tcpdump_stamps(file), ts, "tcpdump -tt {}", file.display());
    }
    p.leak_check().unwrap();
}
