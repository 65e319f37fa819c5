//! The control socket as a client sees it: bytes written to a real
//! `--telemetry` socket (`Telemetry::bind`, served by `Control::serve`,
//! which frames lines and runs each through the command table or the
//! legacy `/query` answers) of a data plane with null, fault and ring ports
//! whose lcores never run (every lcore call fails at once: the stop flag
//! is up). A `-w FILE` of `capture` is pointed into a temporary directory.
//!
//! Invariants: nothing panics; the server greets, then answers with one
//! JSON object per line, at most one per request line, an over-long line
//! (> 4096 B) with an error and the end of the connection; it closes the
//! connection once the client has closed its side and been answered,
//! within a bounded number of serve calls.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use xfwd::control::Control;
use xfwd::dataplane::Dataplane;
use xfwd::telemetry::{Limits, Telemetry};
use xfwd::worker::Worker;

struct Rig {
    dp: Dataplane,
    _workers: Vec<Worker>,
    control: Control,
    sock: PathBuf,
    dir: PathBuf,
}

fn rig() -> Rig {
    let plan = common::plan(&common::config("io", "fuzzctl"));
    // Up from the start: lcore calls give up at once instead of waiting
    // 2 s for lcores that never run.
    let stop = Arc::new(AtomicBool::new(true));
    let mut control = Control::new(&plan, &stop, false);
    let (dp, workers) = Dataplane::setup(plan, &stop).expect("data plane");
    control.attach(&dp);
    sweep_dead();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("ctl.sock");
    control.server = Some(Telemetry::bind(&sock, None, Limits::default()).expect("bind"));
    Rig {
        dp,
        _workers: workers,
        control,
        sock,
        dir,
    }
}

const DIR_PREFIX: &str = "xfwd-fuzz-control-";

/// Remove the temporary directories of fuzz processes that are gone
/// (libFuzzer exits without running destructors).
fn sweep_dead() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The input with every `-w FILE` pointed into the temporary directory
/// (line breaks and every other byte kept).
fn confine(data: &[u8], dir: &std::path::Path) -> Vec<u8> {
    if !data.windows(2).any(|w| w == b"-w") {
        return data.to_vec();
    }
    let cap = dir.join("cap.pcapng");
    let mut out = Vec::with_capacity(data.len() + 64);
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let text = String::from_utf8_lossy(line);
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.iter().position(|w| *w == "-w") {
            None => out.extend_from_slice(line),
            Some(at) => {
                let mut w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
                if at + 1 < w.len() {
                    w[at + 1] = cap.display().to_string();
                }
                out.extend_from_slice(w.join(" ").as_bytes());
            }
        }
    }
    out
}

thread_local! {
    static RIG: std::cell::RefCell<Rig> = std::cell::RefCell::new(rig());
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 << 10 {
        return;
    }
    RIG.with(|r| {
        let r = &mut *r.borrow_mut();
        let input = confine(data, &r.dir);
        let mut c = UnixStream::connect(&r.sock).expect("connect");
        c.set_nonblocking(true).expect("nonblocking");
        let (mut sent, mut shut, mut got) = (0usize, false, Vec::new());
        let mut closed = false;
        for _ in 0..20_000 {
            if sent < input.len() {
                match c.write(&input[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The server closed on an over-long line.
                    Err(_) => sent = input.len(),
                }
            }
            if sent == input.len() && !shut {
                let _ = c.shutdown(std::net::Shutdown::Write);
                shut = true;
            }
            r.control.serve(Duration::ZERO, &mut r.dp);
            r.control.quit = false;
            let mut buf = [0u8; 65536];
            match c.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        assert!(closed, "the server did not close a finished connection");
        let text = String::from_utf8(got).expect("replies are UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        let requests = input
            .split(|&b| b == b'\n')
            .filter(|l| !String::from_utf8_lossy(l).trim().is_empty())
            .count();
        assert!(!lines.is_empty(), "no greeting");
        assert!(
            lines.len() <= requests + 1,
            "{} replies to {requests} request lines",
            lines.len() - 1
        );
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object() || v.is_array(), "{l}");
            if let Some(e) = v.get("error") {
                assert!(e.as_str().is_some_and(|e| !e.is_empty()), "{l}");
            }
        }
        let long = input
            .split(|&b| b == b'\n')
            .any(|l| l.len() > Limits::default().max_request);
        if long {
            let last = lines.last().unwrap();
            assert!(
                last.contains("longer than"),
                "a line over the limit, last reply {last}"
            );
        }
        let _ = std::fs::remove_file(r.dir.join("cap.pcapng"));
    });
});
