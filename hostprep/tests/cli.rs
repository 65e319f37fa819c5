//! The `xfwd-host` binary and the `scripts/` wrappers against a fake root: JSON schema, dry-run
//! output, error reporting, --help examples.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{iommu_host, Tree};
use serde_json::Value;

const NIC0: &str = "0000:01:00.0";

fn bin(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xfwd-host"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn host() -> Tree {
    let t = quiet_host();
    t.route("eth1");
    t
}

fn quiet_host() -> Tree {
    let t = iommu_host();
    t.device(NIC0, 0x020000, Some("ixgbe"), Some("eth1"), Some(7));
    t.device("0000:01:00.1", 0x020000, None, None, Some(7));
    t.hugepages(&[2048, 1048576], 2);
    t
}

#[test]
fn status_json_has_the_documented_fields() {
    let t = host();
    let out = bin(t.root(), &["devbind", "--status", "--json"]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["iommu"]["mode"], "enabled");
    assert_eq!(v["iommu"]["groups"], 1);
    assert_eq!(v["iommu"]["vfio_pci_loaded"], true);
    assert!(v["iommu"]["problems"].as_array().unwrap().is_empty());
    let d = &v["devices"][0];
    for field in [
        "pci",
        "vendor",
        "device",
        "class",
        "name",
        "driver",
        "interfaces",
        "numa_node",
        "iommu_group",
        "driver_override",
        "category",
        "active",
        "possible_drivers",
        "iommu_group_status",
        "xfwd",
    ] {
        assert!(d.get(field).is_some(), "missing {field} in {d}");
    }
    assert_eq!(d["pci"], NIC0);
    assert_eq!(d["vendor"], "8086");
    assert_eq!(d["class"], 0x020000);
    assert_eq!(d["driver"], "ixgbe");
    assert_eq!(d["category"], "kernel");
    assert_eq!(d["active"], true);
    assert_eq!(d["interfaces"][0], "eth1");
    let g = &d["iommu_group_status"];
    assert_eq!(g["number"], 7);
    assert_eq!(g["viable"], false);
    assert_eq!(g["members"][1]["pci"], "0000:01:00.1");
    assert_eq!(g["members"][1]["driver"], Value::Null);
    assert_eq!(g["members"][1]["bridge"], false);
    assert_eq!(v["devices"][1]["category"], "unbound");
    assert_eq!(d["xfwd"]["support"], "none");
}

#[test]
fn dry_run_prints_every_write_and_changes_nothing() {
    let t = host();
    let before = t.snapshot();
    let out = bin(
        t.root(),
        &[
            "--dry-run",
            "devbind",
            "--force",
            "--bind",
            "vfio-pci",
            "eth1",
            "--uid",
            "1000",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("would ")).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with("would write \"0000:01:00.0\" > "),
        "{text}"
    );
    assert!(
        lines[0].ends_with("sys/bus/pci/drivers/ixgbe/unbind"),
        "{text}"
    );
    assert!(lines[1].contains("\"vfio-pci\" >") && lines[1].ends_with("driver_override"));
    assert!(lines[2].ends_with("sys/bus/pci/drivers_probe"));
    assert!(lines[4].starts_with("would chown 1000:- ") && lines[4].ends_with("dev/vfio/7"));
    assert!(text.contains("0000:01:00.0: ixgbe -> vfio-pci"), "{text}");
    assert_eq!(t.snapshot(), before);
    // The same as JSON.
    let out = bin(
        t.root(),
        &[
            "--dry-run",
            "--json",
            "hugepages",
            "reserve",
            "10M",
            "--page-size",
            "2M",
        ],
    );
    let v = json(&out);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["actions"][0]["op"], "write");
    assert_eq!(v["actions"][0]["data"], "3\n");
    assert_eq!(v["reservations"][1]["asked"], 2);
    assert_eq!(t.snapshot(), before);
}

#[test]
fn errors_are_reported_with_exit_code_and_as_json() {
    let t = host();
    let out = bin(t.root(), &["devbind", "--unbind", "eth1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: 0000:01:00.0 is active"), "{err}");
    let out = bin(t.root(), &["--json", "devbind", "--bind", "vfio-pci", NIC0]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(v["error"].as_str().unwrap().contains("is active"), "{v}");
    let out = bin(
        t.root(),
        &["hugepages", "reserve", "3M", "--page-size", "2M"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a multiple"));
}

#[test]
fn hugepages_show_json_and_help_examples() {
    let t = host();
    let v = json(&bin(t.root(), &["--json", "hugepages", "show"]));
    assert_eq!(v["default_page_size"], 2 << 20);
    assert_eq!(v["sizes"].as_array().unwrap().len(), 2);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 4);
    for f in ["page_size", "node", "total", "free", "path"] {
        assert!(v["nodes"][0].get(f).is_some(), "missing {f}");
    }
    assert!(v["mounts"].as_array().unwrap().is_empty());
    for sub in [
        &["devbind", "--help"][..],
        &["hugepages", "--help"],
        &["apply", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xfwd-host"))
            .args(sub)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Example"),
            "{sub:?}: {text}"
        );
    }
}

#[test]
fn script_wrappers_run_from_any_directory() {
    let t = host();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    for (script, args) in [
        ("devbind", &["--status", "--json"][..]),
        ("hugepages", &["show", "--json"]),
    ] {
        let out = Command::new(scripts.join(script))
            .current_dir("/")
            .env("XFWD_HOST", env!("CARGO_BIN_EXE_xfwd-host"))
            .arg("--root")
            .arg(t.root())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out);
    }
}

#[test]
fn apply_dry_run_of_the_shipped_config() {
    let t = quiet_host();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/host.toml");
    let before = t.snapshot();
    let out = bin(
        t.root(),
        &["--dry-run", "--json", "apply", cfg.to_str().unwrap()],
    );
    let v = json(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["reservations"].as_array().unwrap().len(), 2);
    assert_eq!(v["devices"].as_array().unwrap().len(), 2);
    assert_eq!(t.snapshot(), before);
}
