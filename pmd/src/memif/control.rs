//! The memif control thread: handshake in both roles, the connection's
//! shared memory ([`Conn`]), peer loss, refusal of hostile messages, and
//! client reconnects with backoff.

use super::proto::{self, AddRing, Hello, Init, Msg, MSG_SIZE};
use super::sys::{self, FdKind, Ring, SharedMap, Shm};
use super::{Role, Shared};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xfwd_mempool::{Backing, ExtMem, ExtMemConfig, IovaMode, Mbuf, RegionId, Registry};

const POLL_MS: i32 = 20;
const HANDSHAKE: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One ring of a connection as a queue uses it.
#[derive(Debug)]
pub(crate) struct RingSide {
    pub ring: Ring,
    /// Interrupt line (the client created it; both sides share it).
    pub efd: OwnedFd,
    /// Client, copy mode: offset in region 0 of slot 0's buffer.
    pub buf0: u32,
    /// Client, zero copy, S2C: the mbufs offered at connect, by slot
    /// (the RX queue takes them over when it picks the connection up).
    pub offered: Mutex<Vec<Option<Mbuf>>>,
}

/// Client memory registered in the pool's registry; unregistered when the
/// connection is gone.
#[derive(Debug)]
struct OwnRegion {
    mem: Arc<ExtMem>,
    registry: Registry,
    id: RegionId,
}

impl Drop for OwnRegion {
    fn drop(&mut self) {
        if let Err(e) = self.registry.unregister(self.id) {
            log::error!("memif: unregister region {}: {e}", self.id);
        }
    }
}

/// The shared memory of one connection. Queues hold it through an `Arc`,
/// so its mappings live until the last queue lets go of it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Regions by index (views into `maps` or `own`).
    pub regions: Vec<Shm>,
    /// Rings of our RX queues (server: C2S, client: S2C).
    pub rx: Vec<RingSide>,
    /// Rings of our TX queues (server: S2C, client: C2S).
    pub tx: Vec<RingSide>,
    /// Packet buffer size (client copy mode).
    pub bsize: u32,
    /// Peer name for logs.
    pub peer: String,
    // Declared after the views: dropped after them.
    _maps: Vec<SharedMap>,
    _own: Option<OwnRegion>,
}

impl Conn {
    /// Everything our TX rings hold has been taken by the peer.
    pub fn tx_drained(&self, role: Role) -> bool {
        self.tx.iter().all(|s| {
            let head = s.ring.head().load(Ordering::Acquire);
            let tail = s.ring.tail().load(Ordering::Acquire);
            match role {
                // C2S: we fill at head, the server consumes up to tail.
                Role::Client => head == tail,
                // S2C: we fill at tail; the client has taken (and offered
                // back) every buffer.
                Role::Server => u32::from(head.wrapping_sub(tail)) == s.ring.size(),
            }
        })
    }
}

/// Why a session ends.
enum End {
    /// We refuse the peer: send DISCONNECT with this reason.
    Refuse(String),
    /// The peer left (EOF, error, its DISCONNECT).
    Gone(String),
}

fn refuse<T>(why: impl Into<String>) -> Result<T, End> {
    Err(End::Refuse(why.into()))
}

enum State {
    // Server
    AwaitInit,
    Setup,
    // Client
    AwaitHello,
    AwaitAck,
    AwaitConnected,
    Connected,
}

/// What the client still has to send, in order.
enum Out {
    Init,
    Region(u16),
    Ring { c2s: bool, index: u16 },
    Connect,
}

/// Client side of a connection being set up.
struct ClientBuild {
    conn: Conn,
    log2: u8,
    queue: std::collections::VecDeque<Out>,
}

/// Server side: what the client has announced so far.
#[derive(Default)]
struct ServerBuild {
    maps: Vec<SharedMap>,
    c2s: Vec<Option<(AddRing, OwnedFd)>>,
    s2c: Vec<Option<(AddRing, OwnedFd)>>,
}

