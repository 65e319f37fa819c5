//! xfwd, the application: a testpmd/l2fwd-style polling forwarder on
//! external hugepage memory. `main.rs` shows the whole flow; the modules:
//!
//! - [`cli`], [`config`]: flags and the TOML file (flags override the file);
//! - [`validate`] → [`plan`]: everything checked before memory is touched;
//! - [`dataplane`]: memory, pool, DMA mapping, ports; ordered tear-down;
//! - [`worker`], [`fwd`], [`wire`], [`latency`]: the lcore loop, the
//!   forwarding modes and the typed header views they edit through;
//! - [`lcores`], [`monitor`]: launching and joining the workers, the main
//!   thread's loop while they run;
//! - [`stats`], [`telemetry`], [`counters`], [`report`]: what the main
//!   thread reports, during the run and at its end.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod cpu;
pub mod dataplane;
pub mod error;
pub mod fwd;
pub mod idle;
pub mod latency;
pub mod lcores;
pub mod monitor;
pub mod out;
pub mod plan;
pub mod report;
pub mod signals;
pub mod stats;
pub mod streams;
pub mod telemetry;
pub mod validate;
pub mod wire;
pub mod worker;
