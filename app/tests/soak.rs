//! The soak: one xfwd run with several port kinds at once, every one behind
//! a `fault:` wrapper, over a pool small enough to run dry, for
//! `XFWD_SOAK_SECONDS` (default 90; `scripts/soak --minutes N` runs longer):
//!
//! ```text
//! pcap loop ⇄ af_packet sk0 ~veth~ sk1 af_xdp ⇄ ring:soak ═ ring:soak ⇄ pcap loop
//!   port 0        port 1             port 2        port 3       port 4      port 5
//! ```
//!
//! (paired topology: 0↔1, 2↔3, 4↔5; both pcap ports replay forever and
//! discard what they are sent, so every port receives and transmits.)
//! Required: RSS and open fds of the xfwd process, sampled every 3 s from
//! /proc, flat after the warm-up; the leak audit 0; the counters add up;
//! every fault kind and the pool's exhaustion happened; nothing is left
//! behind. Then SIGKILL at random points of short runs, and nothing is left
//! behind either: no XDP program on the veth, no hugetlbfs file or page, no
//! live socket. Root, `ip` and hugepages needed (CI has them; elsewhere
//! the tests skip).

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::*;
use xfwd_mempool::caps;

/// Pages of the test's own hugetlbfs mount (its `size=` makes statfs count
/// exactly the pages xfwd's files hold, whatever other processes do).
const MOUNT_PAGES: u64 = 16;
/// Small enough to run dry: AF_XDP's fill ring alone takes `rxd` = 256.
const NB_MBUFS: u32 = 640;
/// RSS growth allowed after the warm-up (allocator noise, stdout buffers).
const RSS_SLACK_KB: u64 = 2048;
const FAULTS: &str = "rx_drop=0.01,rx_corrupt=0.01,rx_truncate=0.01,rx_short=0.1,tx_full=0.05";

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_hugepages_2m(MOUNT_PAGES, what)
}

/// Everything one test creates, removed on drop (also when it fails): the
/// netns with its veth, the hugetlbfs mount, the temporary files.
struct Rig {
    ns: Netns,
    dir: PathBuf,
    mount: PathBuf,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let ns = Netns::new(tag);
        ns.veth("sk0", &ns, "sk1");
        let dir = std::env::temp_dir().join(format!("xfwd-{tag}-{}", std::process::id()));
        let mount = dir.join("huge");
        mount_hugetlbfs(&mount, MOUNT_PAGES * 2);
        let rig = Rig { ns, dir, mount };
        let frames: Vec<Vec<u8>> = (0..64u32)
            .map(|i| {
                let len = 60 + (i as usize * 37) % 1400;
                let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
                f.extend((14..len).map(|j| (i as usize + j) as u8));
                f
            })
            .collect();
        write_pcap(&rig.dir.join("in.pcap"), &frames);
        rig
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The soak's configuration, written to a file.
    fn config(&self) -> PathBuf {
        let cpu = std::thread::available_parallelism().map_or(1, |n| n.get() - 1);
        let pcap = format!(
            "pcap:rx={},loop=infinite",
            self.dir.join("in.pcap").display()
        );
        let inner = [
            pcap.as_str(),
            "af_packet:iface=sk0",
            "af_xdp:iface=sk1,mode=skb",
            "ring:soak",
            "ring:soak",
            pcap.as_str(),
        ];
        let mut t = format!(
            "[memory]\nbacking = \"hugetlbfs\"\nhugetlbfs_dir = \"{}\"\n\
             [pool]\nnb_mbufs = {NB_MBUFS}\nmbcache = 32\n\
             [fwd]\nforward_mode = \"io\"\nlcores = \"{cpu}\"\nrxd = 256\ntxd = 256\n\
             [stats]\nperiod = 0.0\njson = true\n",
            self.mount.display()
        );
        for (i, d) in inner.iter().enumerate() {
            t += &format!("[[port]]\ndevargs = \"fault:seed={i},{FAULTS},inner={d}\"\n");
        }
        let p = self.dir.join("soak.toml");
        std::fs::write(&p, t).expect("write config");
        p
    }

