//! The `memif` port: DPDK's `net_memif` / libmemif shared-memory packet
//! interface, protocol version 2.0, interoperable with DPDK 22.11 testpmd.
//!
//! Devargs (DPDK spellings accepted too):
//! `memif:role=server|client[,id=N][,secret=S][,socket=PATH][,socket_abstract=yes|no]`
//! `[,rsize=LOG2][,bsize=BYTES][,qpairs=N][,mac=..][,zero_copy=0|1]`.
//!
//! * The **client** creates the shared memory: one region holding every
//!   ring and (copy mode) every packet buffer, allocated as xfwd external
//!   memory (`memfd`, the pool's page size) and registered in the pool's
//!   `Registry`; it passes the region's fd and one eventfd per ring to the
//!   server over the Unix socket (`SCM_RIGHTS`).
//! * The **server** listens (bound at probe, like DPDK), checks everything
//!   the client sends (sizes, indexes, fd kinds, rings inside their region)
//!   and refuses anything else with a DISCONNECT reason and a log line.
//! * Rings: `C2S` carries client → server packets, `S2C` server → client.
//!   The client owns all buffers: it offers empty S2C buffers by moving
//!   `head`, the server fills them and moves `tail`; on C2S the client fills
//!   at `head` and the server consumes up to it, moving `tail`.
//! * Copy mode (default): RX copies out of the shared buffers into pool
//!   mbufs, TX copies into them. Every descriptor a peer wrote is checked
//!   (region, offset, length) before a byte moves.
//! * A control thread per port runs the handshake, notices a peer that
//!   disconnects or dies (EOF), takes the link down and hands the queues
//!   the new connection (or none) through a generation counter they read
//!   once per burst; a client reconnects with backoff, a server accepts the
//!   next client.

mod client;
mod conn;
mod control;
mod link;
pub mod proto;
#[doc(hidden)]
pub mod ring;
mod rx;
mod server;
mod tx;

use crate::devargs::Devargs;
use crate::dma::{MappingKind, SoftMapper};
use crate::error::PortError;
use crate::port::{parse_mac, Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use crate::sys::SeqPacket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xfwd_mempool::MbufPool;

pub(crate) use conn::Conn;

/// Which side of the connection this port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Listens; maps the client's memory.
    Server,
    /// Connects; owns the memory.
    Client,
}

/// A memif port's settings, from its devargs.
#[derive(Debug, Clone)]
pub struct MemifConfig {
    /// Role.
    pub role: Role,
    /// Interface id (matched by the server).
    pub id: u32,
    /// Secret (empty: none).
    pub secret: String,
    /// Socket path or abstract name.
    pub socket: String,
    /// Abstract socket name (DPDK's default).
    pub abstract_socket: bool,
    /// Ring size, log2.
    pub log2_ring: u8,
    /// Packet buffer size.
    pub bsize: u32,
    /// Queue pairs offered.
    pub qpairs: u16,
    /// MAC address.
    pub mac: [u8; 6],
    /// Client exports the pool's own memory (descriptors point into mbufs).
    pub zero_copy: bool,
    /// The devargs string.
    pub devargs: String,
}

/// DPDK's default socket.
pub const DEFAULT_SOCKET: &str = "/run/memif.sock";

