//! [`EventFd`]: a kernel counter behind a file descriptor (`eventfd(2)`),
//! the doorbell/interrupt primitive of shared-memory ports (memif) and of
//! VFIO interrupts.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An owned eventfd (close-on-exec, optionally non-blocking).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl EventFd {
    /// A new counter starting at 0.
    ///
    /// # Errors
    /// The errno of `eventfd(2)` (EMFILE, ENFILE).
    pub fn new(nonblocking: bool) -> io::Result<EventFd> {
        let flags = libc::EFD_CLOEXEC | if nonblocking { libc::EFD_NONBLOCK } else { 0 };
        // SAFETY: plain eventfd(2); no memory is passed.
        let fd = unsafe { libc::eventfd(0, flags) };
        super::check(fd.into())?;
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adopt an eventfd received from a peer (e.g. over `SCM_RIGHTS`).
    pub fn from_owned(fd: OwnedFd) -> EventFd {
        EventFd(fd)
    }

    /// Add `n` to the counter (wakes a waiter).
    ///
    /// # Errors
    /// EAGAIN when the counter would overflow on a non-blocking fd.
    pub fn signal(&self, n: u64) -> io::Result<()> {
        let b = n.to_ne_bytes();
        // SAFETY: writes exactly the 8 bytes of `b`, which outlives the call.
        let r = unsafe { libc::write(self.as_raw_fd(), b.as_ptr().cast(), b.len()) };
        super::check(r as libc::c_long).map(drop)
    }

    /// Read and reset the counter; `Ok(0)` when it was 0 on a non-blocking fd.
    ///
    /// # Errors
    /// Errors other than EAGAIN.
    pub fn take(&self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        // SAFETY: reads at most the 8 bytes of `b`, which outlives the call.
        let r = unsafe { libc::read(self.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
        match super::check(r as libc::c_long) {
            Ok(_) => Ok(u64::from_ne_bytes(b)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_add_up_and_reading_resets() {
        let e = EventFd::new(true).unwrap();
        assert_eq!(e.take().unwrap(), 0);
        e.signal(2).unwrap();
        e.signal(3).unwrap();
        assert_eq!(e.take().unwrap(), 5);
        assert_eq!(e.take().unwrap(), 0);
    }
}
