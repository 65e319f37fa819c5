//! Kernel ports that vanish under a running `xfwd`: two forwarding pairs on
//! veth in network namespaces the test creates, one af_xdp and one
//! af_packet,
//!
//! ```text
//! gen: g0 ⇄ d0 ─[xfwd io: port 0 ⇄ port 1]─ d1 ⇄ s1 :sink      (pair A)
//! gen: g2 ⇄ d2 ─[xfwd io: port 2 ⇄ port 3]─ d3 ⇄ s3 :sink      (pair B)
//! ```
//!
//! and `d1` deleted mid-run (or deleted and created again under the same
//! name). Port 1 must read lost in the JSON (by its index: the new `d1` is
//! another device), the frames port 0 still receives must be counted as TX
//! drops, and every mbuf must come back (leak audit 0). With
//! `--on-link-loss continue` pair B keeps forwarding (the sink's count
//! grows after the delete); with `exit` xfwd stops at once and exits 1
//! naming the port and the interface.
//!
//! Root, `ip` and hugepages needed (CI has them; elsewhere the tests skip).
//! The runs share the machine's CPUs, so they take turns (a lock); the file
//! costs about 20–25 s.

#[path = "../../pmd/tests/support/mod.rs"]
mod support;
#[path = "support/topo.rs"]
mod topo;

use serde_json::Value;
use std::io::Read;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::packet::{test_frame, PacketSocket};
use topo::Topo;
use xfwd_mempool::caps;
use xfwd_pmd::netdev;

/// One xfwd at a time: each busy-polls a CPU.
static TURN: Mutex<()> = Mutex::new(());

/// The environment is there (else the test skips) and it is this test's
/// turn (held until the guard drops).
fn turn(what: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    env_ok(what).then(|| TURN.lock().unwrap_or_else(|p| p.into_inner()))
}

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_hugepages_2m(48, what)
}

fn topo() -> Topo {
    Topo::new("l", &[["g0", "d0", "d1", "s1"], ["g2", "d2", "d3", "s3"]])
}

/// The devargs of a pair's two ports on `a`, `b`.
fn pair(driver: &str, a: &str, b: &str) -> [String; 2] {
    [format!("{driver}:iface={a}"), format!("{driver}:iface={b}")]
}

/// A running xfwd (its output read by threads, so it never blocks on a pipe).
struct Xfwd {
    child: Child,
    out: Option<std::thread::JoinHandle<(Vec<u8>, Vec<u8>)>>,
}

struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Xfwd {
    fn spawn(t: &Topo, ports: &[String], policy: &str, secs: u32) -> Xfwd {
        let secs = secs.to_string();
        let args = [
            "--forward-mode",
            "io",
            "-l",
            "1",
            "--stats-period",
            "0.5",
            "--json",
            "--nb-mbufs",
            "16384",
            "--on-link-loss",
            policy,
            "--duration",
            &secs,
        ];
        let mut child = t
            .xfwd(ports, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xfwd");
        let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = std::thread::spawn(move || {
            let e = std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = se.read_to_end(&mut v);
                v
            });
            let mut v = Vec::new();
            let _ = so.read_to_end(&mut v);
            (v, e.join().unwrap())
        });
        Xfwd {
            child,
            out: Some(out),
        }
    }

    /// Stop the run with SIGINT (through `ip netns exec`, which exec'd
    /// xfwd): it must exit 0 with every mbuf back; its output and final
    /// JSON.
    fn interrupt(self, what: &str) -> (Done, Value) {
        let pid = self.child.id().to_string();
        support::netns::run_cmd("kill", &["-INT", &pid]);
        let done = self.wait(Duration::from_secs(20));
        assert!(done.status.success(), "{what}: {done}");
        let j = done.final_json();
        assert_eq!(j["leaked_mbufs"], 0, "{what}: leak audit: {j}");
        (done, j)
    }

    /// Wait (at most `limit`) for xfwd to exit; killed (by its PID) past it.
    fn wait(mut self, limit: Duration) -> Done {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("xfwd did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (o, e) = self.out.take().unwrap().join().unwrap();
        Done {
            status,
            stdout: String::from_utf8_lossy(&o).into_owned(),
            stderr: String::from_utf8_lossy(&e).into_owned(),
        }
    }
}

impl Drop for Xfwd {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Done {
    fn lines(&self) -> impl Iterator<Item = Value> + '_ {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    }