struct Session {
    sock: OwnedFd,
    state: State,
    deadline: Instant,
    peer: String,
    client: Option<ClientBuild>,
    server: ServerBuild,
}

fn name(shared: &Shared) -> String {
    format!("xfwd memif{}", shared.cfg.id)
}

impl Session {
    fn new(sock: OwnedFd, state: State) -> Session {
        Session {
            sock,
            state,
            deadline: Instant::now() + HANDSHAKE,
            peer: String::new(),
            client: None,
            server: ServerBuild::default(),
        }
    }

    fn send(&self, m: &Msg, fd: Option<std::os::fd::BorrowedFd<'_>>) -> Result<(), End> {
        sys::send(&self.sock, &m.encode(), fd)
            .map_err(|e| End::Gone(format!("send {:?}: {e}", m.kind())))
    }

    fn handshaking(&self) -> bool {
        !matches!(self.state, State::Connected)
    }

    /// Read and handle every pending message.
    fn on_readable(&mut self, shared: &Shared) -> Result<(), End> {
        let mut buf = [0u8; 2 * MSG_SIZE];
        loop {
            let r = match sys::recv(&self.sock, &mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(End::Gone(format!("receive: {e}"))),
            };
            if r.len == 0 {
                return Err(End::Gone("the peer closed the connection".into()));
            }
            if r.truncated || r.len != MSG_SIZE {
                return refuse(format!(
                    "Invalid message size {}{}",
                    r.len,
                    if r.truncated { "+ (truncated)" } else { "" }
                ));
            }
            if r.fds_truncated {
                return refuse("too many file descriptors attached");
            }
            let msg =
                proto::Msg::decode(&buf[..MSG_SIZE]).map_err(|e| End::Refuse(e.to_string()))?;
            let mut fds = r.fds;
            if let Msg::Disconnect { code, reason } = &msg {
                return Err(End::Gone(format!(
                    "the peer disconnected: {reason} (code {code})"
                )));
            }
            let wants_fd = matches!(msg, Msg::AddRegion { .. } | Msg::AddRing(_));
            if (!wants_fd && !fds.is_empty()) || fds.len() > 1 {
                return refuse(format!(
                    "{} file descriptors attached to {:?}",
                    fds.len(),
                    msg.kind()
                ));
            }
            match shared.cfg.role {
                Role::Server => self.server_msg(shared, msg, fds.pop())?,
                Role::Client => self.client_msg(shared, msg)?,
            }
        }
    }

    // ----- server -----

    fn hello(shared: &Shared) -> Msg {
        Msg::Hello(Hello {
            name: name(shared),
            min_version: proto::VERSION,
            max_version: proto::VERSION,
            max_region: proto::MAX_REGIONS - 1,
            max_c2s_ring: shared.rxq - 1,
            max_s2c_ring: shared.txq - 1,
            max_log2_ring_size: proto::MAX_LOG2_RING,
        })
    }

