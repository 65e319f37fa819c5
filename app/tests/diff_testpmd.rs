//! The differential test against DPDK 22.11's real `dpdk-testpmd`: one
//! corpus (named edge cases + 3000 seeded random frames, pcap / pcapng /
//! nanosecond pcap) through xfwd's pcap port and testpmd's net_pcap in io,
//! mac, macswap, 5tswap and icmpecho; every difference must be a rule of
//! docs/forwarding.md, every reply is checked by scapy and tshark. The
//! harness is `tests/diff/run.py` (scapy); this test runs it and fails on
//! its failures. Needs root (testpmd), dpdk-testpmd, python3-scapy and
//! tshark: skipped with the reason outside CI, a failure in CI.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use xfwd_mempool::caps;

/// Debian's interpreter: python3-scapy is installed for it (a pyenv or
/// venv `python3` earlier on PATH may not have scapy).
const PYTHON: &str = "/usr/bin/python3";

/// The harness's testpmd runs use `--file-prefix xfwd-diff-<harness pid>-<tag>`;
/// DPDK leaves `/var/run/dpdk/<prefix>` behind each. On drop (after the run,
/// also when an assertion failed) this removes those of harnesses that are
/// no longer alive, ours included, and no other process's.
struct DiffRuntimeDirs;

const DPDK_RUN: &str = "/var/run/dpdk";

impl DiffRuntimeDirs {
    /// The runtime directories of dead harnesses.
    fn stale() -> Vec<std::path::PathBuf> {
        let Ok(rd) = std::fs::read_dir(DPDK_RUN) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name
                    .strip_prefix("xfwd-diff-")
                    .and_then(|r| r.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok());
                pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            })
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for DiffRuntimeDirs {
    fn drop(&mut self) {
        for d in Self::stale() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn scapy_importable() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import scapy.all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn xfwd_agrees_with_testpmd_except_where_docs_forwarding_md_says_why() {
    let what = "differential test against dpdk-testpmd";
    if !caps::require_root(what)
        || !caps::require_tool("dpdk-testpmd", what)
        || !caps::require_tool("tshark", what)
        || !caps::require(
            scapy_importable(),
            what,
            "python3-scapy is not importable by /usr/bin/python3 (scripts/setup-test-host installs it)",
        )
    {
        return;
    }
    let dirs = DiffRuntimeDirs;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(PYTHON);
    c.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(root.join("tests/diff/run.py"))
        .args(["--xfwd", env!("CARGO_BIN_EXE_xfwd"), "--out"])
        .arg(dir.path());
    // The harness bounds its own children (xfwd, testpmd) by time.
    let o = support::run_command(c, Duration::from_secs(300));
    let (so, se) = support::text(&o);
    let status = o.status;
    drop(dirs);
    let left = DiffRuntimeDirs::stale();
    assert!(left.is_empty(), "DPDK runtime directories left: {left:?}");
    println!("{so}");
    eprintln!("{se}");
    assert!(status.success(), "differential harness failed:\n{so}\n{se}");
    assert!(so.contains("ok: 0 failures"), "{so}");
    for mode in ["io", "mac", "macswap", "5tswap", "icmpecho"] {
        assert!(
            so.lines().any(|l| l.starts_with(mode)),
            "{mode} was not compared:\n{so}"
        );
    }
}
