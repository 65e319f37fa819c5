//! The `af_packet` port on real veth devices inside network namespaces the
//! tests create: RX and TX byte-exact (VLAN tags and chained mbufs
//! included), a generator → veth → [port A → port B] → veth → sink forward
//! where every packet is accounted for, fanout over two queues, an interface
//! deleted under a running port, and clear errors for bad devargs.
//!
//! Needs root and `ip` (the devargs tests need neither); elsewhere the tests
//! skip (and fail under CI=true). Every traffic loop is bounded by a frame
//! count and a deadline; namespaces and veths go with RAII guards; the leak
//! audit runs at the end of each test.

mod support;

/// The two-port forward test and its sink/generator helpers.
#[path = "af_packet/forward.rs"]
mod forward;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::packet::{test_frame, PacketSocket, TEST_ETHERTYPE};
use xfwd_mempool::{caps, MbufBatch, MbufPool};
use xfwd_pmd::{netdev, probe, PortConf, PortError};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd5];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5c];
const WAIT: Duration = Duration::from_secs(5);

fn env_ok(what: &str) -> bool {
    caps::require_root(what) && caps::require_tool("ip", what)
}

fn pool(name: &str, n: u32) -> MbufPool {
    support::heap_pool(name, n, 64)
}

fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 97) % 1455
}

/// A test frame with an 802.1Q tag (VID = seq % 4095 + 1) before the test EtherType.
fn vlan_frame(seq: u32, len: usize) -> Vec<u8> {
    let plain = test_frame(DST, SRC, seq, len - 4);
    let mut f = plain[..12].to_vec();
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&((seq % 4095 + 1) as u16).to_be_bytes());
    f.extend_from_slice(&plain[12..]);
    f
}

/// The sequence number of a test frame, tagged or not.
fn seq_of(f: &[u8]) -> Option<u32> {
    let et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let at = match et {
        TEST_ETHERTYPE => 14,
        0x8100 if f.len() >= 22 && f[16..18] == TEST_ETHERTYPE.to_be_bytes() => 18,
        _ => return None,
    };
    Some(u32::from_be_bytes(f.get(at..at + 4)?.try_into().ok()?))
}

