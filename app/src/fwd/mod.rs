//! Forwarding modes (testpmd's `--forward-mode`): what a worker does to
//! each burst between `rx_burst` and `tx_burst`.
//!
//! The per-packet edits are plain functions over the frame bytes, written
//! with the typed views of [`crate::wire`]; a frame the mode refuses is
//! reported as [`Verdict::Drop`] with its [`Reason`] and dropped (counted
//! per reason), never a panic. What each mode reads, writes, forwards and
//! drops, and where it deliberately differs from DPDK's testpmd, is in
//! `docs/forwarding.md`.

pub mod edit;
pub mod l3fwd;
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
    /// Route IPv4/IPv6 by the configured tables (DPDK l3fwd).
    L3fwd,
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
    ("l3fwd", FwdMode::L3fwd),
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
    /// Sent on, but with fewer layers edited than its headers announce
    /// (5tswap: an IP or L4 header it could not parse; counted `partial`).
    Partial,
    /// Not for this mode (icmpecho: neither ARP request nor echo request): dropped.
    Ignore,
    /// Dropped for a reason, counted per reason.
    Drop(Reason),
}

/// Why a mode dropped a frame (see docs/forwarding.md; the JSON stats
/// count each under `fwd.drops.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Shorter than an Ethernet header (14 B).
    Runt,
    /// A header, or the length one claims, runs past the end of the frame
    /// (or past the first segment, where headers must lie).
    Truncated,
    /// IPv4 version/IHL/total length (or IPv6 version) not valid.
    BadIpHeader,
    /// IPv4 header checksum does not verify.
    BadIpChecksum,
    /// ICMP/ICMPv6 checksum does not verify.
    BadIcmpChecksum,
    /// An IPv4 fragment (RFC 1122: echo only whole datagrams).
    Fragment,
    /// IPv4 options on an echo request (not echoed: no source-route reversal).
    IpOptions,
    /// Source is multicast, broadcast or unspecified (MAC or IP).
    SrcNotUnicast,
    /// Destination IP is multicast or broadcast (a reply would have to come
    /// from that address).
    DstNotUnicast,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 9] = [
        Reason::Runt,
        Reason::Truncated,
        Reason::BadIpHeader,
        Reason::BadIpChecksum,
        Reason::BadIcmpChecksum,
        Reason::Fragment,
        Reason::IpOptions,
        Reason::SrcNotUnicast,
        Reason::DstNotUnicast,
    ];

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Runt => "runt",
            Reason::Truncated => "truncated",
            Reason::BadIpHeader => "bad_ip_header",
            Reason::BadIpChecksum => "bad_ip_checksum",
            Reason::BadIcmpChecksum => "bad_icmp_checksum",
            Reason::Fragment => "fragment",
            Reason::IpOptions => "ip_options",
            Reason::SrcNotUnicast => "src_not_unicast",
            Reason::DstNotUnicast => "dst_not_unicast",
        }
    }

    /// Index into per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Number of drop reasons.
pub const N_REASONS: usize = Reason::ALL.len();
