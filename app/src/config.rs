//! The configuration file (TOML, unknown keys refused) and how command-line
//! flags override it. Values stay as written here; [`crate::validate`]
//! checks them all before anything touches memory.

use crate::cli::Opts;
use crate::error::ConfigError;
use crate::fwd::l3fwd::{FlowCfg, L3fwdCfg, L3fwdFlags, NeighborCfg, RouteCfg};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built-in demo: txonly → ring → rxonly on two lcores.
pub const DEMO: &str = include_str!("../../configs/demo.toml");

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[memory]`.
    pub memory: MemoryCfg,
    /// `[pool]`.
    pub pool: PoolCfg,
    /// `[fwd]`.
    pub fwd: FwdCfg,
    /// `[stats]`.
    pub stats: StatsCfg,
    /// `[txonly]`: the generator of txonly and flowgen.
    pub txonly: TxCfg,
    /// `[[port]]`, in port-id order.
    #[serde(rename = "port")]
    pub ports: Vec<PortCfg>,
    /// `[[lcore]]`: an explicit lcore → streams map (l3fwd style).
    #[serde(rename = "lcore")]
    pub lcore_map: Vec<LcoreCfg>,
    /// `[l3fwd]`: the router mode's lookup and route file.
    pub l3fwd: L3fwdCfg,
    /// `[[route]]`: l3fwd routes.
    #[serde(rename = "route")]
    pub routes: Vec<RouteCfg>,
    /// `[[neighbor]]`: l3fwd gateways.
    #[serde(rename = "neighbor")]
    pub neighbors: Vec<NeighborCfg>,
    /// `[[flow]]`: l3fwd exact-match flows.
    #[serde(rename = "flow")]
    pub flows: Vec<FlowCfg>,
}

/// `[memory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryCfg {
    /// `2M`, `1G` or `4K`.
    pub page_size: String,
    /// `anon`, `hugetlbfs`, `memfd`, `heap`.
    pub backing: String,
    /// hugetlbfs mount for `backing = "hugetlbfs"` (default: from /proc/mounts).
    pub hugetlbfs_dir: Option<PathBuf>,
    /// `va` or `pa`.
    pub iova_mode: String,
    /// Accept 4 KiB pages.
    pub allow_4k: bool,
}

impl Default for MemoryCfg {
    fn default() -> Self {
        MemoryCfg {
            page_size: "2M".into(),
            backing: "anon".into(),
            hugetlbfs_dir: None,
            iova_mode: "va".into(),
            allow_4k: false,
        }
    }
}

/// `[pool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolCfg {
    /// Mbufs.
    pub nb_mbufs: u32,
    /// Data room per mbuf (after the 128-byte headroom).
    pub mbuf_size: u32,
    /// Per-lcore cache.
    pub mbcache: u32,
}

impl Default for PoolCfg {
    fn default() -> Self {
        PoolCfg {
            nb_mbufs: 8192,
            mbuf_size: 2048,
            mbcache: 256,
        }
    }
}

/// `[fwd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FwdCfg {
    /// Worker CPUs (`0-1`, `1,3`).
    pub lcores: Option<String>,
    /// Forwarding mode.
    pub forward_mode: String,
    /// Burst size.
    pub burst: u32,
    /// RX queues per port.
    pub rxq: u32,
    /// TX queues per port.
    pub txq: u32,
    /// RX descriptors.
    pub rxd: u32,
    /// TX descriptors.
    pub txd: u32,
    /// `paired`, `chained`, `loop`.
    pub port_topology: String,
    /// Hex port mask.
    pub portmask: Option<String>,
    /// TX retries.
    pub tx_retry: u32,
    /// Microseconds a receiving lcore sleeps when a round over its queues
    /// found nothing; 0 = busy poll.
    pub idle_sleep_us: u32,
    /// Latency in forwarding modes too.
    pub latency: bool,
    /// Send one generated burst per forwarding stream before forwarding
    /// (testpmd `--tx-first`).
    pub tx_first: bool,
    /// What a port whose link goes away mid-run (its interface deleted or
    /// set down) does to the run: `continue` (the other ports keep
    /// forwarding, the report shows the port down) or `exit` (stop, exit 1).
    pub on_link_loss: String,
}