/// `promiscuity` of `dev` as `ip -d link` reports it.
fn promiscuity(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&["-d", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let w: Vec<&str> = text.split_whitespace().collect();
    w.iter()
        .position(|x| *x == "promiscuity")
        .and_then(|i| w.get(i + 1)?.parse().ok())
        .expect("ip -d link shows promiscuity")
}

/// Drain `n` frames or until `deadline` from the RX queues, keyed by seq → (queue, bytes).
fn receive(
    rx: &mut [Box<dyn xfwd_pmd::RxQueue>],
    n: usize,
    deadline: Duration,
) -> (HashMap<u32, (usize, Vec<u8>)>, usize) {
    let mut got = HashMap::new();
    let mut dups = 0;
    let mut b = MbufBatch::new(64);
    let end = Instant::now() + deadline;
    while got.len() < n && Instant::now() < end {
        for (qi, q) in rx.iter_mut().enumerate() {
            q.rx_burst(&mut b);
            for m in b.drain() {
                if let Some(s) = seq_of(m.data()) {
                    if got.insert(s, (qi, m.data().to_vec())).is_some() {
                        dups += 1;
                    }
                }
            }
        }
    }
    (got, dups)
}

#[test]
fn rx_receives_peer_frames_byte_exact() {
    if !env_ok("af_packet rx") {
        return;
    }
    let p = pool("afp-rx", 2048);
    let ns = Netns::new("afrx");
    ns.veth("veth0", &ns, "veth1");
    let (mut port, peer) = ns.run(|| {
        let port = probe("af_packet:iface=veth0").unwrap();
        (port, PacketSocket::bind(netdev::ifindex("veth1").unwrap()))
    });
    let info = port.info();
    assert_eq!(info.driver, "af_packet");
    assert_eq!(info.mtu, 1500);
    assert_eq!(info.mac, ns.run(|| netdev::mac("veth0").unwrap()));
    assert!(!info.zero_copy);
    port.configure(&PortConf::simple(&p)).unwrap();
    assert_eq!(promiscuity(&ns, "veth0"), 0);
    // Started from this thread, outside the namespace: the port opens its
    // sockets next to the interface anyway.
    let mut q = port.start().unwrap();
    assert!(port.link().up);
    assert_eq!(promiscuity(&ns, "veth0"), 1, "promiscuous while started");
    const N: u32 = 300;
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| {
            if s % 10 == 3 {
                vlan_frame(s, frame_len(s).max(64))
            } else {
                test_frame(DST, SRC, s, frame_len(s))
            }
        })
        .collect();
    for f in &sent {
        peer.send(f);
    }
    let (got, dups) = receive(&mut q.rx, N as usize, WAIT);
    assert_eq!(dups, 0);
    assert_eq!(got.len(), N as usize, "every frame received");
    for (s, f) in sent.iter().enumerate() {
        assert_eq!(&got[&(s as u32)].1, f, "frame {s} byte-exact");
    }
    let st = port.stats();
    let x: HashMap<String, u64> = port.xstats().into_iter().collect();
    assert_eq!(st.ipackets, u64::from(N));
    assert_eq!(st.ibytes, sent.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(x["rx_copies"], u64::from(N), "each frame copied once");
    assert_eq!(x["rx_vlan_reinserted"], u64::from(N / 10));
    assert!(x["rx_blocks"] > 0);
    assert_eq!((st.imissed, st.ierrors), (0, 0));
    drop(q);
    port.stop().unwrap();
    assert_eq!(promiscuity(&ns, "veth0"), 0, "promiscuity restored at stop");
    drop(port);
    p.leak_check().unwrap();
}

#[test]
fn tx_frames_arrive_byte_exact_at_peer() {
    tx_case("af_packet:iface=veth0,framecnt=64", 0);
}

/// Through the qdisc, from the second of two queue pairs: the port's own RX
/// queues never see what it sends.
#[test]
fn tx_through_qdisc_on_queue_1_not_looped_back() {
    tx_case(
        "af_packet:iface=veth0,framecnt=64,qpairs=2,qdisc_bypass=0",
        1,
    );
}

fn tx_case(devargs: &str, txq: usize) {
    if !env_ok(&format!("af_packet tx {devargs}")) {
        return;
    }
    let p = pool("afp-tx", 2048);
    let ns = Netns::new("aftx");
    ns.veth("veth0", &ns, "veth1");
    let (mut port, peer) = ns.run(|| {
        let port = probe(devargs).unwrap();
        (port, PacketSocket::bind(netdev::ifindex("veth1").unwrap()))
    });
    let mut conf = PortConf::simple(&p);
    // One RX queue: a TX-only socket's frames would reach the RX socket
    // through the device taps (a fanout group would hide them from itself).
    conf.rx_queues = 1;
    conf.tx_queues = txq as u16 + 1;
    port.configure(&conf).unwrap();
    let mut q = port.start().unwrap();
    const N: u32 = 400;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|s| test_frame(DST, SRC, s, frame_len(s)))
        .collect();
    let mut cache = p.cache();
    let (mut next, mut bursts) = (0usize, 0u64);
    let mut b = MbufBatch::new(32);
    let end = Instant::now() + WAIT;
    while (next < frames.len() || !b.is_empty()) && Instant::now() < end {
        while !b.is_full() && next < frames.len() {
            let f = &frames[next];
            let mut m = cache.alloc().unwrap();
            if next % 7 == 5 && f.len() > 100 {
                // A chained packet: the port copies every segment.
                m.set_data(&f[..100]).unwrap();
                let mut tail = cache.alloc().unwrap();
                tail.set_data(&f[100..]).unwrap();
                m.chain(tail).unwrap();
            } else {
                m.set_data(f).unwrap();
            }
            b.push(m).unwrap();
            next += 1;
        }
        q.tx[txq].tx_burst(&mut b);
        bursts += 1;
    }
    // A burst may wait in the ring for more (kicks are batched): hand over
    // the rest, as the forward loop does when it goes quiet.
    q.tx[txq].flush();
    assert!(b.is_empty(), "all frames taken by the TX ring in time");
    let got = peer.recv_frames(N as usize, WAIT);
    assert_eq!(got.len(), N as usize);
    assert_eq!(got, frames, "byte-exact, in order");
    let (own, _) = receive(&mut q.rx, 1, Duration::from_millis(200));
    assert!(own.is_empty(), "the port's RX queues do not see its own TX");
    drop(cache);
    drop(q);
    port.stop().unwrap();
    let st = port.stats();
    let x: HashMap<String, u64> = port.xstats().into_iter().collect();
    assert_eq!(st.opackets, u64::from(N));
    assert_eq!(
        st.obytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(st.oerrors, 0);
    assert_eq!(x["tx_copies"], u64::from(N));
    assert!(
        x["tx_kicks"] <= bursts + 1,
        "one kick per burst at most: {} kicks, {bursts} bursts",
        x["tx_kicks"]
    );
    drop(port);
    p.leak_check().unwrap();
}

/// An Ethernet/IPv4/UDP frame of flow `flow` (UDP source port 10000+flow)
/// with "XFWD" and `seq` in the payload (the fanout hash needs real flows).
fn udp_frame(flow: u16, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let payload = 18u16;
    let total = 20 + 8 + payload;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(10_000 + flow).to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&(8 + payload).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(b"XFWD");
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(14 + total as usize, 0xab);
    f
}

fn udp_seq(f: &[u8]) -> Option<(u16, u32)> {
    if f.len() >= 50 && f[12..14] == [8, 0] && &f[42..46] == b"XFWD" {
        let flow = u16::from_be_bytes([f[34], f[35]]) - 10_000;
        Some((flow, u32::from_be_bytes(f[46..50].try_into().ok()?)))
    } else {
        None
    }
}

fn fanout_case(mode: &str) {
    let what = format!("af_packet fanout={mode}");
    if !env_ok(&what) {
        return;
    }
    let p = pool("afp-fan", 2048);
    let ns = Netns::new("affan");
    ns.veth("veth0", &ns, "veth1");
    let (mut port, peer) = ns.run(|| {
        let port = probe(&format!("af_packet:iface=veth0,qpairs=2,fanout={mode}")).unwrap();
        (port, PacketSocket::bind(netdev::ifindex("veth1").unwrap()))
    });
    let mut conf = PortConf::simple(&p);
    conf.rx_queues = 2;
    conf.tx_queues = 2;
    conf.rx_desc = 256;
    conf.tx_desc = 64;
    port.configure(&conf).unwrap();
    let mut q = port.start().unwrap();
    const N: u32 = 400;
    const FLOWS: u16 = 16;
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| udp_frame((s % u32::from(FLOWS)) as u16, s))
        .collect();
    for f in &sent {
        peer.send(f);
    }
    let mut got: HashMap<u32, usize> = HashMap::new();
    let mut flow_q: HashMap<u16, Vec<usize>> = HashMap::new();
    let (mut dups, mut per_q) = (0, [0usize; 2]);
    let mut b = MbufBatch::new(64);
    let end = Instant::now() + WAIT;
    while got.len() < N as usize && Instant::now() < end {
        for (qi, rxq) in q.rx.iter_mut().enumerate() {
            rxq.rx_burst(&mut b);
            for m in b.drain() {
                if let Some((flow, s)) = udp_seq(m.data()) {
                    assert_eq!(m.data(), sent[s as usize].as_slice(), "byte-exact");
                    per_q[qi] += 1;
                    flow_q.entry(flow).or_default().push(qi);
                    if got.insert(s, qi).is_some() {
                        dups += 1;
                    }
                }
            }
        }
    }
    assert_eq!(dups, 0, "nothing received twice");
    assert_eq!(got.len(), N as usize, "everything received");
    assert!(per_q[0] > 0 && per_q[1] > 0, "both queues used: {per_q:?}");
    if mode == "hash" {
        for (flow, qs) in &flow_q {
            assert!(
                qs.iter().all(|&x| x == qs[0]),
                "flow {flow} stays on one queue"
            );
        }
    }
    drop(q);
    port.stop().unwrap();
    let st = port.stats();
    assert_eq!(st.rxq.len(), 2);
    assert_eq!(st.rxq[0].packets + st.rxq[1].packets, u64::from(N));
    drop(port);
    p.leak_check().unwrap();
}

