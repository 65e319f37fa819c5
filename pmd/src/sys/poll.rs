//! [`wait_readable`]: block until one of a few descriptors is readable, with
//! a nanosecond timeout (`ppoll(2)`): the wait of an idle lcore on its
//! queues' interrupt eventfds and of control threads on their sockets.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Most descriptors one wait takes (the `pollfd` array lives on the stack).
pub const MAX_WAIT_FDS: usize = 64;

/// Wait at most `timeout` until one of `fds` is readable (or hung up, or
/// in error); `ready[i]` says which (it must be as long as `fds`). Returns
/// how many are ready: 0 on timeout or when a signal interrupted the wait.
/// A descriptor that is not open reports ready (`POLLNVAL`), so a caller
/// never sleeps on a dead fd by mistake.
///
/// # Errors
/// More than [`MAX_WAIT_FDS`] descriptors, `ready` shorter than `fds`, or
/// the errno of `ppoll` other than EINTR.
pub fn wait_readable(fds: &[RawFd], ready: &mut [bool], timeout: Duration) -> io::Result<usize> {
    if fds.len() > MAX_WAIT_FDS || ready.len() < fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "wait on {} fds with {} result slots (at most {MAX_WAIT_FDS})",
                fds.len(),
                ready.len()
            ),
        ));
    }
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_WAIT_FDS];
    for (slot, &fd) in p.iter_mut().zip(fds) {
        slot.fd = fd;
        slot.events = libc::POLLIN;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `p` holds at least fds.len() valid pollfds the kernel writes
    // `revents` of; `ts` is a live timespec it only reads; no signal mask.
    let r = unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &raw const ts,
            std::ptr::null(),
        )
    };
    match super::check(r.into()) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            ready[..fds.len()].fill(false);
            return Ok(0);
        }
        Err(e) => return Err(e),
    }
    let mut n = 0;
    for (r, q) in ready.iter_mut().zip(&p[..fds.len()]) {
        *r = q.revents != 0;
        n += usize::from(*r);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::EventFd;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn waits_for_the_signalled_fd_or_the_timeout() {
        let (a, b) = (EventFd::new(true).unwrap(), EventFd::new(true).unwrap());
        let fds = [a.as_raw_fd(), b.as_raw_fd()];
        let mut ready = [false; 2];
        let t = Instant::now();
        assert_eq!(
            wait_readable(&fds, &mut ready, Duration::from_millis(20)).unwrap(),
            0
        );
        assert!(
            t.elapsed() >= Duration::from_millis(19),
            "the timeout is kept"
        );
        b.signal(1).unwrap();
        assert_eq!(
            wait_readable(&fds, &mut ready, Duration::from_secs(5)).unwrap(),
            1
        );
        assert_eq!(ready, [false, true]);
        b.take().unwrap();
        // A signal from another thread wakes the waiter.
        let a = std::sync::Arc::new(a);
        let waker = std::thread::spawn({
            let a = a.clone();
            move || {
                std::thread::sleep(Duration::from_millis(20));
                a.signal(1).unwrap();
            }
        });
        let fds = [a.as_raw_fd(), b.as_raw_fd()];
        assert_eq!(
            wait_readable(&fds, &mut ready, Duration::from_secs(10)).unwrap(),
            1
        );
        assert_eq!(ready, [true, false]);
        waker.join().unwrap();
        assert!(wait_readable(&[0; 65], &mut [false; 65], Duration::ZERO).is_err());
    }
}
