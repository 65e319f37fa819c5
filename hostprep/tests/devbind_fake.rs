//! devbind against fake sysfs trees: every path of bind/unbind and the IOMMU checks.

mod common;

use common::{iommu_host, FakeKernel, Tree};
use xfwd_hostprep::devbind::{self, BindOptions, Category};
use xfwd_hostprep::error::HostError;
use xfwd_hostprep::iommu::IommuMode;
use xfwd_hostprep::nics::XfwdSupport;
use xfwd_hostprep::{Action, Sysfs};

const NIC0: &str = "0000:01:00.0";
const NIC1: &str = "0000:01:00.1";

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn writes(k: &FakeKernel, tree: &Tree) -> Vec<(String, String)> {
    k.journal()
        .into_iter()
        .filter_map(|a| match a {
            Action::Write { path, data } => Some((
                format!("/{}", path.strip_prefix(tree.root()).unwrap().display()),
                data,
            )),
            _ => None,
        })
        .collect()
}

fn kernel_nic_host() -> (Tree, FakeKernel) {
    let t = iommu_host();
    t.device(NIC0, 0x020000, Some("ixgbe"), Some("eth1"), Some(7));
    let mut k = FakeKernel::new(&t, false);
    k.native.insert(NIC0.into(), "ixgbe".into());
    (t, k)
}

#[test]
fn bind_moves_device_with_override_and_probe_then_clears_override() {
    let (t, k) = kernel_nic_host();
    let out = devbind::bind(&k, &names(&["eth1"]), "vfio-pci", &BindOptions::default()).unwrap();
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("vfio-pci"));
    assert_eq!(out[0].from.as_deref(), Some("ixgbe"));
    assert_eq!(out[0].to.as_deref(), Some("vfio-pci"));
    assert_eq!(t.override_of(NIC0), "", "override left set");
    let dev = format!("/sys/bus/pci/devices/{NIC0}/driver_override");
    assert_eq!(
        writes(&k, &t),
        vec![
            (
                "/sys/bus/pci/drivers/ixgbe/unbind".to_string(),
                NIC0.to_string()
            ),
            (dev.clone(), "vfio-pci".to_string()),
            ("/sys/bus/pci/drivers_probe".to_string(), NIC0.to_string()),
            (dev, "\n".to_string()),
        ]
    );
    // Binding again is a no-op with a notice.
    let again = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap();
    assert_eq!(
        again[0].skipped.as_deref(),
        Some("already bound to vfio-pci")
    );
}

#[test]
fn bind_back_to_kernel_driver_and_unbind() {
    let (t, k) = kernel_nic_host();
    devbind::bind(
        &k,
        &names(&["01:00.0"]),
        "vfio-pci",
        &BindOptions::default(),
    )
    .unwrap();
    devbind::bind(&k, &names(&["01:00.0"]), "ixgbe", &BindOptions::default()).unwrap();
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("ixgbe"));
    let out = devbind::unbind(&k, &names(&[NIC0]), &BindOptions::default()).unwrap();
    assert_eq!(t.driver_of(NIC0), None);
    assert_eq!(out[0].from.as_deref(), Some("ixgbe"));
    assert_eq!(out[0].to, None);
    // "--bind none" is unbind; an unbound device is a notice, not an error.
    let out = devbind::bind(&k, &names(&[NIC0]), "none", &BindOptions::default()).unwrap();
    assert_eq!(out[0].skipped.as_deref(), Some("not bound to any driver"));
}

#[test]
fn failed_bind_rolls_back_to_previous_driver() {
    let (t, mut k) = kernel_nic_host();
    k.failing.insert("vfio-pci".into());
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    match &err {
        HostError::BindFailed {
            restored,
            rollback_error,
            why,
            ..
        } => {
            assert_eq!(restored.as_deref(), Some("ixgbe"));
            assert!(rollback_error.is_none());
            assert!(why.contains("unbound"), "{why}");
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err
        .to_string()
        .contains("restored the previous driver ixgbe"));
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("ixgbe"));
    assert_eq!(t.override_of(NIC0), "");
}

