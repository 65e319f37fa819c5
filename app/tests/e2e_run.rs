//! The binary end to end on ring and null ports: the built-in demo, JSON
//! stats that add up, hugepage-backed runs that give every page back,
//! telemetry queries, `check`, and a clean stop on SIGINT.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn demo_without_hugepages_prints_stats_latency_and_no_leak() {
    let o = run(
        &["--no-huge", "--duration", "1.2", "--stats-period", "0.5"],
        Duration::from_secs(60),
    );
    let (so, se) = text_ok(&o);
    for want in [
        "NIC statistics for port 0",
        "Accumulated forward statistics for all ports",
        "Latency (",
        "p99.9",
        "lcore 0 txonly",
        "lcore 1 rxonly",
        "memory: heap",
        "0 mbufs leaked",
    ] {
        assert!(so.contains(want), "missing `{want}` in:\n{so}");
    }
    assert!(
        se.contains("xfwd plan (built-in demo)") && se.contains("dma    : port1 mapped va"),
        "{se}"
    );
}

#[test]
fn demo_on_hugepages_json_adds_up_and_returns_every_page() {
    if !xfwd_mempool::caps::require_hugepages_2m(16, "demo on 2M hugepages") {
        return;
    }
    let files_before = hugepage_files();
    let demo = || {
        let o = run(
            &["demo", "--duration", "1", "--json", "--stats-period", "0.5"],
            Duration::from_secs(60),
        );
        let (so, _) = text_ok(&o);
        let lines = json_lines(&o);
        assert!(
            lines.iter().filter(|l| l["type"] == "period").count() >= 1,
            "{so}"
        );
        let f = final_json(&o);
        assert_eq!(f["memory"], "anon 2M pages", "{f}");
        assert_eq!(f["leaked_mbufs"], 0);
        let p0 = &f["ports"][0]["fwd"];
        let p1 = &f["ports"][1]["fwd"];
        assert!(n(&p0["generated"]) > 0);
        assert_eq!(
            n(&p0["generated"]),
            n(&p0["tx_packets"]) + n(&p0["tx_dropped"]),
            "{f}"
        );
        // Everything port0 sent either reached rxonly on port1 or was still in
        // the ring at stop (freed by port.stop): never more.
        assert!(n(&p1["rx_packets"]) <= n(&p0["tx_packets"]), "{f}");
        assert_eq!(n(&p1["rx_packets"]), n(&p1["consumed"]));
        assert!(
            n(&f["latency"]["samples"]) > 0 && n(&f["latency"]["p50_ns"]) > 0,
            "{f}"
        );
        assert_eq!(f["mempool"]["in_use"], 0);
    };
    assert!(hugepages_come_back(3, demo), "hugepages returned");
    let left = hugepage_files_left(&files_before);
    assert!(left.is_empty(), "hugetlbfs files left: {left:?}");
}

#[test]
fn null_io_json_per_period_and_final_add_up() {
    let o = run(
        &[
            "--port",
            "null:size=64",
            "--port",
            "null:size=64",
            "--forward-mode",
            "io",
            "--no-huge",
            "--duration",
            "1",
            "--stats-period",
            "0.25",
            "--json",
            "--burst",
            "64",
        ],
        Duration::from_secs(60),
    );
    let (so, _) = text_ok(&o);
    let lines = json_lines(&o);
    let periods: Vec<_> = lines.iter().filter(|l| l["type"] == "period").collect();
    assert!(periods.len() >= 2, "{so}");
    for p in &periods {
        assert!(n(&p["total"]["rx_pps"]) > 0, "{p}");
        assert_eq!(p["ports"].as_array().unwrap().len(), 2);
        assert!(p["lcores"][0]["busy_pct"].as_f64().is_some());
    }
    let f = final_json(&o);
    let mut rx_total = 0;
    for port in f["ports"].as_array().unwrap() {
        let fw = &port["fwd"];
        assert_eq!(n(&port["rx_packets"]), n(&fw["rx_packets"]), "{f}");
        assert_eq!(n(&port["tx_packets"]), n(&fw["tx_packets"]), "{f}");
        rx_total += n(&fw["rx_packets"]);
    }
    // Paired: what port0 received went out of port1 and the other way round.
    let (a, b) = (&f["ports"][0]["fwd"], &f["ports"][1]["fwd"]);
    assert_eq!(
        n(&a["rx_packets"]),
        n(&b["tx_packets"]) + n(&b["tx_dropped"]),
        "{f}"
    );
    assert_eq!(
        n(&b["rx_packets"]),
        n(&a["tx_packets"]) + n(&a["tx_dropped"]),
        "{f}"
    );
    assert_eq!(n(&f["accumulated"]["fwd"]["rx_packets"]), rx_total);
    assert!(rx_total > 1000);
    assert_eq!(f["leaked_mbufs"], 0);
    assert!(n(&f["lcores"][0]["packets"]) > 0);
}

