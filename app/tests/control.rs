//! Run-time control end to end: `--cmdline-file` switching the mode of a
//! running pcap port (the written bytes change, the windows add up), the
//! control socket (mode 0600, JSON replies, stop/start keep counting), a
//! hostile client (2 MB line, never reading, too many connections) that
//! stalls neither forwarding nor other clients nor `--duration`/Ctrl-C,
//! and `/metrics` scraped with curl during traffic (the prompt in a real
//! terminal: control_prompt.rs; live capture: control/capture.rs).

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::ctl::*;
use support::*;

#[path = "control/capture.rs"]
mod capture;

/// The numbers after `TX-packets:` in the "Accumulated" blocks of `text`.
fn accumulated_tx(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut acc = false;
    for l in text.lines() {
        if l.contains("Accumulated forward statistics") {
            acc = true;
        } else if acc && l.trim_start().starts_with("TX-packets:") {
            out.push(l.split_whitespace().nth(1).unwrap().parse().unwrap());
            acc = false;
        }
    }
    out
}

#[test]
fn cmdline_file_switches_the_mode_and_the_windows_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, outp) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xd5]); // dst
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x5a]); // src
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    write_pcap(&inp, &[frame.clone()]);
    let script = dir.path().join("cmds.txt");
    std::fs::write(
        &script,
        "# comment\nshow config fwd\nstart\nsleep 150\nstop\nbogus command\nset fwd nope\nset burst 0\n\
         set fwd macswap\nset burst 16\nstart\nset fwd io\nsleep 150\nstop\nshow port stats all\nquit\n",
    )
    .unwrap();
    let devargs = format!(
        "pcap:rx={},tx={},loop=infinite",
        inp.display(),
        outp.display()
    );
    let o = run(
        &[
            "--no-huge",
            "-i",
            "--cmdline-file",
            script.to_str().unwrap(),
            "--port",
            &devargs,
            "--port-topology",
            "loop",
            "-l",
            "0",
            "--stats-period",
            "0",
        ],
        Duration::from_secs(60),
    );
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}\n{se}");
    // Bad commands: one line each, the script goes on.
    for want in [
        "error: unknown command `bogus command`: `help` lists the commands",
        "error: unknown mode `nope`: accepted:",
        "error: burst 0 out of range",
        "error: set fwd needs forwarding stopped",
        "Set macswap packet forwarding mode",
        "0 mbufs leaked",
    ] {
        assert!(so.contains(want), "missing `{want}` in:\n{so}");
    }
    let errors: Vec<&str> = so.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    // Two stop windows plus the final report.
    let acc = accumulated_tx(&so);
    assert_eq!(acc.len(), 3, "{so}");
    let (w1, w2, total) = (acc[0], acc[1], acc[2]);
    assert!(w1 > 0 && w2 > 0, "{acc:?}");
    assert_eq!(w1 + w2, total, "the windows add up to the run's total");
    // The written bytes: io frames unchanged, then macswap frames swapped.
    let frames = read_pcap(&outp);
    let mut swapped = frame.clone();
    swapped[..6].copy_from_slice(&frame[6..12]);
    swapped[6..12].copy_from_slice(&frame[..6]);
    let io = frames.iter().take_while(|f| **f == frame).count();
    let ms = frames[io..].iter().take_while(|f| **f == swapped).count();
    assert_eq!(
        (io as u64, ms as u64, frames.len() as u64),
        (w1, w2, total),
        "first window io, second macswap, nothing else"
    );
}

