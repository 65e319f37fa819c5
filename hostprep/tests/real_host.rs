//! On the real /sys and /proc: hugepage reserve/show/mount/unmount/clear round trip (restoring
//! what was there), and `devbind --status` on this host.
//!
//! Other tests on the machine use 2 MiB hugepages concurrently, so this test only ever raises a
//! pool and restores it to its start value, and only when nobody else changed it meanwhile.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use xfwd_hostprep::devbind;
use xfwd_hostprep::hugepages::{self, CommandMounter, MountOwner};
use xfwd_hostprep::iommu::IommuMode;
use xfwd_hostprep::{RealSysfs, Sysfs};

const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;

/// Restores `nr_hugepages` to its start value if it still holds what we set.
struct PoolGuard {
    path: PathBuf,
    start: u64,
    set: Option<u64>,
}

impl PoolGuard {
    fn read(&self) -> u64 {
        fs::read_to_string(&self.path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Returns true when it restored the start value.
    fn restore(&mut self) -> bool {
        let Some(set) = self.set.take() else {
            return false;
        };
        if self.read() != set {
            eprintln!(
                "{}: changed by someone else meanwhile; left alone",
                self.path.display()
            );
            return false;
        }
        fs::write(&self.path, format!("{}\n", self.start)).is_ok()
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Unmounts what the test mounted, even when it fails half way.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let fs = RealSysfs::host();
        if hugepages::mounts(&fs)
            .iter()
            .any(|m| std::path::Path::new(&m.path) == self.0)
        {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
}

#[test]
fn hugepages_round_trip_on_the_real_host() {
    if !common::require_root("real hugepage reserve/mount round trip") {
        return;
    }
    let fs = RealSysfs::host();
    let has_2m = hugepages::page_sizes(&fs).contains(&M2);
    if !common::require(
        has_2m,
        "real hugepage round trip",
        "kernel has no 2 MiB hugepages",
    ) {
        return;
    }
    let node = hugepages::nodes(&fs, M2).first().copied();
    let pool_dir = match node {
        Some(n) => format!("/sys/devices/system/node/node{n}/hugepages/hugepages-2048kB"),
        None => "/sys/kernel/mm/hugepages/hugepages-2048kB".to_string(),
    };
    let mut guard = PoolGuard {
        path: PathBuf::from(format!("{pool_dir}/nr_hugepages")),
        start: 0,
        set: None,
    };
    guard.start = guard.read();
    let want = guard.start + 4;
    guard.set = Some(want);
    let r = hugepages::reserve_pages(&fs, want, M2, node).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].asked, r[0].granted, r[0].node), (want, want, node));

    let shown = hugepages::show(&fs);
    let pool = shown
        .nodes
        .iter()
        .chain(&shown.sizes)
        .find(|p| p.page_size == M2 && p.node == node)
        .expect("show lists the pool we raised");
    assert!(pool.total >= 4, "{pool:?}");

    // Mount a private hugetlbfs owned by another user, prove it is hugetlbfs, unmount it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("huge");
    let dir_s = dir.to_str().unwrap().to_string();
    let _mount_guard = MountGuard(dir.clone());
    let owner = MountOwner {
        uid: Some(4242),
        gid: Some(4343),
        mode: Some(0o770),
    };
    let out = hugepages::mount(&fs, &CommandMounter, &dir_s, Some(M2), owner).unwrap();
    assert!(!out.already);
    let m = hugepages::mounts(&fs)
        .into_iter()
        .find(|m| std::path::Path::new(&m.path) == dir)
        .expect("mount listed in /proc/mounts");
    assert_eq!(m.page_size, Some(M2));
    let md = fs::metadata(&dir).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (4242, 4343, 0o770));
    {
        // hugetlbfs only accepts sizes in whole hugepages.
        let f = fs::File::create(dir.join("probe")).unwrap();
        assert!(
            f.set_len(4096).is_err(),
            "4 KiB file size accepted: not hugetlbfs"
        );
        f.set_len(M2).unwrap();
    }
    fs::remove_file(dir.join("probe")).unwrap();
    assert!(
        hugepages::mount(&fs, &CommandMounter, &dir_s, Some(M2), owner)
            .unwrap()
            .already
    );
    assert!(hugepages::unmount(&fs, &CommandMounter, &dir_s).unwrap());
    assert!(!hugepages::mounts(&fs)
        .iter()
        .any(|m| std::path::Path::new(&m.path) == dir));

    // Clear on real sysfs, on a size nobody here uses: 1 GiB pages, only if none are reserved.
    let one_g_idle = hugepages::show(&fs)
        .sizes
        .iter()
        .any(|p| p.page_size == G1 && p.total == 0);
    if one_g_idle {
        let cleared = hugepages::clear(&fs, Some(G1)).unwrap();
        assert!(!cleared.is_empty() && cleared.iter().all(|r| r.granted == 0));
    }

    // (The short-grant error is tested on a fake tree: asking the real kernel for more than it
    // has would briefly take memory from the other tests on this machine.)

    assert!(guard.restore() || guard.read() != want, "restore failed");
    // Dry run on the real host: nothing changes.
    let dry = RealSysfs::new("/", true);
    let before = guard.read();
    hugepages::reserve_pages(&dry, before + 100, M2, node).unwrap();
    assert_eq!(guard.read(), before);
    assert_eq!(dry.journal().len(), 1);
}

#[test]
fn devbind_status_runs_on_this_host() {
    let fs = RealSysfs::host();
    let s = devbind::status(&fs, false);
    assert!(s.devices.iter().all(|d| d.device.is_network()));
    if fs.list("/sys/kernel/iommu_groups").is_empty() {
        assert_ne!(s.iommu.mode, IommuMode::Enabled);
        if s.iommu.mode == IommuMode::Missing {
            assert!(
                s.iommu.problems[0].contains("intel_iommu=on"),
                "{:?}",
                s.iommu.problems
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xfwd-host"))
        .args(["devbind", "--status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Network devices using a kernel driver") && text.contains("IOMMU"));
    let out = Command::new(env!("CARGO_BIN_EXE_xfwd-host"))
        .args(["devbind", "--status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), s.devices.len());
}
