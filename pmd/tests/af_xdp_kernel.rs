//! AF_XDP on real veth devices inside network namespaces created by the
//! tests: the XDP loader in generic and native mode, a UMEM over a 2 MiB
//! hugepage laid out like the mbuf pool, RX and TX byte-exact, shared UMEM
//! forwarding across two devices without copies, and detach on drop
//! (SIGKILL and guard cleanup: `af_xdp_cleanup.rs`).
//!
//! Needs root and `ip`; elsewhere the tests skip (and fail under CI=true).
//! Every traffic loop is bounded by a frame count and a deadline.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::hugepages::HugeArea;
use support::netns::Netns;
use support::packet::{test_frame, test_seq, PacketSocket};
use support::xdp::{
    chunk, env_ok, frame_len, huge, small_cfg, umem_over, zero_desc, DETACH, HDR, HEADROOM, OBJ,
};
use xfwd_mempool::caps;
use xfwd_pmd::af_xdp::{
    desc_base, desc_data, desc_encode, desc_offset, BindMode, BpfInsn, BusyPoll, Umem, XdpDesc,
    XdpError, XdpMode, XdpProgram, XdpRedirect, XskConfig, XskSocket, XDP_PACKET_HEADROOM,
};
use xfwd_pmd::netdev;

/// The set-up most tests share: a veth pair `veth0` ⇄ `veth1` in a
/// namespace of its own and a UMEM over one 2 MiB hugepage area.
///
/// Fields drop in declaration order: the UMEM handle first, then the
/// namespace (its veth pair), the hugepage area last, so the memory under
/// the UMEM outlives it. Sockets and XDP links a test makes are locals
/// declared after its `Rig`, so they drop before it.
struct Rig {
    umem: Arc<Umem>,
    ns: Netns,
    area: HugeArea,
}

impl Rig {
    /// `None` (the test skips; a failure under CI=true) without root, `ip`
    /// or a hugepage. `queues` RX and TX queues on each veth end.
    fn new(what: &str, tag: &str, queues: u32) -> Option<Rig> {
        if !env_ok(what) {
            return None;
        }
        let area = huge(what)?;
        let ns = Netns::new(tag);
        ns.veth_queues("veth0", &ns, "veth1", queues);
        let umem = umem_over(area.base(), area.len());
        Some(Rig { umem, ns, area })
    }

    /// An AF_PACKET socket on `veth1` and the MACs of `veth0`, `veth1`.
    fn peer(&self) -> (PacketSocket, [u8; 6], [u8; 6]) {
        self.ns.run(|| {
            (
                PacketSocket::bind(netdev::ifindex("veth1").unwrap()),
                netdev::mac("veth0").unwrap(),
                netdev::mac("veth1").unwrap(),
            )
        })
    }

    /// The XDP redirect program on `veth0` (one queue) in `mode` and a
    /// socket of `cfg` on its queue 0, entered in the program's map.
    fn redirect(&self, mode: XdpMode, cfg: &XskConfig) -> (XdpRedirect, XskSocket) {
        self.ns.run(|| {
            let if0 = netdev::ifindex("veth0").unwrap();
            let xdp = XdpRedirect::attach(if0, 1, mode).unwrap();
            let xsk = XskSocket::bind(&self.umem, if0, 0, cfg).unwrap();
            xdp.map().insert(0, xsk.as_raw_fd()).unwrap();
            (xdp, xsk)
        })
    }
}

/// Test frames `0..n` from `src` to `dst` sent on `pkt`; what was sent.
fn send_frames(pkt: &PacketSocket, dst: [u8; 6], src: [u8; 6], n: u32) -> Vec<Vec<u8>> {
    let sent: Vec<Vec<u8>> = (0..n)
        .map(|s| test_frame(dst, src, s, frame_len(s)))
        .collect();
    for f in &sent {
        pkt.send(f);
    }
    sent
}

