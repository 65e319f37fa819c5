//! AF_PACKET sockets and recognisable test frames.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const SO_RCVBUFFORCE: libc::c_int = 33;

/// The EtherType of test frames (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;

/// A frame `dst src 0x88b5 seq(be32) pattern…` of `len` bytes (≥ 18).
pub fn test_frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 18);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((18..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8));
    f
}

/// The sequence number of a test frame, or `None` for other traffic.
pub fn test_seq(frame: &[u8]) -> Option<u32> {
    if frame.len() >= 18 && frame[12..14] == TEST_ETHERTYPE.to_be_bytes() {
        Some(u32::from_be_bytes(frame[14..18].try_into().ok()?))
    } else {
        None
    }
}

/// A raw AF_PACKET socket bound to one device and the test EtherType,
/// created in the calling thread's network namespace.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Bind to device `ifindex`.
    pub fn bind(ifindex: u32) -> PacketSocket {
        let proto = TEST_ETHERTYPE.to_be();
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            )
        };
        assert!(
            raw >= 0,
            "socket(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = ifindex as i32;
        // SAFETY: valid sockaddr_ll of the length passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        // Room for a whole test burst before anyone reads (root may force it).
        let rcvbuf: libc::c_int = 8 << 20;
        // SAFETY: valid int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_RCVBUFFORCE,
                &rcvbuf as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: valid timeval option.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(r, 0);
        PacketSocket { fd }
    }

    /// Send one whole frame (retrying briefly when the queue is full).
    pub fn send(&self, frame: &[u8]) {
        for _ in 0..1000 {
            // SAFETY: `frame` is a live buffer of the length passed.
            let r =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if r == frame.len() as isize {
                return;
            }
            let e = std::io::Error::last_os_error();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)),
                "AF_PACKET send: {e}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("AF_PACKET send kept failing with a full queue");
    }

    /// Receive test frames until `count` arrived or `timeout` passed.
    pub fn recv_frames(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16384];
        while out.len() < count && Instant::now() < deadline {
            // SAFETY: `buf` is a live writable buffer of the length passed.
            let r =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r > 0 && test_seq(&buf[..r as usize]).is_some() {
                out.push(buf[..r as usize].to_vec());
            }
        }
        out
    }
}
