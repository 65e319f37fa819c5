//! Forwarding modes (testpmd's `--forward-mode`): what a worker does to
//! each burst between `rx_burst` and `tx_burst`.
//!
//! The per-packet edits are plain functions over the frame bytes, written
//! with the typed views of [`crate::wire`]; a frame too short or malformed
//! for the mode is reported as [`Verdict::Malformed`] and dropped (counted),
//! never a panic.

pub mod edit;
pub mod mix;
pub mod txgen;

use std::fmt;

/// A forwarding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FwdMode {
    /// Forward untouched.
    Io,
    /// Source MAC = TX port's MAC, destination = the TX port's peer.
    Mac,
    /// Swap source and destination MACs.
    MacSwap,
    /// Swap L2, L3 (IPv4/IPv6) and L4 (UDP/TCP) source and destination.
    #[serde(rename = "5tswap")]
    FiveTupleSwap,
    /// Receive and free.
    RxOnly,
    /// Generate UDP packets (with a latency timestamp).
    TxOnly,
    /// Generate packets over many flows; received packets are freed.
    FlowGen,
    /// Answer ARP requests and ICMP echo requests; drop the rest.
    IcmpEcho,
}

/// Every mode with its name, for parsing and for error messages.
pub const MODES: &[(&str, FwdMode)] = &[
    ("io", FwdMode::Io),
    ("mac", FwdMode::Mac),
    ("macswap", FwdMode::MacSwap),
    ("5tswap", FwdMode::FiveTupleSwap),
    ("rxonly", FwdMode::RxOnly),
    ("txonly", FwdMode::TxOnly),
    ("flowgen", FwdMode::FlowGen),
    ("icmpecho", FwdMode::IcmpEcho),
];

impl FwdMode {
    /// Parse a mode name.
    pub fn parse(s: &str) -> Option<FwdMode> {
        MODES.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        MODES
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Accepted names, comma separated.
    pub fn accepted() -> String {
        MODES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// True when the mode receives packets.
    pub fn receives(self) -> bool {
        self != FwdMode::TxOnly
    }

    /// True when the mode transmits packets.
    pub fn transmits(self) -> bool {
        self != FwdMode::RxOnly
    }

    /// True when the mode generates packets from the pool.
    pub fn generates(self) -> bool {
        matches!(self, FwdMode::TxOnly | FwdMode::FlowGen)
    }
}

impl fmt::Display for FwdMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on.
    Forward,
    /// Not for this mode (icmpecho: neither ARP request nor echo request): dropped.
    Ignore,
    /// Too short or malformed for this mode: dropped and counted.
    Malformed,
}