/// Attach in `mode`, receive frames sent by AF_PACKET on the peer, byte-exact.
fn xsk_receives_byte_exact(mode: XdpMode, cfg: XskConfig, what: &str) {
    let Some(rig) = Rig::new(what, "rx", 1) else {
        return;
    };
    let (ns, area) = (&rig.ns, &rig.area);
    const N: u32 = 256;
    ns.run(|| {
        rig.umem
            .config()
            .check_mtu(netdev::mtu("veth0").unwrap())
            .unwrap()
    });
    let (xdp, mut xsk) = rig.redirect(mode, &cfg);
    let (pkt, mac0, mac1) = rig.peer();
    let shown = ns.xdp_attached("veth0");
    let expect = if mode == XdpMode::Drv {
        "xdp"
    } else {
        "xdpgeneric"
    };
    assert_eq!(
        shown.as_deref(),
        Some(expect),
        "ip link shows the program in {mode:?} mode"
    );
    assert!(
        !xsk.info().zero_copy,
        "veth has no zero-copy: XDP_OPTIONS must say copy"
    );
    assert!(!xsk.info().shared_umem);

    let fills: Vec<u64> = (0..512).map(chunk).collect();
    assert_eq!(xsk.rx_mut().fill.produce(&fills), fills.len());
    let sent = send_frames(&pkt, mac0, mac1, N);
    let mut got = Vec::new();
    let mut descs = [zero_desc(); 64];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < N as usize && Instant::now() < deadline {
        let rx = xsk.rx_mut();
        let n = rx.rx.consume(&mut descs);
        if n == 0 {
            rx.wakeup().unwrap();
            rx.poll(Duration::from_millis(10)).unwrap();
            continue;
        }
        let mut refill = Vec::with_capacity(n);
        for d in &descs[..n] {
            let base = desc_base(d.addr);
            assert!(
                fills.contains(&base),
                "RX low bits {base:#x} are the posted chunk"
            );
            assert_eq!(desc_offset(d.addr), (HEADROOM + XDP_PACKET_HEADROOM) as u64);
            let bytes = area.read(desc_data(d.addr) as usize, d.len as usize);
            if test_seq(&bytes).is_some() {
                got.push(bytes);
            }
            refill.push(base);
        }
        assert_eq!(
            rx.fill.produce(&refill),
            n,
            "fill ring has room for recycled chunks"
        );
    }
    assert_eq!(got.len(), N as usize, "all frames received within 5 s");
    assert!(got == sent, "frames byte-exact and in order");
    let st = xsk.stats().unwrap();
    assert_eq!((st.rx_invalid_descs, st.rx_dropped), (0, 0), "{st:?}");

    xdp.map().remove(0).unwrap();
    drop(xsk);
    drop(xdp);
    assert!(
        ns.xdp_detached_within("veth0", DETACH),
        "the link's drop detached the program"
    );
}

#[test]
fn xsk_receives_byte_exact_generic_mode() {
    xsk_receives_byte_exact(XdpMode::Skb, small_cfg(), "AF_XDP RX in skb mode");
}

#[test]
fn xsk_receives_byte_exact_native_mode() {
    xsk_receives_byte_exact(XdpMode::Drv, small_cfg(), "AF_XDP RX in drv mode");
}

#[test]
fn xsk_receives_byte_exact_native_mode_with_busy_poll() {
    let cfg = XskConfig {
        busy_poll: Some(BusyPoll {
            usecs: 50,
            budget: 64,
            prefer: true,
        }),
        ..small_cfg()
    };
    xsk_receives_byte_exact(XdpMode::Drv, cfg, "AF_XDP RX in drv mode, busy poll");
}

