//! Every forwarding mode, end to end through the real binary on pcap ports:
//! a corpus of frames built with etherparse is replayed by a `pcap:rx=` port,
//! the mode edits them, a `pcap:tx=` port records them, and an independent
//! parser (etherparse, plus tshark for checksums when installed) checks the
//! bytes. The JSON stats must add up: rx = tx + dropped + malformed + consumed.

mod support;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, Icmpv6Type, IpHeaders,
    LinkHeader, NetHeaders, PacketBuilder, PacketBuilderStep, PacketHeaders, TransportHeader,
};
use std::path::Path;
use std::time::Duration;
use support::*;

#[path = "e2e_modes/rx_tx_only.rs"]
mod rx_tx_only;

const A: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
const V4A: [u8; 4] = [10, 0, 0, 1];
const V4B: [u8; 4] = [10, 0, 0, 2];
const V6A: [u8; 16] = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6B: [u8; 16] = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Ethernet A → B, IPv4 (TTL 64) 10.0.0.1 → 10.0.0.2.
fn v4() -> PacketBuilderStep<IpHeaders> {
    PacketBuilder::ethernet2(A, B).ipv4(V4A, V4B, 64)
}
/// Ethernet A → B, IPv6 (hop limit 64) 2001:db8::1 → 2001:db8::2.
fn v6() -> PacketBuilderStep<IpHeaders> {
    PacketBuilder::ethernet2(A, B).ipv6(V6A, V6B, 64)
}

fn udp4() -> Vec<u8> {
    built(|v| v4().udp(1111, 2222).write(v, b"udp over ipv4 payload"))
}
fn tcp4() -> Vec<u8> {
    built(|v| v4().tcp(3333, 80, 1000, 4096).write(v, b"tcp over ipv4"))
}
fn udp6() -> Vec<u8> {
    built(|v| v6().udp(5555, 53).write(v, b"udp over ipv6"))
}
fn tcp6() -> Vec<u8> {
    built(|v| v6().tcp(4444, 443, 7, 1024).write(v, b"tcp over ipv6"))
}
fn ping4() -> Vec<u8> {
    built(|v| {
        v4().icmpv4_echo_request(0x1234, 7)
            .write(v, b"ping payload 0123456789")
    })
}
fn ping6() -> Vec<u8> {
    built(|v| {
        v6().icmpv6_echo_request(0x4321, 9)
            .write(v, b"ping6 payload")
    })
}
fn arp_request() -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &A,
        &V4A,
        &[0; 6],
        &V4B,
    )
    .unwrap();
    built(|v| PacketBuilder::ethernet2(A, [0xff; 6]).arp(arp).write(v))
}
/// 10 bytes: shorter than an Ethernet header.
fn runt() -> Vec<u8> {
    vec![0xde; 10]
}
/// IPv4 whose IHL claims 60 bytes of header in a 40-byte packet.
fn lying_ipv4() -> Vec<u8> {
    let mut v = udp4();
    v[14] = 0x4f;
    v.truncate(14 + 40);
    v
}

/// The corpus: (frame, name).
fn corpus() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (udp4(), "udp4"),
        (tcp4(), "tcp4"),
        (udp6(), "udp6"),
        (tcp6(), "tcp6"),
        (ping4(), "ping4"),
        (ping6(), "ping6"),
        (arp_request(), "arp"),
        (runt(), "runt"),
        (lying_ipv4(), "lying_ipv4"),
    ]
}

struct Run {
    out: Vec<Vec<u8>>,
    fin: serde_json::Value,
    _dir: tempfile::TempDir,
    out_path: std::path::PathBuf,
}

/// Replay `frames` through `mode` on one pcap port looped onto itself.
fn run_mode(mode: &str, frames: &[Vec<u8>], extra: &[&str]) -> Run {
    run_port(mode, frames, extra, |inp, out| {
        format!("pcap:rx={},tx={}", inp.display(), out.display())
    })
}

/// Replay `frames` through `mode` on the port `devargs(input, output)`
/// (a pcap port, possibly wrapped) looped onto itself.
fn run_port(
    mode: &str,
    frames: &[Vec<u8>],
    extra: &[&str],
    devargs: impl Fn(&Path, &Path) -> String,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.pcap");
    let out_path = dir.path().join("out.pcap");
    write_pcap(&inp, frames);
    let port = devargs(&inp, &out_path);
    let mut args = looped(&port, mode, "1");
    args.extend_from_slice(extra);
    let o = run(&args, Duration::from_secs(60));
    let fin = final_clean(&o, mode);
    let out = read_pcap(&out_path);
    Run {
        out,
        fin,
        _dir: dir,
        out_path,
    }
}

