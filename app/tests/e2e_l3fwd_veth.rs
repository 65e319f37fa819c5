//! The l3fwd router end to end on kernel ports (AF_XDP, AF_PACKET) over
//! veth, in network namespaces the test creates:
//!
//! AF_PACKET sender in `gen` → g0 ⇄ d0 → [xfwd l3fwd in `dut`] → d1 ⇄ s1 → dumpcap in `sink`
//!
//! A corpus of routed frames (IPv4, IPv4 via a neighbour, 802.1Q-tagged,
//! IPv6) and of every drop reason (TTL/hop limit exceeded, no route, bad
//! header, non-IP) is sent; what reaches the sink must be byte-exact what
//! the test computes (TTL − 1 and a checksum computed from scratch, hop
//! limit − 1, source MAC = d1's, destination = the next hop's, the VLAN tag
//! kept), and tshark verifies the checksums again. Each drop reason is
//! counted exactly in the final JSON, in `/ports/0/xstats`, in `show port
//! xstats` and in the periodic JSON. A route added at run time `via` a
//! neighbour carries the next frame. The leak audit ends each run.
//! Root, `ip`, `dumpcap` and hugepages needed (CI has them: there a
//! missing one is a failure; elsewhere the tests skip, saying why).

#[path = "e2e_l3fwd/frames.rs"]
mod frames;
#[allow(dead_code)] // the pmd tests' AF_PACKET socket: only its sender is used here
#[path = "../../pmd/tests/support/packet.rs"]
mod packet;
mod support;

use etherparse::PacketBuilder;
use frames::routed;
use packet::PacketSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::proc::{xfwd_final, Proc};
use support::topo::Topo;
use support::{built, read_pcap, tshark_fields, TelemetryClient};
use xfwd_mempool::caps;
use xfwd_pmd::netdev;

const GEN_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const SINK_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
const MARK: &[u8] = b"xfwd l3fwd veth";

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_tool("dumpcap", what)
        && caps::require_hugepages_2m(32, what)
}

fn udp4(dst: [u8; 4], ttl: u8, seq: u8) -> Vec<u8> {
    built(|v| {
        PacketBuilder::ethernet2(GEN_MAC, [0x02, 0xd0, 0, 0, 0, 0])
            .ipv4([10, 0, 0, 1], dst, ttl)
            .udp(1111, 2222)
            .write(v, &[MARK, &[seq]].concat())
    })
}

fn udp6(dst_last: u16, net: u16, hop: u8, seq: u8) -> Vec<u8> {
    let mut d = [0u8; 16];
    d[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, (net >> 8) as u8, net as u8]);
    d[14..].copy_from_slice(&dst_last.to_be_bytes());
    built(|v| {
        PacketBuilder::ethernet2(GEN_MAC, [0x02, 0xd0, 0, 0, 0, 0])
            .ipv6(
                [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                d,
                hop,
            )
            .udp(5555, 53)
            .write(v, &[MARK, &[seq]].concat())
    })
}

fn vlan(mut f: Vec<u8>, tags: usize) -> Vec<u8> {
    for _ in 0..tags {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
    }
    f
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// dumpcap on `dev` in `ns`, writing classic pcap (VLAN tags put back
/// from the kernel's metadata, so tagged frames are seen as sent).
fn dumpcap(ns: &Netns, dev: &str, file: &Path) -> Proc {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name(), "dumpcap", "-i", dev, "-P", "-w"])
        .arg(file);
    let p = Proc::spawn("dumpcap", c);
    p.wait_for("Capturing on", Duration::from_secs(15));
    p
}

