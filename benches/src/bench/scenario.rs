//! The scenarios: for each, the xfwd command and the testpmd command that
//! do the same work on the same ports, and the veth topology they need.

use super::runner::{Cmd, Counter, Tool, TrialSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The scenarios `--scenarios` accepts, in report order.
pub const ALL: &[&str] = &[
    "null-io",
    "null-macswap",
    "null-io-xmem",
    "null-macswap-xmem",
    "ring",
    "null-io-2lc",
    "ring-2lc",
    "af_xdp-veth",
    "af_packet-veth",
    "af_xdp-veth-idle",
    "af_packet-veth-idle",
    "memif",
    "memif-zc",
];

/// The `--idle-sleep` of xfwd in the `*-veth-idle` scenarios (µs).
pub const IDLE_SLEEP_US: u32 = 50;

/// What makes this harness's host-wide names its own: `XFWD_BENCH_TAG`
/// (letters, digits, `_`; e.g. who runs it) appended to the topology's name
/// and to testpmd's file prefixes, so two harnesses on one host do not take
/// each other's namespaces down. Empty by default.
pub fn tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        std::env::var("XFWD_BENCH_TAG")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(16)
            .collect()
    })
}

/// Topology name: namespaces `<topo>-gen`, `-dut`, `-sink`; `xbench`, or
/// `xbench-<tag>` with [`tag`].
pub fn topo() -> String {
    match tag() {
        "" => "xbench".into(),
        t => format!("xbench-{t}"),
    }
}
/// MAC of the DUT's receiving end (d0), the generator's destination.
const DUT_RX_MAC: &str = "02:00:00:00:01:00";

/// Everything a scenario needs to build its commands.
#[derive(Debug, Clone)]
pub struct Env {
    /// The xfwd binary.
    pub xfwd: PathBuf,
    /// dpdk-testpmd.
    pub testpmd: String,
    /// Repository root (scripts/topology).
    pub root: PathBuf,
    /// Output directory (generated configs and seed files).
    pub out: PathBuf,
    /// CPU of the forwarding lcore.
    pub fwd_cpu: usize,
    /// CPU of the generator and of testpmd's main lcore.
    pub main_cpu: usize,
    /// Warm-up seconds, measured seconds, noise limit (% of one CPU).
    pub warmup: f64,
    /// Measured seconds.
    pub measure: f64,
    /// Noise limit.
    pub noise_limit_pct: f64,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

impl Env {
    fn xfwd_base(&self, extra: &[String]) -> Vec<String> {
        let dur = format!("{}", (self.warmup + self.measure + 30.0).ceil());
        let mut v = vec![self.xfwd.display().to_string()];
        v.extend(extra.iter().cloned());
        v.extend(s(&[
            "--stats-period",
            "1",
            "--json",
            "--duration",
            &dur,
            "--burst",
            "32",
        ]));
        v
    }

    fn testpmd(&self, prefix: &str, mem_mb: u32, vdevs: &[String], app: &[String]) -> Vec<String> {
        // stdbuf: testpmd's printf output is block-buffered into a pipe, and
        // the harness times each stats block as it arrives.
        let mut v = vec![
            "stdbuf".into(),
            "-oL".into(),
            self.testpmd.clone(),
            "-l".into(),
            format!("{},{}", self.main_cpu, self.fwd_cpu),
            "--main-lcore".into(),
            self.main_cpu.to_string(),
        ];
        v.extend(s(&["--no-pci", "--huge-unlink", "--log-level=error"]));
        v.push(format!("--file-prefix={prefix}{}", tag()));
        v.push(format!("-m{mem_mb}"));
        v.extend(vdevs.iter().map(|d| format!("--vdev={d}")));
        v.push("--".into());
        v.extend(s(&[
            "--stats-period",
            "1",
            "--nb-cores=1",
            "--burst=32",
            "--record-core-cycles",
        ]));
        v.extend(app.iter().cloned());
        v
    }