/// rx = tx + tx_dropped + malformed + consumed on the looped port, and the
/// port counters agree with the forward counters.
fn assert_adds_up(fin: &serde_json::Value, rx_expected: u64) {
    let p = &fin["ports"][0];
    let f = &p["fwd"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(n(&f["rx_packets"]), rx_expected, "{fin}");
    assert_eq!(
        n(&f["rx_packets"]),
        n(&f["tx_packets"]) + n(&f["tx_dropped"]) + n(&f["malformed"]) + n(&f["consumed"]),
        "stats do not add up: {fin}"
    );
    let drops: u64 = f["drops"]
        .as_object()
        .map_or(0, |m| m.values().map(n).sum());
    assert_eq!(n(&f["malformed"]), drops, "per-reason drops add up: {fin}");
    assert_eq!(n(&p["rx_packets"]), n(&f["rx_packets"]), "{fin}");
    assert_eq!(n(&p["tx_packets"]), n(&f["tx_packets"]), "{fin}");
}

fn frames() -> Vec<Vec<u8>> {
    corpus().into_iter().map(|(f, _)| f).collect()
}

fn parse(f: &[u8]) -> PacketHeaders<'_> {
    PacketHeaders::from_ethernet_slice(f).unwrap_or_else(|e| panic!("etherparse: {e:?}: {f:02x?}"))
}

fn eth(h: &PacketHeaders) -> ([u8; 6], [u8; 6]) {
    match &h.link {
        Some(LinkHeader::Ethernet2(e)) => (e.source, e.destination),
        other => panic!("not ethernet: {other:?}"),
    }
}

#[test]
fn io_forwards_every_frame_unchanged() {
    let fr = frames();
    let r = run_mode("io", &fr, &[]);
    assert_eq!(r.out, fr);
    assert_adds_up(&r.fin, fr.len() as u64);
}

#[test]
fn macswap_swaps_macs_and_drops_runts() {
    let fr = frames();
    let r = run_mode("macswap", &fr, &[]);
    let expect: Vec<Vec<u8>> = fr
        .iter()
        .filter(|f| f.len() >= 14)
        .map(|f| {
            let mut g = f.clone();
            let (d, s) = g.split_at_mut(6);
            d.swap_with_slice(&mut s[..6]);
            g
        })
        .collect();
    assert_eq!(r.out, expect);
    for (o, i) in r.out.iter().zip(fr.iter().filter(|f| f.len() >= 14)) {
        if let Ok(h) = PacketHeaders::from_ethernet_slice(o) {
            let (src, dst) = eth(&h);
            assert_eq!(
                (src.to_vec(), dst.to_vec()),
                (i[..6].to_vec(), i[6..12].to_vec())
            );
        }
    }
    assert_eq!(r.fin["ports"][0]["fwd"]["malformed"], 1, "{}", r.fin);
    assert_adds_up(&r.fin, fr.len() as u64);
}

#[test]
fn mac_mode_sets_port_mac_and_peer() {
    let fr = frames();
    let r = run_mode("mac", &fr, &["--eth-peer", "0,02:12:34:56:78:9a"]);
    assert_eq!(r.out.len(), fr.len() - 1, "the runt is dropped");
    let mac = r.fin["ports"][0]["mac"]
        .as_str()
        .expect("port MAC in the final JSON");
    let mac: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut srcs = std::collections::HashSet::new();
    for (o, i) in r.out.iter().zip(fr.iter().filter(|f| f.len() >= 14)) {
        assert_eq!(o[..6], [0x02, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(o[12..], i[12..], "only the MACs change");
        srcs.insert(o[6..12].to_vec());
    }
    assert_eq!(
        srcs.into_iter().collect::<Vec<_>>(),
        [mac],
        "source = the TX port's MAC"
    );
    assert_adds_up(&r.fin, fr.len() as u64);
}

/// The UDP or TCP checksum of `h` is the one computed over its addresses.
fn assert_l4_checksum(h: &PacketHeaders, name: &str) {
    let p = h.payload.slice();
    let (got, want) = match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(a, _)), Some(TransportHeader::Udp(u))) => {
            (u.checksum, u.calc_checksum_ipv4(a, p))
        }
        (Some(NetHeaders::Ipv4(a, _)), Some(TransportHeader::Tcp(t))) => {
            (t.checksum, t.calc_checksum_ipv4(a, p))
        }
        (Some(NetHeaders::Ipv6(a, _)), Some(TransportHeader::Udp(u))) => {
            (u.checksum, u.calc_checksum_ipv6(a, p))
        }
        (Some(NetHeaders::Ipv6(a, _)), Some(TransportHeader::Tcp(t))) => {
            (t.checksum, t.calc_checksum_ipv6(a, p))
        }
        _ => return,
    };
    assert_eq!(got, want.unwrap(), "{name}: L4 checksum");
}