impl MemifConfig {
    /// Parse devargs.
    ///
    /// # Errors
    /// [`PortError::Devargs`] naming the key and what is accepted.
    pub fn parse(d: &Devargs) -> Result<MemifConfig, PortError> {
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        d.check_keys(&[
            "role",
            "id",
            "secret",
            "socket",
            "socket_abstract",
            "socket-abstract",
            "rsize",
            "bsize",
            "qpairs",
            "mac",
            "zero_copy",
            "zero-copy",
        ])?;
        let role = match d.get("role").unwrap_or("server") {
            "server" | "master" => Role::Server,
            "client" | "slave" => Role::Client,
            r => return Err(bad(format!("`role={r}`: expected server or client"))),
        };
        let secret = d.get("secret").unwrap_or("").to_string();
        if secret.len() > proto::SECRET_SZ {
            return Err(bad(format!(
                "`secret` is {} bytes: at most {} (the protocol's field)",
                secret.len(),
                proto::SECRET_SZ
            )));
        }
        let socket = d.get("socket").unwrap_or(DEFAULT_SOCKET).to_string();
        if socket.is_empty() || socket.len() > 106 {
            return Err(bad(format!(
                "`socket={socket}`: expected 1..=106 bytes (a Unix socket name)"
            )));
        }
        let abstract_socket = d.flag("socket_abstract", d.flag("socket-abstract", true)?)?;
        let zero_copy = d.flag("zero_copy", d.flag("zero-copy", false)?)?;
        if zero_copy && role == Role::Server {
            return Err(bad(
                "`zero_copy=1` is a client-side mode (the client exports its pool's memory); \
                 a server maps whatever the client offers"
                    .into(),
            ));
        }
        let bsize = d.num("bsize", 2048u32, 64..=65535)?;
        let mac = match d.get("mac") {
            Some(m) => {
                parse_mac(m).ok_or_else(|| bad(format!("`mac={m}`: expected aa:bb:cc:dd:ee:ff")))?
            }
            None => {
                let id = d.num("id", 0u32, 0..=u32::MAX)?.to_be_bytes();
                [
                    0x02,
                    0x6d,
                    id[0],
                    id[1],
                    id[2],
                    id[3] ^ u8::from(role == Role::Client),
                ]
            }
        };
        Ok(MemifConfig {
            role,
            id: d.num("id", 0u32, 0..=u32::MAX)?,
            secret,
            socket,
            abstract_socket,
            log2_ring: d.num("rsize", 10u8, 1..=proto::MAX_LOG2_RING)?,
            bsize,
            qpairs: d.num("qpairs", 1u16, 1..=255)?,
            mac,
            zero_copy,
            devargs: d.raw.clone(),
        })
    }

    fn socket_desc(&self) -> String {
        if self.abstract_socket {
            format!("@{} (abstract)", self.socket)
        } else {
            self.socket.clone()
        }
    }
}

/// Hand-over point between the control thread and one queue: the current
/// connection (or none) and a generation the queue compares once per burst.
#[derive(Debug, Default)]
pub(crate) struct QueueSlot {
    pub gen: AtomicU64,
    pub conn: Mutex<Option<Arc<Conn>>>,
}

/// What the control thread, the queues and the port share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: MemifConfig,
    pub pool: MbufPool,
    pub rxq: u16,
    pub txq: u16,
    pub rx: Vec<Arc<QueueSlot>>,
    pub tx: Vec<Arc<QueueSlot>>,
    pub stop: AtomicBool,
    pub link_up: AtomicBool,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub refused: AtomicU64,
    pub current: Mutex<Option<Arc<Conn>>>,
    pub last_event: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Hand `conn` (or none) to every queue and set the link.
    pub fn publish(&self, conn: Option<Arc<Conn>>) {
        let up = conn.is_some();
        if !up {
            self.link_up.store(false, Ordering::Release);
        }
        for s in self.rx.iter().chain(self.tx.iter()) {
            *lock(&s.conn) = conn.clone();
            s.gen.fetch_add(1, Ordering::AcqRel);
        }
        *lock(&self.current) = conn;
        if up {
            self.connects.fetch_add(1, Ordering::Relaxed);
            self.link_up.store(true, Ordering::Release);
        }
    }

    pub fn event(&self, what: String) {
        *lock(&self.last_event) = what;
    }
}

/// A memif port.
#[derive(Debug)]
pub struct MemifPort {
    core: PortCore,
    cfg: MemifConfig,
    listener: Option<Arc<SeqPacket>>,
    shared: Option<Arc<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pool: Option<MbufPool>,
}

impl MemifPort {
    /// Probe from devargs; a server binds its socket now (like DPDK), so a
    /// client may connect as soon as the port exists.
    ///
    /// # Errors
    /// Bad devargs; a socket that cannot be bound (in use by a live
    /// listener, bad directory).
    pub fn probe(d: &Devargs) -> Result<MemifPort, PortError> {
        let cfg = MemifConfig::parse(d)?;
        let listener = match cfg.role {
            Role::Server => Some(Arc::new(bind_listener(&cfg)?)),
            Role::Client => None,
        };
        Ok(MemifPort {
            core: PortCore::new(&d.raw, Arc::new(SoftMapper::new(MappingKind::None))),
            cfg,
            listener,
            shared: None,
            thread: None,
            pool: None,
        })
    }

    /// Settings.
    pub fn config(&self) -> &MemifConfig {
        &self.cfg
    }