#[test]
fn probe_write_error_rolls_back_and_names_the_error() {
    let (t, mut k) = kernel_nic_host();
    k.rejecting.insert("vfio-pci".into());
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("drivers_probe") && msg.contains("busy"),
        "{msg}"
    );
    assert!(msg.contains("restored the previous driver ixgbe"), "{msg}");
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("ixgbe"));
    assert_eq!(t.override_of(NIC0), "");
}

#[test]
fn unbound_device_that_fails_to_bind_stays_unbound() {
    let t = iommu_host();
    t.device(NIC0, 0x020000, None, None, Some(7));
    let mut k = FakeKernel::new(&t, false);
    k.failing.insert("vfio-pci".into());
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    assert!(err.to_string().contains("left unbound"), "{err}");
    assert_eq!(t.driver_of(NIC0), None);
    assert_eq!(t.override_of(NIC0), "");
}

#[test]
fn link_local_routes_do_not_make_an_interface_active() {
    let (t, k) = kernel_nic_host();
    let p = t.p("proc/net/route");
    let mut s = std::fs::read_to_string(&p).unwrap();
    s.push_str("eth1\t0000FEA9\t00000000\t0001\t0\t0\t1000\t0000FFFF\t0\t0\t0\n");
    std::fs::write(&p, s).unwrap();
    std::fs::write(
        t.p("proc/net/ipv6_route"),
        "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n",
    )
    .unwrap();
    assert!(!devbind::status(&k, false).devices[0].active);
    std::fs::write(
        t.p("proc/net/if_inet6"),
        "20010db8000000000000000000000001 02 40 00 80     eth1\n",
    )
    .unwrap();
    assert!(devbind::status(&k, false).devices[0].active);
}

#[test]
fn failed_rollback_is_reported() {
    let (t, mut k) = kernel_nic_host();
    k.failing.insert("vfio-pci".into());
    k.failing.insert("ixgbe".into());
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::BindFailed {
                restored: None,
                rollback_error: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("rollback to the previous driver failed too"));
    assert_eq!(t.driver_of(NIC0), None);
}

#[test]
fn active_interface_is_refused_without_force() {
    let (t, k) = kernel_nic_host();
    t.route("eth1");
    let err =
        devbind::bind(&k, &names(&["eth1"]), "vfio-pci", &BindOptions::default()).unwrap_err();
    assert!(matches!(&err, HostError::ActiveInterface { interfaces, .. } if interfaces == "eth1"));
    let err = devbind::unbind(&k, &names(&[NIC0]), &BindOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--force"));
    assert!(k.journal().is_empty(), "a refused command wrote something");
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("ixgbe"));
    let force = BindOptions {
        force: true,
        ..Default::default()
    };
    devbind::bind(&k, &names(&["eth1"]), "vfio-pci", &force).unwrap();
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("vfio-pci"));
    // The status listing marks it *Active*.
    let s = devbind::status(&k, false);
    assert!(s.devices[0].active);
}

#[test]
fn link_local_only_interface_is_not_active() {
    let (t, k) = kernel_nic_host();
    std::fs::write(
        t.p("proc/net/if_inet6"),
        "fe800000000000000000000000000001 02 40 20 80     eth1\n",
    )
    .unwrap();
    devbind::unbind(&k, &names(&["eth1"]), &BindOptions::default()).unwrap();
    assert_eq!(t.driver_of(NIC0), None);
}

