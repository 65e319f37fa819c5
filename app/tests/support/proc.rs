//! Child processes for the two-process memif tests: a [`Proc`] collects a
//! child's output and kills it (by its own PID) when dropped; `xfwd` runs
//! the binary on CPU 1 with JSON output; `xfwd_final` checks its exit and
//! leak audit. A `Proc` can also own a directory its child leaves behind
//! (testpmd's `/var/run/dpdk/<file-prefix>`), removed once the child is gone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process whose stdout and stderr are collected: together (in
/// arrival order, for logs) and stdout alone (whole JSON lines: a log line
/// on stderr can land in the middle of one in the merged text).
pub struct Proc {
    name: String,
    child: Child,
    out: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// A directory the child leaves behind (a DPDK runtime directory),
    /// removed once the child is gone: at [`Proc::finish`] and on drop,
    /// also while unwinding from a failed assertion.
    leaves: Option<PathBuf>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let so: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let se: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for (mut r, alone) in [(so, Some(stdout.clone())), (se, None)] {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Some(a) = &alone {
                        a.lock().unwrap().push_str(&text);
                    }
                    out.lock().unwrap().push_str(&text);
                }
            }));
        }
        Proc {
            name: name.to_string(),
            child,
            out,
            stdout,
            readers,
            leaves: None,
        }
    }

    /// Remove `dir` (what the child leaves behind) once the child is gone.
    pub fn leaves(mut self, dir: PathBuf) -> Proc {
        self.leaves = Some(dir);
        self
    }

    /// The directory removed once the child is gone, if any.
    pub fn left_dir(&self) -> Option<&Path> {
        self.leaves.as_deref()
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the child has used so far (user + system, from
    /// `/proc/PID/stat`, in clock ticks of 10 ms).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) in parens.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 (1-based): 11 and 12 here.
        f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
    }

    pub fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Wait (bounded) until the output contains `s`.
    pub fn wait_for(&self, s: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.text().contains(s) {
            assert!(
                Instant::now() < deadline,
                "{}: no `{s}` within {limit:?}:\n{}",
                self.name,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we spawned and still own.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait for exit (SIGKILL after `limit`); the exit code and all output.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?}:\n{}",
                    self.name,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code(), self.text())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(d) = self.leaves.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn xfwd(ports: &[String], args: &[&str]) -> Proc {
    xfwd_on(1, ports, args)
}

/// `xfwd` with its lcore on `cpu`.
pub fn xfwd_on(cpu: u32, ports: &[String], args: &[&str]) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xfwd"));
    c.env("RUST_LOG", "info");
    for p in ports {
        c.args(["--port", p]);
    }
    c.args(["-l", &cpu.to_string(), "--nb-mbufs", "8192", "--json"]);
    if !args.contains(&"--stats-period") {
        c.args(["--stats-period", "0"]);
    }
    c.args(args);
    Proc::spawn("xfwd", c)
}

/// xfwd's final JSON (it must exit 0) and its log.
pub fn xfwd_final(p: Proc, limit: Duration) -> (serde_json::Value, String) {
    let stdout = p.stdout.clone();
    let (code, out) = p.finish(limit);
    let stdout = stdout.lock().unwrap().clone();
    let fin = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "final")
        .unwrap_or_else(|| panic!("no final JSON from xfwd (exit {code:?}):\n{out}"));
    assert_eq!(code, Some(0), "xfwd exit:\n{out}");
    assert_eq!(fin["leaked_mbufs"], 0, "xfwd leak audit: {fin}");
    (fin, out)
}

pub fn port(fin: &serde_json::Value, i: usize) -> &serde_json::Value {
    &fin["ports"][i]
}

pub fn sock(tag: &str) -> String {
    format!("xfwd-memif-{}-{tag}", std::process::id())
}

/// The abstract socket `name` is listening (a server's port exists).
pub fn wait_listening(name: &str, server: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let want = format!("@{name}");
    loop {
        let t = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        if t.lines()
            .any(|l| l.split_whitespace().last() == Some(&want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nobody listens on {want}:\n{}",
            server.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
