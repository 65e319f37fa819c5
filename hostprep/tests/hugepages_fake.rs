//! hugepages and host-config apply against fake sysfs/procfs trees.

mod common;

use std::path::Path;

use common::{iommu_host, FakeKernel, FakeMounter, Tree};
use xfwd_hostprep::error::HostError;
use xfwd_hostprep::hostcfg::{self, HostConfig};
use xfwd_hostprep::hugepages::{self, MountOwner};
use xfwd_hostprep::{Action, Sysfs};

const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;

fn nr(t: &Tree, rel: &str) -> u64 {
    std::fs::read_to_string(t.p(rel))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn node_nr(t: &Tree, node: u32, kb: u64) -> u64 {
    nr(
        t,
        &format!("sys/devices/system/node/node{node}/hugepages/hugepages-{kb}kB/nr_hugepages"),
    )
}

#[test]
fn reserve_without_node_splits_across_nodes() {
    let t = Tree::new();
    t.hugepages(&[2048, 1048576], 2);
    let k = FakeKernel::new(&t, false);
    // 5 pages of 2M over 2 nodes: 3 + 2, not 5 on each (dpdk-hugepages.py gives 10).
    let r = hugepages::reserve(&k, 10 << 20, Some(M2), None).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!((node_nr(&t, 0, 2048), node_nr(&t, 1, 2048)), (3, 2));
    assert_eq!(r.iter().map(|r| r.granted).sum::<u64>(), 5);
    // With a node only that node changes.
    hugepages::reserve(&k, 2 * G1, Some(G1), Some(1)).unwrap();
    assert_eq!((node_nr(&t, 0, 1048576), node_nr(&t, 1, 1048576)), (0, 2));
    // Default page size comes from /proc/meminfo.
    hugepages::reserve(&k, 8 << 20, None, Some(0)).unwrap();
    assert_eq!(node_nr(&t, 0, 2048), 4);
}

#[test]
fn reserve_on_host_without_numa_uses_global_pool() {
    let t = Tree::new();
    t.hugepages(&[2048], 0);
    let k = FakeKernel::new(&t, false);
    let r = hugepages::reserve(&k, 64 << 20, Some(M2), None).unwrap();
    assert_eq!(r[0].node, None);
    assert_eq!(
        nr(&t, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
        32
    );
}

#[test]
fn bad_reservations_are_explained() {
    let t = Tree::new();
    t.hugepages(&[2048], 1);
    let k = FakeKernel::new(&t, false);
    let e = hugepages::reserve(&k, 3 << 20, Some(M2), None).unwrap_err();
    assert!(matches!(e, HostError::NotMultiple { .. }), "{e}");
    let e = hugepages::reserve(&k, G1, Some(G1), None).unwrap_err();
    assert!(e.to_string().contains("supported: 2M"), "{e}");
    let e = hugepages::reserve(&k, G1, Some(M2), Some(3)).unwrap_err();
    assert!(matches!(e, HostError::NoSuchNode { node: 3, .. }), "{e}");
    assert!(k.journal().is_empty());
}

#[test]
fn short_grant_names_asked_and_granted() {
    let t = Tree::new();
    t.hugepages(&[2048], 1);
    let mut k = FakeKernel::new(&t, false);
    k.caps.insert(
        "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages".into(),
        100,
    );
    let e = hugepages::reserve(&k, G1, Some(M2), None).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::HugepagesShort {
                asked: 512,
                granted: 100,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("asked for 512") && msg.contains("granted 100"),
        "{msg}"
    );
    assert!(msg.contains("hugepagesz=2M hugepages=512"), "{msg}");
}

#[test]
fn clear_releases_every_pool() {
    let t = Tree::new();
    t.hugepages(&[2048, 1048576], 2);
    let k = FakeKernel::new(&t, false);
    hugepages::reserve(&k, 8 << 20, Some(M2), None).unwrap();
    hugepages::reserve(&k, 2 * G1, Some(G1), None).unwrap();
    hugepages::clear(&k, Some(M2)).unwrap();
    assert_eq!(node_nr(&t, 0, 2048) + node_nr(&t, 1, 2048), 0);
    assert_eq!(node_nr(&t, 0, 1048576) + node_nr(&t, 1, 1048576), 2);
    hugepages::clear(&k, None).unwrap();
    assert_eq!(node_nr(&t, 0, 1048576) + node_nr(&t, 1, 1048576), 0);
}

#[test]
fn clear_removes_files_of_dead_xfwd_processes() {
    let t = Tree::new();
    t.hugepages(&[2048], 1);
    std::fs::write(
        t.p("proc/mounts"),
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
    )
    .unwrap();
    std::fs::create_dir_all(t.p("dev/hugepages")).unwrap();
    // Process 41 is alive (it has a /proc entry), 42 is dead.
    std::fs::create_dir_all(t.p("proc/41")).unwrap();
    for f in ["xfwd-41-0", "xfwd-42-0", "xfwd-42-1", "rtemap_0", "xfwd-x"] {
        std::fs::write(t.p(&format!("dev/hugepages/{f}")), "").unwrap();
    }
    let dry = FakeKernel::new(&t, true);
    hugepages::clear(&dry, Some(M2)).unwrap();
    assert!(
        t.p("dev/hugepages/xfwd-42-0").exists(),
        "a dry run removes nothing"
    );
    let k = FakeKernel::new(&t, false);
    hugepages::clear(&k, Some(M2)).unwrap();
    let left: Vec<String> = k.list("/dev/hugepages");
    assert_eq!(left, ["rtemap_0", "xfwd-41-0", "xfwd-x"]);
    let removed: Vec<String> = k
        .journal()
        .iter()
        .filter_map(|a| match a {
            Action::Remove { path } => Some(path.file_name().unwrap().to_string_lossy().into()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["xfwd-42-0", "xfwd-42-1"]);
}

#[test]
fn show_reports_sizes_nodes_and_mounts() {
    let t = Tree::new();
    t.hugepages(&[2048, 1048576], 2);
    let k = FakeKernel::new(&t, false);
    hugepages::reserve(&k, 8 << 20, Some(M2), None).unwrap();
    std::fs::write(
        t.p("proc/mounts"),
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\nnone /mnt/huge\\0401g hugetlbfs rw,pagesize=1024M 0 0\n",
    )
    .unwrap();
    let s = hugepages::show(&k);
    assert_eq!(s.default_page_size, Some(M2));
    assert_eq!(s.sizes.len(), 2);
    assert_eq!(s.nodes.len(), 4);
    let n0 = s
        .nodes
        .iter()
        .find(|p| p.node == Some(0) && p.page_size == M2)
        .unwrap();
    assert_eq!(n0.total, 2);
    assert_eq!(s.mounts.len(), 2);
    assert_eq!(s.mounts[1].path, "/mnt/huge 1g");
    assert_eq!(s.mounts[1].page_size, Some(G1));
    let text = xfwd_hostprep::cli::huge_status_text(&s);
    assert!(text.contains("hugetlbfs on /dev/hugepages"), "{text}");
}

#[test]
fn mount_and_unmount_through_the_mounter() {
    let t = Tree::new();
    t.hugepages(&[2048, 1048576], 1);
    let k = FakeKernel::new(&t, false);
    let m = FakeMounter::new(&t);
    let owner = MountOwner {
        uid: Some(1000),
        gid: Some(1001),
        mode: Some(0o770),
    };
    let out = hugepages::mount(&k, &m, "/mnt/huge", Some(G1), owner).unwrap();
    assert!(!out.already);
    assert_eq!(out.options, "pagesize=1G,uid=1000,gid=1001,mode=770");
    assert!(t.p("mnt/huge").is_dir(), "mount point not created");
    assert_eq!(
        hugepages::mounts(&k)[0].path,
        t.p("mnt/huge").display().to_string()
    );
    // Same page size again: already mounted. Another page size: refused.
    assert!(
        hugepages::mount(&k, &m, "/mnt/huge", Some(G1), owner)
            .unwrap()
            .already
    );
    let e = hugepages::mount(&k, &m, "/mnt/huge", Some(M2), owner).unwrap_err();
    assert!(e.to_string().contains("unmount it first"), "{e}");
    assert!(hugepages::unmount(&k, &m, "/mnt/huge").unwrap());
    assert!(hugepages::mounts(&k).is_empty());
    assert!(!hugepages::unmount(&k, &m, "/mnt/huge").unwrap());
    // A failing mount is reported with what mount(8) said.
    let bad = FakeMounter {
        fail: true,
        ..FakeMounter::new(&t)
    };
    let e = hugepages::mount(&k, &bad, "/mnt/huge", None, MountOwner::default()).unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
}

#[test]
fn dry_run_mount_and_reserve_change_nothing() {
    let t = Tree::new();
    t.hugepages(&[2048], 2);
    let before = t.snapshot();
    let k = FakeKernel::new(&t, true);
    let m = FakeMounter {
        fail: true,
        ..FakeMounter::new(&t)
    };
    hugepages::reserve(&k, 8 << 20, Some(M2), None).unwrap();
    hugepages::mount(&k, &m, "/mnt/huge", None, MountOwner::default()).unwrap();
    assert_eq!(t.snapshot(), before);
    let j = k.journal();
    assert_eq!(j.len(), 4, "{j:?}");
    assert!(matches!(&j[2], Action::Mkdir { .. }));
    assert!(matches!(&j[3], Action::Mount { options, .. } if options == "pagesize=2M"));
}

#[test]
fn host_config_applies_pages_mounts_and_bindings() {
    let t = iommu_host();
    t.hugepages(&[2048, 1048576], 2);
    t.device(
        "0000:01:00.0",
        0x020000,
        Some("ixgbe"),
        Some("eth1"),
        Some(7),
    );
    let k = FakeKernel::new(&t, false);
    let m = FakeMounter::new(&t);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/host.toml"))
            .unwrap();
    let shipped = HostConfig::parse(&text, Path::new("configs/host.toml")).unwrap();
    assert!(!shipped.hugepages.is_empty() && !shipped.device.is_empty());
    let cfg = HostConfig::parse(
        r#"
        [[hugepages]]
        page_size = "2M"
        size = "16M"
        [[hugepages]]
        page_size = "1G"
        size = "1G"
        node = 1
        [[mount]]
        path = "/dev/hugepages"
        page_size = "2M"
        mode = "0770"
        [[device]]
        device = "eth1"
        driver = "vfio-pci"
        "#,
        Path::new("test.toml"),
    )
    .unwrap();
    let r = hostcfg::apply(&k, &m, &cfg).unwrap();
    assert_eq!(r.reservations.len(), 3);
    assert_eq!((node_nr(&t, 0, 2048), node_nr(&t, 1, 2048)), (4, 4));
    assert_eq!(node_nr(&t, 1, 1048576), 1);
    assert_eq!(r.mounts[0].options, "pagesize=2M,mode=770");
    assert_eq!(t.driver_of("0000:01:00.0").as_deref(), Some("vfio-pci"));
    // Errors in the file are reported with the file name.
    for bad in [
        "[[hugepages]]\nsize = \"1X\"\n",
        "bogus = 1\n",
        "[[mount]]\npath=\"/x\"\nmode=\"rw\"\n",
    ] {
        let e = HostConfig::parse(bad, Path::new("bad.toml")).unwrap_err();
        assert!(e.to_string().starts_with("host config bad.toml"), "{e}");
    }
}
