//! FaultInjector: determinism given the seed, what each fault does to the
//! frames, counts in xstats, TX "ring full" keeping unsent packets in order,
//! devargs with a nested inner port. The leak audit closes every test.

mod support;

use std::path::{Path, PathBuf};
use xfwd_mempool::*;
use xfwd_pmd::fault::{FaultConfig, FaultCounts, FaultInjector};
use xfwd_pmd::pcap::PcapWriter;
use xfwd_pmd::*;

fn pool(name: &str, n: u32) -> MbufPool {
    support::heap_pool(name, n, 32)
}

const FRAMES: usize = 2000;

/// Frame i: 60..=187 bytes, starting with its index (u32 BE).
fn frame(i: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..60 + i % 128).map(|k| (k as u8) ^ 0x5a).collect();
    f[..4].copy_from_slice(&(i as u32).to_be_bytes());
    f
}

fn capture_file(dir: &Path) -> PathBuf {
    let path = dir.join("in.pcap");
    let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
    for i in 0..FRAMES {
        w.write_frame(i as u64, &frame(i)).unwrap();
    }
    std::fs::write(&path, w.into_inner()).unwrap();
    path
}

/// Run all frames of `file` through a FaultInjector's RX in bursts of 32.
/// Returns the frames, the fault counts and the largest burst.
fn run_rx(p: &MbufPool, file: &Path, cfg: FaultConfig) -> (Vec<Vec<u8>>, FaultCounts, usize) {
    let inner = probe(&format!("pcap:rx={}", file.display())).unwrap();
    let mut port = FaultInjector::wrap(inner, cfg).unwrap();
    port.configure(&PortConf::simple(p)).unwrap();
    let mut q = port.start().unwrap();
    let mut got = Vec::new();
    let mut b = MbufBatch::new(32);
    let mut largest = 0;
    let mut empty_in_a_row = 0;
    // Short bursts may return 0 before the end: stop after 64 empty ones.
    while empty_in_a_row < 64 {
        let n = q.rx[0].rx_burst(&mut b);
        assert_eq!(n, b.len());
        largest = largest.max(n);
        if n == 0 {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        for m in b.drain() {
            got.push(m.data().to_vec());
        }
    }
    drop(q);
    port.stop().unwrap();
    assert_eq!(port.inner().stats().ipackets, FRAMES as u64);
    let x: Vec<(String, u64)> = port.xstats();
    let c = port.counts();
    assert!(x.contains(&("fault_rx_dropped".into(), c.rx_dropped)));
    assert!(x.contains(&("rx_file_frames".into(), FRAMES as u64)));
    (got, c, largest)
}

#[test]
fn rx_faults_are_deterministic_counted_and_do_what_they_say() {
    let p = pool("frx", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = capture_file(dir.path());
    let cfg = FaultConfig {
        seed: 42,
        rx_drop: 0.1,
        rx_corrupt: 0.05,
        rx_truncate: 0.05,
        ..Default::default()
    };
    let (a, ca, _) = run_rx(&p, &file, cfg);
    let (b, cb, _) = run_rx(&p, &file, cfg);
    assert_eq!(a, b, "same seed, same frames");
    assert_eq!(ca, cb);
    let (c, _, _) = run_rx(&p, &file, FaultConfig { seed: 43, ..cfg });
    assert_ne!(a, c, "another seed, other faults");

    assert_eq!(a.len() as u64 + ca.rx_dropped, FRAMES as u64);
    // 10 % of 2000 = 200 ± 5 sigma (13.4).
    assert!((133..=267).contains(&ca.rx_dropped), "{ca:?}");
    assert!((40..=160).contains(&ca.rx_corrupted), "{ca:?}");
    assert!((40..=160).contains(&ca.rx_truncated), "{ca:?}");
    // The same seed with only drops delivers the undamaged frames in the
    // same positions (each fault has its own generator): compare pairwise.
    // A corruption changes exactly one byte, a truncation leaves a prefix.
    let (clean, cc, _) = run_rx(
        &p,
        &file,
        FaultConfig {
            rx_corrupt: 0.0,
            rx_truncate: 0.0,
            ..cfg
        },
    );
    assert_eq!(cc.rx_dropped, ca.rx_dropped);
    assert_eq!(clean.len(), a.len());
    let (mut corrupted, mut truncated) = (0u64, 0u64);
    for (g, o) in a.iter().zip(&clean) {
        assert!(!g.is_empty() && g.len() <= o.len());
        let diff = g.iter().zip(o).filter(|(x, y)| x != y).count();
        assert!(diff <= 1, "one byte changed at most");
        corrupted += diff as u64;
        truncated += (g.len() < o.len()) as u64;
    }
    assert_eq!(truncated, ca.rx_truncated);
    // A byte changed in a part truncated away is invisible: "at most".
    assert!(
        corrupted <= ca.rx_corrupted && corrupted * 10 >= ca.rx_corrupted * 9,
        "{corrupted} vs {ca:?}"
    );
    assert!(a.iter().all(|f| !f.is_empty()));
    p.leak_check().unwrap();
}

#[test]
fn one_fault_does_not_change_where_another_strikes() {
    let p = pool("findep", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = capture_file(dir.path());
    let only_drop = FaultConfig {
        seed: 9,
        rx_drop: 0.2,
        ..Default::default()
    };
    let (a, ca, _) = run_rx(&p, &file, only_drop);
    let (b, cb, _) = run_rx(
        &p,
        &file,
        FaultConfig {
            rx_short: 0.5,
            ..only_drop
        },
    );
    assert_eq!(a, b, "short bursts do not change which frames are dropped");
    assert_eq!(ca.rx_dropped, cb.rx_dropped);
    assert!(cb.rx_short_bursts > 0);
    p.leak_check().unwrap();
}

#[test]
fn short_bursts_return_fewer_but_lose_nothing() {
    let p = pool("fshort", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = capture_file(dir.path());
    let (plain, _, plain_largest) = run_rx(&p, &file, FaultConfig::default());
    assert_eq!(plain_largest, 32);
    let cfg = FaultConfig {
        seed: 5,
        rx_short: 1.0,
        ..Default::default()
    };
    let (got, c, largest) = run_rx(&p, &file, cfg);
    assert_eq!(got, plain, "nothing lost, nothing reordered");
    assert!(largest < 32, "every burst was short: largest {largest}");
    // At least 2000 / 31 bursts delivered, plus the 64 empty ones at the end.
    assert!(c.rx_short_bursts >= 64 + 65, "{c:?}");
    p.leak_check().unwrap();
}

#[test]
fn tx_full_keeps_unsent_packets_with_the_caller_in_order() {
    let p = pool("ftx", 512);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let inner = probe(&format!("pcap:tx={}", out.display())).unwrap();
    let cfg = FaultConfig {
        seed: 77,
        tx_full: 0.5,
        ..Default::default()
    };
    let mut port = FaultInjector::wrap(inner, cfg).unwrap();
    assert_eq!(port.info().driver, "fault");
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut cache = p.cache();
    let mut b = MbufBatch::new(32);
    let mut next = 0usize;
    let (mut calls, mut partial, mut zero) = (0u64, 0u64, 0u64);
    while next < FRAMES || !b.is_empty() {
        let want = (32 - b.len()).min(FRAMES - next);
        cache.alloc_bulk(&mut b, want).unwrap();
        let n0 = b.len();
        for m in &mut b.as_mut_slice()[n0 - want..] {
            m.set_data(&frame(next)).unwrap();
            next += 1;
        }
        let first_unsent_before = b.as_slice()[0].data()[..4].to_vec();
        let sent = q.tx[0].tx_burst(&mut b);
        calls += 1;
        assert_eq!(b.len(), n0 - sent);
        partial += (sent < n0) as u64;
        zero += (sent == 0) as u64;
        if sent == 0 {
            assert_eq!(b.as_slice()[0].data()[..4], first_unsent_before[..]);
        }
        // Unsent packets stay in their order, right after the sent ones.
        let idx: Vec<u32> = b
            .iter()
            .map(|m| u32::from_be_bytes(m.data()[..4].try_into().unwrap()))
            .collect();
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "{idx:?}");
        assert!(calls < 100_000);
    }
    drop((q, cache));
    port.stop().unwrap();
    let c = port.counts();
    assert_eq!(c.tx_full_bursts, partial);
    assert!(zero > 0 && c.tx_held > 0, "{c:?}");
    assert_eq!(port.stats().opackets, FRAMES as u64);
    // Everything reached the file exactly once and in order.
    let cap = xfwd_pmd::pcap::Capture::parse(std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(cap.len(), FRAMES);
    assert!(cap.frames().enumerate().all(|(i, f)| f == frame(i)));
    p.leak_check().unwrap();
}

#[test]
fn devargs_take_the_rest_of_the_string_as_the_inner_port() {
    let p = pool("fdev", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = capture_file(dir.path());
    let out = dir.path().join("o.pcap");
    let s = format!(
        "fault:seed=3,rx_drop=0.5,tx_full=0,inner=pcap:rx={},tx={},loop=2",
        file.display(),
        out.display()
    );
    let (cfg, inner) = FaultInjector::parse_devargs(&s).unwrap();
    assert_eq!((cfg.seed, cfg.rx_drop, cfg.tx_full), (3, 0.5, 0.0));
    assert!(inner.starts_with("pcap:rx=") && inner.ends_with(",loop=2"));
    let mut port = FaultInjector::probe(&s).unwrap();
    assert_eq!(port.info().devargs, s);
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut b = MbufBatch::new(64);
    let mut got = 0u64;
    while q.rx[0].rx_burst(&mut b) > 0 || got == 0 {
        got += b.len() as u64;
        b.clear();
    }
    drop(q);
    port.stop().unwrap();
    let c = port.counts();
    assert_eq!(
        got + c.rx_dropped,
        2 * FRAMES as u64,
        "loop=2 reached the inner port"
    );

    // Nesting: the outer fault's inner= is itself a fault port.
    let nested =
        FaultInjector::probe("fault:seed=1,inner=fault:seed=2,rx_drop=1,inner=null:size=64")
            .unwrap();
    assert_eq!(nested.inner().info().driver, "fault");
    assert_eq!(nested.config().rx_drop, 0.0);

    for (args, frag) in [
        ("fault:seed=1,rx_drop=0.1", "needs `inner=<devargs>`"),
        ("fault:seed=1,inner=", "`inner=` is empty"),
        ("fault:rx_drop=2,inner=null:", "rx_drop=2"),
        ("fault:seed=-1,inner=null:", "seed=-1"),
        ("fault:bogus=1,inner=null:", "unknown key `bogus`"),
        ("fault:inner=nosuch:", "unknown driver `nosuch`"),
        ("null:inner=null:", "expected `fault:"),
    ] {
        let e = FaultInjector::probe(args).unwrap_err().to_string();
        assert!(e.contains(frag), "{args}: {e}");
    }
    let e = FaultInjector::wrap(
        probe("null:").unwrap(),
        FaultConfig {
            tx_full: -0.5,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tx_full=-0.5"), "{e}");
    p.leak_check().unwrap();
}
