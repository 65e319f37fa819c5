//! Interop with independent tools: tcpdump reads what the pcap port
//! writes; captures taken by tcpdump and dumpcap on a veth are read back
//! frame for frame.

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The output of `tcpdump -r FILE ARGS`, which must succeed.
fn tcpdump_read(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .args(["-r", &file.display().to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parse `tcpdump -r FILE -xx -nn` output into frames.
fn tcpdump_frames(file: &Path) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in tcpdump_read(file, &["-xx", "-nn"]).lines() {
        let t = line.trim_start();
        if !line.starts_with(char::is_whitespace) || !t.starts_with("0x") {
            frames.push(Vec::new());
            continue;
        }
        let cur = frames.last_mut().expect("hex before a header line");
        let hex = t.split_once(':').expect("offset colon").1;
        for group in hex.split_whitespace() {
            for k in (0..group.len()).step_by(2) {
                cur.push(u8::from_str_radix(&group[k..k + 2], 16).unwrap());
            }
        }
    }
    frames
}

/// Timestamps of `tcpdump -r FILE -tt --time-stamp-precision=nano`, in ns.
fn tcpdump_stamps(file: &Path) -> Vec<u64> {
    tcpdump_read(file, &["-tt", "-nn", "--time-stamp-precision=nano"])
        .lines()
        // Payload hex of unknown EtherTypes is indented: skip it.
        .filter(|l| !l.starts_with(char::is_whitespace))
        .map(|l| {
            let t = l.split_whitespace().next().unwrap();
            let (sec, frac) = t.split_once('.').unwrap();
            assert_eq!(frac.len(), 9, "{l}");
            sec.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
        })
        .collect()
}

#[test]
fn tcpdump_reads_what_the_pcap_port_writes() {
    if !require_tool("tcpdump", "tcpdump reads pcap port output") {
        return;
    }
    let p = pool("tcpd", 512);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("for_tcpdump.pcap");
    let sent = frames(100, 7);
    let mut w = probe(&format!("pcap:tx={}", file.display())).unwrap();
    w.configure(&PortConf::simple(&p)).unwrap();
    let mut q = w.start().unwrap();
    let mut cache = p.cache();
    send_all(q.tx[0].as_mut(), &mut cache, &sent);
    drop((q, cache));
    w.stop().unwrap();
    let got = tcpdump_frames(&file);
    assert_eq!(got.len(), 100);
    assert_eq!(got, sent);
    if require_tool("tshark", "tshark reads pcap port output") {
        let out = Command::new("tshark")
            .args([
                "-r",
                &file.display().to_string(),
                "-T",
                "fields",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lens: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(lens, sent.iter().map(Vec::len).collect::<Vec<_>>());
    }
    p.leak_check().unwrap();
}

/// A capture process started by this test; killed by pid if still running.
struct Capturer {
    child: Option<Child>,
    what: &'static str,
}

impl Capturer {
    /// Start `prog args` in `ns` (bounded by `timeout 30`) and wait until it
    /// says it is listening on stderr.
    fn start(ns: &Netns, what: &'static str, prog: &str, args: &[&str], ready: &str) -> Capturer {
        let mut child = Command::new("timeout")
            .args(["30", "ip", "netns", "exec", ns.name(), prog])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(&ready) {
                    let _ = tx.send(Ok(()));
                }
                seen.push(line);
            }
            let _ = tx.send(Err(seen.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            other => panic!("{what} did not start listening: {other:?}"),
        }
        Capturer {
            child: Some(child),
            what,
        }
    }

    /// Wait (bounded) for the capture to end by itself after its count.
    fn wait(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "{} exited with {st}", self.what);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM to `timeout`, which passes it on to the capture tool.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

#[test]
fn captures_taken_by_tcpdump_and_dumpcap_on_a_veth_are_read_frame_for_frame() {
    if !require_root("capture on a veth in a test netns")
        || !require_tool("tcpdump", "tcpdump captures")
        || !require_tool("dumpcap", "pcapng captures (tcpdump cannot write pcapng)")
    {
        return;
    }
    const N: usize = 40;
    let a = Netns::new("pcapa");
    let b = Netns::new("pcapb");
    a.veth("va", &b, "vb");
    let dir = tempfile::tempdir().unwrap();
    let f_us = dir.path().join("tcpdump_us.pcap");
    let f_ns = dir.path().join("tcpdump_ns.pcap");
    let f_ng = dir.path().join("dumpcap.pcapng");
    let count = N.to_string();
    let filter = "ether proto 0x88b5";
    let (us, ns, ng) = (
        f_us.display().to_string(),
        f_ns.display().to_string(),
        f_ng.display().to_string(),
    );
    // Each tool: N frames of the test's EtherType from vb, into its file.
    let on_vb = |what, prog, args: &[&str], ready| {
        let all = [&["-i", "vb", "-c", &count][..], args].concat();
        Capturer::start(&b, what, prog, &all, ready)
    };
    let caps = [
        on_vb(
            "tcpdump (µs)",
            "tcpdump",
            &["-U", "-w", &us, filter],
            "listening on",
        ),
        on_vb(
            "tcpdump (ns)",
            "tcpdump",
            &["-U", "--time-stamp-precision=nano", "-w", &ns, filter],
            "listening on",
        ),
        on_vb(
            "dumpcap",
            "dumpcap",
            &["-f", filter, "-w", &ng],
            "Capturing on",
        ),
    ];
    // Send rounds of N known frames (sequence numbers keep counting, sizes
    // cycle) from the other end until every capture has its N. A tool that
    // says it listens may still miss frames while libpcap installs its
    // filter, so each file holds N frames of the stream in increasing
    // order (not necessarily consecutive), each checked byte for byte.
    let frame = |seq: u32| {
        test_frame(
            [0x02, 0, 0, 0, 0, 0xb],
            [0x02, 0, 0, 0, 0, 0xa],
            seq,
            60 + (seq as usize % N) * 31,
        )
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let rounds = std::thread::scope(|sc| {
        let sender = sc.spawn(|| {
            a.run(|| {
                let idx = xfwd_pmd::netdev::ifindex("va").unwrap();
                let s = PacketSocket::bind(idx);
                let mut round = 0u32;
                // Bounded: at most 200 rounds, 50 ms apart.
                while !done.load(std::sync::atomic::Ordering::Relaxed) && round < 200 {
                    for i in 0..N as u32 {
                        s.send(&frame(round * N as u32 + i));
                    }
                    round += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                round
            })
        });
        for c in caps {
            c.wait();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().unwrap()
    });
    eprintln!("captures complete after {rounds} rounds of {N} frames");

    let p = pool("veth", 256);
    for (file, fmt) in [
        (
            &f_us,
            CaptureFormat::Pcap {
                big_endian: false,
                nanos: false,
            },
        ),
        (
            &f_ns,
            CaptureFormat::Pcap {
                big_endian: false,
                nanos: true,
            },
        ),
        (&f_ng, CaptureFormat::PcapNg),
    ] {
        let c = Capture::parse(std::fs::read(file).unwrap()).unwrap();
        assert_eq!(c.format(), fmt, "{}", file.display());
        let got = read_back(&p, file, "");
        assert_eq!(got.len(), N, "{}", file.display());
        let mut last = None;
        for (i, g) in got.iter().enumerate() {
            let seq = test_seq(g).expect("only test frames pass the filter");
            assert!(last < Some(seq), "{} frame {i}: order", file.display());
            assert_eq!(g, &frame(seq), "{} frame {i}", file.display());
            last = Some(seq);
        }
        // Timestamps are real and in order.
        let ts: Vec<u64> = c.records().iter().map(|r| r.ts_ns).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]) && ts[0] > 1_600_000_000_000_000_000);
        // libpcap reads pcapng too: tcpdump -xx shows the same bytes, and
        // -tt the same timestamps to the nanosecond.
        assert_eq!(tcpdump_frames(file), got, "tcpdump -xx {}", file.display());
        assert_eq!(tcpdump_stamps(file), ts, "tcpdump -tt {}", file.display());
    }
    p.leak_check().unwrap();
}
