//! [`Socket`]: an owned socket descriptor and the calls the drivers make on
//! it: options in and out, `bind`, the zero-length `sendto`/`recvfrom` that
//! kick a mapped ring, and `poll`. Option values and addresses are
//! [`Plain`] types passed by pointer and length, which is all the kernel reads
//! or writes.

use super::check;
use super::shared::Plain;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Socket addresses [`Socket::bind`] accepts.
pub trait SockAddr: Plain {}
impl SockAddr for libc::sockaddr_ll {}
impl SockAddr for libc::sockaddr_xdp {}

/// An owned socket.
#[derive(Debug)]
pub struct Socket(OwnedFd);

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn len_of<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

impl Socket {
    /// `socket(domain, ty | SOCK_CLOEXEC, protocol)`.
    ///
    /// # Errors
    /// The errno of `socket(2)` (EPERM without the capability, EAFNOSUPPORT).
    pub fn new(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain socket(2); no memory is passed.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
        check(fd.into())?;
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `setsockopt(level, opt, &v, sizeof v)`.
    ///
    /// # Errors
    /// The errno of `setsockopt(2)`.
    pub fn set_opt<T: Plain>(&self, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` is a live value of the size passed; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                level,
                opt,
                (v as *const T).cast(),
                len_of::<T>(),
            )
        };
        check(rc.into()).map(drop)
    }

    /// `getsockopt(level, opt, &mut v, &len)`; returns the length the kernel wrote.
    ///
    /// # Errors
    /// The errno of `getsockopt(2)`.
    pub fn get_opt<T: Plain>(
        &self,
        level: libc::c_int,
        opt: libc::c_int,
        v: &mut T,
    ) -> io::Result<usize> {
        let mut len = len_of::<T>();
        // SAFETY: `v` is a live, writable T and `len` its size; the kernel
        // writes at most `len` bytes, any pattern of which is a valid T.
        let rc = unsafe {
            libc::getsockopt(self.as_raw_fd(), level, opt, (v as *mut T).cast(), &mut len)
        };
        check(rc.into())?;
        Ok(len as usize)
    }

    /// `bind(&addr, sizeof addr)`.
    ///
    /// # Errors
    /// The errno of `bind(2)`.
    pub fn bind<A: SockAddr>(&self, addr: &A) -> io::Result<()> {
        // SAFETY: a live socket address of the length passed; the kernel only reads it.
        let rc = unsafe { libc::bind(self.as_raw_fd(), (addr as *const A).cast(), len_of::<A>()) };
        check(rc.into()).map(drop)
    }

    /// A zero-length `sendto(MSG_DONTWAIT)`: tells the kernel to transmit
    /// what waits in a mapped TX ring. Never blocks.
    ///
    /// # Errors
    /// The plain errno (EAGAIN/ENOBUFS: busy, try again; ENXIO, ENETDOWN).
    #[inline]
    pub fn send_kick(&self) -> io::Result<()> {
        // SAFETY: no buffer is passed; the kernel reads the mapped ring.
        let rc = unsafe {
            libc::sendto(
                self.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        check(rc as libc::c_long).map(drop)
    }

    /// A zero-length `recvfrom(MSG_DONTWAIT)`: makes the kernel process a
    /// mapped RX/fill ring. Never blocks.
    ///
    /// # Errors
    /// The plain errno (EAGAIN: nothing to do).
    #[inline]
    pub fn recv_kick(&self) -> io::Result<()> {
        // SAFETY: no buffer is passed; null address pointers are allowed.
        let rc = unsafe {
            libc::recvfrom(
                self.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        check(rc as libc::c_long).map(drop)
    }

    /// Wait up to `timeout` until the socket is readable; false on timeout.
    ///
    /// # Errors
    /// The errno of `poll(2)` (EINTR included).
    pub fn poll_in(&self, timeout: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        check(r.into())?;
        Ok(r > 0 && p.revents & libc::POLLIN != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_on_a_udp_socket() {
        let s = Socket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let v: libc::c_int = 1;
        s.set_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &v).unwrap();
        let mut got: libc::c_int = 0;
        let n = s
            .get_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &mut got)
            .unwrap();
        assert_eq!((n, got), (4, 1));
        assert!(!s.poll_in(Duration::ZERO).unwrap());
        let e = s.set_opt(libc::SOL_SOCKET, 9999, &v).unwrap_err();
        assert!(e.raw_os_error().is_some(), "the errno is kept");
    }
}
