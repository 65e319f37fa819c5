//! Hugepage pools and hugetlbfs mounts, like `dpdk-hugepages.py`, but a reservation without a
//! node is split across NUMA nodes (not multiplied by their number), and every reservation is read
//! back: an error names what was asked and what the kernel granted.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::error::HostError;
use crate::size::{dir_for_page_size, format_size, page_size_from_dir, parse_size};
use crate::sysfs::{Action, Sysfs};
use xfwd_mempool::hugefile;

const GLOBAL: &str = "/sys/kernel/mm/hugepages";
const NODES: &str = "/sys/devices/system/node";

/// Mounts and unmounts filesystems; a test double records instead.
pub trait Mounter: std::fmt::Debug {
    /// Mount hugetlbfs with `options` on the (resolved) directory `target`.
    ///
    /// # Errors
    /// [`HostError::Mount`] with what the system said.
    fn mount_hugetlbfs(&self, target: &Path, options: &str) -> Result<(), HostError>;
    /// Unmount the (resolved) directory `target`.
    ///
    /// # Errors
    /// [`HostError::Mount`] with what the system said.
    fn unmount(&self, target: &Path) -> Result<(), HostError>;
}

/// The real mounter: runs `mount(8)` and `umount(8)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandMounter;

fn run(op: &'static str, target: &Path, cmd: &mut Command) -> Result<(), HostError> {
    let err = |detail: String| HostError::Mount {
        op,
        path: target.to_path_buf(),
        detail,
    };
    let out = cmd
        .output()
        .map_err(|e| err(format!("cannot run {op}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

impl Mounter for CommandMounter {
    fn mount_hugetlbfs(&self, target: &Path, options: &str) -> Result<(), HostError> {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "hugetlbfs", "-o", options, "nodev"])
            .arg(target);
        run("mount", target, &mut cmd)
    }

    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        run("umount", target, Command::new("umount").arg(target))
    }
}

/// One hugepage pool: a page size, globally or on one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// Page size in bytes.
    pub page_size: u64,
    /// NUMA node, `None` for the global pool.
    pub node: Option<u32>,
    /// Reserved (persistent) pages: `nr_hugepages`.
    pub total: u64,
    /// Pages not in use: `free_hugepages`.
    pub free: u64,
    /// Host path of the pool's directory.
    pub path: String,
}

/// A hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HugeMount {
    /// Mount point as the kernel reports it.
    pub path: String,
    /// Page size of the mount.
    pub page_size: Option<u64>,
    /// Mount options.
    pub options: String,
}

/// The `hugepages show` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HugeStatus {
    /// `Hugepagesize` of /proc/meminfo.
    pub default_page_size: Option<u64>,
    /// Global pools, one per supported page size.
    pub sizes: Vec<Pool>,
    /// Per-NUMA-node pools (empty on hosts without NUMA sysfs).
    pub nodes: Vec<Pool>,
    /// hugetlbfs mounts.
    pub mounts: Vec<HugeMount>,
}