    fn server_msg(&mut self, shared: &Shared, msg: Msg, fd: Option<OwnedFd>) -> Result<(), End> {
        let cfg = &shared.cfg;
        match (&self.state, msg) {
            (State::AwaitInit, Msg::Init(i)) => {
                self.check_init(shared, &i)?;
                self.peer = i.name.clone();
                self.server.c2s = (0..shared.rxq).map(|_| None).collect();
                self.server.s2c = (0..shared.txq).map(|_| None).collect();
                self.state = State::Setup;
                self.send(&Msg::Ack, None)
            }
            (State::Setup, Msg::AddRegion { index, size }) => {
                let Some(fd) = fd else {
                    return refuse("Missing region fd");
                };
                let have = self.server.maps.len();
                if usize::from(index) != have || index >= proto::MAX_REGIONS {
                    return refuse(format!(
                        "Invalid region index {index} (expected {have}, at most {})",
                        proto::MAX_REGIONS - 1
                    ));
                }
                let file = match sys::fd_kind(fd.as_fd()) {
                    FdKind::File(n) => n,
                    k => return refuse(format!("region fd is not a memory file ({k:?})")),
                };
                if size == 0 || size > file || size > u64::from(u32::MAX) + 1 {
                    return refuse(format!(
                        "region {index} size {size} is outside its file of {file} bytes"
                    ));
                }
                let map = SharedMap::map(fd.as_fd(), size as usize)
                    .map_err(|e| End::Refuse(format!("cannot map region {index}: {e}")))?;
                self.server.maps.push(map);
                self.send(&Msg::Ack, None)
            }
            (State::Setup, Msg::AddRing(r)) => {
                let Some(fd) = fd else {
                    return refuse("Missing interrupt fd");
                };
                if sys::fd_kind(fd.as_fd()) != FdKind::EventFd {
                    return refuse("ring interrupt fd is not an eventfd");
                }
                let c2s = r.flags & proto::ADD_RING_FLAG_C2S != 0;
                let list = if c2s {
                    &mut self.server.c2s
                } else {
                    &mut self.server.s2c
                };
                let dir = if c2s { "C2S" } else { "S2C" };
                let Some(slot) = list.get_mut(usize::from(r.index)) else {
                    return refuse(format!(
                        "Invalid ring index {dir} {} (this port has {} {dir} rings)",
                        r.index,
                        list.len()
                    ));
                };
                if slot.is_some() {
                    return refuse(format!("ring {dir} {} added twice", r.index));
                }
                if r.log2_ring_size == 0 || r.log2_ring_size > proto::MAX_LOG2_RING {
                    return refuse(format!(
                        "ring {dir} {}: log2 size {} outside 1..={}",
                        r.index,
                        r.log2_ring_size,
                        proto::MAX_LOG2_RING
                    ));
                }
                if r.private_hdr_size != 0 {
                    return refuse("private headers are not supported");
                }
                let Some(map) = self.server.maps.get(usize::from(r.region)) else {
                    return refuse(format!(
                        "ring {dir} {} in unknown region {}",
                        r.index, r.region
                    ));
                };
                if map.shm().ring(r.offset, r.log2_ring_size).is_none() {
                    return refuse(format!(
                        "ring {dir} {} at offset {} (log2 {}) lies outside region {} or is misaligned",
                        r.index, r.offset, r.log2_ring_size, r.region
                    ));
                }
                *slot = Some((r, fd));
                self.send(&Msg::Ack, None)
            }
            (State::Setup, Msg::Connect(peer_if)) => {
                let conn = self.server_conn(shared)?;
                self.send(&Msg::Connected(name(shared)), None)?;
                self.state = State::Connected;
                let what = format!(
                    "connected to client `{}` ({peer_if}) on {}: {} C2S + {} S2C rings",
                    self.peer,
                    cfg.socket_desc(),
                    conn.rx.len(),
                    conn.tx.len()
                );
                connected(shared, what, conn);
                Ok(())
            }
            (st, m) => unexpected(st, &m),
        }
    }

    fn check_init(&self, shared: &Shared, i: &Init) -> Result<(), End> {
        let cfg = &shared.cfg;
        if i.version != proto::VERSION {
            return refuse(format!("Incompatible memif version {:#06x}", i.version));
        }
        if i.id != cfg.id {
            return refuse(format!(
                "ID {} not found (this port is id {})",
                i.id, cfg.id
            ));
        }
        if i.mode != 0 {
            return refuse("Only ethernet mode supported");
        }
        if !cfg.secret.is_empty() {
            if i.secret[0] == 0 {
                return refuse("Secret required");
            }
            if i.secret != proto::secret_bytes(&cfg.secret) {
                return refuse("Incorrect secret");
            }
        }
        Ok(())
    }

