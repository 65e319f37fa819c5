//! `vfio` devargs → typed configuration: `vfio:<PCI address>[,debug_skip_map=1|2]`.

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
    /// Parse and check the devargs.
    ///
    /// # Errors
    /// No or a malformed PCI address, unknown keys, `debug_skip_map`
    /// without its environment switch.
    pub fn parse(d: &Devargs) -> Result<Args, PortError> {
        Args::parse_with(d, &[])
    }

    /// As [`Args::parse`], for a driver that also accepts the keys `extra`
    /// (it reads them itself).
    ///
    /// # Errors
    /// As [`Args::parse`].
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
}