#[test]
fn the_socket_is_0600_answers_json_and_counts_across_stop_start() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &["--duration", "30"]);
    wait_socket(&sock);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let st = ctl_json(&sock, "show port stats all");
    assert_eq!(st.as_array().unwrap().len(), 2, "{st}");
    let info = ctl_json(&sock, "show port info 0");
    assert_eq!(info[0]["driver"], "ring");
    let cfg = ctl_json(&sock, "show config fwd");
    assert_eq!(cfg["running"], true);
    assert_eq!(cfg["modes"], serde_json::json!(["txonly", "rxonly"]));
    let (ok, _, se) = ctl(&sock, "set fwd io");
    assert!(!ok && se.contains("needs forwarding stopped"), "{se}");
    let (ok, _, se) = ctl(&sock, "show port stats 7");
    assert!(
        !ok && se.trim().lines().count() == 1 && se.contains("no port `7`"),
        "{se}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (ok, w1, _) = ctl(&sock, "stop");
    assert!(ok);
    // Parked: nothing moves.
    let a = ctl_json(&sock, "show port stats 1");
    std::thread::sleep(Duration::from_millis(200));
    let b = ctl_json(&sock, "show port stats 1");
    assert!(n(&a[0]["rx_packets"]) > 0, "{a}");
    assert_eq!(
        a[0]["rx_packets"], b[0]["rx_packets"],
        "parked lcores poll nothing"
    );
    let (ok, _, se) = ctl(&sock, "stop");
    assert!(!ok && se.contains("not started"), "{se}");
    let (ok, so, _) = ctl(&sock, "start");
    assert!(ok && so.contains("Forwarding started"), "{so}");
    std::thread::sleep(Duration::from_millis(300));
    let fwd = ctl_json(&sock, "show fwd stats all");
    assert!(n(&fwd["accumulated"]["tx_packets"]) > 0, "{fwd}");
    let (ok, w2, _) = ctl(&sock, "stop");
    assert!(ok);
    let mem = ctl_json(&sock, "show mempool");
    assert_eq!(mem["capacity"], 8192);
    let dma = ctl_json(&sock, "show dma");
    assert_eq!(
        dma[0]["mappings"][0]["pins"], 1,
        "ports stay mapped while stopped"
    );
    // A reader that has gone (`xfwd ctl ... | head`): no panic, exit 0.
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let o = support::xfwd()
        .arg("ctl")
        .arg(&sock)
        .args(["show", "dma"])
        .stdout(w)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !se.contains("panicked"), "{se}");
    let (ok, so, _) = ctl(&sock, "clear port stats all");
    assert!(ok, "{so}");
    let z = ctl_json(&sock, "show port stats 1");
    assert_eq!(n(&z[0]["rx_packets"]), 0, "{z}");
    let (ok, help, _) = ctl(&sock, "help");
    assert!(
        ok && help.lines().count() >= 20 && help.contains("show port xstats"),
        "{help}"
    );
    let (ok, so, _) = ctl(&sock, "quit");
    assert!(ok && so.contains("Bye"), "{so}");
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let (t1, t2) = (accumulated_tx(&w1), accumulated_tx(&w2));
    assert_eq!(
        t1[0] + t2[0],
        n(&f["accumulated"]["fwd"]["tx_packets"]),
        "stop windows add up to the final report: {w1}\n{w2}\n{f}"
    );
    assert_eq!(f["leaked_mbufs"], 0);
    assert!(!sock.exists());
}

