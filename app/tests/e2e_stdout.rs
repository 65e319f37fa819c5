//! The run's output on a stdout that stops taking it: a reader that has
//! gone (`xfwd ... | head -1`) ends the run cleanly (tear-down, exit 0, no
//! panic); any other write error (`xfwd > /dev/full`) ends it with exit 1
//! and the error on stderr. No root or hugepages needed.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{wait_within, xfwd};

/// Null ports on the heap, a period line every 0.1 s, for at most 30 s.
const RUN: &[&str] = &[
    "--port",
    "null:",
    "--port",
    "null:",
    "--no-huge",
    "--stats-period",
    "0.1",
    "--duration",
    "30",
];

/// Wait (bounded) for `c` to exit; its status and stderr.
fn exit_of(mut c: std::process::Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let mut err = c.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_within(&mut c, limit, &"xfwd, after its stdout failed,");
    (status, reader.join().expect("stderr reader"))
}

#[test]
fn a_reader_that_has_gone_ends_the_run_cleanly() {
    let mut c = xfwd()
        .args(RUN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xfwd");
    // Read the first line, as `head -1` would, then close the pipe.
    let mut out = BufReader::new(c.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("a first line");
    assert!(!first.is_empty(), "xfwd printed nothing");
    drop(out);
    let t = Instant::now();
    let (status, se) = exit_of(c, Duration::from_secs(10));
    assert!(!se.contains("panicked"), "{se}");
    assert!(status.success(), "exit {status:?}: {se}");
    assert!(se.contains("stdout is closed"), "{se}");
    assert!(t.elapsed() < Duration::from_secs(10), "{se}");
}

#[test]
fn another_stdout_error_is_exit_1_with_the_error() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    let Ok(full) = full else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let c = xfwd()
        .args(RUN)
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xfwd");
    let (status, se) = exit_of(c, Duration::from_secs(10));
    assert!(!se.contains("panicked"), "{se}");
    assert_eq!(status.code(), Some(1), "{se}");
    assert!(se.contains("writing to stdout"), "{se}");
}
