//! The bad-input corpus: broken config files (`tests/bad_input/*.toml`, each
//! with a `# expect: a | b` first line) and broken flag sets. Each must exit
//! with code 2 and a message naming the culprit, and leave no hugepage file
//! or mapping behind (free hugepages unchanged, no `xfwd-*` in hugetlbfs).

mod support;

use std::time::Duration;
use support::*;

/// (flags, substrings the error must contain).
fn flag_cases(garbage_pcap: &str) -> Vec<(Vec<String>, Vec<&'static str>)> {
    let g = format!("pcap:rx={garbage_pcap}");
    let raw: Vec<(Vec<&str>, Vec<&'static str>)> = vec![
        (vec!["--burst", "0"], vec!["`--burst`", "0", "1 ..= 512"]),
        (vec!["--burst", "600"], vec!["`--burst`", "600"]),
        (
            vec!["--burst", "64", "--rxd", "32"],
            vec!["`--burst`", "64", "RX ring"],
        ),
        (vec!["--burst", "abc"], vec!["--burst", "abc"]),
        (
            vec!["--idle-sleep", "200000"],
            vec!["`--idle-sleep`", "200000", "0 ..= 100000"],
        ),
        (
            vec!["--forward-mode", "txonly", "--tx-mix", "64:0"],
            vec!["`--tx-mix`", "64:0", "at least 1"],
        ),
        (
            vec!["--forward-mode", "txonly", "--tx-mix", "40:1,1518:1"],
            vec!["`--tx-mix`", "60 ..= ", "imix"],
        ),
        (
            vec!["--forward-mode", "bogus"],
            vec!["`--forward-mode`", "bogus", "macswap"],
        ),
        (
            vec!["--lcores", "99", "--port", "null:"],
            vec!["`--lcores`", "99", "may run on"],
        ),
        (
            vec!["--lcores", "0,99"],
            vec!["`--lcores`", "99", "may run on"],
        ),
        (
            vec!["--lcores", "0"],
            vec!["`--lcores`", "one per [[lcore]] entry"],
        ),
        (
            vec!["--lcores", "1-0"],
            vec!["`--lcores`", "1-0", "ascending"],
        ),
        (vec!["--lcores", "x"], vec!["`--lcores`", "x"]),
        (
            vec!["--port-topology", "star"],
            vec!["`--port-topology`", "star", "chained"],
        ),
        (
            vec!["--on-link-loss", "abort"],
            vec!["`--on-link-loss`", "abort", "continue, exit"],
        ),
        (vec!["--page-size", "3M"], vec!["`--page-size`", "3M", "1G"]),
        (
            vec!["--page-size", "4K"],
            vec!["`--page-size`", "4K", "--allow-4k"],
        ),
        (
            vec!["--page-size", "1G"],
            vec!["1G hugepages", "needed", "--no-huge"],
        ),
        (
            vec!["--mem-backing", "tmpfs"],
            vec!["`--mem-backing`", "tmpfs", "memfd"],
        ),
        (
            vec!["--no-huge", "--mem-backing", "anon"],
            vec!["`--no-huge`", "--mem-backing"],
        ),
        (
            vec!["--iova-mode", "xx"],
            vec!["`--iova-mode`", "xx", "va, pa"],
        ),
        (vec!["--nb-mbufs", "10"], vec!["`--nb-mbufs`", "10"]),
        (
            vec!["--nb-mbufs", "16000000"],
            vec!["hugepages", "16000000", "needed"],
        ),
        (
            vec!["--mbcache", "1000"],
            vec!["`--mbcache`", "1000", "512"],
        ),
        (
            vec!["--mbcache", "512", "--nb-mbufs", "600"],
            vec!["`--mbcache`", "512", "1.5"],
        ),
        (vec!["--mbuf-size", "50"], vec!["`--mbuf-size`", "50"]),
        (
            vec!["--port", "bogus:x"],
            vec!["--port bogus:x", "unknown driver", "ring"],
        ),
        (
            vec!["--port", "ring:"],
            vec!["--port ring:", "needs a name"],
        ),
        (vec!["--port", "null:size=5"], vec!["null:size=5", "size"]),
        (
            vec!["--port", "null:", "--rxq", "100"],
            vec!["`--rxq`", "100", "64"],
        ),
        (
            vec!["--port", "pcap:rx=/nonexistent/in.pcap"],
            vec!["/nonexistent/in.pcap"],
        ),
        (vec!["--port", &g], vec![garbage_pcap_name(), "pcap"]),
        (
            vec!["--port", "null:", "--port", "null:", "--portmask", "0x4"],
            vec!["`--portmask`", "0x4", "2 ports"],
        ),
        (
            vec!["--port", "null:", "--portmask", "zz"],
            vec!["`--portmask`", "zz", "hex"],
        ),
        (
            vec!["--port", "null:", "--port", "null:", "--port", "null:"],
            vec!["paired", "even", "3"],
        ),
        (
            vec!["--port", "null:", "--eth-peer", "0,zz:zz"],
            vec!["eth-peer", "zz:zz"],
        ),
        (
            vec!["--port", "null:", "--eth-peer", "5,02:00:00:00:00:01"],
            vec!["`--eth-peer`", "5,02:00:00:00:00:01"],
        ),
        (vec!["--stats-period=-1"], vec!["`--stats-period`", "-1"]),
        (vec!["--duration", "nan"], vec!["`--duration`", "NaN"]),
        (
            vec![
                "--forward-mode",
                "txonly",
                "--port",
                "null:",
                "--txpkts",
                "20",
            ],
            vec!["`--txpkts`", "20", "60"],
        ),
        (vec!["--tx-ip", "1.2.3,4.5.6.7"], vec!["`--tx-ip`", "1.2.3"]),
        (vec!["--tx-udp", "70000,1"], vec!["`--tx-udp`", "70000"]),
        (
            vec!["--config", "/nonexistent/x.toml"],
            vec!["cannot read config file", "/nonexistent/x.toml"],
        ),
        (
            vec!["--telemetry", "/nonexistent/dir/x.sock"],
            vec!["`--telemetry`", "/nonexistent/dir/x.sock"],
        ),
        (vec!["--bogus"], vec!["--bogus"]),
        (
            vec![
                "--port", "null:", "--port", "null:", "--rxq", "2", "--txq", "1", "--lcores", "0-1",
            ],
            vec!["`--txq`", "shared by lcores"],
        ),
        (
            vec!["check", "--port", "ring:r,loop=maybe"],
            vec!["loop", "maybe"],
        ),
    ];
    raw.into_iter()
        .map(|(a, e)| (a.into_iter().map(String::from).collect(), e))
        .collect()
}