#[test]
fn fanout_lb_two_queues_receive_everything_once() {
    fanout_case("lb");
}

#[test]
fn fanout_hash_keeps_flows_on_one_queue() {
    fanout_case("hash");
}

#[test]
fn deleted_interface_turns_link_down_and_counts_errors() {
    if !env_ok("af_packet vanish") {
        return;
    }
    let p = pool("afp-gone", 2048);
    let ns = Netns::new("afgone");
    ns.veth("veth0", &ns, "veth1");
    let mut port = ns.run(|| probe("af_packet:iface=veth0,framecnt=64").unwrap());
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut cache = p.cache();
    let mut b = MbufBatch::new(32);
    let fill = |b: &mut MbufBatch, cache: &mut xfwd_mempool::PoolCache, from: u32| {
        while !b.is_full() {
            let mut m = cache.alloc().unwrap();
            m.set_data(&test_frame(DST, SRC, from + b.len() as u32, 100))
                .unwrap();
            b.push(m).unwrap();
        }
    };
    fill(&mut b, &mut cache, 0);
    assert_eq!(q.tx[0].tx_burst(&mut b), 32, "works before the delete");
    assert!(port.link().up);
    ns.ip(&["link", "delete", "veth0"]);
    // Before anyone polled the link: the ring takes the burst, the kick
    // answers ENXIO, so the queue knows the device is gone and revokes what
    // it held (counted as errors).
    fill(&mut b, &mut cache, 100);
    let taken_after = q.tx[0].tx_burst(&mut b);
    assert_eq!(taken_after, 32);
    let x: HashMap<String, u64> = port.xstats().into_iter().collect();
    assert_eq!((x["link_lost"], x["tx_revoked"]), (1, 32), "{x:?}");
    assert!(!port.link().up, "link down once the interface is gone");
    fill(&mut b, &mut cache, 200);
    assert_eq!(
        q.tx[0].tx_burst(&mut b),
        0,
        "TX takes nothing once the device is gone"
    );
    let mut rb = MbufBatch::new(32);
    assert_eq!(q.rx[0].rx_burst(&mut rb), 0, "RX returns nothing");
    cache.free_batch(&mut b);
    drop(cache);
    drop(q);
    port.stop().unwrap();
    let st = port.stats();
    assert!(st.oerrors >= taken_after as u64 && st.oerrors > 0, "{st:?}");
    assert_eq!(st.opackets + st.oerrors, 32 + taken_after as u64);
    let info = port.info();
    assert_eq!(info.mtu, 1500, "cached facts after the delete");
    // A restart says clearly that the interface is gone.
    let e = port.start().unwrap_err().to_string();
    assert!(e.contains("is gone"), "{e}");
    drop(port);
    p.leak_check().unwrap();
}

