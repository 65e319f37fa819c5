//! [`SeqPacket`]: a Unix-domain `SOCK_SEQPACKET` socket (filesystem or
//! abstract name) whose messages may carry file descriptors (`SCM_RIGHTS`),
//! the control channel of shared-memory ports (memif); [`fd_kind`] tells a
//! received descriptor's kind before it is trusted.
//!
//! Every message is sent and received whole (one `sendmsg`/`recvmsg`);
//! received descriptors come back as [`OwnedFd`]s, so any the caller does not
//! keep are closed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one received message may carry (more: `fds_truncated`).
pub const MAX_FDS: usize = 4;

/// A non-blocking, close-on-exec `SOCK_SEQPACKET` Unix socket.
#[derive(Debug)]
pub struct SeqPacket(OwnedFd);

impl AsRawFd for SeqPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// Bytes received (0: the peer closed the connection).
    pub len: usize,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// Descriptors attached (owned: dropped ones are closed).
    pub fds: Vec<OwnedFd>,
    /// More descriptors were attached than [`MAX_FDS`].
    pub fds_truncated: bool,
}

/// A `sockaddr_un` for `path`; abstract names get a leading NUL and the
/// exact length (as DPDK binds them), filesystem names the full struct.
fn sockaddr(path: &str, abstract_name: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data (an integer and a char array); all
    // zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_bytes();
    let room = sa.sun_path.len() - 1;
    if b.is_empty() || b.len() > room || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket name `{path}` must be 1..={room} bytes without NUL (sockaddr_un limit)"
            ),
        ));
    }
    let start = usize::from(abstract_name);
    for (i, &c) in b.iter().enumerate() {
        sa.sun_path[start + i] = c as libc::c_char;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let len = if abstract_name {
        base + 1 + b.len()
    } else {
        std::mem::size_of::<libc::sockaddr_un>()
    };
    Ok((sa, len as libc::socklen_t))
}