#[test]
fn group_with_kernel_bound_sibling_is_not_viable() {
    let (t, k) = kernel_nic_host();
    t.device(NIC1, 0x020000, Some("ixgbe"), Some("eth2"), Some(7));
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    let msg = err.to_string();
    match &err {
        HostError::GroupNotViable {
            group, siblings, ..
        } => {
            assert_eq!(*group, 7);
            assert_eq!(siblings.len(), 2);
            assert!(siblings
                .iter()
                .all(|m| m.driver.as_deref() == Some("ixgbe")));
        }
        e => panic!("unexpected {e}"),
    }
    assert!(msg.contains(&format!("{NIC1} (ixgbe)")), "{msg}");
    assert!(
        msg.contains(&format!("devbind --bind vfio-pci {NIC0} {NIC1}")),
        "{msg}"
    );
    assert!(k.journal().is_empty());
    // Binding the whole group at once is fine.
    devbind::bind(
        &k,
        &names(&[NIC0, NIC1]),
        "vfio-pci",
        &BindOptions::default(),
    )
    .unwrap();
    assert_eq!(t.driver_of(NIC1).as_deref(), Some("vfio-pci"));
    let s = devbind::status(&k, false);
    assert!(s
        .devices
        .iter()
        .all(|d| d.iommu_group_status.as_ref().unwrap().viable));
}

#[test]
fn force_binds_into_non_viable_group_with_warning() {
    let (t, k) = kernel_nic_host();
    t.device(NIC1, 0x020000, Some("ixgbe"), None, Some(7));
    let force = BindOptions {
        force: true,
        ..Default::default()
    };
    let out = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &force).unwrap();
    assert!(out[0].warnings[0].contains("not viable"));
    let s = devbind::status(&k, false);
    let g = s.devices[0].iommu_group_status.as_ref().unwrap();
    assert!(!g.viable);
    assert_eq!(g.vfio_node.as_deref(), Some("/dev/vfio/7"));
}

#[test]
fn group_with_unbound_sibling_and_bridge_is_viable() {
    let (t, k) = kernel_nic_host();
    t.device(NIC1, 0x020000, None, None, Some(7));
    t.device("0000:00:1c.0", 0x060400, Some("pcieport"), None, Some(7));
    t.device("0000:00:1d.0", 0x060400, Some("shpchp"), None, Some(7));
    t.driver("pcieport").driver("shpchp");
    devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap();
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("vfio-pci"));
    let s = devbind::status(&k, true);
    let d = s.devices.iter().find(|d| d.device.pci == NIC0).unwrap();
    let g = d.iommu_group_status.as_ref().unwrap();
    assert_eq!(g.members.len(), 4);
    let sib = g.members.iter().find(|m| m.pci == NIC1).unwrap();
    assert_eq!(sib.driver, None);
    assert!(g.members.iter().filter(|m| m.bridge).count() == 2);
    assert!(g.viable);
}

#[test]
fn no_iommu_is_detected_with_the_fix() {
    let t = Tree::new();
    t.driver("vfio-pci").driver("ixgbe").vfio_module(false);
    t.device(NIC0, 0x020000, Some("ixgbe"), None, None);
    let k = FakeKernel::new(&t, false);
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    assert!(matches!(err, HostError::NoIommu { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("intel_iommu=on") && msg.contains("enable_unsafe_noiommu_mode"),
        "{msg}"
    );
    assert!(k.journal().is_empty());
    let s = devbind::status(&k, false);
    assert_eq!(s.iommu.mode, IommuMode::Missing);
    assert!(s.iommu.problems[0].contains("fix:"));
    // uio_pci_generic needs no IOMMU: it only needs loading.
    let err = devbind::bind(
        &k,
        &names(&[NIC0]),
        "uio_pci_generic",
        &BindOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("modprobe uio_pci_generic"),
        "{err}"
    );
}

#[test]
fn noiommu_mode_binds_with_warning_and_owns_the_noiommu_node() {
    let t = Tree::new();
    t.driver("vfio-pci").driver("ixgbe").vfio_module(true);
    t.device(NIC0, 0x020000, Some("ixgbe"), None, None);
    let k = FakeKernel::new(&t, false);
    let me = std::fs::metadata(t.root()).unwrap();
    let opts = BindOptions {
        uid: Some(std::os::unix::fs::MetadataExt::uid(&me)),
        gid: Some(std::os::unix::fs::MetadataExt::gid(&me)),
        ..Default::default()
    };
    let out = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &opts).unwrap();
    assert!(out[0].warnings.iter().any(|w| w.contains("no-IOMMU")));
    assert_eq!(out[0].vfio_node.as_deref(), Some("/dev/vfio/noiommu-100"));
    assert!(k
        .journal()
        .iter()
        .any(|a| matches!(a, Action::Chown { .. })));
    let s = devbind::status(&k, false);
    assert_eq!(s.iommu.mode, IommuMode::NoIommu);
    assert_eq!(s.devices[0].category, Category::Dpdk);
}

#[test]
fn vfio_node_ownership_is_set() {
    let (t, k) = kernel_nic_host();
    let root = common::require_root("chown of /dev/vfio/N to another uid");
    let (uid, gid) = if root {
        (4242, 4343)
    } else {
        let me = std::fs::metadata(t.root()).unwrap();
        (
            std::os::unix::fs::MetadataExt::uid(&me),
            std::os::unix::fs::MetadataExt::gid(&me),
        )
    };
    let opts = BindOptions {
        uid: Some(uid),
        gid: Some(gid),
        force: false,
    };
    let out = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &opts).unwrap();
    assert_eq!(out[0].vfio_node.as_deref(), Some("/dev/vfio/7"));
    let md = std::fs::metadata(t.p("dev/vfio/7")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), uid);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&md), gid);
}