#[test]
fn link_down_holds_tx_frames_until_up() {
    if !env_ok("af_packet link down") {
        return;
    }
    let p = pool("afp-down", 1024);
    let ns = Netns::new("afdown");
    ns.veth("veth0", &ns, "veth1");
    let (mut port, peer) = ns.run(|| {
        let port = probe("af_packet:iface=veth0,framecnt=64").unwrap();
        (port, PacketSocket::bind(netdev::ifindex("veth1").unwrap()))
    });
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let link = port.link();
    assert!(link.up);
    assert_eq!(link.speed_mbps, 10_000, "veth reports 10G");
    ns.ip(&["link", "set", "veth0", "down"]);
    let frames: Vec<Vec<u8>> = (0..16).map(|s| test_frame(DST, SRC, s, 80)).collect();
    let mut b = MbufBatch::new(32);
    let mut cache = p.cache();
    let fill = |b: &mut MbufBatch, cache: &mut xfwd_mempool::PoolCache| {
        for f in &frames {
            let mut m = cache.alloc().unwrap();
            m.set_data(f).unwrap();
            b.push(m).unwrap();
        }
    };
    fill(&mut b, &mut cache);
    // Before anyone noticed: the ring takes them, the kick is refused
    // (ENETDOWN), which tells the queue the link is down.
    assert_eq!(q.tx[0].tx_burst(&mut b), 16, "the ring takes them");
    q.tx[0].flush();
    assert!(
        peer.recv_frames(1, Duration::from_millis(200)).is_empty(),
        "nothing leaves a down link"
    );
    assert!(!port.link().up);
    // Now TX takes nothing (no syscall either): the caller counts its drops.
    fill(&mut b, &mut cache);
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "a down link takes nothing");
    cache.free_batch(&mut b);
    ns.ip(&["link", "set", "veth0", "up"]);
    assert!(port.link().up);
    // The next burst, even empty, kicks what the ring holds.
    let end = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < 16 && Instant::now() < end {
        q.tx[0].tx_burst(&mut b);
        got.extend(peer.recv_frames(16 - got.len(), Duration::from_millis(100)));
    }
    assert_eq!(got, frames, "held frames go out after link up, in order");
    drop(cache);
    drop(q);
    port.stop().unwrap();
    let st = port.stats();
    assert_eq!((st.opackets, st.oerrors), (16, 0));
    let x: HashMap<String, u64> = port.xstats().into_iter().collect();
    assert!(x["tx_kick_busy"] >= 1, "the down link answered busy: {x:?}");
    drop(port);
    p.leak_check().unwrap();
}

