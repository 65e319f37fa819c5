//! [`NetNs`]: the network namespace of the thread that created it (an open
//! `/proc/thread-self/ns/net`), so sockets made later from another thread
//! land next to the interface.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// A network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    ino: u64,
}

fn current_ns() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

impl NetNs {
    /// The calling thread's namespace.
    ///
    /// # Errors
    /// `/proc` is not mounted.
    pub fn current() -> io::Result<NetNs> {
        let file = current_ns()?;
        let ino = file.metadata()?.ino();
        Ok(NetNs { file, ino })
    }

    /// Run `f` inside this namespace: on the calling thread when it is
    /// already there, else on a short-lived thread that enters it first.
    ///
    /// # Errors
    /// `setns(2)` refused (needs CAP_SYS_ADMIN), or `f`'s error.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> io::Result<R> + Send) -> io::Result<R> {
        let here = current_ns().and_then(|f| f.metadata()).map(|m| m.ino());
        if here.ok() == Some(self.ino) {
            return f();
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace fd changes only this
                // short-lived thread, which ends right after `f`.
                let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
                super::check(rc.into()).map_err(|e| {
                    super::context(e, "setns into the interface's network namespace")
                })?;
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_in_the_current_namespace_needs_no_setns() {
        let ns = NetNs::current().unwrap();
        assert_eq!(ns.run(|| Ok(7)).unwrap(), 7);
    }
}
