//! memif interrupt mode: an idle xfwd lcore with `--idle-sleep` blocks on
//! its memif RX queue's eventfd (interrupt unmasked in the ring flags while
//! it blocks) instead of sleeping the full idle time, so a frame that
//! arrives while it is blocked is forwarded at once, and sparse traffic
//! costs it almost no CPU.
//!
//! The peer is this test process: an in-process memif client (the pmd
//! crate) sends one frame at a time to `xfwd --forward-mode io` (memif
//! server) and times its way back. Cost: ~6 s.

mod support;

use std::time::{Duration, Instant};
use support::proc::{port, sock, wait_listening, xfwd, xfwd_final};
use xfwd_mempool::{MbufBatch, MbufPool, PoolConfig};
use xfwd_pmd::PortConf;

/// xfwd's idle sleep: 50 ms. Polling that sleeps would answer a frame
/// after 25 ms on average; one that blocks on the interrupt at once.
const IDLE_US: u32 = 50_000;
const FRAMES: usize = 40;
/// Spacing: each frame finds xfwd's lcore asleep (well past one idle round).
const GAP: Duration = Duration::from_millis(70);

fn frame(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; 60 + i * 23];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    for (k, b) in f[14..].iter_mut().enumerate() {
        *b = (k as u8) ^ (i as u8);
    }
    f
}

#[test]
fn idle_lcore_blocks_on_the_memif_interrupt_and_forwards_at_once() {
    let s = sock("intr");
    let idle = IDLE_US.to_string();
    let x = xfwd(
        &[format!("memif:role=server,socket={s},id=11")],
        &[
            "--no-huge",
            "--forward-mode",
            "io",
            "--idle-sleep",
            &idle,
            "--duration",
            "30",
            "--stats-period",
            "1",
        ],
    );
    wait_listening(&s, &x);
    let pool = MbufPool::on_heap(&PoolConfig {
        name: "intr".into(),
        n: 1024,
        cache_size: 32,
        ..Default::default()
    })
    .unwrap();
    let mut cli = xfwd_pmd::probe(&format!("memif:role=client,socket={s},id=11")).unwrap();
    cli.configure(&PortConf::simple(&pool)).unwrap();
    let mut q = cli.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cli.link().up {
        assert!(Instant::now() < deadline, "memif link did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut cache = pool.cache();
    let mut out = MbufBatch::new(32);
    let mut back = MbufBatch::new(32);
    let mut rtt = Vec::new();
    let mut cpu = None;
    for i in 0..FRAMES {
        std::thread::sleep(GAP);
        if i == FRAMES / 4 {
            // Measure from here: start-up is over, the lcore idles.
            cpu = Some((x.cpu_ticks(), Instant::now()));
        }
        let mut m = cache.alloc().unwrap();
        m.set_data(&frame(i)).unwrap();
        out.push(m).unwrap();
        let t = Instant::now();
        assert_eq!(q.tx[0].tx_burst(&mut out), 1, "frame {i} not accepted");
        let limit = t + Duration::from_secs(10);
        while back.is_empty() {
            q.rx[0].rx_burst(&mut back);
            assert!(Instant::now() < limit, "frame {i} never came back");
            std::thread::yield_now();
        }
        rtt.push(t.elapsed());
        assert_eq!(back.len(), 1);
        let m = back.pop().unwrap();
        assert_eq!(m.data(), &frame(i)[..], "frame {i} byte-exact");
        cache.free(m);
    }
    let (t0, w0) = cpu.unwrap();
    let (ticks, wall) = (x.cpu_ticks() - t0, w0.elapsed());
    drop((out, back, cache));
    drop(q);
    cli.stop().unwrap();
    x.signal(libc::SIGINT);
    let (fin, log) = xfwd_final(x, Duration::from_secs(30));
    pool.leak_check().unwrap();
    let p = port(&fin, 0);
    assert_eq!(p["rx_packets"].as_u64(), Some(FRAMES as u64), "{p}");
    assert_eq!(p["tx_packets"].as_u64(), Some(FRAMES as u64), "{p}");
    // Link state per port in the JSON: up in the periods while the client
    // was there, down at the end (it left first).
    let up_periods = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "period" && v["ports"][0]["link_up"] == true)
        .count();
    assert!(up_periods >= 1, "no period with the link up:\n{log}");
    assert_eq!(p["link_up"], false, "{p}");
    let wakes = fin["lcores"][0]["intr_wakes"].as_u64().unwrap_or(0);
    rtt.sort();
    let median = rtt[rtt.len() / 2];
    let p90 = rtt[rtt.len() * 9 / 10];
    let cpu_pct = 100.0 * (ticks as f64 / 100.0) / wall.as_secs_f64();
    eprintln!(
        "memif interrupt mode: round trip median {median:?}, p90 {p90:?}, max {:?}; \
         {wakes} interrupt wakes; xfwd CPU {cpu_pct:.1}% of one core over {wall:?}",
        rtt[rtt.len() - 1]
    );
    // Every frame found the lcore asleep; most were answered by the
    // interrupt, not by the end of a 50 ms sleep (25 ms on average then).
    assert!(
        wakes >= FRAMES as u64 / 2,
        "only {wakes} idle sleeps ended by an interrupt:\n{log}"
    );
    assert!(
        median < Duration::from_millis(10) && p90 < Duration::from_millis(25),
        "round trips: median {median:?}, p90 {p90:?} (idle sleep {IDLE_US} µs)"
    );
    // A busy-polling lcore burns a whole core; blocked, it is nearly idle.
    assert!(
        cpu_pct < 20.0,
        "xfwd used {cpu_pct:.1}% of a core for sparse traffic"
    );
}
