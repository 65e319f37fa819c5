//! DPDK-style device arguments: `driver:name,key=value,...`.
//!
//! `null:`, `ring:r0`, `pcap:rx=in.pcap,tx=out.pcap`,
//! `af_xdp:iface=veth0,queues=2`, `vfio:0000:00:03.0`. The part after the
//! colon is a comma-separated list; an entry without `=` is the device name
//! (a PCI address keeps its own colons).

use crate::error::PortError;

/// Parsed devargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devargs {
    /// The whole string as given.
    pub raw: String,
    /// Driver name before the colon.
    pub driver: String,
    /// The positional name (ring name, PCI address), if any.
    pub name: Option<String>,
    /// `key=value` pairs in order.
    pub kv: Vec<(String, String)>,
}

impl Devargs {
    /// Parse a devargs string.
    ///
    /// # Errors
    /// [`PortError::Devargs`] for an empty driver, a duplicate key, an empty
    /// key or two positional names.
    pub fn parse(s: &str) -> Result<Devargs, PortError> {
        let bad = |why: String| PortError::Devargs {
            devargs: s.to_string(),
            why,
        };
        let s_trim = s.trim();
        let (driver, rest) = match s_trim.split_once(':') {
            Some((d, r)) => (d, r),
            None => (s_trim, ""),
        };
        if driver.is_empty()
            || !driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(format!(
                "expected `driver:args` with a driver name of letters, digits and `_`, got `{driver}`"
            )));
        }
        let mut name = None;
        let mut kv: Vec<(String, String)> = Vec::new();
        for part in rest.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((k, v)) => {
                    if k.is_empty() {
                        return Err(bad(format!("empty key in `{part}`")));
                    }
                    if kv.iter().any(|(kk, _)| kk == k) {
                        return Err(bad(format!("key `{k}` given twice")));
                    }
                    kv.push((k.to_string(), v.to_string()));
                }
                None => {
                    if name.is_some() {
                        return Err(bad(format!(
                            "two names (`{}` and `{part}`): use key=value for options",
                            name.unwrap_or_default()
                        )));
                    }
                    name = Some(part.to_string());
                }
            }
        }
        Ok(Devargs {
            raw: s.to_string(),
            driver: driver.to_string(),
            name,
            kv,
        })
    }

    /// Refuse keys outside `accepted`.
    ///
    /// # Errors
    /// [`PortError::Devargs`] naming the key and the accepted ones.
    pub fn check_keys(&self, accepted: &[&str]) -> Result<(), PortError> {
        for (k, _) in &self.kv {
            if !accepted.contains(&k.as_str()) {
                return Err(PortError::Devargs {
                    devargs: self.raw.clone(),
                    why: format!(
                        "unknown key `{k}` for driver {}; accepted: {}",
                        self.driver,
                        if accepted.is_empty() {
                            "none".to_string()
                        } else {
                            accepted.join(", ")
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    /// Value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.kv
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Numeric value of a key within `range`, or `default`.
    ///
    /// # Errors
    /// [`PortError::Devargs`] when it is not a number in the range.
    pub fn num<T>(
        &self,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, PortError>
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(PortError::Devargs {
                devargs: self.raw.clone(),
                why: format!(
                    "`{key}={v}`: expected a number in {}..={}",
                    range.start(),
                    range.end()
                ),
            }),
        }
    }

    /// Boolean value (`0/1`, `true/false`, `yes/no`), or `default`.
    ///
    /// # Errors
    /// [`PortError::Devargs`] for anything else.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, PortError> {
        match self.get(key) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(PortError::Devargs {
                devargs: self.raw.clone(),
                why: format!("`{key}={v}`: expected 0/1, true/false, yes/no"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let d = Devargs::parse("null:").unwrap();
        assert_eq!(
            (d.driver.as_str(), d.name.as_deref(), d.kv.len()),
            ("null", None, 0)
        );
        let d = Devargs::parse("ring:r0").unwrap();
        assert_eq!(d.name.as_deref(), Some("r0"));
        let d = Devargs::parse("pcap:rx=in.pcap,tx=out.pcap").unwrap();
        assert_eq!(d.get("rx"), Some("in.pcap"));
        assert_eq!(d.get("tx"), Some("out.pcap"));
        let d = Devargs::parse("vfio:0000:00:03.0").unwrap();
        assert_eq!(d.name.as_deref(), Some("0000:00:03.0"));
        let d = Devargs::parse("af_xdp:iface=veth0,queues=2").unwrap();
        assert_eq!(d.num("queues", 1u16, 1..=64).unwrap(), 2);
    }

    #[test]
    fn bad_devargs_are_explained() {
        for (s, frag) in [
            (":x", "driver name"),
            ("null:a=1,a=2", "given twice"),
            ("null:=3", "empty key"),
            ("ring:a,b", "two names"),
            ("n ull:", "driver name"),
        ] {
            let e = Devargs::parse(s).unwrap_err().to_string();
            assert!(e.contains(frag), "{s}: {e}");
        }
        let d = Devargs::parse("null:size=x,bogus=1").unwrap();
        let e = d.check_keys(&["size", "copy"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown key `bogus`") && e.contains("size, copy"),
            "{e}"
        );
        let e = d.num("size", 64u16, 14..=9000).unwrap_err().to_string();
        assert!(e.contains("size=x") && e.contains("14..=9000"), "{e}");
    }
}
