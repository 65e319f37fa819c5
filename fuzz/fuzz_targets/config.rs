//! The configuration file: TOML text → `FileConfig` → validated `Plan`
//! (ports probed, lcores and streams laid out, the pool planned).
//!
//! Invariants: nothing panics (a bad file is a `ConfigError` with a
//! message); a plan's streams name existing ports and queues, its lcores
//! are distinct, and it prints. Configs naming drivers whose probe opens
//! kernel objects or files (af_xdp, af_packet, vfio, pcap, memif) or a
//! route file are parsed, not validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xfwd::config::{self, Settings};
use xfwd::validate::validate;

const SKIP_VALIDATE: &[&str] = &["af_xdp", "af_packet", "vfio", "virtio", "pcap", "memif"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match config::parse(text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let risky = cfg.ports.iter().any(|p| {
        let d = p.devargs.to_ascii_lowercase();
        SKIP_VALIDATE.iter().any(|k| d.contains(k))
    });
    // A route file is read whole: a fuzzed path could name /dev/zero.
    if risky || cfg.l3fwd.route_file.is_some() {
        return;
    }
    let s = Settings {
        cfg,
        source: "fuzz.toml".into(),
        ..Default::default()
    };
    let plan = match validate(&s) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut cpus: Vec<u32> = plan.lcores.iter().map(|l| l.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    assert_eq!(cpus.len(), plan.lcores.len(), "an lcore twice");
    for l in &plan.lcores {
        for st in &l.streams {
            for (q, n) in [(st.rx, plan.rxq), (st.tx, plan.txq)] {
                if let Some(q) = q {
                    assert!(
                        usize::from(q.port) < plan.ports.len(),
                        "stream {q} names no port"
                    );
                    assert!(q.queue < n, "stream {q}: queue beyond {n}");
                }
            }
            assert!(st.rx.is_some() || st.tx.is_some(), "an empty stream");
        }
    }
    let shown = plan.to_string();
    assert!(!shown.is_empty());
    let _ = plan.predicted_chunks();
});
