//! Stage 1: the command line.

use std::path::{Path, PathBuf};
use xfwd_benches::bench::scenario;

#[derive(Debug)]
pub struct Opts {
    pub quick: bool,
    pub runs: usize,
    pub warmup: f64,
    pub measure: f64,
    pub scenarios: Vec<String>,
    pub sweep: bool,
    pub latency: bool,
    pub rfc2544: bool,
    pub noise: f64,
    pub reruns: usize,
    pub xfwd: Option<PathBuf>,
    pub out: PathBuf,
    pub md: PathBuf,
    pub report_only: bool,
    pub rate_only: bool,
}

pub const USAGE: &str = "usage: xfwd-bench [--quick] [--runs N] [--warmup S] [--measure S] [--scenarios a,b] \
[--no-sweep] [--no-latency] [--no-rfc2544] [--noise-limit PCT] [--reruns N] [--xfwd PATH] [--out DIR] [--md PATH] [--report-only] [--rate-only]\n\
scenarios: null-io, null-macswap, null-io-xmem, null-macswap-xmem, ring, af_xdp-veth, af_packet-veth, \
af_xdp-veth-idle, af_packet-veth-idle (the veth ones with xfwd --idle-sleep), \
memif, memif-zc (two processes of one tool over memif, copy / zero copy)";

pub fn parse(root: &Path) -> Result<Opts, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let quick = a.iter().any(|x| x == "--quick");
    let out = root.join("bench-out");
    let mut o = Opts {
        quick,
        runs: if quick { 1 } else { 5 },
        warmup: if quick { 0.5 } else { 1.0 },
        measure: if quick { 1.0 } else { 3.0 },
        scenarios: if quick {
            vec!["null-io".into(), "ring".into(), "af_packet-veth".into()]
        } else {
            scenario::ALL.iter().map(|s| s.to_string()).collect()
        },
        sweep: true,
        latency: true,
        rfc2544: true,
        noise: 10.0,
        reruns: if quick { 0 } else { 2 },
        xfwd: None,
        md: if quick {
            out.join("BENCHMARKS.md")
        } else {
            root.join("BENCHMARKS.md")
        },
        out,
        report_only: false,
        rate_only: false,
    };
    let mut i = 0;
    let val = |i: usize| {
        a.get(i + 1)
            .cloned()
            .ok_or(format!("{} needs a value\n{USAGE}", a[i]))
    };
    let num = |i: usize| -> Result<f64, String> {
        val(i)?
            .parse::<f64>()
            .map_err(|_| format!("{} needs a number, got {:?}", a[i], a.get(i + 1)))
    };
    let mut md_set = false;
    while i < a.len() {
        match a[i].as_str() {
            "--quick" => {}
            "--runs" => {
                o.runs = num(i)?.max(1.0) as usize;
                i += 1;
            }
            "--warmup" => {
                o.warmup = num(i)?;
                i += 1;
            }
            "--measure" => {
                o.measure = num(i)?.max(0.6);
                i += 1;
            }
            "--noise-limit" => {
                o.noise = num(i)?;
                i += 1;
            }
            "--reruns" => {
                o.reruns = num(i)? as usize;
                i += 1;
            }
            "--scenarios" => {
                // An empty list runs none (only the rate-based stage).
                o.scenarios = val(i)?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for s in &o.scenarios {
                    if !scenario::ALL.contains(&s.as_str()) {
                        return Err(format!("unknown scenario {s:?}\n{USAGE}"));
                    }
                }
                i += 1;
            }
            "--no-sweep" => o.sweep = false,
            "--no-latency" => o.latency = false,
            "--no-rfc2544" => o.rfc2544 = false,
            "--xfwd" => {
                o.xfwd = Some(PathBuf::from(val(i)?));
                i += 1;
            }
            "--out" => {
                o.out = PathBuf::from(val(i)?);
                i += 1;
            }
            "--md" => {
                o.md = PathBuf::from(val(i)?);
                md_set = true;
                i += 1;
            }
            "--report-only" => o.report_only = true,
            "--rate-only" => o.rate_only = true,
            "-h" | "--help" => return Err(USAGE.into()),
            x => return Err(format!("unknown argument {x:?}\n{USAGE}")),
        }
        i += 1;
    }
    if quick && !md_set {
        o.md = o.out.join("BENCHMARKS.md");
    }
    Ok(o)
}