#[test]
fn bad_devargs_and_configs_are_explained() {
    let p = pool("afp-bad", 256);
    for (s, frag) in [
        ("af_packet:", "needs an interface"),
        ("net_af_packet:qpairs=2", "needs an interface"),
        ("af_packet:iface=nope-xfwd0", "no interface `nope-xfwd0`"),
        ("af_packet:iface=lo,qpairs=99", "qpairs=99"),
        ("af_packet:iface=lo,framesz=abc", "framesz=abc"),
        ("af_packet:iface=lo,blocksz=12288", "power of two"),
        ("af_packet:iface=lo,fanout=random", "hash, lb or cpu"),
        ("af_packet:iface=lo,mtu=9000", "unknown key `mtu`"),
    ] {
        let e = probe(s).unwrap_err().to_string();
        assert!(e.contains(frag), "{s}: {e}");
    }
    // lo has MTU 65536: the default slots cannot hold its frames.
    let mut lo = probe("af_packet:iface=lo").unwrap();
    let e = lo.configure(&PortConf::simple(&p)).unwrap_err();
    assert!(
        matches!(
            e,
            PortError::Config {
                what: "framesz",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("MTU 65536"), "{e}");
    let e = lo.start().unwrap_err().to_string();
    assert!(e.contains("configure"), "{e}");
    let mut lo2 = probe("af_packet:iface=lo,qpairs=2").unwrap();
    let mut conf = PortConf::simple(&p);
    conf.rx_queues = 3;
    let e = lo2.configure(&conf).unwrap_err().to_string();
    assert!(e.contains("rx queues") && e.contains("1..=2"), "{e}");
    drop((lo, lo2));
    p.leak_check().unwrap();
}
