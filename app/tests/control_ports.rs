//! `port stop N` / `port start N` end to end: the driver really stops (the
//! lcores give its queues back, every mbuf it held returns to the pool: the
//! pool is whole with every port stopped), the statistics say so and add up
//! across the stop/start (and a `port config` of the stopped port's ring
//! sizes), and forwarding resumes after `port start`. On the
//! ring demo and on AF_PACKET ports over a veth pair in a namespace the test
//! creates. Also the capture's reconciliation: the frames it took, skipped
//! and saw past its count are exactly the port's counter delta of its
//! window. About 3 s of test time (plus ~4 s for the veth test as root).

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::ctl::*;

/// Port `id`'s counters over the socket.
fn port_stats(sock: &Path, id: u16) -> Value {
    ctl_json(sock, &format!("show port stats {id}"))[0].clone()
}

/// A command that must succeed; its text.
fn cmd(sock: &Path, words: &str) -> String {
    let (ok, so, se) = ctl(sock, words);
    assert!(ok, "xfwd ctl {words}: {se}");
    so
}

/// Wait (bounded) until port `id` received more than `than`.
fn rx_beyond(sock: &Path, id: u16, than: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rx = n(&port_stats(sock, id)["rx_packets"]);
        if rx > than {
            return rx;
        }
        assert!(Instant::now() < deadline, "port {id}: no RX beyond {than}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `port stop all` with forwarding stopped: the pool is whole, the ports
/// say stopped; then `port start all` and forwarding resumes.
fn stop_all_then_resume(sock: &Path, start: &str) {
    let (ok, _, se) = ctl(sock, "port stop 0");
    assert!(!ok && se.contains("needs forwarding stopped"), "{se}");
    let (ok, _, se) = ctl(sock, "port config 0 rxd 512");
    assert!(!ok && se.contains("port 0 must be stopped first"), "{se}");
    assert!(cmd(sock, "stop").contains("Done."));
    let r = cmd(sock, "port stop all");
    assert!(r.contains("Port 1: stopped"), "{r}");
    // (A driver may complete TX it held back while stopping: counted now.)
    let before: Vec<Value> = (0..2).map(|i| port_stats(sock, i)).collect();
    let (ok, _, se) = ctl(sock, "port stop 1");
    assert!(!ok && se.contains("port 1 is already stopped"), "{se}");
    let m = &ctl_json(sock, "show mempool");
    assert_eq!(
        (n(&m["in_use"]), n(&m["available"])),
        (0, n(&m["capacity"])),
        "every mbuf is back in the pool with every port stopped: {m}"
    );
    // A stopped port takes new ring sizes (its counters go on: the final
    // check below still adds up); bad values are refused.
    assert!(cmd(sock, "port config all rxd 512").contains("Port 1: rxd 512"));
    for (bad, want) in [
        ("port config 1 rxd 0", "not a descriptor count"),
        ("port config 1 mtu 9", "rxd or txd expected"),
        ("port config 1 txd 60000", "tx descriptors"),
    ] {
        let (ok, _, se) = ctl(sock, bad);
        assert!(!ok && se.contains(want), "{bad}: {se}");
    }
    let info = &ctl_json(sock, "show port info all");
    assert_eq!(info[0]["started"], false, "{info}");
    assert_eq!(info[1]["rx_desc"], 512, "{info}");
    assert_eq!(port_stats(sock, 1)["started"], false);
    // Forwarding with every port stopped moves nothing.
    cmd(sock, "start");
    std::thread::sleep(Duration::from_millis(200));
    cmd(sock, "stop");
    for (i, b) in before.iter().enumerate() {
        let now = port_stats(sock, i as u16);
        assert_eq!(
            (now["rx_packets"].clone(), now["tx_packets"].clone()),
            (b["rx_packets"].clone(), b["tx_packets"].clone()),
            "port {i} moved frames while stopped"
        );
    }
    let r = cmd(sock, "port start all");
    assert!(r.contains("Port 0: started"), "{r}");
    let (ok, _, se) = ctl(sock, "port start 0");
    assert!(!ok && se.contains("port 0 is already started"), "{se}");
    assert_eq!(port_stats(sock, 0)["started"], true);
    cmd(sock, start);
    rx_beyond(sock, 1, n(&before[1]["rx_packets"]));
}

/// The run's final JSON: no leak, and the port counters (which survived
/// the stop/start) are what the streams counted over the whole run.
fn check_final(out: &str) -> Value {
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(f["leaked_mbufs"], 0, "{f}");
    for p in f["ports"].as_array().unwrap() {
        assert_eq!(p["rx_packets"], p["fwd"]["rx_packets"], "{p}");
    }
    f
}

#[test]
fn port_stop_stops_the_ring_driver_and_port_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &["--duration", "60", "--tx-rate", "20k"]);
    wait_socket(&sock);
    rx_beyond(&sock, 1, 0);
    stop_all_then_resume(&sock, "start");
    // One port stopped: the streams using it are not polled; port 0's
    // generator stream stops sending (its TX port is stopped).
    cmd(&sock, "stop");
    cmd(&sock, "port stop 1");
    let tx0 = n(&port_stats(&sock, 0)["tx_packets"]);
    cmd(&sock, "start");
    std::thread::sleep(Duration::from_millis(200));
    cmd(&sock, "stop");
    assert!(
        n(&port_stats(&sock, 0)["tx_packets"]) > tx0,
        "port 0 still sends"
    );
    cmd(&sock, "port start 1");
    cmd(&sock, "start");
    cmd(&sock, "quit");
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    check_final(&out);
}