#[test]
fn vfio_pci_not_loaded_is_detected_with_the_fix() {
    let t = Tree::new();
    t.driver("ixgbe").vfio_module(false);
    t.device(NIC0, 0x020000, Some("ixgbe"), None, Some(3));
    let k = FakeKernel::new(&t, false);
    let err = devbind::bind(&k, &names(&[NIC0]), "vfio-pci", &BindOptions::default()).unwrap_err();
    assert!(matches!(&err, HostError::DriverNotLoaded { fix, .. } if fix == "modprobe vfio-pci"));
    assert!(k.journal().is_empty());
    let s = devbind::status(&k, false);
    assert!(!s.iommu.vfio_pci_loaded);
    assert!(s
        .iommu
        .problems
        .iter()
        .any(|p| p.contains("modprobe vfio-pci")));
}

#[test]
fn dry_run_lists_every_write_and_changes_nothing() {
    let (t, _) = kernel_nic_host();
    t.device(NIC1, 0x020000, Some("ixgbe"), None, Some(7));
    let before = t.snapshot();
    let k = FakeKernel::new(&t, true);
    let opts = BindOptions {
        uid: Some(1000),
        gid: Some(1000),
        force: false,
    };
    devbind::bind(&k, &names(&[NIC0, NIC1]), "vfio-pci", &opts).unwrap();
    devbind::unbind(&k, &names(&[NIC0]), &BindOptions::default()).unwrap();
    assert_eq!(t.snapshot(), before, "dry run changed the tree");
    let w = writes(&k, &t);
    assert_eq!(w.len(), 9, "{w:?}");
    assert_eq!(
        w[0],
        ("/sys/bus/pci/drivers/ixgbe/unbind".into(), NIC0.into())
    );
    assert_eq!(w[2], ("/sys/bus/pci/drivers_probe".into(), NIC0.into()));
    assert!(k
        .journal()
        .iter()
        .any(|a| matches!(a, Action::Chown { path, .. } if path.ends_with("dev/vfio/7"))));
}

#[test]
fn devices_resolve_by_name_and_bad_names_are_explained() {
    let (_t, k) = kernel_nic_host();
    assert_eq!(devbind::resolve(&k, "eth1").unwrap().pci, NIC0);
    assert_eq!(devbind::resolve(&k, "01:00.0").unwrap().pci, NIC0);
    let e = devbind::resolve(&k, "eth9").unwrap_err();
    assert!(e.to_string().contains("devbind --status"));
    let e = devbind::bind(
        &k,
        &names(&["eth1"]),
        "0000:01:00.0",
        &BindOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::DriverLooksLikeDevice(_)));
    let e = devbind::bind(&k, &names(&[NIC0]), "igb_uio", &BindOptions::default()).unwrap_err();
    assert!(e.to_string().contains("dpdk-kmods"));
}

