//! pcap port: byte-exact round trips (ring → pcap TX → pcap RX), chains,
//! replay loops, files tcpdump reads, captures tcpdump and dumpcap take on
//! a veth inside test namespaces, hand-built pcap/pcapng variants and a
//! corpus of malformed files. The leak audit closes every test.

mod support;

#[path = "pcap_port/formats.rs"]
mod formats;
#[path = "pcap_port/interop.rs"]
mod interop;

use std::path::Path;
use support::netns::Netns;
use support::packet::{test_frame, test_seq, PacketSocket};
use support::xstat;
use xfwd_mempool::caps::{require_root, require_tool};
use xfwd_mempool::*;
use xfwd_pmd::pcap::{Capture, CaptureFormat, PcapWriter};
use xfwd_pmd::*;

fn pool(name: &str, n: u32) -> MbufPool {
    support::heap_pool(name, n, if n < 64 { 8 } else { 32 })
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
