//! The l3fwd router end to end through the real binary on pcap ports: a
//! corpus (built with etherparse) exercising every route source (TOML,
//! route file, CLI), a neighbour, VLAN, IPv6 and every drop reason is
//! replayed by port 0; ports 0 and 1 record what is routed to them. The
//! expected output is computed independently here (TTL − 1 and a full
//! IPv4 checksum, hop limit − 1, MACs) and compared byte for byte; tshark
//! checks the checksums and TTLs again; drop counters and the leak audit
//! are asserted. Also: exact match (`--lookup em`), configuration errors
//! (exit 2 naming the entry), and route changes at run time through the
//! telemetry socket while traffic flows.

#[path = "e2e_l3fwd/frames.rs"]
mod frames;
mod support;

use etherparse::PacketBuilder;
use frames::{ip_checksum, routed};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

const SRC_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const IN_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
const NH0: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb0];
const NH1: [u8; 6] = [0x02, 0, 0, 0, 1, 0xb1];
const GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];

fn udp4(dst: [u8; 4], ttl: u8) -> Vec<u8> {
    built(|v| {
        PacketBuilder::ethernet2(SRC_MAC, IN_MAC)
            .ipv4([10, 0, 0, 1], dst, ttl)
            .udp(1111, 2222)
            .write(v, b"l3fwd payload 0123")
    })
}