type Case = (Vec<u8>, usize, Result<[u8; 6], &'static str>);

fn corpus() -> Vec<Case> {
    let mut bad_csum = udp4([198, 51, 100, 7], 64, 20);
    bad_csum[14 + 10] ^= 0x5a;
    let mut lying = udp4([198, 51, 100, 7], 64, 21);
    lying[14 + 3] = 250; // total length beyond the frame
    let mut ihl = udp4([198, 51, 100, 7], 64, 22);
    ihl[14] = 0x44;
    let mut arp = udp4([198, 51, 100, 7], 64, 23);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    vec![
        (udp4([198, 51, 100, 7], 64, 1), 14, Ok(SINK_MAC)),
        (udp4([198, 51, 100, 200], 64, 2), 14, Ok(GW_MAC)),
        (udp4([198, 51, 100, 8], 2, 3), 14, Ok(SINK_MAC)),
        (vlan(udp4([198, 51, 100, 9], 64, 4), 1), 18, Ok(SINK_MAC)),
        (udp6(5, 1, 64, 5), 14, Ok(SINK_MAC)),
        (udp4([198, 51, 100, 7], 1, 10), 14, Err("ttl_exceeded")),
        (udp4([198, 51, 100, 7], 0, 11), 14, Err("ttl_exceeded")),
        (udp6(5, 1, 1, 12), 14, Err("ttl_exceeded")),
        (udp4([100, 64, 0, 1], 64, 13), 14, Err("no_route")),
        (udp6(1, 0xff, 64, 14), 14, Err("no_route")),
        (arp, 14, Err("non_ip")),
        (vlan(udp4([198, 51, 100, 9], 64, 15), 3), 26, Err("non_ip")),
        (bad_csum, 14, Err("bad_header")),
        (lying, 14, Err("bad_header")),
        (ihl, 14, Err("bad_header")),
    ]
}

fn l3fwd_over_veth(driver: &str) {
    let what = format!("l3fwd over veth ({driver})");
    if !env_ok(&what) {
        return;
    }
    let xdp = driver == "af_xdp";
    let topo = Topo::new("l3", &[["g0", "d0", "d1", "s1"]]);
    let (gen, dut, sink) = (&topo.gen, &topo.dut, &topo.sink);
    gen.ip(&["link", "set", "g0", "address", &mac(&GEN_MAC)]);
    sink.ip(&["link", "set", "s1", "address", &mac(&SINK_MAC)]);
    let dir = tempfile::tempdir().unwrap();
    let tel = dir.path().join("tel.sock");
    let cap = dir.path().join("sink.pcap");
    let cap_proc = dumpcap(sink, "s1", &cap);

    let ports = [format!("{driver}:iface=d0"), format!("{driver}:iface=d1")];
    let eth1 = format!("1,{}", mac(&SINK_MAC));
    let eth0 = format!("0,{}", mac(&GEN_MAC));
    let neigh = format!("192.0.2.1,{},1", mac(&GW_MAC));
    let mut c = topo.xfwd(&ports, &["-l", "1", "--nb-mbufs", "8192"]);
    c.args(["--forward-mode", "l3fwd", "--check-checksum"]);
    c.args([
        "--eth-dest",
        &eth0,
        "--eth-dest",
        &eth1,
        "--neighbor",
        &neigh,
    ]);
    for r in [
        "198.51.100.0/24,1",
        "198.51.100.128/25,1,192.0.2.1",
        "2001:db8:1::/48,1",
    ] {
        c.args(["--route", r]);
    }
    c.args(["--json", "--stats-period", "1", "--duration", "60"]);
    c.arg("--telemetry").arg(&tel);
    let x = Proc::spawn("xfwd", c);
    let mut t = TelemetryClient::connect(&tel, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no telemetry socket:\n{}", x.text()));
    if xdp {
        let deadline = Instant::now() + Duration::from_secs(10);
        while dut.xdp_attached("d0").is_none() || dut.xdp_attached("d1").is_none() {
            assert!(Instant::now() < deadline, "no XDP program:\n{}", x.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let g = gen.run(|| PacketSocket::bind(netdev::ifindex("g0").unwrap()));
    let d1_mac = dut.run(|| netdev::mac("d1").unwrap());
    let cases = corpus();
    for (f, ..) in &cases {
        g.send(f);
        std::thread::sleep(Duration::from_millis(2));
    }
    // A route added at run time `via` the neighbour; a bad one is refused
    // naming the entry.
    let bad = t.ask("route add 203.0.113.0/24 via 192.0.2.9");
    let e = bad["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("`route add 203.0.113.0/24 via 192.0.2.9`") && e.contains("192.0.2.1"),
        "{bad}"
    );
    let ok = t.ask("/l3fwd/route/add 203.0.113.0/24 via 192.0.2.1");
    assert_eq!(ok["ok"], true, "{ok}");
    let hop = t.ask("/l3fwd/lookup 203.0.113.5");
    assert_eq!(hop["hop"]["mac"], mac(&GW_MAC), "{hop}");
    // The lcore takes the new table at its next polling round.
    std::thread::sleep(Duration::from_millis(100));
    let late = udp4([203, 0, 113, 5], 64, 30);
    g.send(&late);
    let mut want: Vec<Vec<u8>> = cases
        .iter()
        .filter_map(|(f, off, r)| r.ok().map(|nh| routed(f, *off, nh, d1_mac)))
        .collect();
    want.push(routed(&late, 14, GW_MAC, d1_mac));

    // Every frame received (each is routed or counted in the round that
    // receives it): the streams' RX counters.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let l = t.ask("/lcores");
        let rx: u64 = l[0]["streams"]
            .as_array()
            .map(|s| s.iter().map(|s| n(&s["counters"]["rx"])).sum())
            .unwrap_or(0);
        if rx as usize > cases.len() {
            break;
        }
        assert!(Instant::now() < deadline, "frames not all received: {l}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let xs = t.ask("/ports/0/xstats");
    let shown = t.ask("show port xstats 0");
    std::thread::sleep(Duration::from_millis(1200)); // one more period line
    x.signal(libc::SIGINT);
    let (fin, log) = xfwd_final(x, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    cap_proc.signal(libc::SIGINT);
    let (code, dlog) = cap_proc.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "dumpcap: {dlog}");

    let mut got: Vec<Vec<u8>> = read_pcap(&cap)
        .into_iter()
        .filter(|f| f.windows(MARK.len()).any(|w| w == MARK))
        .collect();
    let rows = tshark_fields(
        &cap,
        &what,
        &["ip.checksum.status", "ip.ttl", "ipv6.hlim", "vlan.id"],
        got.len(),
    );
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "frames at the sink; xfwd: {fin}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "a frame at the sink is not what the router must send");
    }
    if let Some(rows) = rows {
        for r in &rows {
            let v4 = !r[1].is_empty();
            assert!(
                (!v4 || (r[0] == "1" && (r[1] == "63" || r[1] == "1"))) && (v4 || r[2] == "63"),
                "tshark (checksum status 1 = good, TTL, hop limit, VLAN): {r:?}"
            );
        }
        assert_eq!(rows.iter().filter(|r| r[3] == "42").count(), 1, "{rows:?}");
    }

    let f = &fin["ports"][0]["fwd"];
    let p = &shown["data"][0]["xstats"];
    for reason in ["ttl_exceeded", "no_route", "non_ip", "bad_header"] {
        let exp = cases.iter().filter(|c| c.2 == Err(reason)).count() as u64;
        assert_eq!(n(&f[reason]), exp, "final JSON {reason}: {fin}");
        let k = format!("fwd_drop_{reason}");
        assert_eq!(n(&xs[&k]), exp, "/ports/0/xstats {k}: {xs}");
        assert_eq!(n(&p[&k]), exp, "show port xstats {k}: {shown}");
    }
    assert_eq!(n(&f["vlan"]), 1, "{fin}");
    assert_eq!(n(&xs["fwd_vlan_forwarded"]), 1, "{xs}");
    assert_eq!(n(&f["rx_packets"]), cases.len() as u64 + 1, "{fin}");
    assert_eq!(
        n(&fin["ports"][1]["tx_packets"]),
        want.len() as u64,
        "{fin}"
    );
    let period = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "period")
        .unwrap_or_else(|| panic!("no period JSON line:\n{log}"));
    assert_eq!(n(&period["ports"][0]["l3fwd"]["no_route"]), 2, "{period}");
    assert_eq!(fin["leaked_mbufs"], 0, "{fin}");
    if xdp {
        for d in ["d0", "d1"] {
            assert!(
                dut.xdp_detached_within(d, Duration::from_secs(3)),
                "XDP program left on {d}"
            );
        }
    }
    eprintln!(
        "{what}: {} frames sent, {} routed byte-exact, every drop reason counted",
        cases.len() + 1,
        want.len()
    );
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn l3fwd_routes_over_af_xdp_veth_byte_exact_and_counts_every_drop() {
    l3fwd_over_veth("af_xdp");
}

#[test]
fn l3fwd_routes_over_af_packet_veth_byte_exact_and_counts_every_drop() {
    l3fwd_over_veth("af_packet");
}