impl Default for FwdCfg {
    fn default() -> Self {
        FwdCfg {
            lcores: None,
            forward_mode: "io".into(),
            burst: 32,
            rxq: 1,
            txq: 1,
            rxd: 1024,
            txd: 1024,
            port_topology: "paired".into(),
            portmask: None,
            tx_retry: 0,
            idle_sleep_us: 0,
            latency: false,
            tx_first: false,
            on_link_loss: "continue".into(),
        }
    }
}

/// `[stats]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsCfg {
    /// Seconds between prints (0 = none).
    pub period: f64,
    /// Seconds to run (0 = until Ctrl-C).
    pub duration: f64,
    /// JSON lines instead of tables.
    pub json: bool,
    /// Telemetry socket.
    pub telemetry: Option<PathBuf>,
}

impl Default for StatsCfg {
    fn default() -> Self {
        StatsCfg {
            period: 1.0,
            duration: 0.0,
            json: false,
            telemetry: None,
        }
    }
}

/// `[txonly]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TxCfg {
    /// Frame length.
    pub pkt_len: u32,
    /// Frame-size mix: `imix` or `LEN:WEIGHT,...`; empty = `pkt_len` only.
    pub mix: String,
    /// Flows.
    pub flows: u32,
    /// Source IPv4.
    pub src_ip: String,
    /// Destination IPv4.
    pub dst_ip: String,
    /// UDP source port.
    pub src_port: u32,
    /// UDP destination port.
    pub dst_port: u32,
    /// Target rate of each generating stream: packets/s (`250000`, `1.5M`,
    /// `200k`) or a percentage of `link_speed` (`10%`); empty = as fast as
    /// possible.
    pub rate: String,
    /// Link speed for percentage rates (`10G`, `25G`, `100G`, `1G`).
    pub link_speed: String,
    /// Packets each generating stream sends before it stops (0 = no limit).
    pub count: u64,
}

impl Default for TxCfg {
    fn default() -> Self {
        TxCfg {
            pkt_len: 64,
            mix: String::new(),
            flows: 1,
            src_ip: "198.18.0.1".into(),
            dst_ip: "198.18.0.2".into(),
            src_port: 9,
            dst_port: 9,
            rate: String::new(),
            link_speed: "10G".into(),
            count: 0,
        }
    }
}

/// `[[port]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCfg {
    /// Devargs (`ring:r0`, `null:size=64`, `pcap:rx=..,tx=..`, `af_xdp:iface=..`).
    pub devargs: String,
    /// Peer MAC (mac mode destination, generator destination).
    #[serde(default)]
    pub eth_peer: Option<String>,
}

/// `[[lcore]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcoreCfg {
    /// CPU id.
    pub id: u32,
    /// This lcore's forwarding mode (default: `fwd.forward_mode`).
    #[serde(default)]
    pub mode: Option<String>,
    /// Streams.
    pub streams: Vec<StreamCfg>,
}

/// One stream `{ rx = "P.Q", tx = "P.Q" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCfg {
    /// RX port.queue.
    #[serde(default)]
    pub rx: Option<String>,
    /// TX port.queue.
    #[serde(default)]
    pub tx: Option<String>,
}

/// A config with CLI overrides applied, and which flag set which key (so
/// errors name what the user typed).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The merged values.
    pub cfg: FileConfig,
    /// Where the file came from (`built-in demo` or a path).
    pub source: String,
    /// key → flag, for keys a flag set.
    pub flags: BTreeMap<&'static str, &'static str>,
    /// `--route`, `--neighbor`, `--flow` (l3fwd).
    pub l3fwd: L3fwdFlags,
}

impl Settings {
    /// How to name `key` in an error: the flag if one set it, else the key
    /// and the file.
    pub fn name(&self, key: &str) -> String {
        match self.flags.get(key) {
            Some(f) => format!("`{f}`"),
            None => format!("`{key}` (in {})", self.source),
        }
    }
}

/// Read and parse a config file.
///
/// # Errors
/// [`ConfigError::Read`] / [`ConfigError::Parse`] (unknown keys included).
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse config text.
///
/// # Errors
/// [`ConfigError::Parse`].
pub fn parse(text: &str, source: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        source_name: source.to_string(),
        msg: e.to_string(),
    })
}