fn udp6(dst: [u8; 16], hop: u8) -> Vec<u8> {
    built(|v| {
        PacketBuilder::ethernet2(SRC_MAC, IN_MAC)
            .ipv6(
                [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                dst,
                hop,
            )
            .udp(5555, 53)
            .write(v, b"v6 payload")
    })
}

fn v6(g: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, w) in g.iter().enumerate() {
        a[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    a
}

fn vlan(mut f: Vec<u8>) -> Vec<u8> {
    f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
    f
}

fn mac_of(fin: &serde_json::Value, port: usize) -> [u8; 6] {
    let s = fin["ports"][port]["mac"].as_str().expect("port mac");
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// tshark (an independent dissector): every IPv4 header checksum good and
/// each frame's (TTL, hop limit) as listed.
fn tshark_check(p: &Path, want: &[(&str, &str)]) {
    let fields = ["ip.checksum.status", "ip.ttl", "ipv6.hlim"];
    let Some(rows) = tshark_fields(p, "l3fwd checksum cross-check", &fields, want.len()) else {
        return;
    };
    for (f, (ttl, hop)) in rows.iter().zip(want) {
        let csum_ok = ttl.is_empty() || f[0] == "1";
        assert!(
            csum_ok && f[1] == *ttl && f[2] == *hop,
            "tshark: checksum status (1 = good), TTL, hop limit: {f:?}, wanted TTL {ttl} hop {hop}"
        );
    }
}

/// (frame, L3 offset, where it goes: (port, next-hop MAC) or the drop reason).
/// Next hops of both ports, heap memory, a small pool, JSON, no periodic stats.
const COMMON: &[&str] = &[
    "--eth-dest",
    "0,02:00:00:00:00:b0",
    "--eth-dest",
    "1,02:00:00:00:01:b1",
    "--no-huge",
    "--nb-mbufs",
    "2048",
    "--mbcache",
    "64",
    "--stats-period",
    "0",
    "--json",
];

/// Run the router to its end: it must succeed, print `plan` (its table
/// summary) and leak nothing; the final JSON and the two ports' MACs.
fn run_router(args: &[&str], plan: &str) -> (serde_json::Value, [[u8; 6]; 2]) {
    let o = run(args, Duration::from_secs(60));
    let fin = final_clean(&o, plan);
    let se = text(&o).1;
    assert!(se.contains(plan), "plan: wanted `{plan}` in: {se}");
    let macs = [mac_of(&fin, 0), mac_of(&fin, 1)];
    (fin, macs)
}

/// A scratch directory with the input capture's and the two ports' output
/// captures' paths in it.
fn capture_files() -> (tempfile::TempDir, PathBuf, [PathBuf; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let files = (p("in.pcap"), [p("out0.pcap"), p("out1.pcap")]);
    (dir, files.0, files.1)
}

type Case = (Vec<u8>, usize, Result<(usize, [u8; 6]), &'static str>);

#[test]
fn routes_rewrites_and_counts_every_drop_reason() {
    let (dir, inp, [out0, out1]) = capture_files();
    let d = dir.path();
    let routes = d.join("routes.txt");
    std::fs::write(
        &routes,
        "# route file: PREFIX PORT [VIA]\n2001:db8:1::/48 1\n10.0.0.0/8 0\n",
    )
    .unwrap();
    let mut bad_csum = udp4([198, 51, 100, 7], 64);
    bad_csum[14 + 10] ^= 0x5a;
    let mut lying = udp4([198, 51, 100, 7], 64);
    lying[14 + 3] = 200; // total length beyond the frame
    let arp = {
        let mut a = udp4([198, 51, 100, 7], 64);
        a[12..14].copy_from_slice(&[0x08, 0x06]);
        a
    };
    let corpus: Vec<Case> = vec![
        (udp4([198, 51, 100, 7], 64), 14, Ok((1, NH1))),
        (udp4([198, 51, 100, 200], 64), 14, Ok((0, GW))),
        (udp4([10, 9, 9, 9], 2), 14, Ok((0, NH0))),
        (vlan(udp4([198, 51, 100, 9], 64)), 18, Ok((1, NH1))),
        (
            udp6(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 5]), 64),
            14,
            Ok((1, NH1)),
        ),
        (
            udp6(v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 5]), 9),
            14,
            Ok((0, NH0)),
        ),
        (udp4([198, 51, 100, 7], 1), 14, Err("ttl_exceeded")),
        (udp4([198, 51, 100, 7], 0), 14, Err("ttl_exceeded")),
        (
            udp6(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 5]), 1),
            14,
            Err("ttl_exceeded"),
        ),
        (udp4([203, 0, 113, 1], 64), 14, Err("no_route")),
        (
            udp6(v6([0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1]), 64),
            14,
            Err("no_route"),
        ),
        (arp, 14, Err("non_ip")),
        (vec![0xde; 10], 14, Err("bad_header")),
        (lying, 14, Err("bad_header")),
        (bad_csum, 14, Err("bad_header")),
    ];
    let frames: Vec<Vec<u8>> = corpus.iter().map(|c| c.0.clone()).collect();
    write_pcap(&inp, &frames);
    let cfg = d.join("router.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[memory]
backing = "heap"
[pool]
nb_mbufs = 2048
mbcache = 64
[fwd]
forward_mode = "l3fwd"
[stats]
period = 0
duration = 1
json = true
[l3fwd]
check_checksum = true
route_file = "{routes}"
[[port]]
devargs = "pcap:rx={inp},tx={out0}"
eth_peer = "02:00:00:00:00:b0"
[[port]]
devargs = "pcap:tx={out1}"
eth_peer = "02:00:00:00:01:b1"
[[neighbor]]
ip = "192.0.2.1"
mac = "02:00:00:00:00:c1"
port = 0
[[route]]
prefix = "198.51.100.0/24"
port = 1
[[route]]
prefix = "198.51.100.128/25"
via = "192.0.2.1"
"#,
            routes = routes.display(),
            inp = inp.display(),
            out0 = out0.display(),
            out1 = out1.display()
        ),
    )
    .unwrap();
    let c = cfg.display().to_string();
    let (fin, macs) = run_router(
        &["--config", &c, "--route", "2001:db8:2::/64,0"],
        "lookup lpm, 3 IPv4 routes",
    );
    let mut want: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (f, off, exp) in &corpus {
        if let Ok((port, nh)) = exp {
            want[*port].push(routed(f, *off, *nh, macs[*port]));
        }
    }
    assert_eq!(read_pcap(&out0), want[0], "port 0 output");
    assert_eq!(read_pcap(&out1), want[1], "port 1 output");
    let f = &fin["ports"][0]["fwd"];
    for reason in ["ttl_exceeded", "no_route", "non_ip", "bad_header"] {
        let exp = corpus.iter().filter(|c| c.2 == Err(reason)).count() as u64;
        assert_eq!(n(&f[reason]), exp, "{reason}: {fin}");
    }
    assert_eq!(n(&f["vlan"]), 1, "{fin}");
    assert_eq!(n(&f["rx_packets"]), corpus.len() as u64);
    let tx = n(&fin["ports"][0]["fwd"]["tx_packets"]) + n(&fin["ports"][1]["fwd"]["tx_packets"]);
    assert_eq!(tx, 6, "{fin}");
    assert_eq!(n(&fin["ports"][0]["tx_packets"]), 3, "port counters: {fin}");
    tshark_check(&out0, &[("63", ""), ("1", ""), ("", "8")]);
    tshark_check(&out1, &[("63", ""), ("63", ""), ("", "63")]);
    // The VLAN tag is kept as it was.
    assert_eq!(&read_pcap(&out1)[1][12..16], &[0x81, 0x00, 0x00, 0x2a]);
}