    /// A testpmd peer (traffic generator or memif server) on the main CPU
    /// only (both lcores there), 256 MiB, one `vdev`, then `app`. With a
    /// stats period testpmd runs until signalled instead of exiting on its
    /// (null) stdin.
    fn testpmd_peer(&self, prefix: &str, vdev: &str, app: &[String]) -> Vec<String> {
        let mut v = vec![
            self.testpmd.clone(),
            format!("--lcores=0@{c},1@{c}", c = self.main_cpu),
            "--main-lcore".into(),
            "0".into(),
        ];
        v.extend(s(&["--no-pci", "--huge-unlink", "--log-level=error"]));
        v.push(format!("--file-prefix={prefix}{}", tag()));
        v.push("-m256".into());
        v.push(format!("--vdev={vdev}"));
        v.extend(s(&["--", "--stats-period", "1", "--nb-cores=1"]));
        v.extend(app.iter().cloned());
        v
    }

    fn spec(&self, tool: Tool, fwd: Cmd, nports: usize) -> TrialSpec {
        TrialSpec {
            tool,
            fwd,
            nports,
            gen: None,
            counter: Counter::Forwarder,
            warmup: self.warmup,
            measure: self.measure,
            noise_limit_pct: self.noise_limit_pct,
        }
    }

    /// Two null ports, `mode` forwarding, frames of `size` bytes; testpmd's
    /// mbufs from `mp_alloc` (`native`, or `xmemhuge`: external hugepage
    /// memory, xfwd's own model).
    pub fn null(&self, tool: Tool, mode: &str, size: u32, mp_alloc: &str) -> TrialSpec {
        let fwd = match tool {
            Tool::Xfwd => {
                let p = format!("null:size={size}");
                let l = self.fwd_cpu.to_string();
                Cmd::new(self.xfwd_base(&s(&[
                    "--port",
                    &p,
                    "--port",
                    &p,
                    "--forward-mode",
                    mode,
                    "-l",
                    &l,
                    "--nb-mbufs",
                    "8192",
                ])))
            }
            Tool::Testpmd => Cmd::new(self.testpmd(
                "xbnull",
                256,
                &[
                    format!("net_null0,size={size}"),
                    format!("net_null1,size={size}"),
                ],
                &[
                    format!("--forward-mode={mode}"),
                    format!("--mp-alloc={mp_alloc}"),
                    "--total-num-mbufs=8192".into(),
                ],
            )),
        };
        self.spec(tool, fwd, 2)
    }

    /// A closed loop: 64 frames of `size` bytes circulate between two ring
    /// ports, seeded the same way by both tools: `--tx-first` (one burst of
    /// 32 per port), then io forwarding on one lcore.
    ///
    /// # Errors
    /// None today (kept fallible like the other scenarios).
    pub fn ring(&self, tool: Tool, size: u32) -> std::io::Result<TrialSpec> {
        Ok(match tool {
            Tool::Xfwd => {
                let fwd = Cmd::new(self.xfwd_base(&[
                    "--port".into(),
                    "ring:xbloop".into(),
                    "--port".into(),
                    "ring:xbloop".into(),
                    "--forward-mode".into(),
                    "io".into(),
                    "--tx-first".into(),
                    "--txpkts".into(),
                    size.to_string(),
                    "--total-num-mbufs".into(),
                    "8192".into(),
                    "-l".into(),
                    self.fwd_cpu.to_string(),
                ]));
                self.spec(tool, fwd, 2)
            }
            Tool::Testpmd => {
                let fwd = Cmd::new(self.testpmd(
                    "xbring",
                    256,
                    &s(&["net_ring0", "net_ring1"]),
                    &[
                        "--forward-mode=io".into(),
                        "--tx-first".into(),
                        format!("--txpkts={size}"),
                        "--mp-alloc=native".into(),
                        "--total-num-mbufs=8192".into(),
                    ],
                ));
                self.spec(tool, fwd, 2)
            }
        })
    }