/// A two-lcore chain on ring ports: lcore A runs txonly into `ring:NAME`
/// (port 0), lcore B forwards (io) from its peer (port 1) into a null sink
/// (port 2) with latency on. `fwd_extra`: more `[fwd]` keys; `tables`:
/// more whole tables.
/// None (with the reason printed) when fewer than two CPUs are allowed.
fn ring_chain_config(
    dir: &std::path::Path,
    name: &str,
    fwd_extra: &str,
    tables: &str,
) -> Option<std::path::PathBuf> {
    let cfg = dir.join(format!("{name}.toml"));
    let cpus = xfwd::cpu::allowed();
    if !xfwd_mempool::caps::require(cpus.len() >= 2, "two CPUs", "two pinned lcores") {
        return None;
    }
    std::fs::write(
        &cfg,
        format!(
            r#"
[memory]
backing = "heap"
[pool]
nb_mbufs = 4096
mbcache = 128
[fwd]
rxd = 512
txd = 512
latency = true
{fwd_extra}
[stats]
period = 0
duration = 1
json = true
{tables}
[[port]]
devargs = "ring:{name}"
[[port]]
devargs = "ring:{name}"
[[port]]
devargs = "null:"
[[lcore]]
id = {a}
mode = "txonly"
streams = [{{ tx = "0.0" }}]
[[lcore]]
id = {b}
mode = "io"
streams = [{{ rx = "1.0", tx = "2.0" }}]
"#,
            a = cpus[0],
            b = cpus[1]
        ),
    )
    .unwrap();
    Some(cfg)
}

