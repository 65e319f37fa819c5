//! No hugepage left behind, on a hugetlbfs mount of the test's own (its
//! `size=` limit makes statfs count exactly the pages its files hold):
//! a file of a dead process is removed when xfwd starts (and logged), by
//! `scripts/hugepages sweep`, and SIGKILL while the pool is being populated
//! or while forwarding leaves no file and no page behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const LIMIT_MB: u64 = 256;

/// A hugetlbfs mount made for this test; unmounted and removed on drop.
struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn new() -> Mount {
        let dir = std::env::temp_dir().join(format!("xfwd-hygiene-{}", std::process::id()));
        mount_hugetlbfs(&dir, LIMIT_MB);
        Mount { dir }
    }

    /// (total, free) 2 MiB pages of the mount.
    fn pages(&self) -> (u64, u64) {
        hugetlbfs_pages(&self.dir)
    }

    /// Every page of the mount free again, no file left.
    fn assert_all_free(&self, what: &str) {
        assert_hugetlbfs_empty(&self.dir, what);
    }

    fn config(&self, nb_mbufs: u32, duration: f64) -> PathBuf {
        let p = self.dir.with_extension(format!("{nb_mbufs}.toml"));
        let text = format!(
            "[memory]\nbacking = \"hugetlbfs\"\nhugetlbfs_dir = \"{}\"\n\
             [pool]\nnb_mbufs = {nb_mbufs}\n[stats]\nperiod = 0.0\nduration = {duration}\n\
             [[port]]\ndevargs = \"null:\"\n[[port]]\ndevargs = \"null:\"\n",
            self.dir.display()
        );
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
        for n in [8192, 100_000] {
            let _ = std::fs::remove_file(self.dir.with_extension(format!("{n}.toml")));
        }
    }
}

/// A PID that existed and is gone.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A stale `xfwd-PID-0` of a dead process holding `pages` pages.
fn stale_file(m: &Mount, pages: u64) -> PathBuf {
    let f = m.dir.join(format!("xfwd-{}-0", dead_pid()));
    let ok = Command::new("fallocate")
        .args(["-l", &format!("{}M", pages * 2)])
        .arg(&f)
        .status()
        .expect("fallocate");
    assert!(ok.success(), "fallocate on hugetlbfs");
    let (total, free) = m.pages();
    assert_eq!(total - free, pages, "the stale file holds its pages");
    f
}

/// The hugetlb memory a process has mapped, in KiB (`HugetlbPages:`).
fn hugetlb_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("HugetlbPages:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn no_hugepage_left_behind() {
    if !xfwd_mempool::caps::require_root("hugetlbfs mount of the hygiene test")
        || !xfwd_mempool::caps::require_hugepages_2m(LIMIT_MB / 2, "hugepage hygiene test")
    {
        return;
    }
    // Outside the mount: no file of a dead xfwd anywhere (the host's free
    // page count would also see what other processes take meanwhile).
    let files_before = hugepage_files();
    let m = Mount::new();
    assert_eq!(m.pages(), (LIMIT_MB / 2, LIMIT_MB / 2));

    // 1. xfwd removes a dead process's file when it starts, and says so.
    let f = stale_file(&m, 3);
    let cfg = m.config(8192, 0.3);
    let o = run(
        &["--config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}\n{se}");
    assert!(
        se.contains("removed") && se.contains(&f.display().to_string()) && se.contains("dead"),
        "no word of the stale file in:\n{se}"
    );
    assert!(so.contains("0 mbufs leaked"), "{so}");
    m.assert_all_free("after a run that swept a stale file");

    // 2. `scripts/hugepages sweep` does the same (and leaves live files).
    let f = stale_file(&m, 2);
    let live = m.dir.join(format!("xfwd-{}-9", std::process::id()));
    std::fs::write(&live, b"").unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let o = Command::new(repo.join("scripts/hugepages"))
        .arg("sweep")
        .output()
        .expect("scripts/hugepages sweep");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("rm {}", f.display())), "{out}");
    assert!(live.exists(), "a live process's file was removed");
    std::fs::remove_file(&live).unwrap();
    m.assert_all_free("after scripts/hugepages sweep");

    // 3. SIGKILL while the pool's pages are being populated (caught from
    // /proc/PID/status: some but not all of them mapped), then while it
    // forwards. ~200 MiB: 100k mbufs.
    let cfg = m.config(100_000, 30.0);
    let mut mid_population = 0;
    let mut after_population = 0;
    for attempt in 0..4 {
        // The last attempt waits for the whole pool, then kills.
        let want_mid = attempt < 3;
        let mut child = xfwd()
            .args(["--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xfwd");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut peak = 0;
        let mid = loop {
            let kb = hugetlb_kb(child.id()).unwrap_or(0);
            if want_mid && kb > 0 && kb < 180 << 10 {
                break Some(kb);
            }
            peak = peak.max(kb);
            if kb >= 180 << 10 || Instant::now() > deadline {
                // Populated before we saw it: kill it while it runs.
                std::thread::sleep(Duration::from_millis(200));
                break None;
            }
        };
        // SIGKILL (by the PID of the process this test started), then reap.
        let _ = child.kill();
        let _ = child.wait();
        match mid {
            Some(kb) => {
                mid_population += 1;
                eprintln!("attempt {attempt}: killed with {kb} KiB of the pool mapped");
            }
            None => {
                after_population += usize::from(peak >= 180 << 10);
                eprintln!("attempt {attempt}: killed after population ({peak} KiB)");
            }
        }
        m.assert_all_free(&format!("after SIGKILL {attempt}"));
    }
    assert!(
        mid_population >= 1 && after_population == 1,
        "kills during population: {mid_population} (want ≥ 1), after: {after_population}"
    );
    drop(m);
    let left = hugepage_files_left(&files_before);
    assert!(
        left.is_empty(),
        "hugetlbfs files left outside the mount: {left:?}"
    );
}