    /// `spec` on two forwarding lcores, one per CPU: xfwd `-l MAIN,FWD`
    /// (one stream each); testpmd `--nb-cores=2` on lcores 1@MAIN and 2@FWD,
    /// its main lcore 0 sharing CPU MAIN with lcore 1 (it only sleeps between
    /// stats prints).
    pub fn two_lcores(&self, tool: Tool, mut spec: TrialSpec) -> TrialSpec {
        let (m, f) = (self.main_cpu, self.fwd_cpu);
        let argv = std::mem::take(&mut spec.fwd.argv);
        let mut out = Vec::with_capacity(argv.len() + 2);
        let mut it = argv.into_iter();
        while let Some(a) = it.next() {
            match (tool, a.as_str()) {
                (Tool::Xfwd, "-l") => {
                    it.next();
                    out.extend(["-l".into(), format!("{m},{f}")]);
                }
                (Tool::Testpmd, "-l") => {
                    it.next();
                    out.push(format!("--lcores=0@{m},1@{m},2@{f}"));
                }
                (Tool::Testpmd, "--main-lcore") => {
                    it.next();
                    out.extend(["--main-lcore".into(), "0".into()]);
                }
                (Tool::Testpmd, "--nb-cores=1") => out.push("--nb-cores=2".into()),
                _ => out.push(a),
            }
        }
        spec.fwd.argv = out;
        spec
    }

