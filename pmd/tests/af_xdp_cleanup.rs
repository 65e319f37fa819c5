//! Cleanup guarantees around AF_XDP tests: no XDP program survives a
//! SIGKILLed process, the netns guard removes namespaces and veth pairs (also
//! on panic), and `scripts/topology` builds and removes its namespaces.
//!
//! Needs root and `ip`; elsewhere the tests skip (and fail under CI=true).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::netns::{self, Netns};
use support::xdp::{env_ok, small_cfg, umem_over, DETACH};
use xfwd_mempool::caps;
use xfwd_pmd::af_xdp::{XdpMode, XdpRedirect, XskSocket};
use xfwd_pmd::netdev;

const CHILD_ENV: &str = "XFWD_XDP_SIGKILL_CHILD_NETNS";

#[test]
fn no_xdp_program_left_after_sigkill() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        return sigkill_child(&name);
    }
    let what = "XDP cleanup after SIGKILL";
    if !env_ok(what) {
        return;
    }
    let ns = Netns::new("kill");
    ns.veth("veth0", &ns, "veth1");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_xdp_program_left_after_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, ns.name())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the test binary as the attaching child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("XFWD-CHILD-READY") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(30));
    let attached = ns.xdp_attached("veth0");
    child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL
    let status = child.wait().unwrap();
    let _ = reader.join();
    assert!(ready.is_ok(), "child did not attach within 30 s");
    assert_eq!(
        attached.as_deref(),
        Some("xdp"),
        "child's program was attached"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        ns.xdp_detached_within("veth0", Duration::from_secs(5)),
        "the kernel detached the dead child's link"
    );
    // The queue and the device are free: attach and bind again.
    let mem = support::hugepages::Anon4k::new(1 << 20);
    let umem = umem_over(mem.base(), mem.len());
    ns.run(|| {
        let if0 = netdev::ifindex("veth0").unwrap();
        let xdp = XdpRedirect::attach(if0, 1, XdpMode::Drv).unwrap();
        let xsk = XskSocket::bind(&umem, if0, 0, &small_cfg()).unwrap();
        xdp.map().insert(0, xsk.as_raw_fd()).unwrap();
    });
    assert!(ns.xdp_detached_within("veth0", DETACH));
}

/// The child side: attach, bind, say so, then wait to be killed (bounded).
fn sigkill_child(ns_name: &str) {
    netns::enter_named(ns_name);
    let mem = support::hugepages::Anon4k::new(1 << 20);
    let umem = umem_over(mem.base(), mem.len());
    let if0 = netdev::ifindex("veth0").unwrap();
    let xdp = XdpRedirect::attach(if0, 1, XdpMode::Drv).unwrap();
    let xsk = XskSocket::bind(&umem, if0, 0, &small_cfg()).unwrap();
    xdp.map().insert(0, xsk.as_raw_fd()).unwrap();
    println!("XFWD-CHILD-READY");
    std::thread::sleep(Duration::from_secs(30));
    drop((xsk, xdp));
}

#[test]
fn netns_guard_removes_namespace_and_veth_on_drop_and_on_panic() {
    if !env_ok("netns guard") {
        return;
    }
    let ns = Netns::new("guard");
    let peer = Netns::new("guardpeer");
    ns.veth("veth0", &peer, "veth1");
    let (a, b) = (ns.name().to_string(), peer.name().to_string());
    assert!(netns::list().contains(&a) && netns::list().contains(&b));
    assert!(ns.has_link("veth0") && peer.has_link("veth1"));
    drop(ns);
    assert!(!netns::list().contains(&a));
    assert!(
        !peer.has_link("veth1"),
        "deleting one end's netns removed the pair"
    );
    drop(peer);
    assert!(!netns::list().contains(&b));

    let name = std::panic::catch_unwind(|| {
        let ns = Netns::new("panic");
        ns.veth("veth0", &ns, "veth1");
        std::panic::panic_any(ns.name().to_string());
    })
    .unwrap_err();
    let name = name.downcast_ref::<String>().unwrap();
    assert!(
        !netns::list().contains(name),
        "{name} removed while unwinding"
    );
}

/// Runs `scripts/topology down NAME` on drop, so a failing test leaves nothing.
struct TopologyGuard(String);

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        let _ = Command::new(topology_script())
            .args(["down", &self.0])
            .output();
    }
}

fn topology_script() -> String {
    format!("{}/../scripts/topology", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn topology_script_builds_gen_dut_sink_and_down_is_idempotent() {
    let what = "scripts/topology";
    if !env_ok(what) || !caps::require_tool("bash", what) {
        return;
    }
    let name = format!("xt{}", std::process::id());
    let guard = TopologyGuard(name.clone());
    let out = netns::run_cmd(&topology_script(), &["up", &name]);
    let env: std::collections::HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(env["DUT_NS"], format!("{name}-dut"));
    assert_eq!(
        (env["DUT_RX_IF"].as_str(), env["DUT_TX_IF"].as_str()),
        ("d0", "d1")
    );
    let list = netns::list();
    for ns in ["GEN_NS", "DUT_NS", "SINK_NS"] {
        assert!(list.contains(&env[ns]), "{ns} exists");
    }
    let dut = env["DUT_NS"].clone();
    let facts = |ns: &str, dev: &str| {
        netns::run_cmd("ip", &["-n", ns, "link", "show", "dev", dev]);
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "cat"])
            .arg(format!("/sys/class/net/{dev}/mtu"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(facts(&dut, "d0"), "1500");
    assert_eq!(facts(&env["GEN_NS"], "g0"), "1500");
    assert_eq!(facts(&env["SINK_NS"], "s1"), "1500");
    // Single queues: native XDP attaches on the DUT side.
    let dut_ns_name = dut.clone();
    let q = std::thread::scope(|s| {
        s.spawn(|| {
            netns::enter_named(&dut_ns_name);
            let q = netdev::queues("d0").unwrap();
            let x = XdpRedirect::attach(netdev::ifindex("d0").unwrap(), q.rx, XdpMode::Drv);
            (q, x.map(drop))
        })
        .join()
        .unwrap()
    });
    assert_eq!(q.0, netdev::Queues { rx: 1, tx: 1 });
    q.1.expect("native XDP attaches on the topology's DUT side");
    // A second `up` refuses; `down` twice succeeds.
    let again = Command::new(topology_script())
        .args(["up", &name])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("down"));
    netns::run_cmd(&topology_script(), &["down", &name]);
    netns::run_cmd(&topology_script(), &["down", &name]);
    let list = netns::list();
    assert!(
        !list.iter().any(|n| n.starts_with(&format!("{name}-"))),
        "{list:?}"
    );
    drop(guard);
}
