//! Helpers shared by the end-to-end tests: run the real binary with a time
//! bound, write and read pcap files (independently of the pmd crate), read
//! them back through tshark, and observe the host's hugepages; network
//! namespaces ([`netns`], the pmd tests' guard) and the veth topology of the
//! kernel-port tests ([`topo`]).
#![allow(dead_code)]

#[path = "../../../pmd/tests/support/netns.rs"]
pub mod netns;
pub mod proc;
pub mod topo;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn xfwd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xfwd"));
    c.env("RUST_LOG", "warn");
    c
}

/// Run `xfwd args`, killing it (by its own PID) after `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut c = xfwd();
    c.args(args);
    run_command(c, limit)
}

/// Run `xfwd` generating (txonly) into the capture file `cap`: one pcap
/// port looped onto itself, on the heap, then `args`; killed after `limit`.
pub fn run_txonly_into(cap: &Path, args: &[&str], limit: Duration) -> Output {
    let port = format!("pcap:tx={}", cap.display());
    let mut all = vec![
        "--port",
        &port,
        "--forward-mode",
        "txonly",
        "--port-topology",
        "loop",
        "--no-huge",
    ];
    all.extend_from_slice(args);
    run(&all, limit)
}

/// Run `c` with its output captured, killing it (by its own PID) after
/// `limit`.
pub fn run_command(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xfwd");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_within(&mut child, limit, &c);
    Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

/// The flags of a short run of `mode` on one port looped onto itself
/// (`port`: its devargs), on the heap with a small pool, `secs` long, the
/// final report in JSON.
pub fn looped<'a>(port: &'a str, mode: &'a str, secs: &'a str) -> Vec<&'a str> {
    vec![
        "--port",
        port,
        "--port-topology",
        "loop",
        "--forward-mode",
        mode,
        "--no-huge",
        "--nb-mbufs",
        "2048",
        "--mbcache",
        "64",
        "--duration",
        secs,
        "--stats-period",
        "0",
        "--json",
    ]
}

/// Wait for `child` to exit; past `limit` kill it (by its own PID), reap
/// it and panic naming `what`.
pub fn wait_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &dyn std::fmt::Debug,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Stdout and stderr as text, of a run that must have exited 0 (else both
/// are shown).
pub fn text_ok(o: &Output) -> (String, String) {
    let (so, se) = text(o);
    assert!(o.status.success(), "{so}\n{se}");
    (so, se)
}

/// The JSON lines of stdout (each must parse).
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The final JSON object.
pub fn final_json(o: &Output) -> serde_json::Value {
    let lines = json_lines(o);
    let f = lines.last().expect("a final JSON line").clone();
    assert_eq!(f["type"], "final", "{f}");
    f
}

/// The final JSON object of a run that must have ended cleanly: exit 0
/// (else both outputs are shown, with `what`) and every mbuf back in its
/// pool (the leak audit).
pub fn final_clean(o: &Output, what: &str) -> serde_json::Value {
    let (so, se) = text(o);
    assert!(o.status.success(), "{what}: xfwd failed:\n{so}\n{se}");
    let fin = final_json(o);
    assert_eq!(fin["leaked_mbufs"], 0, "{what}: {fin}");
    fin
}

/// The bytes `write` writes (a packet builder's `write`), which must succeed.
pub fn built<E: std::fmt::Debug>(write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Vec<u8> {
    let mut v = Vec::new();
    write(&mut v).expect("build the frame");
    v
}

/// Write a classic pcap (microseconds, Ethernet).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        v.extend_from_slice(&(i as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(f);
    }
    std::fs::write(path, v).expect("write pcap");
}

