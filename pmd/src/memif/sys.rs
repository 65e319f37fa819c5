//! Everything `unsafe` the memif port needs, in one place: the
//! `SOCK_SEQPACKET` control socket (abstract names too), file descriptors
//! passed with `SCM_RIGHTS`, eventfds, `mmap` of a peer's region, and the
//! accessors of the shared ring (header atomics, descriptors, buffer copies).
//!
//! Shared memory is written by another process at any time. Nothing here
//! hands out a Rust reference into it except the ring's head/tail atomics
//! (which are atomics on both sides); descriptors are read and written with
//! volatile copies and packet bytes with `copy_nonoverlapping`, after a
//! bounds check against the region's length.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU16;

use super::proto::{DESC_SIZE, MSG_SIZE, RING_HDR};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A `sockaddr_un` for `path`; abstract names get a leading NUL and the
/// exact length (as DPDK 22.11 binds them).
fn sockaddr(path: &str, abstract_name: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
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

fn seqpacket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening (non-blocking) socket at `path`.
///
/// # Errors
/// socket/bind/listen failures (`EADDRINUSE`: a live listener is there).
pub fn listen(path: &str, abstract_name: bool) -> io::Result<OwnedFd> {
    let (sa, len) = sockaddr(path, abstract_name)?;
    let fd = seqpacket()?;
    // SAFETY: sa is a valid sockaddr_un of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) })?;
    // SAFETY: listen on a bound socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 4) })?;
    Ok(fd)
}

/// Connect to `path` (blocking connect, then non-blocking I/O).
///
/// # Errors
/// `ENOENT`/`ECONNREFUSED` while nobody listens, and other failures.
pub fn connect(path: &str, abstract_name: bool) -> io::Result<OwnedFd> {
    let (sa, len) = sockaddr(path, abstract_name)?;
    let fd = seqpacket()?;
    // SAFETY: sa is a valid sockaddr_un of `len` bytes. A Unix-domain
    // connect completes at once or fails (EAGAIN when the backlog is full).
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) })?;
    Ok(fd)
}

/// Accept one pending connection, if any.
///
/// # Errors
/// accept failures other than "nothing pending".
pub fn accept(listener: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    // SAFETY: accept4 with null address pointers is allowed.
    let r = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(r) }))
}

const MAX_FDS: usize = 4;

/// Send one message, with `pass` attached by `SCM_RIGHTS`.
///
/// # Errors
/// sendmsg failures (`EPIPE` once the peer has gone).
pub fn send(sock: &OwnedFd, msg: &[u8; MSG_SIZE], pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: MSG_SIZE,
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut ctl = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &raw mut iov;
    mh.msg_iovlen = 1;
    if let Some(fd) = pass {
        // SAFETY: CMSG_SPACE/LEN are pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(4) } as usize;
        mh.msg_control = ctl.as_mut_ptr().cast();
        mh.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes, so
        // CMSG_FIRSTHDR returns a header inside them with room for one int.
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
    // SAFETY: mh describes live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &raw const mh, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != MSG_SIZE {
        return Err(io::Error::other(format!(
            "short send: {n} of {MSG_SIZE} bytes"
        )));
    }
    Ok(())
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
    /// More descriptors were attached than we take.
    pub fds_truncated: bool,
}