    /// Wait until the peer consumed what our TX rings hold (bounded), so a
    /// stop does not cut packets the peer has not read yet.
    fn drain_tx(&self, shared: &Shared, limit: Duration) {
        let Some(conn) = lock(&shared.current).clone() else {
            return;
        };
        let deadline = Instant::now() + limit;
        while shared.link_up.load(Ordering::Acquire) && !conn.tx_drained(shared.cfg.role) {
            if Instant::now() > deadline {
                log::warn!(
                    "memif {}: the peer did not read everything sent within {limit:?}; stopping anyway",
                    self.cfg.devargs
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn bind_listener(cfg: &MemifConfig) -> Result<SeqPacket, PortError> {
    let io = |what: String, source| PortError::Io {
        port: cfg.devargs.clone(),
        what,
        source,
    };
    match SeqPacket::listen(&cfg.socket, cfg.abstract_socket) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) && !cfg.abstract_socket => {
            // A file left by a process that died: stale if nobody answers.
            match SeqPacket::connect(&cfg.socket, false) {
                Ok(_) => Err(io(
                    format!(
                        "socket {} is in use by a live memif server: pick another `socket=`",
                        cfg.socket
                    ),
                    e,
                )),
                Err(_) => {
                    log::warn!(
                        "memif {}: removing stale socket file {} (nobody listens on it)",
                        cfg.devargs,
                        cfg.socket
                    );
                    std::fs::remove_file(&cfg.socket)
                        .map_err(|e| io(format!("remove stale socket {}", cfg.socket), e))?;
                    SeqPacket::listen(&cfg.socket, false)
                        .map_err(|e| io(format!("listen on {}", cfg.socket), e))
                }
            }
        }
        Err(e) => Err(io(
            format!(
                "listen on {}{}",
                cfg.socket_desc(),
                if e.raw_os_error() == Some(libc::EADDRINUSE) {
                    ": in use by another memif server (pick another `socket=`)"
                } else {
                    ""
                }
            ),
            e,
        )),
    }
}

impl Drop for MemifPort {
    fn drop(&mut self) {
        let _ = self.stop();
        if self.listener.take().is_some() && !self.cfg.abstract_socket {
            let _ = std::fs::remove_file(&self.cfg.socket);
        }
    }
}

impl Port for MemifPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "memif",
            devargs: self.cfg.devargs.clone(),
            mac: self.cfg.mac,
            max_rx_queues: self.cfg.qpairs,
            max_tx_queues: self.cfg.qpairs,
            max_rx_desc: 1 << proto::MAX_LOG2_RING,
            max_tx_desc: 1 << proto::MAX_LOG2_RING,
            max_burst: xfwd_mempool::MAX_BURST,
            mtu: 9000,
            zero_copy: self.cfg.zero_copy,
            mapping: MappingKind::None,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        self.core.configure(conf, &info)?;
        let pool = conf.pool(0).expect("checked: at least one pool").clone();
        if self.cfg.zero_copy && pool.mem().fd().is_none() {
            return Err(PortError::Config {
                port: self.cfg.devargs.clone(),
                what: "zero_copy",
                value: format!("1 with a pool in {} memory", pool.mem().backing().name()),
                accepted: "a pool another process can map: run with --mem-backing memfd|hugetlbfs"
                    .into(),
            });
        }
        if self.cfg.zero_copy {
            if conf.pools.iter().any(|p| p.id() != pool.id()) {
                return Err(PortError::Config {
                    port: self.cfg.devargs.clone(),
                    what: "zero_copy",
                    value: format!("1 with {} pools", conf.pools.len()),
                    accepted: "one pool for every queue (it is the shared region)".into(),
                });
            }
            if pool.mem().len() > u32::MAX as usize {
                return Err(PortError::Config {
                    port: self.cfg.devargs.clone(),
                    what: "zero_copy",
                    value: format!("1 with a pool of {} bytes", pool.mem().len()),
                    accepted: "a pool of at most 4 GiB (memif region offsets are 32-bit)".into(),
                });
            }
        }
        self.pool = Some(pool);
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        let conf = self.core.start()?;
        let pool = self.pool.clone().expect("configured");
        let shared = Arc::new(Shared {
            cfg: self.cfg.clone(),
            pool: pool.clone(),
            rxq: conf.rx_queues,
            txq: conf.tx_queues,
            rx: (0..conf.rx_queues).map(|_| Arc::default()).collect(),
            tx: (0..conf.tx_queues).map(|_| Arc::default()).collect(),
            stop: AtomicBool::new(false),
            link_up: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            current: Mutex::new(None),
            last_event: Mutex::new(String::new()),
        });
        let th = {
            let shared = shared.clone();
            let listener = self.listener.clone();
            std::thread::Builder::new()
                .name(format!("memif-ctl{}", self.cfg.id))
                .spawn(move || control::run(&shared, listener.as_deref()))
                .map_err(|e| PortError::Io {
                    port: self.cfg.devargs.clone(),
                    what: "spawn the memif control thread".into(),
                    source: e,
                })?
        };
        self.thread = Some(th);
        let mut q = PortQueues::default();
        for i in 0..conf.rx_queues as usize {
            q.rx.push(Box::new(rx::MemifRx::new(link::QueueBase::new(
                i,
                self.cfg.role,
                self.cfg.zero_copy,
                shared.rx[i].clone(),
                conf.pool(i).expect("checked").clone(),
                self.core.counters.rx[i].clone(),
                self.core.token(),
            ))));
        }
        for i in 0..conf.tx_queues as usize {
            q.tx.push(Box::new(tx::MemifTx::new(link::QueueBase::new(
                i,
                self.cfg.role,
                self.cfg.zero_copy,
                shared.tx[i].clone(),
                pool.clone(),
                self.core.counters.tx[i].clone(),
                self.core.token(),
            ))));
        }
        self.shared = Some(shared);
        Ok(q)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()?;
        if let Some(shared) = self.shared.take() {
            self.drain_tx(&shared, Duration::from_secs(1));
            shared.stop.store(true, Ordering::Release);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            shared.publish(None);
        }
        Ok(())
    }

    fn link(&self) -> Link {
        Link {
            up: self
                .shared
                .as_ref()
                .is_some_and(|s| s.link_up.load(Ordering::Acquire)),
            speed_mbps: 0,
        }
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("memif_zero_copy".to_string(), u64::from(self.cfg.zero_copy)),
            (
                "memif_role_client".to_string(),
                u64::from(self.cfg.role == Role::Client),
            ),
        ];
        if let Some(s) = &self.shared {
            v.push((
                "memif_link_up".into(),
                u64::from(s.link_up.load(Ordering::Relaxed)),
            ));
            v.push(("memif_connects".into(), s.connects.load(Ordering::Relaxed)));
            v.push((
                "memif_disconnects".into(),
                s.disconnects.load(Ordering::Relaxed),
            ));
            v.push((
                "memif_refused_peers".into(),
                s.refused.load(Ordering::Relaxed),
            ));
        }
        v
    }
}

