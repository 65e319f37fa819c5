//! Rooted access to sysfs, procfs and /dev.
//!
//! Every path the host tools touch is a *host path* such as `/sys/bus/pci/drivers_probe`; a
//! [`Sysfs`] resolves it under its root directory (`/` on a real host, a temporary tree in tests).
//! Reads are provided methods so every implementation reads the same way; the required methods
//! are the ones that change the host (writes, chown, mkdir), which [`RealSysfs`] performs and
//! journals, or only journals in dry-run mode. A test double wraps [`RealSysfs`] and adds what the
//! kernel would do in reaction to a write (move a device's `driver` link after `drivers_probe`).

use std::cell::RefCell;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::HostError;

/// One change made (or, in dry-run mode, planned) on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    /// `data` written to the file `path`.
    Write {
        /// Resolved path (root included).
        path: PathBuf,
        /// Bytes written, as text.
        data: String,
    },
    /// Ownership change of `path`.
    Chown {
        /// Resolved path (root included).
        path: PathBuf,
        /// New owner, if changed.
        uid: Option<u32>,
        /// New group, if changed.
        gid: Option<u32>,
    },
    /// Directory created (with parents).
    Mkdir {
        /// Resolved path (root included).
        path: PathBuf,
    },
    /// hugetlbfs mounted.
    Mount {
        /// Resolved mount point.
        path: PathBuf,
        /// Mount options passed to the kernel.
        options: String,
    },
    /// Filesystem unmounted.
    Unmount {
        /// Resolved mount point.
        path: PathBuf,
    },
    /// File removed (a hugetlbfs file a dead process left behind).
    Remove {
        /// Resolved path.
        path: PathBuf,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write { path, data } => {
                write!(f, "write {data:?} > {}", path.display())
            }
            Action::Chown { path, uid, gid } => {
                let id = |v: &Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
                write!(f, "chown {}:{} {}", id(uid), id(gid), path.display())
            }
            Action::Mkdir { path } => write!(f, "mkdir -p {}", path.display()),
            Action::Mount { path, options } => {
                write!(
                    f,
                    "mount -t hugetlbfs -o {options} nodev {}",
                    path.display()
                )
            }
            Action::Unmount { path } => write!(f, "umount {}", path.display()),
            Action::Remove { path } => write!(f, "rm {}", path.display()),
        }
    }
}

/// Access to the host's pseudo filesystems under a root directory.
pub trait Sysfs: fmt::Debug {
    /// Directory that host paths are resolved under (`/` on a real host).
    fn root(&self) -> &Path;

    /// True when changes are only journaled, not made.
    fn dry_run(&self) -> bool;

    /// Write `data` to the existing file at host path `path` (never creates it: sysfs attributes
    /// exist or the operation is not supported).
    ///
    /// # Errors
    /// [`HostError::Io`] with the resolved path when the open or the write fails (the kernel
    /// reports a failed bind as a write error).
    fn write(&self, path: &str, data: &str) -> Result<(), HostError>;

    /// Change owner and/or group of host path `path`.
    ///
    /// # Errors
    /// [`HostError::Io`] when chown fails.
    fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), HostError>;

    /// Create directory `path` and its parents.
    ///
    /// # Errors
    /// [`HostError::Io`] when the directory cannot be created.
    fn create_dir_all(&self, path: &str) -> Result<(), HostError>;

    /// Remove the file at host path `path`.
    ///
    /// # Errors
    /// [`HostError::Io`] when it cannot be removed.
    fn remove_file(&self, path: &str) -> Result<(), HostError>;

    /// Record an action performed outside this trait (a mount) in the journal.
    fn record(&self, action: Action);

    /// Everything changed (or planned) so far, in order.
    fn journal(&self) -> Vec<Action>;

    /// Resolve a host path under the root.
    fn resolve(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// True when the host path exists (symlinks are followed).
    fn exists(&self, path: &str) -> bool {
        self.resolve(path).exists()
    }

    /// Read a whole file.
    ///
    /// # Errors
    /// [`HostError::Io`] with the resolved path.
    fn read(&self, path: &str) -> Result<String, HostError> {
        let p = self.resolve(path);
        fs::read_to_string(&p).map_err(|e| HostError::io("read", &p, e))
    }

    /// Read a file and trim it; `None` when it does not exist or cannot be read.
    fn read_opt(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.resolve(path))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Names in a directory, sorted; empty when the directory does not exist.
    fn list(&self, path: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.resolve(path))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Last component of a symlink's target (`driver` → `vfio-pci`), `None` if not a link.
    fn link_name(&self, path: &str) -> Option<String> {
        fs::read_link(self.resolve(path))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }
}

/// The real implementation: performs (or in dry-run mode only journals) every change.
#[derive(Debug)]
pub struct RealSysfs {
    root: PathBuf,
    dry_run: bool,
    journal: RefCell<Vec<Action>>,
}

impl RealSysfs {
    /// Access rooted at `root` (`/` for the real host).
    pub fn new(root: impl Into<PathBuf>, dry_run: bool) -> Self {
        RealSysfs {
            root: root.into(),
            dry_run,
            journal: RefCell::new(Vec::new()),
        }
    }

    /// The live host, changes enabled.
    pub fn host() -> Self {
        Self::new("/", false)
    }
}

impl Sysfs for RealSysfs {
    fn root(&self) -> &Path {
        &self.root
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }

    fn write(&self, path: &str, data: &str) -> Result<(), HostError> {
        let p = self.resolve(path);
        self.record(Action::Write {
            path: p.clone(),
            data: data.to_string(),
        });
        if self.dry_run {
            return Ok(());
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .map_err(|e| HostError::io("open for writing", &p, e))?;
        // One write(2) call: sysfs attributes act on each write, so the data must not be split.
        let n = f
            .write(data.as_bytes())
            .map_err(|e| HostError::io("write", &p, e))?;
        if n != data.len() {
            return Err(HostError::io(
                "write",
                &p,
                io::Error::new(io::ErrorKind::WriteZero, "short write"),
            ));
        }
        Ok(())
    }

    fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), HostError> {
        let p = self.resolve(path);
        self.record(Action::Chown {
            path: p.clone(),
            uid,
            gid,
        });
        if self.dry_run {
            return Ok(());
        }
        std::os::unix::fs::chown(&p, uid, gid).map_err(|e| HostError::io("chown", &p, e))
    }

    fn create_dir_all(&self, path: &str) -> Result<(), HostError> {
        let p = self.resolve(path);
        if p.is_dir() {
            return Ok(());
        }
        self.record(Action::Mkdir { path: p.clone() });
        if self.dry_run {
            return Ok(());
        }
        fs::create_dir_all(&p).map_err(|e| HostError::io("create directory", &p, e))
    }

    fn remove_file(&self, path: &str) -> Result<(), HostError> {
        let p = self.resolve(path);
        self.record(Action::Remove { path: p.clone() });
        if self.dry_run {
            return Ok(());
        }
        fs::remove_file(&p).map_err(|e| HostError::io("remove", &p, e))
    }

    fn record(&self, action: Action) {
        self.journal.borrow_mut().push(action);
    }

    fn journal(&self) -> Vec<Action> {
        self.journal.borrow().clone()
    }
}

/// Effective uid of this process, from `/proc/self/status` (0 when it cannot be read is never
/// assumed: `None`).
pub fn effective_uid() -> Option<u32> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
