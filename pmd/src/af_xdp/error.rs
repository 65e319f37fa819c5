//! Errors of the AF_XDP layer. Every message names the call that failed and,
//! where the errno has a known cause on Linux, what to do about it.

use std::io;
use thiserror::Error;

/// Why an AF_XDP, XDP or netdev operation failed.
#[derive(Debug, Error)]
pub enum XdpError {
    /// A system call failed; `hint` explains the usual cause of this errno here.
    #[error("{op} failed: {source}{hint}")]
    Sys {
        /// The operation, e.g. `"bind AF_XDP socket to veth0 queue 0"`.
        op: String,
        /// The errno.
        source: io::Error,
        /// Empty, or "; " followed by advice.
        hint: String,
    },
    /// `BPF_PROG_LOAD` failed; the verifier's log says why.
    #[error("the kernel refused the XDP program ({source}); verifier log:\n{log}")]
    Verifier {
        /// The errno.
        source: io::Error,
        /// The verifier log (may be empty when the failure came before verification).
        log: String,
    },
    /// A configuration value is unusable; the message says which and why.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// Zero-copy was required but the device/driver only offers copy mode.
    #[error(
        "zero-copy AF_XDP is not supported on ifindex {ifindex} queue {queue} ({source}); \
         use copy mode (veth and most virtual devices have no zero-copy)"
    )]
    ZeroCopyUnsupported {
        /// Device index.
        ifindex: u32,
        /// Queue id.
        queue: u32,
        /// The errno.
        source: io::Error,
    },
    /// A socket over the same UMEM already owns this (device, queue): one socket per queue.
    #[error(
        "ifindex {ifindex} queue {queue} is already bound by a socket over this UMEM; \
         use one socket per (device, queue) and drop the old one first"
    )]
    QueueInUse {
        /// Device index.
        ifindex: u32,
        /// Queue id.
        queue: u32,
    },
    /// A network device name that does not exist in this network namespace.
    #[error("network device {name:?} not found in the current network namespace")]
    NoSuchDevice {
        /// The name asked for.
        name: String,
    },
}

impl XdpError {
    /// A [`XdpError::Sys`] from `source`, with a hint picked by `hint`.
    pub(crate) fn sys(
        op: impl Into<String>,
        source: io::Error,
        hint: fn(i32) -> &'static str,
    ) -> XdpError {
        let h = hint(source.raw_os_error().unwrap_or(0));
        XdpError::Sys {
            op: op.into(),
            source,
            hint: if h.is_empty() {
                String::new()
            } else {
                format!("; {h}")
            },
        }
    }

    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XdpError::Sys { source, .. }
            | XdpError::Verifier { source, .. }
            | XdpError::ZeroCopyUnsupported { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Hints common to every privileged call.
pub(crate) fn hint_common(errno: i32) -> &'static str {
    match errno {
        libc::EPERM | libc::EACCES => {
            "needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF/CAP_SYS_ADMIN and CAP_IPC_LOCK)"
        }
        libc::ENOMEM => {
            "out of locked memory: raise RLIMIT_MEMLOCK (ulimit -l) or run with CAP_IPC_LOCK"
        }
        _ => "",
    }
}

/// Hints for attaching an XDP program to a device.
pub(crate) fn hint_attach(errno: i32) -> &'static str {
    match errno {
        libc::ERANGE => {
            "native XDP refuses this MTU (on veth: the peer's MTU must be below 3520); \
             lower the MTU or use generic (skb) mode"
        }
        libc::ENOSPC => {
            "the peer has more TX queues than this device has RX queues; \
             create the veth with matching queue counts"
        }
        libc::EBUSY | libc::EEXIST => {
            "another XDP program is already attached to this device; detach it first"
        }
        libc::EOPNOTSUPP => "the driver has no native XDP; use generic (skb) mode",
        libc::ENODEV => "no such device in this network namespace",
        e => hint_common(e),
    }
}

/// Hints for binding an AF_XDP socket.
pub(crate) fn hint_bind(errno: i32) -> &'static str {
    match errno {
        libc::EBUSY => {
            "this (device, queue) is already bound by another AF_XDP socket or still held \
             by an XSKMAP entry; remove it first"
        }
        libc::EINVAL => {
            "invalid queue id, or flags passed together with XDP_SHARED_UMEM \
             (a sharing socket inherits the mode)"
        }
        libc::ENODEV => "no such device in this network namespace",
        e => hint_common(e),
    }
}
