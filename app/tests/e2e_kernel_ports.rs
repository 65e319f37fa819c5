//! The real `xfwd` binary forwarding between kernel ports on veth, inside
//! network namespaces the test creates:
//!
//! generator (AF_PACKET in `gen`) → g0 ⇄ d0 → [xfwd io in `dut`] → d1 ⇄ s1 → sink (AF_PACKET in `sink`)
//!
//! Every frame sent reaches the sink byte-exact or is counted as a drop by
//! xfwd; xfwd's own leak audit is zero; no XDP program is left on the
//! devices after exit, also after SIGKILL. Root, `ip` and hugepages needed
//! (CI has them; elsewhere the tests skip).

#[path = "../../pmd/tests/support/mod.rs"]
mod support;
#[path = "support/topo.rs"]
mod topo;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::packet::{test_frame, test_seq, PacketSocket};
use topo::Topo;
use xfwd_mempool::caps;
use xfwd_pmd::netdev;

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_hugepages_2m(32, what)
}

fn topo() -> Topo {
    Topo::new("e", &[["g0", "d0", "d1", "s1"]])
}

/// Start xfwd inside the DUT namespace.
fn spawn_xfwd(t: &Topo, ports: &[String], extra: &[&str], secs: u32) -> Child {
    let secs = secs.to_string();
    let mut args = vec![
        "--forward-mode",
        "io",
        "-l",
        "1",
        "--stats-period",
        "0",
        "--json",
        "--nb-mbufs",
        "8192",
    ];
    args.extend(extra);
    args.extend(["--duration", &secs]);
    t.xfwd(ports, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xfwd")
}

/// Wait until xfwd's ports are up (for AF_XDP: the program is attached).
fn wait_ready(t: &Topo, xdp: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !xdp || (t.dut.xdp_attached("d0").is_some() && t.dut.xdp_attached("d1").is_some()) {
            std::thread::sleep(Duration::from_millis(if xdp { 200 } else { 1500 }));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("xfwd did not attach its XDP programs within 10 s");
}

fn final_json(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "final");
    line.unwrap_or_else(|| {
        panic!(
            "no final JSON from xfwd (exit {:?})\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Forward test frames gen → xfwd (`d0`, `d1` devargs, `extra` flags) →
/// sink and account for every one; xfwd's final JSON (None when skipped).
fn forward_and_account(
    d0: &str,
    d1: &str,
    extra: &[&str],
    xdp: bool,
    what: &str,
) -> Option<serde_json::Value> {
    if !env_ok(what) {
        return None;
    }
    let t = topo();
    let child = spawn_xfwd(&t, &[d0.to_string(), d1.to_string()], extra, 6);
    wait_ready(&t, xdp);
    const N: u32 = 3000;
    let g = t
        .gen
        .run(|| PacketSocket::bind(netdev::ifindex("g0").unwrap()));
    let s = t
        .sink
        .run(|| PacketSocket::bind(netdev::ifindex("s1").unwrap()));
    let g_mac = t.gen.run(|| netdev::mac("g0").unwrap());
    let d0_mac = t.dut.run(|| netdev::mac("d0").unwrap());
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|i| test_frame(d0_mac, g_mac, i, 60 + (i as usize * 13) % 1400))
        .collect();
    let got = std::thread::scope(|sc| {
        let rx = sc.spawn(|| s.recv_frames(N as usize, Duration::from_secs(15)));
        for (i, f) in sent.iter().enumerate() {
            g.send(f);
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        rx.join().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let j = final_json(&out);
    assert!(
        out.status.success(),
        "xfwd exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(j["leaked_mbufs"], 0, "xfwd leak audit: {j}");
    let p0 = &j["ports"][0];
    let p1 = &j["ports"][1];
    let rx = p0["rx_packets"].as_u64().unwrap();
    let missed = p0["rx_missed"].as_u64().unwrap();
    let tx = p1["tx_packets"].as_u64().unwrap();
    let fwd_drops = p0["fwd"]["tx_dropped"].as_u64().unwrap_or(0);
    // Every test frame: delivered byte-exact to the sink, or counted as a drop.
    let delivered: Vec<&Vec<u8>> = got.iter().filter(|f| test_seq(f).is_some()).collect();
    for f in &delivered {
        let seq = test_seq(f).unwrap() as usize;
        assert_eq!(*f, &sent[seq], "frame {seq} not byte-exact");
    }
    let drops = missed + fwd_drops + p1["tx_errors"].as_u64().unwrap_or(0);
    assert!(
        delivered.len() as u64 + drops >= N as u64,
        "{} delivered + {drops} counted drops < {N} sent ({what}); xfwd: {j}",
        delivered.len()
    );
    assert!(
        rx + missed >= N as u64 && tx <= rx,
        "xfwd counters: rx {rx} missed {missed} tx {tx}"
    );
    eprintln!(
        "{what}: {N} sent, {} delivered byte-exact, {drops} counted drops",
        delivered.len()
    );
    if xdp {
        assert!(
            t.dut.xdp_detached_within("d0", Duration::from_secs(3)),
            "XDP program left on d0"
        );
        assert!(
            t.dut.xdp_detached_within("d1", Duration::from_secs(3)),
            "XDP program left on d1"
        );
    }
    Some(j)
}

#[test]
fn xfwd_forwards_between_af_xdp_ports_native_mode() {
    forward_and_account(
        "af_xdp:iface=d0,mode=drv",
        "af_xdp:iface=d1,mode=drv",
        &[],
        true,
        "xfwd af_xdp drv",
    );
}

#[test]
fn xfwd_forwards_between_af_xdp_ports_generic_mode() {
    forward_and_account(
        "af_xdp:iface=d0,mode=skb",
        "af_xdp:iface=d1,mode=skb",
        &[],
        true,
        "xfwd af_xdp skb",
    );
}

#[test]
fn no_xdp_program_remains_after_xfwd_is_killed() {
    let what = "xfwd SIGKILL cleanup";
    if !env_ok(what) {
        return;
    }
    let t = topo();
    let mut child = spawn_xfwd(
        &t,
        &["af_xdp:iface=d0".into(), "af_xdp:iface=d1".into()],
        &[],
        30,
    );
    wait_ready(&t, true);
    // `ip netns exec` execs xfwd, so the child's pid is xfwd's.
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        t.dut.xdp_detached_within("d0", Duration::from_secs(3)),
        "XDP program left on d0 after SIGKILL"
    );
    assert!(
        t.dut.xdp_detached_within("d1", Duration::from_secs(3)),
        "XDP program left on d1 after SIGKILL"
    );
}

#[test]
fn xfwd_forwards_between_af_packet_ports() {
    forward_and_account(
        "af_packet:iface=d0",
        "af_packet:iface=d1",
        &[],
        false,
        "xfwd af_packet",
    );
}

/// Adaptive polling on the real thing: the lcore sleeps between the
/// trickle's frames (`--idle-sleep`), flushes the TX frames it holds before
/// each sleep, and still delivers every frame byte-exact or counts it.
#[test]
fn xfwd_with_idle_sleep_sleeps_between_frames_and_loses_none() {
    for (d0, d1, xdp, what) in [
        (
            "af_xdp:iface=d0",
            "af_xdp:iface=d1",
            true,
            "xfwd af_xdp idle sleep",
        ),
        (
            "af_packet:iface=d0",
            "af_packet:iface=d1",
            false,
            "xfwd af_packet idle sleep",
        ),
    ] {
        let Some(j) = forward_and_account(d0, d1, &["--idle-sleep", "50"], xdp, what) else {
            return;
        };
        let lc = &j["lcores"][0];
        let sleeps = lc["sleeps"].as_u64().unwrap();
        let slept = lc["slept_pct"].as_f64().unwrap();
        assert!(sleeps > 100, "{what}: the lcore did not sleep: {lc}");
        assert!(slept > 0.0, "{what}: {lc}");
        eprintln!("{what}: {sleeps} idle sleeps, asleep {slept:.1}% of the run");
    }
}