#[test]
fn exact_match_routes_the_five_tuple() {
    let (_dir, inp, [out0, out1]) = capture_files();
    let hit = udp4([198, 51, 100, 7], 64);
    let mut other_port = udp4([198, 51, 100, 7], 64);
    // UDP destination port 2223: another 5-tuple (no checksum check here).
    other_port[14 + 20 + 3] = 0xaf;
    let hit6 = udp6(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 5]), 64);
    write_pcap(&inp, &[hit.clone(), other_port, hit6.clone()]);
    let p0 = format!("pcap:rx={},tx={}", inp.display(), out0.display());
    let p1 = format!("pcap:tx={}", out1.display());
    let (fin, macs) = run_router(
        &[
            "--port",
            &p0,
            "--port",
            &p1,
            "--forward-mode",
            "l3fwd",
            "--lookup",
            "em",
            "--flow",
            "10.0.0.1,198.51.100.7,1111,2222,udp,1",
            "--flow",
            "2001:db8::1,2001:db8:1::5,5555,53,17,0",
            "--duration",
            "1",
        ]
        .iter()
        .chain(COMMON)
        .copied()
        .collect::<Vec<_>>(),
        "lookup em, 1 IPv4 flows, 1 IPv6 flows",
    );
    assert_eq!(read_pcap(&out1), vec![routed(&hit, 14, NH1, macs[1])]);
    assert_eq!(read_pcap(&out0), vec![routed(&hit6, 14, NH0, macs[0])]);
    assert_eq!(n(&fin["ports"][0]["fwd"]["no_route"]), 1, "{fin}");
}

#[test]
fn bad_routes_exit_2_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rf = dir.path().join("r.txt");
    std::fs::write(&rf, "10.0.0.0/8 0\n10.0.0.0/33 0\n").unwrap();
    let rfs = rf.display().to_string();
    let base = [
        "check",
        "--port",
        "null:",
        "--port",
        "null:",
        "--forward-mode",
        "l3fwd",
        "--eth-dest",
        "0,02:00:00:00:00:01",
        "--no-huge",
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["--route", "10.0.0.1/8,0"], "`--route 10.0.0.1/8,0`"),
        (&["--route", "10.0.0.0/8,5"], "a forwarding port id"),
        (&["--route", "10.0.0.0/8,1"], "next-hop MAC for port 1"),
        (
            &["--route", "10.0.0.0/8,0", "--route", "10.0.0.0/8,0"],
            "each prefix once",
        ),
        (
            &["--route", "10.0.0.0/8,0,192.0.2.1"],
            "listed as a [[neighbor]]",
        ),
        (&["--route-file", &rfs], "r.txt:2"),
        (
            &["--route", "10.0.0.0/8,0", "--lookup", "hash"],
            "`--lookup`",
        ),
        (&[], "at least one"),
        (
            &["--route", "10.0.0.0/8,0", "--txq", "1", "--lcores", "0-1"],
            "l3fwd lcores",
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = run(&args, Duration::from_secs(30));
        let (so, se) = text(&o);
        if want.contains("lcores") && xfwd::cpu::allowed().len() < 2 {
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {so}\n{se}");
        assert!(se.contains(want), "{extra:?}: wanted `{want}` in: {se}");
        assert!(!se.contains("panicked"), "{se}");
    }
    let ok = run(
        &[&base[..], &["--route", "10.0.0.0/8,0"]].concat(),
        Duration::from_secs(30),
    );
    assert!(ok.status.success(), "{}", text(&ok).1);
}