    fn server_conn(&mut self, shared: &Shared) -> Result<Conn, End> {
        for (list, dir) in [(&self.server.c2s, "C2S"), (&self.server.s2c, "S2C")] {
            if let Some(i) = list.iter().position(Option::is_none) {
                return refuse(format!(
                    "ring {dir} {i} was never added: both sides need the same queue count"
                ));
            }
        }
        let b = std::mem::take(&mut self.server);
        let regions: Vec<Shm> = b.maps.iter().map(SharedMap::shm).collect();
        let take = |list: Vec<Option<(AddRing, OwnedFd)>>, dir: &str, poll: bool| {
            let mut out = Vec::new();
            for (i, r) in list.into_iter().enumerate() {
                let Some((ar, efd)) = r else {
                    return refuse(format!(
                        "ring {dir} {i} was never added: both sides need the same queue count"
                    ));
                };
                let ring = regions[usize::from(ar.region)]
                    .ring(ar.offset, ar.log2_ring_size)
                    .expect("checked at ADD_RING");
                if ring.cookie() != proto::COOKIE {
                    return refuse(format!("ring {dir} {i}: wrong cookie {:#x}", ring.cookie()));
                }
                ring.head().store(0, Ordering::Relaxed);
                ring.tail().store(0, Ordering::Relaxed);
                if poll {
                    ring.flags()
                        .store(proto::RING_FLAG_MASK_INT, Ordering::Release);
                }
                out.push(RingSide {
                    ring,
                    efd,
                    buf0: 0,
                    offered: Mutex::new(Vec::new()),
                });
            }
            Ok(out)
        };
        // We receive on C2S (and poll it), send on S2C.
        let rx = take(b.c2s, "C2S", true)?;
        let tx = take(b.s2c, "S2C", false)?;
        Ok(Conn {
            regions,
            rx,
            tx,
            bsize: shared.cfg.bsize,
            peer: self.peer.clone(),
            _maps: b.maps,
            _own: None,
        })
    }

    // ----- client -----

    fn client_msg(&mut self, shared: &Shared, msg: Msg) -> Result<(), End> {
        match (&self.state, msg) {
            (State::AwaitHello, Msg::Hello(h)) => {
                if h.min_version > proto::VERSION || h.max_version < proto::VERSION {
                    return refuse(format!(
                        "Incompatible memif version: server speaks {:#06x}..={:#06x}",
                        h.min_version, h.max_version
                    ));
                }
                if u32::from(h.max_c2s_ring) + 1 < u32::from(shared.txq)
                    || u32::from(h.max_s2c_ring) + 1 < u32::from(shared.rxq)
                {
                    return refuse(format!(
                        "server takes {} C2S / {} S2C rings, this port needs {} / {}: \
                         give both sides the same queue count",
                        u32::from(h.max_c2s_ring) + 1,
                        u32::from(h.max_s2c_ring) + 1,
                        shared.txq,
                        shared.rxq
                    ));
                }
                if shared.cfg.zero_copy && h.max_region < 1 {
                    return refuse("zero copy needs two regions; the server takes one");
                }
                if h.max_log2_ring_size == 0 {
                    return refuse("server offers no ring size");
                }
                self.peer = h.name.clone();
                let log2 = shared.cfg.log2_ring.min(h.max_log2_ring_size);
                let b = build_client(shared, log2).map_err(End::Refuse)?;
                self.client = Some(b);
                self.state = State::AwaitAck;
                self.send_next(shared)
            }
            (State::AwaitAck, Msg::Ack) => self.send_next(shared),
            (State::AwaitConnected, Msg::Connected(peer_if)) => {
                let b = self.client.take().expect("built at HELLO");
                let mut conn = b.conn;
                conn.peer = self.peer.clone();
                // We receive on S2C and poll it. Every buffer is offered at
                // once (the server reset the indexes at CONNECT), so the
                // server can send before our first RX poll.
                for s in &conn.rx {
                    s.ring
                        .flags()
                        .store(proto::RING_FLAG_MASK_INT, Ordering::Release);
                    let offered = if shared.cfg.zero_copy {
                        offer_mbufs(shared, &conn, s)
                    } else {
                        s.ring.mask().wrapping_add(1)
                    };
                    s.ring.head().store(offered, Ordering::Release);
                }
                self.state = State::Connected;
                let what = format!(
                    "connected to server `{}` ({peer_if}) on {}: {} C2S + {} S2C rings of {} slots, {}",
                    self.peer,
                    shared.cfg.socket_desc(),
                    conn.tx.len(),
                    conn.rx.len(),
                    1u32 << b.log2,
                    if shared.cfg.zero_copy {
                        "zero copy (region 1 is the mbuf pool)"
                    } else {
                        "copy mode"
                    }
                );
                connected(shared, what, conn);
                Ok(())
            }
            (st, m) => unexpected(st, &m),
        }
    }

