//! Telemetry: a Unix stream socket served with mio from the main thread
//! (DPDK telemetry style). A client sends one request per line and gets one
//! JSON object per line: the queries `/ports`, `/ports/N/stats`,
//! `/ports/N/xstats`, `/lcores`, `/mempool`, `/dma`, `/help` (answered by
//! [`answer`]) and every command of the prompt (`show port stats all`,
//! `stop`, ...; see [`crate::control`]). On connect the server sends
//! `{"version": .., "pid": .., "commands": [..]}`.
//!
//! Hardening: the socket is created mode 0600 (0660 and the group with
//! `--telemetry-group`), peers are checked with `SO_PEERCRED`, a request
//! line is at most [`Limits::max_request`] bytes, pending output per
//! connection at most [`Limits::max_pending`] (the server stops reading a
//! client that does not read its answers, and drops it after
//! [`Limits::stall`]), connections are capped, and one call of
//! [`Telemetry::serve`] does bounded work, so the main thread keeps
//! checking signals and `--duration` whatever a client does.

use crate::dataplane::Dataplane;
use crate::error::RunError;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xfwd_pmd::port::mac_string;

/// Queries the server answers.
pub const COMMANDS: &[&str] = &[
    "/ports",
    "/ports/N/stats",
    "/ports/N/xstats",
    "/lcores",
    "/mempool",
    "/dma",
    "/help",
    "/l3fwd [route/add PREFIX PORT | route/del PREFIX | flow/add .. | flow/del .. | lookup ADDR]",
];
const LISTENER: Token = Token(0);

/// Per-connection and per-server bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line (bytes, without the newline).
    pub max_request: usize,
    /// Longest answer; a longer one is replaced by an error.
    pub max_reply: usize,
    /// Output waiting for a client before the server stops reading it.
    pub max_pending: usize,
    /// Open connections; more are told so and closed.
    pub max_conns: usize,
    /// A client whose pending output has not moved for this long is dropped.
    pub stall: Duration,
    /// Bytes read per connection per [`Telemetry::serve`] call.
    pub read_budget: usize,
    /// Requests answered per connection per call.
    pub request_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request: 4096,
            max_reply: 1 << 20,
            max_pending: 1 << 20,
            max_conns: 16,
            stall: Duration::from_secs(5),
            read_budget: 16 << 10,
            request_budget: 32,
        }
    }
}

/// What the server did (for tests and the final report).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Refused: over the cap.
    pub refused_full: u64,
    /// Refused: peer credentials.
    pub refused_peer: u64,
    /// Dropped: a request line over the limit.
    pub dropped_long: u64,
    /// Dropped: output stalled.
    pub dropped_stalled: u64,
    /// Requests answered.
    pub requests: u64,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Set by a readable event, cleared at `WouldBlock` (mio is edge-triggered).
    readable: bool,
    /// Close once the output is flushed (an over-long request).
    closing: bool,
    /// Since when the pending output has not moved.
    stalled_since: Option<Instant>,
}

/// The telemetry server.
#[derive(Debug)]
pub struct Telemetry {
    path: PathBuf,
    poll: Poll,
    events: Events,
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    limits: Limits,
    uid: u32,
    gid: Option<u32>,
    /// What the server did.
    pub stats: ServerStats,
}