#[test]
fn port_stop_stops_af_packet_ports_on_veth_and_port_start_resumes() {
    let what = "port stop/start on af_packet";
    if !xfwd_mempool::caps::require_root(what) || !xfwd_mempool::caps::require_tool("ip", what) {
        return;
    }
    let ns = support::netns::Netns::new("ctlp");
    ns.veth("cp0", &ns, "cp1");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    // io between the two ends of one veth pair: `--tx-first` (and later
    // `start tx_first`) puts a burst in the loop, which circulates until
    // `stop`.
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_xfwd")])
        .args([
            "--no-huge",
            "--tx-first",
            "--port",
            "af_packet:iface=cp0",
            "--port",
            "af_packet:iface=cp1",
            "--forward-mode",
            "io",
            "-l",
            "0",
            "--json",
            "--stats-period",
            "0",
            "--duration",
            "60",
            "--telemetry",
        ])
        .arg(&sock)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn xfwd");
    wait_socket(&sock);
    rx_beyond(&sock, 1, 0);
    stop_all_then_resume(&sock, "start tx_first");
    cmd(&sock, "quit");
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    check_final(&out);
    drop(ns);
}

/// A capture attached and detached while forwarding is stopped holds
/// exactly the port's RX counter delta of its window: taken + skipped (the
/// count is not reached, so nothing is past it).
#[test]
fn a_capture_between_stops_accounts_for_every_frame_the_port_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &["--duration", "60", "--tx-rate", "20k"]);
    wait_socket(&sock);
    rx_beyond(&sock, 1, 0);
    cmd(&sock, "stop");
    let a = n(&port_stats(&sock, 1)["rx_packets"]);
    // The raw socket: `xfwd ctl capture` would wait for the capture's end.
    let mut t = support::TelemetryClient::connect(&sock, Duration::from_secs(5)).unwrap();
    let file = dir.path().join("w.pcapng");
    let r = t.ask(&format!(
        "capture 1 rx --count 10000000 -w {}",
        file.display()
    ));
    assert_eq!(r["data"]["done"], false, "{r}");
    cmd(&sock, "start");
    rx_beyond(&sock, 1, a + 2000);
    cmd(&sock, "stop");
    let b = n(&port_stats(&sock, 1)["rx_packets"]);
    cmd(&sock, "capture stop");
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = t.ask("show capture")["data"].clone();
        if v["done"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "capture not done: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    check_capture_window(&v);
    assert_eq!(n(&v["window"]["rx"]), b - a, "{v}");
    assert_eq!(n(&v["taken"]) + n(&v["skipped"]), b - a, "{v}");
    assert_eq!(n(&v["past_count"]), 0, "{v}");
    assert_eq!(n(&v["written"]), n(&v["taken"]), "{v}");
    cmd(&sock, "quit");
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    check_final(&out);
}
