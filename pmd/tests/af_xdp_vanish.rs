//! An `af_xdp` port whose interface vanishes under it, on veth inside a test
//! namespace: deleted (the link reads lost, RX and TX take nothing, every
//! buffer the port lent the kernel is back in the pool while the queues are
//! still alive, a restart says the interface is gone), deleted and created
//! again under the same name (still lost: the port follows the index it
//! opened), and set down then up (down while down, TX takes nothing; up
//! again, frames flow).
//!
//! Needs root, `ip` and hugepages; elsewhere the tests skip (and fail under
//! CI=true). About 2 s.

mod support;

use std::time::Duration;
use support::netns::Netns;
use support::packet::{test_frame, PacketSocket};
use support::{huge_pool, xstat};
use xfwd_mempool::*;
use xfwd_pmd::{netdev, probe, Port, PortConf, PortQueues};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd5];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5c];

fn env_ok(what: &str) -> bool {
    caps::require_root(what)
        && caps::require_tool("ip", what)
        && caps::require_hugepages_2m(8, what)
}

/// A started af_xdp port on `veth0` of `ns` (peer `veth1`).
fn started(ns: &Netns, pool: &MbufPool) -> (Box<dyn Port>, PortQueues) {
    let mut p = ns.run(|| probe("af_xdp:iface=veth0,mode=skb").unwrap());
    let conf = PortConf {
        rx_desc: 512,
        tx_desc: 512,
        ..PortConf::simple(pool)
    };
    p.configure(&conf).unwrap();
    let q = ns.run(|| p.start().unwrap());
    (p, q)
}

fn burst(cache: &mut PoolCache, from: u32, n: usize) -> MbufBatch {
    let mut b = MbufBatch::new(32);
    for i in 0..n as u32 {
        let mut m = cache.alloc().unwrap();
        m.set_data(&test_frame(DST, SRC, from + i, 100)).unwrap();
        b.push(m).unwrap();
    }
    b
}

#[test]
fn deleted_interface_reads_lost_and_every_buffer_comes_back_mid_run() {
    if !env_ok("af_xdp vanish") {
        return;
    }
    let pool = huge_pool("xdp_vanish", 2048);
    let ns = Netns::new("xvan");
    ns.veth("veth0", &ns, "veth1");
    let (mut port, mut q) = started(&ns, &pool);
    assert!(port.link().up);
    assert!(
        pool.available() < pool.capacity() - 256,
        "the fill ring holds buffers"
    );
    let mut cache = pool.cache();
    let mut b = burst(&mut cache, 0, 32);
    assert_eq!(q.tx[0].tx_burst(&mut b), 32, "works before the delete");
    q.tx[0].flush();
    ns.ip(&["link", "delete", "veth0"]);
    let l = port.link();
    assert!(!l.up, "link down once the interface is gone");
    assert_eq!(xstat(port.as_ref(), "link_lost"), 1);
    assert_eq!(xstat(port.as_ref(), "link_up"), 0);
    let mut b = burst(&mut cache, 100, 32);
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "TX takes nothing");
    assert_eq!(b.len(), 32, "the caller keeps (and drops) what TX refused");
    q.tx[0].flush();
    let mut rb = MbufBatch::new(32);
    assert_eq!(q.rx[0].rx_burst(&mut rb), 0, "RX returns nothing");
    // Both halves closed their socket: the buffers the kernel held are back
    // while the queues still exist.
    cache.free_batch(&mut b);
    drop(cache);
    pool.leak_check()
        .expect("every mbuf back in the pool mid-run, before stop");
    drop(q);
    port.stop().unwrap();
    let e = ns.run(|| port.start().unwrap_err().to_string());
    assert!(e.contains("is gone"), "{e}");
    drop(port);
    pool.leak_check().unwrap();
}

#[test]
fn a_new_interface_of_the_same_name_is_not_the_port_s_and_down_is_not_lost() {
    if !env_ok("af_xdp vanish: same name, link down") {
        return;
    }
    let pool = huge_pool("xdp_vanish2", 2048);
    let ns = Netns::new("xvan2");
    ns.veth("veth0", &ns, "veth1");
    let (port, mut q) = started(&ns, &pool);
    let peer = ns.run(|| PacketSocket::bind(netdev::ifindex("veth1").unwrap()));
    let mut cache = pool.cache();

    // Down, then up again: the same device.
    ns.ip(&["link", "set", "veth0", "down"]);
    assert!(!port.link().up, "down");
    assert_eq!(xstat(port.as_ref(), "link_lost"), 0, "down is not lost");
    let mut b = burst(&mut cache, 0, 8);
    assert_eq!(q.tx[0].tx_burst(&mut b), 0, "a down link takes nothing");
    cache.free_batch(&mut b);
    ns.ip(&["link", "set", "veth0", "up"]);
    assert!(port.link().up, "up again");
    let mut got = Vec::new();
    for round in 0..50u32 {
        let mut b = burst(&mut cache, 1000 + round * 8, 8);
        let n = q.tx[0].tx_burst(&mut b);
        cache.free_batch(&mut b);
        q.tx[0].flush();
        if n > 0 {
            got.extend(peer.recv_frames(1, Duration::from_millis(100)));
        }
        if !got.is_empty() {
            break;
        }
    }
    assert!(!got.is_empty(), "frames flow after the link came back");

    // Deleted and created again under the same name: another device.
    let old = ns.run(|| netdev::ifindex("veth0").unwrap());
    ns.ip(&["link", "delete", "veth0"]);
    ns.veth("veth0", &ns, "veth1");
    let new = ns.run(|| netdev::ifindex("veth0").unwrap());
    assert_ne!(old, new);
    assert!(!port.link().up, "the new veth0 is not the port's device");
    assert_eq!(xstat(port.as_ref(), "link_lost"), 1);
    assert!(
        ns.xdp_attached("veth0").is_none(),
        "nothing on the new veth0"
    );
    let mut b = burst(&mut cache, 5000, 8);
    assert_eq!(q.tx[0].tx_burst(&mut b), 0);
    cache.free_batch(&mut b);
    let mut rb = MbufBatch::new(32);
    assert_eq!(q.rx[0].rx_burst(&mut rb), 0);
    drop(cache);
    pool.leak_check()
        .expect("every mbuf back once both halves closed");
    drop(q);
    let mut port = port;
    port.stop().unwrap();
    drop(port);
    pool.leak_check().unwrap();
}
