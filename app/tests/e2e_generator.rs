//! The generator end to end: an IMIX frame-size mix recorded by a `pcap:tx=`
//! port and checked frame by frame (sizes in the exact 7:4:1 proportion and
//! order, headers consistent with each size), `--tx-count` ending the run by
//! itself, and the per-lcore stall counters in the final JSON.

mod support;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn imix_sizes_are_exact_and_tx_count_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("imix.pcap");
    let t0 = Instant::now();
    let o = run_txonly_into(
        &cap,
        &[
            "--tx-mix",
            "imix",
            "--tx-flows",
            "4",
            "--tx-count",
            "1200",
            "--duration",
            "60",
            "--json",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(60),
    );
    let (_, se) = text_ok(&o);
    // The run ended on its own, long before --duration.
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(se.contains("every generator sent its --tx-count"), "{se}");
    let f = final_json(&o);
    assert_eq!(f["leaked_mbufs"], 0);
    let frames = read_pcap(&cap);
    assert_eq!(frames.len(), 1200);
    let count = |l: usize| frames.iter().filter(|x| x.len() == l).count();
    assert_eq!((count(60), count(590), count(1514)), (700, 400, 100));
    // Interleaved, not in runs: no more than two minimum-size frames in a row.
    let longest = frames
        .iter()
        .fold((0, 0), |(run, best), x| {
            let run = if x.len() == 60 { run + 1 } else { 0 };
            (run, best.max(run))
        })
        .1;
    assert!(longest <= 2, "a run of {longest} 60 B frames");
    // Every frame is a well-formed UDP/IPv4 packet of its own size.
    for x in &frames {
        let p = SlicedPacket::from_ethernet(x).unwrap_or_else(|e| panic!("{e:?}"));
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        assert_eq!(usize::from(ip.header().total_len()), x.len() - 14);
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!(usize::from(u.length()), x.len() - 34);
    }
    // Bytes add up in the port stats.
    let bytes: u64 = frames.iter().map(|x| x.len() as u64).sum();
    assert_eq!(f["ports"][0]["tx_bytes"], bytes, "{f}");
    // The stall counters are reported per lcore.
    let lc = &f["lcores"][0];
    assert!(lc["stalls"].is_u64() && lc["max_gap_ns"].is_u64(), "{lc}");
}

#[test]
fn the_plan_shows_the_mix_and_its_mean_length() {
    let o = run(
        &[
            "check",
            "--port",
            "null:",
            "--forward-mode",
            "txonly",
            "--tx-mix",
            "64:3,1518:1",
            "--tx-rate",
            "10%",
            "--no-huge",
        ],
        Duration::from_secs(30),
    );
    let (so, _) = text_ok(&o);
    assert!(
        so.contains("mix 64:3,1518:1 (B:weight, mean 427.5 B)"),
        "{so}"
    );
}

#[test]
fn tx_first_seeds_a_ring_loop_with_one_burst_per_stream() {
    // Two ring ports joined to each other, io forwarding 0→1 and 1→0: with
    // nothing else to send, --tx-first's two bursts keep going round.
    let o = run(
        &[
            "--port",
            "ring:txfirst",
            "--port",
            "ring:txfirst",
            "--forward-mode",
            "io",
            "--tx-first",
            "--burst",
            "16",
            "-l",
            "0",
            "--no-huge",
            "--duration",
            "0.5",
            "--json",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(30),
    );
    let f = final_clean(&o, "run");
    for p in f["ports"].as_array().unwrap() {
        let fwd = &p["fwd"];
        assert_eq!(fwd["generated"], 16, "{f}");
        // Everything received was sent on, plus the first burst; at most one
        // burst per direction is still in a ring at the stop.
        let (rx, tx) = (
            fwd["rx_packets"].as_u64().unwrap(),
            fwd["tx_packets"].as_u64().unwrap(),
        );
        assert!(rx > 1000, "the loop did not go round: {f}");
        assert!(tx >= rx && tx - rx <= 16, "{f}");
        assert_eq!(fwd["tx_dropped"], 0);
    }
}

#[test]
fn a_txonly_lcore_also_sinks_a_receive_only_stream_with_latency() {
    // One lcore as both ends of a path (scripts/demo's generator): it
    // generates on ring port 0 and reads port 1 (joined to port 0) in a
    // stream without `tx`, timing each frame from the generator's stamp.
    let dir = std::env::temp_dir().join(format!("xfwd-sink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sink.toml");
    std::fs::write(
        &cfg,
        r#"
[[port]]
devargs = "ring:sinkpair"
[[port]]
devargs = "ring:sinkpair"
[[lcore]]
id = 0
mode = "txonly"
streams = [{ tx = "0.0" }, { rx = "1.0" }]
"#,
    )
    .unwrap();
    let o = run(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--no-huge",
            "--tx-count",
            "5000",
            "--duration",
            "10",
            "--json",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(30),
    );
    std::fs::remove_dir_all(&dir).ok();
    let f = final_clean(&o, "run");
    let p = f["ports"].as_array().unwrap();
    assert_eq!(p[0]["fwd"]["generated"], 5000, "{f}");
    assert_eq!(
        p[1]["rx_packets"], 5000,
        "every generated frame read back: {f}"
    );
    assert_eq!(p[1]["fwd"]["consumed"], 5000, "{f}");
    assert_eq!(f["latency"]["samples"], 5000, "each one timed: {f}");
}