impl SeqPacket {
    fn new() -> io::Result<SeqPacket> {
        // SAFETY: plain socket(2); no memory is passed.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        super::check(fd.into())?;
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(SeqPacket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// A listening socket at `path` (abstract: in the abstract namespace).
    ///
    /// # Errors
    /// A bad name; the errno of bind/listen (`EADDRINUSE`: a name in use).
    pub fn listen(path: &str, abstract_name: bool) -> io::Result<SeqPacket> {
        let (sa, len) = sockaddr(path, abstract_name)?;
        let s = SeqPacket::new()?;
        // SAFETY: `sa` is a live sockaddr_un of at least `len` bytes; the
        // kernel only reads it.
        let rc = unsafe { libc::bind(s.as_raw_fd(), (&raw const sa).cast(), len) };
        super::check(rc.into())?;
        // SAFETY: listen(2) on a socket we own; no memory is passed.
        let rc = unsafe { libc::listen(s.as_raw_fd(), 4) };
        super::check(rc.into())?;
        Ok(s)
    }

    /// Connect to `path`. A Unix-domain connect completes at once or fails.
    ///
    /// # Errors
    /// A bad name; `ENOENT`/`ECONNREFUSED` while nobody listens, `EAGAIN`
    /// when the listener's backlog is full.
    pub fn connect(path: &str, abstract_name: bool) -> io::Result<SeqPacket> {
        let (sa, len) = sockaddr(path, abstract_name)?;
        let s = SeqPacket::new()?;
        // SAFETY: as in listen(): a live address the kernel only reads.
        let rc = unsafe { libc::connect(s.as_raw_fd(), (&raw const sa).cast(), len) };
        super::check(rc.into())?;
        Ok(s)
    }

    /// Accept one pending connection, if any.
    ///
    /// # Errors
    /// accept failures other than "nothing pending".
    pub fn accept(&self) -> io::Result<Option<SeqPacket>> {
        // SAFETY: accept4 with null address pointers is allowed (the peer's
        // address is not asked for).
        let fd = unsafe {
            libc::accept4(
                self.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        match super::check(fd.into()) {
            // SAFETY: a fresh descriptor that nobody else owns.
            Ok(_) => Ok(Some(SeqPacket(unsafe { OwnedFd::from_raw_fd(fd) }))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send `msg` as one message, with `pass` attached by `SCM_RIGHTS`.
    /// Never raises SIGPIPE.
    ///
    /// # Errors
    /// The errno of sendmsg (`EPIPE` once the peer has gone, `EAGAIN` when
    /// its queue is full), or a short send.
    pub fn send(&self, msg: &[u8], pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr().cast_mut().cast(),
            iov_len: msg.len(),
        };
        // u64 storage keeps the control buffer aligned for cmsghdr.
        let mut ctl = [0u64; 4];
        // SAFETY: msghdr is plain data (integers and pointers); all zero
        // (null pointers, zero lengths) is a valid, empty header.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &raw mut iov;
        mh.msg_iovlen = 1;
        if let Some(fd) = pass {
            // SAFETY: CMSG_SPACE is pure arithmetic.
            let space = unsafe { libc::CMSG_SPACE(4) } as usize;
            debug_assert!(space <= std::mem::size_of_val(&ctl));
            mh.msg_control = ctl.as_mut_ptr().cast();
            mh.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` zeroed, aligned bytes we
            // own, so CMSG_FIRSTHDR returns a header inside them with room
            // for its data (one int) after it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&raw const mh);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as _;
                libc::CMSG_DATA(c)
                    .cast::<RawFd>()
                    .write_unaligned(fd.as_raw_fd());
            }
        }
        // SAFETY: `mh` points at `iov` (describing `msg`, read only) and at
        // `ctl`, all live for the duration of the call.
        let n = unsafe { libc::sendmsg(self.as_raw_fd(), &raw const mh, libc::MSG_NOSIGNAL) };
        let n = super::check(n as libc::c_long)? as usize;
        if n != msg.len() {
            return Err(io::Error::other(format!(
                "short send: {n} of {} bytes",
                msg.len()
            )));
        }
        Ok(())
    }

    /// Receive one message into `buf` without blocking; descriptors passed
    /// with it are received close-on-exec.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is pending; other recvmsg failures.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut ctl = [0u64; 8];
        // SAFETY: as in send(): an empty header is valid.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &raw mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.as_mut_ptr().cast();
        // SAFETY: pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE((4 * MAX_FDS) as u32) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&ctl));
        mh.msg_controllen = space as _;
        // SAFETY: `mh` describes `buf` and `ctl`, writable and live for the
        // call; the kernel writes at most their lengths.
        let n = unsafe { libc::recvmsg(self.as_raw_fd(), &raw mut mh, libc::MSG_CMSG_CLOEXEC) };
        let n = super::check(n as libc::c_long)? as usize;
        let mut fds = Vec::new();
        // SAFETY: the kernel filled msg_control with well-formed cmsg headers
        // up to msg_controllen (within `ctl`); CMSG_FIRSTHDR/NXTHDR walk
        // exactly those, and each SCM_RIGHTS payload is cmsg_len minus the
        // header of ints, read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                    for i in 0..bytes / 4 {
                        let fd = data.add(4 * i).cast::<RawFd>().read_unaligned();
                        // Each passed fd is new in this process and ours to close.
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&raw const mh, c);
            }
        }
        Ok(Received {
            len: n,
            truncated: mh.msg_flags & libc::MSG_TRUNC != 0,
            fds,
            fds_truncated: mh.msg_flags & libc::MSG_CTRUNC != 0,
        })
    }
}

/// What a (received) descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file (memfd, hugetlbfs, tmpfs) of this many bytes.
    File(u64),
    /// An eventfd.
    EventFd,
    /// Anything else (socket, pipe, device, directory, …).
    Other,
}

/// Classify `fd` with `fstat` and its `/proc/self/fd` link.
pub fn fd_kind(fd: BorrowedFd<'_>) -> FdKind {
    // SAFETY: stat is plain data (integers); all zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (borrowed) and `st` a live, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
        return FdKind::Other;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        return FdKind::File(st.st_size as u64);
    }
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(p) if p.as_os_str() == "anon_inode:[eventfd]" => FdKind::EventFd,
        _ => FdKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::EventFd;

    fn pair(name: &str) -> (SeqPacket, SeqPacket, SeqPacket) {
        let l = SeqPacket::listen(name, true).unwrap();
        let c = SeqPacket::connect(name, true).unwrap();
        let s = l.accept().unwrap().expect("a pending connection");
        (l, c, s)
    }

    #[test]
    fn messages_keep_their_boundaries_and_carry_descriptors() {
        let (_l, c, s) = pair("xfwd-sys-unix-test-msgs");
        let mut buf = [0u8; 64];
        assert_eq!(
            s.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let e = EventFd::new(true).unwrap();
        c.send(b"one", Some(e.as_fd())).unwrap();
        c.send(b"second", None).unwrap();
        let r = s.recv(&mut buf).unwrap();
        assert_eq!(
            (&buf[..r.len], r.truncated, r.fds_truncated),
            (&b"one"[..], false, false)
        );
        assert_eq!(r.fds.len(), 1);
        assert_eq!(fd_kind(r.fds[0].as_fd()), FdKind::EventFd);
        // The received fd is the same counter.
        e.signal(3).unwrap();
        assert_eq!(
            EventFd::from_owned(r.fds.into_iter().next().unwrap())
                .take()
                .unwrap(),
            3
        );
        let r = s.recv(&mut buf[..4]).unwrap();
        assert!(r.truncated && r.fds.is_empty(), "{r:?}");
        drop(c);
        assert_eq!(s.recv(&mut buf).unwrap().len, 0, "EOF once the peer closed");
        assert!(s.send(b"x", None).is_err(), "EPIPE, not SIGPIPE");
    }

    #[test]
    fn names_are_checked_and_kinds_told_apart() {
        assert!(SeqPacket::listen("", true).is_err());
        assert!(SeqPacket::listen(&"x".repeat(200), false).is_err());
        assert!(SeqPacket::connect("xfwd-sys-unix-test-nobody", true).is_err());
        let (l, _c, _s) = pair("xfwd-sys-unix-test-kinds");
        assert!(l.accept().unwrap().is_none(), "nothing else pending");
        assert_eq!(fd_kind(l.as_fd()), FdKind::Other);
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        assert_eq!(fd_kind(f.as_fd()), FdKind::File(4096));
    }
}