#[test]
fn five_tuple_swap_swaps_l2_l3_l4_and_keeps_checksums_valid() {
    let corpus = corpus();
    let fr = frames();
    let r = run_mode("5tswap", &fr, &[]);
    // The runt is dropped; the lying IPv4 goes on with only its MACs
    // swapped (the layer 5tswap could not parse is left alone); the rest
    // come back in order, fully swapped.
    let kept: Vec<&(Vec<u8>, &str)> = corpus.iter().filter(|(_, n)| *n != "runt").collect();
    assert_eq!(r.out.len(), kept.len());
    for (o, (i, name)) in r.out.iter().zip(kept) {
        if *name == "lying_ipv4" {
            assert_eq!((&o[0..6], &o[6..12]), (&i[6..12], &i[0..6]), "{name}");
            assert_eq!(&o[12..], &i[12..], "{name}: unparsed layers untouched");
            continue;
        }
        let ho = parse(o);
        let hi = parse(i);
        assert_eq!(eth(&ho), (eth(&hi).1, eth(&hi).0), "{name}: MACs swapped");
        match (&ho.net, &hi.net) {
            (Some(NetHeaders::Ipv4(a, _)), Some(NetHeaders::Ipv4(b, _))) => {
                assert_eq!(
                    (a.source, a.destination),
                    (b.destination, b.source),
                    "{name}"
                );
                assert_eq!(
                    a.header_checksum,
                    a.calc_header_checksum(),
                    "{name}: IPv4 checksum"
                );
                assert_l4_checksum(&ho, name);
            }
            (Some(NetHeaders::Ipv6(a, _)), Some(NetHeaders::Ipv6(b, _))) => {
                assert_eq!(
                    (a.source, a.destination),
                    (b.destination, b.source),
                    "{name}"
                );
                assert_l4_checksum(&ho, name);
            }
            (Some(NetHeaders::Arp(a)), Some(NetHeaders::Arp(b))) => assert_eq!(a, b, "{name}"),
            other => panic!("{name}: unexpected {other:?}"),
        }
        let ports = |h: &PacketHeaders| match &h.transport {
            Some(TransportHeader::Udp(u)) => Some((u.source_port, u.destination_port)),
            Some(TransportHeader::Tcp(t)) => Some((t.source_port, t.destination_port)),
            _ => None,
        };
        if let (Some(po), Some(pi)) = (ports(&ho), ports(&hi)) {
            assert_eq!(po, (pi.1, pi.0), "{name}: L4 ports swapped");
        }
    }
    let f = &r.fin["ports"][0]["fwd"];
    assert_eq!(f["malformed"], 1, "{}", r.fin);
    assert_eq!(f["drops"]["runt"], 1, "{}", r.fin);
    assert_eq!(f["partial"], 1, "{}", r.fin);
    assert_adds_up(&r.fin, fr.len() as u64);
}

