//! The line-rate benchmark harness behind `xfwd-bench` (see BENCHMARKS.md).

pub mod procfs;
pub mod ratepath;
pub mod report;
pub mod results;
pub mod rfc2544;
#[allow(unsafe_code)]
pub mod runner;
pub mod scenario;
pub mod svg;