/// Kills the child (by its own PID) if the test fails before it is reaped.
struct Reap(Option<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Routes change while frames flow: the /24 moves between port 0 (next hop
/// NH0) and port 1 (NH1) through the telemetry socket, dozens of times.
/// Every frame must leave with the next-hop MAC of the port it leaves on
/// (one consistent table per packet), both ports must have carried traffic
/// (the changes happened under load), and nothing leaks.
#[test]
fn route_changes_at_run_time_are_never_half_applied() {
    let (dir, inp, [out0, out1]) = capture_files();
    let sock = dir.path().join("tel.sock");
    let frames: Vec<Vec<u8>> = (0..16).map(|i| udp4([198, 51, 100, i], 64)).collect();
    write_pcap(&inp, &frames);
    // An endless replay, 98 % of it dropped at RX by the fault wrapper (so
    // the capture files stay small while the lcore keeps forwarding).
    let p0 = format!(
        "fault:seed=3,rx_drop=0.98,inner=pcap:rx={},tx={},loop=infinite,snaplen=64",
        inp.display(),
        out0.display()
    );
    let p1 = format!("pcap:tx={},snaplen=64", out1.display());
    let s = sock.display().to_string();
    let mut child = Reap(Some(
        xfwd()
            .args([
                "--port",
                &p0,
                "--port",
                &p1,
                "--forward-mode",
                "l3fwd",
                "--route",
                "198.51.100.0/24,0",
                "--route",
                "198.51.0.0/16,1",
                "--duration",
                "60",
                "--telemetry",
                &s,
            ])
            .args(COMMON)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn xfwd"),
    ));
    let pid = child.0.as_ref().expect("child").id();
    let mut t =
        TelemetryClient::connect(&sock, Duration::from_secs(15)).expect("no telemetry socket");
    let mut ask = |q: &str| t.ask(q);
    // A live capture of what the l3fwd lcore sends to port 1.
    let cap = dir.path().join("tx1.pcapng");
    let c = ask(&format!("capture 1 tx --count 50 -w {}", cap.display()));
    assert_eq!(c["data"]["done"], false, "{c}");
    let mut changes = 0u64;
    let mut tx_before = 0;
    // Flip the /24 between deleting it (→ the /16 on port 1) and adding it
    // (→ port 0): 20 times, at most 30 s; frames must flow between changes.
    let t0 = Instant::now();
    let mut under_load = 0;
    while changes < 20 && t0.elapsed() < Duration::from_secs(30) {
        // The socket's /l3fwd paths and the command table's `route ...`.
        let a = if changes.is_multiple_of(2) {
            ask("/l3fwd/route/del 198.51.100.0/24")
        } else {
            ask("route add 198.51.100.0/24 0")["data"].clone()
        };
        assert_eq!(a["ok"], true, "{a}");
        changes += 1;
        std::thread::sleep(Duration::from_millis(20));
        let st = ask("/ports/1/stats");
        let tx = st["tx_packets"].as_u64().unwrap_or(0);
        under_load += u64::from(tx != tx_before);
        tx_before = tx;
    }
    let l = ask("/l3fwd");
    assert_eq!(n(&l["generation"]), changes, "{l}");
    // Double-buffered: after the first copy, updates edit the spare table
    // (once the lcore let go of it) instead of copying the whole table.
    let u = &l["updates"];
    assert_eq!(n(&u["in_place"]) + n(&u["copied"]), changes, "{l}");
    assert!(n(&u["in_place"]) >= 1, "no update reused the spare: {l}");
    eprintln!("route updates: {u}");
    let l = ask("show l3fwd");
    assert_eq!(n(&l["data"]["generation"]), changes, "{l}");
    let bad = ask("route del 203.0.113.0/24");
    assert!(
        bad["error"].as_str().unwrap().contains("no such entry"),
        "{bad}"
    );
    let hop = ask("route lookup 198.51.7.7");
    assert_eq!(hop["data"]["hop"]["port"], 1, "{hop}");
    ask("capture stop");
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = ask("show capture")["data"].clone();
        if v["done"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "capture not done: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(n(&v["taken"]) > 0, "the l3fwd lcore's TX was captured: {v}");
    assert_eq!(
        n(&v["taken"]) + n(&v["skipped"]) + n(&v["past_count"]),
        n(&v["window"]["tx"]),
        "{v}"
    );
    let bad = ask("/l3fwd/route/add 198.51.100.0/24 7");
    assert!(bad["error"].as_str().unwrap().contains("port 7"), "{bad}");
    let bad = ask("/l3fwd/route/del 203.0.113.0/24");
    assert!(
        bad["error"].as_str().unwrap().contains("no such entry"),
        "{bad}"
    );
    let hop = ask("/l3fwd/lookup 198.51.7.7");
    assert_eq!(hop["hop"]["port"], 1, "{hop}");
    // Stop it (SIGINT, by its own PID) and read the final report.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let out = child
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("wait");
    let fin = final_json(&out);
    assert_eq!(fin["leaked_mbufs"], 0, "{fin}");
    let (o0, o1) = (read_pcap(&out0), read_pcap(&out1));
    assert_eq!(changes, 20, "route changes in 30 s");
    assert!(
        under_load >= 5,
        "port 1 sent between only {under_load} of the changes"
    );
    assert_eq!(
        n(&fin["ports"][0]["fwd"]["no_route"]),
        0,
        "a frame met a half-made table: {fin}"
    );
    assert!(
        !o0.is_empty() && !o1.is_empty(),
        "the changes did not happen under traffic: {} / {} frames",
        o0.len(),
        o1.len()
    );
    for (frames, nh, port) in [(&o0, NH0, 0), (&o1, NH1, 1)] {
        for f in frames.iter() {
            assert_eq!(
                &f[0..6],
                &nh,
                "a frame on port {port} with another port's next hop"
            );
            assert_eq!(f[14 + 8], 63, "TTL");
            assert_eq!(ip_checksum(&f[14..34]), u16::from_be_bytes([f[24], f[25]]));
        }
    }
    let sent = (o0.len() + o1.len()) as u64;
    assert_eq!(sent, n(&fin["accumulated"]["fwd"]["tx_packets"]), "{fin}");
}

/// The example router configs check (their routes, neighbours and next
/// hops are valid) with their devices swapped for null ports.
#[test]
fn example_router_configs_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    for (name, want) in [
        ("router.toml", "3 IPv4 routes"),
        ("router-v6.toml", "5 IPv6 routes"),
        ("router-16k.toml", "16384 IPv4 routes"),
    ] {
        let cfg = std::fs::read_to_string(root.join("configs").join(name)).unwrap();
        let swapped: String = cfg
            .lines()
            .map(|l| {
                if l.starts_with("devargs = ") {
                    "devargs = \"null:\"".to_string()
                } else {
                    l.replace(
                        "route_file = \"configs/",
                        &format!("route_file = \"{}/configs/", root.display()),
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p = dir.path().join(name);
        std::fs::write(&p, swapped).unwrap();
        let o = run(
            &["check", p.to_str().unwrap(), "--no-huge"],
            Duration::from_secs(60),
        );
        let (so, se) = text(&o);
        assert!(o.status.success(), "{name}: {so}\n{se}");
        assert!(
            so.contains("l3fwd  : lookup lpm") && so.contains(want),
            "{name}: {so}"
        );
    }
}
