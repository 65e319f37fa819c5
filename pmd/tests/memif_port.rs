//! The memif port in one process: an xfwd server and an xfwd client over an
//! abstract socket, byte-exact both ways (descriptor chains too), link
//! state, peer loss and reconnect, and a hostile client that sends each
//! kind of malformed control message (the server refuses it and stays up).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use xfwd_mempool::*;
use xfwd_pmd::memif::proto::{self, AddRing, Init, Msg, MSG_SIZE};
use xfwd_pmd::memif::ring::{Desc, Ring};
use xfwd_pmd::sys::{EventFd, Mapping, SeqPacket, Shared};
use xfwd_pmd::*;

#[path = "memif_port/hostile.rs"]
mod hostile;

fn pool(name: &str, n: u32) -> MbufPool {
    let cfg = PoolConfig {
        name: name.into(),
        n,
        cache_size: 32,
        ..Default::default()
    };
    MbufPool::on_heap(&cfg).unwrap()
}

fn sock(tag: &str) -> String {
    format!("xfwd-test-{}-{tag}", std::process::id())
}

fn wait_up(ports: &[&dyn Port]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ports.iter().all(|p| p.link().up) {
        assert!(Instant::now() < deadline, "memif link did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn frames(n: usize, seed: u8, max: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = 60 + (i * 37) % (max - 59);
            (0..len).map(|k| (k as u8) ^ seed ^ (i as u8)).collect()
        })
        .collect()
}

/// Send `f` on `tx`, receive on `rx` until all arrive (bounded).
fn send_recv(
    p: &MbufPool,
    tx: &mut dyn TxQueue,
    rx: &mut dyn RxQueue,
    f: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut cache = p.cache();
    let mut got = Vec::new();
    let mut i = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = MbufBatch::new(32);
    let mut r = MbufBatch::new(32);
    while got.len() < f.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} arrived",
            got.len(),
            f.len()
        );
        while i < f.len() && b.len() < 32 {
            let mut m = cache.alloc().unwrap();
            m.set_data(&f[i]).unwrap();
            b.push(m).unwrap();
            i += 1;
        }
        let _ = tx.tx_burst(&mut b);
        rx.rx_burst(&mut r);
        for m in r.drain() {
            let mut v = Vec::new();
            m.copy_to_vec(&mut v);
            got.push(v);
        }
    }
    assert!(b.is_empty());
    got
}

#[test]
fn xfwd_server_and_client_roundtrip_byte_exact() {
    let ps = pool("ms", 2048);
    let pc = pool("mc", 2048);
    let name = sock("rt");
    // bsize 512 < frames of up to 1500 bytes: descriptor chains both ways.
    let mut srv = probe(&format!(
        "memif:role=server,id=4,socket={name},secret=k1,rsize=8"
    ))
    .unwrap();
    let mut cli = probe(&format!(
        "memif:role=client,id=4,socket={name},secret=k1,rsize=9,bsize=512"
    ))
    .unwrap();
    assert_eq!(srv.info().driver, "memif");
    srv.configure(&PortConf::simple(&ps)).unwrap();
    cli.configure(&PortConf::simple(&pc)).unwrap();
    let mut qs = srv.start().unwrap();
    assert!(!srv.link().up, "no client yet");
    let mut qc = cli.start().unwrap();
    wait_up(&[srv.as_ref(), cli.as_ref()]);
    // The client's region is registered next to its pool's.
    assert_eq!(pc.registry().list().len(), 2, "{:?}", pc.registry().list());

    let c2s = frames(3000, 1, 1500);
    let got = send_recv(&pc, qc.tx[0].as_mut(), qs.rx[0].as_mut(), &c2s);
    assert_eq!(got, c2s);
    let s2c = frames(3000, 2, 1500);
    let got = send_recv(&ps, qs.tx[0].as_mut(), qc.rx[0].as_mut(), &s2c);
    assert_eq!(got, s2c);
    let bytes: u64 = c2s.iter().map(|f| f.len() as u64).sum();
    let (s, c) = (srv.stats(), cli.stats());
    assert_eq!(
        (s.ipackets, s.ibytes, c.opackets, c.obytes),
        (3000, bytes, 3000, bytes)
    );
    assert_eq!((s.ierrors, c.ierrors, s.oerrors, c.oerrors), (0, 0, 0, 0));

    drop(qc);
    cli.stop().unwrap();
    // The server sees the client leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.link().up {
        assert!(Instant::now() < deadline, "server link stayed up");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The client comes back; the server accepts it again.
    let mut qc = cli.start().unwrap();
    wait_up(&[srv.as_ref(), cli.as_ref()]);
    let again = frames(100, 3, 1000);
    let got = send_recv(&pc, qc.tx[0].as_mut(), qs.rx[0].as_mut(), &again);
    assert_eq!(got, again);
    let x: std::collections::HashMap<String, u64> = srv.xstats().into_iter().collect();
    assert_eq!(
        (x["memif_connects"], x["memif_disconnects"]),
        (2, 1),
        "{x:?}"
    );
    drop((qc, qs));
    cli.stop().unwrap();
    srv.stop().unwrap();
    drop(cli);
    assert_eq!(pc.registry().list().len(), 1, "memif region unregistered");
    ps.leak_check().unwrap();
    pc.leak_check().unwrap();
}