/// Two queues of one device, one socket each, sharing one UMEM (each with its
/// own fill and completion ring): every frame arrives on one of them.
#[test]
fn one_umem_shared_by_the_queues_of_a_multi_queue_device() {
    let what = "AF_XDP shared UMEM across queues";
    let Some(rig) = Rig::new(what, "mq", 2) else {
        return;
    };
    let (ns, area, umem) = (&rig.ns, &rig.area, &rig.umem);
    const N: u32 = 128;
    let (xdp, mut socks) = ns.run(|| {
        let if0 = netdev::ifindex("veth0").unwrap();
        let q = netdev::queues("veth0").unwrap();
        assert_eq!(q, netdev::Queues { rx: 2, tx: 2 });
        let xdp = XdpRedirect::attach(if0, q.rx, XdpMode::Skb).unwrap();
        let socks: Vec<XskSocket> = (0..q.rx)
            .map(|qid| XskSocket::bind(umem, if0, qid, &small_cfg()).unwrap())
            .collect();
        for (qid, s) in socks.iter().enumerate() {
            xdp.map().insert(qid as u32, s.as_raw_fd()).unwrap();
        }
        (xdp, socks)
    });
    let (pkt, mac0, mac1) = rig.peer();
    assert!(!socks[0].info().shared_umem && socks[1].info().shared_umem);
    // Disjoint buffer sets per queue: the UMEM is shared, the buffers are not.
    for (i, s) in socks.iter_mut().enumerate() {
        let fills: Vec<u64> = (0..256).map(|k| chunk(i as u64 * 256 + k)).collect();
        assert_eq!(s.rx_mut().fill.produce(&fills), 256);
    }
    let sent = send_frames(&pkt, mac0, mac1, N);
    let mut got = Vec::new();
    let mut descs = [zero_desc(); 64];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < N as usize && Instant::now() < deadline {
        let mut idle = true;
        for (i, s) in socks.iter_mut().enumerate() {
            let n = s.rx_mut().rx.consume(&mut descs);
            idle &= n == 0;
            for d in &descs[..n] {
                let k = (desc_base(d.addr) - HDR) / OBJ;
                assert_eq!(
                    k as usize / 256,
                    i,
                    "frame landed in a buffer of its own queue"
                );
                let bytes = area.read(desc_data(d.addr) as usize, d.len as usize);
                if test_seq(&bytes).is_some() {
                    got.push(bytes);
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got.sort_by_key(|f| test_seq(f));
    assert_eq!(
        got.len(),
        N as usize,
        "all frames received on the two queues"
    );
    assert!(got == sent, "frames byte-exact");
    for q in 0..2 {
        xdp.map().remove(q).unwrap();
    }
}

#[test]
fn rx_without_fill_buffers_is_counted_as_dropped() {
    let what = "AF_XDP RX drop accounting";
    let Some(rig) = Rig::new(what, "drop", 1) else {
        return;
    };
    const N: u32 = 20;
    let (xdp, mut xsk) = rig.redirect(XdpMode::Skb, &small_cfg());
    let (pkt, mac0, mac1) = rig.peer();
    // No fill buffers posted: every frame must be dropped and counted, none delivered.
    for s in 0..N {
        pkt.send(&test_frame(mac0, mac1, s, 100));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut st = xsk.stats().unwrap();
    while st.rx_dropped < N as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        st = xsk.stats().unwrap();
    }
    assert_eq!(st.rx_dropped, N as u64, "{st:?}");
    assert!(st.rx_fill_ring_empty_descs > 0, "{st:?}");
    assert_eq!(xsk.rx_mut().rx.available(), 0);
    xdp.map().remove(0).unwrap();
}

#[test]
fn xsk_transmits_byte_exact_and_completes_addresses_verbatim() {
    let what = "AF_XDP TX";
    let Some(rig) = Rig::new(what, "tx", 1) else {
        return;
    };
    let area = &rig.area;
    const N: u32 = 200; // > 32: copy mode needs several kicks
    let mut xsk = rig.ns.run(|| {
        XskSocket::bind(
            &rig.umem,
            netdev::ifindex("veth0").unwrap(),
            0,
            &small_cfg(),
        )
        .unwrap()
    });
    let (pkt, mac0, mac1) = rig.peer();
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| test_frame(mac1, mac0, s, frame_len(s)))
        .collect();
    let descs: Vec<XdpDesc> = sent
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let base = chunk(i as u64);
            area.write((base + 64) as usize, f);
            // Both address forms are valid in unaligned mode: plain and offset-encoded.
            let addr = if i % 2 == 0 {
                base + 64
            } else {
                desc_encode(base, 64)
            };
            XdpDesc {
                addr,
                len: f.len() as u32,
                options: 0,
            }
        })
        .collect();
    let tx = xsk.tx_mut();
    assert_eq!(tx.tx.produce(&descs), N as usize);
    assert_eq!(tx.flush(1000).unwrap(), 0, "kick loop drained the TX ring");
    let mut comps = Vec::new();
    let mut buf = [0u64; 64];
    let deadline = Instant::now() + Duration::from_secs(5);
    while comps.len() < N as usize && Instant::now() < deadline {
        let n = tx.comp.consume(&mut buf);
        comps.extend_from_slice(&buf[..n]);
        if n == 0 {
            tx.kick().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let posted: Vec<u64> = descs.iter().map(|d| d.addr).collect();
    assert_eq!(
        comps, posted,
        "completions return the TX addresses verbatim, in order"
    );
    let got = pkt.recv_frames(N as usize, Duration::from_secs(5));
    assert_eq!(got.len(), N as usize, "peer received every frame");
    assert!(got == sent, "frames byte-exact and in order");
    assert_eq!(xsk.stats().unwrap().tx_invalid_descs, 0);
}

/// gen netns (g0) → d0 [XSK A, owner of the UMEM] ⇒ descriptor move ⇒ d1 [XSK B,
/// shared UMEM] → sink netns (s1). No byte of a frame is copied in user space.
fn shared_umem_forward(mode: XdpMode, what: &str) {
    if !env_ok(what) {
        return;
    }
    let Some(area) = huge(what) else { return };
    let gen = Netns::new("gen");
    let dut = Netns::new("dut");
    let sink = Netns::new("sink");
    gen.veth("g0", &dut, "d0");
    dut.veth("d1", &sink, "s1");
    const N: u32 = 300;
    let umem = umem_over(area.base(), area.len());
    let (xdp, mut a, mut b, mac_d0) = dut.run(|| {
        let d0 = netdev::ifindex("d0").unwrap();
        let d1 = netdev::ifindex("d1").unwrap();
        let xdp = XdpRedirect::attach(d0, 1, mode).unwrap();
        let a = XskSocket::bind(&umem, d0, 0, &small_cfg()).unwrap();
        // Flags are inherited when sharing; asking for copy again must not break it.
        let b = XskSocket::bind(&umem, d1, 0, &small_cfg()).unwrap();
        xdp.map().insert(0, a.as_raw_fd()).unwrap();
        (xdp, a, b, netdev::mac("d0").unwrap())
    });
    assert!(
        !a.info().shared_umem && b.info().shared_umem,
        "B joined A's UMEM"
    );
    assert_eq!(a.info().zero_copy, b.info().zero_copy, "mode is inherited");
    let g_pkt = gen.run(|| PacketSocket::bind(netdev::ifindex("g0").unwrap()));
    let s_pkt = sink.run(|| PacketSocket::bind(netdev::ifindex("s1").unwrap()));
    let g_mac = gen.run(|| netdev::mac("g0").unwrap());
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| test_frame(mac_d0, g_mac, s, frame_len(s)))
        .collect();

    let fills: Vec<u64> = (0..800).map(chunk).collect();
    assert_eq!(a.rx_mut().fill.produce(&fills), fills.len());

    let (got, forwarded, rx_addrs, comp_addrs) = std::thread::scope(|s| {
        let sink_t = s.spawn(|| s_pkt.recv_frames(N as usize, Duration::from_secs(10)));
        let sent_ref = &sent;
        let gen_t = s.spawn(move || {
            for (i, f) in sent_ref.iter().enumerate() {
                g_pkt.send(f);
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_millis(2)); // stay below the forwarder's pace
                }
            }
        });
        // The forwarder: RX descriptors of A become TX descriptors of B as they are.
        let mut descs = [zero_desc(); 64];
        let mut comps = [0u64; 64];
        let (mut forwarded, mut rx_addrs, mut comp_addrs) = (0usize, Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while (forwarded < N as usize || comp_addrs.len() < forwarded) && Instant::now() < deadline
        {
            let n = a.rx_mut().rx.consume(&mut descs);
            if n > 0 {
                rx_addrs.extend(descs[..n].iter().map(|d| d.addr));
                forwarded += n;
                let mut put = 0;
                while put < n && Instant::now() < deadline {
                    put += b.tx_mut().tx.produce(&descs[put..n]);
                    b.tx_mut().flush(64).unwrap();
                }
            }
            let tx = b.tx_mut();
            tx.flush(64).unwrap();
            let c = tx.comp.consume(&mut comps);
            comp_addrs.extend_from_slice(&comps[..c]);
            // Recycle to A's fill ring: recompute the chunk base (drop the offset bits).
            let bases: Vec<u64> = comps[..c].iter().map(|&x| desc_base(x)).collect();
            assert_eq!(a.rx_mut().fill.produce(&bases), c);
            if n == 0 && c == 0 {
                a.rx_mut().poll(Duration::from_millis(1)).unwrap();
            }
        }
        gen_t.join().unwrap();
        (sink_t.join().unwrap(), forwarded, rx_addrs, comp_addrs)
    });
    assert_eq!(forwarded, N as usize, "forwarded every frame within 10 s");
    assert_eq!(got.len(), N as usize, "sink received every frame");
    assert!(got == sent, "frames byte-exact and in order at the sink");
    assert_eq!(
        comp_addrs, rx_addrs,
        "B completed exactly the buffers A received: zero copies"
    );
    let (sa, sb) = (a.stats().unwrap(), b.stats().unwrap());
    assert_eq!(
        (sa.rx_dropped, sa.rx_invalid_descs, sb.tx_invalid_descs),
        (0, 0, 0),
        "{sa:?} {sb:?}"
    );

    xdp.map().remove(0).unwrap();
    drop((a, b, xdp));
    assert!(dut.xdp_detached_within("d0", DETACH));
}

#[test]
fn shared_umem_forwards_across_devices_without_copies_generic_mode() {
    shared_umem_forward(XdpMode::Skb, "AF_XDP shared UMEM forward, skb mode");
}

#[test]
fn shared_umem_forwards_across_devices_without_copies_native_mode() {
    shared_umem_forward(XdpMode::Drv, "AF_XDP shared UMEM forward, drv mode");
}

#[test]
fn native_mode_on_veth_with_jumbo_peer_mtu_is_refused_with_a_hint() {
    let what = "XDP native attach MTU limit";
    if !env_ok(what) {
        return;
    }
    let ns = Netns::new("mtu");
    ns.veth("veth0", &ns, "veth1");
    ns.ip(&["link", "set", "veth1", "mtu", "9000"]);
    ns.run(|| {
        let if0 = netdev::ifindex("veth0").unwrap();
        assert_eq!(netdev::mtu("veth1").unwrap(), 9000);
        let err = XdpRedirect::attach(if0, 1, XdpMode::Drv).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ERANGE), "{err}");
        assert!(err.to_string().contains("MTU"), "{err}");
        let generic =
            XdpRedirect::attach(if0, 1, XdpMode::Skb).expect("generic mode has no MTU limit");
        assert_eq!(ns.xdp_attached("veth0").as_deref(), Some("xdpgeneric"));
        drop(generic);
    });
    assert!(ns.xdp_detached_within("veth0", DETACH));
}

