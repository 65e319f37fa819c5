//! Telemetry: a Unix stream socket served with mio from the main thread
//! (DPDK telemetry style). A client sends one query per line (`/ports`,
//! `/ports/N/stats`, `/ports/N/xstats`, `/lcores`, `/mempool`, `/dma`,
//! `/help`) and gets one JSON object per line. On connect the server sends
//! `{"version": .., "pid": .., "commands": [..]}`.

use crate::dataplane::Dataplane;
use crate::error::RunError;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
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
const MAX_LINE: usize = 4096;

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
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
}

impl Telemetry {
    /// Bind `path` (a stale socket there is replaced).
    ///
    /// # Errors
    /// [`RunError::Telemetry`].
    pub fn bind(path: &Path) -> Result<Telemetry, RunError> {
        let err = |source| RunError::Telemetry {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            std::fs::remove_file(path).map_err(err)?;
        }
        let poll = Poll::new().map_err(err)?;
        let mut listener = UnixListener::bind(path).map_err(err)?;
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
        })
    }

    /// Serve requests for up to `timeout`.
    pub fn serve(&mut self, timeout: Duration, dp: &Dataplane) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                log::warn!("telemetry poll: {e}");
            }
            return;
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for t in ready {
            if t == LISTENER {
                self.accept();
            } else if !self.service(t, dp) {
                if let Some(mut c) = self.conns.remove(&t) {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let t = Token(self.next);
                    self.next += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let hello = json!({
                        "version": concat!("xfwd ", env!("CARGO_PKG_VERSION")),
                        "pid": std::process::id(),
                        "max_output_len": 1 << 20,
                        "commands": COMMANDS,
                    });
                    let mut outbuf = hello.to_string().into_bytes();
                    outbuf.push(b'\n');
                    self.conns.insert(
                        t,
                        Conn {
                            stream,
                            inbuf: Vec::new(),
                            outbuf,
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("telemetry accept: {e}");
                    return;
                }
            }
        }
    }

    /// Read queries, answer them, flush; false when the connection is done.
    fn service(&mut self, t: Token, dp: &Dataplane) -> bool {
        let Some(c) = self.conns.get_mut(&t) else {
            return true;
        };
        let mut buf = [0u8; 1024];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        while let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
            let q = String::from_utf8_lossy(&line);
            let mut out = answer(q.trim(), dp).to_string().into_bytes();
            out.push(b'\n');
            c.outbuf.extend_from_slice(&out);
        }
        if c.inbuf.len() > MAX_LINE {
            return false;
        }
        while !c.outbuf.is_empty() {
            match c.stream.write(&c.outbuf) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
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
                        "slept_ns": c.slept_ns, "sleeps": c.sleeps, "packets": c.packets, "loops": c.loops, "streams": streams})
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
/// per reason (`fwd_drop_<reason>`, docs/forwarding.md) and `fwd_partial`.
fn fwd_xstats(dp: &Dataplane, id: u16, x: &mut serde_json::Map<String, Value>) {
    let (mut drops, mut partial) = (crate::counters::Drops::default(), 0);
    for s in dp
        .streams()
        .iter()
        .filter(|s| s.rx.is_some_and(|q| q.port == id))
    {
        let c = s.counters.read();
        drops += c.drops;
        partial += c.partial;
    }
    for r in crate::fwd::Reason::ALL {
        x.insert(format!("fwd_drop_{}", r.name()), json!(drops.get(r)));
    }
    x.insert("fwd_partial".into(), json!(partial));
}
