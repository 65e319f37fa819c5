//! The `af_xdp` port on veth inside test namespaces: generator → veth →
//! [port A rx_burst → port B tx_burst] → veth → sink, in native and generic
//! XDP mode. Every frame sent arrives byte-exact; the shared UMEM forwards
//! with `tx_copies = 0`; mbufs of a pool outside the UMEM are copied and
//! counted; after stop every mbuf is back (leak audit) and no XDP program is
//! left on the devices.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::packet::{test_frame, PacketSocket};
use support::{huge_pool, xstat};
use xfwd_mempool::*;
use xfwd_pmd::{netdev, probe, PortConf};

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_hugepages_2m(16, what)
}

/// Forward `n` frames through two af_xdp ports; `foreign` = transmit copies
/// from a second pool instead of the received mbufs.
fn forward(mode: &str, foreign: bool, what: &str) {
    if !env_ok(what) {
        return;
    }
    let gen = Netns::new("xg");
    let dut = Netns::new("xd");
    let sink = Netns::new("xs");
    gen.veth("g0", &dut, "d0");
    dut.veth("d1", &sink, "s1");
    let pool = huge_pool("xdp_pool", 8192);
    let other = huge_pool("other_pool", 1024);
    let (mut a, mut b, mac_d0) = dut.run(|| {
        let a = probe(&format!("af_xdp:iface=d0,mode={mode}")).unwrap();
        let b = probe(&format!("af_xdp:iface=d1,mode={mode}")).unwrap();
        (a, b, netdev::mac("d0").unwrap())
    });
    assert_eq!(a.info().driver, "af_xdp");
    let conf = PortConf {
        rx_desc: 1024,
        tx_desc: 1024,
        ..PortConf::simple(&pool)
    };
    a.configure(&conf).unwrap();
    b.configure(&conf).unwrap();
    let (mut qa, mut qb) = dut.run(|| (a.start().unwrap(), b.start().unwrap()));
    assert!(dut.xdp_attached("d0").is_some(), "program attached on d0");
    assert!(
        !a.info().zero_copy,
        "veth has no zero-copy: reported honestly"
    );
    assert_eq!(xstat(a.as_ref(), "zero_copy"), 0);

    const N: u32 = 2000;
    let g_pkt = gen.run(|| PacketSocket::bind(netdev::ifindex("g0").unwrap()));
    let s_pkt = sink.run(|| PacketSocket::bind(netdev::ifindex("s1").unwrap()));
    let g_mac = gen.run(|| netdev::mac("g0").unwrap());
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| test_frame(mac_d0, g_mac, s, 60 + (s as usize * 7) % 1400))
        .collect();
    let mut other_cache = other.cache();
    let (got, fwd) = std::thread::scope(|s| {
        let sink_t = s.spawn(|| s_pkt.recv_frames(N as usize, Duration::from_secs(20)));
        let sent_ref = &sent;
        s.spawn(move || {
            for (i, f) in sent_ref.iter().enumerate() {
                g_pkt.send(f);
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut burst = MbufBatch::new(32);
        let mut copies = MbufBatch::new(32);
        let mut fwd = 0usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while fwd < N as usize && Instant::now() < deadline {
            let n = qa.rx[0].rx_burst(&mut burst);
            if n == 0 {
                qb.tx[0].flush(); // kick what waits for a batch
                qb.tx[0].tx_burst(&mut copies); // drive completions
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            let out = if foreign {
                for m in burst.drain() {
                    let mut c = other_cache.alloc().unwrap();
                    c.set_data(m.data()).unwrap();
                    copies.push(c).unwrap();
                }
                &mut copies
            } else {
                &mut burst
            };
            while !out.is_empty() && Instant::now() < deadline {
                qb.tx[0].tx_burst(out);
            }
            fwd += n;
        }
        // Let the last completions come back.
        for _ in 0..100 {
            qb.tx[0].flush();
            qb.tx[0].tx_burst(&mut copies);
            std::thread::sleep(Duration::from_millis(1));
        }
        (sink_t.join().unwrap(), fwd)
    });
    assert_eq!(fwd, N as usize, "forwarded every frame");
    assert_eq!(got.len(), N as usize, "sink got every frame");
    assert!(got == sent, "byte-exact and in order at the sink");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.ipackets, sb.opackets), (N as u64, N as u64));
    assert_eq!(sa.ibytes, sb.obytes);
    let copies = xstat(b.as_ref(), "tx_copies");
    if foreign {
        assert_eq!(
            copies, N as u64,
            "every mbuf outside the UMEM was copied and counted"
        );
    } else {
        assert_eq!(copies, 0, "shared UMEM: zero copies in user space");
    }
    drop(other_cache);
    // Stop: refused while queues live, then every mbuf comes back.
    assert!(a.stop().is_err());
    drop((qa, qb));
    a.stop().unwrap();
    b.stop().unwrap();
    pool.leak_check().unwrap();
    other.leak_check().unwrap();
    assert!(
        dut.xdp_detached_within("d0", Duration::from_secs(2)),
        "program detached at stop"
    );
    assert!(dut.xdp_detached_within("d1", Duration::from_secs(2)));
}

#[test]
fn af_xdp_ports_forward_byte_exact_native_mode_zero_copies() {
    forward("drv", false, "af_xdp port forward, drv mode");
}

#[test]
fn af_xdp_ports_forward_byte_exact_generic_mode_zero_copies() {
    forward("skb", false, "af_xdp port forward, skb mode");
}

#[test]
fn af_xdp_port_copies_and_counts_mbufs_outside_its_umem() {
    forward("skb", true, "af_xdp port, foreign pool");
}

#[test]
fn af_xdp_devargs_and_configure_errors_are_clear() {
    if !env_ok("af_xdp devargs") {
        return;
    }
    let ns = Netns::new("xe");
    let peer = Netns::new("xe2");
    ns.veth("e0", &peer, "p0");
    ns.run(|| {
        for (d, frag) in [
            ("af_xdp:", "needs `iface=NAME`"),
            ("af_xdp:iface=nope0", "interface `nope0`"),
            ("af_xdp:iface=e0,mode=fast", "expected drv or skb"),
            ("af_xdp:iface=e0,bogus=1", "unknown key `bogus`"),
            ("af_xdp:iface=e0,queues=0", "queues=0"),
            ("af_xdp:iface=e0,tx_kick_batch=0", "tx_kick_batch"),
        ] {
            let e = probe(d).unwrap_err().to_string();
            assert!(e.contains(frag), "{d}: {e}");
        }
    });
    // A pool whose buffers are smaller than a UMEM chunk is refused at configure.
    let cfg = PoolConfig {
        name: "small".into(),
        n: 512,
        data_room: 1024,
        cache_size: 0,
        ..Default::default()
    };
    let mem = Arc::new(ExtMem::heap(2 << 20, PageSize::Size2M).unwrap());
    let reg = Registry::new();
    reg.register_mem(&mem).unwrap();
    let small = MbufPool::create(&cfg, mem, &reg).unwrap();
    let mut p = ns.run(|| probe("af_xdp:iface=e0").unwrap());
    let e = p
        .configure(&PortConf::simple(&small))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mbuf size") && e.contains("2048"), "{e}");
    // Jumbo MTU: refused with the limit named.
    ns.ip(&["link", "set", "e0", "mtu", "4000"]);
    let mut p = ns.run(|| probe("af_xdp:iface=e0").unwrap());
    let pool = huge_pool("mtu_pool", 1024);
    let e = p
        .configure(&PortConf::simple(&pool))
        .unwrap_err()
        .to_string();
    assert!(e.contains("MTU") && e.contains("4000"), "{e}");
}

/// TX kicks are batched: bursts below `tx_kick_batch` wait in the TX ring
/// (copy mode sends nothing without a `sendto`), a full batch goes with one
/// kick, `flush()` hands over the rest; `tx_kick_batch=1` kicks every burst.
#[test]
fn af_xdp_tx_kicks_are_batched_and_flushed() {
    if !env_ok("af_xdp TX kick batching") {
        return;
    }
    let dut = Netns::new("xk");
    let sink = Netns::new("xk2");
    dut.veth("k1", &sink, "s1");
    let pool = huge_pool("kick_pool", 2048);
    let s_pkt = sink.run(|| PacketSocket::bind(netdev::ifindex("s1").unwrap()));
    let mac = dut.run(|| netdev::mac("k1").unwrap());
    for (devargs, kicks_per_32) in [
        ("af_xdp:iface=k1,mode=skb", 1),
        ("af_xdp:iface=k1,mode=skb,tx_kick_batch=1", 4),
    ] {
        let mut p = dut.run(|| probe(devargs).unwrap());
        p.configure(&PortConf::simple(&pool)).unwrap();
        let mut q = dut.run(|| p.start().unwrap());
        let mut cache = pool.cache();
        let mut seq = 0u32;
        let mut burst = |q: &mut xfwd_pmd::PortQueues, n: usize| {
            let mut b = MbufBatch::new(32);
            for _ in 0..n {
                let mut m = cache.alloc().unwrap();
                m.set_data(&test_frame([2, 0, 0, 0, 0, 9], mac, seq, 60))
                    .unwrap();
                seq += 1;
                b.push(m).unwrap();
            }
            assert_eq!(q.tx[0].tx_burst(&mut b), n);
        };
        // Three bursts of 8: below the batch, nothing is sent yet (unless kicks are per burst).
        for _ in 0..3 {
            burst(&mut q, 8);
        }
        let early = s_pkt.recv_frames(24, Duration::from_millis(200)).len();
        // The fourth completes the batch of 32: one kick sends all of it.
        burst(&mut q, 8);
        let full = s_pkt.recv_frames(32 - early, Duration::from_secs(2)).len() + early;
        assert_eq!(full, 32, "{devargs}: a full batch goes out");
        assert_eq!(xstat(p.as_ref(), "tx_kicks"), kicks_per_32, "{devargs}");
        if kicks_per_32 == 1 {
            assert_eq!(early, 0, "{devargs}: bursts below the batch wait for it");
        } else {
            assert_eq!(early, 24, "{devargs}: every burst is kicked at once");
        }
        // A partial batch leaves with flush().
        burst(&mut q, 5);
        q.tx[0].flush();
        assert_eq!(
            s_pkt.recv_frames(5, Duration::from_secs(2)).len(),
            5,
            "{devargs}: flushed"
        );
        drop(cache);
        drop(q);
        p.stop().unwrap();
        assert_eq!(p.stats().opackets, 37);
        drop(p);
        // Teardown is asynchronous: the next round attaches to the same device.
        assert!(dut.xdp_detached_within("k1", Duration::from_secs(2)));
    }
    pool.leak_check().unwrap();
}
