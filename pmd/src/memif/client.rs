//! The client's side of the memif handshake: after HELLO it builds its
//! memory ([`super::conn::build_client`]) and sends INIT, the regions (with
//! their fds), the rings (with their eventfds) and CONNECT, one per ACK.

use super::conn::{build_client, Conn, RingSide};
use super::control::{connected, name, refuse, unexpected, End, Session, State};
use super::proto::{self, AddRing, Init, Msg};
use super::Shared;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use xfwd_mempool::Mbuf;

/// What the client still has to send, in order.
pub(super) enum Out {
    Init,
    Region(u16),
    Ring { c2s: bool, index: u16 },
    Connect,
}

/// Client side of a connection being set up.
pub(super) struct ClientBuild {
    pub conn: Conn,
    pub log2: u8,
    pub queue: std::collections::VecDeque<Out>,
}

impl Session {
    pub(super) fn client_msg(&mut self, shared: &Shared, msg: Msg) -> Result<(), End> {
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
                    s.ring.set_interrupt(false);
                    let offered = if shared.cfg.zero_copy {
                        offer_mbufs(shared, &conn, s)
                    } else {
                        s.ring.mask().wrapping_add(1)
                    };
                    s.ring.set_head(offered, Ordering::Release);
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
        let own = conn.own.as_ref().expect("client memory");
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
                let offset = (side.ring.addr() - conn.regions[0].addr()) as u32;
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
        self.sock
            .send(&msg.encode(), fd)
            .map_err(|e| End::Gone(format!("send {:?}: {e}", msg.kind())))
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
            .set_desc(slot as u16, super::link::zc_desc(&m, base));
        v.push(Some(m));
    }
    let n = v.len() as u16;
    v.resize_with(side.ring.size() as usize, || None);
    *super::lock(&side.offered) = v;
    n
}