/// Read a classic little-endian pcap's frames.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let d = std::fs::read(path).expect("read pcap");
    assert!(d.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(d[0..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "magic {magic:#x}"
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        assert!(at + incl <= d.len(), "truncated record");
        out.push(d[at..at + incl].to_vec());
        at += incl;
    }
    assert_eq!(at, d.len(), "trailing bytes");
    out
}

/// The `fields` (tshark `-e` names) of every frame of the capture `p` as
/// tshark dissects it with IPv4 header checksums checked: one row a frame,
/// asserted to be `frames` rows. `None` when tshark is not installed (the
/// reason printed: `what` is skipped; a failure in CI).
pub fn tshark_fields(
    p: &Path,
    what: &str,
    fields: &[&str],
    frames: usize,
) -> Option<Vec<Vec<String>>> {
    if !xfwd_mempool::caps::require_tool("tshark", what) {
        return None;
    }
    let mut c = Command::new("tshark");
    c.arg("-r").arg(p).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=,",
    ]);
    for f in fields {
        c.args(["-e", f]);
    }
    let o = c.output().expect("tshark");
    let s = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<String>> = s
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(
        rows.len(),
        frames,
        "tshark {fields:?}: {s}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(rows)
}

/// Free 2M hugepages.
pub fn free_hugepages() -> u64 {
    xfwd_mempool::extmem::free_hugepages(xfwd_mempool::PageSize::Size2M)
}

/// `xfwd-*` files left in hugetlbfs mounts.
pub fn hugepage_files() -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut out = Vec::new();
    for l in mounts.lines().filter(|l| l.contains(" hugetlbfs ")) {
        let dir = l.split_whitespace().nth(1).unwrap_or("/dev/hugepages");
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("xfwd-") {
                    out.push(format!("{dir}/{n}"));
                }
            }
        }
    }
    out
}

/// Wait (up to 5 s) until at least `before` 2M hugepages are free again and
/// return the count.
pub fn hugepages_settled(before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = free_hugepages();
        if now >= before || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `f` (which starts xfwd and waits for it) until the host's free 2M
/// hugepages after it (settled: up to 5 s) are back to what they were
/// before it, at most `attempts` times; whether they came back. Other
/// processes taking hugepages at the same time make an attempt fail, not
/// the test: a run that leaks pages fails every attempt.
pub fn hugepages_come_back(attempts: u32, mut f: impl FnMut()) -> bool {
    for i in 0..attempts {
        let before = free_hugepages();
        f();
        let after = hugepages_settled(before);
        if after >= before {
            return true;
        }
        eprintln!(
            "attempt {i}: {after} free 2M hugepages after, {before} before \
             (another process, or a leak: once more)"
        );
    }
    false
}

/// The PID in an `xfwd-PID-N` hugetlbfs file path.
fn owner(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    name.strip_prefix("xfwd-")?.split('-').next()?.parse().ok()
}

/// `xfwd-PID-N` hugetlbfs files (any mount) not in `before` whose process
/// is gone: what a finished xfwd left holding hugepages. Unlike the host's
/// free-page count this is blind to what other processes do meanwhile (a
/// live xfwd's files are its own), and it is the one way a dead process
/// keeps hugepages: the kernel frees its mappings (anonymous, memfd) itself.
pub fn hugepage_files_left(before: &[String]) -> Vec<String> {
    hugepage_files()
        .into_iter()
        .filter(|f| !before.contains(f))
        .filter(|f| owner(f).is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists()))
        .collect()
}

/// A client of xfwd's telemetry socket (one JSON answer per line).
pub struct TelemetryClient {
    w: std::os::unix::net::UnixStream,
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
    line: String,
}