/// The file named by `path` (or the built-in demo when `None`) with the
/// flags in `o` applied.
///
/// # Errors
/// As [`load`].
pub fn settings(path: Option<&Path>, o: &Opts) -> Result<Settings, ConfigError> {
    let (mut cfg, source) = match path {
        Some(p) => (load(p)?, p.display().to_string()),
        None if o.port.is_empty() => (parse(DEMO, "built-in demo")?, "built-in demo".to_string()),
        None => (FileConfig::default(), "defaults".to_string()),
    };
    let mut flags = BTreeMap::new();
    if source == "built-in demo" {
        // The demo runs on the first two CPUs this process may use.
        let cpus = crate::cpu::allowed();
        if cpus.len() >= 2 {
            cfg.fwd.lcores = Some(crate::cpu::format_list(&cpus[..2]));
        }
    }
    // Each flag given overrides its key (`section.field` of the file) and is
    // remembered as that key's source: `opt => section.field, "--flag";`
    // for the valued flags, `opt => section.field, "--flag", on;` for the
    // switches (which can only turn a key on).
    macro_rules! set {
        ($($opt:ident => $sec:ident . $key:ident, $flag:literal $(, $on:ident)?;)*) => {
            $(set!(@one $opt, $sec, $key, $flag $(, $on)?);)*
        };
        (@one $opt:ident, $sec:ident, $key:ident, $flag:literal) => {
            if let Some(v) = o.$opt.clone() {
                cfg.$sec.$key = v.into();
                flags.insert(concat!(stringify!($sec), ".", stringify!($key)), $flag);
            }
        };
        (@one $opt:ident, $sec:ident, $key:ident, $flag:literal, on) => {
            if o.$opt {
                cfg.$sec.$key = true;
                flags.insert(concat!(stringify!($sec), ".", stringify!($key)), $flag);
            }
        };
    }
    set! {
        lcores => fwd.lcores, "--lcores";
        portmask => fwd.portmask, "--portmask";
        forward_mode => fwd.forward_mode, "--forward-mode";
        burst => fwd.burst, "--burst";
        rxd => fwd.rxd, "--rxd";
        txd => fwd.txd, "--txd";
        rxq => fwd.rxq, "--rxq";
        txq => fwd.txq, "--txq";
        port_topology => fwd.port_topology, "--port-topology";
        tx_retry => fwd.tx_retry, "--tx-retry";
        idle_sleep => fwd.idle_sleep_us, "--idle-sleep";
        on_link_loss => fwd.on_link_loss, "--on-link-loss";
        latency => fwd.latency, "--latency", on;
        tx_first => fwd.tx_first, "--tx-first", on;
        nb_mbufs => pool.nb_mbufs, "--nb-mbufs";
        mbuf_size => pool.mbuf_size, "--mbuf-size";
        mbcache => pool.mbcache, "--mbcache";
        page_size => memory.page_size, "--page-size";
        mem_backing => memory.backing, "--mem-backing";
        iova_mode => memory.iova_mode, "--iova-mode";
        allow_4k => memory.allow_4k, "--allow-4k", on;
        stats_period => stats.period, "--stats-period";
        duration => stats.duration, "--duration";
        telemetry => stats.telemetry, "--telemetry";
        json => stats.json, "--json", on;
        txpkts => txonly.pkt_len, "--txpkts";
        tx_mix => txonly.mix, "--tx-mix";
        tx_flows => txonly.flows, "--tx-flows";
        tx_rate => txonly.rate, "--tx-rate";
        link_speed => txonly.link_speed, "--link-speed";
        tx_count => txonly.count, "--tx-count";
        lookup => l3fwd.lookup, "--lookup";
        route_file => l3fwd.route_file, "--route-file";
        check_checksum => l3fwd.check_checksum, "--check-checksum", on;
    }
    let l3fwd = L3fwdFlags {
        routes: o.route.clone(),
        neighbors: o.neighbor.clone(),
        flows: o.flow.clone(),
    };
    if o.no_huge {
        if o.mem_backing.as_deref().is_some_and(|b| b != "heap") {
            return Err(ConfigError::Invalid {
                key: "`--no-huge`".into(),
                value: format!(
                    "with --mem-backing {}",
                    o.mem_backing.as_deref().unwrap_or("")
                ),
                accepted: "one of them: --no-huge means --mem-backing heap".into(),
            });
        }
        cfg.memory.backing = "heap".into();
        flags.insert("memory.backing", "--no-huge");
    }
    if let Some(ip) = &o.tx_ip {
        let (s, d) = ip.split_once(',').unwrap_or((ip, ""));
        (cfg.txonly.src_ip, cfg.txonly.dst_ip) = (s.into(), d.into());
        flags.insert("txonly.src_ip", "--tx-ip");
        flags.insert("txonly.dst_ip", "--tx-ip");
    }
    if let Some(p) = &o.tx_udp {
        let (s, d) = p.split_once(',').unwrap_or((p, p));
        let num = |v: &str| v.trim().parse::<u32>().unwrap_or(u32::MAX);
        (cfg.txonly.src_port, cfg.txonly.dst_port) = (num(s), num(d));
        flags.insert("txonly.src_port", "--tx-udp");
        flags.insert("txonly.dst_port", "--tx-udp");
    }
    if !o.port.is_empty() {
        cfg.ports = o
            .port
            .iter()
            .map(|d| PortCfg {
                devargs: d.clone(),
                eth_peer: None,
            })
            .collect();
        cfg.lcore_map.clear();
        flags.insert("port", "--port");
    }
    let n_ports = cfg.ports.len();
    for p in &o.eth_peer {
        let (n, mac) = p.split_once(',').unwrap_or(("", p));
        let idx: usize = n.trim().parse().map_err(|_| ConfigError::Invalid {
            key: "`--eth-peer`".into(),
            value: p.clone(),
            accepted: "PORT,MAC with PORT a port id, e.g. 0,02:00:00:00:00:01".into(),
        })?;
        let port = cfg.ports.get_mut(idx).ok_or_else(|| ConfigError::Invalid {
            key: "`--eth-peer`".into(),
            value: p.clone(),
            accepted: format!("a port id below {} (the number of ports)", n_ports),
        })?;
        port.eth_peer = Some(mac.to_string());
        flags.insert("port.eth_peer", "--eth-peer");
    }
    Ok(Settings {
        cfg,
        source,
        flags,
        l3fwd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_are_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("xfwd-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[fwd]\nburst = 16\nrxd = 256\n[[port]]\ndevargs = \"null:\"\n",
        )
        .unwrap();
        let o = Opts {
            burst: Some(64),
            ..Default::default()
        };
        let s = settings(Some(&f), &o).unwrap();
        assert_eq!((s.cfg.fwd.burst, s.cfg.fwd.rxd), (64, 256));
        assert_eq!(s.name("fwd.burst"), "`--burst`");
        assert!(s.name("fwd.rxd").contains("`fwd.rxd` (in "));
        let s = settings(Some(&f), &Opts::default()).unwrap();
        assert_eq!(s.cfg.fwd.burst, 16);
        // --port replaces the file's ports and its lcore map.
        let o = Opts {
            port: vec!["ring:a".into(), "ring:a".into()],
            eth_peer: vec!["1,02:00:00:00:00:09".into()],
            ..Default::default()
        };
        let s = settings(Some(&f), &o).unwrap();
        assert_eq!(s.cfg.ports.len(), 2);
        assert_eq!(
            s.cfg.ports[1].eth_peer.as_deref(),
            Some("02:00:00:00:00:09")
        );
        let bad = Opts {
            eth_peer: vec!["3,02:00:00:00:00:09".into()],
            ..Default::default()
        };
        let e = settings(Some(&f), &bad).unwrap_err().to_string();
        assert!(e.contains("--eth-peer") && e.contains("below 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_demo_parses() {
        let s = settings(None, &Opts::default()).unwrap();
        assert_eq!(s.source, "built-in demo");
        assert_eq!(s.cfg.ports.len(), 2);
        assert_eq!(s.cfg.lcore_map.len(), 2);
    }
}