/// The main thread's CPU time so far (utime + stime, clock ticks): the
/// time a busy control thread would take from the lcores on a small host.
fn main_thread_ticks(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
    let f: Vec<&str> = st[st.rfind(')').unwrap() + 2..].split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Hostile clients until `stop`: every 50 ms a new connection that floods
/// requests and never reads, and one that sends a line without end (at
/// most 8 held at a time, so the cap does not refuse the measuring client).
fn hostile_until(sock: &Path, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let mut held: std::collections::VecDeque<UnixStream> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        for flood in [true, false] {
            let Ok(mut c) = UnixStream::connect(sock) else {
                continue;
            };
            c.set_nonblocking(true).unwrap();
            let chunk = if flood {
                b"/dma\n/lcores\nshow port stats all\n".repeat(2000)
            } else {
                vec![b'x'; 256 << 10]
            };
            let _ = c.write(&chunk); // as much as the socket takes
            held.push_back(c);
            if held.len() > 8 {
                held.pop_front();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alternating windows, quiet and hostile: port 1's RX (a paced 20 kpps
/// stream) and the main thread's CPU time in each.
fn alternate(sock: &Path, pid: u32, windows: usize) -> Vec<(bool, u64, u64)> {
    let mut t = TelemetryClient::connect(sock, Duration::from_secs(5)).unwrap();
    let rx = |t: &mut TelemetryClient| n(&t.ask("/ports/1/stats")["rx_packets"]);
    let mut out = Vec::new();
    for w in 0..windows {
        let hostile = w % 2 == 1;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = hostile.then(|| {
            let (sock, stop) = (sock.to_path_buf(), stop.clone());
            std::thread::spawn(move || hostile_until(&sock, &stop))
        });
        std::thread::sleep(Duration::from_millis(100));
        let (r0, c0) = (rx(&mut t), main_thread_ticks(pid));
        std::thread::sleep(Duration::from_millis(800));
        let (r1, c1) = (rx(&mut t), main_thread_ticks(pid));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = h {
            h.join().unwrap();
        }
        out.push((hostile, r1 - r0, c1 - c0));
    }
    out
}

#[test]
fn hostile_clients_stall_neither_forwarding_nor_others_nor_duration() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let t0 = Instant::now();
    // A rate the debug build sustains on a busy machine: slowed forwarding
    // would show as fewer packets in a window.
    let child = demo(&sock, &["--duration", "11", "--tx-rate", "20k"]);
    wait_socket(&sock);
    std::thread::sleep(Duration::from_millis(300));
    // 0: measured: quiet and hostile windows alternating (0.8 s each).
    let w = alternate(&sock, child.id(), 4);
    eprintln!("(hostile, port 1 rx, main-thread ticks) per window: {w:?}");
    let quiet: u64 = w.iter().filter(|x| !x.0).map(|x| x.1).sum::<u64>() / 2;
    let ticks_per_s = 100; // USER_HZ
    for &(hostile, rx, ticks) in &w {
        if hostile {
            // Forwarding not slowed: the paced stream arrives in full (a
            // generous half, for a loaded 2-core host).
            assert!(rx * 2 >= quiet, "forwarding slowed: {w:?}");
            // The control thread did bounded work: it used less than three
            // quarters of a CPU (a server spinning on the clients takes all
            // of it, 80 ticks in the 0.8 s window). The debug build's
            // handling of the flood itself costs 27-45 ticks on a 2 GHz
            // EPYC vCPU (2026-12-06), so half a CPU was within noise of it.
            assert!(
                ticks * 4 < ticks_per_s * 8 / 10 * 3,
                "main thread busy: {w:?}"
            );
        }
    }
    // 1: a 2 MB line without a newline: an error, then closed.
    let big = UnixStream::connect(&sock).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut big2 = big.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0usize;
        while sent < 2 << 20 {
            match big2.write(&chunk) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        sent
    });
    let mut r = BufReader::new(big);
    let (mut hello, mut err) = (String::new(), String::new());
    r.read_line(&mut hello).unwrap();
    r.read_line(&mut err).unwrap();
    assert!(err.contains("request line longer than 4096 B"), "{err}");
    let sent = writer.join().unwrap();
    assert!(
        sent < 2 << 20,
        "the server stopped reading the long line ({sent} B taken)"
    );
    // 2: floods requests and never reads.
    let flood = UnixStream::connect(&sock).unwrap();
    flood
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut f2 = flood.try_clone().unwrap();
    let flooder = std::thread::spawn(move || {
        let reqs = b"/dma\n/lcores\n".repeat(2 << 20 >> 12);
        let mut sent = 0usize;
        for c in reqs.chunks(4096) {
            match f2.write(c) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        sent
    });
    // 3: other clients still answered, quickly; forwarding not slowed.
    let t = Instant::now();
    let st = ctl_json(&sock, "show port stats 1");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(n(&st[0]["rx_packets"]) > 0);
    let flooded = flooder.join().unwrap();
    assert!(
        flooded < 2 << 20,
        "the server stopped reading a client that does not read ({flooded} B taken)"
    );
    // 4: connections are capped (the flood and the long line are gone or held).
    let held: Vec<UnixStream> = (0..20)
        .filter_map(|_| UnixStream::connect(&sock).ok())
        .collect();
    let mut refused = 0;
    for s in &held {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut l = String::new();
        let _ = BufReader::new(s).read_line(&mut l);
        if l.contains("too many connections") {
            refused += 1;
        }
    }
    assert!((4..=20).contains(&refused), "{refused} of 20 refused");
    // 5: --duration ends the run on time with clients still connected.
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(11 + 6),
        "ran {:?} for --duration 11",
        t0.elapsed()
    );
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(f["leaked_mbufs"], 0);
    drop((held, flood));
}

#[test]
fn ctrl_c_stops_while_a_client_holds_a_partial_request() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &[]);
    wait_socket(&sock);
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"show port st").unwrap(); // no newline, ever
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (status, out, took) = finish(child, Duration::from_secs(10));
    assert!(status.success(), "{out}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(c);
}

