//! What the harness reads from /proc: whole-machine CPU time (/proc/stat),
//! a process's CPU time (/proc/PID/stat), interface counters seen from a
//! process's network namespace (/proc/PID/net/dev), and the machine.

use std::fs;

/// Clock ticks per second of /proc/*/stat (USER_HZ; 100 on Linux).
pub const TICKS_PER_SEC: f64 = 100.0;

/// The aggregate `cpu` line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// user + nice + system: time processes ran.
    pub task: u64,
    /// steal: time the hypervisor gave to other guests.
    pub steal: u64,
}

/// Read the aggregate line of /proc/stat (zeros if unreadable).
pub fn cpu_times() -> CpuTimes {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return CpuTimes::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    CpuTimes {
        task: g(0) + g(1) + g(2),
        steal: g(7),
    }
}

/// CPUs the /proc/stat aggregate line sums over (the `cpuN` lines).
pub fn online_cpus() -> usize {
    fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// utime + stime of a process (all its threads), in ticks; 0 once it is gone.
pub fn proc_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ')'.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime = field 14, stime = field 15.
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    g(11) + g(12)
}

/// PIDs of the per-CPU softirq threads (`ksoftirqd/N`): with veth traffic
/// they run on behalf of the benchmark.
pub fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.starts_with("ksoftirqd/"))
                .unwrap_or(false)
        })
        .collect()
}

/// `(rx_packets, tx_packets)` of `iface` as seen from the network namespace
/// of process `pid`; `None` when the process or the interface is gone.
pub fn netdev_packets(pid: u32, iface: &str) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    s.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Some((*v.get(1)?, *v.get(9)?))
    })
}

/// The machine the figures come from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub model: String,
    /// `cpu MHz` of /proc/cpuinfo.
    pub mhz: f64,
    /// Kernel release.
    pub kernel: String,
    /// UTC date and time of the run.
    pub date: String,
    /// dpdk-testpmd version line, if found.
    pub dpdk: String,
}

impl Machine {
    /// Describe this machine now.
    pub fn describe(dpdk: String) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |k: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            model: field("model name"),
            mhz: field("cpu MHz").parse().unwrap_or(0.0),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            date: utc_now(),
            dpdk,
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        // Burn a little CPU so the counter can be non-zero; only check it parses.
        let _ = proc_ticks(me);
        assert!(cpu_times().task > 0);
        assert!(netdev_packets(me, "lo").is_some());
        assert!(utc_now().ends_with("UTC"));
    }
}