    fn final_json(&self) -> Value {
        self.lines()
            .find(|v| v["type"] == "final")
            .unwrap_or_else(|| panic!("no final JSON from xfwd: {self}"))
    }
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Test frames into g0 and g2 (~1 kpps each), and counters of what the
/// sinks s1 and s3 receive, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    s1_stop: Arc<AtomicBool>,
    s1: Arc<AtomicU64>,
    s3: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(t: &Topo) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let s1_stop = Arc::new(AtomicBool::new(false));
        let (s1, s3) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (g0, g2, g_mac, d0_mac, d2_mac) = t.gen.run(|| {
            (
                PacketSocket::bind(netdev::ifindex("g0").unwrap()),
                PacketSocket::bind(netdev::ifindex("g2").unwrap()),
                netdev::mac("g0").unwrap(),
                t.dut.run(|| netdev::mac("d0").unwrap()),
                t.dut.run(|| netdev::mac("d2").unwrap()),
            )
        });
        let (r1, r3) = t.sink.run(|| {
            (
                PacketSocket::bind(netdev::ifindex("s1").unwrap()),
                PacketSocket::bind(netdev::ifindex("s3").unwrap()),
            )
        });
        let mut threads = Vec::new();
        let st = stop.clone();
        threads.push(std::thread::spawn(move || {
            // Bounded: at most 60 s worth of frames even if nobody stops it.
            for seq in 0..60_000u32 {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                g0.send(&test_frame(d0_mac, g_mac, seq, 100));
                g2.send(&test_frame(d2_mac, g_mac, seq, 100));
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
        for (sock, count, flag) in [
            (r1, s1.clone(), s1_stop.clone()),
            (r3, s3.clone(), stop.clone()),
        ] {
            let all = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) && !all.load(Ordering::Relaxed) {
                    let n = sock.recv_frames(64, Duration::from_millis(50)).len();
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        Traffic {
            stop,
            s1_stop,
            s1,
            s3,
            threads,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.s1.load(Ordering::Relaxed),
            self.s3.load(Ordering::Relaxed),
        )
    }

    /// Wait until both pairs forward (xfwd is up), at most 20 s.
    fn wait_flowing(&self, x: &mut Xfwd) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let (a, b) = self.counts();
            if a >= 20 && b >= 20 {
                return;
            }
            if let Ok(Some(s)) = x.child.try_wait() {
                panic!("xfwd exited ({s}) before forwarding");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no traffic through both pairs within 20 s: {:?}",
            self.counts()
        );
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Port `i` of the final report.
fn port(j: &Value, i: usize) -> &Value {
    &j["ports"][i]
}

fn assert_lost(j: &Value, i: usize, what: &str) {
    let p = port(j, i);
    assert_eq!(
        p["link_up"], false,
        "{what}: port {i} should read down: {p}"
    );
    assert_eq!(p["link"], "lost", "{what}: port {i} should read lost: {p}");
}

/// Pair A (d0→d1) on `a_driver`, pair B (d2→d3) on `b_driver`, run under
/// `policy` for at most `secs`: once both pairs forward, s1's sender stops
/// and `d1` is deleted.
fn delete_d1_mid_run(
    a_driver: &str,
    b_driver: &str,
    policy: &str,
    secs: u32,
) -> (Topo, Xfwd, Traffic) {
    let t = topo();
    let mut ports = pair(a_driver, "d0", "d1").to_vec();
    ports.extend(pair(b_driver, "d2", "d3"));
    let mut x = Xfwd::spawn(&t, &ports, policy, secs);
    let traffic = Traffic::start(&t);
    traffic.wait_flowing(&mut x);
    traffic.s1_stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    t.dut.ip(&["link", "delete", "d1"]);
    (t, x, traffic)
}

/// Pair A on `a_driver` loses `d1` mid-run under `continue`: port 1 reads
/// lost, port 0's frames towards it are counted as TX drops, pair B keeps
/// forwarding, the run ends at its --duration with exit 0 and no leak.
fn continue_case(a_driver: &str, b_driver: &str) {
    let what = format!("{a_driver} port deleted, {b_driver} pair continues");
    let Some(_turn) = turn(&what) else {
        return;
    };
    let (t, x, traffic) = delete_d1_mid_run(a_driver, b_driver, "continue", 30);
    // Link checks run every 250 ms; then count what pair B forwards.
    std::thread::sleep(Duration::from_millis(600));
    let (_, b0) = traffic.counts();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, b1) = traffic.counts();
    drop(traffic);
    let (done, j) = x.interrupt(&what);
    assert_lost(&j, 1, &what);
    for i in [0, 2, 3] {
        assert_eq!(port(&j, i)["link_up"], true, "{what}: port {i}: {j}");
    }
    assert!(
        b1 > b0 + 20,
        "{what}: pair B stopped forwarding after the delete ({b0} → {b1} frames at the sink)"
    );
    let dropped = port(&j, 1)["fwd"]["tx_dropped"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "{what}: frames for the lost port must be counted as TX drops: {j}"
    );
    // A period line after the delete shows it down too.
    let last_period = done
        .lines()
        .filter(|v| v["type"] == "period")
        .last()
        .expect("period lines");
    assert_eq!(last_period["ports"][1]["link_up"], false, "{last_period}");
    assert!(
        done.stderr.contains("port 1 (") && done.stderr.contains("link lost: interface d1 is gone"),
        "{what}: no clear message: {}",
        done.stderr
    );
    assert!(
        !t.dut.has_link("d1"),
        "{what}: d1 should be gone for the rest of the test"
    );
    if a_driver == "af_xdp" {
        assert!(t.dut.xdp_detached_within("d0", Duration::from_secs(3)));
    }
    eprintln!(
        "{what}: pair B forwarded {} frames in the 1.5 s after the delete; {dropped} TX drops on the lost port",
        b1 - b0
    );
}

#[test]
fn af_xdp_port_deleted_mid_run_reads_lost_and_the_af_packet_pair_continues() {
    continue_case("af_xdp", "af_packet");
}

#[test]
fn af_packet_port_deleted_mid_run_reads_lost_and_the_af_xdp_pair_continues() {
    continue_case("af_packet", "af_xdp");
}

/// Under `exit` the delete stops the run at once: exit 1, the message names
/// the port and the interface, the final report is still printed with the
/// port lost and no leak.
fn exit_case(a_driver: &str, b_driver: &str) {
    let what = format!("{a_driver} port deleted, on_link_loss = exit");
    let Some(_turn) = turn(&what) else {
        return;
    };
    // `_t` keeps the namespaces up until the end.
    let (_t, x, traffic) = delete_d1_mid_run(a_driver, b_driver, "exit", 60);
    let deleted = Instant::now();
    let done = x.wait(Duration::from_secs(20));
    let took = deleted.elapsed();
    drop(traffic);
    assert_eq!(done.status.code(), Some(1), "{what}: {done}");
    let msg = format!("port 1 ({a_driver}:iface=d1): link lost: interface d1 is gone");
    assert!(done.stderr.contains(&msg), "{what}: no `{msg}`: {done}");
    assert!(
        done.stderr.contains("on_link_loss = \"exit\""),
        "{what}: {done}"
    );
    let j = done.final_json();
    assert_eq!(j["leaked_mbufs"], 0, "{what}: leak audit: {j}");
    assert_lost(&j, 1, &what);
    let errors = j["errors"].to_string();
    assert!(errors.contains("interface d1 is gone"), "{what}: {errors}");
    assert!(
        took < Duration::from_secs(10),
        "{what}: xfwd took {took:?} to stop after the delete"
    );
    eprintln!("{what}: xfwd exited 1 {took:?} after the delete");
}

#[test]
fn af_xdp_port_deleted_mid_run_with_exit_stops_xfwd_with_status_1() {
    exit_case("af_xdp", "af_packet");
}

#[test]
fn af_packet_port_deleted_mid_run_with_exit_stops_xfwd_with_status_1() {
    exit_case("af_packet", "af_xdp");
}

/// `d1` (af_xdp) and `d3` (af_packet) deleted and created again under the
/// same names while xfwd runs: both ports still read lost (they follow the
/// index they opened, and the new devices have new ones), xfwd attaches
/// nothing to the new `d1`, every mbuf comes back.
#[test]
fn a_new_interface_of_the_same_name_is_not_the_lost_one() {
    let what = "interfaces re-created under the same name";
    let Some(_turn) = turn(what) else {
        return;
    };
    let t = topo();
    let mut ports = pair("af_xdp", "d0", "d1").to_vec();
    ports.extend(pair("af_packet", "d2", "d3"));
    let mut x = Xfwd::spawn(&t, &ports, "continue", 30);
    let traffic = Traffic::start(&t);
    traffic.wait_flowing(&mut x);
    traffic.s1_stop.store(true, Ordering::Relaxed);
    drop(traffic);
    let old = t.dut.run(|| {
        (
            netdev::ifindex("d1").unwrap(),
            netdev::ifindex("d3").unwrap(),
        )
    });
    for (d, s) in [("d1", "s1"), ("d3", "s3")] {
        t.dut.ip(&["link", "delete", d]);
        t.dut.veth(d, &t.sink, s);
    }
    let new = t.dut.run(|| {
        (
            netdev::ifindex("d1").unwrap(),
            netdev::ifindex("d3").unwrap(),
        )
    });
    assert!(old.0 != new.0 && old.1 != new.1, "{old:?} {new:?}");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        t.dut.xdp_attached("d1").is_none(),
        "xfwd must not attach to the new d1"
    );
    let (done, j) = x.interrupt(what);
    assert_lost(&j, 1, what);
    assert_lost(&j, 3, what);
    assert_eq!(port(&j, 0)["link_up"], true, "{j}");
    for d in ["d1", "d3"] {
        let msg = format!("link lost: interface {d} is gone");
        assert!(done.stderr.contains(&msg), "{what}: no `{msg}`: {done}");
    }
}