    fn send_next(&mut self, shared: &Shared) -> Result<(), End> {
        let b = self.client.as_mut().expect("built at HELLO");
        let Some(next) = b.queue.pop_front() else {
            return refuse("unexpected ACK");
        };
        let log2 = b.log2;
        let conn = &b.conn;
        let own = conn._own.as_ref().expect("client memory");
        let (msg, fd) = match next {
            Out::Init => (
                Msg::Init(Init {
                    version: proto::VERSION,
                    id: shared.cfg.id,
                    mode: 0,
                    secret: proto::secret_bytes(&shared.cfg.secret),
                    name: name(shared),
                }),
                None,
            ),
            Out::Region(0) => (
                Msg::AddRegion {
                    index: 0,
                    size: own.mem.len() as u64,
                },
                Some(own.mem.fd().expect("memfd")),
            ),
            Out::Region(index) => {
                // Zero copy: region 1 is the mbuf pool's own memory.
                let mem = shared.pool.mem();
                (
                    Msg::AddRegion {
                        index,
                        size: mem.len() as u64,
                    },
                    Some(mem.fd().expect("checked at configure: a shareable pool")),
                )
            }
            Out::Ring { c2s, index } => {
                let side = if c2s {
                    &conn.tx[usize::from(index)]
                } else {
                    &conn.rx[usize::from(index)]
                };
                let offset = (side.ring_addr() - conn.regions[0].addr()) as u32;
                (
                    Msg::AddRing(AddRing {
                        flags: if c2s { proto::ADD_RING_FLAG_C2S } else { 0 },
                        index,
                        region: 0,
                        offset,
                        log2_ring_size: log2,
                        private_hdr_size: 0,
                    }),
                    Some(side.efd.as_fd()),
                )
            }
            Out::Connect => {
                self.state = State::AwaitConnected;
                (Msg::Connect(name(shared)), None)
            }
        };
        sys::send(&self.sock, &msg.encode(), fd)
            .map_err(|e| End::Gone(format!("send {:?}: {e}", msg.kind())))
    }
}

impl RingSide {
    fn ring_addr(&self) -> usize {
        self.ring.addr()
    }
}

/// Zero copy: post one pool mbuf per S2C slot (as many as the pool gives);
/// the count offered.
fn offer_mbufs(shared: &Shared, conn: &Conn, side: &RingSide) -> u16 {
    let base = conn.regions[1].addr();
    let mut v: Vec<Option<Mbuf>> = Vec::with_capacity(side.ring.size() as usize);
    for slot in 0..side.ring.size() {
        let Some(m) = shared.pool.alloc() else { break };
        side.ring
            .set_desc(slot as u16, super::queue::zc_desc(&m, base));
        v.push(Some(m));
    }
    let n = v.len() as u16;
    v.resize_with(side.ring.size() as usize, || None);
    *super::lock(&side.offered) = v;
    n
}

fn connected(shared: &Shared, what: String, conn: Conn) {
    log::info!("memif {}: {what}", shared.cfg.devargs);
    shared.event(what);
    shared.publish(Some(Arc::new(conn)));
}

fn unexpected(st: &State, m: &Msg) -> Result<(), End> {
    refuse(format!(
        "Unexpected message {:?} {}",
        m.kind(),
        state_name(st)
    ))
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::AwaitInit => "before INIT",
        State::Setup => "while adding regions and rings",
        State::AwaitHello => "before HELLO",
        State::AwaitAck => "while waiting for an ACK",
        State::AwaitConnected => "while waiting for CONNECTED",
        State::Connected => "on a connected interface",
    }
}