#[test]
fn metrics_are_scraped_with_curl_and_match_the_final_stats() {
    if !xfwd_mempool::caps::require_tool("curl", "the metrics scrape test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let mut child = xfwd()
        .args([
            "--no-huge",
            "--stats-period",
            "0",
            "--json",
            "--duration",
            "30",
        ])
        .args([
            "--metrics",
            "127.0.0.1:0",
            "--tx-rate",
            "200k",
            "--telemetry",
        ])
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "no metrics address printed"
        );
        if let Some(u) = l.trim().strip_prefix("xfwd: metrics on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let scrape = || -> String {
        let o = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", &url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    };
    wait_socket(&sock);
    std::thread::sleep(Duration::from_millis(300));
    let a = scrape();
    std::thread::sleep(Duration::from_millis(400));
    let b = scrape();
    let tx = r#"xfwd_port_tx_packets_total{port="0",driver="ring"}"#;
    let rx = r#"xfwd_port_rx_packets_total{port="1",driver="ring"}"#;
    assert!(value(&b, tx) > value(&a, tx), "tx grows");
    assert!(value(&b, rx) > value(&a, rx), "rx grows");
    for series in [
        "xfwd_lcore_busy_ratio{",
        "xfwd_mempool_in_use ",
        "xfwd_queue_packets_total{",
        "xfwd_latency_seconds_bucket{le=",
        "xfwd_latency_seconds_count ",
        "xfwd_stream_tx_dropped_packets_total{",
    ] {
        assert!(b.contains(series), "no `{series}` in:\n{b}");
    }
    assert!(value(&b, "xfwd_latency_seconds_count") > 0.0, "{b}");
    // Stopped: the figures hold still and are the final report's.
    let (ok, _, se) = ctl(&sock, "stop");
    assert!(ok, "{se}");
    let c = scrape();
    let (ok, _, _) = ctl(&sock, "quit");
    assert!(ok);
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(value(&c, tx) as u64, n(&f["ports"][0]["tx_packets"]), "{c}");
    assert_eq!(value(&c, rx) as u64, n(&f["ports"][1]["rx_packets"]), "{c}");
    assert_eq!(f["leaked_mbufs"], 0);
}

/// A Unix-socket client as another user: the lines it read, or its error.
fn client_as(uid: u32, gid: u32, sock: &Path) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\ns.connect(sys.argv[1])\n\
             f=s.makefile('rwb')\nprint(f.readline().decode().strip())\nf.write(b'show config fwd\\n');f.flush()\n\
             print(f.readline().decode().strip())",
        ])
        .arg(sock)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let (so, se) = text(&o);
    (o.status.success(), format!("{so}{se}"))
}

#[test]
fn peers_are_checked_and_a_group_shares_the_socket() {
    use std::os::unix::fs::MetadataExt;
    if !xfwd_mempool::caps::require_root("the socket permission test")
        || !xfwd_mempool::caps::require_tool("python3", "the socket permission test")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &["--duration", "30", "--telemetry-group", "nogroup"]);
    wait_socket(&sock);
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        (m.mode() & 0o777, m.gid()),
        (0o660, 65534),
        "mode and group"
    );
    // nobody:nogroup is in the group: served.
    let (ok, out) = client_as(65534, 65534, &sock);
    assert!(
        ok && out.contains("\"command\":\"show config fwd\""),
        "{out}"
    );
    // nobody:daemon is not: the file mode keeps it out...
    let (ok, out) = client_as(65534, 1, &sock);
    assert!(!ok && out.contains("Permission denied"), "{out}");
    // ...and with the mode opened by hand, the peer check does.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, out) = client_as(65534, 1, &sock);
    assert!(
        out.contains("neither this user nor in the telemetry group"),
        "{out}"
    );
    let (ok, _, _) = ctl(&sock, "quit");
    assert!(ok);
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
}

#[test]
fn an_unknown_group_or_address_is_a_configuration_error() {
    let o = run(
        &[
            "--no-huge",
            "--telemetry",
            "/tmp/never.sock",
            "--telemetry-group",
            "no-such-group-xfwd",
        ],
        Duration::from_secs(20),
    );
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{se}");
    assert!(
        se.contains("--telemetry-group") && se.contains("no-such-group-xfwd"),
        "{se}"
    );
    let o = run(
        &["--no-huge", "--metrics", "localhost:x"],
        Duration::from_secs(20),
    );
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{se}");
    assert!(se.contains("--metrics"), "{se}");
    assert!(!Path::new("/tmp/never.sock").exists());
}
