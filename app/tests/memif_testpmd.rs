//! memif interop, end to end with the real binaries: xfwd against DPDK
//! 22.11's `dpdk-testpmd --vdev net_memif0,...` in both roles and both
//! directions, an io forward through each side, xfwd ↔ xfwd, and a peer
//! killed (SIGKILL) mid-run and restarted while xfwd keeps running. Counts
//! are exact, payloads byte-exact (pcap in → pcap out), and every xfwd run
//! ends with its leak audit at 0. Needs root, 2M hugepages and
//! `dpdk-testpmd` (CI has them; elsewhere the tests skip).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::proc::{port, sock, wait_listening, xfwd, xfwd_final, Proc};
use support::{read_pcap, write_pcap};
use xfwd_mempool::caps;

/// io forwarding that waits for ring room instead of dropping.
const IO: [&str; 4] = ["--forward-mode", "io", "--tx-retry", "1000000"];

/// One test at a time: each runs two dataplane processes on a 2-core host.
static SERIAL: Mutex<()> = Mutex::new(());

/// Where DPDK keeps a process's runtime directory (`--file-prefix`).
const DPDK_RUN: &str = "/var/run/dpdk";

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_hugepages_2m(256, what)
        && caps::require_tool("dpdk-testpmd", what)
}

/// testpmd with `vdevs`; forwarding on lcore 0, the main lcore (idle) on 1,
/// so xfwd's worker on CPU 1 does not share a core with testpmd's.
fn testpmd(prefix: &str, vdevs: &[String], mode: &str, extra: &[&str]) -> Proc {
    testpmd_eal(prefix, &[], vdevs, mode, extra)
}

fn testpmd_eal(prefix: &str, eal: &[&str], vdevs: &[String], mode: &str, extra: &[&str]) -> Proc {
    // Line-buffered stdout: readiness and statistics arrive as printed.
    let mut c = Command::new("stdbuf");
    c.args(["-oL", "dpdk-testpmd"]);
    c.args(["-l", "0,1", "--main-lcore", "1", "--no-pci", "-m", "256"]);
    if eal.is_empty() {
        c.arg("--huge-unlink");
    }
    let file_prefix = format!("xfwd-memif-{}-{prefix}", std::process::id());
    c.arg(format!("--file-prefix={file_prefix}"));
    c.args(eal);
    for v in vdevs {
        c.arg(format!("--vdev={v}"));
    }
    c.args(["--", "--nb-cores=1", "--total-num-mbufs=8192", "--burst=32"]);
    c.arg(format!("--forward-mode={mode}"));
    c.args(extra);
    // Its runtime directory goes with it (also when the test fails).
    let p =
        Proc::spawn(&format!("testpmd {prefix}"), c).leaves(Path::new(DPDK_RUN).join(file_prefix));
    p.wait_for("Press enter to exit", Duration::from_secs(20));
    p
}

