//! A hostile client speaking the memif protocol by hand: each kind of
//! malformed control message is refused with a DISCONNECT reason while the
//! server stays up, and descriptors that point outside what was shared are
//! counted and never followed.

use super::*;

struct Peer {
    fd: SeqPacket,
}

impl Peer {
    fn connect(name: &str) -> Peer {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match SeqPacket::connect(name, true) {
                Ok(fd) => return Peer { fd },
                Err(e) => {
                    assert!(Instant::now() < deadline, "connect {name}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn send_raw(&self, b: &[u8; MSG_SIZE], fd: Option<std::os::fd::BorrowedFd<'_>>) {
        self.fd.send(b, fd).unwrap();
    }

    fn send(&self, m: &Msg, fd: Option<std::os::fd::BorrowedFd<'_>>) {
        self.send_raw(&m.encode(), fd);
    }

    /// The next message (bounded wait); None once the server closed.
    fn recv(&self) -> Option<Msg> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2 * MSG_SIZE];
        loop {
            match self.fd.recv(&mut buf) {
                Ok(r) if r.len == 0 => return None,
                Ok(r) => return Some(Msg::decode(&buf[..r.len]).unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no answer from the server");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return None,
            }
        }
    }

    fn expect_disconnect(&self, frag: &str) {
        loop {
            match self.recv() {
                Some(Msg::Disconnect { reason, .. }) => {
                    assert!(reason.contains(frag), "reason `{reason}` lacks `{frag}`");
                    return;
                }
                Some(Msg::Ack) => continue,
                other => panic!("expected DISCONNECT `{frag}`, got {other:?}"),
            }
        }
    }
}

fn init(id: u32) -> Msg {
    Msg::Init(Init {
        version: proto::VERSION,
        id,
        mode: 0,
        secret: [0; 24],
        name: "hostile".into(),
    })
}

/// INIT, then ADD_REGION `index` of `size` bytes with `fd` (if any).
fn add_region(p: &Peer, index: u16, size: u64, fd: Option<std::os::fd::BorrowedFd<'_>>) {
    p.send(&init(9), None);
    p.send(&Msg::AddRegion { index, size }, fd)
}

/// INIT, then a 64 KiB region.
fn prelude(p: &Peer, mem: &std::fs::File) {
    add_region(p, 0, 65536, Some(mem.as_fd()));
}

/// The [`prelude`], then ADD_RING `ring` with `fd` as its interrupt fd.
fn add_ring(p: &Peer, mem: &std::fs::File, ring: AddRing, fd: std::os::fd::BorrowedFd<'_>) {
    prelude(p, mem);
    p.send(&Msg::AddRing(ring), Some(fd))
}

/// A memory file of `len` bytes with one valid ring at offset 0.
fn region(len: u64) -> std::fs::File {
    let f = tempfile::tempfile().unwrap();
    f.set_len(len).unwrap();
    f
}

#[test]
fn hostile_control_messages_are_refused_and_the_server_stays_up() {
    let ps = pool("mh", 512);
    let name = sock("hostile");
    let mut srv = probe(&format!("memif:role=server,id=9,socket={name}")).unwrap();
    srv.configure(&PortConf::simple(&ps)).unwrap();
    let qs = srv.start().unwrap();
    let ring = AddRing {
        flags: proto::ADD_RING_FLAG_C2S,
        index: 0,
        region: 0,
        offset: 0,
        log2_ring_size: 4,
        private_hdr_size: 0,
    };
    let efd = EventFd::new(true).unwrap();
    let mem = region(65536);

    // Each case: messages to send after HELLO, and the reason expected.
    type Step<'a> = Box<dyn Fn(&Peer) + 'a>;
    let cases: Vec<(&str, Step, &str)> = vec![
        (
            "message before INIT",
            Box::new(|p: &Peer| p.send(&Msg::Connect("x".into()), None)),
            "Unexpected message",
        ),
        (
            "wrong id",
            Box::new(|p: &Peer| p.send(&init(8), None)),
            "ID 8 not found",
        ),
        (
            "bad version",
            Box::new(|p: &Peer| {
                let mut m = init(9).encode();
                m[2] = 0x01;
                m[3] = 0x01;
                p.send_raw(&m, None)
            }),
            "Incompatible memif version",
        ),
        (
            "unknown type",
            Box::new(|p: &Peer| {
                let mut m = [0u8; MSG_SIZE];
                m[0] = 42;
                p.send_raw(&m, None)
            }),
            "unknown message type 42",
        ),
        (
            "short message",
            Box::new(|p: &Peer| {
                assert_eq!(raw_send(&p.fd, &[3u8; 64]), 64);
            }),
            "Invalid message size 64",
        ),
        (
            "region without fd",
            Box::new(|p: &Peer| add_region(p, 0, 4096, None)),
            "Missing region fd",
        ),
        (
            "region fd of the wrong kind",
            Box::new(|p: &Peer| add_region(p, 0, 4096, Some(efd.as_fd()))),
            "not a memory file",
        ),
        (
            "region larger than its file",
            Box::new(|p: &Peer| add_region(p, 0, 1 << 20, Some(mem.as_fd()))),
            "outside its file",
        ),
        (
            "region index skipped",
            Box::new(|p: &Peer| add_region(p, 3, 4096, Some(mem.as_fd()))),
            "Invalid region index 3",
        ),
        (
            "ring fd of the wrong kind",
            Box::new(|p: &Peer| add_ring(p, &mem, ring, mem.as_fd())),
            "not an eventfd",
        ),
        (
            "ring outside its region",
            Box::new(|p: &Peer| {
                add_ring(
                    p,
                    &mem,
                    AddRing {
                        offset: 65536 - 64,
                        ..ring
                    },
                    efd.as_fd(),
                )
            }),
            "outside region 0",
        ),
        (
            "ring in an unknown region",
            Box::new(|p: &Peer| add_ring(p, &mem, AddRing { region: 1, ..ring }, efd.as_fd())),
            "unknown region 1",
        ),
        (
            "more rings than negotiated",
            Box::new(|p: &Peer| add_ring(p, &mem, AddRing { index: 1, ..ring }, efd.as_fd())),
            "Invalid ring index C2S 1",
        ),
        (
            "connect with a ring missing",
            Box::new(|p: &Peer| {
                prelude(p, &mem);
                p.send(&Msg::AddRing(ring), Some(efd.as_fd()));
                p.send(&Msg::Connect("x".into()), None)
            }),
            "S2C 0 was never added",
        ),
        (
            "ring without its cookie",
            Box::new(|p: &Peer| {
                prelude(p, &mem);
                p.send(&Msg::AddRing(ring), Some(efd.as_fd()));
                p.send(
                    &Msg::AddRing(AddRing {
                        flags: 0,
                        offset: 4096,
                        ..ring
                    }),
                    Some(efd.as_fd()),
                );
                p.send(&Msg::Connect("x".into()), None)
            }),
            "wrong cookie",
        ),
    ];
    for (what, step, frag) in &cases {
        let p = Peer::connect(&name);
        match p.recv() {
            Some(Msg::Hello(h)) => assert_eq!((h.max_c2s_ring, h.max_s2c_ring), (0, 0)),
            m => panic!("{what}: expected HELLO, got {m:?}"),
        }
        step(&p);
        p.expect_disconnect(frag);
        assert!(
            p.recv().is_none(),
            "{what}: the server must close the connection"
        );
    }
    let x: std::collections::HashMap<String, u64> = srv.xstats().into_iter().collect();
    assert_eq!(x["memif_refused_peers"], cases.len() as u64, "{x:?}");
    assert_eq!(x["memif_connects"], 0);
    // Still up: a real client connects afterwards.
    let pc = pool("mh2", 512);
    let mut cli = probe(&format!("memif:role=client,id=9,socket={name}")).unwrap();
    cli.configure(&PortConf::simple(&pc)).unwrap();
    let qc = cli.start().unwrap();
    wait_up(&[srv.as_ref(), cli.as_ref()]);
    drop((qc, qs));
    cli.stop().unwrap();
    srv.stop().unwrap();
    ps.leak_check().unwrap();
    pc.leak_check().unwrap();
}

fn raw_send(fd: &SeqPacket, b: &[u8]) -> isize {
    use std::os::fd::AsRawFd;
    // SAFETY: a send of a live buffer on a socket we own.
    unsafe { libc::send(fd.as_raw_fd(), b.as_ptr().cast(), b.len(), 0) }
}

#[test]
fn hostile_descriptors_are_counted_and_never_followed() {
    let ps = pool("md", 512);
    let name = sock("desc");
    let mut srv = probe(&format!("memif:role=server,id=3,socket={name}")).unwrap();
    srv.configure(&PortConf::simple(&ps)).unwrap();
    let mut qs = srv.start().unwrap();
    // The hostile client's memory: C2S ring at 0, S2C ring at 4096.
    let mem = region(65536);
    let shm = Shared::from_mapping(Mapping::shared(&mem, 0, 65536, false).unwrap());
    let (c2s, s2c) = (
        Ring::at(&shm, 0, 4).unwrap(),
        Ring::at(&shm, 4096, 4).unwrap(),
    );
    c2s.set_cookie(proto::COOKIE);
    s2c.set_cookie(proto::COOKIE);
    let (e1, e2) = (EventFd::new(true).unwrap(), EventFd::new(true).unwrap());
    let p = Peer::connect(&name);
    assert!(matches!(p.recv(), Some(Msg::Hello(_))));
    let ring = |flags, offset| AddRing {
        flags,
        index: 0,
        region: 0,
        offset,
        log2_ring_size: 4,
        private_hdr_size: 0,
    };
    p.send(&init(3), None);
    p.send(
        &Msg::AddRegion {
            index: 0,
            size: 65536,
        },
        Some(mem.as_fd()),
    );
    p.send(
        &Msg::AddRing(ring(proto::ADD_RING_FLAG_C2S, 0)),
        Some(e1.as_fd()),
    );
    p.send(&Msg::AddRing(ring(0, 4096)), Some(e2.as_fd()));
    p.send(&Msg::Connect("hostile".into()), None);
    for _ in 0..4 {
        assert_eq!(p.recv(), Some(Msg::Ack));
    }
    assert!(matches!(p.recv(), Some(Msg::Connected(_))));
    wait_up(&[srv.as_ref()]);

    // C2S: four bad descriptors around one good one.
    let good: Vec<u8> = (0..64u8).collect();
    shm.copy_in(8192, &good);
    let d = |flags, region, offset, length| Desc {
        flags,
        region,
        length,
        offset,
        metadata: 0,
    };
    c2s.set_desc(0, d(0, 0, 65530, 100)); // past the region's end
    c2s.set_desc(1, d(0, 5, 0, 64)); // unknown region
    c2s.set_desc(2, d(0, 0, 0, 0x7fff_ffff)); // length beyond anything
    c2s.set_desc(3, d(0, 0, 8192, 64)); // fine
    c2s.set_desc(4, d(proto::DESC_FLAG_NEXT, 0, 8192, 64)); // chain never finished
    c2s.set_head(5, std::sync::atomic::Ordering::Release);
    let mut out = MbufBatch::new(32);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c2s.tail(std::sync::atomic::Ordering::Acquire) != 5 {
        qs.rx[0].rx_burst(&mut out);
        assert!(
            Instant::now() < deadline,
            "the server never consumed the ring"
        );
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out.pop().unwrap().data(), &good[..]);
    assert_eq!((srv.stats().ipackets, srv.stats().ierrors), (1, 4));
    // A head far past anything the client could have filled: refused.
    c2s.set_head(5 + 100, std::sync::atomic::Ordering::Release);
    assert_eq!(qs.rx[0].rx_burst(&mut out), 0);
    assert_eq!(c2s.tail(std::sync::atomic::Ordering::Acquire), 5);

    // S2C: the client offers a buffer outside its region; the server
    // refuses to write there.
    s2c.set_desc(0, d(0, 0, 65000, 2048));
    s2c.set_head(1, std::sync::atomic::Ordering::Release);
    let mut cache = ps.cache();
    let mut b = MbufBatch::new(4);
    let mut m = cache.alloc().unwrap();
    m.set_data(&good).unwrap();
    b.push(m).unwrap();
    assert_eq!(qs.tx[0].tx_burst(&mut b), 0);
    assert_eq!(srv.stats().oerrors, 1);
    assert_eq!(s2c.tail(std::sync::atomic::Ordering::Acquire), 0);
    drop(b);
    drop(cache);

    drop(p);
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.link().up {
        assert!(
            Instant::now() < deadline,
            "link stayed up after the peer left"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(qs);
    srv.stop().unwrap();
    ps.leak_check().unwrap();
}
