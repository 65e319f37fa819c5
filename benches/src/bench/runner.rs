//! One trial: start the generator (if any) and the forwarder, sample their
//! counters and CPU time at every stats period, stop them with SIGINT, and
//! turn the samples of the steady window into a [`Trial`].

use super::procfs::{self, CpuTimes, TICKS_PER_SEC};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which tool's stdout the forwarder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tool {
    /// xfwd with `--json`.
    Xfwd,
    /// dpdk-testpmd with `--stats-period 1`.
    Testpmd,
}

/// A command, optionally run inside a network namespace (`ip netns exec`,
/// which execs it: the PID is the tool's).
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Network namespace.
    pub netns: Option<String>,
}

impl Cmd {
    /// A command from a program and its arguments.
    pub fn new(argv: Vec<String>) -> Cmd {
        Cmd { argv, netns: None }
    }

    /// The same command inside `ns`.
    pub fn in_ns(mut self, ns: &str) -> Cmd {
        self.netns = Some(ns.to_string());
        self
    }

    /// The full command line.
    pub fn line(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(ns) = &self.netns {
            v.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        v.extend(self.argv.iter().cloned());
        v
    }

    fn spawn(&self, stdout: Stdio) -> std::io::Result<Child> {
        let l = self.line();
        Command::new(&l[0])
            .args(&l[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
    }
}

/// Where forwarded packets are counted.
#[derive(Debug, Clone)]
pub enum Counter {
    /// The forwarder's own RX counters (sum over its ports).
    Forwarder,
    /// RX packets of an interface in another namespace (the sink).
    Sink {
        /// Namespace of the sink.
        netns: String,
        /// Interface.
        iface: String,
    },
}

/// What to run in one trial.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    /// Parser of the forwarder's stdout.
    pub tool: Tool,
    /// The forwarder (device under test).
    pub fwd: Cmd,
    /// Ports the forwarder has (testpmd prints one block per port).
    pub nports: usize,
    /// A traffic generator started first and stopped last; with the
    /// interface whose TX counter is the offered load.
    pub gen: Option<(Cmd, String)>,
    /// Where forwarded packets are counted.
    pub counter: Counter,
    /// Seconds discarded after the first stats period.
    pub warmup: f64,
    /// Seconds measured.
    pub measure: f64,
    /// Noise limit: CPU time other processes may use, % of one CPU.
    pub noise_limit_pct: f64,
}

/// The outcome of a trial.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Trial {
    /// "ok", "noisy", "failed" or "unavailable".
    pub status: String,
    /// Why it failed or is unavailable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Forwarded packets per second in the window, millions.
    pub mpps: f64,
    /// Offered load (generator TX), millions of packets per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_mpps: Option<f64>,
    /// Forwarder process CPU time (utime+stime) per forwarded packet, ns.
    pub cpu_ns_per_pkt: f64,
    /// Cycles per packet the tool itself reports (busy cycles / packets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycles_per_pkt: Option<f64>,
    /// CPU time other processes used in the window, % of one CPU.
    pub noise_pct: f64,
    /// Hypervisor steal in the window, % of one CPU.
    pub steal_pct: f64,
    /// Window length, s.
    pub window_s: f64,
    /// Packets counted in the window.
    pub packets: u64,
    /// xfwd's final "latency" object, if it measured any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<serde_json::Value>,
    /// xfwd's leak audit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaked_mbufs: Option<u64>,
}

impl Trial {
    fn failed(status: &str, reason: String) -> Trial {
        Trial {
            status: status.into(),
            reason,
            ..Trial::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: Instant,
    pkts: u64,
    offered: u64,
    fwd_ticks: u64,
    ours_ticks: u64,
    cpu: CpuTimes,
}

/// PIDs whose CPU time is the benchmark's own.
#[derive(Debug, Clone)]
struct Pids {
    fwd: u32,
    gen: Option<u32>,
    helpers: Vec<u32>,
}

impl Pids {
    fn sample(&self, pkts: u64, spec: &TrialSpec, sink_pid: Option<u32>) -> Sample {
        let fwd_ticks = procfs::proc_ticks(self.fwd);
        let ours = fwd_ticks
            + self.gen.map(procfs::proc_ticks).unwrap_or(0)
            + self
                .helpers
                .iter()
                .map(|&p| procfs::proc_ticks(p))
                .sum::<u64>();
        let pkts = match (&spec.counter, sink_pid) {
            (Counter::Sink { iface, .. }, Some(p)) => {
                procfs::netdev_packets(p, iface).map(|c| c.0).unwrap_or(0)
            }
            _ => pkts,
        };
        let offered = match (&spec.gen, self.gen) {
            (Some((_, iface)), Some(p)) => {
                procfs::netdev_packets(p, iface).map(|c| c.1).unwrap_or(0)
            }
            _ => 0,
        };
        Sample {
            t: Instant::now(),
            pkts,
            offered,
            fwd_ticks,
            ours_ticks: ours,
            cpu: procfs::cpu_times(),
        }
    }
}

/// Output of the forwarder other than samples.
#[derive(Debug, Default)]
struct Tail {
    final_json: Option<serde_json::Value>,
    testpmd_cycles: Option<f64>,
}

/// Parses testpmd's periodic "NIC statistics" blocks.
#[derive(Debug, Default)]
struct TestpmdParser {
    port: usize,
    rx: Vec<u64>,
}

impl TestpmdParser {
    /// Feed a line; returns the cumulative RX total when a block ends.
    fn line(&mut self, l: &str, nports: usize) -> Option<u64> {
        let l = l.trim_start_matches(|c: char| {
            c.is_control() || c == '[' || c.is_ascii_digit() || c == ';' || c == 'J' || c == 'H'
        });
        let l = l.trim();
        if let Some(i) = l.find("NIC statistics for port") {
            let p = l[i + 23..]
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            self.port = p;
            if self.rx.len() <= p {
                self.rx.resize(p + 1, 0);
            }
        } else if let Some(r) = l.strip_prefix("RX-packets:") {
            if let Some(v) = r.split_whitespace().next().and_then(|x| x.parse().ok()) {
                if self.port < self.rx.len() {
                    self.rx[self.port] = v;
                }
            }
        } else if l.starts_with("Tx-pps:") && self.port + 1 == nports {
            return Some(self.rx.iter().sum());
        }
        None
    }
}

/// `--record-core-cycles` summary: "CPU cycles/packet=12.34 (...)".
fn testpmd_cycles(l: &str) -> Option<f64> {
    let i = l.find("CPU cycles/packet=")?;
    l[i + 18..].split_whitespace().next()?.parse().ok()
}

fn xfwd_rx_total(v: &serde_json::Value) -> u64 {
    v["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["rx_packets"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Send `sig` to a process the harness started.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) takes plain integers; the PID is a child we spawned
    // and have not reaped yet, so it cannot name another process.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// SIGINT, then SIGKILL after `grace`; always reaps the child.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), libc::SIGINT);
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills and reaps a child on drop (a failed trial leaves nothing behind).
struct Guard(Option<Child>, Duration);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            stop(c, self.1);
        }
    }
}

fn stderr_collector(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut e) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            let _ = tx.send(s);
        });
    }
    rx
}

