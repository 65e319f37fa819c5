//! Errors of ports and drivers.

use crate::dma::DmaError;

/// Errors probing, configuring, starting or stopping a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The devargs string cannot be parsed or names unknown keys.
    #[error("bad devargs `{devargs}`: {why}")]
    Devargs {
        /// The string given.
        devargs: String,
        /// What is wrong and what is accepted.
        why: String,
    },
    /// No driver with this name.
    #[error("unknown driver `{driver}` in `{devargs}`; known drivers: {known}")]
    UnknownDriver {
        /// The driver named.
        driver: String,
        /// The devargs string.
        devargs: String,
        /// Drivers we have.
        known: String,
    },
    /// A configuration the port cannot take.
    #[error("port {port}: {what} = {value} is not supported: {accepted}")]
    Config {
        /// Port name.
        port: String,
        /// The setting.
        what: &'static str,
        /// The value asked for.
        value: String,
        /// What the port accepts.
        accepted: String,
    },
    /// Operation in the wrong state (start before configure, …).
    #[error("port {port}: {why}")]
    State {
        /// Port name.
        port: String,
        /// What is wrong.
        why: String,
    },
    /// A file or OS call failed.
    #[error("port {port}: {what}: {source}")]
    Io {
        /// Port name.
        port: String,
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// DMA mapping refused.
    #[error("port {port}: {source}")]
    Dma {
        /// Port name.
        port: String,
        /// The mapper's error.
        #[source]
        source: DmaError,
    },
    /// The pool could not fill the RX queues.
    #[error("port {port}: {source}")]
    NoMbufs {
        /// Port name.
        port: String,
        /// The allocation error.
        #[source]
        source: xfwd_mempool::AllocError,
    },
    /// Malformed input data (capture files).
    #[error("port {port}: {why}")]
    Format {
        /// Port name.
        port: String,
        /// What is malformed.
        why: String,
    },
}