impl Telemetry {
    /// Bind `path` mode 0600, or 0660 owned by group `gid` (a stale
    /// socket there is replaced; a live one is an error).
    ///
    /// # Errors
    /// [`RunError::Telemetry`].
    pub fn bind(path: &Path, gid: Option<u32>, limits: Limits) -> Result<Telemetry, RunError> {
        let err = |source| RunError::Telemetry {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    "another process serves this socket",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        let poll = Poll::new().map_err(err)?;
        // No window in which the socket is reachable with the umask's mode:
        // created 0600, then opened to the group if asked.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let mut listener = bound.map_err(err)?;
        if let Some(g) = gid {
            let r = nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(g)))
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                });
            if let Err(e) = r {
                let _ = std::fs::remove_file(path);
                return Err(err(e));
            }
        }
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(err)?;
        Ok(Telemetry {
            path: path.to_path_buf(),
            poll,
            events: Events::with_capacity(64),
            listener,
            conns: HashMap::new(),
            next: 1,
            limits,
            uid: nix::unistd::geteuid().as_raw(),
            gid,
            stats: ServerStats::default(),
        })
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Wait up to `timeout` for events, then do a bounded amount of work:
    /// accept, read, answer each request line with `handler`, write.
    pub fn serve(&mut self, timeout: Duration, handler: &mut dyn FnMut(&str) -> Value) {
        let busy = self
            .conns
            .values()
            .any(|c| c.readable || c.inbuf.contains(&b'\n') || !c.outbuf.is_empty());
        let timeout = if busy {
            timeout.min(Duration::from_millis(5))
        } else {
            timeout
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                log::warn!("telemetry poll: {e}");
            }
            return;
        }
        let mut accept = false;
        for e in self.events.iter() {
            if e.token() == LISTENER {
                accept = true;
            } else if let Some(c) = self.conns.get_mut(&e.token()) {
                if e.is_readable() || e.is_read_closed() || e.is_error() {
                    c.readable = true;
                }
            }
        }
        if accept {
            self.accept();
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if !self.service(t, handler) {
                if let Some(mut c) = self.conns.remove(&t) {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }

    fn peer_allowed(&self, stream: &UnixStream) -> Result<(), String> {
        let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| format!("SO_PEERCRED: {e}"))?;
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
        if uid == 0 || uid == self.uid {
            return Ok(());
        }
        if let Some(g) = self.gid {
            if gid == g || supplementary_groups(pid).contains(&g) {
                return Ok(());
            }
        }
        Err(format!(
            "peer uid {uid} gid {gid} (pid {pid}) is neither this user nor in the telemetry group"
        ))
    }

    fn accept(&mut self) {
        // Bounded: at most twice the cap per call.
        for _ in 0..2 * self.limits.max_conns {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("telemetry accept: {e}");
                    return;
                }
            };
            let refuse = |stream: &mut UnixStream, why: &str| {
                let mut line = json!({"error": why}).to_string().into_bytes();
                line.push(b'\n');
                let _ = stream.write(&line); // best effort, non-blocking
            };
            if let Err(why) = self.peer_allowed(&stream) {
                log::warn!("telemetry: refused a connection: {why}");
                self.stats.refused_peer += 1;
                refuse(&mut stream, &why);
                continue;
            }
            if self.conns.len() >= self.limits.max_conns {
                self.stats.refused_full += 1;
                refuse(
                    &mut stream,
                    &format!("too many connections (at most {})", self.limits.max_conns),
                );
                continue;
            }
            let Some(t) = register(&self.poll, &mut self.next, &mut stream) else {
                continue;
            };
            self.stats.accepted += 1;
            let hello = json!({
                "version": concat!("xfwd ", env!("CARGO_PKG_VERSION")),
                "pid": std::process::id(),
                "max_output_len": self.limits.max_reply,
                "max_request_len": self.limits.max_request,
                "commands": COMMANDS,
                "prompt_commands": crate::control::commands::names(),
            });
            let mut outbuf = hello.to_string().into_bytes();
            outbuf.push(b'\n');
            self.conns.insert(
                t,
                Conn {
                    stream,
                    inbuf: Vec::new(),
                    outbuf,
                    readable: true,
                    closing: false,
                    stalled_since: None,
                },
            );
        }
    }

    /// Read (bounded), answer (bounded), flush; false when the connection is done.
    fn service(&mut self, t: Token, handler: &mut dyn FnMut(&str) -> Value) -> bool {
        let lim = self.limits;
        let Some(c) = self.conns.get_mut(&t) else {
            return true;
        };
        // Read only while the output is within bounds and no over-long
        // line is pending: a client that does not read its answers is not
        // read either (its own writes then block, not ours).
        let mut budget = lim.read_budget;
        let mut buf = [0u8; 4096];
        while c.readable && !c.closing && budget > 0 && c.outbuf.len() < lim.max_pending {
            let want = buf
                .len()
                .min(budget)
                .min(lim.max_request + 1 - c.inbuf.len().min(lim.max_request));
            match c.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    // The client closed its side: answer what it sent, then go.
                    c.readable = false;
                    c.closing = true;
                }
                Ok(n) => {
                    budget -= n;
                    c.inbuf.extend_from_slice(&buf[..n]);
                    if !c.inbuf.contains(&b'\n') && c.inbuf.len() > lim.max_request {
                        break;
                    }
                    if c.inbuf.len() > lim.max_request {
                        break; // answer the lines first
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let mut answered = 0;
        while answered < lim.request_budget && c.outbuf.len() < lim.max_pending {
            let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
            if nl > lim.max_request {
                c.outbuf.extend_from_slice(&too_long(lim.max_request));
                c.closing = true;
                self.stats.dropped_long += 1;
                break;
            }
            let q = String::from_utf8_lossy(&line);
            let q = q.trim();
            if q.is_empty() {
                continue;
            }
            answered += 1;
            self.stats.requests += 1;
            let mut out = handler(q).to_string().into_bytes();
            if out.len() > lim.max_reply {
                out = json!({"error": format!("answer of {} B over the {} B limit", out.len(), lim.max_reply)})
                    .to_string()
                    .into_bytes();
            }
            out.push(b'\n');
            c.outbuf.extend_from_slice(&out);
        }
        if !c.closing && !c.inbuf.contains(&b'\n') && c.inbuf.len() > lim.max_request {
            c.outbuf.extend_from_slice(&too_long(lim.max_request));
            c.inbuf.clear();
            c.closing = true;
            self.stats.dropped_long += 1;
        }
        let mut off = 0;
        while off < c.outbuf.len() {
            match c.stream.write(&c.outbuf[off..]) {
                Ok(0) => return false,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        c.outbuf.drain(..off);
        if c.outbuf.is_empty() {
            c.stalled_since = None;
            // Closing: everything said; pending requests of a client that
            // closed its side were answered above.
            return !c.closing || c.inbuf.contains(&b'\n');
        }
        if off > 0 || c.stalled_since.is_none() {
            c.stalled_since = Some(Instant::now());
        }
        let since = *c.stalled_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= lim.stall {
            log::warn!(
                "telemetry: dropped a client that read nothing of {} B for {:?}",
                c.outbuf.len(),
                lim.stall
            );
            self.stats.dropped_stalled += 1;
            return false;
        }
        true
    }
}

/// Register an accepted connection for reading and writing under the next
/// token (shared with the metrics server).
pub(crate) fn register<S: mio::event::Source>(
    poll: &Poll,
    next: &mut usize,
    s: &mut S,
) -> Option<Token> {
    let t = Token(*next);
    *next += 1;
    poll.registry()
        .register(s, t, Interest::READABLE | Interest::WRITABLE)
        .ok()
        .map(|()| t)
}

fn too_long(max: usize) -> Vec<u8> {
    let mut v = json!({"error": format!("request line longer than {max} B: closing")})
        .to_string()
        .into_bytes();
    v.push(b'\n');
    v
}

/// The supplementary groups of process `pid` (from /proc; empty if gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The answer to one query.
pub fn answer(q: &str, dp: &Dataplane) -> Value {
    // l3fwd's commands take arguments with `/` in them (prefixes).
    if let Some(rest) = q.strip_prefix("/l3fwd") {
        return crate::fwd::l3fwd::control::answer(rest, dp);
    }
    let parts: Vec<&str> = q.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "ports"] => Value::Array(
            dp.ports()
                .iter()
                .map(|p| {
                    let l = p.port.link();
                    json!({"port": p.id, "driver": p.info.driver, "devargs": p.info.devargs,
                        "mac": mac_string(&p.info.mac), "peer": mac_string(&p.peer_mac),
                        "link_up": l.up, "speed_mbps": l.speed_mbps, "mapping": p.info.mapping.to_string()})
                })
                .collect(),
        ),
        ["", "ports", n, what @ ("stats" | "xstats")] => {
            match n.parse::<u16>().ok().and_then(|n| dp.ports().iter().find(|p| p.id == n)) {
                None => json!({"error": format!("no port {n}; ports: {:?}", dp.ports().iter().map(|p| p.id).collect::<Vec<_>>())}),
                Some(p) if *what == "xstats" => {
                    let mut x: serde_json::Map<String, Value> =
                        p.port.xstats().into_iter().map(|(k, v)| (k, json!(v))).collect();
                    fwd_xstats(dp, p.id, &mut x);
                    Value::Object(x)
                }
                Some(p) => {
                    let s = p.port.stats();
                    json!({"port": p.id, "rx_packets": s.ipackets, "tx_packets": s.opackets,
                        "rx_bytes": s.ibytes, "tx_bytes": s.obytes, "rx_missed": s.imissed,
                        "rx_errors": s.ierrors, "tx_errors": s.oerrors, "rx_nombuf": s.rx_nombuf})
                }
            }
        }
        ["", "lcores"] => Value::Array(
            dp.lcores()
                .iter()
                .map(|l| {
                    let c = l.counters.read();
                    let streams: Vec<Value> = dp
                        .streams()
                        .iter()
                        .filter(|s| s.cpu == l.cpu)
                        .map(|s| json!({"rx": s.rx.map(|q| q.to_string()), "tx": s.tx.map(|q| q.to_string()), "counters": s.counters.read()}))
                        .collect();
                    json!({"lcore": l.cpu, "mode": l.mode, "busy_ns": c.busy_ns, "idle_ns": c.idle_ns,
                        "slept_ns": c.slept_ns, "sleeps": c.sleeps, "intr_wakes": c.intr_wakes, "packets": c.packets, "loops": c.loops, "streams": streams})
                })
                .collect(),
        ),
        ["", "mempool"] => dp.pool().map_or(Value::Null, |p| {
            let mut v = crate::stats::pool_json(&p.stats());
            v["memory"] = json!(dp.memory());
            v
        }),
        ["", "dma"] => Value::Array(
            dp.ports()
                .iter()
                .map(|p| {
                    let maps: Vec<Value> = p
                        .port
                        .mapper()
                        .mappings()
                        .iter()
                        .map(|m| json!({"va": format!("{:#x}", m.range.va), "iova": format!("{:#x}", m.range.iova),
                            "len": m.range.len, "kind": m.kind.to_string(), "origin": format!("{:?}", m.origin),
                            "key": m.key, "pins": m.pins}))
                        .collect();
                    json!({"port": p.id, "devargs": p.info.devargs, "mappings": maps})
                })
                .collect(),
        ),
        ["", "help"] | [""] => json!({"commands": COMMANDS}),
        _ => json!({"error": format!("unknown query `{q}`"), "commands": COMMANDS}),
    }
}

/// The forwarding mode's counters for what port `id` received: its drops
/// per reason (`fwd_drop_<reason>`, docs/forwarding.md) and `fwd_partial`;
/// with l3fwd also the router's drops (`fwd_drop_no_route`,
/// `fwd_drop_ttl_exceeded`, `fwd_drop_bad_header`, `fwd_drop_non_ip`) and
/// `fwd_vlan_forwarded`.
pub(crate) fn fwd_xstats(dp: &Dataplane, id: u16, x: &mut serde_json::Map<String, Value>) {
    let mut c = crate::counters::StreamStats::default();
    for s in dp
        .streams()
        .iter()
        .filter(|s| s.rx.is_some_and(|q| q.port == id))
    {
        c += s.counters.read();
    }
    for r in crate::fwd::Reason::ALL {
        x.insert(format!("fwd_drop_{}", r.name()), json!(c.drops.get(r)));
    }
    x.insert("fwd_partial".into(), json!(c.partial));
    if dp.l3fwd().is_some() {
        for (k, v) in [
            ("no_route", c.no_route),
            ("ttl_exceeded", c.ttl_exceeded),
            ("bad_header", c.bad_header),
            ("non_ip", c.non_ip),
        ] {
            x.insert(format!("fwd_drop_{k}"), json!(v));
        }
        x.insert("fwd_vlan_forwarded".into(), json!(c.vlan));
    }
}