/// testpmd's final counter `key` (`RX-packets`, `TX-packets`, …) from its
/// "Accumulated forward statistics" block.
fn accumulated(out: &str, key: &str) -> u64 {
    let block = out
        .split("Accumulated forward statistics")
        .nth(1)
        .unwrap_or_else(|| panic!("no accumulated statistics in testpmd output:\n{out}"));
    let at = block.find(&format!("{key}:")).expect("key in block") + key.len() + 1;
    block[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

/// Stop testpmd with SIGINT; its output. Its runtime directory is gone.
fn stop_testpmd(p: Proc) -> String {
    let dir = p.left_dir().map(Path::to_path_buf);
    p.signal(libc::SIGINT);
    let (code, out) = p.finish(Duration::from_secs(15));
    assert!(
        out.contains("Bye"),
        "testpmd did not shut down cleanly (exit {code:?}):\n{out}"
    );
    if let Some(d) = dir {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    out
}

/// Stop testpmd with SIGINT after xfwd (its peer) has already left; its
/// output. DPDK 22.11's memif can segfault when its peer disconnects while
/// its lcore polls (eth_memif_rx reads a ring its disconnect just
/// unmapped), so its exit is not checked here: the test checks xfwd's side.
fn stop_testpmd_after_peer(p: Proc) -> String {
    p.signal(libc::SIGINT);
    p.finish(Duration::from_secs(15)).1
}

/// Wait until an xfwd JSON stats line shows `port`'s `key` at `n`.
fn wait_json(x: &Proc, port: usize, key: &str, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let hit = x
            .text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["ports"][port][key].as_u64() >= Some(n));
        if hit {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "xfwd port{port} {key} never reached {n}:\n{}",
            x.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xfwd-memif-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Frames of 60..=1514 bytes, each with its index in the payload.
fn corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = 60 + (i * 97) % (1514 - 59);
            let mut f = vec![0u8; len];
            f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
            f[12..14].copy_from_slice(&[0x88, 0xb5]);
            f[14..18].copy_from_slice(&(i as u32).to_be_bytes());
            for (k, b) in f[18..].iter_mut().enumerate() {
                *b = (k as u8).wrapping_mul(31) ^ (i as u8);
            }
            f
        })
        .collect()
}

/// A socket name, an input pcap of `n` corpus frames, an output path.
fn pcap_case(tag: &str, n: usize) -> (String, PathBuf, PathBuf, Vec<Vec<u8>>) {
    let (inp, out) = (
        tmp(&format!("{tag}-in.pcap")),
        tmp(&format!("{tag}-out.pcap")),
    );
    let frames = corpus(n);
    write_pcap(&inp, &frames);
    (sock(tag), inp, out, frames)
}

fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{what}: frame {i} differs ({} vs {} bytes)",
            g.len(),
            w.len()
        );
    }
}

#[test]
fn xfwd_txonly_client_to_testpmd_server() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif xfwd txonly -> testpmd") {
        return;
    }
    let s = sock("tx");
    let out = tmp("tx-out.pcap");
    let tp = testpmd(
        "tx",
        &[
            format!("net_memif0,role=server,socket={s},id=1"),
            format!("net_pcap0,tx_pcap={}", out.display()),
        ],
        "io",
        &[],
    );
    let x = xfwd(
        &[format!("memif:role=client,socket={s},id=1")],
        &[
            "--forward-mode",
            "txonly",
            "--tx-count",
            "20000",
            "--tx-retry",
            "1000000",
            "--stats-period",
            "0.05",
        ],
    );
    // Stop testpmd's forwarding while xfwd is still connected (it leaves
    // 0.3 s after its last frame): DPDK's memif is not safe against a peer
    // that disconnects under a polling lcore.
    wait_json(&x, 0, "tx_packets", 20000, Duration::from_secs(30));
    let tout = stop_testpmd(tp);
    let (fin, log) = xfwd_final(x, Duration::from_secs(30));
    assert!(log.contains("connected to server `DPDK 22.11"), "{log}");
    let p = port(&fin, 0);
    assert_eq!(
        (p["tx_packets"].as_u64(), p["tx_errors"].as_u64()),
        (Some(20000), Some(0)),
        "{p}"
    );
    // testpmd forwarded every frame memif0 → pcap0, and each is xfwd's
    // generated UDP frame (only the latency stamp differs between them).
    // (DPDK's memif counters read 0 once its peer has gone: count what
    // pcap0 sent on.)
    assert_eq!(accumulated(&tout, "TX-packets"), 20000, "{tout}");
    let frames = read_pcap(&out);
    assert_eq!(frames.len(), 20000);
    for f in &frames {
        assert_eq!(f.len(), 64);
        assert_eq!(&f[..42], &frames[0][..42], "headers differ");
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(&f[36..38], &9u16.to_be_bytes(), "UDP dst port");
    }
}

#[test]
fn testpmd_txonly_client_to_xfwd_rxonly_server() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif testpmd txonly -> xfwd") {
        return;
    }
    let s = sock("rx");
    let x = xfwd(
        &[format!("memif:role=server,socket={s},id=2,secret=xyz")],
        &["--forward-mode", "rxonly", "--duration", "5"],
    );
    wait_listening(&s, &x);
    let tp = testpmd(
        "rx",
        &[format!("net_memif0,role=client,socket={s},id=2,secret=xyz")],
        "txonly",
        &[],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let tout = stop_testpmd(tp);
    let sent = accumulated(&tout, "TX-packets");
    assert!(sent > 1000, "testpmd sent only {sent}:\n{tout}");
    let (fin, log) = xfwd_final(x, Duration::from_secs(20));
    assert!(log.contains("connected to client `DPDK 22.11"), "{log}");
    let p = port(&fin, 0);
    assert_eq!(
        p["rx_packets"].as_u64(),
        Some(sent),
        "every frame testpmd sent: {p}"
    );
    assert_eq!(p["rx_bytes"].as_u64(), Some(sent * 64), "{p}");
    assert_eq!(p["rx_errors"].as_u64(), Some(0), "{p}");
}

