//! The `vfio:` virtio-net driver, for real, in a QEMU guest with an emulated
//! Intel IOMMU (tests/vm/run.sh).
//!
//! - On the host, [`vm_harness_passes`] runs the harness: it boots the guest
//!   (TCG, q35, intel-iommu, four virtio-net NICs on two QEMU hubs), binds the
//!   NICs with `xfwd-host devbind`, runs this test binary and `xfwd` inside,
//!   and every check must print PASS.
//! - Inside the guest (`XFWD_VM_NICS` set by the guest's init),
//!   [`guest_driver_moves_frames_through_the_iommu`] drives two NICs on the
//!   same hub through the pmd API: pool memory with IOVAs from the container
//!   (never the VA), every chunk mapped on each port, frames sent by one NIC
//!   and received byte-exact by the other, unmap refused while started,
//!   everything unmapped exactly after stop, no mbuf leaked.

use std::sync::Arc;
use std::time::{Duration, Instant};
use xfwd_mempool::caps;
use xfwd_mempool::{ExtMem, ExtMemConfig, MbufBatch, MbufPool, PoolConfig, PoolPlan, Registry};
use xfwd_pmd::dma::iova_chunks;
use xfwd_pmd::{probe, PortConf};

fn check(name: &str, ok: bool, detail: &str) -> bool {
    println!(
        "CHECK {name}: {} {detail}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

#[test]
fn guest_driver_moves_frames_through_the_iommu() {
    let Ok(nics) = std::env::var("XFWD_VM_NICS") else {
        println!(
            "not inside the VFIO test guest (XFWD_VM_NICS unset): vm_harness_passes covers it"
        );
        return;
    };
    println!();
    let bdfs: Vec<&str> = nics.split_whitespace().collect();
    assert!(bdfs.len() >= 2, "need two NICs on one hub, got {nics:?}");
    let (rx_bdf, tx_bdf) = (bdfs[0], bdfs[1]);
    let mut all = true;

    let mut rx = probe(&format!("vfio:{rx_bdf}")).expect("probe RX port");
    let mut tx = probe(&format!("vfio:{tx_bdf}")).expect("probe TX port");
    let cfg = PoolConfig {
        name: "vm".into(),
        n: 2048,
        cache_size: 64,
        allow_straddle: false,
        ..Default::default()
    };
    let plan = PoolPlan::compute(&cfg, xfwd_mempool::PageSize::Size2M, false).unwrap();
    let mut mem = ExtMem::alloc(&ExtMemConfig::hugepages_2m(plan.bytes)).expect("hugepages");
    let base = xfwd_pmd::vfio::prepare_memory(&mut mem)
        .expect("IOVAs from the container")
        .expect("a vfio port opened the container");
    all &= check(
        "driver_iova_ne_va",
        base != mem.va() as u64 && mem.iovas()[0] == base,
        &format!("va {:#x} iova {base:#x}", mem.va()),
    );
    let mem = Arc::new(mem);
    let reg = Registry::new();
    let region = reg.register_mem(&mem).unwrap();
    let pool = MbufPool::create(&cfg, mem.clone(), &reg).unwrap();
    let chunks = iova_chunks(mem.va() as u64, 2 << 20, mem.iovas());
    for p in [&rx, &tx] {
        for c in &chunks {
            p.dma_map(c.va, c.iova, c.len).expect("dma_map");
        }
    }
    let container = xfwd_pmd::vfio::opened_container().expect("open");
    for p in [&mut rx, &mut tx] {
        let mut conf = PortConf::simple(&pool);
        conf.rx_desc = 256;
        conf.tx_desc = 256;
        p.configure(&conf).expect("configure");
    }
    let mut rq = rx.start().expect("start RX port");
    let mut tq = tx.start().expect("start TX port");
    let busy = rx.dma_unmap(chunks[0].va, chunks[0].iova, chunks[0].len);
    all &= check(
        "driver_unmap_refused_while_started",
        busy.is_err(),
        &busy.err().map(|e| e.to_string()).unwrap_or_default(),
    );

    // Frames from tx to rx (same QEMU hub), each with a sequence number.
    let (src, dst) = (tx.info().mac, rx.info().mac);
    const N: u32 = 3000;
    let mut sent = 0u32;
    let mut got = 0u32;
    let mut bad = 0u32;
    let mut reordered = 0u32;
    let mut seen = vec![false; N as usize];
    let mut txb = MbufBatch::new(32);
    let mut rxb = MbufBatch::new(32);
    let mut cache = pool.cache();
    let t0 = Instant::now();
    while got < N && t0.elapsed() < Duration::from_secs(60) {
        while sent < N && !txb.is_full() {
            let Some(mut m) = cache.alloc() else { break };
            let len = 60 + (sent % 7) as usize * 100;
            m.reset_len(len).unwrap();
            let d = m.data_mut();
            d[..6].copy_from_slice(&dst);
            d[6..12].copy_from_slice(&src);
            d[12..14].copy_from_slice(&[0x88, 0xb5]);
            d[14..18].copy_from_slice(&sent.to_be_bytes());
            for (i, b) in d[18..].iter_mut().enumerate() {
                *b = (i as u32 ^ sent) as u8;
            }
            txb.push(m).unwrap();
            sent += 1;
        }
        tq.tx[0].tx_burst(&mut txb);
        sent -= txb.len() as u32; // unsent ones are rebuilt with the same numbers
        cache.free_batch(&mut txb);
        rq.rx[0].rx_burst(&mut rxb);
        for m in rxb.drain() {
            let d = m.data();
            let seq = u32::from_be_bytes(d[14..18].try_into().unwrap());
            let len_ok = d.len() == 60 + (seq % 7) as usize * 100;
            let body_ok = d[18..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i as u32 ^ seq) as u8);
            // QEMU's net queue may deliver a frame that arrives while an earlier one
            // waits for RX buffers first: order is reported, each frame must come once.
            if seq != got {
                reordered += 1;
            }
            let fresh = seq < N && !std::mem::replace(&mut seen[seq as usize], true);
            if !fresh || !len_ok || !body_ok || d[..6] != dst {
                if bad < 3 {
                    println!(
                        "bad frame #{got}: seq {seq} len {} (ok {len_ok}) body ok {body_ok} head {:02x?}",
                        d.len(),
                        &d[..d.len().min(24)]
                    );
                }
                bad += 1;
            }
            got += 1;
        }
    }
    let (ts, rs) = (tx.stats(), rx.stats());
    all &= check(
        "driver_frames_byte_exact",
        got == N && bad == 0 && seen.iter().all(|&x| x) && ts.opackets == u64::from(N) && rs.ipackets == u64::from(N),
        &format!(
            "sent {} received {} (each once, byte-exact; bad {bad}, out of order {reordered}) in {:.1}s",
            ts.opackets,
            rs.ipackets,
            t0.elapsed().as_secs_f64()
        ),
    );
    drop(cache);
    drop(rq);
    drop(tq);
    rx.stop().expect("stop");
    tx.stop().expect("stop");
    let ring_bytes_left = container.mapped_bytes();
    let mut unmap_ok = true;
    for p in [&rx, &tx] {
        for c in &chunks {
            unmap_ok &= p.dma_unmap(c.va, c.iova, c.len).is_ok();
        }
    }
    all &= check(
        "driver_exact_unmap",
        unmap_ok
            && container.mapped_bytes() == 0
            && ring_bytes_left == chunks.iter().map(|c| c.len).sum::<u64>(),
        &format!(
            "after stop {ring_bytes_left:#x} bytes (the pool) mapped, after unmap {:#x}",
            container.mapped_bytes()
        ),
    );
    let leak = pool.leak_check();
    all &= check("driver_no_leak", leak.is_ok(), &format!("{leak:?}"));
    drop((rx, tx));
    drop(pool);
    reg.unregister(region).unwrap();
    assert!(all, "a driver check failed (see CHECK lines)");
}

#[test]
fn vm_harness_passes() {
    if std::env::var_os("XFWD_VM_NICS").is_some() {
        return; // inside the guest: the test above is the one that runs
    }
    if !caps::require_root("the VFIO guest test (tests/vm/run.sh)") {
        return;
    }
    let have = |t: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // The harness installs or unpacks QEMU itself; outside CI, skip when
    // neither QEMU nor apt is there to get it.
    if !caps::require(
        have("qemu-system-x86_64") || (caps::in_ci() && have("apt-get")),
        "qemu-system-x86_64 (or apt-get in CI)",
        "the VFIO driver is tested in a QEMU guest with an emulated IOMMU",
    ) || !caps::require(
        have("apt-get") && have("dpkg-deb") && have("xz"),
        "apt-get, dpkg-deb, xz",
        "the harness fetches Debian's kernel package",
    ) {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Debian's dpdk-testpmd runs in the guest too, as a peer on the same
    // NICs (three PEER checks, ~4 min under TCG); TESTPMD=0 leaves it out.
    let testpmd = std::env::var("TESTPMD").unwrap_or_else(|_| "1".into());
    let out = std::process::Command::new("timeout")
        .args(["1800", "tests/vm/run.sh"])
        .env("TESTPMD", &testpmd)
        .current_dir(&root)
        .output()
        .expect("run tests/vm/run.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("VM RESULT: PASS"),
        "the VFIO guest harness failed (status {:?}); its summary is above",
        out.status
    );
}