fn tail_lines(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(n)..].join(" | ")
}

/// Run one trial.
pub fn run(spec: &TrialSpec) -> Trial {
    let grace = Duration::from_secs(10);
    // A process in the sink namespace lets us read its counters.
    let mut sink = Guard(None, grace);
    if let Counter::Sink { netns, .. } = &spec.counter {
        match Cmd::new(vec!["sleep".into(), "3600".into()])
            .in_ns(netns)
            .spawn(Stdio::null())
        {
            Ok(c) => sink.0 = Some(c),
            Err(e) => return Trial::failed("failed", format!("sink process: {e}")),
        }
    }
    let sink_pid = sink.0.as_ref().map(|c| c.id());
    let mut gen = Guard(None, grace);
    if let Some((g, iface)) = &spec.gen {
        let mut c = match g.spawn(Stdio::null()) {
            Ok(c) => c,
            Err(e) => return Trial::failed("failed", format!("generator {:?}: {e}", g.argv[0])),
        };
        let gen_err = stderr_collector(&mut c);
        let pid = c.id();
        gen.0 = Some(c);
        // Wait until the generator really sends (an empty interface name: a
        // peer with no netdev, e.g. a memif server, gets a fixed start-up time).
        if iface.is_empty() {
            std::thread::sleep(Duration::from_millis(1500));
            if let Some(Ok(Some(_))) = gen.0.as_mut().map(|c| c.try_wait()) {
                let e = gen_err.recv_timeout(grace).unwrap_or_default();
                return Trial::failed("failed", format!("peer exited: {}", tail_lines(&e, 4)));
            }
        }
        let t0 = Instant::now();
        // The counter appears once `ip netns exec` has entered the namespace.
        let mut first = None;
        while !iface.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            let now = procfs::netdev_packets(pid, iface).map(|c| c.1);
            if first.is_none() {
                first = now;
            } else if now > first {
                break;
            }
            if let Some(Ok(Some(_))) = gen.0.as_mut().map(|c| c.try_wait()) {
                let e = gen_err.recv_timeout(grace).unwrap_or_default();
                return Trial::failed("failed", format!("generator exited: {}", tail_lines(&e, 4)));
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Trial::failed("failed", "generator sent nothing in 20 s".into());
            }
        }
    }
    let mut child = match spec.fwd.spawn(Stdio::piped()) {
        Ok(c) => c,
        Err(e) => return Trial::failed("failed", format!("{:?}: {e}", spec.fwd.argv[0])),
    };
    let err_rx = stderr_collector(&mut child);
    let stdout = child.stdout.take();
    let pids = Pids {
        fwd: child.id(),
        gen: gen.0.as_ref().map(|c| c.id()),
        helpers: procfs::ksoftirqd_pids()
            .into_iter()
            .chain([std::process::id()])
            .chain(sink_pid)
            .collect(),
    };
    let mut fwd = Guard(Some(child), grace);
    let (stx, srx) = mpsc::channel::<Sample>();
    let (ttx, trx) = mpsc::channel::<Tail>();
    let (spec2, pids2) = (spec.clone(), pids.clone());
    let reader = std::thread::spawn(move || {
        let mut tail = Tail::default();
        let mut tp = TestpmdParser::default();
        let Some(out) = stdout else {
            let _ = ttx.send(tail);
            return;
        };
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let total = match spec2.tool {
                Tool::Xfwd => match serde_json::from_str::<serde_json::Value>(&l) {
                    Ok(v) if v["type"] == "period" => Some(xfwd_rx_total(&v)),
                    Ok(v) if v["type"] == "final" => {
                        tail.final_json = Some(v);
                        None
                    }
                    _ => None,
                },
                Tool::Testpmd => {
                    if let Some(c) = testpmd_cycles(&l) {
                        tail.testpmd_cycles = Some(c);
                    }
                    tp.line(&l, spec2.nports)
                }
            };
            if let Some(t) = total {
                let _ = stx.send(pids2.sample(t, &spec2, sink_pid));
            }
        }
        let _ = ttx.send(tail);
    });
    // Wait for the first period, then warm-up + measurement.
    let mut samples = Vec::new();
    let boot = Duration::from_secs(30);
    match srx.recv_timeout(boot) {
        Ok(s) => samples.push(s),
        Err(_) => {
            if let Some(c) = fwd.0.as_mut() {
                stop(c, grace);
            }
            let _ = reader.join();
            let err = err_rx.recv_timeout(grace).unwrap_or_default();
            let status = if err.contains("unknown driver") {
                "unavailable"
            } else {
                "failed"
            };
            return Trial::failed(status, tail_lines(&err, 3));
        }
    }
    // Until warm-up + measurement have passed and the window holds two
    // samples (testpmd's periods stretch to 2 s under load), at most 10 s more.
    let w0 = samples[0].t + Duration::from_secs_f64(spec.warmup);
    let t_end = samples[0].t + Duration::from_secs_f64(spec.warmup + spec.measure + 0.2);
    let t_max = t_end + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        let in_window = samples
            .iter()
            .filter(|s| s.t >= w0 - Duration::from_millis(100))
            .count();
        if (now >= t_end && in_window >= 2) || now >= t_max {
            break;
        }
        let wait = if now < t_end {
            t_end - now
        } else {
            t_max - now
        };
        match srx.recv_timeout(wait) {
            Ok(s) => samples.push(s),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let t_stop = Instant::now();
    if let Some(c) = fwd.0.as_mut() {
        stop(c, grace);
    }
    let _ = reader.join();
    let tail = trx.recv_timeout(grace).unwrap_or_default();
    let err = err_rx.recv_timeout(grace).unwrap_or_default();
    if let Some(c) = gen.0.as_mut() {
        stop(c, grace);
    }
    samples.retain(|s| s.t <= t_stop);
    let Some(a) = samples
        .iter()
        .find(|s| s.t >= w0 - Duration::from_millis(100))
        .copied()
    else {
        return Trial::failed(
            "failed",
            format!("no stats after warm-up: {}", tail_lines(&err, 3)),
        );
    };
    let Some(b) = samples.last().copied() else {
        return Trial::failed("failed", "no samples".into());
    };
    let dt = (b.t - a.t).as_secs_f64();
    if dt < 0.5 {
        return Trial::failed(
            "failed",
            format!("window too short ({dt:.2} s): {}", tail_lines(&err, 3)),
        );
    }
    let pkts = b.pkts.saturating_sub(a.pkts);
    let fwd_ticks = b.fwd_ticks.saturating_sub(a.fwd_ticks);
    let ours = b.ours_ticks.saturating_sub(a.ours_ticks);
    let all = b.cpu.task.saturating_sub(a.cpu.task);
    let pct = |ticks: u64| 100.0 * ticks as f64 / TICKS_PER_SEC / dt;
    let noise_pct = pct(all.saturating_sub(ours));
    let fin = tail.final_json;
    let cycles = match spec.tool {
        Tool::Testpmd => tail.testpmd_cycles,
        Tool::Xfwd => fin.as_ref().and_then(|f| {
            let l = f["lcores"].as_array()?;
            let (busy, pk) = l.iter().fold((0u64, 0u64), |(b, p), x| {
                (
                    b + x["busy_cycles"].as_u64().unwrap_or(0),
                    p + x["packets"].as_u64().unwrap_or(0),
                )
            });
            (pk > 0).then(|| busy as f64 / pk as f64)
        }),
    };
    let latency = fin
        .as_ref()
        .map(|f| f["latency"].clone())
        .filter(|l| l["samples"].as_u64().unwrap_or(0) > 0);
    Trial {
        status: if noise_pct > spec.noise_limit_pct {
            "noisy"
        } else {
            "ok"
        }
        .into(),
        reason: if pkts == 0 {
            format!("nothing forwarded: {}", tail_lines(&err, 3))
        } else {
            String::new()
        },
        mpps: pkts as f64 / dt / 1e6,
        offered_mpps: spec
            .gen
            .as_ref()
            .map(|_| b.offered.saturating_sub(a.offered) as f64 / dt / 1e6),
        cpu_ns_per_pkt: if pkts > 0 {
            fwd_ticks as f64 / TICKS_PER_SEC * 1e9 / pkts as f64
        } else {
            0.0
        },
        cycles_per_pkt: cycles,
        noise_pct,
        steal_pct: pct(b.cpu.steal.saturating_sub(a.cpu.steal)),
        window_s: dt,
        packets: pkts,
        leaked_mbufs: fin.as_ref().and_then(|f| f["leaked_mbufs"].as_u64()),
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testpmd_blocks_parse() {
        let text = "\x1b[2J\x1b[1;1H\nPort statistics ====\n  ######## NIC statistics for port 0  ####\n  RX-packets: 100  RX-missed: 0\n  Tx-pps: 5\n  ######## NIC statistics for port 1  ####\n  RX-packets: 50  RX-missed: 0\n  Rx-pps: 1\n  Tx-pps: 5\n";
        let mut p = TestpmdParser::default();
        let got: Vec<u64> = text.lines().filter_map(|l| p.line(l, 2)).collect();
        assert_eq!(got, vec![150]);
        assert_eq!(
            testpmd_cycles(
                "  CPU cycles/packet=41.50 (busy cycles=1 / total RX packets=2) at 2000 MHz"
            ),
            Some(41.5)
        );
    }
}