#[test]
fn client_waits_for_a_server_and_refuses_a_wrong_secret() {
    let pc = pool("mw", 512);
    let ps = pool("mw2", 512);
    let name = sock("wait");
    let mut cli = probe(&format!(
        "memif:role=client,id=1,socket={name},secret=right"
    ))
    .unwrap();
    cli.configure(&PortConf::simple(&pc)).unwrap();
    let qc = cli.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!cli.link().up);
    let mut bad = probe(&format!(
        "memif:role=server,id=1,socket={name},secret=wrong"
    ))
    .unwrap();
    bad.configure(&PortConf::simple(&ps)).unwrap();
    let qb = bad.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !cli.link().up && !bad.link().up,
        "a wrong secret must not connect"
    );
    let x: std::collections::HashMap<String, u64> = bad.xstats().into_iter().collect();
    assert!(x["memif_refused_peers"] >= 1, "{x:?}");
    drop(qb);
    bad.stop().unwrap();
    drop(bad);
    let mut good = probe(&format!(
        "memif:role=server,id=1,socket={name},secret=right"
    ))
    .unwrap();
    good.configure(&PortConf::simple(&ps)).unwrap();
    let qg = good.start().unwrap();
    wait_up(&[good.as_ref(), cli.as_ref()]);
    drop((qc, qg));
    cli.stop().unwrap();
    good.stop().unwrap();
    pc.leak_check().unwrap();
    ps.leak_check().unwrap();
}

/// A pool in memfd memory (4 KiB pages), which another process can map.
fn memfd_pool(name: &str, n: u32) -> MbufPool {
    let cfg = PoolConfig {
        name: name.into(),
        n,
        cache_size: 32,
        ..Default::default()
    };
    let mem = std::sync::Arc::new(
        ExtMem::alloc(&ExtMemConfig {
            len: n as usize * cfg.obj_size() + (1 << 20),
            page_size: PageSize::Size4K,
            backing: Backing::Memfd,
            iova_mode: IovaMode::Va,
            allow_4k: true,
        })
        .unwrap(),
    );
    let reg = Registry::new();
    reg.register_mem(&mem).unwrap();
    MbufPool::create(&cfg, mem, &reg).unwrap()
}

#[test]
fn zero_copy_client_roundtrip_and_refusal_of_unshareable_pools() {
    let ps = pool("zs", 4096);
    let pc = memfd_pool("zc", 4096);
    let name = sock("zc");
    let mut srv = probe(&format!("memif:role=server,id=2,socket={name}")).unwrap();
    let mut cli = probe(&format!(
        "memif:role=client,id=2,socket={name},zero_copy=1,rsize=9"
    ))
    .unwrap();
    assert!(cli.info().zero_copy);
    // A heap pool cannot be shared: refused, naming the fix.
    let heap = pool("zh", 256);
    let e = cli
        .configure(&PortConf::simple(&heap))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--mem-backing memfd|hugetlbfs"), "{e}");
    srv.configure(&PortConf::simple(&ps)).unwrap();
    cli.configure(&PortConf::simple(&pc)).unwrap();
    let mut qs = srv.start().unwrap();
    let mut qc = cli.start().unwrap();
    wait_up(&[srv.as_ref(), cli.as_ref()]);
    // RX buffers are pool mbufs posted to the ring: the pool shows them out.
    let c2s = frames(2000, 5, 1500);
    let got = send_recv(&pc, qc.tx[0].as_mut(), qs.rx[0].as_mut(), &c2s);
    assert_eq!(got, c2s);
    let s2c = frames(2000, 6, 1500);
    let got = send_recv(&ps, qs.tx[0].as_mut(), qc.rx[0].as_mut(), &s2c);
    assert_eq!(got, s2c);
    assert!(
        pc.stats().in_use >= 512,
        "S2C slots hold pool mbufs: {:?}",
        pc.stats()
    );
    let x: std::collections::HashMap<String, u64> = cli.xstats().into_iter().collect();
    assert_eq!(x["memif_zero_copy"], 1);
    let (s, c) = (srv.stats(), cli.stats());
    assert_eq!(
        (s.ipackets, c.ipackets, s.ierrors, c.ierrors, c.oerrors),
        (2000, 2000, 0, 0, 0)
    );
    drop((qc, qs));
    cli.stop().unwrap();
    srv.stop().unwrap();
    // Every posted and in-flight mbuf came back.
    pc.leak_check().unwrap();
    ps.leak_check().unwrap();
}

