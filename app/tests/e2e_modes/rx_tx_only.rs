//! The modes that only receive or only send: rxonly consumes every frame,
//! txonly and flowgen generate valid frames (flows, timestamps, addresses).

use super::*;

#[test]
fn rxonly_consumes_everything() {
    let fr = frames();
    let r = run_mode("rxonly", &fr, &[]);
    assert!(r.out.is_empty());
    assert_eq!(r.fin["ports"][0]["fwd"]["consumed"], fr.len() as u64);
    assert_adds_up(&r.fin, fr.len() as u64);
}

fn generated(mode: &str, extra: &[&str]) -> (Vec<Vec<u8>>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen.pcap");
    let port = format!("pcap:tx={}", out.display());
    let mut args = looped(&port, mode, "0.2");
    args.extend([
        "--txpkts",
        "80",
        "--tx-ip",
        "10.1.0.1,10.2.0.1",
        "--tx-udp",
        "1000,2000",
        "--tx-flows",
        "4",
    ]);
    args.extend_from_slice(extra);
    let o = run(&args, Duration::from_secs(60));
    let fin = final_clean(&o, "run");
    (read_pcap(&out), fin)
}

#[test]
fn txonly_generates_valid_udp_over_flows_with_timestamps() {
    let (out, fin) = generated("txonly", &[]);
    assert!(!out.is_empty());
    let f = &fin["ports"][0]["fwd"];
    assert_eq!(out.len() as u64, f["tx_packets"].as_u64().unwrap(), "{fin}");
    assert_eq!(
        f["generated"].as_u64().unwrap(),
        f["tx_packets"].as_u64().unwrap() + f["tx_dropped"].as_u64().unwrap()
    );
    let mut sports = std::collections::BTreeSet::new();
    for o in &out {
        assert_eq!(o.len(), 80);
        let h = parse(o);
        let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
            panic!("not ipv4")
        };
        assert_eq!((ip.source, ip.destination), ([10, 1, 0, 1], [10, 2, 0, 1]));
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let Some(TransportHeader::Udp(u)) = &h.transport else {
            panic!("not udp")
        };
        assert_eq!(u.destination_port, 2000);
        sports.insert(u.source_port);
        assert_eq!(&h.payload.slice()[..6], b"xfwdTS", "latency stamp");
    }
    assert_eq!(
        sports.into_iter().collect::<Vec<_>>(),
        [1000, 1001, 1002, 1003]
    );
}

#[test]
fn flowgen_varies_destination_ips() {
    let (out, _) = generated("flowgen", &[]);
    let mut dsts = std::collections::BTreeSet::new();
    for o in &out {
        let h = parse(o);
        let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        dsts.insert(ip.destination);
    }
    assert_eq!(dsts.len(), 4, "{dsts:?}");
    assert!(dsts.contains(&[10, 2, 0, 3]));
}