fn garbage_pcap_name() -> &'static str {
    "garbage.pcap"
}

fn assert_config_error(label: &str, args: &[String], expect: &[&str]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args, Duration::from_secs(30));
    let (so, se) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{label}: {args:?} should exit 2\nstdout: {so}\nstderr: {se}"
    );
    for e in expect {
        assert!(
            se.contains(e),
            "{label}: {args:?}: the message does not name `{e}`:\n{se}"
        );
    }
    assert!(!se.contains("panicked"), "{label}: {se}");
}

#[test]
fn every_broken_config_and_flag_set_exits_2_naming_the_culprit_and_leaves_nothing() {
    let files_before = hugepage_files();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join(garbage_pcap_name());
    std::fs::write(
        &garbage,
        b"this is not a capture file at all, not even close",
    )
    .unwrap();
    let mut every_case = || {
        let mut n = 0;
        for (args, expect) in flag_cases(garbage.to_str().unwrap()) {
            assert_config_error("flags", &args, &expect);
            n += 1;
        }

        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input");
        let mut files: Vec<_> = std::fs::read_dir(&corpus)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let expect: Vec<&str> = first
                .strip_prefix("# expect:")
                .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", f.display()))
                .split('|')
                .map(str::trim)
                .collect();
            let label = f.file_name().unwrap().to_string_lossy().into_owned();
            // Both as `--config FILE` (run) and as `check FILE`.
            assert_config_error(
                &label,
                &["--config".into(), f.display().to_string()],
                &expect,
            );
            assert_config_error(&label, &["check".into(), f.display().to_string()], &expect);
            n += 1;
        }
        assert!(n >= 30, "only {n} bad inputs");
    };
    assert!(
        hugepages_come_back(3, &mut every_case),
        "hugepages taken by refused configs"
    );
    let left = hugepage_files_left(&files_before);
    assert!(left.is_empty(), "hugetlbfs files left behind: {left:?}");
}

#[test]
fn a_valid_config_is_accepted_by_check_without_touching_hugepages() {
    let check = || {
        let o = run(
            &["check", "--port", "null:", "--port", "null:", "--json"],
            Duration::from_secs(30),
        );
        let (so, _) = text_ok(&o);
        assert!(so.contains("port1") && so.contains("lcore"), "{so}");
    };
    assert!(hugepages_come_back(3, check), "`check` took hugepages");
}