/// Interrupt mode, both roles: an RX queue armed while its ring is empty
/// hands out an eventfd that the peer's next burst makes readable (the
/// peer kicks because the flags ask for it), then masks again and
/// receives the frame; armed with a frame already waiting it says Pending.
#[test]
fn armed_rx_queues_are_kicked_by_the_peer_in_both_roles() {
    use std::os::fd::RawFd;
    let (ps, pc) = (pool("is", 512), pool("ic", 512));
    let name = sock("intr");
    let mut srv = probe(&format!("memif:role=server,id=4,socket={name}")).unwrap();
    let mut cli = probe(&format!("memif:role=client,id=4,socket={name}")).unwrap();
    srv.configure(&PortConf::simple(&ps)).unwrap();
    cli.configure(&PortConf::simple(&pc)).unwrap();
    let mut qs = srv.start().unwrap();
    let mut qc = cli.start().unwrap();
    wait_up(&[srv.as_ref(), cli.as_ref()]);
    let f = frames(1, 7, 200);
    let wait = |fd: RawFd, t: Duration| {
        let mut ready = [false];
        xfwd_pmd::sys::wait_readable(&[fd], &mut ready, t).unwrap()
    };
    for (what, tx, rx, txp) in [
        ("client -> server", &mut qc.tx[0], &mut qs.rx[0], &pc),
        ("server -> client", &mut qs.tx[0], &mut qc.rx[0], &ps),
    ] {
        // The queue picks the connection up on its first burst.
        let mut r = MbufBatch::new(32);
        assert_eq!(rx.rx_burst(&mut r), 0);
        let Intr::Armed(fd) = rx.intr_arm() else {
            panic!("{what}: an idle memif RX queue arms");
        };
        let mut cache = txp.cache();
        let mut b = MbufBatch::new(4);
        let mut m = cache.alloc().unwrap();
        m.set_data(&f[0]).unwrap();
        b.push(m).unwrap();
        assert_eq!(tx.tx_burst(&mut b), 1, "{what}");
        assert_eq!(
            wait(fd, Duration::from_secs(10)),
            1,
            "{what}: no kick within 10 s"
        );
        rx.intr_disarm(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.is_empty() {
            rx.rx_burst(&mut r);
            assert!(Instant::now() < deadline, "{what}: frame not received");
        }
        assert_eq!(r.pop().unwrap().data(), &f[0][..], "{what}");
        // Masked again: a frame sent now is not kicked, and arming with it
        // waiting says Pending.
        let mut m = cache.alloc().unwrap();
        m.set_data(&f[0]).unwrap();
        b.push(m).unwrap();
        assert_eq!(tx.tx_burst(&mut b), 1, "{what}");
        assert_eq!(wait(fd, Duration::ZERO), 0, "{what}: kicked while masked");
        assert_eq!(rx.intr_arm(), Intr::Pending, "{what}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.is_empty() {
            rx.rx_burst(&mut r);
            assert!(
                Instant::now() < deadline,
                "{what}: second frame not received"
            );
        }
        drop(r);
        drop(b);
        drop(cache);
    }
    drop((qs, qc));
    cli.stop().unwrap();
    srv.stop().unwrap();
    ps.leak_check().unwrap();
    pc.leak_check().unwrap();
}