/// pcap → memif (xfwd client with `memif_args`) → testpmd server io →
/// memif → pcap, byte-exact.
fn io_through_testpmd(tag: &str, n: usize, memif_args: &str, xfwd_args: &[&str]) {
    let (s, inp, out, frames) = pcap_case(tag, n);
    let tp = testpmd(
        tag,
        &[format!("net_memif0,role=server,socket={s},id=3")],
        "io",
        &[],
    );
    let mut args = vec![IO[0], IO[1], IO[2], IO[3], "--duration", "20"];
    args.extend_from_slice(xfwd_args);
    let x = xfwd(
        &[
            format!("pcap:rx={},tx={}", inp.display(), out.display()),
            format!("memif:role=client,socket={s},id=3,{memif_args}"),
        ],
        &args,
    );
    let (fin, log) = xfwd_final(x, Duration::from_secs(40));
    let tout = stop_testpmd_after_peer(tp);
    assert!(log.contains("connected to server `DPDK 22.11"), "{log}");
    let got = read_pcap(&out);
    if got.len() != frames.len() {
        eprintln!("xfwd:\n{log}\ntestpmd:\n{tout}");
    }
    assert_same(&got, &frames, "pcap → memif → testpmd io → memif → pcap");
    let p = port(&fin, 1);
    assert_eq!(p["tx_packets"].as_u64(), Some(n as u64), "{fin}");
    assert_eq!(p["rx_packets"].as_u64(), Some(n as u64), "{fin}");
    assert_eq!(
        (p["rx_errors"].as_u64(), p["tx_errors"].as_u64()),
        (Some(0), Some(0)),
        "{fin}"
    );
}

#[test]
fn io_forward_through_testpmd_byte_exact_with_chains() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif io through testpmd") {
        return;
    }
    // bsize 512: frames above it travel as descriptor chains both ways;
    // 8192-slot rings hold the whole corpus, so testpmd (which drops what it
    // cannot send at once) never finds a full ring.
    io_through_testpmd("iot", 3000, "bsize=512,rsize=13", &[]);
}

#[test]
fn io_forward_through_testpmd_xfwd_zero_copy_client() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif zero-copy io through testpmd") {
        return;
    }
    // Region 1 is xfwd's mbuf pool (memfd hugepages): descriptors point
    // into mbufs both ways, xfwd copies no packet byte.
    io_through_testpmd(
        "izc",
        2000,
        "zero_copy=1,rsize=12",
        &["--mem-backing", "memfd"],
    );
}

#[test]
fn zero_copy_needs_a_shareable_pool() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif zero-copy refusal") {
        return;
    }
    let x = xfwd(
        &[format!(
            "memif:role=client,socket={},zero_copy=1",
            sock("zr")
        )],
        &[
            "--forward-mode",
            "rxonly",
            "--mem-backing",
            "anon",
            "--duration",
            "1",
        ],
    );
    let (code, out) = x.finish(Duration::from_secs(20));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("--mem-backing memfd|hugetlbfs"), "{out}");
}

