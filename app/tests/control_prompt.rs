//! The `xfwd> ` prompt in a real terminal (tmux send-keys / capture-pane):
//! editing, completion, history, errors that keep the prompt; and a run
//! that `--duration` or SIGTERM ends while rustyline waits for a key leaves
//! the terminal as it found it (not in raw mode). About 5 s.

use std::path::Path;
use std::time::{Duration, Instant};

/// A detached tmux session running `cmd`, killed on drop.
struct Tmux {
    session: String,
    err: std::path::PathBuf,
}

impl Tmux {
    fn new(tag: &str, cmd: &str, err: &Path) -> Tmux {
        let session = format!("xfwd-{tag}-{}", std::process::id());
        let ok = std::process::Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "160",
                "-y",
                "200",
                cmd,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        Tmux {
            session,
            err: err.to_path_buf(),
        }
    }

    fn keys(&self, k: &[&str]) {
        let ok = std::process::Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(k)
            .status()
            .unwrap()
            .success();
        assert!(ok, "send-keys {k:?}");
    }

    fn screen(&self) -> String {
        let o = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Wait (20 s at most) until `want` shows `count` times; the screen.
    fn wait_for(&self, want: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.matches(want).count() >= count {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no `{want}` ×{count} on screen:\n{s}\n{}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
fn the_prompt_edits_completes_and_recalls_in_a_terminal() {
    if !xfwd_mempool::caps::require_tool("tmux", "the interactive prompt test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("err.txt");
    let cmd = format!(
        "HOME={} {} -i --no-huge 2>{}; sleep 30",
        dir.path().display(),
        env!("CARGO_BIN_EXE_xfwd"),
        err.display()
    );
    let t = Tmux::new("ctl", &cmd, &err);
    t.wait_for("xfwd>", 1);
    // Stopped at start (testpmd -i): nothing received yet.
    t.keys(&["show port stats 1", "Enter"]);
    let s = t.wait_for("NIC statistics for port 1", 1);
    assert!(s.contains("RX-packets: 0 "), "{s}");
    // Tab completion: "sta<Tab>" → "start ".
    t.keys(&["sta", "Tab", "Enter"]);
    t.wait_for("Forwarding started", 1);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["stop", "Enter"]);
    t.wait_for("Done.", 1);
    // A bad command: one line, the prompt stays.
    t.keys(&["set fwd bogus", "Enter"]);
    t.wait_for("error: unknown mode `bogus`", 1);
    // History: Up twice recalls `stop`... then the typed `show port stats 1`.
    t.keys(&["sh", "Tab", "port st", "Tab", "1", "Enter"]);
    let s = t.wait_for("NIC statistics for port 1", 2);
    let rx: Vec<u64> = s
        .lines()
        .filter(|l| l.trim_start().starts_with("RX-packets:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(rx.last().copied().unwrap_or(0) > 0, "{s}");
    t.keys(&["Up", "Enter"]);
    t.wait_for("NIC statistics for port 1", 3);
    t.keys(&["quit", "Enter"]);
    t.wait_for("0 mbufs leaked", 1);
}

/// A run that `--duration` (or SIGTERM) ends while rustyline waits for a
/// key: the shell's `stty -a` right after shows the terminal as it was.
fn ended_while_reading(sigterm: bool) {
    if !xfwd_mempool::caps::require_tool("tmux", "the interactive prompt test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("err.txt");
    let stty = dir.path().join("stty.txt");
    let pidf = dir.path().join("pid");
    // The shell reads the terminal's settings right after xfwd exits; `sh
    // -c 'echo $$; exec ..'` writes the pid xfwd will have.
    let run = format!(
        "{} -i --no-huge{} 2>{}",
        env!("CARGO_BIN_EXE_xfwd"),
        if sigterm { "" } else { " --duration 2" },
        err.display()
    );
    let cmd = format!(
        "HOME={} sh -c 'echo $$ >{}; exec {run}'; echo rc=$?; stty -a >{}; sleep 30",
        dir.path().display(),
        pidf.display(),
        stty.display()
    );
    let t = Tmux::new(if sigterm { "ctlterm" } else { "ctlraw" }, &cmd, &err);
    t.wait_for("xfwd>", 1);
    t.keys(&["show config fwd", "Enter"]);
    t.wait_for("packet forwarding", 1);
    t.keys(&["show conf"]); // typed, never entered: rustyline is reading
    if sigterm {
        std::thread::sleep(Duration::from_millis(200));
        let pid: i32 = std::fs::read_to_string(&pidf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
    let s = t.wait_for("rc=", 1);
    assert!(s.contains("rc=0"), "{s}");
    assert!(s.contains("0 mbufs leaked"), "{s}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stty.exists() {
        assert!(Instant::now() < deadline, "no stty output");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let a = std::fs::read_to_string(&stty).unwrap();
    let words: Vec<&str> = a.split_whitespace().collect();
    for want in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            words.contains(&want),
            "terminal left without `{want}`:\n{a}"
        );
    }
    // The history is saved per line: a run ended this way loses none.
    let h = std::fs::read_to_string(dir.path().join(".xfwd_history")).unwrap_or_default();
    assert!(h.contains("show config fwd"), "history: {h}");
}

#[test]
fn a_run_ended_by_duration_while_the_prompt_reads_restores_the_terminal() {
    ended_while_reading(false);
}

#[test]
fn a_run_ended_by_sigterm_while_the_prompt_reads_restores_the_terminal() {
    ended_while_reading(true);
}