/// Receive one message into `buf` without blocking.
///
/// # Errors
/// `WouldBlock` when nothing is pending; other recvmsg failures.
pub fn recv(sock: &OwnedFd, buf: &mut [u8; 2 * MSG_SIZE]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut ctl = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &raw mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.as_mut_ptr().cast();
    // SAFETY: pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE((4 * MAX_FDS) as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&ctl));
    mh.msg_controllen = space as _;
    // SAFETY: mh describes live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut mh, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed cmsg headers
    // up to msg_controllen; CMSG_FIRSTHDR/NXTHDR walk exactly those.
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
        len: n as usize,
        truncated: mh.msg_flags & libc::MSG_TRUNC != 0,
        fds,
        fds_truncated: mh.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Wait until one of `fds` is readable (or hung up), at most `timeout_ms`.
/// Returns one flag per fd.
///
/// # Errors
/// poll failures other than EINTR (which reports nothing ready).
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of p.len() pollfds.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

/// A non-blocking eventfd (the ring's interrupt line).
///
/// # Errors
/// eventfd failure.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd(2).
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kick the peer: add 1 to the eventfd (a full counter is as good as a kick).
pub fn eventfd_kick(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64.
    let _ = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

/// Clear an eventfd's counter (non-blocking).
pub fn eventfd_drain(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64.
    let _ = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

/// What a received descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file (memfd, hugetlbfs, tmpfs) of this many bytes.
    File(u64),
    /// An eventfd.
    EventFd,
    /// Anything else (socket, pipe, device, directory, …).
    Other,
}

/// Classify `fd` with fstat and its /proc link.
pub fn fd_kind(fd: BorrowedFd<'_>) -> FdKind {
    // SAFETY: stat is plain data; fstat fills it for a valid fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open (borrowed) and st is writable.
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

/// A peer's region mapped shared into this process; unmapped on drop.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value; access to the bytes goes
// through `Shm`, which copies (never references) them.
unsafe impl Send for SharedMap {}
// SAFETY: as above; &SharedMap only exposes the address.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map `len` bytes of `fd` read-write, shared. The caller has checked
    /// that the file is at least `len` bytes (no SIGBUS past its end).
    ///
    /// # Errors
    /// mmap failure.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        }
        // SAFETY: a fresh shared mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            ptr: NonNull::new(p.cast()).expect("mmap never returns NULL on success"),
            len,
        })
    }

    /// The view used by the data path.
    pub fn shm(&self) -> Shm {
        Shm {
            base: self.ptr,
            len: self.len,
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped; every Shm view of it
        // lives inside the connection that owns this map and is gone first.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A view of one region (its owner keeps it mapped). Every access is
/// bounds-checked against `len`.
#[derive(Debug, Clone, Copy)]
pub struct Shm {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a view is an address and a length; its users keep the owner alive.
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    /// A view of memory this process owns (`len` bytes at `base`), which
    /// must stay mapped while the view is used.
    pub fn of_own(base: NonNull<u8>, len: usize) -> Shm {
        Shm { base, len }
    }

    /// Length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (regions are never empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// `off..off+len` lies inside the region.
    #[inline]
    pub fn contains(&self, off: u32, len: usize) -> bool {
        self.check(off, len)
    }

    #[inline]
    fn check(&self, off: u32, len: usize) -> bool {
        (off as usize)
            .checked_add(len)
            .is_some_and(|end| end <= self.len)
    }

    /// Copy `dst.len()` bytes from offset `off`; false (nothing copied)
    /// when the range leaves the region.
    #[inline]
    pub fn read(&self, off: u32, dst: &mut [u8]) -> bool {
        if !self.check(off, dst.len()) {
            return false;
        }
        // SAFETY: off..off+len lies inside the mapped region (checked); the
        // peer may write the bytes concurrently, which can only give us
        // garbage packet bytes, never an out-of-bounds access.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(off as usize),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        true
    }

    /// Copy `src` to offset `off`; false (nothing copied) when the range
    /// leaves the region.
    #[inline]
    pub fn write(&self, off: u32, src: &[u8]) -> bool {
        if !self.check(off, src.len()) {
            return false;
        }
        // SAFETY: as in read(); the region is mapped writable.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.as_ptr().add(off as usize),
                src.len(),
            );
        }
        true
    }

    /// The ring of `1 << log2` descriptors at `off`, if it fits and is
    /// 8-byte aligned.
    pub fn ring(&self, off: u32, log2: u8) -> Option<Ring> {
        if log2 > 15
            || !off.is_multiple_of(8)
            || !self.check(off, RING_HDR + DESC_SIZE * (1usize << log2))
        {
            return None;
        }
        Some(Ring {
            // SAFETY: off is inside the region (checked just above).
            hdr: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off as usize)) },
            mask: ((1u32 << log2) - 1) as u16,
        })
    }
}

/// A memif descriptor (16 bytes, the packed C layout has no padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// [`super::proto::DESC_FLAG_NEXT`].
    pub flags: u16,
    /// Region of the buffer.
    pub region: u16,
    /// Bytes (buffer room when offered, packet bytes when filled).
    pub length: u32,
    /// Offset of the buffer in its region.
    pub offset: u32,
    /// Unused here.
    pub metadata: u32,
}

/// Accessor of a ring header and its descriptors in shared memory.
#[derive(Debug, Clone, Copy)]
pub struct Ring {
    hdr: NonNull<u8>,
    mask: u16,
}

// SAFETY: an address into a region its users keep mapped.
unsafe impl Send for Ring {}
// SAFETY: shared access goes through atomics (head/tail/flags) or volatile
// copies; the ring protocol gives each index one writer.
unsafe impl Sync for Ring {}

impl Ring {
    /// Address of the header (for offsets in our own region).
    pub fn addr(&self) -> usize {
        self.hdr.as_ptr() as usize
    }

    /// Slots − 1.
    #[inline]
    pub fn mask(&self) -> u16 {
        self.mask
    }

    /// Slots.
    #[inline]
    pub fn size(&self) -> u32 {
        u32::from(self.mask) + 1
    }

