//! RSS configuration from devargs (`rss=`, `rss_key=`, `reta=`) and the
//! Toeplitz hash the 82576 computes (Microsoft's RSS specification), so a
//! test can predict which queue a flow lands on.

use super::regs::mrqc;

/// Default key: the one in Microsoft's RSS verification suite (also
/// DPDK's and Intel drivers' default).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
/// Entries of the redirection table.
pub const RETA_SIZE: usize = 128;

/// What RSS hashes over, from `rss=ip|udp|tcp` (any combination, `|` or `+`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashTypes {
    /// IPv4/IPv6 addresses.
    pub ip: bool,
    /// UDP ports (with addresses).
    pub udp: bool,
    /// TCP ports (with addresses).
    pub tcp: bool,
}

impl HashTypes {
    /// MRQC field bits for these types.
    pub fn mrqc_fields(self) -> u32 {
        let mut f = 0;
        if self.ip {
            f |= mrqc::IPV4 | mrqc::IPV6 | mrqc::IPV6_EX;
        }
        if self.udp {
            f |= mrqc::IPV4_UDP | mrqc::IPV6_UDP;
        }
        if self.tcp {
            f |= mrqc::IPV4_TCP | mrqc::IPV6_TCP | mrqc::IPV6_TCP_EX;
        }
        f
    }
}

/// The RSS setup of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConf {
    /// Hash types; `None` = RSS off (`rss=none`): everything to queue 0.
    pub types: Option<HashTypes>,
    /// The 40-byte key.
    pub key: [u8; 40],
    /// The redirection pattern as given (`reta=0:1:2:3`), repeated over the
    /// 128 entries; empty = round robin over the configured queues.
    pub reta: Vec<u8>,
}

impl Default for RssConf {
    fn default() -> Self {
        RssConf {
            types: Some(HashTypes {
                ip: true,
                udp: true,
                tcp: true,
            }),
            key: DEFAULT_KEY,
            reta: Vec::new(),
        }
    }
}

impl RssConf {
    /// Parse the devargs values (each `None` when not given).
    ///
    /// # Errors
    /// A message naming the key, the value and what is accepted.
    pub fn parse(
        rss: Option<&str>,
        key: Option<&str>,
        reta: Option<&str>,
    ) -> Result<RssConf, String> {
        let mut c = RssConf::default();
        if let Some(v) = rss {
            c.types = if v == "none" {
                None
            } else {
                let mut t = HashTypes {
                    ip: false,
                    udp: false,
                    tcp: false,
                };
                for part in v.split(['|', '+']) {
                    match part {
                        "ip" => t.ip = true,
                        "udp" => t.udp = true,
                        "tcp" => t.tcp = true,
                        _ => {
                            return Err(format!(
                                "`rss={v}`: `{part}` is not a hash type; accepted: ip, udp, tcp \
                                 joined by `|` (e.g. rss=ip|udp), or none"
                            ))
                        }
                    }
                }
                Some(t)
            };
        }
        if let Some(k) = key {
            let hex = k.trim_start_matches("0x");
            if hex.len() != 80 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "`rss_key={k}`: expected 40 bytes as 80 hex digits (got {} characters)",
                    hex.len()
                ));
            }
            for (i, b) in c.key.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
            }
        }
        if let Some(r) = reta {
            let parsed: Result<Vec<u8>, _> = r.split(':').map(str::parse::<u8>).collect();
            match parsed {
                Ok(v) if !v.is_empty() && v.len() <= RETA_SIZE => c.reta = v,
                _ => {
                    return Err(format!(
                        "`reta={r}`: expected up to {RETA_SIZE} queue numbers joined by `:` \
                         (e.g. reta=0:1:2:3), repeated over the {RETA_SIZE} entries"
                    ))
                }
            }
        }
        Ok(c)
    }

    /// The 128 redirection entries for `queues` RX queues.
    ///
    /// # Errors
    /// An entry names a queue that is not configured.
    pub fn table(&self, queues: u16) -> Result<[u8; RETA_SIZE], String> {
        let mut t = [0u8; RETA_SIZE];
        for (i, e) in t.iter_mut().enumerate() {
            *e = if self.reta.is_empty() {
                (i % queues as usize) as u8
            } else {
                self.reta[i % self.reta.len()]
            };
            if u16::from(*e) >= queues {
                return Err(format!(
                    "reta entry {i} is queue {e}, but the port has {queues} RX queues"
                ));
            }
        }
        Ok(t)
    }
}

/// The Toeplitz hash of `input` under `key` (Microsoft RSS specification).
pub fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The 32-bit window of the key that lines up with the current input bit.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// The hash input for an IPv4 flow: addresses, then ports when the type
/// hashes them (`ports = None` for address-only hashing).
pub fn ipv4_input(src: [u8; 4], dst: [u8; 4], ports: Option<(u16, u16)>) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    if let Some((s, d)) = ports {
        v.extend_from_slice(&s.to_be_bytes());
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// The RX queue the device picks for `hash` (low 7 bits index the table).
pub fn queue_of(table: &[u8; RETA_SIZE], hash: u32) -> u8 {
    table[(hash & 0x7f) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toeplitz_matches_the_microsoft_verification_vectors() {
        // IPv4 rows of the verification suite: (src, sport, dst, dport, ip-only hash, with ports).
        let rows = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        for (src, sp, dst, dp, ip, l4) in rows {
            assert_eq!(
                toeplitz(&DEFAULT_KEY, &ipv4_input(src, dst, None)),
                ip,
                "{src:?}"
            );
            assert_eq!(
                toeplitz(&DEFAULT_KEY, &ipv4_input(src, dst, Some((sp, dp)))),
                l4,
                "{src:?}"
            );
        }
    }

    #[test]
    fn devargs_parse_and_bad_values_are_explained() {
        let c = RssConf::parse(Some("ip|udp"), None, Some("1:0")).unwrap();
        let t = c.types.unwrap();
        assert!(t.ip && t.udp && !t.tcp);
        assert_eq!(t.mrqc_fields() & mrqc::IPV4_TCP, 0);
        assert_ne!(t.mrqc_fields() & mrqc::IPV4_UDP, 0);
        let table = c.table(2).unwrap();
        assert_eq!(&table[..4], &[1, 0, 1, 0]);
        assert!(c.table(1).unwrap_err().contains("queue 1"));
        assert_eq!(
            RssConf::parse(Some("none"), None, None).unwrap().types,
            None
        );
        let rr = RssConf::default().table(3).unwrap();
        assert_eq!(&rr[..5], &[0, 1, 2, 0, 1]);
        let key = "00".repeat(39) + "ff";
        assert_eq!(
            RssConf::parse(None, Some(&key), None).unwrap().key[39],
            0xff
        );
        assert!(RssConf::parse(Some("ip|sctp"), None, None)
            .unwrap_err()
            .contains("sctp"));
        assert!(RssConf::parse(None, Some("abcd"), None)
            .unwrap_err()
            .contains("80 hex"));
        assert!(RssConf::parse(None, None, Some("0:x"))
            .unwrap_err()
            .contains("reta"));
        assert_eq!(queue_of(&rr, 0x80 + 4), rr[4]);
    }
}
