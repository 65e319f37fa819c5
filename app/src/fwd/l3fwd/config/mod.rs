//! The router's configuration: `[l3fwd]`, `[[route]]`, `[[neighbor]]`,
//! `[[flow]]` in the TOML file, `--route`/`--neighbor`/`--flow`/
//! `--route-file` on the command line, and a route file (one entry a line).
//! Everything is checked before start; an error names the entry (the key
//! and index, the flag, or the file and line) and what is accepted.
//!
//! `entry` parses one entry (a route-file line, a flag, a run-time
//! command); `build` resolves every entry against the ports and the
//! neighbours into the [`Tables`](super::Tables).

mod build;
mod entry;

pub use build::build;
pub(crate) use entry::parse_flow_line;
pub use entry::runtime_entry;

use crate::error::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// `[l3fwd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L3fwdCfg {
    /// `lpm` (default) or `em`.
    pub lookup: String,
    /// Verify IPv4 header checksums (bad ones are dropped as bad headers).
    pub check_checksum: bool,
    /// A route file: `PREFIX PORT [VIA]` or `SRC DST SPORT DPORT PROTO PORT` lines.
    pub route_file: Option<PathBuf>,
}

impl Default for L3fwdCfg {
    fn default() -> Self {
        L3fwdCfg {
            lookup: "lpm".into(),
            check_checksum: false,
            route_file: None,
        }
    }
}

/// `[[route]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCfg {
    /// `ADDR/LEN`.
    pub prefix: String,
    /// TX port (optional with `via`: the neighbour's port).
    #[serde(default)]
    pub port: Option<u32>,
    /// Gateway: a `[[neighbor]]` ip whose MAC becomes the destination.
    #[serde(default)]
    pub via: Option<String>,
}

/// `[[neighbor]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborCfg {
    /// Its address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// The port it is on.
    pub port: u32,
}

/// `[[flow]]` (exact match).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowCfg {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// Source port.
    #[serde(default)]
    pub sport: u32,
    /// Destination port.
    #[serde(default)]
    pub dport: u32,
    /// `udp`, `tcp`, `sctp`, `icmp`, `icmpv6` or a number.
    pub proto: String,
    /// TX port.
    pub port: u32,
    /// Gateway (a neighbour) instead of the port's next-hop MAC.
    #[serde(default)]
    pub via: Option<String>,
}

/// The command-line entries (each string as typed).
#[derive(Debug, Clone, Default)]
pub struct L3fwdFlags {
    /// `--route PREFIX,PORT[,VIA]`.
    pub routes: Vec<String>,
    /// `--neighbor IP,MAC,PORT`.
    pub neighbors: Vec<String>,
    /// `--flow SRC,DST,SPORT,DPORT,PROTO,PORT`.
    pub flows: Vec<String>,
}

/// A port as the router sees it: id, own MAC, next-hop MAC if configured.
#[derive(Debug, Clone, Copy)]
pub struct RouterPort {
    /// Port id.
    pub id: u16,
    /// Its MAC (source of forwarded frames).
    pub mac: [u8; 6],
    /// `--eth-dest` / `port.eth_peer`, when set.
    pub next_hop: Option<[u8; 6]>,
}

fn invalid(key: &str, value: impl ToString, accepted: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        accepted: accepted.into(),
    }
}

/// Everything the router needs, from the file's sections and the flags.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `[l3fwd]`.
    pub cfg: &'a L3fwdCfg,
    /// `[[route]]`.
    pub routes: &'a [RouteCfg],
    /// `[[neighbor]]`.
    pub neighbors: &'a [NeighborCfg],
    /// `[[flow]]`.
    pub flows: &'a [FlowCfg],
    /// The flags.
    pub flags: &'a L3fwdFlags,
    /// The config file's name (for messages).
    pub source: &'a str,
    /// The key naming `[l3fwd].lookup` (a flag or the file key).
    pub lookup_key: &'a str,
}