#[test]
fn verifier_log_is_returned_when_a_program_is_refused() {
    if !caps::require_root("BPF_PROG_LOAD") {
        return;
    }
    // `exit` with r0 never written: the verifier refuses it.
    let err = XdpProgram::load("bad", &[BpfInsn::new(0x95, 0, 0, 0, 0)], 0).unwrap_err();
    match &err {
        XdpError::Verifier { log, .. } => assert!(log.contains("R0"), "log: {log}"),
        other => panic!("expected a verifier error, got {other}"),
    }
}

#[test]
fn socket_options_modes_stats_and_busy_queue_are_reported() {
    let what = "AF_XDP socket options";
    let Some(rig) = Rig::new(what, "opts", 1) else {
        return;
    };
    let umem = &rig.umem;
    rig.ns.run(|| {
        let if0 = netdev::ifindex("veth0").unwrap();
        assert_eq!(
            netdev::queues("veth0").unwrap(),
            netdev::Queues { rx: 1, tx: 1 }
        );
        assert_eq!(netdev::mtu("veth0").unwrap(), 1500);
        let zc = XskConfig {
            mode: BindMode::ZeroCopy,
            ..small_cfg()
        };
        let err = XskSocket::bind(umem, if0, 0, &zc).unwrap_err();
        assert!(matches!(err, XdpError::ZeroCopyUnsupported { .. }), "{err}");
        let bad = XskConfig {
            rx_size: 1000,
            ..small_cfg()
        };
        assert!(matches!(
            XskSocket::bind(umem, if0, 0, &bad),
            Err(XdpError::Config(_))
        ));
        let cfg = XskConfig {
            mode: BindMode::Copy,
            busy_poll: Some(BusyPoll {
                usecs: 20,
                budget: 64,
                prefer: true,
            }),
            ..small_cfg()
        };
        let xsk = XskSocket::bind(umem, if0, 0, &cfg).unwrap();
        assert!(!xsk.info().zero_copy && !xsk.info().shared_umem);
        assert_eq!(xsk.stats().unwrap(), Default::default());
        // A second socket on the same (device, queue) is refused with a clear error,
        // over the same UMEM (caught before the kernel) and over another one (EBUSY).
        let err = XskSocket::bind(umem, if0, 0, &small_cfg()).unwrap_err();
        assert!(
            matches!(err, XdpError::QueueInUse { queue: 0, .. }),
            "{err}"
        );
        let other = support::hugepages::Anon4k::new(1 << 20);
        let umem2 = umem_over(other.base(), other.len());
        let err = XskSocket::bind(&umem2, if0, 0, &small_cfg()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
        assert!(err.to_string().contains("already bound"), "{err}");
        // Queue 1 does not exist on a single-queue veth.
        assert!(XskSocket::bind(umem, if0, 1, &small_cfg()).is_err());
        drop(xsk);
        // The queue is free again once the socket is gone (bind retries the async teardown).
        let again = XskSocket::bind(umem, if0, 0, &small_cfg()).unwrap();
        assert!(
            !again.info().shared_umem,
            "all members gone: the UMEM registers afresh"
        );
    });
}
