//! Live capture from a running port into pcapng: tshark reads it, and what
//! was taken plus what was skipped is exactly what the port counted in the
//! capture window.

use super::*;

#[test]
fn a_live_capture_is_read_by_tshark_and_counts_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("x.sock");
    let child = demo(&sock, &["--duration", "30", "--tx-rate", "20k"]);
    wait_socket(&sock);
    // A slow stream: every frame of the window fits the budget.
    let file = dir.path().join("rx.pcapng");
    let (ok, so, se) = ctl(
        &sock,
        &format!("capture 1 rx --count 200 -w {}", file.display()),
    );
    assert!(ok, "{se}");
    let v: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(
        (n(&v["taken"]), n(&v["written"]), v["done"].clone()),
        (200, 200, Value::Bool(true)),
        "{v}"
    );
    let skipped = n(&v["skipped"]);
    check_capture_window(&v);
    assert_eq!(n(&v["window"]["tx"]), 0, "{v}");
    // Both directions of port 0 (its stream only sends): tx frames.
    let file2 = dir.path().join("both.pcapng");
    let (ok, so, se) = ctl(
        &sock,
        &format!("capture 0:0 both --count 50 -w {}", file2.display()),
    );
    assert!(ok, "{se}");
    let v2: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(n(&v2["written"]), 50, "{v2}");
    check_capture_window(&v2);
    assert_eq!(n(&v2["window"]["rx"]), 0, "{v2}");
    let (ok, _, se) = ctl(&sock, "capture 1 sideways --count 5 -w x.pcapng");
    assert!(!ok && se.contains("rx, tx or both"), "{se}");
    let (ok, _, se) = ctl(&sock, "capture 0 rx --count 5 -w x.pcapng");
    assert!(!ok && se.contains("no stream receives from port 0"), "{se}");
    let (ok, _, _) = ctl(&sock, "quit");
    assert!(ok);
    let (status, out, _) = finish(child, Duration::from_secs(20));
    assert!(status.success(), "{out}");
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(f["leaked_mbufs"], 0);
    // The capture never took a frame from the forward path.
    assert_eq!(
        n(&f["ports"][1]["rx_packets"]),
        n(&f["ports"][1]["fwd"]["rx_packets"]),
        "{f}"
    );
    if !xfwd_mempool::caps::require_tool("tshark", "reading the capture") {
        return;
    }
    let fields = |path: &Path, f: &[&str]| -> Vec<String> {
        let mut c = std::process::Command::new("tshark");
        c.arg("-r").arg(path).args(["-T", "fields"]);
        for x in f {
            c.args(["-e", x]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let rows = fields(
        &file,
        &[
            "ip.src",
            "ip.dst",
            "udp.dstport",
            "frame.packet_flags_direction",
        ],
    );
    assert_eq!(
        rows.len(),
        200,
        "tshark reads every frame ({skipped} skipped)"
    );
    assert!(
        rows.iter()
            .all(|r| r == "198.18.0.1\t198.18.0.2\t9\t0x00000001"),
        "{rows:?}"
    );
    let rows = fields(
        &file2,
        &["frame.interface_name", "frame.packet_flags_direction"],
    );
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r == "port0\t0x00000002"), "{rows:?}");
}
