//! Hugetlbfs files of the `hugetlbfs` backing and the sweep of files that
//! dead processes left behind.
//!
//! [`crate::ExtMem`] names its file `xfwd-<pid>-<seq>` on the mount and
//! unlinks it as soon as it is open, so a process killed while it maps and
//! populates the pages leaves nothing. A file of that name that is still
//! there belongs to a process killed in the instant between `open` and
//! `unlink`, or to an older xfwd that unlinked only after `mmap`; it holds
//! its hugepages until someone removes it. [`sweep_stale`] removes the ones
//! whose owner is dead; `ExtMem::alloc` runs it on the mount it uses, and
//! `scripts/hugepages clear` on every mount.

use std::io;
use std::path::{Path, PathBuf};

/// Prefix of every hugetlbfs file xfwd creates.
pub const FILE_PREFIX: &str = "xfwd-";

/// The name of the `seq`-th file of process `pid`.
pub fn file_name(pid: u32, seq: u64) -> String {
    format!("{FILE_PREFIX}{pid}-{seq}")
}

/// The owner of a file named by [`file_name`], or `None` for other names.
pub fn owner_pid(name: &str) -> Option<u32> {
    let (pid, seq) = name.strip_prefix(FILE_PREFIX)?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(seq)).then(|| pid.parse().ok())?
}

/// True while process `pid` exists (in this PID namespace).
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A file removed by [`sweep_stale`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFile {
    /// Where it was.
    pub path: PathBuf,
    /// The dead process that created it.
    pub pid: u32,
    /// Its size: the hugepages it held.
    pub bytes: u64,
}

/// Remove the `xfwd-<pid>-<seq>` files in `dir` whose process is dead,
/// logging each one. Files of live processes (this one included) and
/// other names are left alone; a file that cannot be removed is logged and
/// skipped.
///
/// # Errors
/// Reading the directory failed.
pub fn sweep_stale(dir: &Path) -> io::Result<Vec<StaleFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        let bytes = entry.metadata().map_or(0, |m| m.len());
        match std::fs::remove_file(&path) {
            Ok(()) => {
                log::warn!(
                    "removed {}: a hugetlbfs file of process {pid}, which is dead, \
                     holding {} KiB of hugepages",
                    path.display(),
                    bytes >> 10
                );
                out.push(StaleFile { path, pid, bytes });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "cannot remove {} (a hugetlbfs file of dead process {pid}): {e}",
                path.display()
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(owner_pid(&file_name(1234, 7)), Some(1234));
        for bad in [
            "xfwd-",
            "xfwd-12",
            "xfwd--1",
            "xfwd-1-",
            "xfwd-a-1",
            "xfwd-1-2x",
            "rtemap_0",
        ] {
            assert_eq!(owner_pid(bad), None, "{bad}");
        }
        assert_eq!(owner_pid("xfwd-99999999999-0"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "spawns a process and uses the filesystem")]
    fn sweeps_only_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its PID is dead once reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        for n in [
            file_name(dead, 0),
            file_name(me, 0),
            "xfwd-notes".into(),
            "other".into(),
        ] {
            std::fs::write(dir.path().join(n), b"data").unwrap();
        }
        let swept = sweep_stale(dir.path()).unwrap();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!((swept[0].pid, swept[0].bytes), (dead, 4));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["other", &file_name(me, 0), "xfwd-notes"]);
        assert!(sweep_stale(&dir.path().join("missing")).is_err());
    }
}