#[test]
fn io_forward_through_xfwd_byte_exact_testpmd_zero_copy_client() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif io through xfwd") {
        return;
    }
    let (s, inp, out, frames) = pcap_case("iox", 2000);
    let x = xfwd(
        &[format!("memif:role=server,socket={s},id=4")],
        &[IO[0], IO[1], IO[2], IO[3], "--duration", "6"],
    );
    wait_listening(&s, &x);
    // testpmd's own zero-copy client: descriptors point into its mempool
    // (several regions, one file each); xfwd maps and checks them all.
    let tp = testpmd_eal(
        "iox",
        &["--in-memory", "--single-file-segments"],
        &[
            format!(
                "net_pcap0,rx_pcap={},tx_pcap={}",
                inp.display(),
                out.display()
            ),
            format!("net_memif0,role=client,socket={s},id=4,zero-copy=yes,rsize=12"),
        ],
        "io",
        // Its zero-copy RX ring holds 4096 of its own mbufs.
        &["--no-flush-rx", "--total-num-mbufs=32768"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_pcap_count(&out) < frames.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stop_testpmd(tp);
    assert!(
        x.text().contains("connected to client `DPDK 22.11"),
        "{}",
        x.text()
    );
    assert_same(
        &read_pcap(&out),
        &frames,
        "testpmd pcap → memif → xfwd io → memif → pcap",
    );
    let (fin, _) = xfwd_final(x, Duration::from_secs(20));
    let p = port(&fin, 0);
    assert_eq!(
        (p["rx_packets"].as_u64(), p["tx_packets"].as_u64()),
        (Some(2000), Some(2000)),
        "{p}"
    );
}

/// Frames in a pcap file being written (0 while it is missing or short).
fn read_pcap_count(p: &Path) -> usize {
    let Ok(d) = std::fs::read(p) else { return 0 };
    let mut at = 24;
    let mut n = 0;
    while at + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
        if at <= d.len() {
            n += 1;
        }
    }
    n
}

#[test]
fn xfwd_to_xfwd_byte_exact_and_counts() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif xfwd <-> xfwd") {
        return;
    }
    let (s, inp, out, frames) = pcap_case("xx", 4000);
    // B bounces everything back (io on its one port) until its duration ends.
    let b = xfwd(
        &[format!("memif:role=server,socket={s},id=5,rsize=9")],
        &[IO[0], IO[1], IO[2], IO[3], "--duration", "8"],
    );
    wait_listening(&s, &b);
    let a = xfwd(
        &[
            format!("pcap:rx={},tx={}", inp.display(), out.display()),
            format!("memif:role=client,socket={s},id=5,rsize=9,bsize=1024"),
        ],
        &[IO[0], IO[1], IO[2], IO[3], "--duration", "20"],
    );
    let (fa, _) = xfwd_final(a, Duration::from_secs(40));
    assert_same(
        &read_pcap(&out),
        &frames,
        "xfwd pcap → memif → xfwd io → memif → pcap",
    );
    let (fb, logb) = xfwd_final(b, Duration::from_secs(20));
    assert!(logb.contains("connected to client `xfwd memif5`"), "{logb}");
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let (pa, pb) = (port(&fa, 1), port(&fb, 0));
    assert_eq!(pa["tx_packets"].as_u64(), Some(4000), "{pa}");
    assert_eq!(pb["rx_packets"].as_u64(), Some(4000), "{pb}");
    assert_eq!(pb["tx_bytes"].as_u64(), Some(bytes), "{pb}");
    assert_eq!(pa["rx_bytes"].as_u64(), Some(bytes), "{pa}");
}

#[test]
fn testpmd_killed_mid_run_and_restarted_xfwd_reconnects() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !env_ok("memif peer SIGKILL") {
        return;
    }
    let s = sock("kill");
    let x = xfwd(
        &[format!("memif:role=server,socket={s},id=6")],
        &["--forward-mode", "rxonly", "--duration", "7"],
    );
    wait_listening(&s, &x);
    let vdev = [format!("net_memif0,role=client,socket={s},id=6")];
    let tp = testpmd("kill1", &vdev, "txonly", &[]);
    std::thread::sleep(Duration::from_millis(700));
    tp.signal(libc::SIGKILL);
    let _ = tp.finish(Duration::from_secs(5));
    x.wait_for(
        "gone: the peer closed the connection",
        Duration::from_secs(5),
    );
    let tp = testpmd("kill2", &vdev, "txonly", &[]);
    std::thread::sleep(Duration::from_millis(700));
    let tout = stop_testpmd(tp);
    assert!(accumulated(&tout, "TX-packets") > 0, "{tout}");
    let (fin, log) = xfwd_final(x, Duration::from_secs(20));
    assert_eq!(log.matches("connected to client `DPDK").count(), 2, "{log}");
    assert!(port(&fin, 0)["rx_packets"].as_u64().unwrap() > 0, "{fin}");
}