/// Run a [`ring_chain_config`] file; its final JSON.
fn run_chain(cfg: &std::path::Path) -> serde_json::Value {
    let o = run(
        &["--config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    text_ok(&o);
    final_json(&o)
}

#[test]
fn ring_chain_with_forwarding_latency() {
    // lcore A: txonly into ring:x; lcore B: io from its peer port into a
    // null sink, measuring latency on the way (--latency).
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = ring_chain_config(dir.path(), "chain", "", "") else {
        return;
    };
    let f = run_chain(&cfg);
    let [p0, p1, p2] = [0, 1, 2].map(|i| &f["ports"][i]["fwd"]);
    assert!(n(&p1["rx_packets"]) > 0, "{f}");
    assert_eq!(
        n(&p1["rx_packets"]),
        n(&p2["tx_packets"]) + n(&p2["tx_dropped"]),
        "{f}"
    );
    assert!(n(&p1["rx_packets"]) <= n(&p0["tx_packets"]));
    assert_eq!(
        n(&f["ports"][2]["tx_packets"]),
        n(&p2["tx_packets"]),
        "null counted what it got"
    );
    assert!(n(&f["latency"]["samples"]) > 0, "{f}");
    assert_eq!(f["leaked_mbufs"], 0);
}

#[test]
fn check_prints_the_plan_for_every_software_example_config() {
    // The examples that need no device (pcap has its own test below; vfio,
    // af_xdp and host configs need hardware or a netns and are tested where
    // their drivers are).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for name in ["demo.toml", "null-bench.toml", "ring-loopback.toml"] {
        let p = root.join(name);
        // --no-huge: the plan must print on machines without hugepages too.
        let o = run(
            &["check", p.to_str().unwrap(), "--no-huge"],
            Duration::from_secs(30),
        );
        let (so, se) = text(&o);
        assert!(o.status.success(), "{name}: {so}\n{se}");
        for want in [
            "xfwd plan",
            "memory :",
            "pool   :",
            "port0",
            "lcore",
            "chunk",
        ] {
            assert!(so.contains(want), "{name}: missing `{want}`:\n{so}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn pcap_replay_example_config_checks_with_its_capture() {
    // The pcap example replays a capture; record one with txonly first,
    // exactly as the config's comment says.
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("udp.pcap");
    let o = run_txonly_into(
        &cap,
        &["--duration", "0.1", "--stats-period", "0"],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let frames = read_pcap(&cap);
    assert!(!frames.is_empty());
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/pcap-replay.toml");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    let local = dir.path().join("replay.toml");
    let out = dir.path().join("out.pcap");
    std::fs::write(
        &local,
        text_cfg
            .replace("/tmp/xfwd-udp.pcap", cap.to_str().unwrap())
            .replace("/tmp/xfwd-out.pcap", out.to_str().unwrap()),
    )
    .unwrap();
    let o = run(
        &[
            "--config",
            local.to_str().unwrap(),
            "--no-huge",
            // An upper bound only: a finite `loop` ends the run by itself once
            // both replays are forwarded (a fixed 1 s was too short for a
            // debug build on a loaded machine).
            "--duration",
            "25",
            "--json",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(30),
    );
    let f = final_clean(&o, "run");
    let got = read_pcap(&out);
    assert!(!got.is_empty(), "{f}");
    assert_eq!(
        got.len(),
        2 * frames.len(),
        "loop=2 replays the capture twice"
    );
}

#[test]
fn sigint_stops_cleanly_and_prints_the_summary() {
    stops_cleanly_on("-INT");
}

#[test]
fn sigterm_stops_cleanly_and_prints_the_summary() {
    stops_cleanly_on("-TERM");
}

fn stops_cleanly_on(signal: &str) {
    let mut child = xfwd()
        .args(["--no-huge", "--duration", "0", "--stats-period", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let ok = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("xfwd did not stop after {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let (so, se) = text_ok(&o);
    assert!(se.contains("signal received"), "{se}");
    assert!(
        so.contains("Accumulated forward statistics") && so.contains("0 mbufs leaked"),
        "{so}"
    );
}

#[test]
fn telemetry_answers_json_queries_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("xfwd.sock");
    let mut child = xfwd()
        .args([
            "--no-huge",
            "--duration",
            "4",
            "--stats-period",
            "0",
            "--telemetry",
        ])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(Instant::now() < deadline, "no telemetry socket");
        std::thread::sleep(Duration::from_millis(20));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let mut ask = |q: &str| -> serde_json::Value {
        if !q.is_empty() {
            w.write_all(format!("{q}\n").as_bytes()).unwrap();
        }
        line.clear();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{q}: {e}: {line}"))
    };
    let hello = ask("");
    assert!(hello["pid"].as_u64().is_some(), "{hello}");
    std::thread::sleep(Duration::from_millis(300));
    let ports = ask("/ports");
    assert_eq!(ports.as_array().unwrap().len(), 2);
    assert_eq!(ports[0]["driver"], "ring");
    let st = ask("/ports/1/stats");
    assert!(n(&st["rx_packets"]) > 0, "{st}");
    let lc = ask("/lcores");
    assert_eq!(lc[0]["mode"], "txonly");
    assert!(n(&lc[0]["streams"][0]["counters"]["generated"]) > 0);
    let mp = ask("/mempool");
    assert_eq!(mp["capacity"], 8192);
    let dma = ask("/dma");
    assert_eq!(dma[0]["mappings"].as_array().unwrap().len(), 1, "{dma}");
    assert_eq!(
        dma[0]["mappings"][0]["pins"], 1,
        "mapping pinned while started"
    );
    let bad = ask("/nope");
    assert!(bad["error"].as_str().unwrap().contains("/nope"));
    // The client script.
    if xfwd_mempool::caps::require_tool("python3", "telemetry client script") {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/xfwd-telemetry");
        let o = std::process::Command::new("python3")
            .arg(script)
            .arg(&sock)
            .args(["/ports/0/stats", "/mempool"])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && s.contains("\"tx_packets\"") && s.contains("\"capacity\""),
            "{s}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("xfwd did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(!sock.exists(), "socket removed at exit");
}

#[test]
fn descriptors_above_a_port_max_are_clamped_and_shown() {
    // null ports hold 4096 descriptors: asking for more runs with 4096 (as
    // DPDK's virtio PMD clamps to the device's queue size), said in the plan.
    let o = run(
        &[
            "--port",
            "null:",
            "--port",
            "null:",
            "--rxd",
            "8192",
            "--txd",
            "8192",
            "--no-huge",
            "--duration",
            "0.2",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(30),
    );
    let (so, se) = text_ok(&o);
    assert!(
        se.contains(
            "rxd 4096 txd 4096: the device's queues hold at most 4096 / 4096 (asked 8192 / 8192)"
        ),
        "{se}"
    );
    assert!(so.contains("0 mbufs leaked"), "{so}");
}

#[test]
fn idle_sleep_forwarding_lcore_sleeps_below_capacity_and_forwards_everything() {
    // lcore A: txonly at 20 kpps into ring:idle; lcore B: io from its peer
    // port into a null sink with --idle-sleep: B sleeps most of the run (a
    // frame every 50 µs), A (a generator) never does, nothing is lost.
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = ring_chain_config(
        dir.path(),
        "idle",
        "idle_sleep_us = 50",
        "[txonly]\nrate = \"20k\"",
    ) else {
        return;
    };
    let path = cfg.to_str().unwrap();
    let c = run(&["check", path], Duration::from_secs(30));
    let (so, se) = text(&c);
    assert!(c.status.success(), "{so}\n{se}");
    assert!(
        so.contains("sleep 50 µs when a round finds nothing"),
        "check shows the polling mode:\n{so}"
    );
    let f = run_chain(&cfg);
    let [p0, p1, p2] = [0, 1, 2].map(|i| &f["ports"][i]["fwd"]);
    let sent = n(&p0["tx_packets"]);
    assert!(sent > 5_000, "the generator kept its pace: {f}");
    // A ring loses nothing: what the forwarder did not take before it
    // stopped (at most a ring's worth) went back to the pool (leak audit).
    let rx = n(&p1["rx_packets"]);
    assert!(
        rx <= sent && sent - rx <= 512,
        "sent {sent}, received {rx}: {f}"
    );
    assert_eq!(n(&p2["tx_packets"]), rx, "{f}");
    assert_eq!(n(&p2["tx_dropped"]), 0, "{f}");
    let (gen, fwd) = (&f["lcores"][0], &f["lcores"][1]);
    assert_eq!(
        n(&gen["sleeps"]),
        0,
        "a generator lcore never sleeps: {gen}"
    );
    assert!(n(&fwd["sleeps"]) > 1000, "{fwd}");
    assert!(fwd["slept_pct"].as_f64().unwrap() > 50.0, "{fwd}");
    assert!(n(&f["latency"]["samples"]) > 0, "{f}");
    assert_eq!(f["leaked_mbufs"], 0);
}

#[test]
fn a_pool_smaller_than_its_rings_and_caches_is_warned_of_with_the_flag_to_raise_it() {
    // 2 ports × (4096 rxd + 4096 txd) + 1 lcore × (1.5 × 256 + 2 × 32) = 16832.
    let args = |nb: &'static str| {
        [
            "check",
            "--port",
            "null:",
            "--port",
            "null:",
            "--rxd",
            "4096",
            "--txd",
            "4096",
            "--nb-mbufs",
            nb,
            "--no-huge",
        ]
    };
    let o = run(&args("8192"), Duration::from_secs(30));
    let (so, se) = text_ok(&o);
    for (what, out) in [("plan", &so), ("log", &se)] {
        assert!(
            out.contains("fewer than the 16832 its rings and caches can hold")
                && out.contains("raise it to at least 16832 with --nb-mbufs"),
            "{what}: {out}"
        );
    }
    let o = run(&args("16832"), Duration::from_secs(30));
    let (so, se) = text_ok(&o);
    assert!(
        !so.contains("fewer than") && !se.contains("fewer than"),
        "{so}\n{se}"
    );
}