    /// Forwarding between the two veth ends of the DUT namespace over
    /// `driver` (`af_xdp` or `af_packet`); the generator is testpmd txonly
    /// on the same driver in the generator namespace, for both tools.
    /// `idle_sleep_us` > 0: xfwd polls adaptively (`--idle-sleep`); testpmd
    /// has no such mode and busy-polls either way.
    pub fn veth(&self, tool: Tool, driver: &str, mode: &str, idle_sleep_us: u32) -> TrialSpec {
        let dut = format!("{}-dut", topo());
        let (gen_vdev, dut_vdevs) = match driver {
            "af_xdp" => (
                "net_af_xdp0,iface=g0,start_queue=0,queue_count=1".to_string(),
                [0, 1].map(|i| format!("net_af_xdp{i},iface=d{i},start_queue=0,queue_count=1")),
            ),
            _ => (
                "net_af_packet0,iface=g0".to_string(),
                [0, 1].map(|i| format!("net_af_packet{i},iface=d{i}")),
            ),
        };
        let fwd = match tool {
            Tool::Xfwd => {
                let l = self.fwd_cpu.to_string();
                let (p0, p1) = (format!("{driver}:iface=d0"), format!("{driver}:iface=d1"));
                let idle = idle_sleep_us.to_string();
                Cmd::new(self.xfwd_base(&s(&[
                    "--port",
                    &p0,
                    "--port",
                    &p1,
                    "--forward-mode",
                    mode,
                    "-l",
                    &l,
                    "--nb-mbufs",
                    "32768",
                    "--idle-sleep",
                    &idle,
                ])))
            }
            Tool::Testpmd => Cmd::new(self.testpmd(
                "xbdut",
                512,
                &dut_vdevs,
                &[
                    format!("--forward-mode={mode}"),
                    "--total-num-mbufs=32768".into(),
                ],
            )),
        }
        .in_ns(&dut);
        let gen = self.testpmd_peer(
            "xbgen",
            &gen_vdev,
            &[
                "--total-num-mbufs=32768".into(),
                "--forward-mode=txonly".into(),
                format!("--eth-peer=0,{DUT_RX_MAC}"),
            ],
        );
        let mut spec = self.spec(tool, fwd, 2);
        spec.gen = Some((Cmd::new(gen).in_ns(&format!("{}-gen", topo())), "g0".into()));
        spec.counter = Counter::Sink {
            netns: format!("{}-sink", topo()),
            iface: "s1".into(),
        };
        spec
    }
}

impl Env {
    /// Two processes over memif, io on one lcore each, 32 frames of 64 B
    /// looping between them (the client seeds them with `--tx-first`): the
    /// measured forwarder is the client on the forwarding CPU, its peer (the
    /// server, same tool) runs on the main CPU. `zero_copy`: the clients
    /// export their mbuf pools (xfwd `zero_copy=1` on memfd memory, testpmd
    /// `zero-copy=yes` on in-memory single-file segments).
    pub fn memif(&self, tool: Tool, zero_copy: bool) -> TrialSpec {
        let sock = format!("xbench-memif-{}", std::process::id());
        let (fwd, peer) = match tool {
            Tool::Xfwd => {
                let peer = vec![
                    self.xfwd.display().to_string(),
                    "--port".into(),
                    format!("memif:role=server,socket={sock}"),
                    "--forward-mode".into(),
                    "io".into(),
                    "-l".into(),
                    self.main_cpu.to_string(),
                    "--nb-mbufs".into(),
                    "8192".into(),
                    "--stats-period".into(),
                    "0".into(),
                    "--duration".into(),
                    format!("{}", (self.warmup + self.measure + 40.0).ceil()),
                ];
                let mut client = s(&["--port"]);
                client.push(format!(
                    "memif:role=client,socket={sock}{}",
                    if zero_copy { ",zero_copy=1" } else { "" }
                ));
                client.extend(s(&[
                    "--forward-mode",
                    "io",
                    "--tx-first",
                    "--nb-mbufs",
                    "8192",
                ]));
                client.extend(["-l".into(), self.fwd_cpu.to_string()]);
                if zero_copy {
                    client.extend(s(&["--mem-backing", "memfd"]));
                }
                (Cmd::new(self.xfwd_base(&client)), peer)
            }
            Tool::Testpmd => {
                let mut fwd = self.testpmd(
                    "xbmemifc",
                    256,
                    &[format!(
                        "net_memif0,role=client,socket={sock}{}",
                        if zero_copy { ",zero-copy=yes" } else { "" }
                    )],
                    &s(&["--forward-mode=io", "--tx-first", "--total-num-mbufs=8192"]),
                );
                if zero_copy {
                    // DPDK's zero copy shares memseg files: one file per
                    // list, kept (no --huge-unlink).
                    let at = fwd.iter().position(|a| a == "--huge-unlink").expect("set");
                    fwd.splice(at..=at, s(&["--in-memory", "--single-file-segments"]));
                }
                let peer = self.testpmd_peer(
                    "xbmemifs",
                    &format!("net_memif0,role=server,socket={sock}"),
                    &s(&["--total-num-mbufs=8192", "--forward-mode=io"]),
                );
                (Cmd::new(fwd), peer)
            }
        };
        let mut spec = self.spec(tool, fwd, 1);
        // The peer starts first (it is the server); it has no netdev.
        spec.gen = Some((Cmd::new(peer), String::new()));
        spec
    }
}

/// The veth topology of `scripts/topology`, taken down on drop.
#[derive(Debug)]
pub struct Topology {
    script: PathBuf,
}

impl Topology {
    /// `scripts/topology up <topo>` (after a `down` of a leftover one).
    ///
    /// # Errors
    /// The script's message when it fails.
    pub fn up(root: &Path) -> Result<Topology, String> {
        let t = Topology {
            script: root.join("scripts/topology"),
        };
        t.recreate()?;
        Ok(t)
    }

    /// Bring the topology back if one of its namespaces has gone (another
    /// program removed it): the guard that owns it still takes it down.
    ///
    /// # Errors
    /// The script's message when it fails.
    pub fn ensure_up(&self) -> Result<(), String> {
        let all = ["gen", "dut", "sink"]
            .iter()
            .all(|n| Path::new(&format!("/var/run/netns/{}-{n}", topo())).exists());
        if all {
            return Ok(());
        }
        self.recreate()
    }

    fn recreate(&self) -> Result<(), String> {
        let _ = Command::new(&self.script).args(["down", &topo()]).output();
        let o = Command::new(&self.script)
            .args(["up", &topo()])
            .output()
            .map_err(|e| format!("{}: {e}", self.script.display()))?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["down", &topo()]).output();
    }
}