    #[inline]
    fn atomic(&self, off: usize) -> &AtomicU16 {
        // SAFETY: off is 4 (flags), 6 (head) or 64 (tail): inside the
        // 128-byte header, 2-byte aligned (the ring is 8-byte aligned). Both
        // processes access these fields only atomically.
        unsafe { AtomicU16::from_ptr(self.hdr.as_ptr().add(off).cast()) }
    }

    /// The ring's flags word.
    #[inline]
    pub fn flags(&self) -> &AtomicU16 {
        self.atomic(4)
    }

    /// Head index.
    #[inline]
    pub fn head(&self) -> &AtomicU16 {
        self.atomic(6)
    }

    /// Tail index.
    #[inline]
    pub fn tail(&self) -> &AtomicU16 {
        self.atomic(64)
    }

    /// Read the cookie.
    pub fn cookie(&self) -> u32 {
        // SAFETY: the first 4 bytes of the header, 8-byte aligned.
        unsafe { self.hdr.as_ptr().cast::<u32>().read_volatile() }
    }

    /// Write the cookie.
    pub fn set_cookie(&self, c: u32) {
        // SAFETY: as in cookie().
        unsafe { self.hdr.as_ptr().cast::<u32>().write_volatile(c) }
    }

    #[inline]
    fn desc_ptr(&self, slot: u16) -> *mut Desc {
        let i = usize::from(slot & self.mask);
        // SAFETY: i < size, and the ring was checked to hold size
        // descriptors after the header; 16-byte slots keep 8-byte alignment.
        unsafe { self.hdr.as_ptr().add(RING_HDR + DESC_SIZE * i).cast() }
    }

    /// A copy of descriptor `slot` (masked).
    #[inline]
    pub fn desc(&self, slot: u16) -> Desc {
        // SAFETY: desc_ptr is in bounds and aligned; a volatile copy.
        unsafe { self.desc_ptr(slot).read_volatile() }
    }

    /// Write descriptor `slot` (masked).
    #[inline]
    pub fn set_desc(&self, slot: u16, d: Desc) {
        // SAFETY: as in desc().
        unsafe { self.desc_ptr(slot).write_volatile(d) }
    }

    /// Write the flags and length of descriptor `slot`, leaving the buffer
    /// address the peer gave (server TX).
    #[inline]
    pub fn set_desc_flags_len(&self, slot: u16, flags: u16, len: u32) {
        let p = self.desc_ptr(slot);
        // SAFETY: as in desc(); both are fields of the descriptor.
        unsafe {
            (&raw mut (*p).flags).write_volatile(flags);
            (&raw mut (*p).length).write_volatile(len);
        }
    }

    /// Write only the length of descriptor `slot` (RX refill).
    #[inline]
    pub fn set_desc_len(&self, slot: u16, len: u32) {
        // SAFETY: as in desc(); `length` is a field of the descriptor.
        unsafe { (&raw mut (*self.desc_ptr(slot)).length).write_volatile(len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_accessors_stay_in_bounds() {
        let mut buf = vec![0u64; (RING_HDR + 16 * DESC_SIZE) / 8 + 8];
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        let shm = Shm::of_own(base, RING_HDR + 16 * DESC_SIZE);
        assert!(shm.ring(0, 5).is_none(), "32 slots do not fit");
        assert!(shm.ring(4, 4).is_none(), "misaligned");
        let r = shm.ring(0, 4).unwrap();
        r.set_cookie(super::super::proto::COOKIE);
        r.head().store(3, std::sync::atomic::Ordering::Relaxed);
        r.tail().store(2, std::sync::atomic::Ordering::Relaxed);
        let d = Desc {
            flags: 1,
            region: 2,
            length: 3,
            offset: 4,
            metadata: 5,
        };
        r.set_desc(17, d); // masked to slot 1
        assert_eq!(r.desc(1), d);
        r.set_desc_len(1, 99);
        assert_eq!(r.desc(1).length, 99);
        assert!(!shm.write(shm.len() as u32 - 1, &[1, 2]));
        assert!(!shm.read(u32::MAX, &mut [0u8; 2]));
        assert!(shm.write(200, &[7, 8]));
        let mut out = [0u8; 2];
        assert!(shm.read(200, &mut out));
        assert_eq!(out, [7, 8]);
        let raw = buf.as_ptr().cast::<u8>();
        // SAFETY: reading our own live buffer.
        let head = unsafe { raw.add(6).cast::<u16>().read() };
        assert_eq!(head, 3);
        drop(buf);
    }

    #[test]
    fn fds_are_classified() {
        let e = eventfd().unwrap();
        use std::os::fd::AsFd;
        assert_eq!(fd_kind(e.as_fd()), FdKind::EventFd);
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        assert_eq!(fd_kind(f.as_fd()), FdKind::File(4096));
        let l = listen("xfwd-memif-test-classify", true).unwrap();
        assert_eq!(fd_kind(l.as_fd()), FdKind::Other);
    }
}
