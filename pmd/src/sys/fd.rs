//! Whole-buffer positional reads and writes on a descriptor (`pread` /
//! `pwrite`: vfio-pci config space and other device regions).

use std::io;
use std::os::fd::AsRawFd;

fn short(n: isize, want: usize) -> io::Result<()> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != want {
        return Err(io::Error::other(format!(
            "short transfer: {n} of {want} bytes"
        )));
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes at `pos`.
///
/// # Errors
/// The `pread` error, or a short read.
pub fn pread_exact(fd: &impl AsRawFd, buf: &mut [u8], pos: libc::off_t) -> io::Result<()> {
    // SAFETY: buf is valid for buf.len() writable bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), pos) };
    short(n, buf.len())
}

/// Write all of `buf` at `pos`.
///
/// # Errors
/// The `pwrite` error, or a short write.
pub fn pwrite_all(fd: &impl AsRawFd, buf: &[u8], pos: libc::off_t) -> io::Result<()> {
    // SAFETY: buf is valid for buf.len() readable bytes.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), pos) };
    short(n, buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_round_trip_and_short_reads() {
        let f = tempfile::tempfile().unwrap();
        pwrite_all(&f, b"hello", 3).unwrap();
        let mut b = [0u8; 5];
        pread_exact(&f, &mut b, 3).unwrap();
        assert_eq!(&b, b"hello");
        let mut big = [0u8; 16];
        assert!(pread_exact(&f, &mut big, 0).is_err());
    }
}
