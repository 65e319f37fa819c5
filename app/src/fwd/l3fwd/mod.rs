//! `l3fwd`: an IPv4/IPv6 router forwarding mode (DPDK's `l3fwd`): routes
//! and neighbours from the configuration, longest-prefix match ([`lpm`],
//! DIR-24-8 style) or exact match on the 5-tuple ([`em`]), TTL / hop limit
//! decremented (IPv4 checksum updated incrementally), MACs rewritten,
//! drops counted by reason; the tables are shared read-only by the lcores
//! and replaced whole at run time ([`table::Shared`]).

pub mod config;
pub mod control;
pub mod em;
pub mod lcore;
pub mod lpm;
pub mod pkt;
pub(crate) mod plan;
pub mod table;

pub use config::{FlowCfg, L3fwdCfg, L3fwdFlags, NeighborCfg, RouteCfg, RouterPort};
pub use lcore::Lcore;
pub use table::{Lookup, NextHop, Prefix, Shared, Tables};
