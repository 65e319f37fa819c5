//! `--metrics ADDR:PORT`: a Prometheus text endpoint (`GET /metrics`),
//! encoded with `prometheus-client` from the counters the lcores already
//! keep (nothing is added to the forward path but the latency buckets an
//! lcore publishes every 100 ms). The HTTP server is a small non-blocking
//! one on the main thread's loop (mio): one request per connection, the
//! request head bounded, connections capped, the answer closed after.

use crate::dataplane::Dataplane;
use crate::error::RunError;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Upper bounds of the latency buckets (ns): 256 ns · 2^i.
pub const LAT_BUCKETS: usize = 20;

/// Bucket `i`'s upper bound in ns.
pub fn lat_bound_ns(i: usize) -> u64 {
    256u64 << i
}

/// Latency buckets an lcore publishes from its histogram (cumulative
/// counts per bound, the total count and sum), single writer.
#[derive(Debug, Default)]
pub struct LatencyBuckets {
    /// Samples at or below each bound.
    pub le: [crate::counters::Counter; LAT_BUCKETS],
    /// Samples.
    pub count: crate::counters::Counter,
    /// Sum of the samples (ns).
    pub sum_ns: crate::counters::Counter,
}

impl LatencyBuckets {
    /// Copy the histogram's figures (the lcore, every 100 ms at most).
    pub fn publish(&self, h: &hdrhistogram::Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        let mut per = [0u64; LAT_BUCKETS];
        for v in h.iter_recorded() {
            let x = v.value_iterated_to();
            if let Some(i) = (0..LAT_BUCKETS).find(|&i| x <= lat_bound_ns(i)) {
                per[i] += v.count_at_value();
            }
        }
        let mut cum = 0u64;
        for (c, n) in self.le.iter().zip(per) {
            cum += n;
            c.max(cum);
        }
        self.count.max(h.len());
        self.sum_ns.max((h.mean() * h.len() as f64) as u64);
    }
}

/// A histogram from published buckets.
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(String, String)>;

fn counter_family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let f = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
    for (l, v) in rows {
        f.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, f);
}

