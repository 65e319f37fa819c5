//! The server's side of the memif handshake: HELLO, then every INIT,
//! ADD_REGION and ADD_RING the client sends is checked (version, id,
//! secret, indexes, fd kinds, rings inside their region) before the
//! connection is built.

use super::conn::{Conn, RingSide};
use super::control::{connected, name, refuse, unexpected, End, Session, State};
use super::proto::{self, AddRing, Hello, Init, Msg};
use super::ring::Ring;
use super::Shared;
use crate::sys::unix::fd_kind;
use crate::sys::{EventFd, FdKind, Mapping, Shared as Window};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Server side: what the client has announced so far.
#[derive(Default)]
pub(super) struct ServerBuild {
    maps: Vec<Window>,
    c2s: Vec<Option<(AddRing, OwnedFd)>>,
    s2c: Vec<Option<(AddRing, OwnedFd)>>,
}

impl Session {
    pub(super) fn hello(shared: &Shared) -> Msg {
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

    pub(super) fn server_msg(
        &mut self,
        shared: &Shared,
        msg: Msg,
        fd: Option<OwnedFd>,
    ) -> Result<(), End> {
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
                let file = match fd_kind(fd.as_fd()) {
                    FdKind::File(n) => n,
                    k => return refuse(format!("region fd is not a memory file ({k:?})")),
                };
                if size == 0 || size > file || size > u64::from(u32::MAX) + 1 {
                    return refuse(format!(
                        "region {index} size {size} is outside its file of {file} bytes"
                    ));
                }
                let map = Mapping::shared(&fd, 0, size as usize, false)
                    .map_err(|e| End::Refuse(format!("cannot map region {index}: {e}")))?;
                self.server.maps.push(Window::from_mapping(map));
                self.send(&Msg::Ack, None)
            }
            (State::Setup, Msg::AddRing(r)) => {
                let Some(fd) = fd else {
                    return refuse("Missing interrupt fd");
                };
                if fd_kind(fd.as_fd()) != FdKind::EventFd {
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
                if Ring::at(map, r.offset, r.log2_ring_size).is_none() {
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
        let regions = b.maps;
        let take = |list: Vec<Option<(AddRing, OwnedFd)>>, dir: &str, poll: bool| {
            let mut out = Vec::new();
            for (i, r) in list.into_iter().enumerate() {
                let Some((ar, efd)) = r else {
                    return refuse(format!(
                        "ring {dir} {i} was never added: both sides need the same queue count"
                    ));
                };
                let ring = Ring::at(
                    &regions[usize::from(ar.region)],
                    ar.offset,
                    ar.log2_ring_size,
                )
                .expect("checked at ADD_RING");
                if ring.cookie() != proto::COOKIE {
                    return refuse(format!("ring {dir} {i}: wrong cookie {:#x}", ring.cookie()));
                }
                ring.set_head(0, Ordering::Relaxed);
                ring.set_tail(0, Ordering::Relaxed);
                if poll {
                    ring.set_interrupt(false);
                }
                out.push(RingSide {
                    ring,
                    efd: EventFd::from_owned(efd),
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
            own: None,
        })
    }
}