/// Client memory for one connection: one region with every ring, then
/// every buffer (`C2S` rings' buffers first), as xfwd external memory.
fn build_client(shared: &Shared, log2: u8) -> Result<ClientBuild, String> {
    let cfg = &shared.cfg;
    let slots = 1usize << log2;
    let nrings = usize::from(shared.txq) + usize::from(shared.rxq);
    let rb = proto::ring_bytes(log2);
    let buf_start = (nrings * rb).next_multiple_of(64);
    // Zero copy: region 0 holds only the rings; buffers are mbufs.
    let total = if cfg.zero_copy {
        buf_start
    } else {
        buf_start + nrings * slots * cfg.bsize as usize
    };
    if total > u32::MAX as usize {
        return Err(format!(
            "{total} bytes of rings and buffers exceed the protocol's 4 GiB region offsets: lower rsize or bsize"
        ));
    }
    let ps = shared.pool.mem().page_size();
    let mem = ExtMem::alloc(&ExtMemConfig {
        len: total,
        page_size: ps,
        backing: Backing::Memfd,
        iova_mode: IovaMode::Va,
        allow_4k: true,
    })
    .map_err(|e| format!("cannot allocate the memif region ({total} bytes of {ps} pages): {e}"))?;
    let mem = Arc::new(mem);
    let registry = shared.pool.registry().clone();
    let id = registry
        .register_mem(&mem)
        .map_err(|e| format!("cannot register the memif region: {e}"))?;
    let own = OwnRegion {
        mem: mem.clone(),
        registry,
        id,
    };
    let base = std::ptr::NonNull::new(mem.as_ptr()).expect("mapped");
    let shm = Shm::of_own(base, mem.len());
    let mut regions = vec![shm];
    if cfg.zero_copy {
        let pm = shared.pool.mem();
        regions.push(Shm::of_own(
            std::ptr::NonNull::new(pm.as_ptr()).expect("mapped"),
            pm.len(),
        ));
    }
    let mut mk = |i: usize| -> Result<RingSide, String> {
        let ring = shm
            .ring((i * rb) as u32, log2)
            .expect("laid out inside the region");
        let buf0 = (buf_start + i * slots * cfg.bsize as usize) as u32;
        ring.set_cookie(proto::COOKIE);
        ring.flags().store(0, Ordering::Relaxed);
        ring.head().store(0, Ordering::Relaxed);
        ring.tail().store(0, Ordering::Relaxed);
        for s in 0..slots {
            ring.set_desc(
                s as u16,
                if cfg.zero_copy {
                    sys::Desc::default()
                } else {
                    sys::Desc {
                        flags: 0,
                        region: 0,
                        length: cfg.bsize,
                        offset: buf0 + (s as u32) * cfg.bsize,
                        metadata: 0,
                    }
                },
            );
        }
        let efd = sys::eventfd().map_err(|e| format!("eventfd: {e}"))?;
        Ok(RingSide {
            ring,
            efd,
            buf0,
            offered: Mutex::new(Vec::new()),
        })
    };
    let tx = (0..usize::from(shared.txq))
        .map(&mut mk)
        .collect::<Result<Vec<_>, _>>()?;
    let rx = (0..usize::from(shared.rxq))
        .map(|i| mk(usize::from(shared.txq) + i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut queue = std::collections::VecDeque::new();
    queue.push_back(Out::Init);
    queue.push_back(Out::Region(0));
    if cfg.zero_copy {
        queue.push_back(Out::Region(1));
    }
    for i in 0..shared.txq {
        queue.push_back(Out::Ring {
            c2s: true,
            index: i,
        });
    }
    for i in 0..shared.rxq {
        queue.push_back(Out::Ring {
            c2s: false,
            index: i,
        });
    }
    queue.push_back(Out::Connect);
    Ok(ClientBuild {
        conn: Conn {
            regions,
            rx,
            tx,
            bsize: cfg.bsize,
            peer: String::new(),
            _maps: Vec::new(),
            _own: Some(own),
        },
        log2,
        queue,
    })
}

/// The control loop of one started port; returns once `shared.stop` is set.
pub(crate) fn run(shared: &Shared, listener: Option<&OwnedFd>) {
    let cfg = &shared.cfg;
    let mut sess: Option<Session> = None;
    let mut backoff = BACKOFF_MIN;
    let mut next_try = Instant::now();
    let mut waiting_logged = false;
    while !shared.stop.load(Ordering::Acquire) {
        let Some(s) = sess.as_mut() else {
            match cfg.role {
                Role::Server => {
                    let l = listener.expect("a server has a listener");
                    let _ = sys::poll_readable(&[l.as_raw_fd()], POLL_MS);
                    match sys::accept(l) {
                        Ok(Some(sock)) => {
                            let s = Session::new(sock, State::AwaitInit);
                            if s.send(&Session::hello(shared), None).is_ok() {
                                sess = Some(s);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("memif {}: accept: {e}", cfg.devargs);
                            std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                        }
                    }
                }
                Role::Client => {
                    let now = Instant::now();
                    if now < next_try {
                        std::thread::sleep(
                            (next_try - now).min(Duration::from_millis(POLL_MS as u64)),
                        );
                        continue;
                    }
                    match sys::connect(&cfg.socket, cfg.abstract_socket) {
                        Ok(sock) => {
                            waiting_logged = false;
                            sess = Some(Session::new(sock, State::AwaitHello));
                        }
                        Err(e) => {
                            if !waiting_logged {
                                log::info!(
                                    "memif {}: no server at {} yet ({e}); retrying with backoff up to {BACKOFF_MAX:?}",
                                    cfg.devargs,
                                    cfg.socket_desc()
                                );
                                waiting_logged = true;
                            }
                            next_try = Instant::now() + backoff;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
            continue;
        };
        let mut fds = vec![s.sock.as_raw_fd()];
        if let Some(l) = listener {
            fds.push(l.as_raw_fd());
        }
        let ready = sys::poll_readable(&fds, POLL_MS).unwrap_or_else(|_| vec![false; fds.len()]);
        if ready.get(1) == Some(&true) {
            if let Some(l) = listener {
                // One client per interface: refuse the others politely.
                while let Ok(Some(extra)) = sys::accept(l) {
                    let x = Session::new(extra, State::AwaitInit);
                    let _ = x.send(&Session::hello(shared), None);
                    let _ = x.send(
                        &Msg::Disconnect {
                            code: 0,
                            reason: "Already connected".into(),
                        },
                        None,
                    );
                    log::warn!(
                        "memif {}: refused a second client: already connected",
                        cfg.devargs
                    );
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut end = None;
        if ready[0] {
            if let Err(e) = s.on_readable(shared) {
                end = Some(e);
            }
        }
        if end.is_none() && s.handshaking() && Instant::now() > s.deadline {
            end = Some(End::Refuse(format!(
                "handshake not finished within {HANDSHAKE:?}"
            )));
        }
        if let Some(e) = end {
            let was_up = !s.handshaking();
            let what = match e {
                End::Refuse(reason) => {
                    let _ = s.send(
                        &Msg::Disconnect {
                            code: 1,
                            reason: reason.clone(),
                        },
                        None,
                    );
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    log::warn!("memif {}: refused peer `{}`: {reason}", cfg.devargs, s.peer);
                    format!("refused peer `{}`: {reason}", s.peer)
                }
                End::Gone(why) => {
                    log::warn!("memif {}: peer `{}` gone: {why}", cfg.devargs, s.peer);
                    format!("peer `{}` gone: {why}", s.peer)
                }
            };
            shared.event(what);
            if was_up {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.publish(None);
                backoff = BACKOFF_MIN;
            }
            sess = None;
            next_try = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
    if let Some(s) = sess {
        let _ = s.send(
            &Msg::Disconnect {
                code: 0,
                reason: "xfwd: port stopped".into(),
            },
            None,
        );
        if !s.handshaking() {
            shared.publish(None);
        }
    }
}