impl MemifPort {
    /// The last connection event (connected to …, refused: …, peer left: …).
    pub fn last_event(&self) -> String {
        self.shared
            .as_ref()
            .map(|s| lock(&s.last_event).clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Result<MemifConfig, PortError> {
        MemifConfig::parse(&Devargs::parse(s).unwrap())
    }

    #[test]
    fn devargs_like_dpdk() {
        let c = cfg("memif:role=client,id=3,secret=abc,socket=/tmp/m.sock,socket-abstract=no,rsize=11,bsize=4096,qpairs=2,zero-copy=yes").unwrap();
        assert_eq!(c.role, Role::Client);
        assert_eq!(
            (c.id, c.secret.as_str(), c.socket.as_str()),
            (3, "abc", "/tmp/m.sock")
        );
        assert!(!c.abstract_socket && c.zero_copy);
        assert_eq!((c.log2_ring, c.bsize, c.qpairs), (11, 4096, 2));
        let d = cfg("memif:").unwrap();
        assert_eq!(d.role, Role::Server);
        assert_eq!(d.socket, DEFAULT_SOCKET);
        assert!(d.abstract_socket);
        assert_eq!((d.log2_ring, d.bsize), (10, 2048));
    }

    #[test]
    fn bad_devargs_are_explained() {
        for (s, frag) in [
            ("memif:role=boss", "expected server or client"),
            ("memif:rsize=15", "1..=14"),
            ("memif:bsize=1", "64..=65535"),
            ("memif:secret=0123456789012345678901234", "at most 24"),
            ("memif:role=server,zero_copy=1", "client-side mode"),
            ("memif:mac=zz", "aa:bb"),
            ("memif:bogus=1", "unknown key `bogus`"),
            ("memif:qpairs=0", "1..=255"),
        ] {
            let e = cfg(s).unwrap_err().to_string();
            assert!(e.contains(frag), "{s}: {e}");
        }
    }
}
