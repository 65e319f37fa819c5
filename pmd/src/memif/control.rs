//! The memif control thread: accepts (server) or connects with backoff
//! (client), runs one [`Session`] at a time, notices a peer that leaves or
//! dies, refuses hostile messages with a DISCONNECT reason, and hands the
//! queues each new connection (or its loss). The handshake steps of each
//! role are in `server.rs` and `client.rs`.

use super::client::ClientBuild;
use super::conn::Conn;
use super::proto::{self, Msg, MSG_SIZE};
use super::server::ServerBuild;
use super::{Role, Shared};
use crate::sys::{wait_readable, SeqPacket};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);
const HANDSHAKE: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why a session ends.
pub(super) enum End {
    /// We refuse the peer: send DISCONNECT with this reason.
    Refuse(String),
    /// The peer left (EOF, error, its DISCONNECT).
    Gone(String),
}

pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, End> {
    Err(End::Refuse(why.into()))
}

pub(super) enum State {
    // Server
    AwaitInit,
    Setup,
    // Client
    AwaitHello,
    AwaitAck,
    AwaitConnected,
    Connected,
}

/// One connection's control channel, from accept/connect to its end.
pub(super) struct Session {
    pub sock: SeqPacket,
    pub state: State,
    deadline: Instant,
    pub peer: String,
    pub client: Option<ClientBuild>,
    pub server: ServerBuild,
}

pub(super) fn name(shared: &Shared) -> String {
    format!("xfwd memif{}", shared.cfg.id)
}

impl Session {
    fn new(sock: SeqPacket, state: State) -> Session {
        Session {
            sock,
            state,
            deadline: Instant::now() + HANDSHAKE,
            peer: String::new(),
            client: None,
            server: ServerBuild::default(),
        }
    }

    pub(super) fn send(&self, m: &Msg, fd: Option<BorrowedFd<'_>>) -> Result<(), End> {
        self.sock
            .send(&m.encode(), fd)
            .map_err(|e| End::Gone(format!("send {:?}: {e}", m.kind())))
    }

    fn handshaking(&self) -> bool {
        !matches!(self.state, State::Connected)
    }

    /// Read and handle every pending message.
    fn on_readable(&mut self, shared: &Shared) -> Result<(), End> {
        let mut buf = [0u8; 2 * MSG_SIZE];
        loop {
            let r = match self.sock.recv(&mut buf) {
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
}

pub(super) fn connected(shared: &Shared, what: String, conn: Conn) {
    log::info!("memif {}: {what}", shared.cfg.devargs);
    shared.event(what);
    shared.publish(Some(Arc::new(conn)));
}

pub(super) fn unexpected(st: &State, m: &Msg) -> Result<(), End> {
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

/// The control loop of one started port; returns once `shared.stop` is set.
pub(crate) fn run(shared: &Shared, listener: Option<&SeqPacket>) {
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
                    let _ = wait_readable(&[l.as_raw_fd()], &mut [false], POLL);
                    match l.accept() {
                        Ok(Some(sock)) => {
                            let s = Session::new(sock, State::AwaitInit);
                            if s.send(&Session::hello(shared), None).is_ok() {
                                sess = Some(s);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("memif {}: accept: {e}", cfg.devargs);
                            std::thread::sleep(POLL);
                        }
                    }
                }
                Role::Client => {
                    let now = Instant::now();
                    if now < next_try {
                        std::thread::sleep((next_try - now).min(POLL));
                        continue;
                    }
                    match SeqPacket::connect(&cfg.socket, cfg.abstract_socket) {
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
        let mut ready = [false; 2];
        if wait_readable(&fds, &mut ready, POLL).is_err() {
            ready = [false; 2];
        }
        if ready[1] {
            if let Some(l) = listener {
                // One client per interface: refuse the others politely.
                while let Ok(Some(extra)) = l.accept() {
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
