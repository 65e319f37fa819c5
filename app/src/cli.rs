//! The command line (clap). Flag names follow testpmd/l2fwd; every flag
//! overrides the matching key of the config file (see [`crate::config`]).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// xfwd: a polling packet forwarder whose mbuf pool lives in external
/// hugepage memory. With no arguments it runs the built-in demo
/// (txonly → ring → rxonly on two lcores for 5 s); needs no NIC and no config.
#[derive(Debug, Parser)]
#[command(name = "xfwd", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// Options (they apply to every command).
    #[command(flatten)]
    pub opts: Opts,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the forwarder (the default command).
    Run,
    /// Validate a configuration and print the plan (pages, pools, mappings
    /// per port, lcore → queue map) without touching memory or ports' queues.
    Check {
        /// The config file (default: --config, else the built-in demo).
        config: Option<PathBuf>,
    },
    /// Run the built-in demo: txonly → ring → rxonly on two lcores, 5 s.
    Demo,
    /// Run one prompt command on a running xfwd through its control socket
    /// (`--telemetry SOCKET`): `xfwd ctl SOCKET show port stats all`.
    /// `show` commands print JSON; `help` lists the commands.
    Ctl {
        /// The control socket.
        socket: PathBuf,
        /// Print the prompt's text for `show` commands too, not JSON.
        #[arg(long)]
        text: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Every option; each one overrides the config file.
#[derive(Debug, Args, Default, Clone)]
pub struct Opts {
    /// TOML config file.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker lcores (CPU ids): `1`, `0-1`, `0,2-3`  [fwd.lcores].
    #[arg(long, short = 'l', global = true, value_name = "LIST")]
    pub lcores: Option<String>,
    /// Hex mask of the ports to forward on, e.g. 0x3  [fwd.portmask].
    #[arg(long, short = 'p', global = true, value_name = "MASK")]
    pub portmask: Option<String>,
    /// Forwarding mode  [fwd.forward_mode]; each mode's rules (what it reads,
    /// writes, forwards, drops and why it differs from testpmd) are in docs/forwarding.md:
    ///   io        forward untouched                        (docs/forwarding.md#io)
    ///   mac       src = port MAC, dst = peer               (docs/forwarding.md#mac)
    ///   macswap   swap the MACs                            (docs/forwarding.md#macswap)
    ///   5tswap    swap MACs, IPs, ports; walks VLAN/QinQ   (docs/forwarding.md#5tswap)
    ///   rxonly    receive and free                         (docs/forwarding.md#rxonly)
    ///   txonly    generate UDP                             (docs/forwarding.md#txonly)
    ///   flowgen   generate UDP over many flows             (docs/forwarding.md#flowgen)
    ///   icmpecho  answer ARP and ICMP/ICMPv6 echo          (docs/forwarding.md#icmpecho)
    #[arg(long, global = true, value_name = "MODE", verbatim_doc_comment)]
    pub forward_mode: Option<String>,
    /// Packets per burst  [fwd.burst].
    #[arg(long, global = true, value_name = "N")]
    pub burst: Option<u32>,
    /// RX descriptors per queue  [fwd.rxd].
    #[arg(long, global = true, value_name = "N")]
    pub rxd: Option<u32>,
    /// TX descriptors per queue  [fwd.txd].
    #[arg(long, global = true, value_name = "N")]
    pub txd: Option<u32>,
    /// RX queues per port  [fwd.rxq].
    #[arg(long, global = true, value_name = "N")]
    pub rxq: Option<u32>,
    /// TX queues per port  [fwd.txq].
    #[arg(long, global = true, value_name = "N")]
    pub txq: Option<u32>,
    /// paired|chained|loop  [fwd.port_topology].
    #[arg(long, global = true, value_name = "TOPO")]
    pub port_topology: Option<String>,
    /// Peer MAC of a port for `mac` mode and generators, and the next-hop
    /// MAC of l3fwd routes to it (`--eth-dest` as in DPDK l3fwd):
    /// `N,aa:bb:cc:dd:ee:ff` (repeatable)  [port.eth_peer].
    #[arg(long, visible_alias = "eth-dest", global = true, value_name = "N,MAC")]
    pub eth_peer: Vec<String>,
    /// A port's devargs (repeatable; replaces the file's ports): `ring:r0`, `null:size=64`, `pcap:rx=in.pcap,tx=out.pcap`.
    #[arg(long, global = true, value_name = "DEVARGS")]
    pub port: Vec<String>,
    /// Retries of a partly sent TX burst before dropping the rest  [fwd.tx_retry].
    #[arg(long, global = true, value_name = "N")]
    pub tx_retry: Option<u32>,
    /// Adaptive polling: a receiving lcore whose round over its queues found
    /// nothing hands over held TX frames and sleeps this many microseconds
    /// (0, the default, busy-polls like testpmd). Saves the CPU an lcore
    /// spins away below its capacity, and makes bigger bursts; costs latency:
    /// up to this long plus the host's wake-up time per hop. Generator lcores
    /// never sleep. 10–100 is a sane range  [fwd.idle_sleep_us].
    #[arg(long, global = true, value_name = "US")]
    pub idle_sleep: Option<u32>,
    /// Measure latency from generator timestamps also in forwarding modes  [fwd.latency].
    #[arg(long, global = true)]
    pub latency: bool,
    /// Before forwarding, every forwarding stream sends one burst of
    /// generated frames on its TX queue (testpmd `--tx-first`): seeds a
    /// loop of ports that has no other source  [fwd.tx_first].
    #[arg(long, global = true)]
    pub tx_first: bool,
    /// Mbufs in the pool (testpmd `--total-num-mbufs`)  [pool.nb_mbufs].
    #[arg(
        long,
        visible_alias = "total-num-mbufs",
        global = true,
        value_name = "N"
    )]
    pub nb_mbufs: Option<u32>,
    /// Data room per mbuf in bytes, after the headroom  [pool.mbuf_size].
    #[arg(long, global = true, value_name = "BYTES")]
    pub mbuf_size: Option<u32>,
    /// Per-lcore mbuf cache  [pool.mbcache].
    #[arg(long, global = true, value_name = "N")]
    pub mbcache: Option<u32>,
    /// 2M|1G (4K needs --allow-4k)  [memory.page_size].
    #[arg(long, global = true, value_name = "SIZE")]
    pub page_size: Option<String>,
    /// anon|hugetlbfs|memfd|heap  [memory.backing].
    #[arg(long, global = true, value_name = "KIND")]
    pub mem_backing: Option<String>,
    /// Same as `--mem-backing heap`: ordinary memory, no hugepages (software ports only).
    #[arg(long, global = true)]
    pub no_huge: bool,
    /// va|pa  [memory.iova_mode].
    #[arg(long, global = true, value_name = "MODE")]
    pub iova_mode: Option<String>,
    /// Accept 4 KiB pages for the pool memory  [memory.allow_4k].
    #[arg(long, global = true)]
    pub allow_4k: bool,
    /// When a port's link goes away mid-run (its interface deleted, or set
    /// down): `continue` (default, like testpmd: the other ports keep
    /// forwarding, the port reads down) or `exit` (stop and exit 1, naming
    /// the port)  [fwd.on_link_loss].
    #[arg(long, global = true, value_name = "continue|exit")]
    pub on_link_loss: Option<String>,
    /// Seconds between stats prints, 0 = none  [stats.period].
    #[arg(long, global = true, value_name = "SECS")]
    pub stats_period: Option<f64>,
    /// Stop after this many seconds, 0 = until Ctrl-C  [stats.duration].
    #[arg(long, global = true, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print stats as JSON, one object per line  [stats.json].
    #[arg(long, global = true)]
    pub json: bool,
    /// Serve telemetry and the prompt's commands on this Unix socket
    /// (mode 0600; `xfwd ctl PATH COMMAND`)  [stats.telemetry].
    #[arg(long, global = true, value_name = "PATH")]
    pub telemetry: Option<PathBuf>,
    /// Share the telemetry socket with this group (mode 0660).
    #[arg(long, global = true, value_name = "GROUP")]
    pub telemetry_group: Option<String>,
    /// Interactive: set up ports and lcores, then an `xfwd> ` prompt
    /// (forwarding starts with `start`; `help` lists the commands).
    #[arg(long, short = 'i', global = true)]
    pub interactive: bool,
    /// Run the prompt's commands from this file (one a line, `sleep MS`
    /// pauses); works without a terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub cmdline_file: Option<PathBuf>,
    /// Serve Prometheus metrics on `ADDR:PORT` (or `PORT`: loopback), `GET /metrics`.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Generated frame length (testpmd `--txpkts`)  [txonly.pkt_len].
    #[arg(long, global = true, value_name = "BYTES")]
    pub txpkts: Option<u32>,
    /// Frame-size mix instead of one length: `imix` (simple IMIX: 60, 590
    /// and 1514 B at 7:4:1, i.e. 64/594/1518 B with FCS) or `LEN:WEIGHT,...`
    /// like `64:7,570:4,1518:1`; sent in a fixed interleaved order  [txonly.mix].
    #[arg(long, global = true, value_name = "MIX")]
    pub tx_mix: Option<String>,
    /// Flows the generator cycles through  [txonly.flows].
    #[arg(long, global = true, value_name = "N")]
    pub tx_flows: Option<u32>,
    /// Generator rate per stream: packets/s (`250000`, `1.5M`, `200k`) or `P%`
    /// of --link-speed, counting 4 B FCS + 20 B preamble/IFG per frame  [txonly.rate].
    #[arg(long, global = true, value_name = "RATE")]
    pub tx_rate: Option<String>,
    /// Link speed for percentage rates: `1G`, `10G`, `25G`, `100G`  [txonly.link_speed].
    #[arg(long, global = true, value_name = "SPEED")]
    pub link_speed: Option<String>,
    /// Packets each generating stream sends (0 = no limit); once every
    /// generator has sent its count and nothing has arrived for 0.3 s, xfwd
    /// exits by itself (before --duration)  [txonly.count].
    #[arg(long, global = true, value_name = "N")]
    pub tx_count: Option<u64>,
    /// Generator IPs `SRC,DST`  [txonly.src_ip, txonly.dst_ip].
    #[arg(long, global = true, value_name = "SRC,DST")]
    pub tx_ip: Option<String>,
    /// l3fwd lookup: `lpm` (longest prefix match, the default) or `em`
    /// (exact match on the 5-tuple)  [l3fwd.lookup].
    #[arg(long, global = true, value_name = "lpm|em")]
    pub lookup: Option<String>,
    // The help names the config's `[[route]]` tables, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// l3fwd route: `PREFIX,PORT[,VIA]` (repeatable; VIA names a
    /// --neighbor), e.g. `198.51.100.0/24,1`  [[route]].
    #[arg(long, global = true, value_name = "PREFIX,PORT[,VIA]")]
    pub route: Vec<String>,
    // The help names the config's `[[neighbor]]` tables, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// l3fwd gateway: `IP,MAC,PORT` (repeatable)  [[neighbor]].
    #[arg(long, global = true, value_name = "IP,MAC,PORT")]
    pub neighbor: Vec<String>,
    // The help names the config's `[[flow]]` tables, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// l3fwd exact-match flow: `SRC,DST,SPORT,DPORT,PROTO,PORT[,VIA]`  [[flow]].
    #[arg(long, global = true, value_name = "SRC,DST,SPORT,DPORT,PROTO,PORT")]
    pub flow: Vec<String>,
    /// l3fwd route file: one `PREFIX PORT [VIA]` route or
    /// `SRC DST SPORT DPORT PROTO PORT [VIA]` flow a line, `#` comments  [l3fwd.route_file].
    #[arg(long, global = true, value_name = "FILE")]
    pub route_file: Option<PathBuf>,
    /// l3fwd: verify IPv4 header checksums (bad ones dropped as bad headers)  [l3fwd.check_checksum].
    #[arg(long, global = true)]
    pub check_checksum: bool,
    /// Generator UDP ports `SRC,DST`  [txonly.src_port, txonly.dst_port].
    #[arg(long, global = true, value_name = "SRC,DST")]
    pub tx_udp: Option<String>,
}