impl TelemetryClient {
    /// Connect to `sock`, waiting up to `limit` for it to appear, and read
    /// the hello line; None when it never appeared.
    pub fn connect(sock: &Path, limit: Duration) -> Option<TelemetryClient> {
        use std::io::BufRead;
        let deadline = Instant::now() + limit;
        let conn = loop {
            if let Ok(c) = std::os::unix::net::UnixStream::connect(sock) {
                break c;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let w = conn.try_clone().ok()?;
        let mut r = std::io::BufReader::new(conn);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        Some(TelemetryClient { w, r, line })
    }

    /// Ask `q`, return the answer.
    pub fn ask(&mut self, q: &str) -> serde_json::Value {
        use std::io::{BufRead, Write};
        writeln!(self.w, "{q}").expect("telemetry write");
        self.line.clear();
        self.r.read_line(&mut self.line).expect("telemetry read");
        serde_json::from_str(&self.line).unwrap_or_else(|e| panic!("{e}: {}", self.line))
    }
}

/// The control socket, as the tests drive it (`xfwd ctl`).
pub mod ctl {
    /// A finished capture's reconciliation (`show capture`'s data): every
    /// frame of its window was taken, skipped or past the count, and the
    /// window is what the tapped queues counted.
    pub fn check_capture_window(v: &Value) {
        assert_eq!(v["done"], true, "{v}");
        let w = &v["window"];
        assert_eq!(
            n(&v["taken"]) + n(&v["skipped"]) + n(&v["past_count"]),
            n(&w["rx"]) + n(&w["tx"]),
            "{v}"
        );
    }

    use super::{text, xfwd};
    use serde_json::Value;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    /// A JSON number (panics on anything else).
    pub fn n(v: &Value) -> u64 {
        v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
    }

    /// `xfwd ctl SOCKET words...`: (success, stdout, stderr).
    pub fn ctl(sock: &Path, words: &str) -> (bool, String, String) {
        let o = xfwd()
            .arg("ctl")
            .arg(sock)
            .args(words.split(' '))
            .output()
            .expect("run xfwd ctl");
        let (so, se) = text(&o);
        (o.status.success(), so, se)
    }

    pub fn ctl_json(sock: &Path, words: &str) -> Value {
        let (ok, so, se) = ctl(sock, words);
        assert!(ok, "xfwd ctl {words}: {se}");
        serde_json::from_str(&so).unwrap_or_else(|e| panic!("{words}: {e}: {so}"))
    }

    pub fn wait_socket(sock: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(sock).is_err() {
            assert!(Instant::now() < deadline, "no control socket");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the child's exit (bounded); its stdout.
    pub fn finish(
        mut child: Child,
        limit: Duration,
    ) -> (std::process::ExitStatus, String, Duration) {
        let t = Instant::now();
        let mut out = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > limit {
                let _ = child.kill();
                panic!("xfwd did not stop within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, reader.join().unwrap(), t.elapsed())
    }

    /// The ring demo (txonly → ring → rxonly) with a control socket.
    pub fn demo(sock: &Path, extra: &[&str]) -> Child {
        xfwd()
            .args(["--no-huge", "--stats-period", "0", "--json", "--telemetry"])
            .arg(sock)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xfwd")
    }
}

/// Mount a hugetlbfs of `mb` MiB of 2 MiB pages on `dir` (created). Its
/// `size=` limit makes statfs count exactly the pages its files hold,
/// whatever other processes do with the host's pages.
pub fn mount_hugetlbfs(dir: &Path, mb: u64) {
    std::fs::create_dir_all(dir).expect("mount point");
    let opts = format!("pagesize=2M,size={mb}M");
    let ok = Command::new("mount")
        .args(["-t", "hugetlbfs", "-o", &opts, "nodev"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(
        ok.success(),
        "mount -t hugetlbfs -o {opts} {}",
        dir.display()
    );
}

/// (total, free) 2 MiB pages of the hugetlbfs mounted on `dir`.
pub fn hugetlbfs_pages(dir: &Path) -> (u64, u64) {
    let o = Command::new("stat")
        .args(["-f", "-c", "%b %f"])
        .arg(dir)
        .output()
        .expect("stat -f");
    let t = String::from_utf8_lossy(&o.stdout);
    let v: Vec<u64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

/// Every page of the hugetlbfs on `dir` free again and no file on it (the
/// kernel frees a killed process's mapping as it reaps it: wait up to 5 s).
pub fn assert_hugetlbfs_empty(dir: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (total, free) = hugetlbfs_pages(dir);
        if free == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {free} of {total} pages free on {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    assert!(files.is_empty(), "{what}: files left: {files:?}");
}
