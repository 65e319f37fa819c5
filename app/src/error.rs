//! The app's typed errors: [`ConfigError`] (exit code 2: nothing was
//! touched) and [`RunError`] (exit code 1: a runtime failure).

use std::path::PathBuf;
use xfwd_mempool::{ExtMemError, LeakError, PoolError, RegistryError};
use xfwd_pmd::PortError;

/// A configuration the app refuses before touching memory. Every message
/// names the key or flag, the bad value and what is accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, unknown keys, wrong types.
    #[error("config {source_name}: {msg}")]
    Parse {
        /// File name.
        source_name: String,
        /// The parser's message (names the key and the line).
        msg: String,
    },
    /// A value out of range or of the wrong shape.
    #[error("invalid {key} = {value}: accepted: {accepted}")]
    Invalid {
        /// The flag or key (with the file).
        key: String,
        /// The value given.
        value: String,
        /// What is accepted.
        accepted: String,
    },
    /// A port refused its devargs or layout.
    #[error("{key}: {source}")]
    Port {
        /// The flag or key of the port.
        key: String,
        /// The driver's error.
        #[source]
        source: PortError,
    },
    /// The pool cannot be planned.
    #[error("{key}: {source}")]
    Pool {
        /// The flag or key.
        key: String,
        /// The planner's error.
        #[source]
        source: PoolError,
    },
    /// The memory plan does not fit the machine (free hugepages).
    #[error("{key}: {source}; or run without hugepages with `--no-huge` (heap memory, software ports only)")]
    Memory {
        /// The flag or key.
        key: String,
        /// The check's error.
        #[source]
        source: ExtMemError,
    },
}

/// A failure while running (after validation).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// External memory could not be allocated.
    #[error("external memory: {0}")]
    Memory(#[from] ExtMemError),
    /// Registering or unregistering failed.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// The pool could not be created.
    #[error("mbuf pool: {0}")]
    Pool(#[from] PoolError),
    /// IOVAs for the VFIO container could not be assigned.
    #[error("VFIO IOVAs: {0}")]
    Dma(#[from] xfwd_pmd::dma::DmaError),
    /// A port failed.
    #[error("{0}")]
    Port(#[from] PortError),
    /// A worker could not be pinned to its CPU.
    #[error("lcore {lcore}: sched_setaffinity failed: {source}")]
    Pin {
        /// The CPU.
        lcore: u32,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn the worker thread of lcore {lcore}: {source}")]
    Spawn {
        /// The CPU.
        lcore: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A worker panicked.
    #[error("the worker of lcore {0} panicked")]
    WorkerPanic(u32),
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The telemetry socket could not be served.
    #[error("telemetry socket {path}: {source}")]
    Telemetry {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal handler installation failed.
    #[error("cannot install the Ctrl-C/SIGTERM handler: {0}")]
    Signal(#[from] ctrlc::Error),
    /// Mbufs were not returned.
    #[error("leak audit failed: {0}")]
    Leak(#[from] LeakError),
    /// A port's link went away mid-run under `on_link_loss = "exit"`.
    #[error("port {port} ({devargs}): {what}; on_link_loss = \"exit\" stopped the run")]
    LinkLost {
        /// The port id.
        port: u16,
        /// Its devargs.
        devargs: String,
        /// What happened, naming the interface.
        what: String,
    },
}
