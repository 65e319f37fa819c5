//! Test harness: fake sysfs/procfs/dev trees, a fake kernel that reacts to sysfs writes the way
//! the real one does, a fake mounter, and the CI capability check.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use xfwd_hostprep::error::HostError;
use xfwd_hostprep::hugepages::Mounter;
use xfwd_hostprep::{Action, RealSysfs, Sysfs};

/// Skip outside CI, fail under CI=true (copy of xfwd_mempool::caps::require).
pub fn require(available: bool, what: &str, why: &str) -> bool {
    if available {
        return true;
    }
    if matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1")) {
        panic!("CI=true but {what} is not available: {why}");
    }
    eprintln!("SKIP {what}: {why}");
    false
}

/// [`require`] for root.
pub fn require_root(what: &str) -> bool {
    require(
        xfwd_hostprep::sysfs::effective_uid() == Some(0),
        what,
        "needs root (run as root or in CI)",
    )
}

/// A fake host root in a temporary directory.
#[derive(Debug)]
pub struct Tree {
    pub dir: tempfile::TempDir,
}

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

impl Tree {
    /// Empty PCI bus, no IOMMU groups, no routes, no mounts.
    pub fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/kernel/iommu_groups",
            "dev/vfio",
        ] {
            fs::create_dir_all(t.p(d)).unwrap();
        }
        write(&t.p("sys/bus/pci/drivers_probe"), "");
        write(
            &t.p("proc/net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        write(&t.p("proc/mounts"), "proc /proc proc rw 0 0\n");
        write(&t.p("proc/sys/kernel/osrelease"), "6.1.0-test\n");
        t
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    /// Register a PCI driver (creates bind/unbind/new_id).
    pub fn driver(&self, name: &str) -> &Self {
        for f in ["bind", "unbind", "new_id"] {
            write(&self.p(&format!("sys/bus/pci/drivers/{name}/{f}")), "");
        }
        self
    }

    /// Add a device. `class` e.g. 0x020000; `group` puts it in an IOMMU group.
    pub fn device(
        &self,
        pci: &str,
        class: u32,
        driver: Option<&str>,
        iface: Option<&str>,
        group: Option<u32>,
    ) -> &Self {
        let base = self.p(&format!("sys/bus/pci/devices/{pci}"));
        write(&base.join("vendor"), "0x8086\n");
        write(&base.join("device"), "0x10fb\n");
        write(&base.join("class"), &format!("0x{class:06x}\n"));
        write(&base.join("numa_node"), "0\n");
        write(&base.join("driver_override"), "(null)\n");
        write(
            &base.join("modalias"),
            "pci:v00008086d000010FBsv00008086sd00000003bc02sc00i00\n",
        );
        if let Some(d) = driver {
            self.link_driver(pci, d);
        }
        if let Some(i) = iface {
            fs::create_dir_all(base.join("net").join(i)).unwrap();
        }
        if let Some(g) = group {
            self.join_group(pci, g);
        }
        self
    }

    /// Give a device other vendor/device ids (and the matching modalias).
    pub fn ids(&self, pci: &str, vendor: u16, device: u16) {
        let base = self.p(&format!("sys/bus/pci/devices/{pci}"));
        write(&base.join("vendor"), &format!("0x{vendor:04x}\n"));
        write(&base.join("device"), &format!("0x{device:04x}\n"));
        write(
            &base.join("modalias"),
            &format!("pci:v0000{vendor:04X}d0000{device:04X}sv00008086sd00000003bc02sc00i00\n"),
        );
    }

    pub fn join_group(&self, pci: &str, g: u32) {
        let gdir = self.p(&format!("sys/kernel/iommu_groups/{g}/devices"));
        fs::create_dir_all(&gdir).unwrap();
        symlink(format!("../../../../bus/pci/devices/{pci}"), gdir.join(pci)).unwrap();
        symlink(
            format!("../../../kernel/iommu_groups/{g}"),
            self.p(&format!("sys/bus/pci/devices/{pci}/iommu_group")),
        )
        .unwrap();
    }

    pub fn link_driver(&self, pci: &str, d: &str) {
        symlink(
            format!("../../drivers/{d}"),
            self.p(&format!("sys/bus/pci/devices/{pci}/driver")),
        )
        .unwrap();
    }

    /// Driver of a device as the `driver` link says.
    pub fn driver_of(&self, pci: &str) -> Option<String> {
        fs::read_link(self.p(&format!("sys/bus/pci/devices/{pci}/driver")))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    pub fn override_of(&self, pci: &str) -> String {
        fs::read_to_string(self.p(&format!("sys/bus/pci/devices/{pci}/driver_override")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// vfio module with its no-IOMMU parameter.
    pub fn vfio_module(&self, noiommu: bool) -> &Self {
        write(
            &self.p("sys/module/vfio/parameters/enable_unsafe_noiommu_mode"),
            if noiommu { "Y\n" } else { "N\n" },
        );
        self
    }

    /// A route through `iface` in the main table.
    pub fn route(&self, iface: &str) {
        let p = self.p("proc/net/route");
        let mut s = fs::read_to_string(&p).unwrap();
        s.push_str(&format!(
            "{iface}\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        ));
        fs::write(p, s).unwrap();
    }

    /// Hugepage pools: `sizes_kb` on `nodes` NUMA nodes (0 = no NUMA sysfs).
    pub fn hugepages(&self, sizes_kb: &[u64], nodes: u32) -> &Self {
        for kb in sizes_kb {
            let g = self.p(&format!("sys/kernel/mm/hugepages/hugepages-{kb}kB"));
            write(&g.join("nr_hugepages"), "0\n");
            write(&g.join("free_hugepages"), "0\n");
            for n in 0..nodes {
                let d = self.p(&format!(
                    "sys/devices/system/node/node{n}/hugepages/hugepages-{kb}kB"
                ));
                write(&d.join("nr_hugepages"), "0\n");
                write(&d.join("free_hugepages"), "0\n");
            }
        }
        if nodes > 0 {
            write(
                &self.p("sys/devices/system/node/has_memory"),
                &format!("0-{}\n", nodes - 1),
            );
        }
        write(
            &self.p("proc/meminfo"),
            "MemTotal:        8000000 kB\nHugepagesize:       2048 kB\n",
        );
        self
    }

    /// Contents of every file and link target, to prove a dry run changed nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let ft = e.file_type().unwrap();
                if ft.is_symlink() {
                    out.insert(
                        p.clone(),
                        format!("-> {}", fs::read_link(&p).unwrap().display()),
                    );
                } else if ft.is_dir() {
                    out.insert(p.clone(), "dir".into());
                    walk(&p, out);
                } else {
                    out.insert(p.clone(), fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.root(), &mut out);
        out
    }
}

/// The real [`RealSysfs`] plus what the kernel does in reaction to writes: unbind removes the
/// `driver` link, `drivers_probe` binds to `driver_override` (else the native driver), vfio-pci
/// creates `/dev/vfio/N` (and a no-IOMMU group in no-IOMMU mode), `nr_hugepages` is capped.
#[derive(Debug)]
pub struct FakeKernel {
    pub fs: RealSysfs,
    pub native: HashMap<String, String>,
    pub failing: HashSet<String>,
    /// Drivers whose probe makes the drivers_probe write itself fail (EBUSY).
    pub rejecting: HashSet<String>,
    /// Pages a pool can grant at most, by nr_hugepages host path.
    pub caps: HashMap<String, u64>,
}

impl FakeKernel {
    pub fn new(tree: &Tree, dry_run: bool) -> FakeKernel {
        FakeKernel {
            fs: RealSysfs::new(tree.root(), dry_run),
            native: HashMap::new(),
            failing: HashSet::new(),
            rejecting: HashSet::new(),
            caps: HashMap::new(),
        }
    }

    fn enodev(&self, path: &str) -> HostError {
        HostError::io(
            "write",
            &self.resolve(path),
            std::io::Error::from_raw_os_error(19),
        )
    }

    fn probe(&self, pci: &str) -> Result<(), HostError> {
        let base = format!("/sys/bus/pci/devices/{pci}");
        if self.link_name(&format!("{base}/driver")).is_some() {
            return Ok(());
        }
        let ov = self
            .read_opt(&format!("{base}/driver_override"))
            .unwrap_or_default();
        let target = if ov.is_empty() || ov == "(null)" {
            match self.native.get(pci) {
                Some(d) => d.clone(),
                None => return Ok(()),
            }
        } else {
            ov
        };
        if self.rejecting.contains(&target) {
            return Err(HostError::io(
                "write",
                &self.resolve("/sys/bus/pci/drivers_probe"),
                std::io::Error::from_raw_os_error(16),
            ));
        }
        if self.failing.contains(&target) || !self.exists(&format!("/sys/bus/pci/drivers/{target}"))
        {
            return Ok(());
        }
        let root = self.root().to_path_buf();
        symlink(
            format!("../../drivers/{target}"),
            root.join(format!("sys/bus/pci/devices/{pci}/driver")),
        )
        .unwrap();
        if target == "vfio-pci" {
            let group = self.link_name(&format!("{base}/iommu_group"));
            let node = match group {
                Some(g) => format!("dev/vfio/{g}"),
                None => {
                    // No-IOMMU mode: vfio creates a fake group for the device.
                    let g = 100 + self.list("/sys/kernel/iommu_groups").len() as u32;
                    let gdir = root.join(format!("sys/kernel/iommu_groups/{g}"));
                    fs::create_dir_all(gdir.join("devices")).unwrap();
                    fs::write(gdir.join("name"), "vfio-noiommu\n").unwrap();
                    symlink(
                        format!("../../../../bus/pci/devices/{pci}"),
                        gdir.join("devices").join(pci),
                    )
                    .unwrap();
                    symlink(
                        format!("../../../kernel/iommu_groups/{g}"),
                        root.join(format!("sys/bus/pci/devices/{pci}/iommu_group")),
                    )
                    .unwrap();
                    format!("dev/vfio/noiommu-{g}")
                }
            };
            fs::write(root.join(node), "").unwrap();
        }
        Ok(())
    }
}

impl Sysfs for FakeKernel {
    fn root(&self) -> &Path {
        self.fs.root()
    }
    fn dry_run(&self) -> bool {
        self.fs.dry_run()
    }
    fn write(&self, path: &str, data: &str) -> Result<(), HostError> {
        self.fs.write(path, data)?;
        if self.fs.dry_run() {
            return Ok(());
        }
        let arg = data.trim();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["sys", "bus", "pci", "drivers", drv, "unbind"] => {
                let link = format!("/sys/bus/pci/devices/{arg}/driver");
                if self.link_name(&link).as_deref() != Some(*drv) {
                    return Err(self.enodev(path));
                }
                fs::remove_file(self.resolve(&link)).unwrap();
            }
            ["sys", "bus", "pci", "drivers_probe"] => self.probe(arg)?,
            [.., "nr_hugepages"] => {
                if let Some(&cap) = self.caps.get(path) {
                    let asked: u64 = arg.parse().unwrap();
                    fs::write(self.resolve(path), format!("{}\n", asked.min(cap))).unwrap();
                }
            }
            _ => {}
        }
        Ok(())
    }
    fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), HostError> {
        self.fs.chown(path, uid, gid)
    }
    fn create_dir_all(&self, path: &str) -> Result<(), HostError> {
        self.fs.create_dir_all(path)
    }
    fn remove_file(&self, path: &str) -> Result<(), HostError> {
        self.fs.remove_file(path)
    }
    fn record(&self, action: Action) {
        self.fs.record(action)
    }
    fn journal(&self) -> Vec<Action> {
        self.fs.journal()
    }
}

/// Mounts by editing the fake tree's proc/mounts.
#[derive(Debug)]
pub struct FakeMounter {
    pub mounts_file: PathBuf,
    pub fail: bool,
}

impl FakeMounter {
    pub fn new(tree: &Tree) -> FakeMounter {
        FakeMounter {
            mounts_file: tree.p("proc/mounts"),
            fail: false,
        }
    }
}

impl Mounter for FakeMounter {
    fn mount_hugetlbfs(&self, target: &Path, options: &str) -> Result<(), HostError> {
        if self.fail {
            return Err(HostError::Mount {
                op: "mount",
                path: target.into(),
                detail: "mount: permission denied".into(),
            });
        }
        let mut s = fs::read_to_string(&self.mounts_file).unwrap();
        s.push_str(&format!(
            "nodev {} hugetlbfs rw,relatime,{options} 0 0\n",
            target.display().to_string().replace(' ', "\\040")
        ));
        fs::write(&self.mounts_file, s).unwrap();
        Ok(())
    }
    fn unmount(&self, target: &Path) -> Result<(), HostError> {
        let s = fs::read_to_string(&self.mounts_file).unwrap();
        let t = target.display().to_string().replace(' ', "\\040");
        let kept: String = s
            .lines()
            .filter(|l| l.split_whitespace().nth(1) != Some(t.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&self.mounts_file, kept).unwrap();
        Ok(())
    }
}

/// A host with an IOMMU, vfio-pci and e1000e/ixgbe loaded.
pub fn iommu_host() -> Tree {
    let t = Tree::new();
    t.driver("vfio-pci")
        .driver("ixgbe")
        .driver("e1000e")
        .vfio_module(false);
    t
}
