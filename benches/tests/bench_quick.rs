//! CI smoke test of the benchmark harness: `xfwd-bench --quick` against a
//! debug xfwd produces results.json, the SVG plots and a BENCHMARKS.md with
//! a row per scenario. It checks that a report is produced and that xfwd
//! really forwarded in the null scenario, never a speed.

use std::path::PathBuf;
use std::process::Command;
use xfwd_mempool::caps;

#[test]
fn quick_mode_produces_a_report() {
    let what = "xfwd-bench --quick";
    if !caps::require_root(what)
        || !caps::require_tool("dpdk-testpmd", what)
        || !caps::require_tool("ip", what)
        || !caps::require_hugepages_2m(200, what)
    {
        return;
    }
    // The xfwd binary of this target dir (debug: a smoke test, not a speed test).
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["build", "-q", "-p", "xfwd"])
        .current_dir(&root)
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().expect("target dir"),
        )
        .status()
        .expect("run cargo");
    assert!(st.success(), "cargo build -p xfwd failed");
    let xfwd = profile_dir.join("xfwd");
    assert!(xfwd.exists(), "no {}", xfwd.display());
    let out = std::env::temp_dir().join(format!("xfwd-bench-quick-{}", std::process::id()));
    let t0 = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_xfwd-bench"))
        .args(["--quick", "--xfwd"])
        .arg(&xfwd)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run xfwd-bench");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "xfwd-bench failed:\n{log}");
    eprintln!(
        "xfwd-bench --quick took {:.0} s\n{log}",
        t0.elapsed().as_secs_f64()
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("JSON");
    let sc = json["scenarios"].as_array().expect("scenarios");
    assert!(sc.len() >= 3, "{sc:?}");
    for s in sc {
        for side in ["ours", "peer"] {
            let st = s[side]["status"].as_str().unwrap_or("");
            assert!(
                ["ok", "noisy", "unavailable", "failed"].contains(&st),
                "{s}"
            );
        }
    }
    let null = sc.iter().find(|s| s["name"] == "null-io").expect("null-io");
    assert!(
        null["ours"]["mpps"]["median"].as_f64().unwrap_or(0.0) > 0.0,
        "xfwd forwarded nothing: {null}"
    );
    assert!(null["ours"]["runs"][0]["leaked_mbufs"] == 0, "{null}");
    let md = std::fs::read_to_string(out.join("BENCHMARKS.md")).expect("BENCHMARKS.md");
    for s in sc {
        assert!(
            md.contains(&format!("| {} |", s["name"].as_str().unwrap_or("?"))),
            "{md}"
        );
    }
    for svg in ["mpps.svg", "frame-sweep.svg"] {
        let t = std::fs::read_to_string(out.join(svg)).expect(svg);
        assert!(
            t.starts_with("<svg") && t.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
