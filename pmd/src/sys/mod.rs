//! The system layer: every raw call and raw memory access of the drivers,
//! each wrapped once as a small safe type with its `SAFETY` reasoning here.
//!
//! | module | what it wraps |
//! |---|---|
//! | [`mmap`] | [`Mapping`]: a shared mapping of a file descriptor at an offset (socket rings, BARs) or anonymous memory, on `memmap2`, unmapped on drop |
//! | [`shared`] | [`Shared`]: a bounds-checked window into memory another agent (kernel, device) also accesses; the ownership-word rules (acquire/release) |
//! | [`ring`] | [`SpscRing`]: a producer/consumer index ring in shared memory (AF_XDP's four rings) |
//! | [`socket`] | [`Socket`]: `socket`/`setsockopt`/`getsockopt`/`bind`, the zero-length `sendto`/`recvfrom` kicks, `poll` |
//! | [`netdev`] | interface ioctls: index, name, flags, MTU, MAC, ethtool speed and channels |
//! | [`netns`] | [`NetNs`]: run a closure inside a network namespace (`setns`) |
//! | [`eventfd`] | [`EventFd`]: a counter fd for doorbells and interrupts |
//! | [`unix`] | [`SeqPacket`]: a Unix `SOCK_SEQPACKET` socket passing fds by `SCM_RIGHTS` (memif's control channel); [`unix::fd_kind`] |
//! | [`poll`] | [`wait_readable`]: block on a few fds with a nanosecond timeout (`ppoll`) |
//! | [`bpf`] | `bpf(2)`: map create/update/delete, program load, link create |
//! | [`fd`] | `pread`/`pwrite` of a whole buffer (device regions) |
//!
//! Driver modules above this layer are declared with `forbid(unsafe_code)`
//! (see `docs/architecture.md` for the few files that still need it).

pub mod bpf;
pub mod eventfd;
pub mod fd;
pub mod mmap;
pub mod netdev;
pub mod netns;
pub mod poll;
pub mod ring;
pub mod shared;
pub mod socket;
pub mod unix;

pub use eventfd::EventFd;
pub use mmap::Mapping;
pub use netns::NetNs;
pub use poll::wait_readable;
pub use ring::{RingLayout, SpscRing};
pub use shared::{Plain, Shared};
pub use socket::Socket;
pub use unix::{FdKind, SeqPacket};

use std::io;

/// `io::Error::new(kind, "{what}: {e}")`: an error with the call named in
/// its text (the errno is then only in the text; callers that match on the
/// errno use the plain error).
pub fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The last OS error for a negative return code (the errno kept).
#[inline]
pub(crate) fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