    /// xfwd in the netns (`ip netns exec` execs it: the child's PID is
    /// xfwd's), stderr to a file.
    fn spawn(&self, duration: u64) -> Child {
        let err = std::fs::File::create(self.dir.join("stderr.txt")).expect("stderr file");
        Command::new("ip")
            .args(["netns", "exec", self.ns.name(), env!("CARGO_BIN_EXE_xfwd")])
            .arg("--config")
            .arg(self.config())
            .arg("--telemetry")
            .arg(self.sock())
            .args(["--duration", &duration.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn xfwd")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// Nothing of an ended run left: no XDP program on sk1, every page of
    /// the mount free and no file on it (the kernel frees a killed
    /// process's pages as it reaps it: up to 5 s), no live socket.
    fn assert_nothing_left(&self, what: &str) {
        assert!(
            self.ns.xdp_detached_within("sk1", Duration::from_secs(5)),
            "{what}: XDP program left on sk1"
        );
        assert_hugetlbfs_empty(&self.mount, what);
        // A SIGKILLed process cannot unlink its socket: the file may stay,
        // but nothing serves it (the next run replaces it).
        assert!(
            std::os::unix::net::UnixStream::connect(self.sock()).is_err(),
            "{what}: the control socket still answers"
        );
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    /// The kernel's counters of `dev`: frames received (before XDP),
    /// transmitted, and dropped on transmit (a veth drops what its peer
    /// cannot take).
    fn link_stats(&self, dev: &str) -> Kernel {
        let o = self.ns.ip(&["-j", "-s", "link", "show", "dev", dev]);
        let v: Value = serde_json::from_slice(&o.stdout).expect("ip -j link");
        let s = &v[0]["stats64"];
        Kernel {
            rx: n(&s["rx"]["packets"]),
            tx: n(&s["tx"]["packets"]),
            tx_dropped: n(&s["tx"]["dropped"]),
        }
    }
}

/// A veth end's kernel counters.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    rx: u64,
    tx: u64,
    tx_dropped: u64,
}

/// (VmRSS in KiB, open fds) of a live process.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// Wait (bounded) for the child's exit; its stdout.
fn finish(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xfwd did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().expect("stdout reader"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn soak_seconds() -> u64 {
    std::env::var("XFWD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90)
}

#[test]
fn soak_under_faults_stays_flat_and_accounts_for_every_packet() {
    let what = "soak under faults";
    if !env_ok(what) {
        return;
    }
    let secs = soak_seconds().max(20);
    let rig = Rig::new("soak");
    let sock = rig.sock();
    // The run is ended by `quit`; --duration only bounds a lost test.
    let child = rig.spawn(secs + 120);
    let pid = child.id();
    let t0 = Instant::now();
    // Connected once, before the first sample (its fd counts in every one).
    let mut ctl = TelemetryClient::connect(&sock, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no control socket:\n{}", rig.stderr()));
    // Sample every 3 s; the first quarter (at least 15 s) is warm-up
    // (caches, the kernel rings, the stats' first allocations).
    let warm = Duration::from_secs((secs / 4).max(15));
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(3));
        let s = sample(pid).unwrap_or_else(|| panic!("xfwd died:\n{}", rig.stderr()));
        samples.push((t0.elapsed().as_secs_f64(), s.0, s.1));
    }
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= warm.as_secs_f64())
        .copied()
        .collect();
    assert!(
        after.len() >= 2,
        "too few samples after warm-up: {samples:?}"
    );
    let (rss0, fd0) = (after[0].1, after[0].2);
    let rss_max = after.iter().map(|s| s.1).max().unwrap();
    let fd_set: Vec<usize> = after.iter().map(|s| s.2).collect();
    eprintln!(
        "{what}: {} samples; RSS {} KiB at warm-up end, max {rss_max} KiB after; fds {fd_set:?}",
        samples.len(),
        rss0
    );
    assert!(
        rss_max <= rss0 + RSS_SLACK_KB,
        "RSS grew {} KiB after warm-up (allowed {RSS_SLACK_KB}): {samples:?}",
        rss_max - rss0
    );
    assert!(
        fd_set.iter().all(|&f| f == fd0),
        "open fds changed after warm-up: {samples:?}"
    );

    // Park the lcores (the fault counters freeze), read them, end the run.
    let stopped = ctl.ask("stop");
    assert!(stopped.get("error").is_none(), "stop: {stopped}");
    let xs = ctl.ask("show port xstats all")["data"].clone();
    assert!(xs.is_array(), "xstats: {xs}");
    let bye = ctl.ask("quit");
    assert!(bye.get("error").is_none(), "quit: {bye}");
    let (status, stdout) = finish(child, Duration::from_secs(60));
    let err = rig.stderr();
    assert!(status.success(), "xfwd exit {status:?}:\n{err}");
    let j: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "final")
        .unwrap_or_else(|| panic!("no final JSON:\n{stdout}\n{err}"));
    assert_eq!(j["leaked_mbufs"], 0, "leak audit: {j}");
    assert_eq!(j["mempool"]["in_use"], 0, "{}", j["mempool"]);
    assert!(
        j["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{}",
        j["errors"]
    );
    let veth = [rig.link_stats("sk0"), rig.link_stats("sk1")];
    account(&j, &xs, veth);
    rig.assert_nothing_left("after the soak");
    assert!(!sock.exists(), "the control socket file stayed after quit");
}

/// The counters add up: per port, what the inner port received = what the
/// streams got + what the fault wrapper dropped, and what the streams
/// handed to a port = what it sent + its TX errors; over the run, what the
/// streams got = what was sent + what was dropped (io mode drops for one
/// reason: a full TX queue, `fwd.tx_dropped`). Across the ring pair, what
/// arrived (+ `rx_missed`) is what was sent, less at most `IN_FLIGHT`
/// left in the ring at stop. Across the veth, by the kernel's counters:
/// what xfwd sent is what the sending end transmitted or dropped (up to
/// `IN_FLIGHT` in flight at stop), the other end received what was
/// transmitted, and xfwd received (+ `rx_missed`) at most that; the rest
/// was dropped between the device and the socket (AF_XDP's and
/// AF_PACKET's kernel drops; AF_XDP reads them every 4096 polls and once
/// more at close, so what stays unseen is what sat in its RX ring at stop).
fn account(j: &Value, xs: &Value, veth: [Kernel; 2]) {
    const IN_FLIGHT: u64 = 512;
    let ports = j["ports"].as_array().expect("ports");
    let xstat = |p: usize, k: &str| n(&xs[p]["xstats"][k]);
    let (mut rx, mut tx, mut dropped, mut nombuf) = (0, 0, 0, 0);
    for (i, p) in ports.iter().enumerate() {
        let f = &p["fwd"];
        assert_eq!(
            n(&p["rx_packets"]),
            n(&f["rx_packets"]) + xstat(i, "fault_rx_dropped"),
            "port {i}: received ≠ forwarded + fault drops: {p}"
        );
        assert_eq!(
            n(&f["tx_packets"]),
            n(&p["tx_packets"]) + n(&p["tx_errors"]),
            "port {i}: handed to TX ≠ sent + TX errors: {p}"
        );
        for k in [
            "fault_rx_dropped",
            "fault_rx_corrupted",
            "fault_rx_truncated",
            "fault_rx_short_bursts",
            "fault_tx_full_bursts",
        ] {
            assert!(xstat(i, k) > 0, "port {i}: no {k} in {}", xs[i]);
        }
        assert!(
            f["drops"].as_object().is_some_and(|d| d.is_empty()),
            "port {i}: io mode dropped for a reason besides a full TX: {f}"
        );
        rx += n(&f["rx_packets"]);
        tx += n(&f["tx_packets"]);
        dropped += n(&f["tx_dropped"]);
        nombuf += n(&p["rx_nombuf"]);
    }
    assert_eq!(
        rx,
        tx + dropped,
        "streams: rx ≠ tx + tx_dropped: {}",
        j["accumulated"]
    );
    let sent = |i: usize| n(&ports[i]["tx_packets"]);
    let got = |i: usize| n(&ports[i]["rx_packets"]) + n(&ports[i]["rx_missed"]);
    for (from, to) in [(3, 4), (4, 3)] {
        let (s, g) = (sent(from), got(to));
        assert!(
            g <= s && s - g <= IN_FLIGHT,
            "ring: port {from} sent {s}, port {to} received {g} (+ missed)"
        );
    }
    // (xfwd port sending, its veth end, the other end, xfwd port receiving)
    let mut unseen = Vec::new();
    for (from, out, inn, to) in [(1, veth[0], veth[1], 2), (2, veth[1], veth[0], 1)] {
        let (s, g) = (sent(from), got(to));
        let kernel_out = out.tx + out.tx_dropped;
        assert!(
            s.abs_diff(kernel_out) <= IN_FLIGHT && inn.rx <= out.tx && g <= inn.rx,
            "veth: port {from} sent {s}, its end sent {} and dropped {}, the other end \
             received {}, port {to} received {g} (+ missed)",
            out.tx,
            out.tx_dropped,
            inn.rx
        );
        unseen.push(inn.rx - g);
    }
    assert!(nombuf > 0, "the pool never ran dry: {j}");
    assert!(
        tx > 100_000,
        "the soak barely forwarded: {}",
        j["accumulated"]
    );
    eprintln!(
        "soak: {rx} received by the streams = {tx} sent + {dropped} dropped (TX full); \
         {nombuf} RX allocations failed on the dry pool; veth drops on transmit \
         (sk0, sk1) {}/{}; received by a veth end but neither by xfwd nor in its \
         rx_missed (sk1, sk0): {unseen:?}",
        veth[0].tx_dropped, veth[1].tx_dropped
    );
}

/// SIGKILL at random points (start-up, pool population, XDP attach,
/// forwarding) of short runs: each time nothing is left behind; then a clean
/// run on the same socket path starts, forwards with leak audit 0 and
/// removes its socket.
#[test]
fn sigkill_at_random_points_leaves_nothing_behind() {
    let what = "soak SIGKILL loop";
    if !env_ok(what) {
        return;
    }
    let rig = Rig::new("kill");
    let seed = std::env::var("XFWD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{what}: XFWD_SOAK_SEED={seed}");
    let mut x = seed | 1;
    let mut delays = Vec::new();
    for round in 0..10 {
        // xorshift: kill after 0..2.5 s (start-up takes ~0.5-1 s here).
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ms = x % 2500;
        let mut child = rig.spawn(30);
        std::thread::sleep(Duration::from_millis(ms));
        let alive = child.try_wait().expect("wait").is_none();
        assert!(alive, "round {round}: xfwd ended early:\n{}", rig.stderr());
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        rig.assert_nothing_left(&format!("round {round}, SIGKILL after {ms} ms"));
        delays.push(ms);
    }
    eprintln!("{what}: killed after {delays:?} ms; nothing left behind");
    let child = rig.spawn(3);
    let (status, stdout) = finish(child, Duration::from_secs(60));
    assert!(status.success(), "clean run: {status:?}\n{}", rig.stderr());
    assert!(stdout.contains("\"leaked_mbufs\":0"), "{stdout}");
    rig.assert_nothing_left("after a clean run");
    assert!(!rig.sock().exists(), "the clean run left its socket file");
}