#[test]
fn status_sorts_devices_by_category() {
    let (t, k) = kernel_nic_host();
    t.device(NIC1, 0x020000, None, None, Some(8));
    t.device("0000:02:00.0", 0x020000, Some("vfio-pci"), None, Some(9));
    t.device("0000:03:00.0", 0x010802, Some("nvme"), None, Some(10));
    let s = devbind::status(&k, false);
    let cats: Vec<_> = s
        .devices
        .iter()
        .map(|d| (d.device.pci.as_str(), d.category))
        .collect();
    assert_eq!(
        cats,
        vec![
            (NIC0, Category::Kernel),
            (NIC1, Category::Unbound),
            ("0000:02:00.0", Category::Dpdk)
        ]
    );
    assert!(s.devices[0]
        .possible_drivers
        .contains(&"vfio-pci".to_string()));
    assert!(!s.devices[0].possible_drivers.contains(&"ixgbe".to_string()));
    assert_eq!(devbind::status(&k, true).devices.len(), 4);
    assert_eq!(k.root(), t.root());
}

#[test]
fn igb_family_members_are_known_and_nics_without_an_xfwd_driver_warn() {
    let (t, k) = kernel_nic_host();
    // NIC0 stays an 82599 (8086:10fb, ixgbe): xfwd has no vfio: driver for it.
    t.device(NIC1, 0x020000, Some("igb"), Some("eth2"), Some(8));
    t.ids(NIC1, 0x8086, 0x10c9); // 82576: the igb driver drives it
    t.device("0000:02:00.0", 0x020000, Some("igb"), Some("eth3"), Some(9));
    t.ids("0000:02:00.0", 0x8086, 0x1521); // I350: known, refused
    t.device("0000:03:00.0", 0x020000, Some("virtio-pci"), None, Some(10));
    t.ids("0000:03:00.0", 0x1af4, 0x1041);
    t.driver("igb").driver("virtio-pci");
    let s = devbind::status(&k, false);
    let sup: Vec<String> = s.devices.iter().map(|d| d.xfwd.short()).collect();
    assert_eq!(
        sup,
        ["none", "vfio/igb", "refused(I350)", "vfio/virtio-net"]
    );
    assert_eq!(
        s.devices[1].xfwd,
        XfwdSupport::Vfio {
            driver: "igb",
            model: "82576"
        }
    );
    let text = xfwd_hostprep::cli::status_text(&s);
    assert!(
        text.contains(&format!("{NIC1}: vfio:{NIC1} (igb driver, 82576)")),
        "{text}"
    );
    assert!(text.contains("xfwd=refused(I350)"), "{text}");
    assert!(
        text.contains(&format!(
            "warning: xfwd has no vfio: driver for {NIC0} (8086:10fb"
        )),
        "{text}"
    );

    // Binding the 82576 to vfio-pci: no warning. The 82599 and the I350: bound, with a warning.
    let out = devbind::bind(&k, &names(&[NIC1]), "vfio-pci", &BindOptions::default()).unwrap();
    assert!(out[0].warnings.is_empty(), "{:?}", out[0].warnings);
    let out = devbind::bind(
        &k,
        &names(&["eth1", "eth3"]),
        "vfio-pci",
        &BindOptions::default(),
    )
    .unwrap();
    assert_eq!(t.driver_of(NIC0).as_deref(), Some("vfio-pci"));
    assert_eq!(t.driver_of("0000:02:00.0").as_deref(), Some("vfio-pci"));
    assert!(
        out[0]
            .warnings
            .iter()
            .any(|w| w.contains("no vfio: driver") && w.contains("af_xdp")),
        "{:?}",
        out[0].warnings
    );
    assert!(
        out[1]
            .warnings
            .iter()
            .any(|w| w.contains("igb family I350") && w.contains("82576 register model")),
        "{:?}",
        out[1].warnings
    );
    // Binding to a kernel driver says nothing about xfwd's drivers.
    let out = devbind::bind(&k, &names(&[NIC0]), "ixgbe", &BindOptions::default()).unwrap();
    assert!(out[0].warnings.is_empty(), "{:?}", out[0].warnings);
}
