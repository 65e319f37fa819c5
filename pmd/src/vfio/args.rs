//! `vfio` devargs → typed configuration: `vfio:<PCI address>[,debug_skip_map=1|2]`
//! (virtio-net also: `debug_bad_desc=1`).

use super::port::DEBUG_ENV;
use crate::devargs::Devargs;
use crate::error::PortError;

/// Devargs of a vfio port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Args {
    /// `DDDD:BB:DD.F`, lower case.
    pub bdf: String,
    /// Negative tests only: 1 = `dma_map` pretends, 2 = and `start` does not check.
    pub debug_skip_map: u8,
}

impl Args {
    /// Parse and check the devargs, for a driver that also accepts the keys
    /// `extra` (it reads them itself).
    ///
    /// # Errors
    /// No or a malformed PCI address, unknown keys, `debug_skip_map`
    /// without its environment switch.
    pub fn parse_with(d: &Devargs, extra: &[&str]) -> Result<Args, PortError> {
        let keys: Vec<&str> = ["debug_skip_map"].iter().chain(extra).copied().collect();
        d.check_keys(&keys)?;
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        let name = d
            .name
            .as_deref()
            .ok_or_else(|| bad("expected `vfio:<PCI address>`, e.g. `vfio:0000:00:03.0`".into()))?;
        let bdf = normalize_bdf(name)
            .ok_or_else(|| bad(format!("`{name}` is not a PCI address (DDDD:BB:DD.F)")))?;
        let debug_skip_map = d.num("debug_skip_map", 0u8, 0..=2)?;
        if debug_skip_map > 0 && std::env::var(DEBUG_ENV).as_deref() != Ok("1") {
            return Err(bad(format!(
                "debug_skip_map is a negative-test switch that makes the device DMA to unmapped \
                 memory; it is only accepted with {DEBUG_ENV}=1"
            )));
        }
        Ok(Args {
            bdf,
            debug_skip_map,
        })
    }
}

/// The keys only the virtio-net driver reads (besides [`Args`]'s).
pub(super) const VIRTIO_KEYS: &[&str] = &["debug_bad_desc"];

/// `debug_bad_desc=0|1` (virtio-net, negative tests only): at start, post one
/// malformed TX descriptor chain so the device sets DEVICE_NEEDS_RESET.
///
/// # Errors
/// Not 0 or 1, or 1 without `XFWD_DEBUG_DEVARGS=1` in the environment.
pub(super) fn debug_bad_desc(d: &Devargs) -> Result<bool, PortError> {
    debug_bad_desc_with(d, std::env::var(DEBUG_ENV).as_deref() == Ok("1"))
}

fn debug_bad_desc_with(d: &Devargs, enabled: bool) -> Result<bool, PortError> {
    let v = d.num("debug_bad_desc", 0u8, 0..=1)?;
    if v > 0 && !enabled {
        return Err(PortError::Devargs {
            devargs: d.raw.clone(),
            why: format!(
                "debug_bad_desc is a negative-test switch that makes the device fail \
                 (DEVICE_NEEDS_RESET); it is only accepted with {DEBUG_ENV}=1"
            ),
        });
    }
    Ok(v == 1)
}

/// `0000:00:03.0` from `0000:00:03.0` or `00:03.0`.
fn normalize_bdf(s: &str) -> Option<String> {
    let full = if s.matches(':').count() == 1 {
        format!("0000:{s}")
    } else {
        s.to_string()
    };
    let b = full.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    (b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11]))
    .then(|| full.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_normalized_or_refused() {
        assert_eq!(normalize_bdf("00:03.0").as_deref(), Some("0000:00:03.0"));
        assert_eq!(
            normalize_bdf("0000:AF:1f.7").as_deref(),
            Some("0000:af:1f.7")
        );
        for bad in ["0000:00:03", "00:03.8", "eth0", "0000:00:03.0.1", "zz:00.0"] {
            assert!(normalize_bdf(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_bad_desc_needs_the_env_switch_and_is_range_checked() {
        let d = |s: &str| Devargs::parse(s).unwrap();
        let plain = d("vfio:00:03.0");
        assert!(!debug_bad_desc_with(&plain, false).unwrap());
        assert!(!debug_bad_desc_with(&d("vfio:00:03.0,debug_bad_desc=0"), false).unwrap());
        let on = d("vfio:00:03.0,debug_bad_desc=1");
        let e = debug_bad_desc_with(&on, false).unwrap_err().to_string();
        assert!(e.contains(DEBUG_ENV) && e.contains("debug_bad_desc"), "{e}");
        assert!(debug_bad_desc_with(&on, true).unwrap());
        for bad in ["2", "-1", "yes"] {
            let e = debug_bad_desc_with(&d(&format!("vfio:00:03.0,debug_bad_desc={bad}")), true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("0..=1"), "{bad}: {e}");
        }
        // The common parser accepts the key only where a driver reads it.
        assert!(Args::parse_with(&on, &[]).is_err());
        assert_eq!(
            Args::parse_with(&on, VIRTIO_KEYS).unwrap().bdf,
            "0000:00:03.0"
        );
    }
}