#[test]
fn icmpecho_answers_arp_and_pings_with_valid_checksums() {
    let fr = frames();
    let r = run_mode("icmpecho", &fr, &[]);
    // Replies for arp, ping4, ping6; udp/tcp ignored, runt/lying malformed.
    assert_eq!(r.out.len(), 3, "{}", r.fin);
    let mut seen = Vec::new();
    let port_mac = r.out[0][6..12].to_vec();
    for o in &r.out {
        let h = parse(o);
        let (src, dst) = eth(&h);
        assert_eq!(src.to_vec(), port_mac, "replies come from the port MAC");
        assert_eq!(dst, A, "replies go to the requester");
        match (&h.net, &h.transport) {
            (Some(NetHeaders::Arp(a)), _) => {
                assert_eq!(a.operation, ArpOperation::REPLY);
                assert_eq!(a.sender_hw_addr(), &port_mac[..]);
                assert_eq!(a.sender_protocol_addr(), &V4B[..]);
                assert_eq!(a.target_hw_addr(), &A[..]);
                assert_eq!(a.target_protocol_addr(), &V4A[..]);
                seen.push("arp");
            }
            (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
                assert_eq!((ip.source, ip.destination), (V4B, V4A));
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                assert!(
                    matches!(icmp.icmp_type, Icmpv4Type::EchoReply(e) if e.id == 0x1234 && e.seq == 7)
                );
                let good = etherparse::Icmpv4Header::with_checksum(
                    icmp.icmp_type.clone(),
                    h.payload.slice(),
                );
                assert_eq!(icmp.checksum, good.checksum, "ICMPv4 checksum");
                seen.push("ping4");
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
                assert_eq!((ip.source, ip.destination), (V6B, V6A));
                assert!(
                    matches!(icmp.icmp_type, Icmpv6Type::EchoReply(e) if e.id == 0x4321 && e.seq == 9)
                );
                let good = etherparse::Icmpv6Header::with_checksum(
                    icmp.icmp_type,
                    ip.source,
                    ip.destination,
                    h.payload.slice(),
                )
                .unwrap();
                assert_eq!(icmp.checksum, good.checksum, "ICMPv6 checksum");
                seen.push("ping6");
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["arp", "ping4", "ping6"]);
    let f = &r.fin["ports"][0]["fwd"];
    assert_eq!(
        (f["malformed"].as_u64(), f["consumed"].as_u64()),
        (Some(2), Some(4)),
        "{}",
        r.fin
    );
    assert_eq!(
        (
            f["drops"]["runt"].as_u64(),
            f["drops"]["truncated"].as_u64()
        ),
        (Some(1), Some(1)),
        "{}",
        r.fin
    );
    assert_adds_up(&r.fin, fr.len() as u64);
    tshark_checksums_good(&r.out_path);
}

/// tshark (an independent dissector) agrees the replies' checksums are good.
fn tshark_checksums_good(p: &Path) {
    tshark_checksums_good_n(p, 3)
}

fn tshark_checksums_good_n(p: &Path, frames: usize) {
    let fields = [
        "ip.checksum.status",
        "icmp.checksum.status",
        "icmpv6.checksum.status",
        "arp.opcode",
    ];
    let what = "icmpecho checksum cross-check";
    let Some(rows) = tshark_fields(p, what, &fields, frames) else {
        return;
    };
    for f in rows {
        let ok = (f[0] == "1" && f[1] == "1") || f[2] == "1" || f[3] == "2";
        assert!(
            ok,
            "tshark says a checksum is not good (status 1 = good, 0 = bad): {f:?}"
        );
    }
}

/// Truncated, corrupted and dropped frames and "ring full" TX bursts from
/// the pmd's FaultInjector wrapped around the pcap port: every mode survives
/// (no panic), the stats still add up and nothing leaks.
#[test]
fn faults_never_panic_and_stats_still_add_up() {
    let many: Vec<Vec<u8>> = (0..40).flat_map(|_| frames()).collect();
    for mode in ["io", "macswap", "5tswap", "icmpecho", "mac"] {
        let r = run_port(mode, &many, &[], |inp, out| {
            format!(
                "fault:seed=7,rx_truncate=0.3,rx_corrupt=0.3,rx_drop=0.1,rx_short=0.2,tx_full=0.3,inner=pcap:rx={},tx={},loop=5",
                inp.display(),
                out.display()
            )
        });
        let fin = &r.fin;
        let p = &fin["ports"][0];
        let f = &p["fwd"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap();
        assert!(n(&f["rx_packets"]) > 0, "{mode}: {fin}");
        assert_eq!(
            n(&f["rx_packets"]),
            n(&f["tx_packets"]) + n(&f["tx_dropped"]) + n(&f["malformed"]) + n(&f["consumed"]),
            "{mode}: stats do not add up: {fin}"
        );
        assert!(
            n(&f["tx_dropped"]) > 0,
            "{mode}: tx_full=0.3 must drop some: {fin}"
        );
        assert_eq!(
            r.out.len() as u64,
            n(&f["tx_packets"]),
            "{mode}: written = sent"
        );
    }
}

/// A pcap port with a finite `loop` count is a complete command: no
/// `--duration`, the run ends by itself once every replayed frame went out,
/// and the output holds `loop` passes of the edited frames.
#[test]
fn finite_pcap_replay_ends_the_run_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.pcap");
    let out = dir.path().join("out.pcap");
    let fr = vec![udp4(), tcp6(), ping4()];
    write_pcap(&inp, &fr);
    for (loops, mode) in [(None, "5tswap"), (Some(3), "io")] {
        let mut port = format!("pcap:rx={},tx={}", inp.display(), out.display());
        if let Some(n) = loops {
            port.push_str(&format!(",loop={n}"));
        }
        let t = std::time::Instant::now();
        let o = run(
            &[
                "--port",
                &port,
                "--forward-mode",
                mode,
                "--no-huge",
                "--json",
            ],
            Duration::from_secs(30),
        );
        let (_, se) = text_ok(&o);
        assert!(se.contains("every finite source is done"), "{se}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let fin = final_json(&o);
        assert_eq!(fin["leaked_mbufs"], 0, "{fin}");
        let got = read_pcap(&out);
        let passes = loops.unwrap_or(1);
        assert_eq!(got.len(), fr.len() * passes, "{fin}");
        if mode == "io" {
            assert_eq!(got[..fr.len()], fr[..]);
        } else {
            // 5tswap: the UDP ports came back swapped.
            assert_eq!(&got[0][34..36], &fr[0][36..38]);
        }
    }
    // `loop=infinite` keeps going until --duration.
    let port = format!("pcap:rx={},loop=infinite", inp.display());
    let t = std::time::Instant::now();
    let o = run(
        &["--port", &port, "--no-huge", "--duration", "1", "--json"],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(t.elapsed() >= Duration::from_millis(900));
}

/// Frames bigger than an mbuf's data room arrive as chains: every editing
/// mode handles them (5tswap swaps, icmpecho answers with a checksum over
/// every segment, checked by etherparse).
#[test]
fn jumbo_multi_segment_frames_are_handled_by_every_mode() {
    let big: Vec<u8> = (0..8000u32).map(|i| (i * 13 + 1) as u8).collect();
    let udp = built(|v| v4().udp(1111, 2222).write(v, &big));
    let ping = built(|v| v4().icmpv4_echo_request(5, 6).write(v, &big[..4001]));
    let fr = vec![udp.clone(), ping.clone()];
    for mode in ["io", "macswap", "5tswap"] {
        let r = run_mode(mode, &fr, &[]);
        assert_eq!(r.out.len(), 2, "{mode}: {}", r.fin);
        assert_eq!(r.out[0].len(), udp.len());
        if mode == "5tswap" {
            assert_eq!(&r.out[0][34..38], &[0x08, 0xae, 0x04, 0x57]);
            assert_eq!(&r.out[0][42..], &udp[42..]);
        }
        assert_adds_up(&r.fin, 2);
    }
    let r = run_mode("icmpecho", &fr, &[]);
    assert_eq!(r.out.len(), 1, "{}", r.fin);
    let h = parse(&r.out[0]);
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            assert_eq!((ip.source, ip.destination), (V4B, V4A));
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            let good =
                etherparse::Icmpv4Header::with_checksum(icmp.icmp_type.clone(), h.payload.slice());
            assert_eq!(
                icmp.checksum, good.checksum,
                "ICMPv4 checksum over the chain"
            );
            assert_eq!(h.payload.slice(), &big[..4001]);
        }
        other => panic!("unexpected reply {other:?}"),
    }
    assert_adds_up(&r.fin, 2);
    tshark_checksums_good_n(&r.out_path, 1);
}

/// The per-reason drop counters are xstats too: the telemetry socket's
/// `/ports/N/xstats` shows `fwd_drop_<reason>` and `fwd_partial` while the
/// run goes on.
#[test]
fn drop_reasons_are_port_xstats_on_the_telemetry_socket() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.pcap");
    let sock = dir.path().join("t.sock");
    let mut bad = ping4();
    let n = bad.len();
    bad[n - 1] ^= 0x40; // ICMP checksum no longer verifies
    write_pcap(&inp, &[runt(), bad, ping4()]);
    let port = format!("pcap:rx={},loop=infinite", inp.display());
    let child = xfwd()
        .args(["--port", &port, "--forward-mode", "icmpecho", "--no-huge"])
        .args(["--duration", "20", "--stats-period", "0", "--telemetry"])
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn xfwd");
    let x = TelemetryClient::connect(&sock, Duration::from_secs(15)).map(|mut t| {
        std::thread::sleep(Duration::from_millis(300));
        t.ask("/ports/0/xstats")
    });
    // SIGINT (to our own child, by its PID): a clean stop with the leak audit.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let o = child.wait_with_output().expect("xfwd output");
    let x = x.expect("no telemetry socket");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 mbufs leaked"),
        "{o:?}"
    );
    let get = |k: &str| x[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {x}"));
    assert!(get("fwd_drop_runt") > 0, "{x}");
    assert!(get("fwd_drop_bad_icmp_checksum") > 0, "{x}");
    assert_eq!(get("fwd_drop_fragment"), 0, "{x}");
    assert_eq!(get("fwd_partial"), 0, "{x}");
    assert!(get("rx_loops") > 0, "{x}");
}
