//! Devargs parsing (`driver:name,key=value,...`), the `fault:` wrapper's
//! own syntax, and `probe` of the drivers that touch no kernel object.
//!
//! Invariants: nothing panics; a parsed devargs has a driver of letters,
//! digits and `_`, unique non-empty keys, and prints back to a string that
//! parses to the same driver, name and pairs; fault rates are
//! probabilities; a probed port reports the devargs it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xfwd_pmd::fault::FaultInjector;
use xfwd_pmd::Devargs;

/// Drivers whose probe opens sockets, netns or sysfs: parsed, not probed.
const KERNEL_DRIVERS: &[&str] = &["af_xdp", "af_packet", "vfio", "virtio", "memif"];

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(d) = Devargs::parse(&s) {
        assert!(!d.driver.is_empty());
        assert!(d
            .driver
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        for (i, (k, _)) in d.kv.iter().enumerate() {
            assert!(!k.is_empty());
            assert!(d.kv[..i].iter().all(|(k2, _)| k2 != k), "duplicate key {k}");
            let _ = d.num::<u64>(k, 0, 0..=u64::MAX);
            let _ = d.num::<u16>(k, 1, 1..=4096);
            let _ = d.flag(k, false);
        }
        let _ = d.check_keys(&["rx", "tx", "loop"]);
        // Printed back (the whole string is trimmed, so only pieces without
        // outer white space come back identical).
        let mut parts: Vec<String> = d.name.iter().cloned().collect();
        parts.extend(d.kv.iter().map(|(k, v)| format!("{k}={v}")));
        let printed = format!("{}:{}", d.driver, parts.join(","));
        if printed.trim() == printed {
            let again = Devargs::parse(&printed).expect("printed devargs parse");
            assert_eq!(
                (&again.driver, &again.name, &again.kv),
                (&d.driver, &d.name, &d.kv),
                "printed as `{printed}`"
            );
        }
    }
    if let Ok((cfg, inner)) = FaultInjector::parse_devargs(&s) {
        assert!(!inner.trim().is_empty());
        for p in [
            cfg.rx_drop,
            cfg.rx_corrupt,
            cfg.rx_truncate,
            cfg.rx_short,
            cfg.tx_full,
        ] {
            assert!((0.0..=1.0).contains(&p), "rate {p}");
        }
    }
    let lower = s.to_ascii_lowercase();
    if KERNEL_DRIVERS.iter().any(|k| lower.contains(k)) {
        return;
    }
    if let Ok(port) = xfwd_pmd::probe(&s) {
        assert_eq!(port.info().devargs, s.as_ref());
    }
});