/// One counter family per key, in key order.
fn counter_families(
    reg: &mut Registry,
    rows: std::collections::BTreeMap<&str, Vec<(Labels, u64)>>,
    name: impl Fn(&str) -> String,
    help: impl Fn(&str) -> String,
) {
    for (k, r) in rows {
        counter_family(reg, &name(k), &help(k), r);
    }
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (l, v) in rows {
        f.get_or_create(&l).set(v);
    }
    reg.register(name, help, f);
}

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The metrics text of the data plane now.
pub fn render(dp: &Dataplane) -> String {
    let mut reg = Registry::with_prefix("xfwd");
    let mut port_rows: std::collections::BTreeMap<&str, Vec<(Labels, u64)>> = Default::default();
    let mut q_rows: std::collections::BTreeMap<&str, Vec<(Labels, u64)>> = Default::default();
    for p in dp.ports() {
        let s = p.port.stats();
        let lp = l(&[
            ("port", p.id.to_string()),
            ("driver", p.info.driver.to_string()),
        ]);
        for (k, v) in [
            ("rx_packets", s.ipackets),
            ("tx_packets", s.opackets),
            ("rx_bytes", s.ibytes),
            ("tx_bytes", s.obytes),
            ("rx_dropped", s.imissed),
            ("rx_errors", s.ierrors),
            ("tx_errors", s.oerrors),
            ("rx_nombuf", s.rx_nombuf),
        ] {
            port_rows.entry(k).or_default().push((lp.clone(), v));
        }
        for (dir, qs) in [("rx", &s.rxq), ("tx", &s.txq)] {
            for (i, q) in qs.iter().enumerate() {
                let lq = l(&[
                    ("port", p.id.to_string()),
                    ("queue", i.to_string()),
                    ("dir", dir.to_string()),
                ]);
                for (k, v) in [
                    ("packets", q.packets),
                    ("bytes", q.bytes),
                    ("errors", q.errors),
                    ("dropped", q.missed),
                ] {
                    q_rows.entry(k).or_default().push((lq.clone(), v));
                }
            }
        }
    }
    counter_families(
        &mut reg,
        port_rows,
        |k| format!("port_{k}"),
        |k| format!("Port {} (driver counters)", k.replace('_', " ")),
    );
    counter_families(
        &mut reg,
        q_rows,
        |k| format!("queue_{k}"),
        |k| format!("Queue {k}"),
    );
    // Streams: what the forward path did.
    let mut st_rows: std::collections::BTreeMap<&str, Vec<(Labels, u64)>> = Default::default();
    for (i, s) in dp.streams().iter().enumerate() {
        let c = s.counters.read();
        let ls = l(&[
            ("lcore", s.cpu.to_string()),
            ("stream", i.to_string()),
            ("rx", s.rx.map_or("-".into(), |q| q.to_string())),
            ("tx", s.tx.map_or("-".into(), |q| q.to_string())),
        ]);
        for (k, v) in [
            ("rx", c.rx),
            ("tx", c.tx),
            ("generated", c.generated),
            ("tx_dropped", c.tx_dropped),
            ("malformed", c.malformed),
            ("consumed", c.consumed),
            ("nombuf", c.nombuf),
        ] {
            st_rows.entry(k).or_default().push((ls.clone(), v));
        }
    }
    counter_families(
        &mut reg,
        st_rows,
        |k| format!("stream_{k}_packets"),
        |k| format!("Stream packets: {k}"),
    );
    // Lcores.
    let mut busy = Vec::new();
    let mut stalls = Vec::new();
    let mut busy_s = Vec::new();
    let mut lat_sum = 0u64;
    let mut lat_count = 0u64;
    let mut lat = [0u64; LAT_BUCKETS];
    for lc in dp.lcores() {
        let c = lc.counters.read();
        let ll = l(&[("lcore", lc.cpu.to_string()), ("mode", lc.mode.to_string())]);
        let total = (c.busy_ns + c.idle_ns) as f64;
        busy.push((
            ll.clone(),
            if total > 0.0 {
                c.busy_ns as f64 / total
            } else {
                0.0
            },
        ));
        stalls.push((ll.clone(), c.stalls));
        busy_s.push((ll, c.busy_ns / 1_000_000));
        let lb = &lc.counters.latency;
        lat_count += lb.count.get();
        lat_sum += lb.sum_ns.get();
        for (a, b) in lat.iter_mut().zip(&lb.le) {
            *a += b.get();
        }
    }
    gauge_family(
        &mut reg,
        "lcore_busy_ratio",
        "Share of the lcore's polling time that moved packets",
        busy,
    );
    counter_family(
        &mut reg,
        "lcore_stalls",
        "Polling gaps over 100 us (the thread was away)",
        stalls,
    );
    counter_family(
        &mut reg,
        "lcore_busy_milliseconds",
        "Milliseconds of polling rounds that moved packets",
        busy_s,
    );
    if let Some(pool) = dp.pool() {
        let s = pool.stats();
        reg.register(
            "mempool_in_use",
            "Mbufs out of the pool (in queues, lcores, in flight)",
            ConstGauge::new(s.in_use as i64),
        );
        reg.register(
            "mempool_capacity",
            "Mbufs in the pool",
            ConstGauge::new(s.capacity as i64),
        );
        reg.register(
            "mempool_alloc_failures",
            "Allocations the pool could not serve",
            ConstCounter::new(s.alloc_failures),
        );
    }
    // Cumulative counts → per-bucket counts (the encoder accumulates).
    let mut buckets = Vec::with_capacity(LAT_BUCKETS + 1);
    let mut prev = 0;
    for (i, cum) in lat.iter().enumerate() {
        buckets.push((lat_bound_ns(i) as f64 / 1e9, cum.saturating_sub(prev)));
        prev = *cum;
    }
    buckets.push((f64::INFINITY, lat_count.saturating_sub(prev)));
    reg.register(
        "latency_seconds",
        "Generator-to-receiver latency (published by the lcores every 100 ms)",
        ConstHistogram {
            sum: lat_sum as f64 / 1e9,
            count: lat_count,
            buckets,
        },
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        log::warn!("metrics encoding: {e}");
    }
    out
}

const LISTENER: Token = Token(0);
const MAX_HEAD: usize = 8192;
const MAX_CONNS: usize = 16;
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    since: Instant,
}

/// The metrics HTTP server.
#[derive(Debug)]
pub struct Metrics {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    /// Where it listens (the port the kernel chose for `:0`).
    pub addr: SocketAddr,
    /// Scrapes answered.
    pub scrapes: u64,
}

