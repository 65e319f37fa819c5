//! Network namespaces and veth pairs for tests, removed by RAII guards.
//!
//! [`Netns::new`] creates `/var/run/netns/xfwd-t<pid>-<n>-<tag>`; dropping the
//! guard (also while unwinding from a panic) deletes the veth pairs it created
//! (synchronously) and then the namespace. Stale
//! namespaces left by a killed test process (dead pid) are swept on the next
//! [`Netns::new`]. Interfaces live inside the namespaces, so their names
//! (`veth0`, `d0`, …) never collide with the host's or other tests'.
//!
//! Code runs inside a namespace with [`Netns::run`] (a scoped thread that
//! calls `setns(CLONE_NEWNET)` first; sockets it creates stay in that netns)
//! or [`Netns::exec`] for subprocesses (`ip netns exec`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static NEXT: AtomicUsize = AtomicUsize::new(0);
const PREFIX: &str = "xfwd-t";

/// Run a command; panic with its stderr when it fails (test setup must not half-work).
pub fn run_cmd(prog: &str, args: &[&str]) -> Output {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Names of all network namespaces (`ip netns list`).
pub fn list() -> Vec<String> {
    let out = run_cmd("ip", &["netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Delete namespaces of earlier test processes that died without cleaning up.
fn sweep_stale() {
    for name in list() {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        }
    }
}

/// Move the calling thread into the namespace called `name` (e.g. in a child
/// process that was handed the name).
pub fn enter_named(name: &str) {
    let f = File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    // SAFETY: setns on a valid netns fd affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns({name}): {}", std::io::Error::last_os_error());
}

/// A network namespace owned by a test; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// veth ends created here; deleted (synchronously, with their peers) before the netns.
    links: Mutex<Vec<String>>,
}

impl Netns {
    /// Create a fresh namespace whose name ends in `tag`, with IPv6 off (no
    /// router solicitations or MLD frames in the way) and `lo` up.
    pub fn new(tag: &str) -> Netns {
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run_cmd("ip", &["netns", "add", &name]);
        let ns = Netns {
            name,
            links: Mutex::new(Vec::new()),
        };
        ns.run(|| {
            for p in ["all", "default"] {
                let f = format!("/proc/sys/net/ipv6/conf/{p}/disable_ipv6");
                // Missing IPv6 support is fine: then there is nothing to silence.
                let _ = std::fs::write(f, "1");
            }
        });
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip -n`, `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args…`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run_cmd("ip", &a)
    }

    /// Run `prog args…` in the namespace (`ip netns exec`); returns its output.
    pub fn exec(&self, prog: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, prog])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec: {e}"))
    }

    /// Move the calling thread into this namespace. Only for threads that
    /// are thrown away afterwards (see [`Netns::run`]).
    pub fn enter(&self) {
        enter_named(&self.name);
    }

    /// Run `f` on a new thread inside the namespace and return its result;
    /// a panic in `f` is re-raised here.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter();
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Create a veth pair `a` (here) ↔ `b` (in `peer`, which may be `self`),
    /// one RX and one TX queue on each end, MTU 1500, both up.
    pub fn veth(&self, a: &str, peer: &Netns, b: &str) {
        self.veth_queues(a, peer, b, 1);
    }

    /// [`Netns::veth`] with `queues` RX and TX queues on each end.
    pub fn veth_queues(&self, a: &str, peer: &Netns, b: &str, queues: u32) {
        let q = queues.to_string();
        self.ip(&[
            "link",
            "add",
            a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            &peer.name,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a.to_string());
        self.ip(&["link", "set", a, "up"]);
        peer.ip(&["link", "set", b, "up"]);
    }

    /// The `xdp…` attachment word `ip link` shows for `dev` (`xdp`,
    /// `xdpgeneric`, …), or `None` when no XDP program is attached.
    pub fn xdp_attached(&self, dev: &str) -> Option<String> {
        let out = self.ip(&["link", "show", "dev", dev]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        first
            .split_whitespace()
            .find(|w| w.starts_with("xdp"))
            .map(str::to_string)
    }

    /// Wait up to `timeout` for `dev` to show no XDP program; true when none is left.
    ///
    /// Closing the last fd of a BPF link detaches at once, but a process
    /// spawned concurrently by another thread holds copies of every fd from
    /// fork until exec, so the detach can lag by that window.
    pub fn xdp_detached_within(&self, dev: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.xdp_attached(dev).is_none() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// True when `dev` exists in the namespace.
    pub fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", dev])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a veth end is synchronous and takes its peer with it; deleting
        // the namespace alone would destroy the devices later, asynchronously.
        for l in self
            .links
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = Command::new("ip")
                .args(["-n", &self.name, "link", "delete", &l])
                .output();
        }
        match Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns delete {}: {e}", self.name),
        }
    }
}
