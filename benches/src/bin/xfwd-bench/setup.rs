//! Stage 2: the machine: the repository, the xfwd binary, DPDK, hugepages.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// `cargo build --release -p xfwd` in the workspace; the binary's path.
pub fn build_xfwd(root: &Path) -> Result<PathBuf, String> {
    eprintln!("xfwd-bench: cargo build --release -p xfwd");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "xfwd"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err("cargo build --release -p xfwd failed".into());
    }
    let tdir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let tdir = if tdir.is_absolute() {
        tdir
    } else {
        root.join(tdir)
    };
    Ok(tdir.join("release/xfwd"))
}

pub fn dpdk_version(testpmd: &str) -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "dpdk"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!v.is_empty()).then(|| format!("{testpmd} from Debian dpdk {v}"))
}

pub fn ensure_hugepages(min_free: u64) {
    let base = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    let rd = |f: &str| {
        std::fs::read_to_string(format!("{base}/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let free = rd("free_hugepages");
    if free < min_free {
        let want = rd("nr_hugepages") + (min_free - free);
        let _ = std::fs::write(format!("{base}/nr_hugepages"), want.to_string());
        eprintln!(
            "xfwd-bench: asked for {want} 2M hugepages ({} free now)",
            rd("free_hugepages")
        );
    }
}

/// The `--file-prefix`es of the harness's testpmd runs (each with the
/// harness's [`tag`](xfwd_benches::bench::scenario::tag) appended; see
/// `scenario.rs`).
const TESTPMD_PREFIXES: [&str; 6] = ["xbnull", "xbring", "xbdut", "xbgen", "xbmemifc", "xbmemifs"];

/// While alive, nothing; dropped (at the end of a run, an early error
/// return or a panic), it removes the DPDK runtime directories
/// (`/var/run/dpdk/<prefix>`) testpmd left for those prefixes.
pub struct DpdkRunDirs;

impl Drop for DpdkRunDirs {
    fn drop(&mut self) {
        let tag = xfwd_benches::bench::scenario::tag();
        for p in TESTPMD_PREFIXES {
            let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{p}{tag}"));
        }
    }
}
