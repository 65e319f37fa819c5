//! CPU lists and pinning (`sched_getaffinity`/`sched_setaffinity` through nix).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process may run on.
pub fn allowed() -> Vec<u32> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .map(|c| c as u32)
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get()) as u32).collect(),
    }
}

/// Format a CPU list compactly: `0-3,6`.
pub fn format_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Parse an lcore list (`1`, `0-1`, `0,2-3`), in the order given, no duplicates.
///
/// # Errors
/// What is wrong, for the caller to wrap with the key.
pub fn parse_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err("an empty element".into());
        }
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("`{part}` is not a CPU id or range"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("`{part}` is not a CPU id or range"))?;
        if b < a || b - a > 4096 {
            return Err(format!("`{part}` is not an ascending range"));
        }
        for c in a..=b {
            if out.contains(&c) {
                return Err(format!("CPU {c} is listed twice"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

/// Pin the calling thread to `cpu`.
///
/// # Errors
/// The `sched_setaffinity` errno.
pub fn pin(cpu: u32) -> Result<(), nix::Error> {
    let mut set = CpuSet::new();
    set.set(cpu as usize)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_list("1,1").is_err());
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("x").is_err());
        assert!(parse_list("").is_err());
        assert_eq!(format_list(&[0, 1, 2, 5]), "0-2,5");
    }
}
