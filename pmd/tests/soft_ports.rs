//! null and ring ports on heap-backed pools: counts, byte-exact round trips,
//! stop semantics and the leak audit.

mod support;

use xfwd_mempool::*;
use xfwd_pmd::*;

fn pool(n: u32) -> MbufPool {
    support::heap_pool(&format!("p{n}"), n, 32)
}

#[test]
fn null_port_rx_allocates_tx_frees() {
    let p = pool(512);
    let mut port = probe("null:size=60").unwrap();
    assert_eq!(port.info().driver, "null");
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut b = MbufBatch::new(32);
    for _ in 0..100 {
        assert_eq!(q.rx[0].rx_burst(&mut b), 32);
        assert!(b.iter().all(|m| m.data_len() == 60 && m.pkt_len() == 60));
        assert_eq!(q.tx[0].tx_burst(&mut b), 32);
        assert!(b.is_empty());
    }
    let st = port.stats();
    assert_eq!(
        (st.ipackets, st.opackets, st.ibytes, st.obytes),
        (3200, 3200, 192_000, 192_000)
    );
    // Stop is refused while the queues are held.
    let e = port.stop().unwrap_err().to_string();
    assert!(e.contains("2 queue handles are still held"), "{e}");
    drop(q);
    port.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn null_rx_counts_nombuf_when_the_pool_is_empty() {
    let p = pool(64);
    let mut port = probe("null:").unwrap();
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut held = MbufBatch::new(64);
    assert_eq!(q.rx[0].rx_burst(&mut held), 64);
    let mut b = MbufBatch::new(32);
    assert_eq!(q.rx[0].rx_burst(&mut b), 0);
    assert_eq!(port.stats().rx_nombuf, 32);
    drop(held);
    drop(q);
    port.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn ring_pair_roundtrips_frames_byte_exact() {
    let p = pool(1024);
    let mut a = probe("ring:pair1,bytes=1").unwrap();
    let mut b = probe("ring:pair1,bytes=1").unwrap();
    for port in [&mut a, &mut b] {
        port.configure(&PortConf::simple(&p)).unwrap();
    }
    let mut qa = a.start().unwrap();
    let mut qb = b.start().unwrap();
    let mut cache = p.cache();
    let mut burst = MbufBatch::new(32);
    let mut sent = Vec::new();
    for i in 0..20u8 {
        cache.alloc_bulk(&mut burst, 16).unwrap();
        for (j, m) in burst.iter_mut().enumerate() {
            let frame: Vec<u8> = (0..60 + j).map(|k| (k as u8) ^ i).collect();
            m.set_data(&frame).unwrap();
            sent.push(frame);
        }
        assert_eq!(qa.tx[0].tx_burst(&mut burst), 16);
    }
    let mut got = Vec::new();
    let mut rx = MbufBatch::new(64);
    while qb.rx[0].rx_burst(&mut rx) > 0 {
        for m in rx.drain() {
            assert_eq!(m.port(), 1);
            got.push(m.data().to_vec());
        }
    }
    assert_eq!(got, sent);
    // Nothing came back the other way.
    assert_eq!(qa.rx[0].rx_burst(&mut rx), 0);
    assert_eq!((a.stats().opackets, b.stats().ipackets), (320, 320));
    assert_eq!(a.stats().obytes, b.stats().ibytes);
    drop((qa, qb, cache));
    a.stop().unwrap();
    b.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn ring_full_leaves_unsent_with_the_caller_and_stop_frees_leftovers() {
    let p = pool(256);
    let mut a = probe("ring:lonely").unwrap();
    let conf = PortConf {
        rx_desc: 8,
        tx_desc: 8,
        ..PortConf::simple(&p)
    };
    a.configure(&conf).unwrap();
    let mut q = a.start().unwrap();
    let mut cache = p.cache();
    let mut burst = MbufBatch::new(32);
    cache.alloc_bulk(&mut burst, 20).unwrap();
    for (i, m) in burst.iter_mut().enumerate() {
        m.set_data(&[i as u8; 64]).unwrap();
    }
    // Alone on its name: a loopback with an 8-entry ring.
    assert_eq!(q.tx[0].tx_burst(&mut burst), 8);
    assert_eq!(burst.len(), 12);
    assert_eq!(burst.as_slice()[0].data()[0], 8, "unsent stay in order");
    let mut rx = MbufBatch::new(4);
    assert_eq!(q.rx[0].rx_burst(&mut rx), 4);
    assert_eq!(rx.as_slice()[0].data()[0], 0);
    drop(rx);
    cache.free_batch(&mut burst);
    drop((q, cache));
    assert_eq!(p.stats().in_use, 4, "4 still in the ring");
    a.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn configure_and_devargs_errors_name_the_culprit() {
    let p = pool(64);
    let mut port = probe("null:").unwrap();
    let e = port
        .configure(&PortConf {
            rx_queues: 65,
            ..PortConf::simple(&p)
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("rx queues = 65") && e.contains("1..=64"), "{e}");
    let e = port.start().unwrap_err().to_string();
    assert!(e.contains("start before configure"), "{e}");
    let e = probe("null:size=100000").unwrap_err().to_string();
    assert!(e.contains("size=100000"), "{e}");
    let e = probe("bogus:x").unwrap_err().to_string();
    assert!(
        e.contains("unknown driver `bogus`") && e.contains("null"),
        "{e}"
    );
    let e = probe("ring:").unwrap_err().to_string();
    assert!(e.contains("needs a name"), "{e}");
    let _a = probe("ring:three").unwrap();
    let _b = probe("ring:three").unwrap();
    let e = probe("ring:three").unwrap_err().to_string();
    assert!(e.contains("already joins two ports"), "{e}");
    let mut big = probe("null:size=4000").unwrap();
    let e = big
        .configure(&PortConf::simple(&p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("size = 4000") && e.contains("data room 2048"),
        "{e}"
    );
}

#[test]
fn software_ports_record_dma_maps_and_refuse_unmap_while_started() {
    let p = pool(64);
    let mut port = probe("null:").unwrap();
    let mem = p.mem().clone();
    let (va, len) = (mem.va() as u64, mem.len() as u64);
    port.dma_map(va, va, len).unwrap();
    port.configure(&PortConf::simple(&p)).unwrap();
    let q = port.start().unwrap();
    let e = port.dma_unmap(va, va, len).unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("busy") || e.contains("pinned") || e.contains("in use"),
        "{e}"
    );
    drop(q);
    port.stop().unwrap();
    port.dma_unmap(va, va, len).unwrap();
    assert!(port.mapper().mappings().is_empty());
}

#[test]
fn probe_knows_fault_wrappers_with_nested_devargs() {
    let p = pool(256);
    let mut port = probe("fault:seed=3,rx_drop=0.5,inner=null:size=64").unwrap();
    port.configure(&PortConf::simple(&p)).unwrap();
    let mut q = port.start().unwrap();
    let mut b = MbufBatch::new(32);
    let mut got = 0;
    for _ in 0..10 {
        got += q.rx[0].rx_burst(&mut b);
        b.clear();
    }
    assert!(got > 0 && got < 320, "about half dropped: {got}");
    let dropped = port
        .xstats()
        .iter()
        .find(|(k, _)| k == "fault_rx_dropped")
        .map(|x| x.1)
        .unwrap();
    assert_eq!(got as u64 + dropped, 320);
    drop(q);
    port.stop().unwrap();
    p.leak_check().unwrap();
}

#[test]
fn a_ring_with_a_reader_refuses_a_second_one() {
    let p = pool(256);
    // a loops onto itself and reads its own ring; b, its peer, would read
    // the same ring: refused (a ring has one reader and one writer).
    let mut a = probe("ring:dup1,loop=1").unwrap();
    let mut b = probe("ring:dup1").unwrap();
    for port in [&mut a, &mut b] {
        port.configure(&PortConf::simple(&p)).unwrap();
    }
    let qa = a.start().unwrap();
    let e = b.start().map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("already has a reader"), "{e}");
    // Once a's queues are gone, b starts (its failed start left it stopped).
    drop(qa);
    a.stop().unwrap();
    let qb = b.start().unwrap();
    drop(qb);
    b.stop().unwrap();
    p.leak_check().unwrap();
}
