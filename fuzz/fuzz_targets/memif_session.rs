//! The memif server's handshake state machine, fed by a hostile client:
//! a started `memif:role=server` port (heap pool) and, per input, one
//! connection that sends the input's 128-byte chunks as control messages,
//! in order. Byte 127 of a chunk (read by no message) picks the descriptor
//! attached: bit 0 set = none, else ADD_REGION gets a memory file of the
//! message's size (at most 1 MiB, the ring cookie at every 128 bytes) and
//! ADD_RING an eventfd; bit 1 swaps
//! the two kinds. The server's answers are read after each message.
//!
//! Invariants: nothing panics; the server sends only HELLO first, then
//! ACK, CONNECTED or DISCONNECT (with a reason), each a valid message;
//! after a DISCONNECT it closes; and after every session it is still up:
//! the next connection is greeted with HELLO.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};
use xfwd_mempool::{MbufPool, PoolConfig};
use xfwd_pmd::memif::proto::{self, Msg, MSG_SIZE};
use xfwd_pmd::port::{Port, PortConf, PortQueues};
use xfwd_pmd::sys::{EventFd, SeqPacket};

struct Server {
    name: String,
    _port: Box<dyn Port>,
    _queues: PortQueues,
    _pool: MbufPool,
}

fn server() -> Server {
    let pool = MbufPool::on_heap(&PoolConfig {
        name: "fuzz-memif".into(),
        n: 1024,
        cache_size: 32,
        ..Default::default()
    })
    .expect("pool");
    let name = format!("xfwd-fuzz-memif-{}", std::process::id());
    let mut port =
        xfwd_pmd::probe(&format!("memif:role=server,id=9,socket={name}")).expect("probe");
    port.configure(&PortConf::simple(&pool)).expect("configure");
    let queues = port.start().expect("start");
    Server {
        name,
        _port: port,
        _queues: queues,
        _pool: pool,
    }
}

thread_local! {
    static SERVER: Server = server();
}

/// The next message from the server within `limit`; `Err(())` once it
/// closed.
fn recv(c: &SeqPacket, limit: Duration) -> Result<Option<Msg>, ()> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 2 * MSG_SIZE];
    loop {
        match c.recv(&mut buf) {
            Ok(r) if r.len == 0 => return Err(()),
            Ok(r) => {
                assert!(
                    !r.truncated && r.fds.is_empty(),
                    "server sent {} B, fds {}",
                    r.len,
                    r.fds.len()
                );
                let m = Msg::decode(&buf[..r.len])
                    .unwrap_or_else(|e| panic!("the server sent an undecodable message: {e}"));
                return Ok(Some(m));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(_) => return Err(()),
        }
    }
}

fn connect(name: &str) -> SeqPacket {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match SeqPacket::connect(name, true) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "the server is gone: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A memory file of `len` bytes (unlinked at once), with the ring cookie
/// at every 128-byte boundary so rings placed anywhere aligned can pass the
/// server's checks at CONNECT.
fn memory(len: u64) -> std::fs::File {
    let p = std::env::temp_dir().join(format!("xfwd-fuzz-memif-{}.mem", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .expect("memory file");
    let _ = std::fs::remove_file(&p);
    let mut pattern = vec![0u8; len as usize];
    for at in (0..pattern.len().saturating_sub(3)).step_by(128) {
        pattern[at..at + 4].copy_from_slice(&proto::COOKIE.to_le_bytes());
    }
    f.write_all(&pattern).expect("write memory file");
    f
}

fuzz_target!(|data: &[u8]| {
    SERVER.with(|s| {
        let c = connect(&s.name);
        match recv(&c, Duration::from_secs(5)) {
            Ok(Some(Msg::Hello(_))) => {}
            other => panic!("no HELLO from the server: {other:?}"),
        }
        let efd = EventFd::new(true).expect("eventfd");
        for chunk in data.chunks(MSG_SIZE).take(24) {
            let mut m = [0u8; MSG_SIZE];
            m[..chunk.len()].copy_from_slice(chunk);
            let ctl = m[MSG_SIZE - 1];
            let ty = u16::from_le_bytes([m[0], m[1]]);
            let size = u64::from_le_bytes(m[4..12].try_into().unwrap()).min(1 << 20);
            let file = (ty == 4 || ty == 5).then(|| memory(if ty == 4 { size } else { 4096 }));
            let (region_fd, ring_fd): (Option<BorrowedFd<'_>>, Option<BorrowedFd<'_>>) =
                (file.as_ref().map(|f| f.as_fd()), Some(efd.as_fd()));
            let (for_region, for_ring) = if ctl & 2 != 0 {
                (ring_fd, region_fd)
            } else {
                (region_fd, ring_fd)
            };
            let fd = match (ctl & 1 != 0, ty) {
                (true, _) => None,
                (false, 4) => for_region,
                (false, 5) => for_ring,
                _ => None,
            };
            if c.send(&m, fd).is_err() {
                break; // the server closed
            }
            let reply = recv(&c, Duration::from_millis(200));
            if std::env::var_os("XFWD_FUZZ_TRACE").is_some() {
                eprintln!("sent type {ty} (fd {}): {reply:?}", fd.is_some());
            }
            match reply {
                Ok(Some(Msg::Ack | Msg::Connected(_))) | Ok(None) => {}
                Ok(Some(Msg::Disconnect { reason, .. })) => {
                    assert!(!reason.is_empty(), "a DISCONNECT without a reason");
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match recv(&c, Duration::from_millis(100)) {
                            Err(()) => break,
                            Ok(m) => assert!(
                                m.is_none() && Instant::now() < deadline,
                                "after DISCONNECT: {m:?}"
                            ),
                        }
                    }
                    break;
                }
                Ok(Some(other)) => panic!("the server sent {other:?}"),
                Err(()) => break,
            }
        }
        drop(c);
        // Still up: the next client is greeted.
        let again = connect(&s.name);
        match recv(&again, Duration::from_secs(5)) {
            Ok(Some(Msg::Hello(_))) => {}
            other => panic!("the server did not greet after a session: {other:?}"),
        }
    });
});