impl Metrics {
    /// Listen on `addr`.
    ///
    /// # Errors
    /// [`RunError::Metrics`].
    pub fn bind(addr: SocketAddr) -> Result<Metrics, RunError> {
        let err = |source| RunError::Metrics { addr, source };
        let poll = Poll::new().map_err(err)?;
        let mut listener = TcpListener::bind(addr).map_err(err)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(Metrics {
            poll,
            events: Events::with_capacity(32),
            listener,
            conns: HashMap::new(),
            next: 1,
            addr,
            scrapes: 0,
        })
    }

    /// Wait up to `timeout`, then accept, read request heads, answer.
    pub fn serve(&mut self, timeout: Duration, dp: &Dataplane) {
        let timeout = if self.conns.is_empty() {
            timeout
        } else {
            timeout.min(Duration::from_millis(5))
        };
        if self.poll.poll(&mut self.events, Some(timeout)).is_err() {
            return;
        }
        let accept = self.events.iter().any(|e| e.token() == LISTENER);
        if accept {
            for _ in 0..2 * MAX_CONNS {
                match self.listener.accept() {
                    Ok((mut stream, _)) => {
                        if self.conns.len() >= MAX_CONNS {
                            let _ = stream.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            continue;
                        }
                        if let Some(t) =
                            crate::telemetry::register(&self.poll, &mut self.next, &mut stream)
                        {
                            self.conns.insert(
                                t,
                                Conn {
                                    stream,
                                    inbuf: Vec::new(),
                                    out: Vec::new(),
                                    sent: 0,
                                    since: Instant::now(),
                                },
                            );
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            let done = self.service(t, dp);
            if done {
                if let Some(mut c) = self.conns.remove(&t) {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }

    /// True when the connection is finished.
    fn service(&mut self, t: Token, dp: &Dataplane) -> bool {
        let Some(c) = self.conns.get_mut(&t) else {
            return true;
        };
        if c.since.elapsed() > CONN_TIMEOUT {
            return true;
        }
        if c.out.is_empty() {
            let mut buf = [0u8; 2048];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&buf[..n]);
                        if c.inbuf.len() > MAX_HEAD {
                            c.out = response(
                                "431 Request Header Fields Too Large",
                                "text/plain",
                                "request head too large\n",
                            );
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return true,
                }
            }
            if c.out.is_empty() {
                let Some(end) = c.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&c.inbuf[..end]);
                let first = head.lines().next().unwrap_or("");
                let mut it = first.split_whitespace();
                let (method, path) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                c.out = match (method, path.split('?').next().unwrap_or("")) {
                    ("GET", "/metrics") => {
                        self.scrapes += 1;
                        response(
                            "200 OK",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            &render(dp),
                        )
                    }
                    ("GET", "/") => {
                        response("200 OK", "text/plain", "xfwd metrics: GET /metrics\n")
                    }
                    ("GET", _) => response("404 Not Found", "text/plain", "GET /metrics\n"),
                    _ => response("405 Method Not Allowed", "text/plain", "GET /metrics\n"),
                };
            }
        }
        while c.sent < c.out.len() {
            match c.stream.write(&c.out[c.sent..]) {
                Ok(0) => return true,
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        true
    }
}

fn response(status: &str, ctype: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

/// Parse `--metrics`: `ADDR:PORT`, or `PORT` alone (loopback).
///
/// # Errors
/// A text naming what is accepted.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("`{s}` is not ADDR:PORT (like 127.0.0.1:9464) or a port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_from_the_histogram() {
        let mut h = crate::latency::histogram();
        for v in [100u64, 200, 300, 1000, 5000, 1_000_000] {
            h.record(v).unwrap();
        }
        let b = LatencyBuckets::default();
        b.publish(&h);
        assert_eq!(b.le[0].get(), 2, "≤256 ns");
        assert_eq!(b.le[1].get(), 3, "≤512 ns");
        assert_eq!(b.le[2].get(), 4, "≤1024 ns");
        assert_eq!(b.le[LAT_BUCKETS - 1].get(), 6);
        assert_eq!(b.count.get(), 6);
    }

    #[test]
    fn metrics_address_defaults_to_loopback() {
        assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert!(parse_addr("nope").is_err());
    }
}