fn read_pool(fs: &dyn Sysfs, path: String, page_size: u64, node: Option<u32>) -> Pool {
    let num = |f: &str| {
        fs.read_opt(&format!("{path}/{f}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Pool {
        page_size,
        node,
        total: num("nr_hugepages"),
        free: num("free_hugepages"),
        path,
    }
}

/// Supported page sizes, ascending.
pub fn page_sizes(fs: &dyn Sysfs) -> Vec<u64> {
    let mut v: Vec<u64> = fs
        .list(GLOBAL)
        .iter()
        .filter_map(|d| page_size_from_dir(d))
        .collect();
    v.sort_unstable();
    v
}

/// `Hugepagesize` from /proc/meminfo.
pub fn default_page_size(fs: &dyn Sysfs) -> Option<u64> {
    let meminfo = fs.read_opt("/proc/meminfo")?;
    let line = meminfo.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// NUMA nodes that have memory and a hugepage pool of `page_size`, ascending.
pub fn nodes(fs: &dyn Sysfs, page_size: u64) -> Vec<u32> {
    let with_memory = fs.read_opt(&format!("{NODES}/has_memory"));
    let mut v: Vec<u32> = fs
        .list(NODES)
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse().ok())
        .filter(|n| fs.exists(&node_pool_path(*n, page_size)))
        .filter(|n| with_memory.as_deref().is_none_or(|m| in_cpulist(m, *n)))
        .collect();
    v.sort_unstable();
    v
}

fn node_pool_path(node: u32, page_size: u64) -> String {
    format!(
        "{NODES}/node{node}/hugepages/{}",
        dir_for_page_size(page_size)
    )
}

/// `n` is in a kernel list such as `0-3,8`.
fn in_cpulist(list: &str, n: u32) -> bool {
    list.split(',')
        .any(|part| match part.trim().split_once('-') {
            Some((a, b)) => {
                a.parse().is_ok_and(|a: u32| a <= n) && b.parse().is_ok_and(|b: u32| n <= b)
            }
            None => part.trim().parse() == Ok(n),
        })
}

/// Current pools and mounts.
pub fn show(fs: &dyn Sysfs) -> HugeStatus {
    let sizes = page_sizes(fs);
    let global = sizes
        .iter()
        .map(|&s| read_pool(fs, format!("{GLOBAL}/{}", dir_for_page_size(s)), s, None))
        .collect();
    let per_node = sizes
        .iter()
        .flat_map(|&s| nodes(fs, s).into_iter().map(move |n| (s, n)))
        .map(|(s, n)| read_pool(fs, node_pool_path(n, s), s, Some(n)))
        .collect();
    HugeStatus {
        default_page_size: default_page_size(fs),
        sizes: global,
        nodes: per_node,
        mounts: mounts(fs),
    }
}

/// Resolve the page size to use: the given one (checked) or the kernel's default.
///
/// # Errors
/// [`HostError::UnsupportedPageSize`].
pub fn pick_page_size(fs: &dyn Sysfs, page_size: Option<u64>) -> Result<u64, HostError> {
    let sizes = page_sizes(fs);
    let unsupported = |s: u64| HostError::UnsupportedPageSize {
        size: format_size(s),
        available: sizes
            .iter()
            .map(|&s| format_size(s))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let size = match page_size.or_else(|| default_page_size(fs)) {
        Some(s) => s,
        None => return Err(unsupported(0)),
    };
    if sizes.contains(&size) {
        Ok(size)
    } else {
        Err(unsupported(size))
    }
}

/// One pool's reservation: asked and granted page counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// Host path of the `nr_hugepages` file written.
    pub path: String,
    /// Page size in bytes.
    pub page_size: u64,
    /// NUMA node, `None` for the global pool.
    pub node: Option<u32>,
    /// Pages asked for.
    pub asked: u64,
    /// Pages the kernel reports after the write (equal to `asked` in a dry run).
    pub granted: u64,
}

fn set_pool(
    fs: &dyn Sysfs,
    dir: String,
    page: u64,
    node: Option<u32>,
    pages: u64,
) -> Result<Reservation, HostError> {
    let path = format!("{dir}/nr_hugepages");
    fs.write(&path, &format!("{pages}\n"))?;
    let granted = if fs.dry_run() {
        pages
    } else {
        fs.read(&path)?.trim().parse().unwrap_or(0)
    };
    if granted < pages {
        return Err(HostError::HugepagesShort {
            path: fs.resolve(&path),
            page: format_size(page),
            asked: pages,
            granted,
        });
    }
    Ok(Reservation {
        path,
        page_size: page,
        node,
        asked: pages,
        granted,
    })
}

/// Set the reservation of `page_size` pages to `bytes` in total: on `node` only, or split as
/// evenly as possible across the NUMA nodes with memory (the first nodes take the remainder), or
/// in the global pool on hosts without NUMA sysfs. Each pool is read back.
///
/// # Errors
/// Bad page size or node, size not a multiple of the page size, write errors,
/// [`HostError::HugepagesShort`] when the kernel grants fewer pages than asked.
pub fn reserve(
    fs: &dyn Sysfs,
    bytes: u64,
    page_size: Option<u64>,
    node: Option<u32>,
) -> Result<Vec<Reservation>, HostError> {
    let page = pick_page_size(fs, page_size)?;
    if !bytes.is_multiple_of(page) {
        return Err(HostError::NotMultiple {
            size: format_size(bytes),
            page: format_size(page),
        });
    }
    reserve_pages(fs, bytes / page, page, node)
}

/// [`reserve`] with a page count (0 allowed: it releases the pool).
///
/// # Errors
/// As [`reserve`].
pub fn reserve_pages(
    fs: &dyn Sysfs,
    pages: u64,
    page: u64,
    node: Option<u32>,
) -> Result<Vec<Reservation>, HostError> {
    let page = pick_page_size(fs, Some(page))?;
    let numa = nodes(fs, page);
    if let Some(n) = node {
        if !numa.contains(&n) {
            return Err(HostError::NoSuchNode {
                node: n,
                available: format!("{numa:?}"),
            });
        }
        return Ok(vec![set_pool(
            fs,
            node_pool_path(n, page),
            page,
            Some(n),
            pages,
        )?]);
    }
    if numa.is_empty() {
        let dir = format!("{GLOBAL}/{}", dir_for_page_size(page));
        return Ok(vec![set_pool(fs, dir, page, None, pages)?]);
    }
    let count = numa.len() as u64;
    numa.iter()
        .enumerate()
        .map(|(i, &n)| {
            let share = pages / count + u64::from((i as u64) < pages % count);
            set_pool(fs, node_pool_path(n, page), page, Some(n), share)
        })
        .collect()
}

/// Release the pools of `page_size` (every size when `None`) on every node,
/// after removing the hugetlbfs files dead xfwd processes left behind
/// ([`sweep_stale_files`]), which would otherwise keep their pages.
///
/// # Errors
/// Write and remove errors; [`HostError::HugepagesShort`] cannot happen when
/// releasing.
pub fn clear(fs: &dyn Sysfs, page_size: Option<u64>) -> Result<Vec<Reservation>, HostError> {
    let sizes = match page_size {
        Some(p) => vec![pick_page_size(fs, Some(p))?],
        None => page_sizes(fs),
    };
    sweep_stale_files(fs, page_size)?;
    let mut out = Vec::new();
    for s in sizes {
        out.extend(reserve_pages(fs, 0, s, None)?);
    }
    Ok(out)
}

/// Remove the `xfwd-<pid>-<seq>` files whose process is dead from every
/// hugetlbfs mount (of `page_size` only, when given); each removal is in the
/// journal. Returns the host paths removed.
///
/// # Errors
/// [`HostError::Io`] when a file cannot be removed.
pub fn sweep_stale_files(fs: &dyn Sysfs, page_size: Option<u64>) -> Result<Vec<String>, HostError> {
    let mut removed = Vec::new();
    for m in mounts(fs) {
        if page_size.is_some() && m.page_size.is_some() && m.page_size != page_size {
            continue;
        }
        for name in fs.list(&m.path) {
            let Some(pid) = hugefile::owner_pid(&name) else {
                continue;
            };
            if fs.exists(&format!("/proc/{pid}")) {
                continue;
            }
            let path = format!("{}/{name}", m.path.trim_end_matches('/'));
            fs.remove_file(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// hugetlbfs mounts from /proc/mounts.
pub fn mounts(fs: &dyn Sysfs) -> Vec<HugeMount> {
    let text = fs.read_opt("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[2] == "hugetlbfs").then(|| HugeMount {
                path: unescape_mount(f[1]),
                page_size: f[3]
                    .split(',')
                    .find_map(|o| o.strip_prefix("pagesize="))
                    .and_then(|p| parse_size(p).ok()),
                options: f[3].to_string(),
            })
        })
        .collect()
}

fn mounted_at(fs: &dyn Sysfs, target: &Path) -> Option<HugeMount> {
    mounts(fs)
        .into_iter()
        .find(|m| Path::new(&m.path) == target)
}

/// What a mount request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountOutcome {
    /// Resolved mount point.
    pub path: PathBuf,
    /// Options used (or found).
    pub options: String,
    /// It was already mounted with a compatible page size.
    pub already: bool,
}

/// Ownership and permissions for a hugetlbfs mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountOwner {
    /// Owner of the mount's root.
    pub uid: Option<u32>,
    /// Group of the mount's root.
    pub gid: Option<u32>,
    /// Permissions of the mount's root (e.g. 0o770).
    pub mode: Option<u32>,
}

/// Mount hugetlbfs of `page_size` on `dir` (created if missing), unless it already is.
///
/// # Errors
/// A different page size already mounted there, mkdir or mount failure, or the mount not showing
/// up in /proc/mounts afterwards.
pub fn mount(
    fs: &dyn Sysfs,
    mounter: &dyn Mounter,
    dir: &str,
    page_size: Option<u64>,
    owner: MountOwner,
) -> Result<MountOutcome, HostError> {
    let page = pick_page_size(fs, page_size)?;
    let target = fs.resolve(dir);
    if let Some(m) = mounted_at(fs, &target) {
        if m.page_size.is_some_and(|p| p != page) {
            return Err(HostError::Mount {
                op: "mount",
                path: target,
                detail: format!(
                    "hugetlbfs with page size {} is already mounted there; unmount it first",
                    m.page_size.map_or("?".into(), format_size)
                ),
            });
        }
        return Ok(MountOutcome {
            path: target,
            options: m.options,
            already: true,
        });
    }
    let mut options = format!("pagesize={}", format_size(page));
    if let Some(u) = owner.uid {
        options.push_str(&format!(",uid={u}"));
    }
    if let Some(g) = owner.gid {
        options.push_str(&format!(",gid={g}"));
    }
    if let Some(m) = owner.mode {
        options.push_str(&format!(",mode={m:o}"));
    }
    fs.create_dir_all(dir)?;
    fs.record(Action::Mount {
        path: target.clone(),
        options: options.clone(),
    });
    if !fs.dry_run() {
        mounter.mount_hugetlbfs(&target, &options)?;
        if mounted_at(fs, &target).is_none() {
            return Err(HostError::Mount {
                op: "mount",
                path: target,
                detail: "mount reported success but /proc/mounts does not list it".into(),
            });
        }
    }
    Ok(MountOutcome {
        path: target,
        options,
        already: false,
    })
}

/// Unmount the hugetlbfs on `dir`; `Ok(false)` when none is mounted there.
///
/// # Errors
/// umount failure, or the mount still listed afterwards.
pub fn unmount(fs: &dyn Sysfs, mounter: &dyn Mounter, dir: &str) -> Result<bool, HostError> {
    let target = fs.resolve(dir);
    if mounted_at(fs, &target).is_none() {
        return Ok(false);
    }
    fs.record(Action::Unmount {
        path: target.clone(),
    });
    if !fs.dry_run() {
        mounter.unmount(&target)?;
        if mounted_at(fs, &target).is_some() {
            return Err(HostError::Mount {
                op: "umount",
                path: target,
                detail: "still listed in /proc/mounts (a stacked mount?)".into(),
            });
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lists_and_mount_escapes() {
        assert!(in_cpulist("0-3,8", 2));
        assert!(in_cpulist("0-3,8", 8));
        assert!(!in_cpulist("0-3,8", 5));
        assert!(in_cpulist("1", 1));
        assert!(!in_cpulist("", 0));
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
    }
}
